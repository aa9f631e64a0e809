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

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use indexmap::IndexSet;

use crate::codec::{Encode, FrameError, JsonLines};
use crate::names::{self, NameError};
use crate::protocol::{
    ChatMessage, ClientMsg, ErrorCode, Limits, MsgId, PROTOCOL_VERSION, RoomInfo, ServerMsg,
    UnixMillis,
};

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

/// Tunables of the hub. Every limit is here so that the server can expose it as a flag.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Name announced in `welcome`.
    pub server_name: String,
    /// Message of the day, sent in `welcome`.
    pub motd: Option<String>,
    /// The room every client joins on `hello`.
    pub default_room: String,
    /// Line limit the shell's decoder enforces; announced in `welcome`.
    pub max_line: usize,
    /// Longest message text, in bytes.
    pub max_text: usize,
    /// Most lines in one message text.
    pub max_text_lines: usize,
    /// Longest topic, in bytes.
    pub max_topic: usize,
    /// Most rooms one connection may be in.
    pub max_rooms_per_conn: usize,
    /// Messages kept per room, for joins, paging and catch-up.
    pub history: usize,
    /// Messages sent to a member when it joins without `since`.
    pub join_history: usize,
    /// Most messages in one `history` answer.
    pub history_page_max: usize,
    /// A connection silent this long is pinged, in milliseconds.
    pub ping_interval: u64,
    /// A pinged connection silent this much longer is dropped, in milliseconds.
    pub ping_timeout: u64,
    /// A connection must complete `hello` within this, in milliseconds.
    pub register_timeout: u64,
    /// Messages a client may send at once before throttling starts.
    pub flood_burst: u32,
    /// Sustained messages per second allowed; 0 turns flood control off.
    pub flood_rate: u32,
    /// Delayed messages held for one client before it is disconnected for flooding.
    pub flood_queue: usize,
    /// Hold messages until the store confirms them ([`Input::Committed`]), and load rooms that
    /// are not in memory from the store ([`Output::LoadRoom`]).
    pub durable: bool,
    /// Most rooms held in memory. At the cap, the room empty the longest is let go (its
    /// history stays in the store) to make space; when none is empty, new rooms are refused.
    pub max_rooms: usize,
    /// New rooms one connection may create at once.
    pub room_create_burst: u32,
    /// New rooms one connection may create per minute after its burst; 0 means no limit.
    pub room_create_per_minute: u32,
    /// A room nobody is in leaves memory this long after its last member left, in
    /// milliseconds. The default room never does.
    pub room_expiry: u64,
    /// How many recent client message ids (`cid`) are remembered to answer repeats.
    pub dedupe_window: usize,
    /// Most messages held for the store's commit; past it new messages are refused
    /// (`store_unavailable`) instead of queued.
    pub max_held: usize,
    /// Most bytes of text held for the store's commit, likewise.
    pub max_held_bytes: usize,
    /// New people (not messaged with lately) who may send one user direct messages per minute;
    /// 0 means no limit. Stops a swarm of throwaway names from flooding someone's client.
    pub direct_new_senders_per_minute: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            server_name: "chat".into(),
            motd: None,
            default_room: "#lobby".into(),
            max_line: crate::codec::DEFAULT_MAX_LINE,
            max_text: 4096,
            max_text_lines: 20,
            max_topic: 390,
            max_rooms_per_conn: 50,
            history: 1000,
            join_history: 50,
            history_page_max: 200,
            ping_interval: 60_000,
            ping_timeout: 30_000,
            register_timeout: 30_000,
            flood_burst: 10,
            flood_rate: 5,
            flood_queue: 50,
            durable: false,
            max_rooms: 10_000,
            room_create_burst: 5,
            room_create_per_minute: 5,
            room_expiry: 3_600_000,
            dedupe_window: 100_000,
            max_held: 10_000,
            max_held_bytes: 16 << 20,
            direct_new_senders_per_minute: 10,
        }
    }
}

/// What the shell tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted.
    Connect {
        /// Its id.
        conn: ConnId,
    },
    /// A line arrived on a connection, decoded or not.
    Frame {
        /// From whom.
        conn: ConnId,
        /// The message, or why the line could not be read.
        frame: Result<ClientMsg, FrameError>,
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
    /// The store has failed to commit for a while: refuse new messages (`store_unavailable`)
    /// and tell the senders of held ones that they wait. Held messages are kept, in order.
    StoreDown,
    /// The store commits again: accept messages again.
    StoreUp,
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
    /// Flush what is queued for this connection, then close it. The hub has already forgotten it.
    Close {
        /// Which one.
        conn: ConnId,
        /// Why (for logs).
        reason: String,
    },
    /// Persist this record, then report [`Input::Committed`].
    Store(Record),
    /// Load this room (by key) from the store, then report [`Input::RoomLoaded`]. Someone is
    /// joining it and it is not in memory.
    LoadRoom {
        /// The room's key ([`names::key`]).
        key: String,
    },
}

/// Something the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A room message.
    Message {
        /// The message.
        msg: ChatMessage,
        /// The sender's own id for it, kept to recognise a repeat after a restart.
        cid: Option<String>,
    },
    /// A direct message.
    Direct {
        /// Server id.
        id: MsgId,
        /// Server timestamp.
        ts: UnixMillis,
        /// Sender.
        from: String,
        /// Recipient.
        to: String,
        /// Text.
        text: String,
        /// True for an action.
        action: bool,
        /// The sender's own id for it.
        cid: Option<String>,
    },
    /// A topic change. Carries the id it was sequenced under.
    Topic {
        /// Sequencing id (also consumed from the message id space).
        id: MsgId,
        /// Room name.
        room: String,
        /// New topic.
        topic: String,
        /// Who set it.
        by: String,
        /// When.
        ts: UnixMillis,
    },
}

impl Record {
    /// The id the record was sequenced under.
    pub fn id(&self) -> MsgId {
        match self {
            Record::Message { msg, .. } => msg.id,
            Record::Direct { id, .. } | Record::Topic { id, .. } => *id,
        }
    }
}

/// A room as loaded back from the store on restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredRoom {
    /// Room name.
    pub name: String,
    /// Its topic, empty if none.
    pub topic: String,
    /// Who set the topic, and when.
    pub topic_set: Option<(String, UnixMillis)>,
    /// Its most recent messages, oldest first.
    pub history: Vec<ChatMessage>,
    /// True when the store holds older messages than `history`.
    pub more: bool,
}

/// A chat room: members, topic and recent history.
#[derive(Debug)]
pub struct Room {
    /// Display name.
    name: String,
    topic: String,
    topic_set: Option<(String, UnixMillis)>,
    /// In join order; the fan-out iterates this.
    members: IndexSet<ConnId>,
    /// Oldest first, at most `HubConfig::history` long.
    history: VecDeque<ChatMessage>,
    /// Highest id of a message that is no longer kept, so catch-up can tell a client that some
    /// of what it missed is gone.
    evicted_through: MsgId,
    /// When the last member left; the room's entry in `Hub::expiries`.
    empty_since: Option<UnixMillis>,
}

impl Room {
    fn new(name: String) -> Self {
        Self {
            name,
            topic: String::new(),
            topic_set: None,
            members: IndexSet::new(),
            history: VecDeque::new(),
            evicted_through: 0,
            empty_since: None,
        }
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Rooms nobody is in and with nothing worth keeping are dropped.
    fn is_disposable(&self) -> bool {
        self.members.is_empty() && self.history.is_empty() && self.topic.is_empty()
    }
}

/// Registration and liveness state of one connection.
#[derive(Debug)]
struct Conn {
    /// Display name once registered.
    name: Option<String>,
    /// Keys of the rooms it is in, in join order.
    rooms: IndexSet<String>,
    /// Time of the last frame received, for liveness.
    last_seen: UnixMillis,
    /// When the outstanding ping was sent, if one is.
    pinged_at: Option<UnixMillis>,
    /// The one entry this connection has in `Hub::timers`.
    check_at: UnixMillis,
    /// Token bucket, in thousandths of a message.
    tokens: u64,
    /// When `tokens` was last refilled.
    tokens_at: UnixMillis,
    /// Frames held back by flood control, oldest first.
    delayed: VecDeque<Result<ClientMsg, FrameError>>,
    /// When the first delayed frame may run; the entry in `Hub::releases`.
    release_at: Option<UnixMillis>,
    /// A room this connection is joining that the store is loading: its frames wait in
    /// `delayed` until the room is here, so they keep their order.
    loading: Option<String>,
    /// People this connection exchanged direct messages with lately (name key to when), at
    /// most [`DIRECT_PEERS`]: they are not new senders.
    direct_peers: HashMap<String, UnixMillis>,
    /// When new senders' first direct messages arrived, within the last minute.
    direct_new: VecDeque<UnixMillis>,
    /// Room-creation token bucket, in thousandths of a room.
    room_tokens: u64,
    /// When `room_tokens` was last refilled.
    room_tokens_at: UnixMillis,
}

/// Direct-message peers remembered per connection.
const DIRECT_PEERS: usize = 256;

/// A message waiting for the store's commit before it is delivered.
#[derive(Debug)]
enum Pending {
    Room {
        msg: ChatMessage,
        /// The sender, to acknowledge (with its cid) or to tell that the message waits.
        from: ConnId,
        cid: Option<String>,
    },
    Direct {
        msg: ServerMsg,
        from: ConnId,
        to: ConnId,
        cid: Option<String>,
    },
    /// A repeat of a cid whose original is still waiting for its commit.
    Ack {
        conn: ConnId,
        cid: String,
        id: MsgId,
    },
    Topic {
        room_key: String,
        topic: String,
        by: String,
        ts: UnixMillis,
        from: ConnId,
    },
}

impl Pending {
    /// What holding it costs, in bytes, for [`HubConfig::max_held_bytes`] (acks cost nothing).
    fn weight(&self) -> usize {
        match self {
            Pending::Room { msg, .. } => 64 + msg.text.len() + msg.room.len() + msg.from.len(),
            Pending::Direct { msg, .. } => match msg {
                ServerMsg::Direct { text, from, to, .. } => 64 + text.len() + from.len() + to.len(),
                _ => 64,
            },
            Pending::Topic { topic, by, .. } => 64 + topic.len() + by.len(),
            Pending::Ack { .. } => 0,
        }
    }

    /// Who sent it.
    fn sender(&self) -> ConnId {
        match self {
            Pending::Room { from, .. }
            | Pending::Direct { from, .. }
            | Pending::Topic { from, .. } => *from,
            Pending::Ack { conn, .. } => *conn,
        }
    }
}

/// The server-side state machine. See the module documentation.
pub struct Hub<E: Encode = JsonLines> {
    config: HubConfig,
    encoder: E,
    conns: HashMap<ConnId, Conn>,
    /// Name key to connection, for uniqueness and direct messages.
    names: HashMap<String, ConnId>,
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
    pending: VecDeque<(MsgId, Pending)>,
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
    outputs: VecDeque<Output>,
    /// Reused encoding buffer; each message is split off it as `Bytes`.
    scratch: BytesMut,
    shutting_down: bool,
}

impl Hub<JsonLines> {
    /// A hub speaking the native JSON Lines protocol.
    pub fn new(config: HubConfig) -> Self {
        Self::with_encoder(config, JsonLines)
    }
}

impl<E: Encode> Hub<E> {
    /// A hub whose outgoing messages are encoded by `encoder`.
    pub fn with_encoder(config: HubConfig, encoder: E) -> Self {
        let mut hub = Self {
            config,
            encoder,
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
            held: 0,
            held_bytes: 0,
            store_down: false,
            next_id: 1,
            last_ts: 0,
            wall: 0,
            outputs: VecDeque::new(),
            scratch: BytesMut::new(),
            shutting_down: false,
        };
        let lobby = hub.config.default_room.clone();
        hub.insert_room(Room::new(lobby));
        hub
    }

    /// Loads rooms, topics and history back from the store. `next_id` is one more than the
    /// highest id the store has seen, so ids keep increasing across restarts.
    ///
    /// A stored room whose name the current rules refuse (or that now has the same key as, or
    /// looks like, a room loaded before it) is not loaded: its history stays in the store,
    /// untouched, but nobody can join it. Their names are returned, for the server to log.
    /// Rooms restored with nobody in them start their expiry clock at `now`.
    pub fn restore(
        &mut self,
        now: UnixMillis,
        rooms: Vec<RestoredRoom>,
        next_id: MsgId,
    ) -> Vec<String> {
        self.next_id = self.next_id.max(next_id);
        let mut refused = Vec::new();
        for restored in rooms {
            let key = names::normalize_room(&restored.name)
                .ok()
                .map(|name| names::key(&name));
            match key {
                Some(key)
                    if self.rooms.contains_key(&key) && self.rooms[&key].history.is_empty() =>
                {
                    // The default room, made empty at start: fill it.
                    self.fill_room(&key, restored);
                }
                Some(key)
                    if !self.rooms.contains_key(&key) && self.similar_room(&key).is_none() =>
                {
                    let name = names::normalize_room(&restored.name).unwrap_or_default();
                    self.insert_room(Room::new(name));
                    self.fill_room(&key, restored);
                    self.mark_empty(now, &key);
                }
                _ => refused.push(restored.name),
            }
        }
        refused
    }

    /// Remembers the cids of recently stored messages (oldest first), so that a client
    /// repeating one after a restart gets the original acknowledgement.
    pub fn restore_cids(&mut self, cids: Vec<(String, MsgId)>) {
        for (cid, id) in cids {
            self.remember_cid(cid, id);
        }
    }

    fn fill_room(&mut self, key: &str, restored: RestoredRoom) {
        let history_cap = self.config.history;
        let next_id = self.next_id;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.topic = restored.topic;
        room.topic_set = restored.topic_set;
        let skip = restored.history.len().saturating_sub(history_cap);
        if skip > 0 || restored.more {
            let first_kept = restored.history.get(skip).map_or(next_id, |m| m.id);
            room.evicted_through = first_kept.saturating_sub(1);
        }
        room.history = restored.history.into_iter().skip(skip).collect();
    }

    // ----- getters -----

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
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

    /// Limits announced to clients.
    pub fn limits(&self) -> Limits {
        Limits {
            max_line: self.config.max_line as u32,
            max_text: self.config.max_text as u32,
            max_text_lines: self.config.max_text_lines as u32,
            max_name: names::MAX_NAME_CHARS as u32,
            flood_burst: if self.config.flood_rate == 0 {
                0
            } else {
                self.config.flood_burst
            },
            flood_rate: self.config.flood_rate,
        }
    }

    /// Checks the hub's internal consistency, for property tests and fuzzing: every room
    /// member is a registered connection that knows it is a member, every name and skeleton
    /// points at its owner, every connection has its one liveness timer, and every queue is
    /// within its bound. Returns what is wrong.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (key, room) in &self.rooms {
            if names::key(&room.name) != *key {
                return Err(format!("room {key} is stored under the wrong key"));
            }
            for member in &room.members {
                let Some(c) = self.conns.get(member) else {
                    return Err(format!("{member} in {key} is not a connection"));
                };
                if c.name.is_none() {
                    return Err(format!("{member} in {key} is not registered"));
                }
                if !c.rooms.contains(key) {
                    return Err(format!("{member} in {key} does not know it"));
                }
            }
            if room.empty_since.is_some()
                != (room.members.is_empty() && self.expiries.iter().any(|(_, k)| k == key))
            {
                return Err(format!(
                    "room {key} has an expiry out of step with its members"
                ));
            }
            if room.history.len() > self.config.history.max(1) {
                return Err(format!("room {key} keeps too much history"));
            }
        }
        if self.rooms.len() > self.config.max_rooms.max(1) + 1 {
            return Err(format!("{} rooms over the cap", self.rooms.len()));
        }
        for (id, c) in &self.conns {
            for key in &c.rooms {
                if !self.rooms.get(key).is_some_and(|r| r.members.contains(id)) {
                    return Err(format!("{id} thinks it is in {key}"));
                }
            }
            if !self.timers.contains(&(c.check_at, *id)) {
                return Err(format!("{id} has no liveness timer"));
            }
            if c.delayed.len() > self.config.flood_queue + 1 {
                return Err(format!("{id} holds {} delayed frames", c.delayed.len()));
            }
            if let Some(name) = &c.name
                && self.names.get(&names::key(name)) != Some(id)
            {
                return Err(format!("{id}'s name {name} is not in the index"));
            }
        }
        if self.timers.len() != self.conns.len() {
            return Err(format!(
                "{} timers for {} connections",
                self.timers.len(),
                self.conns.len()
            ));
        }
        for (key, owner) in &self.names {
            let holder = self.conns.get(owner).and_then(|c| c.name.as_deref());
            if holder.map(names::key).as_ref() != Some(key) {
                return Err(format!("name {key} points at {owner}, who is not it"));
            }
        }
        for key in self.name_skeletons.values() {
            if !self.names.contains_key(key) {
                return Err(format!("a skeleton points at {key}, which nobody holds"));
            }
        }
        if self.cids.len() != self.cid_order.len() || self.cids.len() > self.config.dedupe_window {
            return Err("the cid memory is out of step or over its bound".into());
        }
        let held = self
            .pending
            .iter()
            .filter(|(_, p)| !matches!(p, Pending::Ack { .. }))
            .count();
        if held != self.held || held > self.config.max_held {
            return Err(format!("{held} held messages, counted {}", self.held));
        }
        let mut last = 0;
        for (id, _) in &self.pending {
            if *id < last {
                return Err("pending messages out of id order".into());
            }
            last = *id;
        }
        Ok(())
    }

    // ----- outputs -----

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

    // ----- inputs -----

    /// Sets the wall clock (milliseconds since the Unix epoch) that stamps messages from now on.
    /// Call it before each batch of inputs; it may jump either way without harm.
    pub fn set_wall_clock(&mut self, wall: UnixMillis) {
        self.wall = wall;
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: UnixMillis, input: Input) {
        match input {
            Input::Connect { conn } => self.handle_connect(now, conn),
            Input::Frame { conn, frame } => self.handle_frame(now, conn, frame),
            Input::Disconnect { conn, reason } => self.drop_conn(now, conn, &reason, false),
            Input::Committed { through } => self.handle_committed(through),
            Input::RoomLoaded { key, room } => self.handle_room_loaded(now, key, room),
            Input::StoreDown => self.handle_store_down(),
            Input::StoreUp => self.store_down = false,
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

    fn handle_room_loaded(&mut self, now: UnixMillis, key: String, room: Option<RestoredRoom>) {
        let waiting = self.loading.remove(&key).unwrap_or_default();
        match room {
            Some(restored) if !self.rooms.contains_key(&key) => {
                let name = names::normalize_room(&restored.name).ok();
                match name.filter(|n| names::key(n) == key) {
                    Some(name) if self.make_space() => {
                        self.insert_room(Room::new(name));
                        self.fill_room(&key, restored);
                        // Nobody may be left to join it: it expires like any empty room.
                        self.mark_empty(now, &key);
                    }
                    _ => {
                        self.absent.insert(key.clone());
                    }
                }
            }
            Some(_) => {}
            None => {
                self.absent.insert(key.clone());
            }
        }
        for conn in waiting {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.loading = None;
            }
            self.run_delayed(now, conn);
        }
        self.absent.remove(&key);
    }

    fn handle_connect(&mut self, now: UnixMillis, conn: ConnId) {
        if self.shutting_down || self.conns.contains_key(&conn) {
            return;
        }
        let check_at = now + self.config.register_timeout;
        self.conns.insert(
            conn,
            Conn {
                name: None,
                rooms: IndexSet::new(),
                last_seen: now,
                pinged_at: None,
                check_at,
                tokens: u64::from(self.config.flood_burst) * 1000,
                tokens_at: now,
                delayed: VecDeque::new(),
                release_at: None,
                loading: None,
                direct_peers: HashMap::new(),
                direct_new: VecDeque::new(),
                room_tokens: u64::from(self.config.room_create_burst) * 1000,
                room_tokens_at: now,
            },
        );
        self.timers.insert((check_at, conn));
    }

    fn handle_frame(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        frame: Result<ClientMsg, FrameError>,
    ) {
        let config_rate = self.config.flood_rate;
        let burst = u64::from(self.config.flood_burst) * 1000;
        let flood_queue = self.config.flood_queue;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        let pinged = c.pinged_at.take().is_some();
        // The pong to our ping only proves liveness: it never waits behind throttled frames.
        // Any other pong counts against flood control like every other frame, so pongs cannot
        // be used to make the server work for free.
        if pinged && matches!(frame, Ok(ClientMsg::Pong { .. })) {
            return;
        }
        if c.loading.is_some() {
            // A room this connection joins is on its way from the store: keep the order.
            if c.delayed.len() >= flood_queue {
                self.kick(now, conn, reason::FLOODING);
            } else {
                c.delayed.push_back(frame);
            }
            return;
        }
        if config_rate == 0 {
            self.process(now, conn, frame);
            return;
        }
        refill(c, now, config_rate, burst);
        if c.delayed.is_empty() && c.tokens >= 1000 {
            c.tokens -= 1000;
            self.process(now, conn, frame);
            return;
        }
        if c.delayed.len() >= flood_queue {
            self.kick(now, conn, reason::FLOODING);
            return;
        }
        let first_delay = c.delayed.is_empty();
        c.delayed.push_back(frame);
        if c.release_at.is_none() {
            let at = now + (1000 - c.tokens).div_ceil(u64::from(config_rate));
            c.release_at = Some(at);
            self.releases.insert((at, conn));
        }
        if first_delay {
            self.reply(
                conn,
                &error(
                    ErrorCode::Flooding,
                    "you are sending too fast; your messages are delayed",
                ),
            );
        }
    }

    fn run_delayed(&mut self, now: UnixMillis, conn: ConnId) {
        let rate = self.config.flood_rate.max(1);
        let burst = u64::from(self.config.flood_burst) * 1000;
        let unlimited = self.config.flood_rate == 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.loading.is_some() {
                return;
            }
            refill(c, now, rate, burst);
            if c.delayed.is_empty() {
                return;
            }
            if unlimited {
                let frame = c.delayed.pop_front().expect("checked non-empty");
                self.process(now, conn, frame);
                continue;
            }
            if c.tokens < 1000 {
                let at = now + (1000 - c.tokens).div_ceil(u64::from(rate));
                c.release_at = Some(at);
                self.releases.insert((at, conn));
                return;
            }
            c.tokens -= 1000;
            let frame = c.delayed.pop_front().expect("checked non-empty");
            self.process(now, conn, frame);
        }
    }

    fn check_liveness(&mut self, now: UnixMillis, conn: ConnId) {
        let (ping_interval, ping_timeout) = (self.config.ping_interval, self.config.ping_timeout);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let verdict = if c.name.is_none() {
            Err(reason::REGISTRATION_TIMEOUT)
        } else {
            match c.pinged_at {
                Some(pinged) if c.last_seen < pinged => {
                    if now >= pinged + ping_timeout {
                        Err(reason::PING_TIMEOUT)
                    } else {
                        Ok((pinged + ping_timeout, false))
                    }
                }
                _ => {
                    let idle_at = c.last_seen + ping_interval;
                    if now >= idle_at {
                        c.pinged_at = Some(now);
                        Ok((now + ping_timeout, true))
                    } else {
                        Ok((idle_at, false))
                    }
                }
            }
        };
        match verdict {
            Ok((next, ping)) => {
                c.check_at = next;
                self.timers.insert((next, conn));
                if ping {
                    let token = now.to_string();
                    self.reply(conn, &ServerMsg::Ping { token });
                }
            }
            Err(why) => self.kick(now, conn, why),
        }
    }

    fn handle_store_down(&mut self) {
        if self.store_down {
            return;
        }
        self.store_down = true;
        let mut senders: Vec<ConnId> = self
            .pending
            .iter()
            .filter(|(_, p)| !matches!(p, Pending::Ack { .. }))
            .map(|(_, p)| p.sender())
            .filter(|c| self.conns.contains_key(c))
            .collect();
        senders.sort_unstable();
        senders.dedup();
        let notice = error(
            ErrorCode::StoreUnavailable,
            "the server cannot store messages right now; yours are held and will be delivered \
             when storage recovers, and new ones are refused until then",
        );
        self.send(senders, &notice);
    }

    /// Refuses a new message when the store cannot take it (see [`HubConfig::max_held`]).
    fn store_can_take(&mut self, conn: ConnId, weight: usize) -> bool {
        if !self.config.durable {
            return true;
        }
        let full = self.held >= self.config.max_held
            || self.held_bytes + weight > self.config.max_held_bytes;
        if !self.store_down && !full {
            return true;
        }
        let why = if self.store_down {
            "the server cannot store messages right now (its storage is failing); try again later"
        } else {
            "too many messages are waiting to be stored; try again in a moment"
        };
        self.reply(conn, &error(ErrorCode::StoreUnavailable, why));
        false
    }

    fn handle_committed(&mut self, through: MsgId) {
        // A repeat may wait behind a later id than its own: it is released no earlier than
        // its original, never later than what was queued after it.
        while let Some((id, _)) = self.pending.front() {
            if *id > through {
                break;
            }
            let (_, pending) = self.pending.pop_front().expect("checked non-empty");
            if !matches!(pending, Pending::Ack { .. }) {
                self.held -= 1;
                self.held_bytes -= pending.weight();
            }
            self.release(pending);
        }
    }

    fn handle_shutdown(&mut self, now: UnixMillis) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let mut all: Vec<ConnId> = self.conns.keys().copied().collect();
        all.sort_unstable();
        self.send(
            all.clone(),
            &ServerMsg::Bye {
                reason: reason::SERVER_SHUTDOWN.into(),
            },
        );
        for conn in all {
            self.forget(now, conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: reason::SERVER_SHUTDOWN.into(),
            });
        }
    }

    /// Says goodbye with a reason, then drops the connection.
    fn kick(&mut self, now: UnixMillis, conn: ConnId, why: &str) {
        self.reply(
            conn,
            &ServerMsg::Bye {
                reason: why.to_string(),
            },
        );
        self.drop_conn(now, conn, why, true);
    }

    /// Removes a connection, announcing its quit to everyone who shared a room with it.
    /// `close` asks the shell to close the socket (the hub decided); otherwise the shell
    /// already knows the connection is gone.
    fn drop_conn(&mut self, now: UnixMillis, conn: ConnId, why: &str, close: bool) {
        let Some(name) = self.conns.get(&conn).map(|c| c.name.clone()) else {
            return;
        };
        if let Some(name) = name {
            let mut peers = self.peers(conn);
            peers.retain(|&p| p != conn);
            if !peers.is_empty() {
                let ts = self.stamp();
                self.send(
                    peers,
                    &ServerMsg::Quit {
                        name,
                        reason: why.to_string(),
                        ts,
                    },
                );
            }
        }
        self.forget(now, conn);
        if close {
            self.outputs.push_back(Output::Close {
                conn,
                reason: why.to_string(),
            });
        }
    }

    /// Removes every trace of a connection, without announcing anything.
    fn forget(&mut self, now: UnixMillis, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.remove(&(c.check_at, conn));
        if let Some(at) = c.release_at {
            self.releases.remove(&(at, conn));
        }
        if let Some(name) = &c.name {
            self.release_name(name);
        }
        for key in &c.rooms {
            self.leave_room(now, key, conn);
        }
        if let Some(key) = &c.loading
            && let Some(waiting) = self.loading.get_mut(key)
        {
            waiting.retain(|w| *w != conn);
        }
    }

    fn release_name(&mut self, name: &str) {
        let key = names::key(name);
        self.names.remove(&key);
        let skeleton = names::skeleton(name);
        if self.name_skeletons.get(&skeleton) == Some(&key) {
            self.name_skeletons.remove(&skeleton);
        }
    }

    fn leave_room(&mut self, now: UnixMillis, key: &str, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.members.shift_remove(&conn);
        if !room.members.is_empty() || key == names::key(&self.config.default_room) {
            return;
        }
        if room.is_disposable() {
            self.remove_room(key);
        } else {
            self.mark_empty(now, key);
        }
    }

    /// Starts the expiry clock of a room nobody is in.
    fn mark_empty(&mut self, now: UnixMillis, key: &str) {
        let expiry = self.config.room_expiry;
        if key == names::key(&self.config.default_room) {
            return;
        }
        if let Some(room) = self.rooms.get_mut(key)
            && room.members.is_empty()
            && room.empty_since.is_none()
        {
            room.empty_since = Some(now);
            self.expiries.insert((now + expiry, key.to_string()));
        }
    }

    /// Adds a room to memory.
    fn insert_room(&mut self, room: Room) {
        let key = names::key(&room.name);
        self.room_skeletons
            .insert(names::skeleton(&room.name), key.clone());
        self.rooms.insert(key, room);
    }

    /// Lets a room go from memory (its history stays in the store, if there is one).
    fn remove_room(&mut self, key: &str) {
        let Some(room) = self.rooms.remove(key) else {
            return;
        };
        if let Some(since) = room.empty_since {
            self.expiries
                .remove(&(since + self.config.room_expiry, key.to_string()));
        }
        let skeleton = names::skeleton(&room.name);
        if self.room_skeletons.get(&skeleton).map(String::as_str) == Some(key) {
            self.room_skeletons.remove(&skeleton);
        }
    }

    /// The key of a room in memory that looks like `key` without being it.
    fn similar_room(&self, key: &str) -> Option<String> {
        self.room_skeletons
            .get(&names::skeleton(key))
            .filter(|k| k.as_str() != key)
            .cloned()
    }

    /// Makes room for one more room under [`HubConfig::max_rooms`], letting go of the room that
    /// has been empty the longest. False when every room has members.
    fn make_space(&mut self) -> bool {
        if self.rooms.len() < self.config.max_rooms.max(1) {
            return true;
        }
        let Some((_, key)) = self.expiries.first().cloned() else {
            return false;
        };
        self.remove_room(&key);
        true
    }

    /// Every connection sharing at least one room with `conn`, and `conn` itself, sorted.
    fn peers(&self, conn: ConnId) -> Vec<ConnId> {
        let mut peers = vec![conn];
        if let Some(c) = self.conns.get(&conn) {
            for key in &c.rooms {
                if let Some(room) = self.rooms.get(key) {
                    peers.extend(room.members.iter().copied());
                }
            }
        }
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    // ----- commands -----

    fn process(&mut self, now: UnixMillis, conn: ConnId, frame: Result<ClientMsg, FrameError>) {
        let msg = match frame {
            Ok(msg) => msg,
            Err(err) => {
                self.reply(conn, &error(err.code(), &err.to_string()));
                return;
            }
        };
        let registered = self.conns.get(&conn).is_some_and(|c| c.name.is_some());
        match msg {
            ClientMsg::Hello { version, name } => self.cmd_hello(now, conn, version, &name),
            ClientMsg::Ping { token } => self.reply(conn, &ServerMsg::Pong { token }),
            ClientMsg::Pong { .. } => {}
            ClientMsg::Quit { reason } => {
                let why = match reason {
                    Some(r) if !r.trim().is_empty() => r,
                    _ => reason::QUIT.to_string(),
                };
                self.kick(now, conn, &why);
            }
            _ if !registered => self.reply(
                conn,
                &error(ErrorCode::NotRegistered, "say hello with a name first"),
            ),
            ClientMsg::Nick { name } => self.cmd_nick(conn, &name),
            ClientMsg::Join { room, since } => self.cmd_join(now, conn, &room, since),
            ClientMsg::Part { room, reason } => self.cmd_part(now, conn, &room, reason),
            ClientMsg::Say { room, text, cid } => {
                self.with_cid(conn, cid, |hub, cid| {
                    hub.cmd_say(conn, &room, text, false, cid);
                });
            }
            ClientMsg::Me { room, text, cid } => {
                self.with_cid(conn, cid, |hub, cid| {
                    hub.cmd_say(conn, &room, text, true, cid);
                });
            }
            ClientMsg::Msg {
                to,
                text,
                action,
                cid,
            } => self.with_cid(conn, cid, |hub, cid| {
                hub.cmd_direct(now, conn, &to, text, action, cid);
            }),
            ClientMsg::Topic { room, topic } => self.cmd_topic(conn, &room, topic),
            ClientMsg::Who { room, after } => self.cmd_who(conn, &room, after),
            ClientMsg::Rooms { after } => self.cmd_rooms(conn, after),
            ClientMsg::History {
                room,
                before,
                after,
                limit,
            } => self.cmd_history(conn, &room, before, after, limit),
        }
    }

    /// Runs a message-sending command under its cid: a repeat of a remembered cid gets the
    /// original acknowledgement instead; a bad cid is refused; any refusal names the cid.
    fn with_cid(
        &mut self,
        conn: ConnId,
        cid: Option<String>,
        run: impl FnOnce(&mut Self, Option<String>),
    ) {
        if let Some(cid) = &cid {
            let valid = (1..=64).contains(&cid.len()) && cid.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                self.reply(
                    conn,
                    &ServerMsg::Error {
                        code: ErrorCode::Malformed,
                        message: "a cid is 1 to 64 printable ASCII characters".into(),
                        cid: None,
                    },
                );
                return;
            }
            if let Some(&id) = self.cids.get(cid) {
                let ack = Pending::Ack {
                    conn,
                    cid: cid.clone(),
                    id,
                };
                match self.pending.back().map(|(last, _)| *last) {
                    // The original is not committed yet: acknowledge it no sooner.
                    Some(last) if id <= last => self.pending.push_back((last, ack)),
                    _ => self.release(ack),
                }
                return;
            }
        }
        self.cid = cid.clone();
        run(self, cid);
        self.cid = None;
    }

    fn remember_cid(&mut self, cid: String, id: MsgId) {
        if self.config.dedupe_window == 0 {
            return;
        }
        while self.cid_order.len() >= self.config.dedupe_window {
            if let Some(old) = self.cid_order.pop_front() {
                self.cids.remove(&old);
            }
        }
        if self.cids.insert(cid.clone(), id).is_none() {
            self.cid_order.push_back(cid);
        }
    }

    fn cmd_hello(&mut self, now: UnixMillis, conn: ConnId, version: u32, raw: &str) {
        if self.conns.get(&conn).is_some_and(|c| c.name.is_some()) {
            self.reply(
                conn,
                &error(ErrorCode::AlreadyRegistered, "you have already said hello"),
            );
            return;
        }
        if version != PROTOCOL_VERSION {
            self.reply(
                conn,
                &error(
                    ErrorCode::UnsupportedVersion,
                    &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                ),
            );
            self.kick(now, conn, reason::UNSUPPORTED_VERSION);
            return;
        }
        let Some(name) = self.claim_name(conn, raw) else {
            return;
        };
        let c = self.conns.get_mut(&conn).expect("caller checked");
        c.name = Some(name.clone());
        self.timers.remove(&(c.check_at, conn));
        c.check_at = c.last_seen + self.config.ping_interval;
        self.timers.insert((c.check_at, conn));
        self.reply(
            conn,
            &ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                name,
                server: self.config.server_name.clone(),
                motd: self.config.motd.clone(),
                limits: self.limits(),
            },
        );
        let lobby = self.config.default_room.clone();
        self.cmd_join(now, conn, &lobby, None);
    }

    /// Validates a requested name and reserves it for `conn`, replying with an error if it is
    /// invalid or taken. Releases the connection's previous name, if any.
    fn claim_name(&mut self, conn: ConnId, raw: &str) -> Option<String> {
        let name = match names::normalize_name(raw) {
            Ok(name) => name,
            Err(err) => {
                self.reply(conn, &error(ErrorCode::InvalidName, &name_error(&err)));
                return None;
            }
        };
        let key = names::key(&name);
        match self.names.get(&key) {
            Some(owner) if *owner != conn => {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::NameTaken,
                        &format!("the name {name} is taken; pick another"),
                    ),
                );
                return None;
            }
            _ => {}
        }
        let skeleton = names::skeleton(&name);
        if let Some(similar) = self.name_skeletons.get(&skeleton)
            && *similar != key
            && self.names.get(similar).is_some_and(|owner| *owner != conn)
        {
            let owner = self.names[similar];
            let shown = self.name_of(owner);
            self.reply(
                conn,
                &error(
                    ErrorCode::NameTaken,
                    &format!(
                        "the name {name} looks too much like {shown}, who is here; pick another"
                    ),
                ),
            );
            return None;
        }
        if let Some(old) = self.conns.get(&conn).and_then(|c| c.name.clone()) {
            self.release_name(&old);
        }
        self.names.insert(key.clone(), conn);
        self.name_skeletons.insert(skeleton, key);
        Some(name)
    }

    fn cmd_nick(&mut self, conn: ConnId, raw: &str) {
        let old = self.name_of(conn);
        let Some(new) = self.claim_name(conn, raw) else {
            return;
        };
        if new == old {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.name = Some(new.clone());
        }
        let peers = self.peers(conn);
        let ts = self.stamp();
        self.send(peers, &ServerMsg::Nick { old, new, ts });
    }

    fn cmd_join(&mut self, now: UnixMillis, conn: ConnId, raw: &str, since: Option<MsgId>) {
        let Some((key, name)) = self.valid_room(conn, raw) else {
            return;
        };
        let already = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.rooms.contains(&key));
        if !already {
            if self
                .conns
                .get(&conn)
                .is_some_and(|c| c.rooms.len() >= self.config.max_rooms_per_conn)
            {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::TooManyRooms,
                        &format!(
                            "you are in {} rooms already; part one first",
                            self.config.max_rooms_per_conn
                        ),
                    ),
                );
                return;
            }
            if !self.rooms.contains_key(&key) && !self.create_room(now, conn, &key, name, since) {
                return;
            }
            let expiry = self.config.room_expiry;
            let Some(room) = self.rooms.get_mut(&key) else {
                return;
            };
            if let Some(since) = room.empty_since.take() {
                self.expiries.remove(&(since + expiry, key.clone()));
            }
            room.members.insert(conn);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.rooms.insert(key.clone());
            }
            let members: Vec<ConnId> = self.rooms[&key].members.iter().copied().collect();
            let ts = self.stamp();
            let msg = ServerMsg::Join {
                room: self.rooms[&key].name.clone(),
                name: self.name_of(conn),
                ts,
            };
            self.send(members, &msg);
        }
        let room = &self.rooms[&key];
        let topic = ServerMsg::Topic {
            room: room.name.clone(),
            topic: room.topic.clone(),
            by: room.topic_set.as_ref().map(|(by, _)| by.clone()),
            ts: room.topic_set.as_ref().map(|(_, ts)| *ts),
        };
        self.reply(conn, &topic);
        self.cmd_who(conn, &key, None);
        let room = &self.rooms[&key];
        let budget = self.page_budget(room);
        let (messages, more, newer) = match since {
            Some(since) => {
                // Catch-up: what was missed, oldest first, a page at a time.
                let start = room.history.partition_point(|m| m.id <= since);
                let (page, cut) = fit(
                    room.history.range(start..),
                    self.config.history_page_max,
                    budget,
                );
                // Missed messages older than what is kept cannot be replayed; say so.
                let lost = room.evicted_through > since;
                (page, lost, cut)
            }
            None => {
                let (mut page, cut) =
                    fit(room.history.iter().rev(), self.config.join_history, budget);
                page.reverse();
                (page, cut, false)
            }
        };
        let history = ServerMsg::History {
            room: room.name.clone(),
            messages,
            more,
            newer,
        };
        self.reply(conn, &history);
    }

    /// Bytes of messages that fit in one `history` line within the announced line limit.
    fn page_budget(&self, room: &Room) -> usize {
        self.config
            .max_line
            .saturating_sub(128 + room.name.len())
            .max(1)
    }

    /// Brings a room that is not in memory into it: loads it from the store (the join runs
    /// again once it is here), or creates it within the limits. True when it is here now.
    fn create_room(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        key: &str,
        name: String,
        since: Option<MsgId>,
    ) -> bool {
        if let Some(similar) = self.similar_room(key) {
            let shown = self.rooms[&similar].name.clone();
            self.reply(
                conn,
                &error(
                    ErrorCode::InvalidRoom,
                    &format!("{name} looks too much like {shown}; join that or pick another name"),
                ),
            );
            return false;
        }
        if self.config.durable && !self.absent.contains(key) {
            let Some(c) = self.conns.get_mut(&conn) else {
                return false;
            };
            c.loading = Some(key.to_string());
            c.delayed
                .push_front(Ok(ClientMsg::Join { room: name, since }));
            let waiting = self.loading.entry(key.to_string()).or_default();
            waiting.push(conn);
            if waiting.len() == 1 {
                self.outputs.push_back(Output::LoadRoom {
                    key: key.to_string(),
                });
            }
            return false;
        }
        let (burst, per_minute) = (
            self.config.room_create_burst,
            self.config.room_create_per_minute,
        );
        if per_minute > 0 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return false;
            };
            let elapsed = now.saturating_sub(c.room_tokens_at);
            c.room_tokens = (c.room_tokens + elapsed * u64::from(per_minute) / 60)
                .min(u64::from(burst.max(1)) * 1000);
            c.room_tokens_at = now;
            if c.room_tokens < 1000 {
                let wait = (1000 - c.room_tokens) * 60 / u64::from(per_minute);
                self.reply(
                    conn,
                    &error(
                        ErrorCode::RoomCreationThrottled,
                        &format!(
                            "you may create {per_minute} new rooms a minute; try again in {} s",
                            wait.div_ceil(1000).max(1)
                        ),
                    ),
                );
                return false;
            }
        }
        if !self.make_space() {
            self.reply(
                conn,
                &error(
                    ErrorCode::RoomLimit,
                    &format!(
                        "the server holds its maximum of {} rooms; join an existing one",
                        self.config.max_rooms
                    ),
                ),
            );
            return false;
        }
        if per_minute > 0
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.room_tokens -= 1000;
        }
        self.insert_room(Room::new(name));
        true
    }

    fn cmd_part(&mut self, now: UnixMillis, conn: ConnId, raw: &str, why: Option<String>) {
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        let members: Vec<ConnId> = self.rooms[&key].members.iter().copied().collect();
        let ts = self.stamp();
        let msg = ServerMsg::Part {
            room: self.rooms[&key].name.clone(),
            name: self.name_of(conn),
            reason: why.filter(|r| !r.trim().is_empty()),
            ts,
        };
        self.send(members, &msg);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms.shift_remove(&key);
        }
        self.leave_room(now, &key, conn);
    }

    fn cmd_say(
        &mut self,
        conn: ConnId,
        raw: &str,
        text: String,
        action: bool,
        cid: Option<String>,
    ) {
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        if !self.valid_text(conn, &text) {
            return;
        }
        if !self.store_can_take(conn, 64 + text.len()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        let msg = ChatMessage {
            id,
            ts,
            room: self.rooms[&key].name.clone(),
            from: self.name_of(conn),
            text,
            action,
        };
        if let Some(cid) = &cid {
            self.remember_cid(cid.clone(), id);
        }
        if self.config.durable {
            self.outputs.push_back(Output::Store(Record::Message {
                msg: msg.clone(),
                cid: cid.clone(),
            }));
        }
        self.sequence(
            id,
            Pending::Room {
                msg,
                from: conn,
                cid,
            },
        );
    }

    fn cmd_direct(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        raw: &str,
        text: String,
        action: bool,
        cid: Option<String>,
    ) {
        let target = names::normalize_name(raw)
            .ok()
            .and_then(|n| self.names.get(&names::key(&n)).copied());
        let Some(target) = target else {
            self.reply(
                conn,
                &error(
                    ErrorCode::NoSuchUser,
                    &format!("nobody called {raw} is here"),
                ),
            );
            return;
        };
        if !self.valid_text(conn, &text) {
            return;
        }
        if !self.direct_allowed(now, conn, target) {
            return;
        }
        if !self.store_can_take(conn, 64 + text.len()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        let from = self.name_of(conn);
        let to = self.name_of(target);
        if let Some(cid) = &cid {
            self.remember_cid(cid.clone(), id);
        }
        if self.config.durable {
            self.outputs.push_back(Output::Store(Record::Direct {
                id,
                ts,
                from: from.clone(),
                to: to.clone(),
                text: text.clone(),
                action,
                cid: cid.clone(),
            }));
        }
        let msg = ServerMsg::Direct {
            id,
            ts,
            from,
            to,
            text,
            action,
        };
        self.sequence(
            id,
            Pending::Direct {
                msg,
                from: conn,
                to: target,
                cid,
            },
        );
    }

    /// Limits how many new people may message one user each minute; people who exchanged
    /// messages lately are not new, in either direction.
    fn direct_allowed(&mut self, now: UnixMillis, from: ConnId, to: ConnId) -> bool {
        let limit = self.config.direct_new_senders_per_minute as usize;
        if limit == 0 || from == to {
            return true;
        }
        let (from_key, to_key) = (
            names::key(&self.name_of(from)),
            names::key(&self.name_of(to)),
        );
        let Some(recipient) = self.conns.get_mut(&to) else {
            return true;
        };
        if !recipient.direct_peers.contains_key(&from_key) {
            while recipient
                .direct_new
                .front()
                .is_some_and(|&t| t + 60_000 <= now)
            {
                recipient.direct_new.pop_front();
            }
            if recipient.direct_new.len() >= limit {
                let shown = self.name_of(to);
                self.reply(
                    from,
                    &error(
                        ErrorCode::DirectThrottled,
                        &format!(
                            "{shown} is getting direct messages from too many new people; try again in a minute"
                        ),
                    ),
                );
                return false;
            }
            recipient.direct_new.push_back(now);
        }
        remember_peer(&mut recipient.direct_peers, from_key, now);
        if let Some(sender) = self.conns.get_mut(&from) {
            remember_peer(&mut sender.direct_peers, to_key, now);
        }
        true
    }

    fn cmd_topic(&mut self, conn: ConnId, raw: &str, topic: Option<String>) {
        let Some(topic) = topic else {
            let Some((key, _)) = self.existing_room(conn, raw) else {
                return;
            };
            let room = &self.rooms[&key];
            let msg = ServerMsg::Topic {
                room: room.name.clone(),
                topic: room.topic.clone(),
                by: room.topic_set.as_ref().map(|(by, _)| by.clone()),
                ts: room.topic_set.as_ref().map(|(_, ts)| *ts),
            };
            self.reply(conn, &msg);
            return;
        };
        let Some((key, _)) = self.member_room(conn, raw) else {
            return;
        };
        if topic.len() > self.config.max_topic || topic.contains(['\n', '\r']) {
            self.reply(
                conn,
                &error(
                    ErrorCode::TopicTooLong,
                    &format!(
                        "a topic is one line of at most {} bytes",
                        self.config.max_topic
                    ),
                ),
            );
            return;
        }
        if !self.store_can_take(conn, 64 + topic.len()) {
            return;
        }
        let id = self.take_id();
        let ts = self.stamp();
        let by = self.name_of(conn);
        if self.config.durable {
            self.outputs.push_back(Output::Store(Record::Topic {
                id,
                room: self.rooms[&key].name.clone(),
                topic: topic.clone(),
                by: by.clone(),
                ts,
            }));
        }
        self.sequence(
            id,
            Pending::Topic {
                room_key: key,
                topic,
                by,
                ts,
                from: conn,
            },
        );
    }

    fn cmd_who(&mut self, conn: ConnId, raw: &str, after: Option<String>) {
        let Some((key, _)) = self.existing_room(conn, raw) else {
            return;
        };
        let room = &self.rooms[&key];
        let mut names: Vec<(String, String)> = room
            .members
            .iter()
            .filter_map(|m| self.conns.get(m).and_then(|c| c.name.clone()))
            .map(|n| (names::key(&n), n))
            .collect();
        names.sort_unstable();
        let from = after.as_deref().map(names::key);
        let budget = self.page_budget(room);
        let (page, more) = fit_by_size(
            names
                .into_iter()
                .filter(|(k, _)| from.as_ref().is_none_or(|f| k > f))
                .map(|(_, n)| n),
            budget,
            |n| n.len() + 3,
        );
        let msg = ServerMsg::Members {
            room: room.name.clone(),
            names: page,
            more,
            after,
        };
        self.reply(conn, &msg);
    }

    fn cmd_rooms(&mut self, conn: ConnId, after: Option<String>) {
        let from = after.as_deref().map(names::key);
        let mut rooms: Vec<(String, RoomInfo)> = self
            .rooms
            .iter()
            .filter(|(k, _)| from.as_ref().is_none_or(|f| *k > f))
            .map(|(k, r)| {
                (
                    k.clone(),
                    RoomInfo {
                        name: r.name.clone(),
                        members: r.members.len() as u32,
                        topic: r.topic.clone(),
                    },
                )
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let budget = self.config.max_line.saturating_sub(128).max(1);
        let (rooms, more) = fit_by_size(rooms.into_iter().map(|(_, r)| r), budget, |r| {
            r.name.len() + r.topic.len() + 48
        });
        self.reply(conn, &ServerMsg::RoomList { rooms, more, after });
    }

    fn cmd_history(
        &mut self,
        conn: ConnId,
        raw: &str,
        before: Option<MsgId>,
        after: Option<MsgId>,
        limit: u32,
    ) {
        let Some((key, _)) = self.existing_room(conn, raw) else {
            return;
        };
        let room = &self.rooms[&key];
        let budget = self.page_budget(room);
        let count = (limit as usize).min(self.config.history_page_max);
        let (messages, more, newer) = match after {
            Some(after) => {
                let start = room.history.partition_point(|m| m.id <= after);
                let (page, cut) = fit(room.history.range(start..), count, budget);
                (page, start > 0, cut)
            }
            None => {
                let end = match before {
                    Some(before) => room.history.partition_point(|m| m.id < before),
                    None => room.history.len(),
                };
                let (mut page, _) = fit(room.history.range(..end).rev(), count, budget);
                page.reverse();
                let more = end > page.len();
                (page, more, false)
            }
        };
        let msg = ServerMsg::History {
            room: room.name.clone(),
            messages,
            more,
            newer,
        };
        self.reply(conn, &msg);
    }

    // ----- sequencing and delivery -----

    fn take_id(&mut self) -> MsgId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A timestamp for a message: the wall clock, never going backwards.
    fn stamp(&mut self) -> UnixMillis {
        self.last_ts = self.last_ts.max(self.wall);
        self.last_ts
    }

    /// Delivers an id-bearing event now, or once the store has committed it.
    fn sequence(&mut self, id: MsgId, pending: Pending) {
        if self.config.durable || !self.pending.is_empty() {
            if !matches!(pending, Pending::Ack { .. }) {
                self.held += 1;
                self.held_bytes += pending.weight();
            }
            self.pending.push_back((id, pending));
        } else {
            self.release(pending);
        }
    }

    fn release(&mut self, pending: Pending) {
        match pending {
            Pending::Room { msg, from, cid } => {
                let key = names::key(&msg.room);
                let id = msg.id;
                let Some(room) = self.rooms.get_mut(&key) else {
                    return;
                };
                let members: Vec<ConnId> = room.members.iter().copied().collect();
                if room.history.len() >= self.config.history.max(1)
                    && let Some(old) = room.history.pop_front()
                {
                    room.evicted_through = old.id;
                }
                if self.config.history > 0 {
                    room.history.push_back(msg.clone());
                } else {
                    room.evicted_through = msg.id;
                }
                self.send(members, &ServerMsg::Message(msg));
                if let Some(cid) = cid {
                    self.release(Pending::Ack {
                        conn: from,
                        cid,
                        id,
                    });
                }
            }
            Pending::Direct { msg, from, to, cid } => {
                let mut recipients: Vec<ConnId> = [from, to]
                    .into_iter()
                    .filter(|c| self.conns.contains_key(c))
                    .collect();
                recipients.dedup();
                self.send(recipients, &msg);
                if let (Some(cid), ServerMsg::Direct { id, .. }) = (cid, &msg) {
                    self.release(Pending::Ack {
                        conn: from,
                        cid,
                        id: *id,
                    });
                }
            }
            Pending::Ack { conn, cid, id } => {
                if self.conns.contains_key(&conn) {
                    self.reply(conn, &ServerMsg::Ack { cid, id });
                }
            }
            Pending::Topic {
                room_key,
                topic,
                by,
                ts,
                ..
            } => {
                let Some(room) = self.rooms.get_mut(&room_key) else {
                    return;
                };
                room.topic = topic.clone();
                room.topic_set = Some((by.clone(), ts));
                let members: Vec<ConnId> = room.members.iter().copied().collect();
                let msg = ServerMsg::Topic {
                    room: room.name.clone(),
                    topic,
                    by: Some(by),
                    ts: Some(ts),
                };
                self.send(members, &msg);
            }
        }
    }

    /// Encodes `msg` once and queues the bytes for every connection in `to`.
    fn send(&mut self, to: Vec<ConnId>, msg: &ServerMsg) {
        if to.is_empty() {
            return;
        }
        self.encoder.encode(msg, &mut self.scratch);
        let bytes = self.scratch.split().freeze();
        self.outputs.push_back(Output::Transmit { to, bytes });
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
            self.send(vec![conn], &named);
            return;
        }
        self.send(vec![conn], msg);
    }

    // ----- validation helpers -----

    fn name_of(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .and_then(|c| c.name.clone())
            .unwrap_or_default()
    }

    fn valid_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        match names::normalize_room(raw) {
            Ok(name) => Some((names::key(&name), name)),
            Err(err) => {
                self.reply(
                    conn,
                    &error(
                        ErrorCode::InvalidRoom,
                        &format!("bad room name {raw:?}: {err}"),
                    ),
                );
                None
            }
        }
    }

    fn existing_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        let (key, name) = self.valid_room(conn, raw)?;
        if self.rooms.contains_key(&key) {
            Some((key, name))
        } else {
            self.reply(
                conn,
                &error(ErrorCode::NoSuchRoom, &format!("there is no room {name}")),
            );
            None
        }
    }

    fn member_room(&mut self, conn: ConnId, raw: &str) -> Option<(String, String)> {
        let (key, name) = self.valid_room(conn, raw)?;
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.rooms.contains(&key))
        {
            Some((key, name))
        } else {
            self.reply(
                conn,
                &error(ErrorCode::NotInRoom, &format!("you are not in {name}")),
            );
            None
        }
    }

    fn valid_text(&mut self, conn: ConnId, text: &str) -> bool {
        let problem = if text.trim().is_empty() {
            Some((ErrorCode::EmptyText, "the message is empty".to_string()))
        } else if text.len() > self.config.max_text {
            Some((
                ErrorCode::TextTooLong,
                format!(
                    "the message is {} bytes; the limit is {}",
                    text.len(),
                    self.config.max_text
                ),
            ))
        } else if text.lines().count() > self.config.max_text_lines {
            Some((
                ErrorCode::TooManyLines,
                format!(
                    "the message has {} lines; the limit is {}",
                    text.lines().count(),
                    self.config.max_text_lines
                ),
            ))
        } else {
            None
        };
        match problem {
            Some((code, message)) => {
                self.reply(conn, &error(code, &message));
                false
            }
            None => true,
        }
    }
}

/// Takes messages in the order given while they fit in `budget` bytes of JSON (at least one,
/// at most `count`). Returns them and whether any were left.
fn fit<'a>(
    messages: impl Iterator<Item = &'a ChatMessage>,
    count: usize,
    budget: usize,
) -> (Vec<ChatMessage>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut messages = messages.peekable();
    while let Some(m) = messages.peek() {
        let size = serde_json::to_string(m).map_or(0, |s| s.len() + 1);
        if page.len() >= count || (!page.is_empty() && used + size > budget) {
            break;
        }
        used += size;
        page.push((*m).clone());
        messages.next();
    }
    (page, messages.peek().is_some())
}

/// Takes items while their estimated sizes fit in `budget` (at least one). Returns them and
/// whether any were left.
fn fit_by_size<T>(
    items: impl Iterator<Item = T>,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut items = items.peekable();
    while let Some(item) = items.peek() {
        let n = size(item);
        if !page.is_empty() && used + n > budget {
            break;
        }
        used += n;
        page.extend(items.next());
    }
    (page, items.peek().is_some())
}

/// Notes a direct-message peer, forgetting the one quiet the longest past [`DIRECT_PEERS`].
fn remember_peer(peers: &mut HashMap<String, UnixMillis>, key: String, now: UnixMillis) {
    if peers.len() >= DIRECT_PEERS
        && !peers.contains_key(&key)
        && let Some(oldest) = peers
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(k, _)| k.clone())
    {
        peers.remove(&oldest);
    }
    peers.insert(key, now);
}

/// Adds the tokens earned since the last refill, capped at the burst.
fn refill(c: &mut Conn, now: UnixMillis, rate: u32, burst: u64) {
    let elapsed = now.saturating_sub(c.tokens_at);
    c.tokens = (c.tokens + elapsed * u64::from(rate)).min(burst);
    c.tokens_at = now;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(hub: &mut Hub, conn: u64, name: &str) {
        let conn = ConnId(conn);
        hub.handle(0, Input::Connect { conn });
        hub.handle(
            0,
            Input::Frame {
                conn,
                frame: Ok(ClientMsg::Hello {
                    version: 1,
                    name: name.into(),
                }),
            },
        );
        while hub.poll_output().is_some() {}
    }

    fn message(id: MsgId, room: &str) -> ChatMessage {
        ChatMessage {
            id,
            ts: id,
            room: room.into(),
            from: "old".into(),
            text: format!("m{id}"),
            action: false,
        }
    }

    #[test]
    fn getters_say_what_the_hub_holds() {
        let mut hub = Hub::new(HubConfig {
            server_name: "here".into(),
            ..HubConfig::default()
        });
        assert_eq!(hub.config().server_name, "here");
        hello(&mut hub, 1, "ann");
        hello(&mut hub, 2, "bob");
        hub.handle(0, Input::Connect { conn: ConnId(3) });
        assert_eq!(hub.connection_count(), 3);
        assert_eq!(hub.user_count(), 2);
        let lobby = hub.room("#LOBBY").expect("the default room");
        assert_eq!((lobby.name(), lobby.member_count()), ("#lobby", 2));
        assert_eq!(hub.next_id(), 1);
        assert_eq!(ConnId(7).to_string(), "c7");
    }

    #[test]
    fn restore_fills_rooms_and_refuses_what_the_rules_refuse() {
        let mut hub = Hub::new(HubConfig {
            history: 2,
            ..HubConfig::default()
        });
        let rooms = vec![
            RestoredRoom {
                name: "#lobby".into(),
                history: vec![message(1, "#lobby")],
                ..RestoredRoom::default()
            },
            RestoredRoom {
                name: "#kept".into(),
                topic: "still".into(),
                topic_set: Some(("old".into(), 5)),
                history: vec![
                    message(2, "#kept"),
                    message(3, "#kept"),
                    message(4, "#kept"),
                ],
                more: false,
            },
            RestoredRoom {
                name: "#KEPT".into(),
                ..RestoredRoom::default()
            },
            RestoredRoom {
                name: "#k\u{435}pt".into(),
                ..RestoredRoom::default()
            },
            RestoredRoom {
                name: "#bad\u{2066}".into(),
                ..RestoredRoom::default()
            },
        ];
        let refused = hub.restore(0, rooms, 10);
        assert_eq!(refused, ["#KEPT", "#k\u{435}pt", "#bad\u{2066}"]);
        assert_eq!(hub.next_id(), 10);
        assert_eq!(hub.room("#lobby").unwrap().history.len(), 1);
        let kept = hub.room("#kept").unwrap();
        assert_eq!(kept.topic, "still");
        // Only the newest `history` messages are kept, and catch-up knows older ones existed.
        let ids: Vec<MsgId> = kept.history.iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 4]);
        assert_eq!(kept.evicted_through, 2);
        // A restored room nobody is in expires like any other.
        assert!(kept.empty_since.is_some());
        hub.check_invariants().unwrap();
    }

    #[test]
    fn restored_cids_answer_repeats() {
        let mut hub = Hub::new(HubConfig::default());
        hub.restore_cids(vec![("c-1".into(), 41)]);
        hello(&mut hub, 1, "ann");
        hub.handle(
            0,
            Input::Frame {
                conn: ConnId(1),
                frame: Ok(ClientMsg::Say {
                    room: "#lobby".into(),
                    text: "again".into(),
                    cid: Some("c-1".into()),
                }),
            },
        );
        let out: Vec<Output> = std::iter::from_fn(|| hub.poll_output()).collect();
        assert_eq!(out.len(), 1);
        let Output::Transmit { bytes, .. } = &out[0] else {
            panic!("{out:?}");
        };
        assert_eq!(
            &bytes[..],
            b"{\"type\":\"ack\",\"cid\":\"c-1\",\"id\":41}\n"
        );
    }

    #[test]
    fn the_held_bytes_limit_counts_text() {
        let mut hub = Hub::new(HubConfig {
            durable: true,
            max_held_bytes: 64 + 100 + 6 + 3 + 64 + 10,
            ..HubConfig::default()
        });
        hello(&mut hub, 1, "ann");
        let say = |hub: &mut Hub, text: String| {
            hub.handle(
                0,
                Input::Frame {
                    conn: ConnId(1),
                    frame: Ok(ClientMsg::Say {
                        room: "#lobby".into(),
                        text,
                        cid: None,
                    }),
                },
            );
            std::iter::from_fn(|| hub.poll_output()).any(|o| matches!(o, Output::Store(_)))
        };
        assert!(say(&mut hub, "x".repeat(100)), "the first fits");
        assert!(!say(&mut hub, "y".repeat(200)), "over the bytes: refused");
        assert!(say(&mut hub, "z".repeat(10)), "a small one still fits");
        assert_eq!(hub.held, 2);
        assert_eq!(hub.held_bytes, 64 + 100 + 6 + 3 + 64 + 10 + 6 + 3);
        hub.handle(0, Input::Committed { through: 2 });
        assert_eq!((hub.held, hub.held_bytes), (0, 0));
    }

    #[test]
    fn check_invariants_finds_broken_state() {
        let healthy = || {
            let mut hub = Hub::new(HubConfig::default());
            hello(&mut hub, 1, "ann");
            hello(&mut hub, 2, "bob");
            hub.check_invariants().unwrap();
            hub
        };
        let mut hub = healthy();
        hub.conns.get_mut(&ConnId(1)).unwrap().rooms.clear();
        assert!(
            hub.check_invariants().is_err(),
            "a member that does not know it"
        );
        let mut hub = healthy();
        hub.rooms
            .get_mut("#lobby")
            .unwrap()
            .members
            .insert(ConnId(9));
        assert!(
            hub.check_invariants().is_err(),
            "a member that is not a connection"
        );
        let mut hub = healthy();
        hub.timers.clear();
        assert!(hub.check_invariants().is_err(), "no liveness timers");
        let mut hub = healthy();
        hub.names.insert("carol".into(), ConnId(1));
        assert!(
            hub.check_invariants().is_err(),
            "a name pointing at someone else"
        );
        let mut hub = healthy();
        hub.held = 3;
        assert!(hub.check_invariants().is_err(), "held count out of step");
        let mut hub = healthy();
        hub.cid_order.push_back("x".into());
        assert!(hub.check_invariants().is_err(), "cid memory out of step");
        let mut hub = healthy();
        hub.rooms.get_mut("#lobby").unwrap().empty_since = Some(1);
        assert!(hub.check_invariants().is_err(), "an expiry out of step");
    }
}
