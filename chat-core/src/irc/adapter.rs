//! One IRC connection, server side: the IRC commands a client sends become the hub's
//! [`ClientMsg`]s, and the hub's answers to this client become numerics.
//!
//! The adapter is sans-IO. The shell feeds it each parsed line ([`Adapter::line`]) and runs the
//! [`Action`]s it returns in order: bytes to send, messages for the hub (each with what was
//! asked, so the answer can name it), capability changes to tell the hub. Whatever the hub
//! answers to this connection alone comes back through [`Adapter::reply`]; room events reach
//! the client as bytes the hub encoded once for everyone ([`super::encode::event`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::encode::{
    self, ban_entry, chunks, emit, emit_trailing, event, mode_string, parse_mask, tags,
};
use super::line::{self, LineError, Message};
use super::{Cap, Caps, ServerInfo, mask};
use crate::hub::WHOLE_ANSWER;
use crate::names;
use crate::protocol::{
    ClientMsg, ClientTags, ErrorCode, PROTOCOL_VERSION, Role, Secret, ServerMsg,
};

/// Most targets one PRIVMSG, NOTICE, JOIN or PART may name (005 `TARGMAX`).
pub const MAX_TARGETS: usize = 4;

/// Most messages one CHATHISTORY answers (005 `CHATHISTORY`).
pub const MAX_HISTORY: u32 = 100;

/// What the shell does for the adapter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue these bytes to the client.
    Send(Bytes),
    /// Hand this message to the hub; first tell the adapter it was asked
    /// ([`Adapter::asking`]), so the answer can name it.
    Hub {
        /// The message.
        msg: ClientMsg,
        /// The IRC command and target it came from.
        asked: Asked,
    },
    /// The client's capabilities changed: tell the hub, whose encoding of room events
    /// depends on them.
    Caps(Caps),
    /// The line was answered here, with no message for the hub: tell the hub
    /// ([`crate::hub::Input::Answered`]) so that it costs a turn of flood control.
    Answered,
}

/// Requests remembered for their answers: more than can wait in the hub's flood queue.
const MAX_ASKS: usize = 256;

/// The IRC command a hub message came from, and what it named: answers and refusals name
/// them back (`403 nick #room`, `421 nick FOO`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// The command, upper-case.
    pub command: String,
    /// The room or nick it was about; empty when none.
    pub target: String,
    /// A second name it was about (the nick an INVITE is for); empty when none.
    pub other: String,
}

impl Asked {
    fn new(command: &str, target: &str) -> Self {
        Self {
            command: command.to_string(),
            target: target.to_string(),
            other: String::new(),
        }
    }
}

/// One IRC connection's state. See the module documentation.
#[derive(Debug)]
pub struct Adapter {
    server: Arc<ServerInfo>,
    caps: Caps,
    /// `CAP LS` or `CAP REQ` came before registration and `CAP END` has not yet.
    negotiating: bool,
    /// The nick asked for before registration.
    nick: Option<String>,
    /// `USER` came.
    user: bool,
    /// Its user name and real name, for the hub once registered.
    profile: (String, String),
    /// User mode `+B`: the client said it is a bot.
    bot: bool,
    /// Labeled commands whose answers are being gathered (`labeled-response`).
    labels: Vec<Label>,
    /// The last line was labeled and made hub messages: the tags asked for now are its.
    label_open: bool,
    /// The label of the multi-line batch the last line closed.
    batch_label: Option<String>,
    /// The nicks it monitors (`MONITOR`), as given, for `MONITOR L` and `S`.
    monitored: Vec<String>,
    pass: Option<Secret>,
    /// A `hello` is with the hub and not answered yet.
    hello_sent: bool,
    /// The hub welcomed us; `name` is the nick.
    registered: bool,
    name: String,
    motd: Option<String>,
    asked: Asked,
    /// The requests sent to the hub that may still be answered, by tag, oldest first: an
    /// answer is rendered against the command that asked it, not the one asked last.
    asks: VecDeque<(u64, Asked)>,
    /// The last tag handed out.
    last_tag: u64,
    /// Batch ids handed out, to make each unique on the connection.
    batches: u64,
    /// A SASL PLAIN exchange in progress: the base64 received so far (credentials: never
    /// shown by `Debug`).
    sasl: Option<Secret>,
    /// Logged in through SASL before `CAP END`: the hub has welcomed the connection, and what
    /// it sends waits in `held` until IRC registration ends.
    holding: bool,
    held: BytesMut,
    /// A CHATHISTORY AROUND in two halves: the older half, while the newer is asked for.
    around: Option<Vec<crate::protocol::ChatMessage>>,
    /// The newer half's query, sent once the older half is here.
    around_next: Option<ClientMsg>,
    /// A `draft/multiline` batch being received.
    multiline: Option<Multiline>,
}

/// A `draft/multiline` batch from the client, until its end.
#[derive(Debug)]
struct Multiline {
    reference: String,
    target: String,
    notice: bool,
    /// The client-only tags on the `BATCH` line that opened it.
    tags: ClientTags,
    /// The label on that line: the message sent at the batch's end answers it.
    label: Option<String>,
    text: String,
    lines: usize,
    /// Something in it was wrong; the batch is refused at its end.
    error: Option<&'static str>,
}

/// A labeled command's answer, gathered until the hub has said all of it.
#[derive(Debug)]
struct Label {
    label: String,
    /// The tags of the hub messages the command made.
    tags: Vec<u64>,
    /// Its answer so far: whole lines.
    lines: BytesMut,
    /// Every hub message of the command has been asked for.
    sealed: bool,
}

/// Longest label taken (`label` tag); a longer one is answered unlabeled.
const MAX_LABEL: usize = 64;

/// Most labeled commands gathered at once; past it, a command is answered unlabeled.
const MAX_LABELS: usize = 64;

/// What `LIST` asks for (`ELIST=MNU`): rooms by exact name, by mask (`*an1`), not by mask
/// (`!#c*`), by member count (`>n`, `<n`); terms separated by commas, all of them applying.
#[derive(Debug, Default)]
struct ListFilter {
    names: Vec<String>,
    masks: Vec<String>,
    not: Vec<String>,
    more_than: Option<u32>,
    fewer_than: Option<u32>,
}

impl ListFilter {
    fn parse(param: &str) -> ListFilter {
        let mut f = ListFilter::default();
        for term in param.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(n) = term.strip_prefix('>') {
                f.more_than = n.parse().ok().or(f.more_than);
            } else if let Some(n) = term.strip_prefix('<') {
                f.fewer_than = n.parse().ok().or(f.fewer_than);
            } else if let Some(mask) = term.strip_prefix('!') {
                f.not.push(names::key(mask));
            } else if term.contains(['*', '?']) {
                f.masks.push(names::key(term));
            } else if term.starts_with('#') {
                f.names.push(names::key(term));
            }
        }
        f
    }

    fn admits(&self, room: &crate::protocol::RoomInfo) -> bool {
        let key = names::key(&room.name);
        (self.names.is_empty() && self.masks.is_empty()
            || self.names.contains(&key)
            || self.masks.iter().any(|m| names::glob(m, &key)))
            && !self.not.iter().any(|m| names::glob(m, &key))
            && self.more_than.is_none_or(|n| room.members > n)
            && self.fewer_than.is_none_or(|n| room.members < n)
    }
}

/// What `HELP` says of each command.
const HELP: &[(&str, &str)] = &[
    (
        "AWAY",
        "AWAY [:reason]: marks you away, or back without a reason",
    ),
    (
        "CHATHISTORY",
        "CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN <target> ...: history",
    ),
    ("HELP", "HELP [command]: this help"),
    ("INFO", "INFO: about the server"),
    ("INVITE", "INVITE <nick> <#room>: invites someone to a room"),
    ("ISON", "ISON <nick> ...: which of these are connected"),
    (
        "JOIN",
        "JOIN <#room>[,...] [key,...]: joins rooms (a new one is yours to run)",
    ),
    (
        "KICK",
        "KICK <#room> <nick> [:reason]: removes someone from a room",
    ),
    ("LIST", "LIST [#room,...]: the rooms and their topics"),
    ("LUSERS", "LUSERS: how many are connected"),
    (
        "MODE",
        "MODE <#room> [+-biklmnqostvR ...]: a room's modes; MODE <nick> [+B]: yours",
    ),
    (
        "MONITOR",
        "MONITOR +|-|C|L|S [nick,...]: a list of nicks to be told about",
    ),
    ("MOTD", "MOTD: the message of the day"),
    ("NAMES", "NAMES <#room>: who is in a room"),
    ("NICK", "NICK <nick>: changes your nick"),
    (
        "NOTICE",
        "NOTICE <target> :<text>: a message that is never answered",
    ),
    ("OPER", "OPER <name> <password>: server operator rights"),
    ("PART", "PART <#room>[,...] [:reason]: leaves rooms"),
    ("PING", "PING <token>: the server answers PONG"),
    (
        "PRIVMSG",
        "PRIVMSG <target>[,...] :<text>: a message to rooms or people",
    ),
    ("QUIT", "QUIT [:reason]: leaves the server"),
    ("SETNAME", "SETNAME :<real name>: changes your real name"),
    ("TAGMSG", "TAGMSG <target>: tags alone (a reaction, typing)"),
    ("TIME", "TIME: the server's time"),
    (
        "TOPIC",
        "TOPIC <#room> [:topic]: shows or sets a room's topic",
    ),
    ("USERHOST", "USERHOST <nick> ...: who these are"),
    (
        "WHO",
        "WHO <#room|nick|mask> [%fields[,token]]: who is there (WHOX with %)",
    ),
    ("WHOIS", "WHOIS <nick>: who someone is"),
    ("WHOWAS", "WHOWAS <nick> [count]: who had a nick lately"),
];

/// Longest SASL response accepted, in base64 bytes.
const MAX_SASL: usize = 4096;

/// A WHO reply's flags: `H` here or `G` gone (away), `*` a server operator, the membership
/// prefix, `B` a bot.
fn who_flags(p: &crate::protocol::Person) -> String {
    format!(
        "{}{}{}{}",
        if p.away { "G" } else { "H" },
        if p.operator { "*" } else { "" },
        p.role.prefix(),
        if p.bot { "B" } else { "" }
    )
}

/// The fields of a WHOX reply (354) that `fields` asks for, in WHOX's fixed order: token,
/// channel, user, IP, host, server, nick, flags, hops, idle, account, op level, real name.
fn whox(
    fields: &str,
    token: &str,
    p: &crate::protocol::Person,
    server: &ServerInfo,
) -> Vec<String> {
    let mut out = Vec::new();
    for field in "tcuihsnfdlaor".chars().filter(|f| fields.contains(*f)) {
        out.push(match field {
            't' => if token.is_empty() { "0" } else { token }.to_string(),
            'c' => p.room.clone().unwrap_or_else(|| "*".into()),
            'u' => p.user.clone(),
            // Addresses are never shown.
            'i' => "255.255.255.255".into(),
            'h' | 's' => server.name.clone(),
            'n' => p.name.clone(),
            'f' => who_flags(p),
            'd' => "0".into(),
            'l' => p.idle.to_string(),
            'a' => p.account.clone().unwrap_or_else(|| "0".into()),
            'o' => "n/a".into(),
            _ => p.realname.clone(),
        });
    }
    out
}

/// A written line's `BATCH` reference: `+ref` or `-ref`, if it is a BATCH line.
fn batch_param(line: &[u8]) -> Option<&[u8]> {
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let mut word = words.next()?;
    if word.starts_with(b"@") {
        word = words.next()?;
    }
    if word.starts_with(b":") {
        word = words.next()?;
    }
    (word == b"BATCH").then(|| words.next()).flatten()
}

/// Whether written lines are one batch: its start, lines in it, its end.
fn is_one_batch(lines: &[&[u8]]) -> bool {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return false;
    };
    let (Some(start), Some(end)) = (batch_param(first), batch_param(last)) else {
        return false;
    };
    let (Some(open), Some(close)) = (start.strip_prefix(b"+"), end.strip_prefix(b"-")) else {
        return false;
    };
    let inner = [&b"batch="[..], open].concat();
    open == close
        && lines[1..lines.len() - 1].iter().all(|l| {
            l.strip_prefix(b"@").is_some_and(|t| {
                let end = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
                t[..end]
                    .split(|&b| b == b';')
                    .any(|tag| tag == inner.as_slice())
            })
        })
}

/// Whether a written line is in a batch of its own (a `batch` tag).
fn in_batch(line: &[u8]) -> bool {
    let Some(tags) = line.strip_prefix(b"@") else {
        return false;
    };
    let end = tags.iter().position(|&b| b == b' ').unwrap_or(tags.len());
    tags[..end]
        .split(|&b| b == b';')
        .any(|t| t.starts_with(b"batch="))
}

/// The client-only tags (`+name`) of a line, named without their `+`.
fn client_tags(msg: &Message) -> ClientTags {
    msg.tags
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix('+')?;
            Some((name.to_string(), v.clone().unwrap_or_default()))
        })
        .collect()
}

impl Adapter {
    /// A connection that has sent nothing yet.
    pub fn new(server: Arc<ServerInfo>) -> Self {
        Self {
            server,
            caps: Caps::default(),
            negotiating: false,
            nick: None,
            user: false,
            profile: (String::new(), String::new()),
            bot: false,
            labels: Vec::new(),
            label_open: false,
            batch_label: None,
            monitored: Vec::new(),
            pass: None,
            hello_sent: false,
            registered: false,
            name: "*".into(),
            motd: None,
            asked: Asked::default(),
            asks: VecDeque::new(),
            last_tag: 0,
            batches: 0,
            sasl: None,
            holding: false,
            held: BytesMut::new(),
            around: None,
            around_next: None,
            multiline: None,
        }
    }

    /// True while the hub's output for this connection must wait (see [`Adapter::hold`]).
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// Keeps bytes the hub sent this connection until its IRC registration ends: a client
    /// that logged in with SASL is welcomed by the hub before it sends `CAP END`.
    pub fn hold(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// The capabilities in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The nick, once registered (`*` before).
    pub fn nick(&self) -> &str {
        &self.name
    }

    /// Says what the next hub message answers (from [`Action::Hub`]), and returns the tag to
    /// send it with ([`crate::hub::Input::Request`]); [`Adapter::reply`] takes it back.
    pub fn asking(&mut self, asked: Asked) -> u64 {
        self.last_tag += 1;
        let mut tag = self.last_tag;
        if self.label_open
            && let Some(label) = self.labels.last_mut()
        {
            tag |= WHOLE_ANSWER;
            label.tags.push(tag);
        }
        if self.asks.len() == MAX_ASKS {
            self.asks.pop_front();
        }
        self.asks.push_back((tag, asked.clone()));
        self.asked = asked;
        tag
    }

    /// The line whose hub messages were just asked for is all handed over: its label (if it
    /// had one) takes no more tags. Then as [`Adapter::finish_labels`].
    pub fn seal_labels(&mut self, answering: impl Fn(u64) -> bool, out: &mut BytesMut) -> bool {
        if std::mem::take(&mut self.label_open)
            && let Some(label) = self.labels.last_mut()
        {
            label.sealed = true;
        }
        self.finish_labels(answering, out)
    }

    /// Writes the answers of labeled commands the hub is done with (`answering` says whether
    /// the hub has more to say to a tag: [`crate::hub::Hub::answering`]). Returns whether
    /// some are still being gathered.
    pub fn finish_labels(&mut self, answering: impl Fn(u64) -> bool, out: &mut BytesMut) -> bool {
        let mut i = 0;
        while i < self.labels.len() {
            let label = &self.labels[i];
            if label.sealed && !label.tags.iter().any(|t| answering(*t)) {
                let label = self.labels.remove(i);
                self.write_labeled(&label.label, &label.lines, out);
            } else {
                i += 1;
            }
        }
        !self.labels.is_empty()
    }

    /// A labeled command's answer: one line carries the label, several are a
    /// `labeled-response` batch (lines already in a batch of their own keep it), none is an
    /// `ACK`.
    fn write_labeled(&mut self, label: &str, lines: &[u8], out: &mut BytesMut) {
        let mut tag = BytesMut::from(&b"label="[..]);
        line::escape_into(label, &mut tag);
        let lines: Vec<&[u8]> = lines
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect();
        let with_tag = |line: &[u8], tag: &[u8], out: &mut BytesMut| {
            out.extend_from_slice(b"@");
            out.extend_from_slice(tag);
            match line.strip_prefix(b"@") {
                Some(rest) => {
                    out.extend_from_slice(b";");
                    out.extend_from_slice(rest);
                }
                None => {
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(line);
                }
            }
            out.extend_from_slice(b"\r\n");
        };
        match lines.as_slice() {
            [] => {
                out.extend_from_slice(b"@");
                out.extend_from_slice(&tag);
                out.extend_from_slice(format!(" :{} ACK\r\n", self.server.name).as_bytes());
            }
            [one] => with_tag(one, &tag, out),
            // One batch already (a multi-line message, a history page): the label goes on it.
            [first, .., last] if is_one_batch(&lines) => {
                with_tag(first, &tag, out);
                for line in &lines[1..lines.len() - 1] {
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(last);
                out.extend_from_slice(b"\r\n");
            }
            [first, rest @ ..] if !self.caps.has(Cap::Batch) => {
                with_tag(first, &tag, out);
                for line in rest {
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
            }
            all => {
                self.batches += 1;
                let reference = format!("L{}", self.batches);
                let start = format!(
                    " :{} BATCH +{reference} labeled-response\r\n",
                    self.server.name
                );
                out.extend_from_slice(b"@");
                out.extend_from_slice(&tag);
                out.extend_from_slice(start.as_bytes());
                let inner = format!("batch={reference}");
                for line in all {
                    if in_batch(line) {
                        out.extend_from_slice(line);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        with_tag(line, inner.as_bytes(), out);
                    }
                }
                let end = format!(":{} BATCH -{reference}\r\n", self.server.name);
                out.extend_from_slice(end.as_bytes());
            }
        }
    }

    /// Handles one line from the client, parsed or not.
    pub fn line(&mut self, line: Result<Message, LineError>) -> Vec<Action> {
        let mut out = Out::default();
        let label = match &line {
            Ok(msg) if self.caps.has(Cap::LabeledResponse) && self.labels.len() < MAX_LABELS => msg
                .tag("label")
                .filter(|l| !l.is_empty() && l.len() <= MAX_LABEL)
                .map(str::to_string),
            _ => None,
        };

        match line {
            Ok(msg) => self.command(msg, &mut out),
            Err(LineError::TooLong) => {
                self.numeric(&mut out.buf, "417", &[], "Input line was too long");
            }
            Err(LineError::InvalidUtf8) => {
                emit_trailing(
                    &mut out.buf,
                    Vec::new(),
                    &self.server.name,
                    "FAIL",
                    &[
                        "*",
                        "INVALID_UTF8",
                        "Message rejected: it was not valid UTF-8",
                    ],
                );
            }
            Err(LineError::NoCommand) => {}
            Err(LineError::BadCommand(cmd)) => {
                self.numeric(&mut out.buf, "421", &[&cmd], "Unknown command");
            }
        }
        // A labeled line opening a multi-line batch: the batch's message answers the label.
        let mut label = label;
        if let (Some(batch), true) = (self.multiline.as_mut(), label.is_some())
            && batch.label.is_none()
            && batch.lines == 0
            && batch.text.is_empty()
        {
            batch.label = label.take();
        }
        let label = label.or_else(|| self.batch_label.take());
        let mut actions = out.finish();
        let to_hub = actions.iter().any(|a| matches!(a, Action::Hub { .. }));
        if let Some(label) = label {
            // Its answer so far is gathered; what the hub answers joins it.
            let mut lines = BytesMut::new();
            actions.retain(|a| match a {
                Action::Send(bytes) => {
                    lines.extend_from_slice(bytes);
                    false
                }
                _ => true,
            });
            if to_hub {
                self.labels.push(Label {
                    label,
                    tags: Vec::new(),
                    lines,
                    sealed: false,
                });
                self.label_open = true;
            } else {
                let mut out = BytesMut::new();
                self.write_labeled(&label, &lines, &mut out);
                actions.insert(0, Action::Send(out.freeze()));
            }
        }
        if !to_hub {
            actions.push(Action::Answered);
        }
        actions
    }

    fn command(&mut self, msg: Message, out: &mut Out) {
        let p = |i: usize| msg.param(i).unwrap_or("");
        let cmd = msg.command.as_str();
        match cmd {
            "CAP" => return self.cap(&msg, out),
            "AUTHENTICATE" => return self.authenticate(&msg, out),
            "PASS" if !self.registered && !self.hello_sent => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                self.pass = Some(Secret::new(p(0)));
                return;
            }
            "PASS" | "USER" if self.registered || self.hello_sent => {
                self.numeric(&mut out.buf, "462", &[], "You may not reregister");
                return;
            }
            "USER" => {
                if msg.params.len() < 4 || p(0).is_empty() || p(3).is_empty() {
                    return self.need_more(out, cmd);
                }
                self.user = true;
                self.profile = (p(0).to_string(), p(3).to_string());
                return self.try_register(out);
            }
            "NICK" if !self.registered => {
                if p(0).is_empty() {
                    self.numeric(&mut out.buf, "431", &[], "No nickname given");
                    return;
                }
                self.nick = Some(p(0).to_string());
                return self.try_register(out);
            }
            "PING" => {
                if p(0).is_empty() {
                    self.numeric(&mut out.buf, "409", &[], "No origin specified");
                    return;
                }
                let token = p(0).to_string();
                return out.hub(ClientMsg::Ping { token }, Asked::new(cmd, ""));
            }
            "PONG" => {
                let token = msg.params.last().cloned().unwrap_or_default();
                return out.hub(ClientMsg::Pong { token }, Asked::new(cmd, ""));
            }
            "QUIT" => {
                let reason = msg.param(0).filter(|r| !r.is_empty()).map(str::to_string);
                return out.hub(ClientMsg::Quit { reason }, Asked::new(cmd, ""));
            }
            _ if !self.registered => {
                self.numeric(&mut out.buf, "451", &[], "You have not registered");
                return;
            }
            _ => {}
        }
        let asked = |target: &str| Asked::new(cmd, target);
        match cmd {
            "NICK" => {
                let name = p(0).to_string();
                out.hub(ClientMsg::Nick { name: name.clone() }, asked(&name));
            }
            "JOIN" => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                let keys: Vec<&str> = p(1).split(',').collect();
                for (i, room) in p(0).split(',').take(MAX_TARGETS).enumerate() {
                    let key = keys
                        .get(i)
                        .filter(|k| !k.is_empty())
                        .map(|k| Secret::new(*k));
                    let join = ClientMsg::Join {
                        room: room.to_string(),
                        since: None,
                        key,
                    };
                    out.hub(join, asked(room));
                }
            }
            "PART" => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                let reason = msg.param(1).filter(|r| !r.is_empty()).map(str::to_string);
                for room in p(0).split(',').take(MAX_TARGETS) {
                    let part = ClientMsg::Part {
                        room: room.to_string(),
                        reason: reason.clone(),
                    };
                    out.hub(part, asked(room));
                }
            }
            "BATCH" => self.batch(&msg, out),
            "PRIVMSG" | "NOTICE" if msg.tag("batch").is_some() => self.batched_line(&msg),
            "PRIVMSG" | "NOTICE" => self.privmsg(&msg, out),
            "TAGMSG" => self.tagmsg(&msg, out),
            "MONITOR" => self.monitor(&msg, out),
            "HELP" | "HELPOP" => self.help(p(0), out),
            "SETNAME" => {
                let realname = p(0).trim();
                if realname.is_empty() || realname.chars().count() > 100 {
                    let params = [
                        "SETNAME",
                        "INVALID_REALNAME",
                        "Real name is empty or too long",
                    ];
                    emit_trailing(&mut out.buf, Vec::new(), &self.server.name, "FAIL", &params);
                    return;
                }
                let profile = ClientMsg::Profile {
                    user: None,
                    realname: Some(realname.to_string()),
                    bot: None,
                };
                out.hub(profile, asked(""));
            }
            "TOPIC" => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                let topic = msg.param(1).map(str::to_string);
                let room = p(0).to_string();
                out.hub(ClientMsg::Topic { room, topic }, asked(p(0)));
            }
            "NAMES" => {
                if msg.params.is_empty() {
                    self.numeric(&mut out.buf, "366", &["*"], "End of /NAMES list");
                    return;
                }
                let room = p(0).split(',').next().unwrap_or("").to_string();
                out.hub(
                    ClientMsg::Who {
                        room: room.clone(),
                        after: None,
                    },
                    asked(&room),
                );
            }
            "WHO" => {
                // A room, a nick, or a mask of nicks (`WHO` alone is `WHO *`).
                let target = if p(0).is_empty() { "*" } else { p(0) }.to_string();
                let mut asking = asked(&target);
                // WHOX: `WHO target %fields[,token]` asks for those fields (354).
                if p(1).starts_with('%') {
                    asking.other = p(1).to_string();
                }
                out.hub(
                    ClientMsg::People {
                        target: target.clone(),
                    },
                    asking,
                );
            }
            "WHOIS" => {
                if msg.params.is_empty() {
                    self.numeric(&mut out.buf, "431", &[], "No nickname given");
                    return;
                }
                // `WHOIS nick` or `WHOIS server nick`: the nick is the last parameter.
                let nick = msg.params.last().map_or("", String::as_str).to_string();
                out.hub(ClientMsg::Whois { name: nick.clone() }, asked(&nick));
            }
            "LIST" => {
                self.numeric(&mut out.buf, "321", &["Channel"], "Users  Name");
                // `LIST #a,#b` lists those rooms only; ELIST: masks, `!mask`, `>n`, `<n`.
                out.hub(ClientMsg::Rooms { after: None }, asked(p(0)));
            }
            "MODE" => self.mode(&msg, out),
            "KICK" => {
                if msg.params.len() < 2 {
                    return self.need_more(out, cmd);
                }
                let reason = msg.param(2).filter(|r| !r.is_empty()).map(str::to_string);
                // `KICK #a nick1,nick2`, or rooms paired with nicks: `KICK #a,#b n1,n2`.
                let rooms: Vec<&str> = p(0).split(',').collect();
                for (i, name) in p(1).split(',').take(MAX_TARGETS).enumerate() {
                    let room = if rooms.len() > 1 {
                        rooms.get(i).copied().unwrap_or("")
                    } else {
                        rooms[0]
                    };
                    let kick = ClientMsg::Kick {
                        room: room.to_string(),
                        name: name.to_string(),
                        reason: reason.clone(),
                    };
                    let about = Asked {
                        other: name.to_string(),
                        ..Asked::new(cmd, room)
                    };
                    out.hub(kick, about);
                }
            }
            "INVITE" => {
                if msg.params.len() < 2 {
                    return self.need_more(out, cmd);
                }
                let invite = ClientMsg::Invite {
                    room: p(1).to_string(),
                    name: p(0).to_string(),
                    duration: None,
                };
                let about = Asked {
                    other: p(0).to_string(),
                    ..Asked::new(cmd, p(1))
                };
                out.hub(invite, about);
            }
            "KILL" => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                let kill = ClientMsg::Kill {
                    name: p(0).to_string(),
                    reason: msg.param(1).filter(|r| !r.is_empty()).map(str::to_string),
                };
                out.hub(kill, asked(p(0)));
            }
            "AWAY" => {
                let reason = msg.param(0).filter(|r| !r.is_empty()).map(str::to_string);
                out.hub(ClientMsg::Away { reason }, asked(""));
            }
            "MOTD" => self.motd(&mut out.buf),
            "CHATHISTORY" => self.chathistory(&msg, out),
            "NICKSERV" | "NS" => {
                let text = msg.params.join(" ");
                self.nickserv(&text, out);
            }
            "REGISTER" => {
                // draft/account-registration: REGISTER <account> <email> <password>; the
                // account is the current nick.
                if msg.params.len() < 3 {
                    return self.need_more(out, cmd);
                }
                if p(0) != "*" && names::key(p(0)) != names::key(&self.name) {
                    emit_trailing(
                        &mut out.buf,
                        Vec::new(),
                        &self.server.name,
                        "FAIL",
                        &[
                            "REGISTER",
                            "ACCOUNT_NAME_MUST_BE_NICK",
                            p(0),
                            "Register your current nick",
                        ],
                    );
                    return;
                }
                let password = Secret::new(p(2));
                out.hub(ClientMsg::Register { password }, asked(&self.name.clone()));
            }
            "VERSION" => {
                let (version, server) = (self.server.version.clone(), self.server.name.clone());
                self.numeric(&mut out.buf, "351", &[&version, &server], "IRC adapter");
                self.isupport(&mut out.buf);
            }
            "OPER" => {
                if msg.params.len() < 2 {
                    return self.need_more(out, cmd);
                }
                let oper = ClientMsg::Oper {
                    account: p(0).to_string(),
                    password: Secret::new(p(1)),
                };
                out.hub(oper, asked(p(0)));
            }
            "WHOWAS" => {
                if p(0).is_empty() {
                    self.numeric(&mut out.buf, "431", &[], "No nickname given");
                    return;
                }
                let nick = p(0).split(',').next().unwrap_or("").to_string();
                // A count that is not a positive number is a full search (RFC 2812).
                let count = msg
                    .param(1)
                    .and_then(|c| c.parse::<i64>().ok())
                    .and_then(|c| u32::try_from(c).ok());
                out.hub(
                    ClientMsg::Whowas {
                        name: nick.clone(),
                        count,
                    },
                    asked(&nick),
                );
            }
            "LUSERS" | "TIME" => out.hub(ClientMsg::Stats {}, Asked::new(cmd, "")),
            "INFO" => {
                let lines = [
                    format!("{} {}", self.server.version, self.server.name),
                    "a chat server with native clients and an IRC listener".to_string(),
                    format!("started {}", self.server.created),
                ];
                for line in &lines {
                    self.numeric(&mut out.buf, "371", &[], line);
                }
                self.numeric(&mut out.buf, "374", &[], "End of INFO list");
            }
            "USERHOST" => {
                if msg.params.is_empty() {
                    return self.need_more(out, cmd);
                }
                // Up to 5 nicks, each found by its exact name.
                let nicks: Vec<&str> = msg.params.iter().take(5).map(String::as_str).collect();
                let target = format!("{},", nicks.join(","));
                out.hub(ClientMsg::People { target }, Asked::new(cmd, ""));
            }
            "ISON" | "ADMIN" => {
                self.numeric(&mut out.buf, "421", &[cmd], "Unknown command");
            }
            _ => self.numeric(&mut out.buf, "421", &[cmd], "Unknown command"),
        }
    }

    /// draft/chathistory: LATEST, BEFORE, AFTER, AROUND and BETWEEN on a room, by `msgid=` or
    /// `timestamp=`, answered by the hub from memory or its store.
    fn chathistory(&mut self, msg: &Message, out: &mut Out) {
        let p = |i: usize| msg.param(i).unwrap_or("");
        let sub = p(0).to_ascii_uppercase();
        let fail = |this: &Self, out: &mut Out, code: &str, text: &str| {
            let mut params = vec!["CHATHISTORY", code, &sub];
            if !text.is_empty() {
                params.push(text);
            }
            emit_trailing(&mut out.buf, Vec::new(), &this.server.name, "FAIL", &params);
        };
        if sub == "TARGETS" {
            return fail(self, out, "INVALID_PARAMS", "TARGETS is not supported");
        }
        let refs = if sub == "BETWEEN" { 2 } else { 1 };
        if msg.params.len() < 3 + refs {
            return self.need_more(out, "CHATHISTORY");
        }
        let target = p(1);
        let limit = p(2 + refs).parse::<u32>().ok().filter(|l| *l > 0);
        let Some(limit) = limit.map(|l| l.min(MAX_HISTORY)) else {
            return fail(
                self,
                out,
                "INVALID_PARAMS",
                "the limit is a positive number",
            );
        };
        let parse_ref = |r: &str| -> Option<HistoryRef> {
            if let Some(id) = r.strip_prefix("msgid=") {
                id.parse().ok().map(HistoryRef::Id)
            } else {
                r.strip_prefix("timestamp=")
                    .and_then(super::parse_time)
                    .map(HistoryRef::Ts)
            }
        };
        let first = p(2);
        let star = first == "*" && sub == "LATEST";
        let a = if star { None } else { parse_ref(first) };
        if !star && a.is_none() {
            return fail(
                self,
                out,
                "INVALID_PARAMS",
                "a reference is msgid=ID or timestamp=TIME",
            );
        }
        if !target.starts_with('#') {
            // Direct messages keep no history here: an empty answer.
            self.empty_history(&mut out.buf, target);
            return;
        }
        let mut q = HistoryAsk {
            room: target.to_string(),
            limit,
            ..HistoryAsk::default()
        };
        match (sub.as_str(), a) {
            ("LATEST", None) => q.latest = true,
            ("LATEST", Some(r)) => {
                q.after = Some(r);
                q.latest = true;
            }
            ("BEFORE", Some(r)) => {
                q.before = Some(r);
                q.latest = true;
            }
            ("AFTER", Some(r)) => q.after = Some(r),
            ("AROUND", Some(r)) => {
                // The older half up to and with the reference, then the newer half.
                q.before = Some(r.next());
                q.latest = true;
                q.limit = limit.div_ceil(2);
                let newer = HistoryAsk {
                    room: target.to_string(),
                    after: Some(r),
                    limit: limit / 2,
                    ..HistoryAsk::default()
                };
                self.around = Some(Vec::new());
                self.around_next = (limit / 2 > 0).then(|| newer.message());
            }
            ("BETWEEN", Some(r)) => {
                let Some(b) = parse_ref(p(3)) else {
                    return fail(
                        self,
                        out,
                        "INVALID_PARAMS",
                        "a reference is msgid=ID or timestamp=TIME",
                    );
                };
                if b.is_after(r) {
                    (q.after, q.before) = (Some(r), Some(b));
                } else {
                    (q.after, q.before, q.latest) = (Some(b), Some(r), true);
                }
            }
            _ => return fail(self, out, "INVALID_PARAMS", "unknown subcommand"),
        }
        out.hub(q.message(), Asked::new("CHATHISTORY", target));
    }

    fn empty_history(&mut self, out: &mut BytesMut, target: &str) {
        if self.caps.has(Cap::Batch) {
            self.batches += 1;
            let id = format!("h{}", self.batches);
            let start = format!("+{id}");
            emit(
                out,
                Vec::new(),
                &self.server.name,
                "BATCH",
                &[&start, "chathistory", target],
            );
            emit(
                out,
                Vec::new(),
                &self.server.name,
                "BATCH",
                &[&format!("-{id}")],
            );
        }
    }

    /// Writes history as PRIVMSG lines, in a `chathistory` batch when the client has `batch`.
    fn history_batch(
        &mut self,
        out: &mut BytesMut,
        room: &str,
        messages: &[crate::protocol::ChatMessage],
    ) {
        let server = self.server.clone();
        let batch = self.caps.has(Cap::Batch).then(|| {
            self.batches += 1;
            format!("h{}", self.batches)
        });
        if let Some(id) = &batch {
            let start = format!("+{id}");
            emit(
                out,
                Vec::new(),
                &server.name,
                "BATCH",
                &[&start, "chathistory", room],
            );
        }
        for m in messages {
            let mut t = tags(self.caps, Some(m.ts), Some(m.id));
            encode::bot_tag(self.caps, m.bot, &mut t);
            if let Some(id) = &batch {
                t.insert(0, ("batch".into(), Some(id.clone())));
            }
            let said = encode::Said {
                text: &m.text,
                action: m.action,
                notice: m.notice,
                tags: &m.tags,
            };
            said.write(out, self.caps, t, &mask(&m.from, &server), &m.room, None);
        }
        if let Some(id) = batch {
            emit(out, Vec::new(), &server.name, "BATCH", &[&format!("-{id}")]);
        }
    }

    fn need_more(&self, out: &mut Out, cmd: &str) {
        self.numeric(&mut out.buf, "461", &[cmd], "Not enough parameters");
    }

    fn try_register(&mut self, out: &mut Out) {
        if self.negotiating || self.hello_sent || !self.user {
            return;
        }
        let Some(nick) = self.nick.clone() else {
            return;
        };
        self.hello_sent = true;
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: nick.clone(),
            password: self.pass.clone(),
        };
        out.hub(hello, Asked::new("NICK", &nick));
    }

    fn cap(&mut self, msg: &Message, out: &mut Out) {
        let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
        let nick = self.name.clone();
        let reply = |out: &mut Out, sub: &str, text: &str| {
            emit_trailing(
                &mut out.buf,
                Vec::new(),
                &self.server.name,
                "CAP",
                &[&nick, sub, text],
            );
        };
        match sub.as_str() {
            "LS" => {
                if !self.registered {
                    self.negotiating = true;
                }
                if msg.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302) {
                    self.caps = self.caps.with(Cap::CapNotify, true);
                }
                let v302 = self.caps.has(Cap::CapNotify);
                let all: Vec<String> = Cap::ALL
                    .iter()
                    .map(|c| match c {
                        Cap::Sasl if v302 => "sasl=PLAIN".to_string(),
                        Cap::Multiline if v302 => format!(
                            "draft/multiline=max-bytes={},max-lines={}",
                            self.server.max_text, self.server.max_lines
                        ),
                        c => c.name().to_string(),
                    })
                    .collect();
                reply(out, "LS", &all.join(" "));
            }
            "LIST" => reply(out, "LIST", &self.caps.names()),
            "REQ" => {
                if !self.registered {
                    self.negotiating = true;
                }
                let asked = msg.param(1).unwrap_or("");
                let mut caps = self.caps;
                let mut ok = !asked.trim().is_empty();
                for word in asked.split(' ').filter(|w| !w.is_empty()) {
                    let (name, on) = match word.strip_prefix('-') {
                        Some(name) => (name, false),
                        None => (word, true),
                    };
                    match Cap::from_name(name) {
                        Some(cap) => caps = caps.with(cap, on),
                        None => ok = false,
                    }
                }
                if ok {
                    reply(out, "ACK", asked);
                    if caps != self.caps {
                        self.caps = caps;
                        out.actions_flush();
                        out.actions.push(Action::Caps(caps));
                    }
                } else {
                    reply(out, "NAK", asked);
                }
            }
            "END" => {
                if self.holding {
                    self.holding = false;
                    self.negotiating = false;
                    out.buf.extend_from_slice(&self.held.split());
                } else if !self.registered {
                    self.negotiating = false;
                    self.try_register(out);
                }
            }
            "" => self.need_more(out, "CAP"),
            _ => self.numeric(&mut out.buf, "410", &[&sub], "Invalid CAP command"),
        }
    }

    /// `PRIVMSG NickServ :REGISTER pw` and `:IDENTIFY [account] pw`, the service commands
    /// IRC users type, as the account messages.
    fn nickserv(&mut self, text: &str, out: &mut Out) {
        let words: Vec<&str> = text.split_whitespace().collect();
        let command = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        let asked = Asked::new("NICKSERV", &self.name);
        match (command.as_str(), &words[1..]) {
            ("REGISTER", [password, ..]) => {
                let password = Secret::new(*password);
                out.hub(ClientMsg::Register { password }, asked);
            }
            ("IDENTIFY", [password]) => {
                let login = ClientMsg::Login {
                    account: self.name.clone(),
                    password: Secret::new(*password),
                };
                out.hub(login, asked);
            }
            ("IDENTIFY", [account, _, ..]) => {
                // The account, then the rest of the line as the password: a passphrase may
                // have spaces in it.
                let rest = text.trim_start()[command.len()..].trim_start();
                let password = rest[account.len()..].trim_start();
                let login = ClientMsg::Login {
                    account: (*account).to_string(),
                    password: Secret::new(password),
                };
                out.hub(login, asked);
            }
            ("LOGOUT", _) => out.hub(ClientMsg::Logout {}, asked),
            _ => {
                let source = format!("NickServ!NickServ@{}", self.server.name);
                let name = self.name.clone();
                emit_trailing(
                    &mut out.buf,
                    Vec::new(),
                    &source,
                    "NOTICE",
                    &[
                        &name,
                        "Commands: REGISTER <password>, IDENTIFY [account] <password> (the rest of the line), LOGOUT",
                    ],
                );
            }
        }
    }

    fn authenticate(&mut self, msg: &Message, out: &mut Out) {
        let arg = msg.param(0).unwrap_or("");
        if self.registered || self.holding {
            self.numeric(
                &mut out.buf,
                "907",
                &[],
                "You have already authenticated using SASL",
            );
            return;
        }
        if !self.caps.has(Cap::Sasl) || arg.is_empty() {
            self.numeric(&mut out.buf, "904", &[], "SASL authentication failed");
            return;
        }
        if arg == "*" {
            self.sasl = None;
            self.numeric(&mut out.buf, "906", &[], "SASL authentication aborted");
            return;
        }
        let Some(data) = self.sasl.take() else {
            if arg.eq_ignore_ascii_case("PLAIN") {
                self.sasl = Some(Secret::new(String::new()));
                emit(&mut out.buf, Vec::new(), "", "AUTHENTICATE", &["+"]);
            } else {
                self.numeric(
                    &mut out.buf,
                    "908",
                    &["PLAIN"],
                    "are available SASL mechanisms",
                );
                self.numeric(&mut out.buf, "904", &[], "SASL authentication failed");
            }
            return;
        };
        let mut data = data.expose().to_string();
        if arg != "+" {
            data.push_str(arg);
        }
        if data.len() > MAX_SASL {
            self.numeric(&mut out.buf, "905", &[], "SASL message too long");
            return;
        }
        if arg.len() == 400 {
            // More chunks follow.
            self.sasl = Some(Secret::new(data));
            return;
        }
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        let parts: Option<(String, String, String)> = decoded.and_then(|d| {
            let mut it = d.split('\0');
            let (zid, cid, pw) = (it.next()?, it.next()?, it.next()?);
            it.next()
                .is_none()
                .then(|| (zid.to_string(), cid.to_string(), pw.to_string()))
        });
        match parts {
            Some((zid, cid, pw)) if !cid.is_empty() && (zid.is_empty() || zid == cid) => {
                self.hello_sent = true;
                let hello = ClientMsg::Hello {
                    version: PROTOCOL_VERSION,
                    name: cid.clone(),
                    password: Some(Secret::new(pw)),
                };
                out.hub(hello, Asked::new("AUTHENTICATE", &cid));
            }
            _ => self.numeric(&mut out.buf, "904", &[], "SASL authentication failed"),
        }
    }

    /// `BATCH +ref draft/multiline target` opens a multi-line message, `BATCH -ref` sends it.
    fn batch(&mut self, msg: &Message, out: &mut Out) {
        let reference = msg.param(0).unwrap_or("");
        if let Some(reference) = reference.strip_prefix('+') {
            let kind = msg.param(1).unwrap_or("");
            let target = msg.param(2).unwrap_or("");
            if kind != "draft/multiline" || !self.caps.has(Cap::Multiline) || target.is_empty() {
                let text = "only draft/multiline batches are accepted, with the capability";
                return self.batch_invalid(out, text);
            }
            self.multiline = Some(Multiline {
                reference: reference.to_string(),
                target: target.to_string(),
                notice: false,
                tags: client_tags(msg),
                label: None,
                text: String::new(),
                lines: 0,
                error: None,
            });
            return;
        }
        let Some(reference) = reference.strip_prefix('-') else {
            return self.need_more(out, "BATCH");
        };
        let Some(batch) = self.multiline.take().filter(|b| b.reference == reference) else {
            return self.batch_invalid(out, "no such batch is open");
        };
        self.batch_label = batch.label.clone();
        if let Some(code) = batch.error {
            let limit = match code {
                "MULTILINE_MAX_BYTES" => self.server.max_text.to_string(),
                "MULTILINE_MAX_LINES" => self.server.max_lines.to_string(),
                _ => String::new(),
            };
            let mut params = vec!["BATCH", code];
            if !limit.is_empty() {
                params.push(&limit);
            }
            params.push("the multi-line message was not sent");
            emit_trailing(&mut out.buf, Vec::new(), &self.server.name, "FAIL", &params);
            return;
        }
        if batch.text.is_empty() {
            return;
        }
        let command = if batch.notice { "NOTICE" } else { "PRIVMSG" };
        let asked = Asked::new(command, &batch.target);
        let hub = if batch.target.starts_with('#') {
            ClientMsg::Say {
                room: batch.target,
                text: batch.text,
                cid: None,
                notice: batch.notice,
                tags: batch.tags,
            }
        } else {
            ClientMsg::Msg {
                to: batch.target,
                text: batch.text,
                action: false,
                cid: None,
                notice: batch.notice,
                tags: batch.tags,
            }
        };
        out.hub(hub, asked);
    }

    fn batch_invalid(&self, out: &mut Out, text: &str) {
        let params = ["BATCH", "MULTILINE_INVALID", text];
        emit_trailing(&mut out.buf, Vec::new(), &self.server.name, "FAIL", &params);
    }

    /// A PRIVMSG or NOTICE inside a `draft/multiline` batch: one more line of the message.
    fn batched_line(&mut self, msg: &Message) {
        let (max_text, max_lines) = (self.server.max_text, self.server.max_lines);
        let Some(batch) = self
            .multiline
            .as_mut()
            .filter(|b| Some(b.reference.as_str()) == msg.tag("batch"))
        else {
            return;
        };
        if msg.param(0) != Some(batch.target.as_str()) {
            batch.error.get_or_insert("MULTILINE_INVALID_TARGET");
            return;
        }
        batch.notice = msg.command == "NOTICE";
        let line = msg.param(1).unwrap_or("");
        if msg.tag("draft/multiline-concat").is_some() {
            if line.is_empty() {
                // Nothing to join: a client bug, refused as the spec says.
                batch.error.get_or_insert("MULTILINE_INVALID");
                return;
            }
            batch.text.push_str(line);
        } else {
            if batch.lines > 0 {
                batch.text.push('\n');
            }
            batch.text.push_str(line);
            batch.lines += 1;
        }
        if batch.text.len() > max_text {
            batch.error.get_or_insert("MULTILINE_MAX_BYTES");
        } else if batch.lines > max_lines {
            batch.error.get_or_insert("MULTILINE_MAX_LINES");
        }
    }

    fn privmsg(&mut self, msg: &Message, out: &mut Out) {
        let notice = msg.command == "NOTICE";
        let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
            if !notice {
                let text = format!("No recipient given ({})", msg.command);
                self.numeric(&mut out.buf, "411", &[], &text);
            }
            return;
        };
        let text = msg.param(1).unwrap_or("");
        if text.is_empty() {
            if !notice {
                self.numeric(&mut out.buf, "412", &[], "No text to send");
            }
            return;
        }
        let (text, action) = match text.strip_prefix('\u{1}') {
            Some(ctcp) => {
                let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp);
                match ctcp.strip_prefix("ACTION") {
                    Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), true),
                    // Other CTCP (VERSION, PING...): nobody here answers them.
                    None => return,
                }
            }
            None => (text, false),
        };
        let sent = msg.param(1).unwrap_or("");
        for target in targets.split(',').take(MAX_TARGETS) {
            if !notice
                && (target.eq_ignore_ascii_case("NickServ") || target.eq_ignore_ascii_case("NS"))
            {
                self.nickserv(text, out);
                continue;
            }
            // Relayed with its source (`:nick!user@host`), the line must still fit 512 bytes:
            // one that would not is refused whole rather than cut (417).
            let relayed = 1
                + mask(&self.name, &self.server).len()
                + 1
                + msg.command.len()
                + 1
                + target.len()
                + 2
                + sent.len()
                + 2;
            if relayed > line::MAX_BODY {
                if !notice {
                    let why = format!(
                        "Input line too long: relayed with your address it would be {relayed} bytes; the limit is {}",
                        line::MAX_BODY
                    );
                    self.numeric(&mut out.buf, "417", &[], &why);
                }
                continue;
            }
            let asked = Asked::new(&msg.command, target);
            let text = text.to_string();
            let tags = client_tags(msg);
            let hub = if target.starts_with('#') {
                let room = target.to_string();
                if action {
                    ClientMsg::Me {
                        room,
                        text,
                        cid: None,
                        tags,
                    }
                } else {
                    ClientMsg::Say {
                        room,
                        text,
                        cid: None,
                        notice,
                        tags,
                    }
                }
            } else {
                ClientMsg::Msg {
                    to: target.to_string(),
                    text,
                    action,
                    cid: None,
                    notice,
                    tags,
                }
            };
            out.hub(hub, asked);
        }
    }

    /// `TAGMSG target`: a message of client-only tags alone (a reaction, a typing notice).
    /// One without any is nothing to relay, and is dropped like a bad NOTICE.
    fn tagmsg(&mut self, msg: &Message, out: &mut Out) {
        let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
            return self.need_more(out, "TAGMSG");
        };
        let tags = client_tags(msg);
        if tags.is_empty() {
            return;
        }
        for target in targets.split(',').take(MAX_TARGETS) {
            let tag = ClientMsg::Tag {
                to: target.to_string(),
                tags: tags.clone(),
                cid: None,
            };
            out.hub(tag, Asked::new("TAGMSG", target));
        }
    }

    /// `HELP [subject]`: what a command does (704, 705, 706), or the list of commands; 524 for
    /// a subject there is no help on.
    fn help(&mut self, subject: &str, out: &mut Out) {
        let (subject, lines): (String, Vec<String>) = if subject.is_empty() {
            let names: Vec<&str> = HELP.iter().map(|(c, _)| *c).collect();
            let mut lines = vec!["Commands (HELP <command> for one):".to_string()];
            lines.extend(names.chunks(10).map(|c| c.join(" ")));
            ("index".into(), lines)
        } else {
            let upper = subject.to_ascii_uppercase();
            match HELP.iter().find(|(c, _)| *c == upper) {
                Some((c, text)) => (c.to_string(), vec![format!("{c}: {text}")]),
                None => {
                    let subject = subject.chars().take(32).collect::<String>();
                    let text = "No help available on this topic";
                    self.numeric(&mut out.buf, "524", &[&subject], text);
                    return;
                }
            }
        };
        let (first, rest) = lines.split_first().expect("help has a first line");
        self.numeric(&mut out.buf, "704", &[&subject], first);
        for line in rest {
            self.numeric(&mut out.buf, "705", &[&subject], line);
        }
        self.numeric(&mut out.buf, "706", &[&subject], "End of /HELP");
    }

    /// `MONITOR + a,b`, `- a,b`, `C`, `L`, `S`: a watch list, kept by the hub (`watch`).
    fn monitor(&mut self, msg: &Message, out: &mut Out) {
        let Some(op) = msg.param(0) else {
            return self.need_more(out, "MONITOR");
        };
        let targets: Vec<String> = msg
            .param(1)
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        let details = Some(self.caps.has(Cap::ExtendedMonitor));
        let watch = |add, remove, clear| ClientMsg::Watch {
            add,
            remove,
            clear,
            details,
        };
        match op {
            "+" => {
                if targets.is_empty() {
                    return self.need_more(out, "MONITOR");
                }
                for t in &targets {
                    let key = names::key(t);
                    if self.monitored.len() < crate::hub::MAX_WATCHED
                        && !self.monitored.iter().any(|m| names::key(m) == key)
                    {
                        self.monitored.push(t.clone());
                    }
                }
                out.hub(
                    watch(targets, Vec::new(), false),
                    Asked::new("MONITOR", "+"),
                );
            }
            "-" => {
                let keys: Vec<String> = targets.iter().map(|t| names::key(t)).collect();
                self.monitored.retain(|m| !keys.contains(&names::key(m)));
                out.hub(
                    watch(Vec::new(), targets, false),
                    Asked::new("MONITOR", "-"),
                );
            }
            "C" | "c" => {
                self.monitored.clear();
                out.hub(
                    watch(Vec::new(), Vec::new(), true),
                    Asked::new("MONITOR", "C"),
                );
            }
            "L" | "l" => {
                let server = self.server.name.clone();
                let nick = self.name.clone();
                for chunk in self.monitored.chunks(20) {
                    let list = chunk.join(",");
                    emit_trailing(&mut out.buf, Vec::new(), &server, "732", &[&nick, &list]);
                }
                self.numeric(&mut out.buf, "733", &[], "End of MONITOR list");
            }
            "S" | "s" if !self.monitored.is_empty() => {
                let all = self.monitored.clone();
                out.hub(watch(all, Vec::new(), false), Asked::new("MONITOR", "S"));
            }
            _ => {}
        }
    }

    fn mode(&mut self, msg: &Message, out: &mut Out) {
        let Some(target) = msg.param(0) else {
            return self.need_more(out, "MODE");
        };
        if !target.starts_with('#') {
            if names::key(target) != names::key(&self.name) {
                self.numeric(
                    &mut out.buf,
                    "502",
                    &[],
                    "Can't change mode for other users",
                );
            } else if let Some(changes) = msg.param(1) {
                // Only `+B` (bot) is kept; a client setting +i on connect hears nothing back.
                let mut on = true;
                let mut bot = self.bot;
                for ch in changes.chars() {
                    match ch {
                        '+' => on = true,
                        '-' => on = false,
                        'B' => bot = on,
                        _ => {}
                    }
                }
                if bot != self.bot {
                    self.bot = bot;
                    let change = if bot { "+B" } else { "-B" };
                    let nick = self.name.clone();
                    emit(&mut out.buf, Vec::new(), &nick, "MODE", &[&nick, change]);
                    let profile = ClientMsg::Profile {
                        user: None,
                        realname: None,
                        bot: Some(bot),
                    };
                    out.hub(profile, Asked::new("MODE", &nick));
                }
            } else {
                let modes = if self.bot { "+B" } else { "+" };
                self.numeric_params(&mut out.buf, "221", &[modes]);
            }
            return;
        }
        let room = target.to_string();
        let asked = Asked::new("MODE", target);
        let Some(changes) = msg.param(1) else {
            let query = ClientMsg::Mode {
                room,
                moderated: None,
                invite_only: None,
                topic_lock: None,
                registered_only: None,
                secret: None,
                key: None,
                limit: None,
                open: None,
            };
            return out.hub(query, asked);
        };
        let mut args = msg.params[2..].iter();
        let mut flags = ClientMsg::Mode {
            room: room.clone(),
            moderated: None,
            invite_only: None,
            topic_lock: None,
            registered_only: None,
            secret: None,
            key: None,
            limit: None,
            open: None,
        };
        let mut any_flag = false;
        let mut on = true;
        for c in changes.chars() {
            match c {
                '+' => on = true,
                '-' => on = false,
                'b' => match args.next() {
                    None => out.hub(
                        ClientMsg::Bans {
                            room: room.clone(),
                            after: None,
                        },
                        asked.clone(),
                    ),
                    Some(mask) => {
                        let (target, mute) = parse_mask(mask);
                        let hub = if on {
                            ClientMsg::Ban {
                                room: room.clone(),
                                target,
                                duration: None,
                                reason: None,
                                mute,
                            }
                        } else {
                            ClientMsg::Unban {
                                room: room.clone(),
                                target,
                                mute,
                            }
                        };
                        out.hub(hub, asked.clone());
                    }
                },
                'q' | 'o' | 'v' => {
                    let Some(name) = args.next() else {
                        return self.need_more(out, "MODE");
                    };
                    let role = match (on, c) {
                        (false, _) => Role::Member,
                        (true, 'q') => Role::Owner,
                        (true, 'o') => Role::Op,
                        _ => Role::Voice,
                    };
                    // Each letter is a flag on IRC: `+v` on an operator adds nothing.
                    let hub = ClientMsg::Role {
                        room: room.clone(),
                        name: name.clone(),
                        role,
                        at_least: on,
                    };
                    let about = Asked {
                        other: name.clone(),
                        ..Asked::new("MODE", target)
                    };
                    out.hub(hub, about);
                }
                'i' | 'm' | 'n' | 's' | 't' | 'R' | 'k' | 'l' => {
                    if let ClientMsg::Mode {
                        moderated,
                        invite_only,
                        topic_lock,
                        registered_only,
                        secret,
                        key,
                        limit,
                        open,
                        ..
                    } = &mut flags
                    {
                        match c {
                            'n' => *open = Some(!on),
                            'i' => *invite_only = Some(on),
                            'm' => *moderated = Some(on),
                            't' => *topic_lock = Some(on),
                            'R' => *registered_only = Some(on),
                            's' => *secret = Some(on),
                            'l' if on => {
                                let Some(given) = args.next() else {
                                    return self.need_more(out, "MODE");
                                };
                                match given.parse::<u32>() {
                                    Ok(n) if n > 0 => *limit = Some(n),
                                    _ => {
                                        self.numeric(
                                            &mut out.buf,
                                            "696",
                                            &[target, "l", given],
                                            "a limit is a number of people, 1 or more",
                                        );
                                        continue;
                                    }
                                }
                            }
                            'l' => *limit = Some(0),
                            _ if on => {
                                // A key the hub would refuse (empty, with spaces, too long)
                                // is refused here, as ERR_INVALIDMODEPARAM.
                                let given = args.next().map_or("", String::as_str);
                                if given.is_empty() || given.len() > 64 || given.contains(' ') {
                                    self.numeric(
                                        &mut out.buf,
                                        "696",
                                        &[target, "k", "*"],
                                        "a key is 1 to 64 bytes without spaces",
                                    );
                                    continue;
                                }
                                *key = Some(Secret::new(given));
                            }
                            _ => {
                                // `-k` may name the key; it is not needed.
                                let _ = args.next();
                                *key = Some(Secret::new(""));
                            }
                        }
                    }
                    any_flag = true;
                }
                other => {
                    let letter = other.to_string();
                    self.numeric(
                        &mut out.buf,
                        "472",
                        &[&letter],
                        "is an unknown mode char to me",
                    );
                }
            }
        }
        if any_flag {
            out.hub(flags, asked);
        }
    }

    /// Renders what the hub answered this connection alone (`name` is its nick as the hub
    /// knows it). Returns a message to hand back to the hub at once, under the same question,
    /// when the answer comes in pages (members, rooms, bans).
    pub fn reply(
        &mut self,
        tag: u64,
        name: &str,
        msg: &ServerMsg,
        out: &mut BytesMut,
    ) -> Option<ClientMsg> {
        // An answer to a labeled command joins the rest of its answer.
        if tag & WHOLE_ANSWER != 0
            && let Some(i) = self.labels.iter().position(|l| l.tags.contains(&tag))
        {
            let mut lines = std::mem::take(&mut self.labels[i].lines);
            let more = self.reply_now(tag, name, msg, &mut lines);
            if let Some(label) = self.labels.get_mut(i) {
                label.lines = lines;
            }
            return more;
        }
        self.reply_now(tag, name, msg, out)
    }

    fn reply_now(
        &mut self,
        tag: u64,
        name: &str,
        msg: &ServerMsg,
        out: &mut BytesMut,
    ) -> Option<ClientMsg> {
        // The request this answers, when the hub says (news answers nothing: the last one).
        if tag != 0
            && let Some((_, asked)) = self.asks.iter().rev().find(|(t, _)| *t == tag)
        {
            self.asked = asked.clone();
        }
        let sasl_welcome = self.negotiating && matches!(msg, ServerMsg::Welcome { .. });
        if !self.holding && !sasl_welcome {
            return self.render(name, msg, out);
        }
        // Logged in through SASL with CAP negotiation still open: say so now (900, 903) and
        // keep everything else for CAP END.
        if sasl_welcome {
            self.holding = true;
        }
        let mut later = BytesMut::new();
        let more = self.render(name, msg, &mut later);
        if sasl_welcome {
            if let ServerMsg::Welcome { account, .. } = msg {
                let account = account.as_deref().unwrap_or(name);
                self.logged_in(out, account);
            }
            self.numeric(out, "903", &[], "SASL authentication successful");
        }
        self.held.extend_from_slice(&later);
        more
    }

    fn render(&mut self, name: &str, msg: &ServerMsg, out: &mut BytesMut) -> Option<ClientMsg> {
        if !name.is_empty() {
            self.name = name.to_string();
        }
        let server = self.server.clone();
        let asked = self.asked.command.as_str();
        match msg {
            ServerMsg::Welcome {
                name,
                motd,
                account,
                ..
            } => {
                self.registered = true;
                self.hello_sent = false;
                self.pass = None;
                self.name = name.clone();
                self.motd = motd.clone();
                self.welcome(out);
                if let (Some(account), false) = (account, self.holding) {
                    self.logged_in(out, account);
                }
                // What USER said, for others' WHOIS and WHO.
                let (user, realname) = std::mem::take(&mut self.profile);
                return Some(ClientMsg::Profile {
                    user: Some(user),
                    realname: Some(realname),
                    bot: None,
                });
            }
            ServerMsg::LoggedIn { account } => {
                self.logged_in(out, account);
                if asked == "REGISTER" {
                    let text = format!("Account {account} registered");
                    emit_trailing(
                        out,
                        Vec::new(),
                        &server.name,
                        "REGISTER",
                        &["SUCCESS", account, &text],
                    );
                }
            }
            ServerMsg::Operator { .. } => {
                self.numeric(out, "381", &[], "You are now an IRC operator");
                let nick = self.name.clone();
                emit_trailing(out, Vec::new(), &nick, "MODE", &[&nick, "+o"]);
            }
            ServerMsg::LoggedOut { .. } => {
                let source = mask(&self.name, &server);
                self.numeric(out, "901", &[&source], "You are now logged out");
            }
            ServerMsg::PasswordChanged { account } => {
                self.notice(out, &format!("The password of {account} is changed"));
            }
            ServerMsg::AccountDeleted { account } => {
                self.notice(out, &format!("The account {account} is deleted"));
            }
            ServerMsg::Topic {
                room,
                topic,
                by,
                ts,
                ..
            } => {
                if topic.is_empty() {
                    if asked == "TOPIC" {
                        self.numeric(out, "331", &[room], "No topic is set");
                    }
                } else {
                    self.numeric(out, "332", &[room], topic);
                    if let (Some(by), Some(ts)) = (by, ts) {
                        let when = (ts / 1000).to_string();
                        self.numeric_params(out, "333", &[room, &mask(by, &server), &when]);
                    }
                }
            }
            ServerMsg::Offline { name } => {
                let text =
                    format!("{name} is not connected; they will get it when they next connect");
                emit_trailing(
                    out,
                    Vec::new(),
                    &server.name,
                    "NOTICE",
                    &[&self.name, &text],
                );
            }
            ServerMsg::Away { name, reason } => {
                if names::key(name) == names::key(&self.name) {
                    match reason {
                        Some(_) => {
                            self.numeric(out, "306", &[], "You have been marked as being away")
                        }
                        None => {
                            self.numeric(out, "305", &[], "You are no longer marked as being away")
                        }
                    }
                } else if let Some(reason) = reason {
                    self.numeric(out, "301", &[name], reason);
                }
            }
            ServerMsg::Members {
                room,
                names,
                roles,
                more,
                away,
                secret,
                ..
            } => {
                let who = asked == "WHO";
                let prefixed = |n: &'_ String| -> (String, &'static str) {
                    let role = roles.get(n).copied().unwrap_or_default();
                    (n.clone(), role.prefix())
                };
                if who {
                    for (nick, prefix) in names.iter().map(prefixed) {
                        let here = if away.contains_key(&nick) { "G" } else { "H" };
                        let flags = format!("{here}{prefix}");
                        self.numeric(
                            out,
                            "352",
                            &[room, &nick, &server.name, &server.name, &nick, &flags],
                            &format!("0 {nick}"),
                        );
                    }
                } else {
                    let full = self.caps.has(Cap::UserhostInNames);
                    // `@` marks a secret room, `=` any other (RFC 2812).
                    let kind = if *secret { "@" } else { "=" };
                    let entries: Vec<String> = names
                        .iter()
                        .map(prefixed)
                        .map(|(n, p)| {
                            if full {
                                format!("{p}{}", mask(&n, &server))
                            } else {
                                format!("{p}{n}")
                            }
                        })
                        .collect();
                    let budget = 400usize.saturating_sub(room.len() + self.name.len());
                    let mut line = String::new();
                    for entry in entries {
                        if !line.is_empty() && line.len() + 1 + entry.len() > budget {
                            self.numeric(out, "353", &[kind, room], &line);
                            line.clear();
                        }
                        if !line.is_empty() {
                            line.push(' ');
                        }
                        line.push_str(&entry);
                    }
                    if !line.is_empty() {
                        self.numeric(out, "353", &[kind, room], &line);
                    }
                }
                if *more && let Some(last) = names.last() {
                    return Some(ClientMsg::Who {
                        room: room.clone(),
                        after: Some(last.clone()),
                    });
                }
                if who {
                    self.numeric(out, "315", &[room], "End of WHO list");
                } else {
                    self.numeric(out, "366", &[room], "End of /NAMES list");
                }
            }
            ServerMsg::RoomList { rooms, more, .. } => {
                let filter = ListFilter::parse(&self.asked.target);
                for r in rooms.iter().filter(|r| filter.admits(r)) {
                    self.numeric(out, "322", &[&r.name, &r.members.to_string()], &r.topic);
                }
                if *more && let Some(last) = rooms.last() {
                    return Some(ClientMsg::Rooms {
                        after: Some(last.name.clone()),
                    });
                }
                self.numeric(out, "323", &[], "End of /LIST");
            }
            ServerMsg::History { room, messages, .. } if asked == "CHATHISTORY" => {
                if let Some(mut older) = self.around.take() {
                    older.extend(messages.iter().cloned());
                    if let Some(next) = self.around_next.take() {
                        self.around = Some(older);
                        return Some(next);
                    }
                    self.history_batch(out, room, &older);
                } else {
                    self.history_batch(out, room, messages);
                }
            }
            ServerMsg::History { room, messages, .. } => {
                // Replayed on join, only to a client that can tell it from what is said now:
                // one with server-time (each line's own time) and batch (the replay framed as
                // such). irssi asks for server-time and no batch, and showed every replayed line
                // as said at the join; a client with chathistory asks for what it wants.
                if !(self.caps.has(Cap::ServerTime) && self.caps.has(Cap::Batch))
                    || messages.is_empty()
                {
                    return None;
                }
                self.history_batch(out, room, messages);
            }
            ServerMsg::BanList {
                room: Some(room),
                bans,
                more,
                after,
            } => {
                for ban in bans {
                    let (m, by, ts) = ban_entry(ban);
                    self.numeric_params(out, "367", &[room, &m, &by, &ts]);
                }
                if *more {
                    return Some(ClientMsg::Bans {
                        room: room.clone(),
                        after: *after,
                    });
                }
                self.numeric(out, "368", &[room], "End of channel ban list");
            }
            ServerMsg::BanList {
                room: None, bans, ..
            } => {
                for ban in bans {
                    let (m, by, _) = ban_entry(ban);
                    let why = ban.reason.as_deref().unwrap_or("");
                    self.notice(out, &format!("server ban {m} by {by}: {why}"));
                }
                self.notice(out, "end of server bans");
            }
            ServerMsg::Ban { room: None, ban } => {
                self.notice(out, &format!("server ban set on {}", ban.target));
            }
            ServerMsg::Unban {
                room: None, target, ..
            } => self.notice(out, &format!("server ban lifted from {target}")),
            ServerMsg::Connections { conns, .. } => {
                for c in conns {
                    let account = c.account.as_deref().unwrap_or("-");
                    self.notice(
                        out,
                        &format!(
                            "c{} {} account {account} from {} in {} rooms",
                            c.conn, c.name, c.addr, c.rooms
                        ),
                    );
                }
            }
            ServerMsg::Mode {
                room,
                modes,
                by: None,
                created,
                ..
            } => {
                let (modes, args) = mode_string(modes);
                let mut params = vec![room.as_str(), modes.as_str()];
                params.extend(args.iter().map(String::as_str));
                self.numeric_params(out, "324", &params);
                if let Some(created) = created {
                    let secs = (created / 1000).to_string();
                    self.numeric_params(out, "329", &[room, &secs]);
                }
            }
            ServerMsg::Invite { room, name, by, .. } => {
                if names::key(name) == names::key(&self.name) {
                    emit(out, Vec::new(), &mask(by, &server), "INVITE", &[name, room]);
                } else {
                    self.numeric_params(out, "341", &[name, room]);
                }
            }
            ServerMsg::RoomClosed {
                room, by, reason, ..
            } => {
                let why = match reason {
                    Some(r) => format!("room closed by {by}: {r}"),
                    None => format!("room closed by {by}"),
                };
                let me = self.name.clone();
                emit_trailing(
                    out,
                    Vec::new(),
                    &mask(by, &server),
                    "KICK",
                    &[room, &me, &why],
                );
            }
            ServerMsg::Pong { token } => {
                emit_trailing(
                    out,
                    Vec::new(),
                    &server.name,
                    "PONG",
                    &[&server.name, token],
                );
            }
            ServerMsg::Ack { .. } => {}
            ServerMsg::Stats { time, .. } if asked == "TIME" => {
                let when = chrono::DateTime::from_timestamp_millis(*time as i64)
                    .map(|t| t.format("%A %B %e %Y -- %H:%M:%S +00:00").to_string())
                    .unwrap_or_default();
                self.numeric(out, "391", &[&server.name], &when);
            }
            ServerMsg::Stats {
                users,
                max_users,
                unregistered,
                operators,
                rooms,
                ..
            } => {
                let text = format!("There are {users} users and 0 invisible on 1 server(s)");
                self.numeric(out, "251", &[], &text);
                self.numeric(out, "252", &[&operators.to_string()], "operator(s) online");
                self.numeric(
                    out,
                    "253",
                    &[&unregistered.to_string()],
                    "unknown connection(s)",
                );
                self.numeric(out, "254", &[&rooms.to_string()], "channels formed");
                let text = format!("I have {users} clients and 0 servers");
                self.numeric(out, "255", &[], &text);
                let (now, max) = (users.to_string(), max_users.to_string());
                let text = format!("Current local users {users}, max {max_users}");
                self.numeric(out, "265", &[&now, &max], &text);
                let text = format!("Current global users {users}, max {max_users}");
                self.numeric(out, "266", &[&now, &max], &text);
            }
            ServerMsg::Whowas { name, entries } => {
                if entries.is_empty() {
                    self.numeric(out, "406", &[name], "There was no such nickname");
                }
                for e in entries {
                    self.numeric(
                        out,
                        "314",
                        &[&e.name, &e.user, &server.name, "*"],
                        &e.realname,
                    );
                    let when = chrono::DateTime::from_timestamp_millis(e.ts as i64)
                        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
                        .unwrap_or_default();
                    self.numeric(out, "312", &[&e.name, &server.name], &when);
                }
                self.numeric(out, "369", &[name], "End of WHOWAS");
            }
            ServerMsg::People { people, .. } if asked == "USERHOST" => {
                let replies: Vec<String> = people
                    .iter()
                    .map(|p| {
                        format!(
                            "{}{}={}{}@{}",
                            p.name,
                            if p.operator { "*" } else { "" },
                            if p.away { "-" } else { "+" },
                            p.user,
                            server.name
                        )
                    })
                    .collect();
                self.numeric(out, "302", &[], &replies.join(" "));
            }
            ServerMsg::People { target, people, .. } if self.asked.other.starts_with('%') => {
                let spec = self.asked.other.clone();
                let (fields, token) = spec[1..].split_once(',').unwrap_or((&spec[1..], ""));
                for p in people {
                    let params = whox(fields, token, p, &server);
                    let (last, middle) = match params.split_last() {
                        Some((last, middle)) if fields.contains('r') => (last.as_str(), middle),
                        _ => ("", params.as_slice()),
                    };
                    let mut all: Vec<&str> = vec![&self.name];
                    all.extend(middle.iter().map(String::as_str));
                    if fields.contains('r') {
                        all.push(last);
                        emit_trailing(out, Vec::new(), &server.name, "354", &all);
                    } else {
                        emit(out, Vec::new(), &server.name, "354", &all);
                    }
                }
                self.numeric(out, "315", &[target], "End of WHO list");
            }
            ServerMsg::People { target, people, .. } => {
                for p in people {
                    let flags = who_flags(p);
                    let room = p.room.as_deref().unwrap_or("*");
                    self.numeric(
                        out,
                        "352",
                        &[room, &p.user, &server.name, &server.name, &p.name, &flags],
                        &format!("0 {}", p.realname),
                    );
                }
                self.numeric(out, "315", &[target], "End of WHO list");
            }
            ServerMsg::Whois {
                name,
                user,
                realname,
                account,
                rooms,
                roles,
                away,
                operator,
                bot,
                idle,
                since,
            } => {
                self.numeric(out, "311", &[name, user, &server.name, "*"], realname);
                if !rooms.is_empty() {
                    let shown = crate::protocol::rooms_with_roles(rooms, roles);
                    self.numeric(out, "319", &[name], &shown);
                }
                self.numeric(out, "312", &[name, &server.name], &server.network);
                if let Some(reason) = away {
                    self.numeric(out, "301", &[name], reason);
                }
                if *operator {
                    self.numeric(out, "313", &[name], "is an IRC operator");
                }
                if *bot {
                    self.numeric(out, "335", &[name], "is a bot");
                }
                if let Some(account) = account {
                    self.numeric(out, "330", &[name, account], "is logged in as");
                }
                let (idle, signon) = (idle.to_string(), (since / 1000).to_string());
                self.numeric(
                    out,
                    "317",
                    &[name, &idle, &signon],
                    "seconds idle, signon time",
                );
                self.numeric(out, "318", &[name], "End of /WHOIS list");
            }
            ServerMsg::Watching { online, offline } => {
                let nick = self.name.clone();
                for chunk in online.chunks(20) {
                    let masks: Vec<String> = chunk.iter().map(|n| mask(n, &server)).collect();
                    let list = masks.join(",");
                    emit_trailing(out, Vec::new(), &server.name, "730", &[&nick, &list]);
                }
                for chunk in offline.chunks(20) {
                    let list = chunk.join(",");
                    emit_trailing(out, Vec::new(), &server.name, "731", &[&nick, &list]);
                }
            }
            ServerMsg::Error {
                code: ErrorCode::ListFull,
                ..
            } if self.asked.command == "MONITOR" => {
                let limit = crate::hub::MAX_WATCHED.to_string();
                let nick = self.name.clone();
                let params = [nick.as_str(), &limit, "targets", "Monitor list is full"];
                emit_trailing(out, Vec::new(), &server.name, "734", &params);
            }
            ServerMsg::Error { code, message, .. } => self.error(out, *code, message),
            other => event(&server, self.caps, other, out),
        }
        None
    }

    fn welcome(&mut self, out: &mut BytesMut) {
        let s = self.server.clone();
        let nick = self.name.clone();
        self.numeric(
            out,
            "001",
            &[],
            &format!(
                "Welcome to the {} IRC Network {}",
                s.network,
                mask(&nick, &s)
            ),
        );
        self.numeric(
            out,
            "002",
            &[],
            &format!("Your host is {}, running version {}", s.name, s.version),
        );
        self.numeric(
            out,
            "003",
            &[],
            &format!("This server was created {}", s.created),
        );
        self.numeric_params(
            out,
            "004",
            &[&s.name, &s.version, "Bi", "biklmqostvR", "bkloqv"],
        );
        self.isupport(out);
        self.motd(out);
    }

    fn isupport(&self, out: &mut BytesMut) {
        let s = &self.server;
        let tokens = [
            "BOT=B".to_string(),
            "CASEMAPPING=rfc8265".to_string(),
            format!("CHANLIMIT=#:{}", s.max_rooms),
            "CHANMODES=b,k,l,imnstR".to_string(),
            format!("CHANNELLEN={}", names::MAX_ROOM_CHARS),
            "CHANTYPES=#".to_string(),
            "ELIST=MNU".to_string(),
            // A mute is a ban with `m:` before its mask.
            "EXTBAN=,m".to_string(),
            format!("KICKLEN={}", s.reason_len),
            "MODES=6".to_string(),
            format!("NETWORK={}", s.network),
            format!("NICKLEN={}", names::MAX_NAME_CHARS),
            "PREFIX=(qov)~@+".to_string(),
            format!(
                "TARGMAX=JOIN:{MAX_TARGETS},PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},TAGMSG:{MAX_TARGETS},KICK:{MAX_TARGETS},NAMES:1,WHO:1"
            ),
            format!("TOPICLEN={}", s.topic_len),
            "UTF8ONLY".to_string(),
            "WHOX".to_string(),
            format!("CHATHISTORY={MAX_HISTORY}"),
            "MSGREFTYPES=msgid,timestamp".to_string(),
            format!("MONITOR={}", crate::hub::MAX_WATCHED),
        ];
        // At most 13 tokens a line: with the nick and the text, 15 parameters.
        for line in tokens.chunks(13) {
            let params: Vec<&str> = line.iter().map(String::as_str).collect();
            self.numeric(out, "005", &params, "are supported by this server");
        }
    }

    fn motd(&self, out: &mut BytesMut) {
        match &self.motd {
            Some(motd) if !motd.is_empty() => {
                let head = format!("- {} Message of the day - ", self.server.name);
                self.numeric(out, "375", &[], &head);
                for line in motd.lines() {
                    for piece in chunks(line, 380) {
                        self.numeric(out, "372", &[], &format!("- {piece}"));
                    }
                }
                self.numeric(out, "376", &[], "End of /MOTD command.");
            }
            _ => self.numeric(out, "422", &[], "MOTD File is missing"),
        }
    }

    fn logged_in(&self, out: &mut BytesMut, account: &str) {
        let source = mask(&self.name, &self.server);
        let text = format!("You are now logged in as {account}");
        self.numeric(out, "900", &[&source, account], &text);
    }

    /// A refusal as the numeric IRC clients know for it, else a `FAIL` with our code.
    fn error(&mut self, out: &mut BytesMut, code: ErrorCode, message: &str) {
        let asked = self.asked.clone();
        let cmd = asked.command.as_str();
        let t = asked.target.as_str();
        if !self.registered {
            // The hello was refused: a new NICK may try again.
            self.hello_sent = false;
        }
        if cmd == "CHATHISTORY" {
            self.around = None;
            self.around_next = None;
            let code = match code {
                ErrorCode::NoSuchRoom | ErrorCode::InvalidRoom | ErrorCode::NotInRoom => {
                    "INVALID_TARGET"
                }
                _ => "MESSAGE_ERROR",
            };
            emit_trailing(
                out,
                Vec::new(),
                &self.server.name,
                "FAIL",
                &["CHATHISTORY", code, t, message],
            );
            return;
        }
        if cmd == "AUTHENTICATE" {
            self.numeric(
                out,
                "904",
                &[],
                &format!("SASL authentication failed: {message}"),
            );
            return;
        }
        let room_cmd = matches!(cmd, "MODE" | "KICK" | "TOPIC" | "INVITE");
        let (numeric, params): (&str, Vec<&str>) = match code {
            // NAMES of a room that is not there (or not to be seen) is an empty list.
            ErrorCode::NoSuchRoom | ErrorCode::InvalidRoom | ErrorCode::NotInRoom
                if cmd == "NAMES" =>
            {
                ("366", vec![t])
            }
            ErrorCode::LineTooLong => ("417", vec![]),
            ErrorCode::NotRegistered => ("451", vec![]),
            ErrorCode::AlreadyRegistered => ("462", vec![]),
            ErrorCode::InvalidName => ("432", vec![t]),
            ErrorCode::NameTaken | ErrorCode::NameReserved => ("433", vec![t]),
            ErrorCode::InvalidRoom => ("479", vec![t]),
            ErrorCode::NoSuchRoom => ("403", vec![t]),
            ErrorCode::NotInRoom if cmd == "PRIVMSG" || cmd == "NOTICE" => ("404", vec![t]),
            ErrorCode::NotInRoom => ("442", vec![t]),
            ErrorCode::NoSuchUser if matches!(cmd, "INVITE" | "MODE" | "KICK") => {
                ("401", vec![asked.other.as_str()])
            }
            ErrorCode::NoSuchUser => ("401", vec![t]),
            ErrorCode::AlreadyInRoom => ("443", vec![asked.other.as_str(), t]),
            ErrorCode::NotThere => ("441", vec![asked.other.as_str(), t]),
            ErrorCode::EmptyText => ("412", vec![]),
            ErrorCode::TooManyRooms => ("405", vec![t]),
            ErrorCode::NotPermitted if room_cmd => ("482", vec![t]),
            ErrorCode::NotPermitted if cmd == "OPER" => ("491", vec![]),
            ErrorCode::NotPermitted => ("481", vec![]),
            ErrorCode::Banned if cmd == "JOIN" => ("474", vec![t]),
            ErrorCode::CannotSpeak => ("404", vec![t]),
            ErrorCode::InviteOnly => ("473", vec![t]),
            ErrorCode::RoomFull => ("471", vec![t]),
            ErrorCode::BadKey => ("475", vec![t]),
            ErrorCode::RegisteredOnly => ("477", vec![t]),
            ErrorCode::BadCredentials if cmd == "NICK" => ("464", vec![]),
            ErrorCode::BadCredentials | ErrorCode::LoginThrottled if cmd == "OPER" => {
                ("464", vec![])
            }
            _ => {
                let name = code.as_str().to_ascii_uppercase();
                let command = if cmd.is_empty() { "*" } else { cmd };
                // Flooding delays what was sent rather than refusing it: a warning.
                let kind = if code == ErrorCode::Flooding {
                    "WARN"
                } else {
                    "FAIL"
                };
                emit_trailing(
                    out,
                    Vec::new(),
                    &self.server.name,
                    kind,
                    &[command, &name, message],
                );
                return;
            }
        };
        // A NOTICE is never answered with an error (RFC 2812).
        if cmd == "NOTICE" {
            return;
        }
        self.numeric(out, numeric, &params, message);
        if cmd == "WHOIS" {
            // The reply ends, found or not.
            self.numeric(out, "318", &[t], "End of /WHOIS list");
        }
    }

    fn notice(&self, out: &mut BytesMut, text: &str) {
        emit_trailing(
            out,
            Vec::new(),
            &self.server.name,
            "NOTICE",
            &[&self.name, text],
        );
    }

    /// `:server NNN nick params... :text`.
    fn numeric(&self, out: &mut BytesMut, numeric: &str, params: &[&str], text: &str) {
        let mut all = vec![self.name.as_str()];
        all.extend_from_slice(params);
        all.push(text);
        emit_trailing(out, Vec::new(), &self.server.name, numeric, &all);
    }

    /// A numeric whose last parameter is not free text.
    fn numeric_params(&self, out: &mut BytesMut, numeric: &str, params: &[&str]) {
        let mut all = vec![self.name.as_str()];
        all.extend_from_slice(params);
        emit(out, Vec::new(), &self.server.name, numeric, &all);
    }
}

/// Actions being collected, with the bytes written since the last one.
#[derive(Default)]
struct Out {
    buf: BytesMut,
    actions: Vec<Action>,
}

impl Out {
    fn actions_flush(&mut self) {
        if !self.buf.is_empty() {
            self.actions.push(Action::Send(self.buf.split().freeze()));
        }
    }

    fn hub(&mut self, msg: ClientMsg, asked: Asked) {
        self.actions_flush();
        self.actions.push(Action::Hub { msg, asked });
    }

    fn finish(mut self) -> Vec<Action> {
        self.actions_flush();
        self.actions
    }
}

/// A CHATHISTORY reference: a message id or a time.
#[derive(Debug, Clone, Copy)]
enum HistoryRef {
    Id(crate::protocol::MsgId),
    Ts(crate::protocol::UnixMillis),
}

impl HistoryRef {
    /// The bound just past this one, to include the referenced message in a "before".
    fn next(self) -> HistoryRef {
        match self {
            HistoryRef::Id(id) => HistoryRef::Id(id.saturating_add(1)),
            HistoryRef::Ts(ts) => HistoryRef::Ts(ts.saturating_add(1)),
        }
    }

    /// Whether `self` comes after `other` (references of different kinds compare as given).
    fn is_after(self, other: HistoryRef) -> bool {
        match (self, other) {
            (HistoryRef::Id(a), HistoryRef::Id(b)) | (HistoryRef::Ts(a), HistoryRef::Ts(b)) => {
                a > b
            }
            _ => true,
        }
    }
}

/// A history request being built from CHATHISTORY.
#[derive(Debug, Default)]
struct HistoryAsk {
    room: String,
    before: Option<HistoryRef>,
    after: Option<HistoryRef>,
    latest: bool,
    limit: u32,
}

impl HistoryAsk {
    fn message(&self) -> ClientMsg {
        let id = |r: Option<HistoryRef>| match r {
            Some(HistoryRef::Id(id)) => Some(id),
            _ => None,
        };
        let ts = |r: Option<HistoryRef>| match r {
            Some(HistoryRef::Ts(ts)) => Some(ts),
            _ => None,
        };
        ClientMsg::History {
            room: self.room.clone(),
            before: id(self.before),
            after: id(self.after),
            before_ts: ts(self.before),
            after_ts: ts(self.after),
            latest: self.latest,
            limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_sasl_credentials() {
        let mut a = Adapter::new(Arc::new(ServerInfo::default()));
        let line = |a: &mut Adapter, text: &str| a.line(super::super::line::parse(text.as_bytes()));
        line(&mut a, "CAP REQ :sasl");
        line(&mut a, "AUTHENTICATE PLAIN");
        // 400 characters: more chunks follow, so the exchange stays open with this buffered.
        let chunk = format!("AGFubgBjb3JyZWN0LWhvcnNl{}", "A".repeat(376));
        line(&mut a, &format!("AUTHENTICATE {chunk}"));
        let shown = format!("{a:?}");
        assert!(a.sasl.is_some());
        assert!(!shown.contains("AGFubgBjb3JyZWN0"), "{shown}");
    }
}
