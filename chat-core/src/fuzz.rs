//! Drivers that feed arbitrary bytes to the codec and the hub and check what must always hold.
//! The cargo-fuzz targets in `fuzz/` call these, and so do property tests, so a finding from
//! either reproduces with the other.
//!
//! Each function panics when an invariant breaks (that is the finding); a panic from inside the
//! code under test is a finding too.

use bytes::BytesMut;

use std::collections::HashMap;

use crate::codec::{LineDecoder, Wire, decode_client, decode_server};
use crate::hub::{ConnId, Hub, HubConfig, Input, Output, PasswordWork};
use crate::irc;
use crate::password::PasswordCost;
use crate::protocol::{ChatMessage, MsgId, ServerMsg};

/// Splits `data` into lines with a decoder whose limit comes from the first byte, decodes every
/// line as a client and as a server message, and checks that no line over the limit comes out.
pub fn codec(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first).max(2) * 4;
    let mut decoder = LineDecoder::new(max);
    let mut buf = BytesMut::new();
    // Feed in uneven chunks, as a socket would.
    for chunk in rest.chunks(usize::from(first % 13) + 1) {
        buf.extend_from_slice(chunk);
        while let Some(line) = decoder.next_line(&mut buf) {
            if let Ok(line) = line {
                assert!(line.len() < max, "a line of {} over {max}", line.len());
                assert!(!line.contains(&b'\n'));
                let _ = decode_client(&line);
                let _ = decode_server(&line);
            }
        }
        assert!(buf.len() < max, "{} bytes buffered over {max}", buf.len());
    }
}

/// Splits `data` into IRC lines (as the server's reader does), parses each, writes back what
/// parsed and checks it parses to the same message, and feeds every line to an IRC adapter
/// that has not registered, checking that what it answers is well-formed IRC.
pub fn irc_codec(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = LineDecoder::new(irc::line::MAX_LINE);
    let mut adapter = irc::Adapter::new(std::sync::Arc::new(irc::ServerInfo::default()));
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(usize::from(first % 29) + 1) {
        buf.extend_from_slice(chunk);
        while let Some(line) = decoder.next_line(&mut buf) {
            let parsed = match line {
                Ok(line) => irc::line::parse(&line),
                Err(_) => Err(irc::LineError::TooLong),
            };
            if let Ok(msg) = &parsed {
                let mut out = BytesMut::new();
                irc::line::write(msg, &mut out);
                let again = irc::line::parse(&out[..out.len() - 2]);
                assert_eq!(again.as_ref(), Ok(msg), "{msg:?} wrote as {out:?}");
            }
            for action in adapter.line(parsed) {
                if let irc::Action::Send(bytes) = action {
                    check_irc(&bytes);
                }
            }
        }
    }
}

/// Client lines the hub driver picks from, so that arbitrary input reaches deep states quickly;
/// arbitrary bytes are sent too.
const LINES: &[&str] = &[
    r#"{"type":"hello","version":1,"name":"ann"}"#,
    r#"{"type":"hello","version":1,"name":"ANN"}"#,
    r#"{"type":"hello","version":1,"name":"bob"}"#,
    r#"{"type":"hello","version":1,"name":"\u0430nn"}"#,
    r#"{"type":"hello","version":2,"name":"old"}"#,
    r#"{"type":"nick","name":"cy"}"#,
    r#"{"type":"nick","name":"ann"}"#,
    r##"{"type":"join","room":"#a"}"##,
    r##"{"type":"join","room":"#b","since":1}"##,
    r##"{"type":"join","room":"#lobby","since":0}"##,
    r##"{"type":"join","room":"#\u0430"}"##,
    r##"{"type":"part","room":"#a","reason":"bye"}"##,
    r##"{"type":"part","room":"#lobby"}"##,
    r##"{"type":"say","room":"#a","text":"hi"}"##,
    r##"{"type":"say","room":"#lobby","text":"hi","cid":"x1"}"##,
    r##"{"type":"say","room":"#lobby","text":"again","cid":"x2"}"##,
    r##"{"type":"me","room":"#b","text":"waves","cid":"x1"}"##,
    r#"{"type":"msg","to":"bob","text":"psst","cid":"x3"}"#,
    r#"{"type":"msg","to":"ann","text":"psst"}"#,
    r##"{"type":"topic","room":"#a","topic":"t"}"##,
    r##"{"type":"topic","room":"#lobby"}"##,
    r##"{"type":"who","room":"#a"}"##,
    r#"{"type":"rooms"}"#,
    r##"{"type":"history","room":"#lobby","before":3,"limit":2}"##,
    r#"{"type":"ping","token":"p"}"#,
    r#"{"type":"pong","token":"p"}"#,
    r#"{"type":"quit","reason":"done"}"#,
    r#"{"type":"away","reason":"lunch"}"#,
    r#"{"type":"away"}"#,
    r##"{"type":"mark_read","target":"#a","id":3}"##,
    r#"{"type":"mark_read","target":"ann","id":1}"#,
    r##"{"type":"search","room":"#a","query":"t"}"##,
    r##"{"type":"search","room":"#lobby","query":"x y","before":2,"limit":1}"##,
    r#"{"type":"nope"}"#,
    r#"{"type":"register","password":"password1"}"#,
    r#"{"type":"register","password":"short"}"#,
    r#"{"type":"hello","version":1,"name":"ann","password":"password1"}"#,
    r#"{"type":"hello","version":1,"name":"ann","password":"wrong password"}"#,
    r#"{"type":"login","account":"ANN","password":"password1"}"#,
    r#"{"type":"login","account":"bob","password":"password2"}"#,
    r#"{"type":"logout"}"#,
    r#"{"type":"passwd","old":"password1","new":"password2"}"#,
    r#"{"type":"unregister","password":"password1"}"#,
    r##"{"type":"kick","room":"#a","name":"bob","reason":"r"}"##,
    r##"{"type":"ban","room":"#a","target":"bob","duration":1}"##,
    r##"{"type":"ban","room":"#a","target":"name:c*","mute":true}"##,
    r##"{"type":"ban","room":"#lobby","target":"account:ann"}"##,
    r##"{"type":"unban","room":"#a","target":"bob"}"##,
    r##"{"type":"unban","room":"#a","target":"name:c*","mute":true}"##,
    r##"{"type":"bans","room":"#a"}"##,
    r##"{"type":"role","room":"#a","name":"bob","role":"op"}"##,
    r##"{"type":"role","room":"#a","name":"ann","role":"member"}"##,
    r##"{"type":"mode","room":"#a","moderated":true,"invite_only":true,"key":"k"}"##,
    r##"{"type":"mode","room":"#a","moderated":false,"invite_only":false,"key":""}"##,
    r##"{"type":"join","room":"#a","key":"k"}"##,
    r##"{"type":"invite","room":"#a","name":"bob","duration":2}"##,
    r#"{"type":"kill","name":"bob"}"#,
    r#"{"type":"server_ban","target":"bob","duration":1}"#,
    r#"{"type":"server_unban","target":"bob"}"#,
    r#"{"type":"server_bans"}"#,
    r##"{"type":"close_room","room":"#a"}"##,
    r##"{"type":"open_room","room":"#a"}"##,
    r#"{"type":"connections"}"#,
];

/// Drives a hub with connections, frames, disconnects, time, commits and store answers taken
/// from `data`, and checks after every step: the hub's own consistency
/// ([`Hub::check_invariants`]), that message ids are handed out strictly increasing, that the
/// store is asked to keep each id once and in order, that nothing is sent to a connection the
/// hub does not know, and that every output is well-formed JSON Lines.
pub fn hub(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let Some(flags) = next() else {
        return;
    };
    let config = HubConfig {
        durable: flags & 1 != 0,
        flood_rate: if flags & 2 != 0 { 0 } else { 5 },
        flood_burst: 3,
        flood_queue: 4,
        history: 3,
        join_history: 2,
        max_rooms: 3,
        room_create_burst: 2,
        room_create_per_minute: 2,
        room_expiry: 5_000,
        dedupe_window: 4,
        max_held: 5,
        max_rooms_per_conn: 3,
        ping_interval: 10_000,
        ping_timeout: 5_000,
        register_timeout: 5_000,
        operators: vec!["ann".into()],
        max_rooms_per_guest: 2,
        max_owned_rooms: 1,
        max_list: 2,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config);
    let server = std::sync::Arc::new(irc::ServerInfo::default());
    let mut now = 1_000_000u64;
    let mut next_conn = 0u64;
    let mut wall = now;
    let mut c = Checker::default();
    while let Some(op) = next() {
        let pick = |n: u8, len: usize| usize::from(n) % len.max(1);
        hub.set_wall_clock(wall);
        match op % 8 {
            0 if c.open.len() < 6 => {
                next_conn += 1;
                let conn = ConnId(next_conn);
                c.open.push(conn);
                // Some connections speak IRC, through the adapter the server runs.
                let wire = if next().unwrap_or(0) % 3 == 0 {
                    c.irc.insert(conn, irc::Adapter::new(server.clone()));
                    Wire::Irc(irc::Caps::default())
                } else {
                    Wire::Json
                };
                hub.handle(
                    now,
                    Input::Connect {
                        conn,
                        addr: std::net::Ipv4Addr::LOCALHOST.into(),
                        wire,
                    },
                );
            }
            1..=3 if !c.open.is_empty() => {
                let conn = c.open[pick(next().unwrap_or(0), c.open.len())];
                if c.irc.contains_key(&conn) {
                    let line = IRC_LINES[pick(next().unwrap_or(0), IRC_LINES.len())];
                    c.irc_line(&mut hub, now, conn, line.as_bytes());
                } else {
                    let line = LINES[pick(next().unwrap_or(0), LINES.len())];
                    let frame = decode_client(line.as_bytes());
                    hub.handle(now, Input::Frame { conn, frame });
                }
            }
            4 if !c.open.is_empty() => {
                // Raw bytes of the input's own choosing, through the real decoder.
                let conn = c.open[pick(next().unwrap_or(0), c.open.len())];
                let len = usize::from(next().unwrap_or(0) % 48);
                let raw: Vec<u8> = (0..len).map_while(|_| next()).collect();
                if c.irc.contains_key(&conn) {
                    c.irc_line(&mut hub, now, conn, &raw);
                } else {
                    let mut decoder = LineDecoder::new(64);
                    let mut buf = BytesMut::from(&raw[..]);
                    buf.extend_from_slice(b"\n");
                    while let Some(line) = decoder.next_line(&mut buf) {
                        let frame = line.and_then(|l| decode_client(&l));
                        hub.handle(now, Input::Frame { conn, frame });
                    }
                }
            }
            5 if !c.open.is_empty() => {
                let i = pick(next().unwrap_or(0), c.open.len());
                let conn = c.open.swap_remove(i);
                c.irc.remove(&conn);
                let reason = "connection lost".into();
                hub.handle(now, Input::Disconnect { conn, reason });
            }
            6 => {
                let step = u64::from(next().unwrap_or(0)) * 100;
                now += step;
                // The wall clock usually follows, but is sometimes stepped back.
                wall = if step % 700 == 0 {
                    wall.saturating_sub(3_600_000)
                } else {
                    wall + step
                };
                hub.set_wall_clock(wall);
                hub.handle_timeout(now);
                // Everything due has run: the next deadline is in the future.
                assert!(
                    hub.poll_timeout().is_none_or(|at| at > now),
                    "a deadline at or before now survived handle_timeout"
                );
            }
            _ => match next().unwrap_or(2) % 4 {
                0 => hub.handle(now, Input::StoreDown),
                1 => hub.handle(now, Input::StoreUp),
                _ => {
                    // The store catches up, and answers the loads it was asked for (or fails to).
                    hub.handle(now, Input::Committed { through: c.stored });
                    let fail = next().unwrap_or(0) % 4 == 0;
                    for key in c.loads.drain(..) {
                        if fail {
                            hub.handle(now, Input::RoomLoadFailed { key });
                        } else {
                            // What was stored of the room comes back: its owner and its
                            // modes outlive its time in memory.
                            let room = c.settings.get(&key).map(|(name, settings)| {
                                crate::hub::RestoredRoom {
                                    name: name.clone(),
                                    topic: String::new(),
                                    topic_set: None,
                                    history: Vec::new(),
                                    more: false,
                                    settings: settings.clone(),
                                }
                            });
                            hub.handle(now, Input::RoomLoaded { key, room });
                        }
                    }
                    // The store's history pages (it has nothing older here).
                    for (conn, query) in c.histories.drain(..) {
                        let loaded = Input::HistoryLoaded {
                            conn,
                            query,
                            messages: Vec::new(),
                            more: false,
                        };
                        hub.handle(now, loaded);
                    }
                    // And password work finishes.
                    for (conn, w) in std::mem::take(&mut c.work) {
                        let (verified, hash) = PasswordWork::perform(&w, &PasswordCost::TEST);
                        hub.handle(
                            now,
                            Input::PasswordDone {
                                conn,
                                verified,
                                hash,
                            },
                        );
                    }
                }
            },
        }
        c.drain(&mut hub, now);
        if let Err(broken) = hub.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }
}

/// IRC lines the hub driver picks from for IRC connections.
const IRC_LINES: &[&str] = &[
    "CAP LS 302",
    "CAP REQ :server-time message-tags echo-message batch sasl",
    "CAP REQ :-echo-message",
    "CAP REQ :draft/multiline batch draft/chathistory",
    "BATCH +m draft/multiline #lobby",
    "@batch=m PRIVMSG #lobby :a line",
    "@batch=m;draft/multiline-concat PRIVMSG #lobby : and more",
    "BATCH -m",
    "CHATHISTORY LATEST #lobby * 5",
    "CHATHISTORY AROUND #lobby msgid=2 3",
    "CAP END",
    "NICK ann",
    "NICK bob",
    "NICK irc1",
    "USER u 0 * :U",
    "PASS password1",
    "AUTHENTICATE PLAIN",
    "AUTHENTICATE AGFubgBwYXNzd29yZDE=",
    "REGISTER * * password1",
    "PRIVMSG NickServ :IDENTIFY ann password1",
    "JOIN #a,#b",
    "JOIN #a k",
    "JOIN #lobby",
    "PART #a :bye",
    "PRIVMSG #a :hi",
    "PRIVMSG #lobby :\u{1}ACTION waves\u{1}",
    "PRIVMSG bob,ann :psst",
    "NOTICE #lobby :n",
    "TOPIC #a :t",
    "TOPIC #lobby",
    "NAMES #lobby",
    "WHO #a",
    "LIST",
    "MODE #a",
    "MODE #a +mik-t key",
    "MODE #a +b",
    "MODE #a +b-b bob!*@* $a:ann",
    "MODE #a +o-v bob ann",
    "KICK #a bob :out",
    "INVITE bob #a",
    "KILL bob :go",
    "PING :x",
    "PONG :x",
    "QUIT :done",
    "WHOIS bob",
    "MOTD",
];

/// What the hub driver checks across steps.
#[derive(Default)]
struct Checker {
    open: Vec<ConnId>,
    irc: HashMap<ConnId, irc::Adapter>,
    stored: MsgId,
    delivered: MsgId,
    loads: Vec<String>,
    last_stamp: (u64, u64),
    work: Vec<(ConnId, PasswordWork)>,
    histories: Vec<(ConnId, crate::hub::HistoryQuery)>,
    /// The store's rooms: the latest settings asked to be kept, by key, with the room's name.
    settings: HashMap<String, (String, crate::hub::RoomSettings)>,
}

impl Checker {
    /// One line from an IRC connection, through the parser and its adapter, as the server
    /// runs them.
    fn irc_line(&mut self, hub: &mut Hub, now: u64, conn: ConnId, raw: &[u8]) {
        let line = if raw.len() + 2 > irc::line::MAX_LINE {
            Err(irc::LineError::TooLong)
        } else {
            irc::line::parse_client(raw)
        };
        let Some(adapter) = self.irc.get_mut(&conn) else {
            return;
        };
        for action in adapter.line(line) {
            match action {
                irc::Action::Send(bytes) => check_irc(&bytes),
                irc::Action::Hub { msg, asked } => {
                    let Some(adapter) = self.irc.get_mut(&conn) else {
                        continue;
                    };
                    let tag = adapter.asking(asked);
                    hub.handle(
                        now,
                        Input::Request {
                            conn,
                            frame: Ok(msg),
                            tag,
                        },
                    );
                    self.drain(hub, now);
                }
                irc::Action::Caps(caps) => hub.set_wire(conn, Wire::Irc(caps)),
                irc::Action::Answered => {
                    hub.handle(now, Input::Answered { conn });
                    self.drain(hub, now);
                }
            }
        }
        // Labeled answers, as the server writes them once the hub is done.
        let mut out = BytesMut::new();
        for (&c, adapter) in &mut self.irc {
            let answering = |tag| hub.answering(c, tag);
            if c == conn {
                adapter.seal_labels(answering, &mut out);
            } else {
                adapter.finish_labels(answering, &mut out);
            }
        }
        check_irc(&out);
    }

    /// Takes every output and checks it.
    fn drain(&mut self, hub: &mut Hub, now: u64) {
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Transmit { to, bytes } => {
                    for conn in &to {
                        assert!(self.open.contains(conn), "sent to {conn}, which is gone");
                    }
                    let irc_group = to.first().is_some_and(|c| self.irc.contains_key(c));
                    assert!(
                        to.iter().all(|c| self.irc.contains_key(c) == irc_group),
                        "one encoding for recipients of different wire formats"
                    );
                    if irc_group {
                        check_irc(&bytes);
                        for conn in &to {
                            if let Some(a) = self.irc.get_mut(conn).filter(|a| a.holding()) {
                                a.hold(&bytes);
                            }
                        }
                    } else {
                        self.check_json(&bytes);
                    }
                }
                Output::Reply {
                    conn,
                    name,
                    msg,
                    tag,
                } => {
                    assert!(self.open.contains(&conn), "answered {conn}, which is gone");
                    let adapter = self
                        .irc
                        .get_mut(&conn)
                        .expect("only IRC connections get replies to render");
                    let mut out = BytesMut::new();
                    let more = adapter.reply(tag, &name, &msg, &mut out);
                    check_irc(&out);
                    if let Some(next) = more {
                        hub.handle(
                            now,
                            Input::Request {
                                conn,
                                frame: Ok(next),
                                tag,
                            },
                        );
                    }
                }
                Output::Close { conn, .. } => {
                    self.open.retain(|c| *c != conn);
                    self.irc.remove(&conn);
                }
                Output::Store(record) => {
                    assert!(
                        record.id() > self.stored,
                        "stored {} after {}",
                        record.id(),
                        self.stored
                    );
                    self.stored = record.id();
                    if let crate::hub::Record::RoomSettings { room, settings, .. } = record {
                        self.settings
                            .insert(crate::names::key(&room), (room, settings));
                    }
                }
                Output::LoadRoom { key } => self.loads.push(key),
                Output::LoadHistory { conn, query } => {
                    assert!(
                        self.open.contains(&conn),
                        "history for {conn}, which is gone"
                    );
                    self.histories.push((conn, query));
                }
                Output::Password { conn, work: w, .. } => self.work.push((conn, w)),
                Output::Audit { conn, .. } => {
                    assert!(
                        self.open.contains(&conn),
                        "an action of {conn}, which is gone"
                    );
                }
                Output::LoginFailed { conn, .. } => {
                    assert!(
                        self.open.contains(&conn),
                        "a failed login of {conn}, which is gone"
                    );
                }
            }
        }
    }

    fn check_json(&mut self, bytes: &[u8]) {
        assert!(bytes.ends_with(b"\n"), "unterminated output");
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let msg = decode_server(line).expect("the hub sends what it can read");
            // Stamps never go backwards, whatever the wall clock does: messages
            // in id order, presence in the order it is sent.
            if let ServerMsg::Message(ChatMessage { ts, .. }) | ServerMsg::Direct { ts, .. } = &msg
            {
                assert!(
                    *ts >= self.last_stamp.0,
                    "stamp {ts} after {}",
                    self.last_stamp.0
                );
                self.last_stamp.0 = *ts;
            }
            if let ServerMsg::Join { ts, .. }
            | ServerMsg::Part { ts, .. }
            | ServerMsg::Quit { ts, .. }
            | ServerMsg::Nick { ts, .. } = &msg
            {
                assert!(
                    *ts >= self.last_stamp.1,
                    "stamp {ts} after {}",
                    self.last_stamp.1
                );
                self.last_stamp.1 = *ts;
            }
            if let ServerMsg::Message(m) = &msg {
                assert!(
                    m.id > self.delivered,
                    "message id {} after {}",
                    m.id,
                    self.delivered
                );
                self.delivered = m.id;
            }
            if let ServerMsg::Direct { id, .. } = &msg {
                assert!(
                    *id > self.delivered,
                    "direct id {id} after {}",
                    self.delivered
                );
                self.delivered = *id;
            }
        }
    }
}

/// What an IRC client is sent must be IRC: whole `\r\n` lines, each parsing back, with at most
/// 512 bytes after the tags and the source, and no NUL.
fn check_irc(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    assert!(
        bytes.ends_with(b"\r\n"),
        "unterminated IRC output {bytes:?}"
    );
    for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
        let Some(line) = line.strip_suffix(b"\r") else {
            panic!(
                "a line without CR in IRC output {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        assert!(
            !line.contains(&b'\r') && !line.contains(&0),
            "a bare CR or NUL in {line:?}"
        );
        let body = match line.first() {
            Some(b'@') => &line[line.iter().position(|&b| b == b' ').unwrap_or(0) + 1..],
            _ => line,
        };
        // The source is not counted: a client's line of 512 bytes is relayed whole after it.
        let body = match body.first() {
            Some(b':') => &body[body.iter().position(|&b| b == b' ').map_or(0, |i| i + 1)..],
            _ => body,
        };
        // Nor the colon before a relayed message's text: a client may have left it out.
        assert!(
            body.len() < irc::line::MAX_BODY,
            "an IRC line of {} bytes",
            body.len() + 2
        );
        if let Err(err) = irc::line::parse_sent(line) {
            panic!("the server sent an IRC line it cannot parse ({err}): {line:?}");
        }
    }
}
