//! Drivers that feed arbitrary bytes to the codec and the hub and check what must always hold.
//! The cargo-fuzz targets in `fuzz/` call these, and so do property tests, so a finding from
//! either reproduces with the other.
//!
//! Each function panics when an invariant breaks (that is the finding); a panic from inside the
//! code under test is a finding too.

use bytes::BytesMut;

use crate::codec::{LineDecoder, decode_client, decode_server};
use crate::hub::{ConnId, Hub, HubConfig, Input, Output, PasswordWork};
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
    let mut now = 1_000_000u64;
    let mut open: Vec<ConnId> = Vec::new();
    let mut next_conn = 0u64;
    let mut stored: MsgId = 0;
    let mut delivered: MsgId = 0;
    let mut loads: Vec<String> = Vec::new();
    let mut wall = now;
    let mut last_stamp = (0, 0);
    let mut work = Vec::new();
    while let Some(op) = next() {
        let pick = |n: u8, len: usize| usize::from(n) % len.max(1);
        hub.set_wall_clock(wall);
        match op % 8 {
            0 if open.len() < 6 => {
                next_conn += 1;
                let conn = ConnId(next_conn);
                open.push(conn);
                hub.handle(
                    now,
                    Input::Connect {
                        conn,
                        addr: std::net::Ipv4Addr::LOCALHOST.into(),
                        wire: Default::default(),
                    },
                );
            }
            1..=3 if !open.is_empty() => {
                let conn = open[pick(next().unwrap_or(0), open.len())];
                let line = LINES[pick(next().unwrap_or(0), LINES.len())];
                let frame = decode_client(line.as_bytes());
                hub.handle(now, Input::Frame { conn, frame });
            }
            4 if !open.is_empty() => {
                // Raw bytes of the input's own choosing, through the real decoder.
                let conn = open[pick(next().unwrap_or(0), open.len())];
                let len = usize::from(next().unwrap_or(0) % 48);
                let raw: Vec<u8> = (0..len).map_while(|_| next()).collect();
                let mut decoder = LineDecoder::new(64);
                let mut buf = BytesMut::from(&raw[..]);
                buf.extend_from_slice(b"\n");
                while let Some(line) = decoder.next_line(&mut buf) {
                    let frame = line.and_then(|l| decode_client(&l));
                    hub.handle(now, Input::Frame { conn, frame });
                }
            }
            5 if !open.is_empty() => {
                let i = pick(next().unwrap_or(0), open.len());
                let conn = open.swap_remove(i);
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
                    hub.handle(now, Input::Committed { through: stored });
                    let fail = next().unwrap_or(0) % 4 == 0;
                    for key in loads.drain(..) {
                        if fail {
                            hub.handle(now, Input::RoomLoadFailed { key });
                        } else {
                            hub.handle(now, Input::RoomLoaded { key, room: None });
                        }
                    }
                    // And password work finishes.
                    for (conn, w) in std::mem::take(&mut work) {
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
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Transmit { to, bytes } => {
                    assert!(bytes.ends_with(b"\n"), "unterminated output");
                    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let msg = decode_server(line).expect("the hub sends what it can read");
                        // Stamps never go backwards, whatever the wall clock does: messages
                        // in id order, presence in the order it is sent.
                        if let ServerMsg::Message(ChatMessage { ts, .. })
                        | ServerMsg::Direct { ts, .. } = &msg
                        {
                            assert!(*ts >= last_stamp.0, "stamp {ts} after {}", last_stamp.0);
                            last_stamp.0 = *ts;
                        }
                        if let ServerMsg::Join { ts, .. }
                        | ServerMsg::Part { ts, .. }
                        | ServerMsg::Quit { ts, .. }
                        | ServerMsg::Nick { ts, .. } = &msg
                        {
                            assert!(*ts >= last_stamp.1, "stamp {ts} after {}", last_stamp.1);
                            last_stamp.1 = *ts;
                        }
                        if let ServerMsg::Message(m) = &msg {
                            assert!(m.id > delivered, "message id {} after {delivered}", m.id);
                            delivered = m.id;
                        }
                        if let ServerMsg::Direct { id, .. } = &msg {
                            assert!(*id > delivered, "direct id {id} after {delivered}");
                            delivered = *id;
                        }
                    }
                    for conn in &to {
                        assert!(open.contains(conn), "sent to {conn}, which is gone");
                    }
                }
                Output::Reply { conn, .. } => {
                    assert!(open.contains(&conn), "answered {conn}, which is gone");
                }
                Output::Close { conn, .. } => open.retain(|c| *c != conn),
                Output::Store(record) => {
                    assert!(
                        record.id() > stored,
                        "stored {} after {stored}",
                        record.id()
                    );
                    stored = record.id();
                }
                Output::LoadRoom { key } => loads.push(key),
                Output::Password { conn, work: w } => work.push((conn, w)),
                Output::Audit { conn, .. } => {
                    assert!(open.contains(&conn), "an action of {conn}, which is gone");
                }
                Output::LoginFailed { conn, .. } => {
                    assert!(
                        open.contains(&conn),
                        "a failed login of {conn}, which is gone"
                    );
                }
            }
        }
        if let Err(broken) = hub.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }
}
