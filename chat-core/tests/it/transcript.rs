//! Data-driven hub tests: each `tests/transcripts/*.chat` file is a story (who connects, what
//! they send, how time passes) and its snapshot is every output the hub produced, in order.
//!
//! Script lines:
//! - `config key=value ...` sets [`HubConfig`] fields before the first connection;
//! - `connect NAME [ADDRESS]` opens a connection called NAME (from 127.0.0.1 by default);
//! - `irc NAME` opens an IRC connection called NAME: its lines go through the IRC line parser
//!   and [`irc::Adapter`] as the server's, and what it receives is shown as IRC lines;
//! - `NAME> text` sends one raw line (through the real line decoder and message parser);
//!   `{c*N}` repeats character c N times and `{0xHH}` inserts a raw byte;
//! - `NAME: text` says `text` in #lobby, shorthand for a `say` frame;
//! - `disconnect NAME [reason]` reports the connection gone;
//! - `advance 90s` / `advance 250ms` moves time, running every deadline on the way;
//! - `commit ID` reports the store has committed through ID; `shutdown`; `# comment`;
//! - `absent KEY` answers a `load` of room KEY: the store has nothing of it;
//! - `store_down` / `store_up` report the store failing and recovering;
//! - `wallclock -1h`-style steps (`-3600s`) move only the wall clock, not deadlines;
//! - `reads hold` / `reads answer` / `reads busy`: store reads wait, are answered, or are
//!   refused as a full read queue would;
//! - `passwords` finishes the password work the hub asked for (argon2id at its test cost).
//!
//! Run with `INSTA_UPDATE=always` (or `cargo insta review`) to accept new snapshots.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::BytesMut;
use chat_core::codec::Wire;
use chat_core::codec::{LineDecoder, decode_client};
use chat_core::hub::{ConnId, Hub, HubConfig, Input, Output, PasswordWork, Record};
use chat_core::irc;
use chat_core::password::PasswordCost;

const T0: u64 = 1_700_000_000_000;

struct Harness {
    hub: Option<Hub>,
    config: HubConfig,
    now: u64,
    /// How far the wall clock is from script time (`wallclock` steps it).
    wall_offset: i64,
    conns: BTreeMap<String, ConnId>,
    decoders: BTreeMap<String, (LineDecoder, BytesMut)>,
    out: String,
    /// Password work asked for and not finished yet.
    work: Vec<(ConnId, PasswordWork)>,
    /// The adapters of IRC connections, by name.
    irc: BTreeMap<String, irc::Adapter>,
    /// Every message the hub asked to store, to answer history loads as the store would.
    stored: Vec<chat_core::protocol::ChatMessage>,
    /// History loads asked for and not answered yet.
    history_loads: Vec<(ConnId, chat_core::hub::HistoryQuery)>,
    /// History loads wait (`reads hold`) instead of being answered after each line.
    hold_reads: bool,
}

impl Harness {
    fn new() -> Self {
        Self {
            hub: None,
            config: HubConfig {
                server_name: "test".into(),
                // Time stands still between script lines; flood.chat turns this back on.
                flood_rate: 0,
                ..HubConfig::default()
            },
            now: T0,
            wall_offset: 0,
            conns: BTreeMap::new(),
            decoders: BTreeMap::new(),
            out: String::new(),
            work: Vec::new(),
            irc: BTreeMap::new(),
            stored: Vec::new(),
            history_loads: Vec::new(),
            hold_reads: false,
        }
    }

    fn hub(&mut self) -> &mut Hub {
        if self.hub.is_none() {
            self.hub = Some(Hub::new(self.config.clone()));
        }
        let wall = self.now.saturating_add_signed(self.wall_offset);
        let hub = self.hub.as_mut().unwrap();
        hub.set_wall_clock(wall);
        hub
    }

    fn name_of(&self, conn: ConnId) -> String {
        self.conns
            .iter()
            .find(|(_, c)| **c == conn)
            .map_or_else(|| conn.to_string(), |(n, _)| n.clone())
    }

    fn drain(&mut self) {
        while let Some(output) = self.hub().poll_output() {
            let t = format!("[+{}]", fmt_elapsed(self.now - T0));
            let line = match output {
                Output::Transmit { mut to, bytes } => {
                    // What the hub sends an IRC connection still registering waits with it.
                    let mut held = Vec::new();
                    to.retain(|c| {
                        let who = self.name_of(*c);
                        match self.irc.get_mut(&who) {
                            Some(a) if a.holding() => {
                                a.hold(&bytes);
                                held.push(who);
                                false
                            }
                            _ => true,
                        }
                    });
                    if !held.is_empty() {
                        writeln!(self.out, "{t} (held for {})", held.join(",")).unwrap();
                    }
                    if to.is_empty() {
                        continue;
                    }
                    let names: Vec<String> = to.iter().map(|c| self.name_of(*c)).collect();
                    let text = String::from_utf8(bytes.to_vec()).unwrap();
                    format!("{t} -> {}: {}", names.join(","), irc_text(&text))
                }
                Output::Reply {
                    conn,
                    name,
                    msg,
                    tag,
                } => {
                    let who = self.name_of(conn);
                    let adapter = self
                        .irc
                        .get_mut(&who)
                        .expect("a reply for an IRC connection");
                    let mut out = BytesMut::new();
                    let more = adapter.reply(tag, &name, &msg, &mut out);
                    let text = String::from_utf8(out.to_vec()).unwrap();
                    if let Some(next) = more {
                        let now = self.now;
                        self.hub().handle(
                            now,
                            Input::Request {
                                conn,
                                frame: Ok(next),
                                tag,
                            },
                        );
                    }
                    if text.is_empty() {
                        continue;
                    }
                    format!("{t} => {who}: {}", irc_text(&text))
                }
                Output::Close { conn, reason } => {
                    format!("{t} close {} ({reason})", self.name_of(conn))
                }
                Output::Store(record) => {
                    if let Record::Message { msg, .. } = &record {
                        self.stored.push(msg.clone());
                    }
                    format!("{t} store {}", fmt_record(&record))
                }
                Output::LoadHistory { conn, query } => {
                    let line = format!(
                        "{t} load history of {} for {}: {:?}",
                        query.key,
                        self.name_of(conn),
                        (
                            query.after,
                            query.before,
                            query.after_ts,
                            query.before_ts,
                            query.newest,
                            query.limit
                        )
                    );
                    self.history_loads.push((conn, query));
                    line
                }
                Output::LoadRoom { key } => format!("{t} load {key}"),
                Output::Password { conn, work, delay } => {
                    let what = match &work {
                        PasswordWork::Hash { .. } => "hash",
                        PasswordWork::Verify { .. } => "verify",
                        PasswordWork::Change { .. } => "change",
                    };
                    self.work.push((conn, work));
                    let after = if delay > 0 {
                        format!(" after {delay} ms")
                    } else {
                        String::new()
                    };
                    format!("{t} password {what} for {}{after}", self.name_of(conn))
                }
                Output::Audit { conn, text } => {
                    format!("{t} audit {}: {text}", self.name_of(conn))
                }
                Output::LoginFailed { conn, account } => {
                    format!("{t} login failed: {} as {account}", self.name_of(conn))
                }
            };
            writeln!(self.out, "{line}").unwrap();
        }
        let labeled: Vec<String> = self.irc.keys().cloned().collect();
        for who in labeled {
            self.labels(&who, false);
        }
    }

    /// Writes the answers of labeled commands the hub is done with, as the server does.
    fn labels(&mut self, who: &str, seal: bool) {
        let conn = self.conns[who];
        let (Some(hub), Some(adapter)) = (self.hub.as_ref(), self.irc.get_mut(who)) else {
            return;
        };
        let mut out = BytesMut::new();
        let answering = |tag| hub.answering(conn, tag);
        if seal {
            adapter.seal_labels(answering, &mut out);
        } else {
            adapter.finish_labels(answering, &mut out);
        }
        if !out.is_empty() {
            let t = format!("[+{}]", fmt_elapsed(self.now - T0));
            let text = String::from_utf8(out.to_vec()).unwrap();
            writeln!(self.out, "{t} => {who}: {}", irc_text(&text)).unwrap();
        }
    }

    fn run_line(&mut self, line: &str) {
        self.run(line, true);
    }

    fn run(&mut self, line: &str, echo: bool) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if echo {
            writeln!(self.out, "{line}").unwrap();
        }
        if line.starts_with('#') {
            return;
        }
        if let Some((who, raw)) = line.split_once("> ")
            && self.irc.contains_key(who)
        {
            self.irc_line(who, raw);
        } else if let Some((who, raw)) = line.split_once("> ") {
            let conn = self.conns[who];
            let bytes = expand(raw);
            let (decoder, buf) = self.decoders.get_mut(who).unwrap();
            buf.extend_from_slice(&bytes);
            buf.extend_from_slice(b"\n");
            let mut frames = Vec::new();
            while let Some(line) = decoder.next_line(buf) {
                frames.push(line.and_then(|l| decode_client(&l)));
            }
            let now = self.now;
            for frame in frames {
                self.hub().handle(now, Input::Frame { conn, frame });
            }
        } else if let Some((who, text)) = line.split_once(": ") {
            let conn = self.conns[who];
            let now = self.now;
            let frame = Ok(chat_core::ClientMsg::Say {
                room: "#lobby".into(),
                text: text.into(),
                cid: None,
                notice: false,
                tags: Default::default(),
            });
            self.hub().handle(now, Input::Frame { conn, frame });
        } else {
            let mut words = line.split_whitespace();
            let verb = words.next().unwrap();
            let rest: Vec<&str> = words.collect();
            let now = self.now;
            match verb {
                "config" => {
                    assert!(self.hub.is_none(), "config must come first");
                    for kv in rest {
                        let (k, v) = kv.split_once('=').unwrap();
                        set_config(&mut self.config, k, v);
                    }
                }
                "connect" => {
                    let conn = ConnId(self.conns.len() as u64 + 1);
                    self.conns.insert(rest[0].to_string(), conn);
                    let max = self.config.max_line;
                    self.decoders.insert(
                        rest[0].to_string(),
                        (LineDecoder::new(max), BytesMut::new()),
                    );
                    let addr = rest
                        .get(1)
                        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |a| a.parse().unwrap());
                    self.hub().handle(
                        now,
                        Input::Connect {
                            conn,
                            addr,
                            wire: Default::default(),
                        },
                    );
                }
                "irc" => {
                    let conn = ConnId(self.conns.len() as u64 + 1);
                    self.conns.insert(rest[0].to_string(), conn);
                    self.decoders.insert(
                        rest[0].to_string(),
                        (LineDecoder::new(irc::line::MAX_LINE), BytesMut::new()),
                    );
                    let server = std::sync::Arc::new(irc::ServerInfo {
                        name: "irc.test".into(),
                        network: "test".into(),
                        created: "at T0".into(),
                        ..irc::ServerInfo::default()
                    });
                    self.irc
                        .insert(rest[0].to_string(), irc::Adapter::new(server.clone()));
                    let hub = self.hub();
                    hub.set_irc_server(server);
                    hub.handle(
                        now,
                        Input::Connect {
                            conn,
                            addr: std::net::Ipv4Addr::LOCALHOST.into(),
                            wire: Wire::Irc(irc::Caps::default()),
                        },
                    );
                }
                "hello" => {
                    // Shorthand: connect (from an address, if given) and register under the
                    // same name.
                    self.run(&format!("connect {}", rest.join(" ")), false);
                    self.run(
                        &format!(
                            r#"{}> {{"type":"hello","version":1,"name":"{}"}}"#,
                            rest[0], rest[0]
                        ),
                        false,
                    );
                    return;
                }
                "disconnect" => {
                    let conn = self.conns[rest[0]];
                    let reason = if rest.len() > 1 {
                        rest[1..].join(" ")
                    } else {
                        "connection lost".into()
                    };
                    self.hub().handle(now, Input::Disconnect { conn, reason });
                }
                "commit" => {
                    let through = rest[0].parse().unwrap();
                    self.hub().handle(now, Input::Committed { through });
                }
                "shutdown" => self.hub().handle(now, Input::Shutdown),
                "wallclock" => {
                    // Steps only the wall clock, as an administrator or NTP might.
                    let step = rest[0];
                    let (sign, amount) = match step.strip_prefix('-') {
                        Some(a) => (-1, a),
                        None => (1, step.trim_start_matches('+')),
                    };
                    self.wall_offset += sign * parse_duration(amount) as i64;
                }
                "passwords" => {
                    for (conn, work) in std::mem::take(&mut self.work) {
                        let (verified, hash) = work.perform(&PasswordCost::TEST);
                        self.hub().handle(
                            now,
                            Input::PasswordDone {
                                conn,
                                verified,
                                hash,
                            },
                        );
                    }
                }
                "store_down" => self.hub().handle(now, Input::StoreDown),
                // `reads hold`: history loads wait unanswered; `reads answer`: answered again;
                // `reads busy`: those waiting are refused as a full read queue would.
                "reads" => match rest[0] {
                    "hold" => self.hold_reads = true,
                    "answer" => self.hold_reads = false,
                    "busy" => {
                        for (conn, query) in std::mem::take(&mut self.history_loads) {
                            self.hub().handle(now, Input::HistoryBusy { conn, query });
                            self.drain();
                        }
                    }
                    other => panic!("reads {other}?"),
                },
                "store_up" => self.hub().handle(now, Input::StoreUp),
                "absent" => {
                    let key = rest[0].to_string();
                    self.hub()
                        .handle(now, Input::RoomLoaded { key, room: None });
                }
                "load_failed" => {
                    let key = rest[0].to_string();
                    self.hub().handle(now, Input::RoomLoadFailed { key });
                }
                "advance" => {
                    let target = self.now + parse_duration(rest[0]);
                    self.drain();
                    while let Some(at) = self.hub().poll_timeout() {
                        if at > target {
                            break;
                        }
                        self.now = self.now.max(at);
                        let now = self.now;
                        self.hub().handle_timeout(now);
                        self.drain();
                    }
                    self.now = target;
                }
                other => panic!("unknown script verb {other}"),
            }
        }
        self.drain();
        // The store answers history loads at once, from what it was asked to keep.
        while !self.hold_reads && !self.history_loads.is_empty() {
            for (conn, query) in std::mem::take(&mut self.history_loads) {
                let key = query.key.clone();
                let found: Vec<_> = self
                    .stored
                    .iter()
                    .filter(|m| chat_core::names::key(&m.room) == key && query.admits(m))
                    .cloned()
                    .collect();
                let n = query.limit.max(1);
                let more = found.len() > n;
                let messages = if query.newest {
                    found[found.len().saturating_sub(n)..].to_vec()
                } else {
                    found.into_iter().take(n).collect()
                };
                let now = self.now;
                self.hub().handle(
                    now,
                    Input::HistoryLoaded {
                        conn,
                        query,
                        messages,
                        more,
                    },
                );
            }
            self.drain();
        }
        if let Some(hub) = &self.hub
            && let Err(broken) = hub.check_invariants()
        {
            panic!("after {line:?}: {broken}");
        }
    }
}

impl Harness {
    /// One raw line from an IRC connection, through the line decoder, the IRC parser and the
    /// connection's adapter, as the server runs them.
    fn irc_line(&mut self, who: &str, raw: &str) {
        let conn = self.conns[who];
        let (decoder, buf) = self.decoders.get_mut(who).unwrap();
        buf.extend_from_slice(&expand(raw));
        buf.extend_from_slice(b"\r\n");
        let mut lines = Vec::new();
        while let Some(line) = decoder.next_line(buf) {
            lines.push(match line {
                Ok(l) => irc::line::parse_client(&l),
                Err(_) => Err(irc::LineError::TooLong),
            });
        }
        for line in lines {
            let actions = self.irc.get_mut(who).unwrap().line(line);
            for action in actions {
                match action {
                    irc::Action::Send(bytes) => {
                        let t = format!("[+{}]", fmt_elapsed(self.now - T0));
                        let text = String::from_utf8(bytes.to_vec()).unwrap();
                        writeln!(self.out, "{t} => {who}: {}", irc_text(&text)).unwrap();
                    }
                    irc::Action::Hub { msg, asked } => {
                        let tag = self.irc.get_mut(who).map_or(0, |a| a.asking(asked));
                        let now = self.now;
                        self.hub().handle(
                            now,
                            Input::Request {
                                conn,
                                frame: Ok(msg),
                                tag,
                            },
                        );
                        self.drain();
                    }
                    irc::Action::Caps(caps) => self.hub().set_wire(conn, Wire::Irc(caps)),
                    irc::Action::Answered => {
                        let now = self.now;
                        self.hub().handle(now, Input::Answered { conn });
                        self.drain();
                    }
                }
            }
            self.labels(who, true);
        }
    }
}

/// Output text for the snapshot: IRC's `\r\n` line ends shown as plain line breaks, and the
/// following lines indented under the first.
fn irc_text(text: &str) -> String {
    text.trim_end()
        .replace("\r\n", "\n    ")
        .replace('\u{1}', "\\x01")
}

fn set_config(c: &mut HubConfig, key: &str, value: &str) {
    let n = || value.parse::<u64>().unwrap();
    match key {
        "history" => c.history = n() as usize,
        "join_history" => c.join_history = n() as usize,
        "flood_burst" => c.flood_burst = n() as u32,
        "flood_rate" => c.flood_rate = n() as u32,
        "flood_queue" => c.flood_queue = n() as usize,
        "max_line" => c.max_line = n() as usize,
        "max_text" => c.max_text = n() as usize,
        "max_text_lines" => c.max_text_lines = n() as usize,
        "max_rooms_per_conn" => c.max_rooms_per_conn = n() as usize,
        "ping_interval" => c.ping_interval = parse_duration(value),
        "ping_timeout" => c.ping_timeout = parse_duration(value),
        "register_timeout" => c.register_timeout = parse_duration(value),
        "durable" => c.durable = value == "true",
        "max_rooms" => c.max_rooms = n() as usize,
        "room_create_burst" => c.room_create_burst = n() as u32,
        "room_create_per_minute" => c.room_create_per_minute = n() as u32,
        "room_expiry" => c.room_expiry = parse_duration(value),
        "dedupe_window" => c.dedupe_window = n() as usize,
        "max_held" => c.max_held = n() as usize,
        "direct_new_senders_per_minute" => c.direct_new_senders_per_minute = n() as u32,
        "motd" => c.motd = Some(value.replace('_', " ")),
        "require_account" => c.require_account = value == "true",
        "login_failures_per_account" => c.login_failures_per_account = n() as u32,
        "login_failures_per_addr" => c.login_failures_per_addr = n() as u32,
        "login_failures_account_ceiling" => c.login_failures_account_ceiling = n() as u32,
        "registrations_per_addr_per_hour" => c.registrations_per_addr_per_hour = n() as u32,
        "min_password" => c.min_password = n() as usize,
        "operators" => c.operators = value.split(',').map(str::to_string).collect(),
        "max_rooms_per_guest" => c.max_rooms_per_guest = n() as u32,
        "max_owned_rooms" => c.max_owned_rooms = n() as usize,
        "invite_expiry" => c.invite_expiry = parse_duration(value),
        "max_list" => c.max_list = n() as usize,
        other => panic!("unknown config key {other}"),
    }
}

fn parse_duration(s: &str) -> u64 {
    if let Some(ms) = s.strip_suffix("ms") {
        ms.parse().unwrap()
    } else if let Some(secs) = s.strip_suffix('s') {
        secs.parse::<u64>().unwrap() * 1000
    } else {
        panic!("bad duration {s}")
    }
}

fn fmt_elapsed(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

fn fmt_record(r: &Record) -> String {
    match r {
        Record::Message { msg: m, cid } => format!(
            "message #{} {} <{}> {}{}{}{}",
            m.id,
            m.room,
            m.from,
            m.text,
            if m.notice { " (notice)" } else { "" },
            if m.tags.is_empty() {
                String::new()
            } else {
                format!(" tags {}", serde_json::to_string(&m.tags).unwrap())
            },
            cid.as_ref()
                .map(|c| format!(" (cid {c})"))
                .unwrap_or_default()
        ),
        Record::Direct {
            msg: d, offline, ..
        } => {
            let waits = if *offline { " (waits)" } else { "" };
            format!("direct #{} {} -> {}: {}{waits}", d.id, d.from, d.to, d.text)
        }
        Record::OfflineDelivered { id, account } => format!("offline_delivered #{id} {account}"),
        Record::Topic {
            id,
            room,
            topic,
            by,
            ..
        } => {
            format!("topic #{id} {room} by {by}: {topic}")
        }
        // The hash is salted at random: show its parameters only.
        Record::Account { id, name, hash } => format!(
            "account #{id} {name} ({})",
            hash.rsplitn(3, '$').nth(2).unwrap_or("no hash")
        ),
        Record::ReadMarkers {
            id,
            account,
            markers,
        } => {
            let markers: Vec<String> = markers.iter().map(|(k, m)| format!("{k}={m}")).collect();
            format!("read_markers #{id} {account}: {}", markers.join(" "))
        }
        Record::AccountRooms {
            id,
            account,
            rooms,
            owned,
        } => {
            let owns = if owned.is_empty() {
                String::new()
            } else {
                format!(" (owns {})", owned.join(" "))
            };
            format!("account_rooms #{id} {account}: {}{owns}", rooms.join(" "))
        }
        Record::RoomSettings { id, room, settings } => format!(
            "room_settings #{id} {room} {}",
            serde_json::to_string(settings).unwrap()
        ),
        Record::ServerBans { id, bans } => {
            format!("server_bans #{id} {}", serde_json::to_string(bans).unwrap())
        }
        Record::AccountDeleted { id, account } => format!("account_deleted #{id} {account}"),
    }
}

/// Expands `{c*N}` into N copies of the character c and `{0xHH}` into a raw byte; any other
/// brace is literal.
fn expand(raw: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 1..];
        let inner = after.find('}').map(|end| &after[..end]);
        let replacement = inner.and_then(|inner| {
            if let Some(hex) = inner.strip_prefix("0x") {
                u8::from_str_radix(hex, 16).ok().map(|b| vec![b])
            } else {
                let (c, n) = inner.split_once('*')?;
                let n: usize = n.parse().ok()?;
                (c.chars().count() == 1).then(|| c.repeat(n).into_bytes())
            }
        });
        match (replacement, inner) {
            (Some(bytes), Some(inner)) => {
                out.extend_from_slice(&bytes);
                rest = &after[inner.len() + 1..];
            }
            _ => {
                out.push(b'{');
                rest = after;
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

#[test]
fn transcripts() {
    insta::glob!("../transcripts", "*.chat", |path| {
        let script = std::fs::read_to_string(path).unwrap();
        let mut harness = Harness::new();
        for line in script.lines() {
            harness.run_line(line);
        }
        insta::assert_snapshot!(harness.out);
    });
}
