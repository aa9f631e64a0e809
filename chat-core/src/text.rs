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
        ServerMsg::Members {
            room,
            names,
            roles,
            after,
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
}
