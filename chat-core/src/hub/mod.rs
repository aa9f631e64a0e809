//! The server-side state machine: a [`Hub`] of connections and the [`Room`]s they share.
//!
//! The hub does no I/O and reads no clock. The server shell feeds it [`Input`]s with the current
//! time, calls [`Hub::handle_timeout`] when [`Hub::poll_timeout`] says so, and drains
//! [`Hub::poll_output`]: bytes to transmit (each outgoing message encoded once, the same bytes for
//! every recipient), connections to close, and records to store. The same inputs always give the
//! same outputs, which is what the transcript tests rely on.
//!
//! Two clocks: the `now` passed to [`Hub::handle`] and [`Hub::handle_timeout`] is *monotonic*
//! (milliseconds from any origin; the server uses `Instant`) and drives every deadline: pings,
//! registration, flood control, room expiry. The wall clock, given by [`Hub::set_wall_clock`],
//! only stamps messages, and stamps never go backwards even when it does. Stepping the system
//! clock therefore moves no deadline.
//!
//! Durability: with [`HubConfig::durable`] set, a message that gets an id is first handed out as
//! [`Output::Store`] and held back; it is delivered (and so acknowledged to its sender) only when
//! the shell reports [`Input::Committed`] for its id. Messages are released strictly in id order.
//!
//! Exactly-once sends: a `say`, `me` or `msg` may carry the client's own id (`cid`). The hub
//! remembers the most recent [`HubConfig::dedupe_window`] cids with the id they were stored
//! under, answers a repeat with the original `ack` instead of a second message, and acknowledges
//! a new one with `ack` once it is delivered.
//!
//! Bounded growth: rooms are capped ([`HubConfig::max_rooms`]), each connection may create only
//! so many new rooms a minute, and a room nobody is in leaves memory after
//! [`HubConfig::room_expiry`]. With a store its history stays there, and a later join loads it
//! back ([`Output::LoadRoom`], answered by [`Input::RoomLoaded`]) before it goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use indexmap::IndexSet;

use crate::codec::{self, FrameError, Wire};
use crate::irc;
use crate::names::{self, NameError};
use crate::protocol::{
    ChatMessage, ClientMsg, ClientTags, ErrorCode, Limits, MsgId, PROTOCOL_VERSION, RoomInfo,
    Secret, ServerMsg, UnixMillis,
};
use messages::Body;

mod accounts;
mod away;
mod config;
mod delivery;
mod durability;
mod flood;
mod history;
mod identity;
mod invariants;
mod liveness;
mod markers;
mod messages;
mod moderation;
mod offline;
mod rooms;
#[cfg(test)]
mod tests;

pub use accounts::{MAX_PASSWORD, PasswordWork, StoredAccount};
pub use config::HubConfig;
pub use durability::{Record, RestoredRoom};
pub use history::HistoryQuery;
pub use moderation::{Ban, RoomSettings};
pub use offline::{MAX_OFFLINE, StoredDirect};
pub use rooms::Room;

use accounts::{Account, AuthWait, Throttle, addr_key};
use delivery::Pending;
use history::fit_by_size;
use liveness::Conn;

/// Identifies one connection. Assigned by the shell; never reused while the hub runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Reasons the hub gives when someone leaves the server, as sent in `quit` and `bye`.
pub mod reason {
    /// The client sent `quit` without a message.
    pub const QUIT: &str = "quit";
    /// The client stopped answering pings.
    pub const PING_TIMEOUT: &str = "ping timeout";
    /// The connection closed or failed without a `quit`.
    pub const CONNECTION_LOST: &str = "connection lost";
    /// The client kept sending over the flood limit.
    pub const FLOODING: &str = "flooding";
    /// The client did not read its messages fast enough.
    pub const SEND_QUEUE_EXCEEDED: &str = "send queue exceeded";
    /// The server is shutting down.
    pub const SERVER_SHUTDOWN: &str = "server shutdown";
    /// The client never completed `hello`.
    pub const REGISTRATION_TIMEOUT: &str = "registration timeout";
    /// The client asked for a protocol version the server does not speak.
    pub const UNSUPPORTED_VERSION: &str = "unsupported protocol version";
}

/// Most names one connection watches (`watch`, IRC's `MONITOR=100`).
pub const MAX_WATCHED: usize = 100;

/// The bit of a request's tag ([`Input::Request`]) that asks for its whole answer.
pub const WHOLE_ANSWER: u64 = 1 << 63;

/// What the shell tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted.
    Connect {
        /// Its id.
        conn: ConnId,
        /// The peer's address, for per-address login throttling.
        addr: IpAddr,
        /// The wire format it speaks ([`Hub::set_wire`] changes it later).
        wire: Wire,
    },
    /// A line arrived on a connection, decoded or not.
    Frame {
        /// From whom.
        conn: ConnId,
        /// The message, or why the line could not be read.
        frame: Result<ClientMsg, FrameError>,
    },
    /// A frame whose answers are marked: every [`Output::Reply`] it causes, now or once what
    /// it waited for arrives, carries `tag`. An adapter that renders answers by the request
    /// that asked (an IRC numeric names the command's target; `labeled-response`) gives each
    /// request its own tag. [`Input::Frame`] is a request with tag 0. A tag with
    /// [`WHOLE_ANSWER`] set also gets the asker's own copy of every event the request causes
    /// (the echo of its message, its join) as such a reply, and [`Hub::answering`] says when
    /// nothing more is to come.
    Request {
        /// From whom.
        conn: ConnId,
        /// The message, or why the line could not be read.
        frame: Result<ClientMsg, FrameError>,
        /// Opaque to the hub (0 is [`Input::Frame`]'s).
        tag: u64,
    },
    /// A connection ended without the hub asking for it (EOF, reset, write failure, full queue).
    Disconnect {
        /// Which one.
        conn: ConnId,
        /// Why, as the other members will read it (see [`reason`]).
        reason: String,
    },
    /// The store has durably committed every record up to and including this id.
    Committed {
        /// The highest committed id.
        through: MsgId,
    },
    /// The answer to [`Output::LoadRoom`]: the room as stored, or `None` if the store has
    /// nothing of it.
    RoomLoaded {
        /// The key asked for.
        key: String,
        /// What the store holds.
        room: Option<RestoredRoom>,
    },
    /// The answer to [`Output::LoadRoom`] when the store could not read the room (a failing
    /// disk, a row it cannot parse). The commands waiting for it are refused
    /// (`store_unavailable`) rather than run against an empty room that would lose its bans.
    RoomLoadFailed {
        /// The key asked for.
        key: String,
    },
    /// The answer to [`Output::LoadHistory`]: the messages within the query's bounds, oldest
    /// first, and whether more lie beyond its limit.
    HistoryLoaded {
        /// Who asked.
        conn: ConnId,
        /// The query, as asked.
        query: HistoryQuery,
        /// The messages found (at most the query's limit), oldest first.
        messages: Vec<ChatMessage>,
        /// More messages within the bounds lie beyond the limit.
        more: bool,
    },
    /// The store could not take an [`Output::LoadHistory`] now (its queue of reads is full):
    /// the asker is told `busy`, and its next read goes out.
    HistoryBusy {
        /// Who asked.
        conn: ConnId,
        /// The query, as asked.
        query: HistoryQuery,
    },
    /// The store has failed to commit for a while: refuse new messages (`store_unavailable`)
    /// and tell the senders of held ones that they wait. Held messages are kept, in order.
    StoreDown,
    /// The store commits again: accept messages again.
    StoreUp,
    /// A line the connection's protocol adapter answered itself, without a frame for the
    /// hub (an unknown IRC command, a malformed line): it costs what a frame costs, so flood
    /// control cuts off a client flooding with such lines as it would any other.
    Answered {
        /// Whose line.
        conn: ConnId,
    },
    /// The answer to [`Output::Password`].
    PasswordDone {
        /// The connection the work was for.
        conn: ConnId,
        /// The password matched the hash (for [`PasswordWork::Verify`] and
        /// [`PasswordWork::Change`]).
        verified: bool,
        /// The new hash (for [`PasswordWork::Hash`], and [`PasswordWork::Change`] when verified).
        hash: Option<String>,
    },
    /// The server is shutting down: tell everyone and close every connection.
    Shutdown,
}

/// What the hub asks of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Queue these bytes on each of these connections.
    Transmit {
        /// The recipients.
        to: Vec<ConnId>,
        /// One or more encoded messages, shared by every recipient.
        bytes: Bytes,
    },
    /// An answer to one connection whose wire format writes it for that connection alone
    /// (an IRC numeric names its recipient): the shell's adapter for the connection renders it.
    Reply {
        /// The recipient.
        conn: ConnId,
        /// Its name as the hub knows it (empty before registration).
        name: String,
        /// The answer.
        msg: ServerMsg,
        /// The tag of the request ([`Input::Request`]) this answers; 0 for news that answers
        /// nothing the recipient asked.
        tag: u64,
    },
    /// Flush what is queued for this connection, then close it. The hub has already forgotten it.
    Close {
        /// Which one.
        conn: ConnId,
        /// Why (for logs).
        reason: String,
    },
    /// Persist this record, then report [`Input::Committed`].
    Store(Record),
    /// Do this password work away from the hub (it is slow on purpose), then report
    /// [`Input::PasswordDone`]. The connection's other frames wait meanwhile.
    Password {
        /// For whom.
        conn: ConnId,
        /// What to do.
        work: PasswordWork,
        /// Wait this long first, in milliseconds: an attempt on an account over its ceiling
        /// of failed logins is slowed down, not refused.
        delay: u64,
    },
    /// A login failed: wrong password or no such account (for the log; no password in it).
    LoginFailed {
        /// From which connection.
        conn: ConnId,
        /// The account it tried, as given (at most 64 characters).
        account: String,
    },
    /// A moderation or operator action, for the server's audit log.
    Audit {
        /// Who did it.
        conn: ConnId,
        /// What was done, by whom (name, account, connection).
        text: String,
    },
    /// Read a page of a room's history from the store, then report [`Input::HistoryLoaded`]:
    /// someone pages back past what the hub keeps in memory.
    LoadHistory {
        /// Who asked.
        conn: ConnId,
        /// What to read.
        query: HistoryQuery,
    },
    /// Load this room (by key) from the store, then report [`Input::RoomLoaded`]. Someone is
    /// joining it and it is not in memory.
    LoadRoom {
        /// The room's key ([`names::key`]).
        key: String,
    },
}

/// The server-side state machine. See the module documentation.
pub struct Hub {
    config: HubConfig,
    /// How IRC connections see this server, for encoding room events as IRC.
    irc: std::sync::Arc<irc::ServerInfo>,
    /// Connections whose wire is not JSON Lines: while there are none, every event is encoded
    /// once, as JSON, without looking at recipients.
    foreign: usize,
    conns: HashMap<ConnId, Conn>,
    /// Name key to connection, for uniqueness and direct messages.
    names: HashMap<String, Vec<ConnId>>,
    /// Skeleton of each name in use to its key, to refuse look-alikes.
    name_skeletons: HashMap<String, String>,
    /// Room key to room.
    rooms: HashMap<String, Room>,
    /// Skeleton of each room in memory to its key.
    room_skeletons: HashMap<String, String>,
    /// Empty rooms by the time they leave memory.
    expiries: BTreeSet<(UnixMillis, String)>,
    /// Rooms being loaded from the store, with the connections waiting for them.
    loading: HashMap<String, Vec<ConnId>>,
    /// Rooms the store just said it does not have: the next join creates them.
    absent: HashSet<String>,
    /// Recent client message ids and the ids they were stored under.
    cids: HashMap<String, MsgId>,
    /// The same cids, oldest first, to forget the oldest past `dedupe_window`.
    cid_order: VecDeque<String>,
    /// The cid of the message being handled, attached to any refusal of it.
    cid: Option<String>,
    /// Liveness and registration deadlines, one per connection.
    timers: BTreeSet<(UnixMillis, ConnId)>,
    /// Flood-control release times of connections with delayed frames.
    releases: BTreeSet<(UnixMillis, ConnId)>,
    /// Id-bearing events held until committed, in id order.
    /// Who watches each name (`watch`), by name key.
    watchers: HashMap<String, Vec<ConnId>>,
    /// What waits for the store, in id order: the id it waits for, and the tag of the request
    /// it answers.
    pending: VecDeque<(MsgId, Pending, u64)>,
    /// Messages in `pending` (acks aside), and their weight, against the held limits.
    held: usize,
    held_bytes: usize,
    /// The store reported failing commits: refuse new messages until it recovers.
    store_down: bool,
    next_id: MsgId,
    /// Timestamps never go backwards, even if the wall clock does.
    last_ts: UnixMillis,
    /// The wall clock, as last set by [`Hub::set_wall_clock`].
    wall: UnixMillis,
    /// Who left lately, oldest first, at most [`liveness::WHOWAS_KEPT`]: for `whowas`.
    departed: VecDeque<(String, crate::protocol::Departed)>,
    /// The most connections with a name there have been at once.
    peak_users: u64,
    /// The connection whose request runs now, and its tag ([`Input::Request`]).
    tag: Option<(ConnId, u64)>,
    outputs: VecDeque<Output>,
    /// Reused encoding buffer; each message is split off it as `Bytes`.
    scratch: BytesMut,
    shutting_down: bool,
    /// Bans from the whole server, set by its operators.
    server_bans: Vec<moderation::Ban>,
    /// Keys of the accounts [`HubConfig::operators`] names.
    operators: HashSet<String>,
    /// Registered accounts by key.
    accounts: HashMap<String, Account>,
    /// Who is away (name key), and why. Forgotten when the name's last connection leaves.
    away: HashMap<String, String>,
    /// Direct messages waiting for accounts that are not connected, by account key.
    offline: HashMap<String, VecDeque<offline::StoredDirect>>,
    /// When new senders first left a message in each mailbox (account key), within the last
    /// minute: the new-sender limit of direct messages, for accounts that are not connected.
    offline_new: HashMap<String, VecDeque<UnixMillis>>,
    /// Skeleton of each account's name to its key, to refuse look-alikes.
    account_skeletons: HashMap<String, String>,
    /// Failed logins per account key and address: what locks (one address guessing cannot
    /// lock the owner out from another).
    login_throttles: HashMap<(String, IpAddr), Throttle>,
    /// Failed logins per account key from every address within the last hour, against the
    /// account-wide ceiling ([`HubConfig::login_failures_account_ceiling`]), which only slows.
    account_failures: HashMap<String, VecDeque<UnixMillis>>,
    /// Wrong room keys per room key and address, throttled like passwords.
    key_throttles: HashMap<(String, IpAddr), Throttle>,
    /// Failed logins per address.
    addr_throttles: HashMap<IpAddr, Throttle>,
    /// When each address registered accounts, within the last hour.
    registrations: HashMap<IpAddr, VecDeque<UnixMillis>>,
    /// What happened since the start, for the server's metrics.
    counters: Counters,
}

/// Counts of what the hub did since it started, for metrics. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Room and direct messages accepted from clients.
    pub messages: u64,
    /// Connections dropped for flooding.
    pub flood_kicks: u64,
}

impl Hub {
    /// A hub with this configuration. Connections speak JSON Lines unless they say otherwise
    /// ([`Input::Connect`], [`Hub::set_wire`]).
    pub fn new(config: HubConfig) -> Self {
        let operators = config.operators.iter().map(|o| names::key(o)).collect();
        let mut hub = Self {
            config,
            irc: std::sync::Arc::new(irc::ServerInfo::default()),
            foreign: 0,
            conns: HashMap::new(),
            names: HashMap::new(),
            name_skeletons: HashMap::new(),
            rooms: HashMap::new(),
            room_skeletons: HashMap::new(),
            expiries: BTreeSet::new(),
            loading: HashMap::new(),
            absent: HashSet::new(),
            cids: HashMap::new(),
            cid_order: VecDeque::new(),
            cid: None,
            timers: BTreeSet::new(),
            releases: BTreeSet::new(),
            pending: VecDeque::new(),
            watchers: HashMap::new(),
            held: 0,
            held_bytes: 0,
            store_down: false,
            next_id: 1,
            last_ts: 0,
            wall: 0,
            tag: None,
            departed: VecDeque::new(),
            peak_users: 0,
            outputs: VecDeque::new(),
            scratch: BytesMut::new(),
            shutting_down: false,
            server_bans: Vec::new(),
            operators,
            accounts: HashMap::new(),
            away: HashMap::new(),
            offline: HashMap::new(),
            offline_new: HashMap::new(),
            account_skeletons: HashMap::new(),
            login_throttles: HashMap::new(),
            account_failures: HashMap::new(),
            key_throttles: HashMap::new(),
            addr_throttles: HashMap::new(),
            registrations: HashMap::new(),
            counters: Counters::default(),
        };
        // An empty default room is none: native clients are not put anywhere either.
        let lobby = hub.config.default_room.clone();
        if !lobby.is_empty() {
            hub.insert_room(Room::new(lobby));
        }
        hub
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Takes a new configuration while running (a reload): limits, timeouts, the MOTD and the
    /// operators change for everyone from now on. What the hub's state is built around stays
    /// as it was started: the server's name, the default room, durability, the history kept
    /// per room, the line limit and the store's bounds.
    pub fn reconfigure(&mut self, config: HubConfig) {
        let old = &self.config;
        let config = HubConfig {
            server_name: old.server_name.clone(),
            default_room: old.default_room.clone(),
            durable: old.durable,
            history: old.history,
            max_line: old.max_line,
            dedupe_window: old.dedupe_window,
            max_held: old.max_held,
            max_held_bytes: old.max_held_bytes,
            ..config
        };
        self.operators = config.operators.iter().map(|o| names::key(o)).collect();
        self.config = config;
    }

    /// What the hub has counted since it started.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of rooms held in memory.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Sets how the server presents itself to IRC clients (its name, network, limits).
    pub fn set_irc_server(&mut self, info: std::sync::Arc<irc::ServerInfo>) {
        self.irc = info;
    }

    /// Changes the wire format of a connection: an IRC client's capabilities change how room
    /// events are written for it, and whether it gets its own messages back.
    pub fn set_wire(&mut self, conn: ConnId, wire: Wire) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let was_foreign = c.wire != Wire::Json;
            let is_foreign = wire != Wire::Json;
            c.wire = wire;
            match (was_foreign, is_foreign) {
                (false, true) => self.foreign += 1,
                (true, false) => self.foreign -= 1,
                _ => {}
            }
        }
    }

    /// Number of open connections, registered or not.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of registered users.
    pub fn user_count(&self) -> usize {
        self.names.len()
    }

    /// Looks up a room by name (any case).
    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(&names::key(name))
    }

    /// The id the next message will get.
    pub fn next_id(&self) -> MsgId {
        self.next_id
    }

    /// The next thing for the shell to do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Hub::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        [
            self.timers.first().map(|(t, _)| *t),
            self.releases.first().map(|(t, _)| *t),
            self.expiries.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sets the wall clock (milliseconds since the Unix epoch) that stamps messages from now on.
    /// Call it before each batch of inputs; it may jump either way without harm.
    pub fn set_wall_clock(&mut self, wall: UnixMillis) {
        self.wall = wall;
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: UnixMillis, input: Input) {
        match input {
            Input::Connect { conn, addr, wire } => self.handle_connect(now, conn, addr, wire),
            Input::Frame { conn, frame } => self.handle_frame(now, conn, frame, 0),
            Input::Request { conn, frame, tag } => self.handle_frame(now, conn, frame, tag),
            Input::Answered { conn } => self.handle_answered(now, conn),
            Input::Disconnect { conn, reason } => self.drop_conn(now, conn, &reason, false),
            Input::Committed { through } => self.handle_committed(through),
            Input::RoomLoaded { key, room } => self.handle_room_loaded(now, key, room),
            Input::RoomLoadFailed { key } => self.handle_room_load_failed(now, &key),
            Input::HistoryBusy { conn, query } => self.handle_history_busy(conn, &query),
            Input::HistoryLoaded {
                conn,
                query,
                messages,
                more,
            } => self.handle_history_loaded(conn, &query, messages, more),
            Input::StoreDown => self.handle_store_down(),
            Input::StoreUp => self.store_down = false,
            Input::PasswordDone {
                conn,
                verified,
                hash,
            } => self.handle_password_done(now, conn, verified, hash),
            Input::Shutdown => self.handle_shutdown(now),
        }
    }

    /// Runs every deadline that is due at `now`: pings, timeouts, delayed frames.
    pub fn handle_timeout(&mut self, now: UnixMillis) {
        while let Some(&(at, conn)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.check_liveness(now, conn);
        }
        while let Some(&(at, conn)) = self.releases.first() {
            if at > now {
                break;
            }
            self.releases.pop_first();
            if let Some(c) = self.conns.get_mut(&conn) {
                c.release_at = None;
            }
            self.run_delayed(now, conn);
        }
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            if self
                .rooms
                .get(&key)
                .is_some_and(|r| r.empty_since.is_some())
            {
                self.remove_room(&key);
            }
        }
    }

    fn process(&mut self, now: UnixMillis, conn: ConnId, frame: Result<ClientMsg, FrameError>) {
        let msg = match frame {
            Ok(msg) => msg,
            Err(err) => {
                self.reply(conn, &error(err.code(), &err.to_string()));
                return;
            }
        };
        let registered = self.conns.get(&conn).is_some_and(|c| c.name.is_some());
        // What `whois` calls idle: the time since the last message.
        if matches!(
            msg,
            ClientMsg::Say { .. } | ClientMsg::Me { .. } | ClientMsg::Msg { .. }
        ) && let Some(c) = self.conns.get_mut(&conn)
        {
            c.spoke_at = now;
        }
        match msg {
            ClientMsg::Hello {
                version,
                name,
                password,
            } => self.cmd_hello(now, conn, version, &name, password),
            ClientMsg::Ping { token } => self.cmd_ping(conn, token),
            ClientMsg::Pong { .. } => {}
            ClientMsg::Quit { reason } => {
                // Muted somewhere: the quit says nothing of its own to anyone.
                let why = match reason {
                    Some(r) if !r.trim().is_empty() && self.silenced_in(conn).is_none() => r,
                    _ => reason::QUIT.to_string(),
                };
                self.kick(now, conn, &why);
            }
            _ if !registered => self.reply(
                conn,
                &error(ErrorCode::NotRegistered, "say hello with a name first"),
            ),
            ClientMsg::Nick { name } => self.cmd_nick(conn, &name),
            ClientMsg::Register { password } => self.cmd_register(now, conn, password),
            ClientMsg::Login { account, password } => {
                self.cmd_login(now, conn, &account, password);
            }
            ClientMsg::Logout {} => self.cmd_logout(now, conn),
            ClientMsg::Watch {
                add,
                remove,
                clear,
                details,
            } => {
                if let (Some(details), Some(c)) = (details, self.conns.get_mut(&conn)) {
                    c.watch_details = details;
                }
                self.cmd_watch(conn, add, remove, clear);
            }
            ClientMsg::Oper { account, password } => {
                self.cmd_oper(now, conn, &account, password);
            }
            ClientMsg::Passwd { old, new } => self.cmd_passwd(now, conn, old, new),
            ClientMsg::Unregister { password } => self.cmd_unregister(now, conn, password),
            ClientMsg::Join { room, since, key } => {
                self.cmd_join(now, conn, &room, since, key.as_ref());
            }
            ClientMsg::Part { room, reason } => self.cmd_part(now, conn, &room, reason),
            ClientMsg::Say {
                room,
                text,
                cid,
                notice,
                tags,
            } => {
                let body = Body {
                    text,
                    notice,
                    tags,
                    ..Body::default()
                };
                self.with_cid(conn, cid, |hub, cid| hub.cmd_say(conn, &room, body, cid));
            }
            ClientMsg::Me {
                room,
                text,
                cid,
                tags,
            } => {
                let body = Body {
                    text,
                    action: true,
                    tags,
                    ..Body::default()
                };
                self.with_cid(conn, cid, |hub, cid| hub.cmd_say(conn, &room, body, cid));
            }
            ClientMsg::Msg {
                to,
                text,
                action,
                cid,
                notice,
                tags,
            } => {
                let body = Body {
                    text,
                    action,
                    notice,
                    tags,
                    only_tags: false,
                };
                self.with_cid(conn, cid, |hub, cid| {
                    hub.cmd_direct(now, conn, &to, body, cid);
                });
            }
            ClientMsg::Tag { to, tags, cid } => {
                let body = Body {
                    tags,
                    only_tags: true,
                    ..Body::default()
                };
                self.with_cid(conn, cid, |hub, cid| {
                    if to.starts_with('#') {
                        hub.cmd_say(conn, &to, body, cid);
                    } else {
                        hub.cmd_direct(now, conn, &to, body, cid);
                    }
                });
            }
            ClientMsg::Topic { room, topic } => self.cmd_topic(conn, &room, topic),
            ClientMsg::Who { room, after } => self.cmd_who(conn, &room, after),
            ClientMsg::Whois { name } => self.cmd_whois(now, conn, &name),
            ClientMsg::Profile {
                user,
                realname,
                bot,
            } => self.cmd_profile(conn, user, realname, bot),
            ClientMsg::People { target } => self.cmd_people(now, conn, &target),
            ClientMsg::Whowas { name, count } => self.cmd_whowas(conn, &name, count),
            ClientMsg::Stats {} => self.cmd_stats(conn),
            ClientMsg::Rooms { after } => self.cmd_rooms(conn, after),
            ClientMsg::History {
                room,
                before,
                after,
                before_ts,
                after_ts,
                latest,
                limit,
            } => {
                let query = HistoryQuery {
                    key: String::new(),
                    before,
                    after,
                    before_ts,
                    after_ts,
                    newest: latest || (after.is_none() && after_ts.is_none()),
                    limit: (limit as usize).min(self.config.history_page_max),
                    search: None,
                };
                self.cmd_history(conn, &room, query);
            }
            msg @ ClientMsg::Kick { .. } => self.cmd_kick(now, conn, msg),
            msg @ ClientMsg::Ban { .. } => self.cmd_ban(now, conn, msg),
            msg @ ClientMsg::Unban { .. } => self.cmd_unban(conn, msg),
            ClientMsg::Bans { room, after } => self.cmd_bans(conn, &room, after),
            msg @ ClientMsg::Role { .. } => self.cmd_role(conn, msg),
            msg @ ClientMsg::Mode { .. } => self.cmd_mode(conn, msg),
            msg @ ClientMsg::Invite { .. } => self.cmd_invite(conn, msg),
            ClientMsg::Kill { name, reason } => self.cmd_kill(now, conn, &name, reason),
            ClientMsg::Away { reason } => self.cmd_away(conn, reason),
            ClientMsg::MarkRead { target, id } => self.cmd_mark_read(conn, &target, id),
            ClientMsg::Search {
                room,
                query,
                before,
                limit,
            } => self.cmd_search(conn, &room, &query, before, limit),
            ClientMsg::ServerBan {
                target,
                duration,
                reason,
            } => self.cmd_server_ban(now, conn, &target, duration, reason),
            ClientMsg::ServerUnban { target } => self.cmd_server_unban(conn, &target),
            ClientMsg::ServerBans { after } => self.cmd_server_bans(conn, after),
            msg @ ClientMsg::CloseRoom { .. } => self.cmd_close_room(now, conn, msg),
            msg @ ClientMsg::OpenRoom { .. } => self.cmd_open_room(conn, msg),
            ClientMsg::Connections { after } => self.cmd_connections(conn, after),
        }
    }

    /// Answers a ping once everything the server took before it is delivered: the
    /// connection's own held messages acknowledged (or echoed), and what others sent it
    /// before the ping. Clients use a ping as a barrier.
    fn cmd_ping(&mut self, conn: ConnId, token: String) {
        let pong = ServerMsg::Pong { token };
        match self.pending.back() {
            Some(&(last, _, _)) => {
                let tag = self.tag_for(conn);
                self.enqueue(
                    last,
                    Pending::Reply {
                        conn,
                        msg: pong,
                        tag,
                    },
                );
            }
            _ => self.reply(conn, &pong),
        }
    }

    /// Encodes `msg` once per wire format among `to` and queues the same bytes for every
    /// connection of that format.
    fn send(&mut self, to: Vec<ConnId>, msg: &ServerMsg) {
        self.send_from(to, msg, None);
    }

    /// [`Hub::send`] for a message `from` sent: a sender whose wire does not echo (an IRC
    /// client without `echo-message`) does not get its own copy.
    fn send_from(&mut self, to: Vec<ConnId>, msg: &ServerMsg, from: Option<ConnId>) {
        if to.is_empty() {
            return;
        }
        if self.foreign == 0 {
            codec::encode(msg, &mut self.scratch);
            let bytes = self.scratch.split().freeze();
            self.outputs.push_back(Output::Transmit { to, bytes });
            return;
        }
        let mut groups: Vec<(Wire, Vec<ConnId>)> = Vec::with_capacity(2);
        // At most one recipient (the asker) answers a request that wants its whole answer.
        let whole = self.tag.filter(|(_, tag)| tag & WHOLE_ANSWER != 0);
        for conn in to {
            let wire = self.conns.get(&conn).map_or(Wire::Json, |c| c.wire);
            if Some(conn) == from && !wire.echoes() {
                continue;
            }
            // The asker of a request that wants its whole answer gets its copy as an answer.
            if let Some((asker, tag)) = whole
                && asker == conn
                && matches!(wire, Wire::Irc(_))
            {
                let name = self.name_of(conn);
                self.outputs.push_back(Output::Reply {
                    conn,
                    name,
                    msg: msg.clone(),
                    tag,
                });
                continue;
            }
            let flavour = wire.encoding();
            match groups.iter_mut().find(|(w, _)| *w == flavour) {
                Some((_, members)) => members.push(conn),
                None => groups.push((flavour, vec![conn])),
            }
        }
        for (wire, to) in groups {
            match wire {
                Wire::Json => codec::encode(msg, &mut self.scratch),
                Wire::Irc(_) if irc::encode::needs_recipient(msg) => {
                    for conn in to {
                        let name = self.name_of(conn);
                        let tag = self.tag_for(conn);
                        self.outputs.push_back(Output::Reply {
                            conn,
                            name,
                            msg: msg.clone(),
                            tag,
                        });
                    }
                    continue;
                }
                Wire::Irc(caps) => irc::encode::event(&self.irc, caps, msg, &mut self.scratch),
            }
            let bytes = self.scratch.split().freeze();
            if !bytes.is_empty() {
                self.outputs.push_back(Output::Transmit { to, bytes });
            }
        }
    }

    /// Sends `msg` to one connection. A refusal of a message that carried a cid names it.
    fn reply(&mut self, conn: ConnId, msg: &ServerMsg) {
        if let (
            Some(cid),
            ServerMsg::Error {
                code,
                message,
                cid: None,
            },
        ) = (&self.cid, msg)
        {
            let named = ServerMsg::Error {
                code: *code,
                message: message.clone(),
                cid: Some(cid.clone()),
            };
            self.reply_as_is(conn, &named);
            return;
        }
        self.reply_as_is(conn, msg);
    }

    fn reply_as_is(&mut self, conn: ConnId, msg: &ServerMsg) {
        let wire = self.conns.get(&conn).map_or(Wire::Json, |c| c.wire);
        if wire == Wire::Json {
            self.send(vec![conn], msg);
            return;
        }
        let name = self.name_of(conn);
        let tag = self.tag_for(conn);
        self.outputs.push_back(Output::Reply {
            conn,
            name,
            msg: msg.clone(),
            tag,
        });
    }

    /// Whether the request `tag` of `conn` has more to answer: it waits in the flood queue or
    /// for a room, for its password work or a store read, or something it caused waits for
    /// the store. A shell that frames a request's whole answer (IRC's `labeled-response`)
    /// closes the frame once this is false.
    pub fn answering(&self, conn: ConnId, tag: u64) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        c.delayed
            .iter()
            .any(|q| matches!(q, liveness::Queued::Frame(_, t) if *t == tag))
            || c.reads.iter().any(|(_, t)| *t == tag)
            || (c.auth.is_some() && c.auth_tag == tag)
            || self
                .pending
                .iter()
                .any(|(_, p, t)| *t == tag && p.sender() == conn)
    }

    /// The tag of the request being run, for an answer to `conn` (0 for anyone else).
    pub(super) fn tag_for(&self, conn: ConnId) -> u64 {
        match self.tag {
            Some((asker, tag)) if asker == conn => tag,
            _ => 0,
        }
    }

    fn name_of(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .and_then(|c| c.name.clone())
            .unwrap_or_default()
    }
}

fn error(code: ErrorCode, message: &str) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.to_string(),
        cid: None,
    }
}

fn name_error(err: &NameError) -> String {
    format!(
        "{err}; a name is 1 to {} characters without spaces",
        names::MAX_NAME_CHARS
    )
}
