//! Input-line history (Up/Down) for front-ends that edit a line: the terminal UI and the GUI.

/// Lines the user entered, and where Up/Down currently points.
#[derive(Debug, Clone, Default)]
pub struct InputHistory {
    /// Oldest first.
    entries: Vec<String>,
    /// The entry being shown while walking; `None` when editing a fresh line.
    pos: Option<usize>,
}

impl InputHistory {
    /// Records an entered line (blank lines are not kept) and stops walking.
    pub fn push(&mut self, line: &str) {
        if !line.trim().is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
