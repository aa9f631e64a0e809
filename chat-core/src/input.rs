//! What front-ends that edit a line share: the input history (Up/Down) and Tab completion.

/// Lines the user entered, and where Up/Down currently points.
#[derive(Debug, Clone, Default)]
pub struct InputHistory {
    /// Oldest first.
    entries: Vec<String>,
    /// The entry being shown while walking; `None` when editing a fresh line.
    pos: Option<usize>,
}

impl InputHistory {
    /// Records an entered line (blank lines, and lines with a password in them, are not kept)
    /// and stops walking.
    pub fn push(&mut self, line: &str) {
        if !line.trim().is_empty() && !crate::command::holds_secret(line) {
            self.entries.push(line.to_string());
        }
        self.pos = None;
    }

    /// Moves `step` entries (negative is older) and returns the line to show: an entry, or the
    /// empty fresh line when walking past the newest. `None` when there is no history.
    pub fn walk(&mut self, step: isize) -> Option<&str> {
        if self.entries.is_empty() {
            return None;
        }
        let last = self.entries.len() as isize;
        let pos = self.pos.map_or(last, |p| p as isize) + step;
        if pos >= last {
            self.pos = None;
            return Some("");
        }
        let pos = pos.max(0) as usize;
        self.pos = Some(pos);
        Some(&self.entries[pos])
    }
}

/// What Tab does to the word before the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Where the word starts, in bytes.
    pub start: usize,
    /// What replaces it: the one candidate (with `: ` after a nick at the start of the line, a
    /// space otherwise), or the prefix the candidates share.
    pub replacement: String,
    /// The candidates, when there are several (to show the user).
    pub candidates: Vec<String>,
}

/// Completes the last word of `before` (the text before the cursor) from the session's nicks,
/// rooms and commands. `None` when there is no word or nothing matches.
pub fn complete(session: &crate::Session, before: &str) -> Option<Completion> {
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let word = &before[start..];
    if word.is_empty() {
        return None;
    }
    let candidates = session.completions(word);
    let replacement = match candidates.as_slice() {
        [] => return None,
        [one] if start == 0 && !one.starts_with('/') && !one.starts_with('#') => format!("{one}: "),
        [one] => format!("{one} "),
        many => common_prefix(many),
    };
    Some(Completion {
        start,
        replacement,
        candidates: if candidates.len() > 1 {
            candidates
        } else {
            Vec::new()
        },
    })
}

/// The longest prefix the words share, compared ignoring ASCII case (the first word's spelling).
pub fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut end = first.len();
    for w in &words[1..] {
        end = end.min(
            first
                .char_indices()
                .zip(w.chars())
                .take_while(|((_, a), b)| a.eq_ignore_ascii_case(b))
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8()),
        );
    }
    first[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_passwords_are_not_kept() {
        let mut h = InputHistory::default();
        for line in [
            "hello",
            "/register hunter2hunter2",
            "/login alice hunter2",
            "/IDENTIFY alice hunter2",
            "/passwd old new",
            "/unregister hunter2",
            "/msg NickServ IDENTIFY alice hunter2",
            "/msg bob hi",
        ] {
            h.push(line);
        }
        assert_eq!(h.walk(-1), Some("/msg bob hi"));
        assert_eq!(h.walk(-1), Some("hello"));
        assert_eq!(h.walk(-1), Some("hello"));
    }

    #[test]
    fn walks_back_and_forth() {
        let mut h = InputHistory::default();
        assert_eq!(h.walk(-1), None);
        h.push("first");
        h.push("  ");
        h.push("second");
        assert_eq!(h.walk(-1), Some("second"));
        assert_eq!(h.walk(-1), Some("first"));
        assert_eq!(h.walk(-1), Some("first"), "stops at the oldest");
        assert_eq!(h.walk(1), Some("second"));
        assert_eq!(h.walk(1), Some(""), "past the newest is a fresh line");
        h.walk(-1);
        h.push("third");
        assert_eq!(h.walk(-1), Some("third"), "entering resets the walk");
    }
}
