//! Other people's text is data: the one place that makes it safe to show.
//!
//! A message, a name, a topic or a reason that came from the network may carry terminal control
//! sequences (`ESC ]2;...BEL` renames a window, `ESC [2J` clears the screen, OSC 52 writes the
//! clipboard, a bare CR overwrites the line to fake a sender, C1 `U+009B` acts as CSI). The
//! [`Session`](crate::session::Session) passes every server message through
//! [`clean_server_msg`] before it reaches any front-end state, so the CLI, the terminal UI and
//! the GUI all show control characters as visible symbols and never emit them.
//!
//! Policy, per character of category Cc:
//! - `\n` stays a line break and `\t` a tab (multi-line messages keep their shape);
//! - the other C0 controls become their Unicode control pictures (`ESC` shows as `␛`, `CR` as
//!   `␍`, `BEL` as `␇`), and `DEL` becomes `␡`;
//! - C1 controls (`U+0080..=U+009F`), which have no pictures, are written as `<U+009B>`.

use std::borrow::Cow;

use crate::protocol::{BanInfo, ChatMessage, RoomInfo, ServerMsg};

/// True for a character [`sanitize`] rewrites.
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// The visible form of `text`: see the module documentation. Borrows when nothing changes.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
            }
            '\u{7f}' => out.push('\u{2421}'),
            c if c.is_control() => out.push_str(&format!("<U+{:04X}>", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A length of time for people to read, in its largest fitting unit, rounded up: `30 s`,
/// `2 min`, `3 h`, `7 d`.
pub fn duration(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        s if s >= 86_400 => format!("{} d", s.div_ceil(86_400)),
        s if s >= 3_600 => format!("{} h", s.div_ceil(3_600)),
        s if s >= 60 => format!("{} min", s.div_ceil(60)),
        s => format!("{s} s"),
    }
}

/// [`sanitize`] in place.
pub fn sanitize_in_place(text: &mut String) {
    if let Cow::Owned(clean) = sanitize(text) {
        *text = clean;
    }
}

/// A server message with every string it carries made safe to show.
pub fn clean_server_msg(mut msg: ServerMsg) -> ServerMsg {
    let s = sanitize_in_place;
    match &mut msg {
        ServerMsg::Welcome {
            name,
            server,
            motd,
            account,
            ..
        } => {
            account.iter_mut().for_each(s);
            s(name);
            s(server);
            motd.iter_mut().for_each(s);
        }
        ServerMsg::LoggedIn { account }
        | ServerMsg::LoggedOut { account }
        | ServerMsg::Operator { account }
        | ServerMsg::PasswordChanged { account }
        | ServerMsg::AccountDeleted { account } => s(account),
        ServerMsg::Join { room, name, .. } => {
            s(room);
            s(name);
        }
        ServerMsg::Part {
            room, name, reason, ..
        } => {
            s(room);
            s(name);
            reason.iter_mut().for_each(s);
        }
        ServerMsg::Quit { name, reason, .. } => {
            s(name);
            s(reason);
        }
        ServerMsg::Nick { old, new, .. } => {
            s(old);
            s(new);
        }
        ServerMsg::Message(m) => clean_message(m),
        ServerMsg::Direct { from, to, text, .. } => {
            s(from);
            s(to);
            s(text);
        }
        ServerMsg::Topic {
            room, topic, by, ..
        } => {
            s(room);
            s(topic);
            by.iter_mut().for_each(s);
        }
        ServerMsg::Stats { .. } => {}
        ServerMsg::Whowas { name, entries } => {
            s(name);
            for e in entries {
                s(&mut e.name);
                s(&mut e.user);
                s(&mut e.realname);
            }
        }
        ServerMsg::People { target, people, .. } => {
            s(target);
            for p in people {
                s(&mut p.name);
                s(&mut p.user);
                s(&mut p.realname);
                p.account.iter_mut().for_each(s);
                p.room.iter_mut().for_each(s);
            }
        }
        ServerMsg::Whois {
            name,
            user,
            realname,
            account,
            rooms,
            roles,
            away,
            ..
        } => {
            s(name);
            s(user);
            s(realname);
            account.iter_mut().for_each(s);
            rooms.iter_mut().for_each(s);
            away.iter_mut().for_each(s);
            *roles = std::mem::take(roles)
                .into_iter()
                .map(|(mut room, role)| {
                    s(&mut room);
                    (room, role)
                })
                .collect();
        }
        ServerMsg::Members {
            room,
            names,
            roles,
            after,
            away,
            ..
        } => {
            s(room);
            names.iter_mut().for_each(s);
            after.iter_mut().for_each(s);
            *roles = std::mem::take(roles)
                .into_iter()
                .map(|(mut name, role)| {
                    s(&mut name);
                    (name, role)
                })
                .collect();
            *away = std::mem::take(away)
                .into_iter()
                .map(|(mut name, mut reason)| {
                    s(&mut name);
                    s(&mut reason);
                    (name, reason)
                })
                .collect();
        }
        ServerMsg::ReadMarker { target, .. } => s(target),
        ServerMsg::Offline { name } => s(name),
        ServerMsg::Realname { name, realname } => {
            s(name);
            s(realname);
        }
        ServerMsg::Watching { online, offline } => {
            online.iter_mut().for_each(s);
            offline.iter_mut().for_each(s);
        }
        ServerMsg::SearchResults {
            room,
            query,
            messages,
            ..
        } => {
            s(room);
            s(query);
            messages.iter_mut().for_each(clean_message);
        }
        ServerMsg::Away { name, reason } => {
            s(name);
            reason.iter_mut().for_each(s);
        }
        ServerMsg::Kick {
            room,
            name,
            by,
            reason,
            ..
        } => {
            s(room);
            s(name);
            s(by);
            reason.iter_mut().for_each(s);
        }
        ServerMsg::Ban { room, ban } => {
            room.iter_mut().for_each(s);
            clean_ban(ban);
        }
        ServerMsg::Unban {
            room, target, by, ..
        } => {
            room.iter_mut().for_each(s);
            s(target);
            s(by);
        }
        ServerMsg::BanList { room, bans, .. } => {
            room.iter_mut().for_each(s);
            bans.iter_mut().for_each(clean_ban);
        }
        ServerMsg::Role { room, name, by, .. } => {
            s(room);
            s(name);
            by.iter_mut().for_each(s);
        }
        ServerMsg::Mode { room, by, .. } => {
            s(room);
            by.iter_mut().for_each(s);
        }
        ServerMsg::Invite { room, name, by, .. } => {
            s(room);
            s(name);
            s(by);
        }
        ServerMsg::RoomClosed {
            room, by, reason, ..
        } => {
            s(room);
            s(by);
            reason.iter_mut().for_each(s);
        }
        ServerMsg::Connections { conns, .. } => {
            for c in conns {
                s(&mut c.name);
                s(&mut c.addr);
                c.account.iter_mut().for_each(s);
            }
        }
        ServerMsg::RoomList { rooms, after, .. } => {
            after.iter_mut().for_each(s);
            for RoomInfo { name, topic, .. } in rooms {
                s(name);
                s(topic);
            }
        }
        ServerMsg::History { room, messages, .. } => {
            s(room);
            messages.iter_mut().for_each(clean_message);
        }
        ServerMsg::Ack { cid, .. } => s(cid),
        ServerMsg::Error { message, cid, .. } => {
            s(message);
            cid.iter_mut().for_each(s);
        }
        ServerMsg::Ping { token } | ServerMsg::Pong { token } => s(token),
        ServerMsg::Bye { reason } => s(reason),
    }
    msg
}

fn clean_ban(b: &mut BanInfo) {
    sanitize_in_place(&mut b.target);
    sanitize_in_place(&mut b.by);
    b.reason.iter_mut().for_each(sanitize_in_place);
}

fn clean_message(m: &mut ChatMessage) {
    sanitize_in_place(&mut m.room);
    sanitize_in_place(&mut m.from);
    sanitize_in_place(&mut m.text);
}

/// `json` (the output of a JSON serializer) with `DEL` and the C1 controls escaped as `\u`
/// sequences too. JSON allows them raw, and a terminal in UTF-8 mode may act on a raw
/// `U+009B` as CSI; escaped, the document means exactly the same and is safe to print.
pub fn escape_json_controls(json: &str) -> Cow<'_, str> {
    if !json.chars().any(|c| c.is_control() && c as u32 >= 0x7f) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_control() && c as u32 >= 0x7f {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Cuts `text` into messages the server accepts: at most `max_lines` lines and `max_bytes`
/// bytes each, cutting between lines where it can, then at the last space, then between
/// characters. A paste longer than one message becomes several, in order, none lost.
pub fn split_message(text: &str, max_bytes: usize, max_lines: usize) -> Vec<String> {
    let max_bytes = max_bytes.max(4);
    let max_lines = max_lines.max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut lines_in_current = 0;
    for line in text.split('\n') {
        let mut line = line;
        loop {
            let sep = usize::from(lines_in_current > 0);
            if lines_in_current < max_lines && current.len() + sep + line.len() <= max_bytes {
                if sep == 1 {
                    current.push('\n');
                }
                current.push_str(line);
                lines_in_current += 1;
                break;
            }
            if lines_in_current > 0 {
                out.push(std::mem::take(&mut current));
                lines_in_current = 0;
                continue;
            }
            // One line longer than a message: cut at the last space that fits.
            let mut cut = max_bytes.min(line.len());
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            if !line[cut..].starts_with(' ')
                && let Some(space) = line[..cut].rfind(' ').filter(|&i| i > 0)
            {
                cut = space;
            }
            out.push(line[..cut].to_string());
            line = line[cut..].strip_prefix(' ').unwrap_or(&line[cut..]);
        }
    }
    if lines_in_current > 0 && !current.trim().is_empty() {
        out.push(current);
    }
    out.retain(|m| !m.trim().is_empty());
    out
}

/// A web address found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// Where it is in the text, in bytes.
    pub range: std::ops::Range<usize>,
    /// The address as written.
    pub url: &'a str,
    /// Set when the host name could pass for another: why, in words. Front-ends ask before
    /// opening such an address.
    pub lookalike: Option<String>,
}

/// The `http://` and `https://` addresses in `text`, with the punctuation that usually follows
/// an address in a sentence left out (`see https://x.org/a).` gives `https://x.org/a`).
pub fn urls(text: &str) -> Vec<Url<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find_scheme(&text[from..]) {
        let start = from + at;
        let rest = &text[start..];
        let mut end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
            .unwrap_or(rest.len());
        // Trailing sentence punctuation, and a closing bracket with no opening one inside.
        loop {
            let url = &rest[..end];
            let Some(last) = url.chars().last() else {
                break;
            };
            let unbalanced = |open: char, close: char| {
                last == close && url.matches(open).count() < url.matches(close).count()
            };
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'')
                || unbalanced('(', ')')
                || unbalanced('[', ']')
            {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        let url = &rest[..end];
        let host = host_of(url);
        if !host.is_empty() {
            found.push(Url {
                range: start..start + end,
                url,
                lookalike: lookalike(host),
            });
        }
        from = start + end.max(1);
    }
    found
}

fn find_scheme(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for scheme in ["https://", "http://"] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(scheme) {
            let at = from + i;
            // A scheme starts a word: not the end of `xhttps://`.
            let starts_word = lower[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric());
            if starts_word {
                best = Some(best.map_or(at, |b| b.min(at)));
                break;
            }
            from = at + scheme.len();
        }
    }
    best
}

/// The host part of an address: after the scheme, before any path, port or user info.
fn host_of(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.split(':').next().unwrap_or("")
}

/// Why a host name could pass for another one, if it could: letters outside ASCII (which is how
/// `аpple.com` with a Cyrillic `а` fools a reader), more so when scripts are mixed in one label.
fn lookalike(host: &str) -> Option<String> {
    use unicode_security::MixedScript;
    if host.is_ascii() {
        return None;
    }
    let mixed = host
        .split('.')
        .any(|label| !label.is_ascii() && !label.is_single_script());
    Some(if mixed {
        format!("{host} mixes alphabets in one name; it may imitate another address")
    } else {
        format!("{host} has letters outside ASCII; it may imitate another address")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_and_line_breaks_and_tabs_stay() {
        assert_eq!(sanitize("plain text"), Cow::Borrowed("plain text"));
        assert_eq!(sanitize("two\nlines\tand a tab"), "two\nlines\tand a tab");
        assert_eq!(sanitize("\u{1b}]2;PWNED\u{7}"), "\u{241b}]2;PWNED\u{2407}");
        assert_eq!(sanitize("\u{1b}[2J"), "\u{241b}[2J");
        assert_eq!(sanitize("bob\r<alice> hi"), "bob\u{240d}<alice> hi");
        assert_eq!(sanitize("a\u{9b}31mb"), "a<U+009B>31mb");
        assert_eq!(sanitize("\u{0}\u{7f}"), "\u{2400}\u{2421}");
    }

    #[test]
    fn nothing_unsafe_survives_any_input() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let text = format!("x{c}y");
            let clean = sanitize(&text);
            assert!(!clean.chars().any(is_unsafe), "U+{:04X} survived", c as u32);
        }
    }

    #[test]
    fn json_escapes_mean_the_same() {
        let json = serde_json::to_string("a\u{9b}b\u{7f}c\u{1b}").unwrap();
        let escaped = escape_json_controls(&json);
        assert!(!escaped.bytes().any(|b| b == 0x1b || b == 0x7f));
        assert!(!escaped.contains('\u{9b}'));
        let back: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, "a\u{9b}b\u{7f}c\u{1b}");
        // Other text, accents and emoji included, stays as it is.
        let plain = serde_json::to_string("zoë 🦀 日本").unwrap();
        assert!(matches!(escape_json_controls(&plain), Cow::Borrowed(_)));
        let mixed = serde_json::to_string("é\u{9b}").unwrap();
        assert_eq!(escape_json_controls(&mixed), "\"é\\u009b\"");
    }

    #[test]
    fn long_pastes_split_into_messages_the_server_accepts() {
        assert_eq!(split_message("one", 10, 2), vec!["one"]);
        assert_eq!(split_message("a\nb\nc", 100, 2), vec!["a\nb", "c"]);
        assert_eq!(
            split_message("hello world again", 11, 2),
            vec!["hello world", "again"]
        );
        // No space to cut at: between characters, never inside one.
        let parts = split_message("ééééé", 4, 2);
        assert_eq!(parts, vec!["éé", "éé", "é"]);
        // Blank lines inside are kept, blank messages are not made.
        assert_eq!(split_message("a\n\nb", 100, 5), vec!["a\n\nb"]);
        assert!(split_message("\n\n", 100, 1).is_empty());
        let text: String = (0..45).map(|i| format!("line {i}\n")).collect();
        let parts = split_message(text.trim_end(), 4000, 20);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.join("\n"), text.trim_end());
        for part in split_message(&"word ".repeat(500), 100, 3) {
            assert!(part.len() <= 100 && part.lines().count() <= 3);
        }
    }

    #[test]
    fn urls_are_found_with_sentence_punctuation_left_out() {
        let text = "see https://example.org/a_(b) and (http://x.io/p?q=1). or xhttps://no, HTTPS://Up.org!";
        let found: Vec<&str> = urls(text).iter().map(|u| u.url).collect();
        assert_eq!(
            found,
            vec![
                "https://example.org/a_(b)",
                "http://x.io/p?q=1",
                "HTTPS://Up.org"
            ]
        );
        for u in urls(text) {
            assert_eq!(&text[u.range.clone()], u.url);
            assert_eq!(u.lookalike, None);
        }
        assert!(urls("https:// nothing").is_empty());
        assert!(urls("no links here").is_empty());
    }

    #[test]
    fn lookalike_hosts_are_flagged() {
        // A Cyrillic "а" among Latin letters.
        let u = &urls("log in at https://\u{430}pple.com/login")[0];
        assert!(u.lookalike.as_deref().unwrap().contains("mixes alphabets"));
        let u = &urls("https://日本.jp/")[0];
        assert!(u.lookalike.as_deref().unwrap().contains("outside ASCII"));
        let u = &urls("https://user@example.com:8080/x")[0];
        assert_eq!(u.lookalike, None);
    }
}
