//! Hub messages as IRC lines.
//!
//! [`event`] writes what a room (or a user's peers) hears: the same bytes for every client of
//! one [`Caps::encoding`], so the hub encodes a room event once per flavour in use.
//! [`needs_recipient`] names the messages that are answers to one client: those go to its
//! [`super::Adapter`], which knows the client's nick and what it asked.

use bytes::BytesMut;

use super::line::{self, MAX_BODY, Message};
use super::{Cap, Caps, ServerInfo, mask, time_tag};
use crate::protocol::{BanInfo, ClientTags, MsgId, Role, RoomModes, ServerMsg, UnixMillis};

/// True for messages that IRC writes differently for each recipient (numerics carry the
/// recipient's nick): the hub hands these to the recipient's adapter instead of encoding them.
pub fn needs_recipient(msg: &ServerMsg) -> bool {
    !matches!(
        msg,
        ServerMsg::Join { .. }
            | ServerMsg::Part { .. }
            | ServerMsg::Quit { .. }
            | ServerMsg::Nick { .. }
            | ServerMsg::Message(_)
            | ServerMsg::Direct { .. }
            | ServerMsg::Topic { .. }
            | ServerMsg::Kick { .. }
            | ServerMsg::Ban { room: Some(_), .. }
            | ServerMsg::Unban { room: Some(_), .. }
            | ServerMsg::Role { .. }
            | ServerMsg::Mode { by: Some(_), .. }
            | ServerMsg::Away { .. }
            | ServerMsg::Realname { .. }
            | ServerMsg::Ping { .. }
            | ServerMsg::Bye { .. }
    )
}

/// Writes a room or peer event: everything [`needs_recipient`] is false for. Anything else is
/// written as nothing.
pub fn event(server: &ServerInfo, caps: Caps, msg: &ServerMsg, out: &mut BytesMut) {
    let user = |name: &str| mask(name, server);
    match msg {
        ServerMsg::Join { room, name, ts } => {
            emit(
                out,
                tags(caps, Some(*ts), None),
                &user(name),
                "JOIN",
                &[room],
            );
        }
        ServerMsg::Part {
            room,
            name,
            reason,
            ts,
        } => {
            let t = tags(caps, Some(*ts), None);
            match reason {
                Some(reason) => emit_trailing(out, t, &user(name), "PART", &[room, reason]),
                None => emit(out, t, &user(name), "PART", &[room]),
            }
        }
        ServerMsg::Quit { name, reason, ts } => {
            emit_trailing(
                out,
                tags(caps, Some(*ts), None),
                &user(name),
                "QUIT",
                &[&format!("Quit: {reason}")],
            );
        }
        ServerMsg::Realname { name, realname } if caps.has(Cap::Setname) => {
            emit_trailing(out, Vec::new(), &user(name), "SETNAME", &[realname]);
        }
        ServerMsg::Nick { old, new, ts } => {
            emit(out, tags(caps, Some(*ts), None), &user(old), "NICK", &[new]);
        }
        ServerMsg::Message(m) => {
            let mut tags = tags(caps, Some(m.ts), Some(m.id));
            bot_tag(caps, m.bot, &mut tags);
            let multiline = caps.has(Cap::Multiline).then_some(m.id);
            let said = Said {
                text: &m.text,
                action: m.action,
                notice: m.notice,
                tags: &m.tags,
            };
            said.write(out, caps, tags, &user(&m.from), &m.room, multiline);
        }
        ServerMsg::Direct {
            id,
            ts,
            from,
            to,
            text,
            action,
            notice,
            bot,
            tags: client,
        } => {
            let multiline = caps.has(Cap::Multiline).then_some(*id);
            let said = Said {
                text,
                action: *action,
                notice: *notice,
                tags: client,
            };
            let mut tags = tags(caps, Some(*ts), Some(*id));
            bot_tag(caps, *bot, &mut tags);
            said.write(out, caps, tags, &user(from), to, multiline);
        }
        ServerMsg::Topic {
            room,
            topic,
            by,
            ts,
        } => {
            let source = by.as_deref().map_or_else(|| server.name.clone(), user);
            emit_trailing(out, tags(caps, *ts, None), &source, "TOPIC", &[room, topic]);
        }
        ServerMsg::Kick {
            room,
            name,
            by,
            reason,
            ts,
        } => {
            let reason = reason.as_deref().unwrap_or(by);
            emit_trailing(
                out,
                tags(caps, Some(*ts), None),
                &user(by),
                "KICK",
                &[room, name, reason],
            );
        }
        ServerMsg::Ban {
            room: Some(room),
            ban,
        } => {
            let m = ban_mask(&ban.target, ban.mute);
            emit(
                out,
                tags(caps, Some(ban.ts), None),
                &user(&ban.by),
                "MODE",
                &[room, "+b", &m],
            );
        }
        ServerMsg::Unban {
            room: Some(room),
            target,
            mute,
            by,
            ts,
        } => {
            let m = ban_mask(target, *mute);
            emit(
                out,
                tags(caps, Some(*ts), None),
                &user(by),
                "MODE",
                &[room, "-b", &m],
            );
        }
        ServerMsg::Role {
            room,
            name,
            role,
            before,
            by,
            ts,
        } => {
            let source = by.as_deref().map_or_else(|| server.name.clone(), user);
            let (change, count) = match before {
                Some(before) => role_diff(*before, *role),
                None => (role_change(*role).0.to_string(), role_change(*role).1),
            };
            if count == 0 {
                return;
            }
            let change = change.as_str();
            let mut params = vec![room.as_str(), change];
            params.extend(std::iter::repeat_n(name.as_str(), count));
            emit(out, tags(caps, Some(*ts), None), &source, "MODE", &params);
        }
        ServerMsg::Mode {
            room,
            modes,
            before,
            by: Some(by),
            ts,
            ..
        } => {
            let (change, args) = match before {
                Some(before) => mode_diff(before, modes),
                None => mode_change(modes),
            };
            if change.is_empty() {
                return;
            }
            let mut params = vec![room.as_str(), change.as_str()];
            params.extend(args.iter().map(String::as_str));
            emit(out, tags(caps, *ts, None), &user(by), "MODE", &params);
        }
        ServerMsg::Away { name, reason } if caps.has(Cap::AwayNotify) => match reason {
            Some(reason) => emit_trailing(out, Vec::new(), &user(name), "AWAY", &[reason]),
            None => emit(out, Vec::new(), &user(name), "AWAY", &[]),
        },
        ServerMsg::Ping { token } => emit_trailing(out, Vec::new(), "", "PING", &[token]),
        ServerMsg::Bye { reason } => {
            emit_trailing(
                out,
                Vec::new(),
                "",
                "ERROR",
                &[&format!("Closing link: {reason}")],
            );
        }
        _ => {}
    }
}

/// The tags an event carries for a client with `caps`.
pub(crate) fn tags(
    caps: Caps,
    ts: Option<UnixMillis>,
    id: Option<MsgId>,
) -> Vec<(String, Option<String>)> {
    let mut tags = Vec::new();
    if let (true, Some(id)) = (caps.has(Cap::MessageTags), id) {
        tags.push(("msgid".to_string(), Some(id.to_string())));
    }
    if let (true, Some(ts)) = (caps.has(Cap::ServerTime), ts) {
        tags.push(("time".to_string(), Some(time_tag(ts))));
    }
    tags
}

/// The `bot` tag of a bot's message, for a client with `message-tags`.
pub(crate) fn bot_tag(caps: Caps, bot: bool, tags: &mut Vec<(String, Option<String>)>) {
    if bot && caps.has(Cap::MessageTags) {
        tags.push(("bot".to_string(), None));
    }
}

/// Writes one line; an empty `source` writes none.
pub(crate) fn emit(
    out: &mut BytesMut,
    tags: Vec<(String, Option<String>)>,
    source: &str,
    command: &str,
    params: &[&str],
) {
    write(out, tags, source, command, params, false);
}

/// [`emit`] with the last parameter always trailing (free text).
pub(crate) fn emit_trailing(
    out: &mut BytesMut,
    tags: Vec<(String, Option<String>)>,
    source: &str,
    command: &str,
    params: &[&str],
) {
    write(out, tags, source, command, params, true);
}

fn write(
    out: &mut BytesMut,
    tags: Vec<(String, Option<String>)>,
    source: &str,
    command: &str,
    params: &[&str],
    trailing: bool,
) {
    let last = params.len().saturating_sub(1);
    let msg = Message {
        tags,
        source: (!source.is_empty()).then(|| source.to_string()),
        command: command.to_string(),
        params: params
            .iter()
            .enumerate()
            .map(|(i, p)| param(p, i == last))
            .collect(),
    };
    line::write_with_trailing(&msg, trailing, out);
}

/// A parameter as it can travel: CR, LF and NUL (which would end or corrupt the line) become
/// spaces; a middle parameter cannot be empty, hold a space or start with `:`, so such a one
/// (which only free text could make) becomes `*`.
fn param(p: &str, last: bool) -> String {
    let p = if p.contains(['\r', '\n', '\0']) {
        p.replace(['\r', '\n', '\0'], " ")
    } else {
        p.to_string()
    };
    if !last && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
        return "*".into();
    }
    p
}

/// A message as IRC writes it: PRIVMSG or NOTICE lines, or a TAGMSG for tags alone.
pub(crate) struct Said<'a> {
    pub text: &'a str,
    pub action: bool,
    pub notice: bool,
    pub tags: &'a ClientTags,
}

impl Said<'_> {
    /// Writes it for a client with `caps`: with its client-only tags after `tags` when the
    /// client has `message-tags`; a message of tags alone is a TAGMSG, and nothing to a
    /// client without that capability.
    pub(crate) fn write(
        &self,
        out: &mut BytesMut,
        caps: Caps,
        mut tags: Vec<(String, Option<String>)>,
        source: &str,
        target: &str,
        multiline: Option<MsgId>,
    ) {
        if caps.has(Cap::MessageTags) {
            for (name, value) in self.tags {
                let value = (!value.is_empty()).then(|| value.clone());
                tags.push((format!("+{name}"), value));
            }
        }
        if self.text.is_empty() {
            if caps.has(Cap::MessageTags) {
                emit(out, tags, source, "TAGMSG", &[target]);
            }
            return;
        }
        let command = if self.notice { "NOTICE" } else { "PRIVMSG" };
        privmsg_lines(
            out,
            tags,
            source,
            command,
            target,
            self.text,
            self.action,
            multiline,
        );
    }
}

/// Writes a message as `command` (PRIVMSG or NOTICE) lines: one per line of text, each cut
/// (at a space when there is one) so that the line without its source, `PRIVMSG target
/// text\r\n`, fits 512 bytes: what an IRC client may send is relayed whole, as one line,
/// with its source before it, as ergo and InspIRCd do. An action is a CTCP ACTION. The
/// `msgid` goes on the first line, the client's tags on every line. For a client with
/// `draft/multiline` (`multiline` is the message id), a message that takes more than one line
/// is one `draft/multiline` batch carrying the message's tags, with pieces of a cut line
/// marked `draft/multiline-concat`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn privmsg_lines(
    out: &mut BytesMut,
    mut tags: Vec<(String, Option<String>)>,
    source: &str,
    command: &str,
    target: &str,
    text: &str,
    action: bool,
    multiline: Option<MsgId>,
) {
    // "PRIVMSG target " and "\r\n", and the CTCP framing of an action; neither the source
    // nor the colon marking the text is counted: a client's line of 512 bytes arrives whole,
    // whether it wrote the colon or not.
    let overhead = command.len() + 1 + target.len() + 1 + 2 + if action { 9 } else { 0 };
    let room = MAX_BODY.saturating_sub(overhead).max(16);
    // NUL, CR and the CTCP delimiter cannot travel inside an IRC message.
    let text: std::borrow::Cow<'_, str> = if text.contains(['\0', '\r', '\u{1}']) {
        text.replace(['\0', '\r', '\u{1}'], "").into()
    } else {
        text.into()
    };
    let batch_room = MAX_BODY.saturating_sub(overhead + 14).max(16);
    if let (Some(id), false) = (multiline, action)
        && (text.contains('\n') || text.len() > room)
    {
        let reference = format!("ml{id}");
        let start = format!("+{reference}");
        emit(
            out,
            tags,
            source,
            "BATCH",
            &[&start, "draft/multiline", target],
        );
        let batch = ("batch".to_string(), Some(reference.clone()));
        for text_line in text.split('\n') {
            for (i, chunk) in chunks(text_line, batch_room).into_iter().enumerate() {
                let mut t = vec![batch.clone()];
                if i > 0 {
                    t.push(("draft/multiline-concat".to_string(), None));
                }
                emit_trailing(out, t, source, command, &[target, chunk]);
            }
        }
        emit(
            out,
            Vec::new(),
            source,
            "BATCH",
            &[&format!("-{reference}")],
        );
        return;
    }
    let several = text.contains('\n');
    for text_line in text.split('\n') {
        // A blank line of a multi-line message cannot travel as a line of its own.
        if several && text_line.is_empty() {
            continue;
        }
        for chunk in chunks(text_line, room) {
            let body = if action {
                format!("\u{1}ACTION {chunk}\u{1}")
            } else {
                chunk.to_string()
            };
            emit_trailing(out, tags.clone(), source, command, &[target, &body]);
            // The id is the message's, on its first line; the client's tags go on every part.
            tags.retain(|(k, _)| k != "msgid");
        }
    }
}

/// Cuts `text` into pieces of at most `max` bytes, at a space when one is in the second half,
/// else at a character boundary. An empty text is one empty piece.
pub(crate) fn chunks(mut text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    while text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = text[..cut].rfind(' ').filter(|&s| s >= max / 2) {
            cut = space + 1;
        }
        pieces.push(&text[..cut]);
        text = &text[cut..];
    }
    pieces.push(text);
    pieces
}

/// A ban target as an IRC mask: `account:x` as `$a:x`, `name:p` as `p!*@*`, `addr:a` as
/// `*!*@a`, `guest:n` (a guest's address, shown by name) as `n!*@*`; a mute as `m:` before it.
pub fn ban_mask(target: &str, mute: bool) -> String {
    let mask = if let Some(account) = target.strip_prefix("account:") {
        format!("$a:{account}")
    } else if let Some(pattern) = target
        .strip_prefix("name:")
        .or_else(|| target.strip_prefix("guest:"))
    {
        format!("{pattern}!*@*")
    } else if let Some(addr) = target.strip_prefix("addr:") {
        format!("*!*@{addr}")
    } else {
        target.to_string()
    };
    if mute { format!("m:{mask}") } else { mask }
}

/// An IRC ban mask as a ban target, and whether it is a mute (`m:`): the inverse of
/// [`ban_mask`]. `nick` alone is a bare name (the hub resolves it to the account or the guest's
/// address); `nick!*@*` a name pattern; `*!*@host` an address.
pub fn parse_mask(mask: &str) -> (String, bool) {
    let (mask, mute) = match mask.strip_prefix("m:") {
        Some(rest) => (rest, true),
        None => (mask, false),
    };
    let target = if let Some(account) = mask.strip_prefix("$a:") {
        format!("account:{account}")
    } else if let Some((nick, rest)) = mask.split_once('!') {
        let host = rest.split_once('@').map_or("*", |(_, h)| h);
        if nick == "*" && host != "*" {
            format!("addr:{host}")
        } else {
            format!("name:{nick}")
        }
    } else if let Some(host) = mask.strip_prefix("*@") {
        format!("addr:{host}")
    } else {
        mask.to_string()
    };
    (target, mute)
}

/// The MODE change that leaves someone with exactly `role`, and how many times the nick
/// follows it.
/// A role's change as IRC writes it, with how many times the nick follows: `+o` from nothing,
/// `-v+o` from voice, `-q` to nothing.
fn role_diff(before: Role, after: Role) -> (String, usize) {
    let letter = |r: Role| match r {
        Role::Owner => Some('q'),
        Role::Op => Some('o'),
        Role::Voice => Some('v'),
        Role::Member => None,
    };
    match (letter(before), letter(after)) {
        (Some(b), Some(a)) if a != b => (format!("-{b}+{a}"), 2),
        (None, Some(a)) => (format!("+{a}"), 1),
        (Some(b), None) => (format!("-{b}"), 1),
        _ => (String::new(), 0),
    }
}

fn role_change(role: Role) -> (&'static str, usize) {
    match role {
        Role::Owner => ("-ov+q", 3),
        Role::Op => ("-qv+o", 3),
        Role::Voice => ("-qo+v", 3),
        Role::Member => ("-qov", 3),
    }
}

/// What changed between two sets of modes, as IRC writes a change: `+l 5`, `-k *`, `+m-i`.
pub fn mode_diff(before: &RoomModes, after: &RoomModes) -> (String, Vec<String>) {
    let flags = |m: &RoomModes| {
        [
            ('i', m.invite_only),
            ('k', m.key),
            ('m', m.moderated),
            ('n', !m.open),
            ('s', m.secret),
            ('t', m.topic_lock),
            ('R', m.registered_only),
        ]
    };
    let mut set = Vec::new();
    let mut unset = Vec::new();
    for ((c, was), (_, is)) in flags(before).into_iter().zip(flags(after)) {
        match (was, is) {
            (false, true) => set.push((c, (c == 'k').then(|| "*".to_string()))),
            (true, false) => unset.push((c, (c == 'k').then(|| "*".to_string()))),
            _ => {}
        }
    }
    match (before.limit, after.limit) {
        (was, Some(n)) if was != Some(n) => set.push(('l', Some(n.to_string()))),
        (Some(_), None) => unset.push(('l', None)),
        _ => {}
    }
    let mut change = String::new();
    let mut args = Vec::new();
    for (sign, list) in [('+', set), ('-', unset)] {
        if list.is_empty() {
            continue;
        }
        change.push(sign);
        for (c, arg) in list {
            change.push(c);
            args.extend(arg);
        }
    }
    (change, args)
}

/// A room's modes as one MODE change that sets every one of them explicitly: `+mt-ikR`. The
/// key itself is never shown; its parameter is `*`.
pub fn mode_change(modes: &RoomModes) -> (String, Vec<String>) {
    let flags = [
        ('i', modes.invite_only),
        ('k', modes.key),
        ('m', modes.moderated),
        ('n', !modes.open),
        ('s', modes.secret),
        ('t', modes.topic_lock),
        ('R', modes.registered_only),
    ];
    let mut change = String::new();
    let mut args = Vec::new();
    for (sign, on) in [('+', true), ('-', false)] {
        let letters: Vec<char> = flags
            .iter()
            .filter(|(_, v)| *v == on)
            .map(|(c, _)| *c)
            .collect();
        if letters.is_empty() {
            continue;
        }
        change.push(sign);
        for c in letters {
            change.push(c);
            if c == 'k' {
                args.push("*".to_string());
            }
        }
    }
    if let Some(n) = modes.limit {
        change.push_str(if change.contains('-') { "+l" } else { "l" });
        args.push(n.to_string());
    }
    (change, args)
}

/// The modes a room has, as 324 shows them: `+mt` (`+` alone for none).
pub fn mode_string(modes: &RoomModes) -> (String, Vec<String>) {
    let mut s = String::from("+");
    let mut args = Vec::new();
    for (c, on) in [
        ('i', modes.invite_only),
        ('k', modes.key),
        ('m', modes.moderated),
        // No messages from outside, unless the room is open.
        ('n', !modes.open),
        ('s', modes.secret),
        ('t', modes.topic_lock),
        ('R', modes.registered_only),
    ] {
        if on {
            s.push(c);
            if c == 'k' {
                args.push("*".to_string());
            }
        }
    }
    if let Some(n) = modes.limit {
        s.push('l');
        args.push(n.to_string());
    }
    (s, args)
}

/// One entry of a ban list (367): the mask, who set it, when (seconds).
pub(crate) fn ban_entry(ban: &BanInfo) -> (String, String, String) {
    (
        ban_mask(&ban.target, ban.mute),
        ban.by.clone(),
        (ban.ts / 1000).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatMessage;

    fn text(server: &ServerInfo, caps: Caps, msg: &ServerMsg) -> String {
        let mut out = BytesMut::new();
        event(server, caps, msg, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn message(text: &str, action: bool) -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            id: 42,
            ts: 1_764_140_400_123,
            room: "#den".into(),
            from: "ann".into(),
            text: text.into(),
            action,
            notice: false,
            tags: Default::default(),
            bot: false,
        })
    }

    #[test]
    fn messages_with_and_without_tags() {
        let s = ServerInfo::default();
        assert_eq!(
            text(&s, Caps::default(), &message("hi all", false)),
            ":ann!ann@chat-server PRIVMSG #den :hi all\r\n"
        );
        let caps = Caps::default()
            .with(Cap::MessageTags, true)
            .with(Cap::ServerTime, true);
        assert_eq!(
            text(&s, caps, &message("waves", true)),
            "@msgid=42;time=2025-11-26T07:00:00.123Z :ann!ann@chat-server PRIVMSG #den :\u{1}ACTION waves\u{1}\r\n"
        );
        assert_eq!(
            text(
                &s,
                caps.with(Cap::MessageTags, false),
                &message("a\nb", false)
            ),
            "@time=2025-11-26T07:00:00.123Z :ann!ann@chat-server PRIVMSG #den :a\r\n\
             @time=2025-11-26T07:00:00.123Z :ann!ann@chat-server PRIVMSG #den :b\r\n"
        );
    }

    #[test]
    fn multiline_clients_get_one_batch() {
        let s = ServerInfo::default();
        let caps = Caps::default()
            .with(Cap::MessageTags, true)
            .with(Cap::Multiline, true);
        assert_eq!(
            text(&s, caps, &message("first\nsecond", false)),
            "@msgid=42 :ann!ann@chat-server BATCH +ml42 draft/multiline #den\r\n\
             @batch=ml42 :ann!ann@chat-server PRIVMSG #den :first\r\n\
             @batch=ml42 :ann!ann@chat-server PRIVMSG #den :second\r\n\
             :ann!ann@chat-server BATCH -ml42\r\n"
        );
        // A single short line stays a plain PRIVMSG.
        assert_eq!(
            text(&s, caps, &message("one", false)),
            "@msgid=42 :ann!ann@chat-server PRIVMSG #den :one\r\n"
        );
        // A long line is cut, the pieces after the first marked as concatenated.
        let long = "x".repeat(700);
        let out = text(&s, caps, &message(&long, false));
        assert!(
            out.contains("@batch=ml42;draft/multiline-concat :ann"),
            "{out}"
        );
        assert!(out.split("\r\n").all(|l| l.len() <= 512 + 64));
    }

    #[test]
    fn a_full_line_from_a_client_is_relayed_whole() {
        let s = ServerInfo::default();
        // `PRIVMSG #den <text>` with no colon, as long as a client may send: 512 bytes.
        let long = "a".repeat(512 - "PRIVMSG #den ".len() - 2);
        let out = text(&s, Caps::default(), &message(&long, false));
        assert_eq!(out.matches("\r\n").count(), 1, "one line: {out}");
        assert!(out.ends_with(&format!(" :{long}\r\n")));
    }

    #[test]
    fn long_text_is_cut_to_fit_512_bytes() {
        let s = ServerInfo::default();
        let long = format!("{} {}", "a".repeat(300), "é".repeat(300));
        let out = text(&s, Caps::default(), &message(&long, false));
        let lines: Vec<&str> = out.split_terminator("\r\n").collect();
        assert!(lines.len() >= 2);
        let mut back = String::new();
        for line in &lines {
            let without_source = line.split_once(' ').unwrap().1;
            // The colon before the text is not counted (a client may leave it out).
            assert!(without_source.len() < MAX_BODY, "{} bytes", line.len());
            back.push_str(line.split_once(" :").unwrap().1);
        }
        assert_eq!(back, long);
    }

    #[test]
    fn room_events() {
        let s = ServerInfo::default();
        let none = Caps::default();
        let ev = |m: ServerMsg| text(&s, none, &m);
        assert_eq!(
            ev(ServerMsg::Join {
                room: "#den".into(),
                name: "bo".into(),
                ts: 1
            }),
            ":bo!bo@chat-server JOIN #den\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Part {
                room: "#den".into(),
                name: "bo".into(),
                reason: Some("bye now".into()),
                ts: 1
            }),
            ":bo!bo@chat-server PART #den :bye now\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Quit {
                name: "bo".into(),
                reason: "ping timeout".into(),
                ts: 1
            }),
            ":bo!bo@chat-server QUIT :Quit: ping timeout\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Nick {
                old: "bo".into(),
                new: "bob".into(),
                ts: 1
            }),
            ":bo!bo@chat-server NICK bob\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Topic {
                room: "#den".into(),
                topic: "".into(),
                by: Some("bo".into()),
                ts: Some(1)
            }),
            ":bo!bo@chat-server TOPIC #den :\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Kick {
                room: "#den".into(),
                name: "tr".into(),
                by: "bo".into(),
                reason: None,
                ts: 1
            }),
            ":bo!bo@chat-server KICK #den tr :bo\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Role {
                room: "#den".into(),
                name: "cy".into(),
                role: Role::Op,
                before: None,
                by: Some("bo".into()),
                ts: 1
            }),
            ":bo!bo@chat-server MODE #den -qv+o cy cy cy\r\n"
        );
        // Knowing the role before, only the change: +o from nothing, -v+o from voice, -o.
        for (before, after, line) in [
            (Role::Member, Role::Op, "MODE #den +o cy\r\n"),
            (Role::Voice, Role::Op, "MODE #den -v+o cy cy\r\n"),
            (Role::Op, Role::Member, "MODE #den -o cy\r\n"),
        ] {
            let out = ev(ServerMsg::Role {
                room: "#den".into(),
                name: "cy".into(),
                role: after,
                before: Some(before),
                by: Some("bo".into()),
                ts: 1,
            });
            assert!(out.ends_with(line), "{out}");
        }
        let modes = RoomModes {
            moderated: true,
            key: true,
            ..RoomModes::default()
        };
        assert_eq!(
            ev(ServerMsg::Mode {
                room: "#den".into(),
                modes,
                before: None,
                created: None,
                by: Some("bo".into()),
                ts: Some(1)
            }),
            ":bo!bo@chat-server MODE #den +kmn-istR *\r\n"
        );
        // With the modes before: only what changed, as IRC servers echo a MODE.
        let before = RoomModes {
            moderated: true,
            limit: Some(5),
            ..RoomModes::default()
        };
        assert_eq!(
            ev(ServerMsg::Mode {
                room: "#den".into(),
                modes: RoomModes {
                    limit: Some(10),
                    topic_lock: true,
                    ..RoomModes::default()
                },
                before: Some(before),
                created: None,
                by: Some("bo".into()),
                ts: Some(1)
            }),
            ":bo!bo@chat-server MODE #den +tl-m 10\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Mode {
                room: "#den".into(),
                modes: RoomModes::default(),
                before: Some(RoomModes {
                    limit: Some(5),
                    ..RoomModes::default()
                }),
                created: None,
                by: Some("bo".into()),
                ts: Some(1)
            }),
            ":bo!bo@chat-server MODE #den -l\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Ping {
                token: "t 1".into()
            }),
            "PING :t 1\r\n"
        );
        assert_eq!(
            ev(ServerMsg::Bye {
                reason: "quit".into()
            }),
            "ERROR :Closing link: quit\r\n"
        );
        assert_eq!(ev(ServerMsg::Pong { token: "x".into() }), "");
    }

    #[test]
    fn ban_masks_both_ways() {
        for (target, mute, mask) in [
            ("account:troll", false, "$a:troll"),
            ("name:tr*ll", false, "tr*ll!*@*"),
            ("addr:10.0.0.0/8", true, "m:*!*@10.0.0.0/8"),
        ] {
            assert_eq!(ban_mask(target, mute), mask);
            assert_eq!(parse_mask(mask), (target.to_string(), mute));
        }
        assert_eq!(ban_mask("guest:bo", false), "bo!*@*");
        assert_eq!(parse_mask("troll"), ("troll".into(), false));
        assert_eq!(parse_mask("*@1.2.3.4"), ("addr:1.2.3.4".into(), false));
        assert_eq!(parse_mask("bo!x@y"), ("name:bo".into(), false));
    }

    #[test]
    fn chunks_cut_at_spaces_and_characters() {
        assert_eq!(chunks("", 10), vec![""]);
        assert_eq!(chunks("abc def ghi", 8), vec!["abc def ", "ghi"]);
        assert_eq!(chunks("ééé", 3), vec!["é", "é", "é"]);
    }
}
