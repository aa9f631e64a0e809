//! The client-side state machine shared by every front-end.
//!
//! A [`Session`] turns what the user types into protocol messages, applies what the server sends
//! to a view model (rooms, scrollback, members, unread counts, connection state), and decides when
//! to reconnect and what to ask for to catch up. Like the hub it does no I/O and reads no clock:
//! the driver passes `now` in, performs the [`Output`]s, and calls [`Session::handle_timeout`] at
//! [`Session::poll_timeout`]. Front-ends only render its state and forward input.
//!
//! Sending is exactly-once: every message the user writes gets a client id (`cid`) and stays in
//! the session until the server acknowledges it (`ack`) or refuses it (an `error` naming the
//! cid). After a disconnect the session resends what is unacknowledged, with the same cids, in
//! order; the server answers a repeat with the original acknowledgement. Outgoing frames are
//! paced to the flood limits the server announces in `welcome`, so an ordinary client never
//! trips flood control, however much is pasted or piped in.
//!
//! Everything the server sends passes through [`text::clean_server_msg`] first: other people's
//! text never reaches a front-end with control characters in it.

use std::collections::{HashMap, VecDeque};

use indexmap::IndexMap;

use crate::command::{self, COMMANDS, Command};
use crate::names;
use crate::protocol::{
    self, BanInfo, ChatMessage, ClientMsg, ClientTags, ErrorCode, Limits, MsgId, PROTOCOL_VERSION,
    Role, RoomModes, Secret, ServerMsg, UnixMillis,
};
use crate::text;

/// Highlights kept for `/highlights` and [`Session::highlights`].
const HIGHLIGHTS_KEPT: usize = 100;

/// Tunables of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Lines kept per room.
    pub scrollback: usize,
    /// First reconnect delay, in milliseconds; doubles on each failure.
    pub backoff_min: u64,
    /// Longest reconnect delay, in milliseconds.
    pub backoff_max: u64,
    /// Ping the server after this much silence, in milliseconds; 0 turns it off.
    pub ping_interval: u64,
    /// Give the connection up when a ping stays unanswered this long, in milliseconds.
    pub ping_timeout: u64,
    /// Also hand every server message to the front-end as [`Event::Server`] (for `--json`).
    pub forward_server_messages: bool,
    /// Rooms to join once registered (the last one becomes active), as `--room` asks.
    pub autojoin: Vec<String>,
    /// Most direct conversations kept. Opening one more closes the one quiet the longest (not
    /// the active one), so a flood of messages from throwaway names cannot grow the client
    /// without limit.
    pub max_direct: usize,
    /// Starts every client message id (`cid`) this session makes. The server treats cids as
    /// unique across all clients, so this must be unguessable and unique: the default is 128
    /// random bits. Tests set it to get the same cids every run.
    pub cid_prefix: String,
    /// Words besides the user's own name that make a line a mention (case-insensitive, whole
    /// words), as weechat's `highlight_words`.
    pub highlights: Vec<String>,
}

/// 128 random bits in hex, from the standard library's randomly keyed SipHash.
fn random_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut words = [0u64; 2];
    for (i, word) in words.iter_mut().enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        *word = h.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            scrollback: 2000,
            backoff_min: 500,
            backoff_max: 30_000,
            ping_interval: 45_000,
            ping_timeout: 30_000,
            forward_server_messages: false,
            autojoin: Vec::new(),
            highlights: Vec::new(),
            max_direct: 100,
            cid_prefix: random_prefix(),
        }
    }
}

/// Where the session stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for the driver to open a connection.
    Connecting,
    /// Connected; `hello` sent, waiting for `welcome`.
    Registering,
    /// The server refused the name; waiting for the user to pick another
    /// ([`Session::set_name`] or `/nick`).
    NameRejected {
        /// The server's explanation.
        reason: String,
        /// The account the refused name belongs to, when its password would let the user in
        /// (the name is registered, or the password given for it was wrong): a front-end asks
        /// for the password as well as for another name.
        account: Option<String>,
    },
    /// Registered and chatting.
    Online,
    /// The connection dropped; the next attempt is due at `at`.
    Reconnecting {
        /// How many attempts have failed in a row.
        attempt: u32,
        /// When the next attempt starts.
        at: UnixMillis,
        /// Why the last connection ended.
        reason: String,
    },
    /// Finished: the user quit, or the server refused the protocol version. No reconnect.
    Closed {
        /// Why.
        reason: String,
    },
}

/// Whether a conversation is a room or a direct conversation with one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    /// A server room such as `#lobby`.
    Room,
    /// Direct messages with one user.
    Direct,
}

/// What one scrollback line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Someone said something.
    Message {
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// `/me` action.
    Action {
        /// Who.
        from: String,
        /// What.
        text: String,
    },
    /// Someone joined.
    Join {
        /// Who.
        name: String,
    },
    /// Someone left the room.
    Part {
        /// Who.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// Someone left the server.
    Quit {
        /// Who.
        name: String,
        /// Why.
        reason: String,
    },
    /// Someone changed name.
    Nick {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
    /// The topic changed or was shown.
    Topic {
        /// Who set it.
        by: Option<String>,
        /// The topic.
        topic: String,
    },
    /// Information from the client or server (help, lists, connection news).
    Notice(String),
    /// Something went wrong.
    Error(String),
}

/// One scrollback line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Server message id, for messages.
    pub id: Option<MsgId>,
    /// When: the server's timestamp, or the local time for local notices.
    pub ts: UnixMillis,
    /// Whether this line mentions the user by name.
    pub mention: bool,
    /// What it says.
    pub kind: LineKind,
    /// A notice: a message meant to be read, never answered (shown `-alice- text`).
    pub notice: bool,
    /// The message this one answers, when it is a reply.
    pub reply: Option<Quote>,
    /// Reactions to it, in the order they first came.
    pub reactions: Vec<Reaction>,
}

/// The message a reply answers, as shown above or beside the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Its id.
    pub id: MsgId,
    /// Who wrote it and its first line, when it is in the scrollback.
    pub said: Option<(String, String)>,
}

/// One reaction to a message, and who reacted so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// The reaction, usually an emoji.
    pub emoji: String,
    /// Who reacted so, in order; each once.
    pub from: Vec<String>,
}

impl Quote {
    /// The quote as one short line: `<bob> the first line…`, or `an earlier message`.
    pub fn describe(&self) -> String {
        match &self.said {
            Some((from, text)) => {
                let first = text.lines().next().unwrap_or("");
                let short: String = first.chars().take(60).collect();
                let more = if short.len() < text.len() { "…" } else { "" };
                format!("<{from}> {short}{more}")
            }
            None => "an earlier message".to_string(),
        }
    }
}

impl Line {
    /// The reactions as counts: `👍 2  ❤ 1`; empty when there are none.
    pub fn reaction_counts(&self) -> String {
        let counts: Vec<String> = self
            .reactions
            .iter()
            .map(|r| format!("{} {}", r.emoji, r.from.len()))
            .collect();
        counts.join("  ")
    }
}

/// A room or direct conversation as the user sees it.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Display name: `#room`, or the other person's name.
    pub name: String,
    /// Room or direct.
    pub kind: ConversationKind,
    /// The topic; empty when none.
    pub topic: String,
    /// Members, sorted case-insensitively (for a direct conversation, the other person).
    pub members: Vec<String>,
    /// Roles of the members who have one, by name key.
    pub roles: HashMap<String, Role>,
    /// The room's modes, as last heard.
    pub modes: RoomModes,
    /// Oldest first, at most `SessionConfig::scrollback` long.
    pub lines: VecDeque<Line>,
    /// Messages that arrived while another conversation was active.
    pub unread: usize,
    /// Of those, how many mention the user.
    pub mentions: usize,
    /// True when the server has older messages than the first one shown.
    pub more_history: bool,
    /// The newest message the user has read here (on any device of their account): lines after
    /// it are new since they last read. Set when they leave the conversation for another.
    pub read_marker: Option<MsgId>,
    /// The user is no longer in this room (an operator removed them): it stays where it was,
    /// and what is typed here is refused until they join it again, rather than going
    /// somewhere else.
    pub left: bool,
}

impl Conversation {
    fn new(name: String, kind: ConversationKind) -> Self {
        Self {
            name,
            kind,
            topic: String::new(),
            members: Vec::new(),
            roles: HashMap::new(),
            modes: RoomModes::default(),
            lines: VecDeque::new(),
            unread: 0,
            mentions: 0,
            more_history: false,
            read_marker: None,
            left: false,
        }
    }

    /// A member's role in this room.
    pub fn role_of(&self, name: &str) -> Role {
        self.roles
            .get(&names::key(name))
            .copied()
            .unwrap_or_default()
    }

    /// The members with their roles: owners, operators, voiced, then everyone else, each
    /// group sorted by name (as IRC clients list them).
    pub fn members_by_role(&self) -> Vec<(Role, &str)> {
        let mut members: Vec<(Role, &str)> = self
            .members
            .iter()
            .map(|m| (self.role_of(m), m.as_str()))
            .collect();
        members.sort_by_key(|(role, _)| std::cmp::Reverse(*role));
        members
    }

    /// The member list as text clients show it: `~` before owners, `@` before operators, `+`
    /// before voiced members, in [`Conversation::members_by_role`] order.
    pub fn member_labels(&self) -> Vec<String> {
        self.members_by_role()
            .into_iter()
            .map(|(role, name)| format!("{}{name}", role.prefix()))
            .collect()
    }

    /// How many lines came into the conversation after `newest` (one of its lines, noted
    /// when the user scrolled away from the end); all of them when it has left the
    /// scrollback. Front-ends show it as `-- MORE (n) --` or a "jump to latest" count.
    pub fn lines_after(&self, newest: Option<&Line>) -> usize {
        match newest {
            None => self.lines.len(),
            Some(line) => self
                .lines
                .iter()
                .rposition(|l| l == line)
                .map_or(self.lines.len(), |i| self.lines.len() - i - 1),
        }
    }

    /// Where to draw the "new since you last read" line: the index in `lines` of the first
    /// message after the read marker, when older lines are shown too (a marker above the top,
    /// or with nothing new after it, draws nothing).
    pub fn marker_position(&self) -> Option<usize> {
        let marker = self.read_marker?;
        let first_new = self
            .lines
            .iter()
            .position(|l| l.id.is_some_and(|id| id > marker))?;
        self.lines
            .iter()
            .take(first_new)
            .any(|l| l.id.is_some_and(|id| id <= marker))
            .then_some(first_new)
    }

    /// The smallest message id shown, for paging back.
    pub fn oldest_id(&self) -> Option<MsgId> {
        self.lines.iter().find_map(|l| l.id)
    }
}

/// What the session asks the driver to do or tells the front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection to the server; then call [`Session::handle_connected`] or
    /// [`Session::handle_connect_failed`].
    Connect,
    /// Send this message on the open connection.
    Send(ClientMsg),
    /// Drop the current connection (it looks dead); then call [`Session::handle_disconnected`].
    Disconnect,
    /// Something happened that a front-end may want to show.
    Event(Event),
}

/// News for the front-end. The full state is always available from the session's getters; these
/// events let a line-oriented front-end print as things happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A line was added to a conversation.
    Line {
        /// The conversation's display name; `None` for the status area.
        conversation: Option<String>,
        /// The line.
        line: Line,
        /// True for a message from the room's history (shown at join, or asked for with
        /// `/history`): older than what is already shown, so a line-oriented front-end prints
        /// it as history, or not at all when it only sends.
        history: bool,
    },
    /// The connection state changed.
    State(ConnState),
    /// The active conversation changed.
    Switched(Option<String>),
    /// A conversation's unread counts went down without a new line: it was read on another
    /// device (a read marker from the server). A screen that shows the counts redraws them.
    Read(String),
    /// The server acknowledged one of the user's messages: it is stored under this id.
    Acked(MsgId),
    /// Someone reacted to a message in the scrollback (the line now counts it): a screen
    /// redraws the line; a line-oriented front-end prints the reaction.
    Reacted {
        /// The conversation's display name.
        conversation: String,
        /// Who reacted.
        from: String,
        /// The reaction.
        emoji: String,
        /// The message reacted to.
        to: Quote,
    },
    /// The server (or the session, before sending) refused one of the user's messages. It will
    /// not be sent again.
    Refused {
        /// Which input it came from: the count of [`Session::handle_input`] calls, from 1.
        input: u64,
        /// Why, as a code (`None` for a refusal made by the session itself).
        code: Option<ErrorCode>,
        /// Why, in words.
        reason: String,
    },
    /// A server message, as received (only with `SessionConfig::forward_server_messages`).
    Server(ServerMsg),
    /// Someone mentioned the user or wrote to them directly, live or in what was caught up
    /// after a reconnect (never in a room's history shown at join): worth a bell or a desktop
    /// notification. The line was also announced with [`Event::Line`].
    Notify {
        /// The conversation's display name.
        conversation: String,
        /// The line.
        line: Line,
    },
}

/// How a message reached the session: it decides what counts as unread and what notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Sent as it happened.
    Live,
    /// Missed while disconnected, asked for with `since` after a reconnect.
    CatchUp,
    /// Shown at join or asked for with `/history`: read or not, it is old news.
    History,
}

/// A message the user wrote that the server has not acknowledged yet.
#[derive(Debug, Clone)]
struct Unacked {
    cid: String,
    msg: ClientMsg,
    /// The input it came from, to say which one when it is refused.
    input: u64,
}

/// The client-side state machine. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: ConnState,
    /// The name to ask for at the next `hello`.
    wanted_name: String,
    /// Extra underscores added after a reconnect found the name still held.
    name_retries: u32,
    /// The name the server confirmed.
    name: Option<String>,
    /// The account's password, sent in every `hello` so that reconnects log in again.
    password: Option<Secret>,
    /// The account the server says this session is logged in to.
    account: Option<String>,
    /// An account command on its way, with the password it will leave in force.
    auth_pending: Option<Secret>,
    /// Conversations by key, in the order they were opened.
    conversations: IndexMap<String, Conversation>,
    active: Option<String>,
    /// Lines for no conversation: connection news before any room is joined.
    status: VecDeque<Line>,
    /// The highest message id received, for catch-up.
    last_id: Option<MsgId>,
    /// True once the first `welcome` arrived; later ones are reconnects.
    was_online: bool,
    /// Messages written by the user and not yet acknowledged or refused, oldest first. They
    /// are (re)sent on every registration.
    unacked: VecDeque<Unacked>,
    /// Frames waiting for flood-control tokens, oldest first.
    tx: VecDeque<ClientMsg>,
    /// Flood-control tokens, in thousandths of a message, mirroring the server's bucket.
    tokens: u64,
    /// When `tokens` was last refilled.
    tokens_at: UnixMillis,
    /// The server's limits, from `welcome`.
    limits: Option<Limits>,
    /// Messages given a cid so far.
    cids_made: u64,
    /// Calls of `handle_input` so far: the number of the line being handled.
    inputs: u64,
    reconnect_attempt: u32,
    /// Last time anything arrived from the server, for the client-side ping.
    last_rx: UnixMillis,
    /// When our ping went out, if it is unanswered.
    pinged_at: Option<UnixMillis>,
    /// A room the user asked to join: it becomes active when the server confirms.
    joining: Option<String>,
    /// True between the first `welcome` and the server putting us in its default room.
    awaiting_room: bool,
    /// Lines typed in that window (with their input numbers), run once the room is there.
    held: Vec<(u64, String)>,
    /// When an unreadable line last made the session ask again for missed messages.
    recovered_at: Option<UnixMillis>,
    /// Rooms rejoined with `since` whose catch-up reply has not come yet.
    catching_up: std::collections::HashSet<String>,
    /// [`Event::Notify`]s made so far.
    notifications: u64,
    /// Who is away (name key), and why.
    away: HashMap<String, String>,
    /// The latest lines that mentioned the user or came directly, with their conversation's
    /// name, oldest first: the highlights view.
    highlights: VecDeque<(String, Line)>,
    /// Rooms the user asked `/history` of, whose page has not come yet.
    paging: std::collections::HashSet<String>,
    /// Rooms whose catch-up is still arriving (possibly in several replies).
    catch_up_open: std::collections::HashSet<String>,
    /// People just written to directly: the server's `away` that follows is its answer, said
    /// where the user is.
    asked_away: std::collections::HashSet<String>,
    /// The last reason a first connection failed for, already shown.
    shown_failure: Option<String>,
    /// Rooms rejoined after a reconnect whose join, topic and member list have not all come
    /// back yet: what did not change is not shown again.
    rejoining: std::collections::HashSet<String>,
    /// Keys of the rooms joined with one, by room key, to rejoin them after a reconnect.
    room_keys: HashMap<String, Secret>,
    outputs: VecDeque<Output>,
}

impl Session {
    /// A session that will register as `name`. Call [`Session::start`] to connect.
    pub fn new(config: SessionConfig, name: impl Into<String>) -> Self {
        Self {
            config,
            state: ConnState::Connecting,
            wanted_name: name.into(),
            name_retries: 0,
            name: None,
            password: None,
            account: None,
            auth_pending: None,
            conversations: IndexMap::new(),
            active: None,
            status: VecDeque::new(),
            last_id: None,
            was_online: false,
            unacked: VecDeque::new(),
            tx: VecDeque::new(),
            tokens: 0,
            tokens_at: 0,
            limits: None,
            cids_made: 0,
            inputs: 0,
            reconnect_attempt: 0,
            last_rx: 0,
            pinged_at: None,
            joining: None,
            awaiting_room: false,
            held: Vec::new(),
            recovered_at: None,
            catching_up: std::collections::HashSet::new(),
            catch_up_open: std::collections::HashSet::new(),
            paging: std::collections::HashSet::new(),
            notifications: 0,
            away: HashMap::new(),
            highlights: VecDeque::new(),
            rejoining: std::collections::HashSet::new(),
            asked_away: std::collections::HashSet::new(),
            shown_failure: None,
            room_keys: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    // ----- getters -----

    /// Connection state.
    pub fn state(&self) -> &ConnState {
        &self.state
    }

    /// The name the server confirmed, once registered.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The account the session is logged in to.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Logs in to `account` at every `hello` from now on (the front-end's `--account`).
    pub fn set_account(&mut self, account: &str, password: Secret) {
        self.wanted_name = account.trim().to_string();
        self.password = Some(password);
        self.name_retries = 0;
        if matches!(self.state, ConnState::NameRejected { .. }) {
            self.set_state(ConnState::Registering);
            self.send_hello();
        }
    }

    /// The name the session asks for.
    pub fn wanted_name(&self) -> &str {
        &self.wanted_name
    }

    /// Every conversation, in the order opened.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.conversations.values()
    }

    /// A conversation by display name (any case).
    pub fn conversation(&self, name: &str) -> Option<&Conversation> {
        self.conversations.get(&names::key(name))
    }

    /// The active conversation.
    pub fn active(&self) -> Option<&Conversation> {
        self.active.as_ref().and_then(|k| self.conversations.get(k))
    }

    /// Position of the active conversation in [`Session::conversations`].
    pub fn active_index(&self) -> Option<usize> {
        self.active
            .as_ref()
            .and_then(|k| self.conversations.get_index_of(k))
    }

    /// Lines that belong to no conversation.
    pub fn status_lines(&self) -> &VecDeque<Line> {
        &self.status
    }

    /// The highest message id seen.
    pub fn last_id(&self) -> Option<MsgId> {
        self.last_id
    }

    /// How many mentions and direct messages have notified so far (see [`Event::Notify`]): a
    /// front-end that renders from state compares it with the count it last signalled.
    pub fn notifications(&self) -> u64 {
        self.notifications
    }

    /// How many typed lines are not yet acknowledged by the server: messages sent and awaiting
    /// their echo, plus lines held until a room arrives.
    pub fn unacked(&self) -> usize {
        self.unacked.len() + self.held.len()
    }

    /// True when the user's messages can go out now.
    pub fn is_online(&self) -> bool {
        self.state == ConnState::Online
    }

    /// Names to complete against: members of the active conversation, and commands.
    pub fn completions(&self, prefix: &str) -> Vec<String> {
        if prefix.starts_with('/') {
            return command::complete_command(prefix)
                .into_iter()
                .map(String::from)
                .collect();
        }
        let lower = prefix.to_lowercase();
        let mut out: Vec<String> = self
            .active()
            .map(|c| c.members.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.to_lowercase().starts_with(&lower) && Some(n.as_str()) != self.name())
            .collect();
        if prefix.starts_with('#') {
            out.extend(
                self.conversations
                    .values()
                    .filter(|c| c.kind == ConversationKind::Room)
                    .map(|c| c.name.clone())
                    .filter(|n| n.to_lowercase().starts_with(&lower)),
            );
        }
        out
    }

    // ----- outputs -----

    /// The next thing for the driver or front-end.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        let liveness = match &self.state {
            ConnState::Reconnecting { at, .. } => Some(*at),
            ConnState::Online | ConnState::Registering if self.config.ping_interval > 0 => {
                Some(match self.pinged_at {
                    Some(at) => at + self.config.ping_timeout,
                    None => self.last_rx + self.config.ping_interval,
                })
            }
            _ => None,
        };
        let pacing = match (&self.state, self.limits) {
            (ConnState::Online, Some(limits)) if !self.tx.is_empty() && limits.flood_rate > 0 => {
                let missing = 1000u64.saturating_sub(self.tokens);
                Some(self.tokens_at + missing.div_ceil(u64::from(limits.flood_rate)))
            }
            _ => None,
        };
        [liveness, pacing].into_iter().flatten().min()
    }

    // ----- inputs -----

    /// Asks the driver for the first connection.
    pub fn start(&mut self, _now: UnixMillis) {
        self.set_state(ConnState::Connecting);
        self.outputs.push_back(Output::Connect);
    }

    /// The driver opened a connection: say hello.
    pub fn handle_connected(&mut self, now: UnixMillis) {
        if matches!(self.state, ConnState::Closed { .. }) {
            return;
        }
        self.last_rx = now;
        self.pinged_at = None;
        self.set_state(ConnState::Registering);
        self.send_hello();
    }

    /// The driver received a line it could not read (too long, or not a message it knows).
    /// It is not dropped silently: the user is told, since something may be missing.
    ///
    /// If it was a page of messages, they are asked for again (`history` after the last id seen
    /// in each room), at most once every ten seconds so that a server that keeps sending such
    /// lines cannot make the client loop.
    pub fn handle_unreadable(&mut self, now: UnixMillis, reason: &str) {
        let reason = text::sanitize(reason);
        self.local(
            now,
            LineKind::Error(format!(
                "the server sent something this client cannot read ({reason}); asking again for what may be missing"
            )),
        );
        let due = self.recovered_at.is_none_or(|at| now >= at + 10_000);
        if !(self.is_online() && due) {
            return;
        }
        self.recovered_at = Some(now);
        if let Some(last) = self.last_id {
            let rooms = self.room_names();
            for room in rooms {
                self.send(
                    now,
                    ClientMsg::History {
                        room,
                        before: None,
                        after: Some(last),
                        before_ts: None,
                        after_ts: None,
                        latest: false,
                        limit: 200,
                    },
                );
            }
        }
    }

    /// The driver could not connect.
    pub fn handle_connect_failed(&mut self, now: UnixMillis, reason: &str) {
        // Never connected yet (a wrong host or port, say): the reason goes where the
        // messages would be, not only into a status line; once per reason, not per attempt.
        if !self.was_online && self.shown_failure.as_deref() != Some(reason) {
            self.shown_failure = Some(reason.to_string());
            self.local(now, LineKind::Error(format!("{reason}; trying again")));
        }
        self.schedule_reconnect(now, reason);
    }

    /// The connection ended.
    pub fn handle_disconnected(&mut self, now: UnixMillis, reason: &str) {
        if matches!(self.state, ConnState::Closed { .. }) {
            return;
        }
        self.notice_everywhere(now, &format!("disconnected: {reason}"));
        self.schedule_reconnect(now, reason);
    }

    /// Deadlines: reconnect attempts, the client-side ping, and paced sending.
    pub fn handle_timeout(&mut self, now: UnixMillis) {
        self.pump(now);
        match self.state.clone() {
            ConnState::Reconnecting { at, .. } if now >= at => {
                self.set_state(ConnState::Connecting);
                self.outputs.push_back(Output::Connect);
            }
            ConnState::Online | ConnState::Registering if self.config.ping_interval > 0 => {
                match self.pinged_at {
                    Some(at) if now >= at + self.config.ping_timeout => {
                        self.outputs.push_back(Output::Disconnect);
                    }
                    None if now >= self.last_rx + self.config.ping_interval => {
                        self.pinged_at = Some(now);
                        self.send_now(ClientMsg::Ping {
                            token: now.to_string(),
                        });
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A line typed while the server refuses the name: `/login account password` logs in,
    /// `/nick name` or a bare name tries that name; anything else is answered with what to do.
    /// Nothing typed here is taken as a name unless it is one.
    fn answer_refusal(&mut self, now: UnixMillis, line: &str) {
        match command::parse(line) {
            Ok(Command::Login { account, password }) => self.set_account(&account, password),
            Ok(Command::Nick(name)) => self.set_name(now, &name),
            Ok(Command::Say(text)) if !text.trim().contains(char::is_whitespace) => {
                self.set_name(now, &text);
            }
            Err(command::CommandError::Empty) => {}
            _ => self.local(
                now,
                LineKind::Error(
                    "the server has not accepted a name yet: type another name, or /login \
                     <account> <password>"
                        .into(),
                ),
            ),
        }
    }

    /// Picks another name after the server refused one.
    pub fn set_name(&mut self, _now: UnixMillis, name: &str) {
        self.wanted_name = name.trim().to_string();
        // A new name is a guest's: whatever account was asked for is not wanted any more.
        self.password = None;
        self.name_retries = 0;
        if matches!(self.state, ConnState::NameRejected { .. }) {
            self.set_state(ConnState::Registering);
            self.send_hello();
        }
    }

    /// Handles one line the user typed. Each call is one input, numbered from 1, which
    /// [`Event::Refused`] refers to.
    pub fn handle_input(&mut self, now: UnixMillis, line: &str) {
        self.inputs += 1;
        let input = self.inputs;
        self.run_input(now, input, line);
    }

    /// Pasted text: a single line is typed input (a command runs); several lines are one
    /// message to the active conversation, as written, even when a line starts with `/`. It is
    /// split only where the server's limits demand.
    pub fn handle_paste(&mut self, now: UnixMillis, text: &str) {
        // Line breaks as any platform pastes them.
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let text = text.trim_end_matches('\n');
        if !text.contains('\n') {
            self.handle_input(now, text);
            return;
        }
        self.inputs += 1;
        let input = self.inputs;
        self.run(now, input, Command::Say(text.to_string()));
    }

    fn run_input(&mut self, now: UnixMillis, input: u64, line: &str) {
        if matches!(self.state, ConnState::NameRejected { .. }) {
            self.answer_refusal(now, line);
            return;
        }
        // Only what addresses "the active room" waits; commands naming their target run now.
        let for_active_room = matches!(
            command::parse(line),
            Ok(Command::Say(_)
                | Command::Me(_)
                | Command::Part { room: None, .. }
                | Command::Topic(_)
                | Command::History(_)
                | Command::Who(None)
                | Command::Close
                | Command::Kick { .. }
                | Command::Ban { .. }
                | Command::Unban { .. }
                | Command::Bans
                | Command::Role { .. }
                | Command::Mode(_)
                | Command::Invite { .. })
        );
        if self.is_online() && (self.awaiting_room || self.joining.is_some()) && for_active_room {
            // A room is on its way (the server's default room after registering, or one the
            // user joined): what was typed meanwhile is meant for it, so run it once it is here.
            self.held.push((input, line.to_string()));
            return;
        }
        match command::parse(line) {
            Ok(cmd) => self.run(now, input, cmd),
            Err(command::CommandError::Empty) => {}
            Err(err) => self.local(now, LineKind::Error(err.to_string())),
        }
    }

    /// Makes the conversation at `index` (in [`Session::conversations`] order) active.
    pub fn switch_to_index(&mut self, index: usize) {
        if let Some((key, _)) = self.conversations.get_index(index) {
            let key = key.clone();
            self.activate(key);
        }
    }

    /// Moves the active conversation by `delta` places, wrapping around.
    pub fn switch_relative(&mut self, delta: isize) {
        let n = self.conversations.len() as isize;
        if n == 0 {
            return;
        }
        let current = self.active_index().map_or(0, |i| i as isize);
        self.switch_to_index((current + delta).rem_euclid(n) as usize);
    }

    /// Applies one message from the server.
    pub fn handle_server(&mut self, now: UnixMillis, msg: ServerMsg) {
        self.last_rx = now;
        self.pinged_at = None;
        if self.config.forward_server_messages {
            self.outputs
                .push_back(Output::Event(Event::Server(msg.clone())));
        }
        match text::clean_server_msg(msg) {
            ServerMsg::Welcome {
                name,
                motd,
                server,
                limits,
                account,
                ..
            } => {
                self.account = account;
                self.on_welcome(now, name, server, motd, limits);
            }
            ServerMsg::LoggedIn { account } => {
                if let Some(password) = self.auth_pending.take() {
                    self.password = Some(password);
                }
                self.wanted_name = account.clone();
                self.local(now, LineKind::Notice(format!("logged in as {account}")));
                self.account = Some(account);
            }
            ServerMsg::Operator { account } => {
                let text = format!("you are a server operator (as {account})");
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::LoggedOut { account } => {
                self.account = None;
                self.password = None;
                self.set_state(ConnState::Closed {
                    reason: format!("logged out of {account}"),
                });
                self.local(now, LineKind::Notice(format!("logged out of {account}")));
            }
            ServerMsg::PasswordChanged { account } => {
                if let Some(password) = self.auth_pending.take() {
                    self.password = Some(password);
                }
                self.local(
                    now,
                    LineKind::Notice(format!("the password of {account} is changed")),
                );
            }
            ServerMsg::AccountDeleted { account } => {
                self.account = None;
                self.password = None;
                self.auth_pending = None;
                self.local(
                    now,
                    LineKind::Notice(format!(
                        "the account {account} is deleted; you are a guest now"
                    )),
                );
            }
            ServerMsg::Join { room, name, ts } => {
                let me = self.is_me(&name);
                let key = names::key(&room);
                if me {
                    self.open(&room, ConversationKind::Room);
                    if let Some(c) = self.conversations.get_mut(&key) {
                        c.left = false;
                    }
                    let asked = self.joining.as_deref() == Some(key.as_str());
                    if asked {
                        self.joining = None;
                    }
                    if asked || self.active.is_none() || self.conversations.len() == 1 {
                        self.activate(key.clone());
                    }
                }
                if let Some(c) = self.conversations.get_mut(&key) {
                    insert_member(&mut c.members, &name);
                    // Back in a room after a reconnect: the connection notice says so already.
                    if !(me && self.rejoining.contains(&key)) {
                        self.push(Some(key), system(ts, LineKind::Join { name }));
                    }
                }
                if me {
                    self.awaiting_room = false;
                    self.release_held(now);
                }
            }
            ServerMsg::Part {
                room,
                name,
                reason,
                ts,
            } => {
                let key = names::key(&room);
                if self.is_me(&name) {
                    self.close_conversation(&key);
                    return;
                }
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.members.retain(|m| names::key(m) != names::key(&name));
                    self.push(Some(key), system(ts, LineKind::Part { name, reason }));
                }
            }
            ServerMsg::Quit { name, reason, ts } => {
                let who = names::key(&name);
                self.away.remove(&who);
                let keys: Vec<String> = self
                    .conversations
                    .iter()
                    .filter(|(_, c)| c.members.iter().any(|m| names::key(m) == who))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    if let Some(c) = self.conversations.get_mut(&key)
                        && c.kind == ConversationKind::Room
                    {
                        c.members.retain(|m| names::key(m) != who);
                    }
                    let line = system(
                        ts,
                        LineKind::Quit {
                            name: name.clone(),
                            reason: reason.clone(),
                        },
                    );
                    self.push(Some(key), line);
                }
            }
            ServerMsg::Nick { old, new, ts } => self.on_nick(old, new, ts),
            ServerMsg::Message(msg) => self.on_message(msg, Arrival::Live),
            ServerMsg::Direct {
                id,
                ts,
                from,
                to,
                text,
                action,
                notice,
                tags,
                ..
            } => {
                if !protocol::kept(&text, &tags) {
                    return;
                }
                let mine = self.is_me(&from);
                let other = if mine { to } else { from.clone() };
                let key = self.open(&other, ConversationKind::Direct);
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.members = vec![other];
                }
                let said = Said {
                    id,
                    ts,
                    from,
                    text,
                    action,
                    notice,
                    tags,
                };
                self.see_id(id);
                self.on_said(&key, said, Arrival::Live);
            }
            ServerMsg::Topic {
                room,
                topic,
                by,
                ts,
            } => {
                let key = names::key(&room);
                let Some(c) = self.conversations.get_mut(&key) else {
                    self.local(now, LineKind::Notice(format!("topic of {room}: {topic}")));
                    return;
                };
                let changed = c.topic != topic;
                c.topic = topic.clone();
                // Show a line when the topic changes, or when someone asked; not on every join
                // of an empty-topic room, nor again when a reconnect finds it unchanged.
                if changed || (!topic.is_empty() && !self.rejoining.contains(&key)) {
                    self.push(
                        Some(key),
                        system(ts.unwrap_or(now), LineKind::Topic { by, topic }),
                    );
                }
            }
            ServerMsg::Members {
                room,
                names,
                roles,
                more,
                after,
                away,
                ..
            } => {
                let key = names::key(&room);
                let mut total = names.len();
                for name in &names {
                    match away.get(name) {
                        Some(reason) => self.away.insert(names::key(name), reason.clone()),
                        None => self.away.remove(&names::key(name)),
                    };
                }
                if let Some(c) = self.conversations.get_mut(&key) {
                    if after.is_none() {
                        c.members = names.clone();
                        c.roles.clear();
                    }
                    for name in &names {
                        c.roles.remove(&names::key(name));
                    }
                    for (name, role) in &roles {
                        c.roles.insert(names::key(name), *role);
                    }
                    if after.is_some() {
                        // A continuation of a list too long for one reply.
                        for name in &names {
                            if !c.members.iter().any(|m| names::key(m) == names::key(name)) {
                                c.members.push(name.clone());
                            }
                        }
                    }
                    c.members.sort_by_cached_key(|n| names::key(n));
                    total = c.members.len();
                }
                if more && let Some(last) = names.last() {
                    self.send(
                        now,
                        ClientMsg::Who {
                            room: room.clone(),
                            after: Some(last.clone()),
                        },
                    );
                }
                if !more && self.rejoining.remove(&key) {
                    // The list after a reconnect refreshes the panel; it is not news.
                } else if !more {
                    let text = format!("members of {room} ({total})");
                    let away = |label: String| {
                        let name = label.trim_start_matches(['~', '@', '+']);
                        if self.away.contains_key(&names::key(name)) {
                            format!("{label} (away)")
                        } else {
                            label
                        }
                    };
                    let text = match self.conversations.get(&key) {
                        Some(c) => format!(
                            "{text}: {}",
                            c.member_labels()
                                .into_iter()
                                .map(away)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => format!("{text}: {}", names.join(", ")),
                    };
                    self.push(Some(key), system(now, LineKind::Notice(text)));
                }
            }
            ServerMsg::Away { name, reason } => self.on_away(now, name, reason),
            ServerMsg::ReadMarker { target, id } => self.on_read_marker(&target, id),
            ServerMsg::Stats {
                users,
                rooms,
                operators,
                ..
            } => {
                let text = format!(
                    "the server has {users} people connected ({operators} operators) in {rooms} rooms"
                );
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::Whowas { name, entries } => {
                let text = match entries.first() {
                    None => format!("nobody called {name} left lately"),
                    Some(e) => {
                        let when = chrono::DateTime::from_timestamp_millis(e.ts as i64)
                            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default();
                        format!("{} ({}) left at {when}", e.name, e.realname)
                    }
                };
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::People { target, people, .. } => {
                let shown: Vec<String> = people
                    .iter()
                    .map(|p| {
                        let mut s = format!("{}{}", p.role.prefix(), p.name);
                        if p.away {
                            s.push_str(" (away)");
                        }
                        s
                    })
                    .collect();
                let text = if shown.is_empty() {
                    format!("nobody matches {target}")
                } else {
                    format!("{target}: {}", shown.join(", "))
                };
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::Whois {
                name,
                realname,
                account,
                rooms,
                roles,
                away,
                operator,
                idle,
                since,
                ..
            } => {
                let mut text = match &account {
                    Some(a) if names::key(a) == names::key(&name) => {
                        format!("{name}: logged in to their account")
                    }
                    Some(a) => format!("{name}: logged in to the account {a}"),
                    None => format!("{name}: a guest"),
                };
                if realname != name {
                    text = format!("{text} ({realname})");
                }
                if operator {
                    text.push_str(", a server operator");
                }
                if !rooms.is_empty() {
                    let shown = crate::protocol::rooms_with_roles(&rooms, &roles);
                    text.push_str(&format!("; in {shown}"));
                }
                if let Some(reason) = away {
                    text.push_str(&format!("; away: {reason}"));
                }
                text.push_str(&format!("; idle {}", idle_text(idle)));
                if let Some(at) = chrono::DateTime::from_timestamp_millis(since as i64) {
                    text.push_str(&format!(
                        "; connected since {}",
                        at.format("%Y-%m-%d %H:%M UTC")
                    ));
                }
                self.local(now, LineKind::Notice(text));
            }
            // Real names are not shown.
            ServerMsg::Realname { .. } => {}
            ServerMsg::Watching { online, offline } => {
                for name in online {
                    self.local(now, LineKind::Notice(format!("{name} is online")));
                }
                for name in offline {
                    self.local(now, LineKind::Notice(format!("{name} is offline")));
                }
            }
            ServerMsg::Offline { name } => {
                let key = self.open(&name, ConversationKind::Direct);
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.members = vec![name.clone()];
                }
                let text =
                    format!("{name} is not connected; they will get it when they next connect");
                self.push(Some(key), system(now, LineKind::Notice(text)));
            }
            ServerMsg::SearchResults {
                room,
                query,
                messages,
                more,
            } => {
                let key = names::key(&room);
                let place = self.conversations.contains_key(&key).then_some(key);
                let header = match messages.len() {
                    0 => format!("no messages in {room} have \"{query}\""),
                    n if more => format!(
                        "the {n} newest messages in {room} with \"{query}\" (older ones too):"
                    ),
                    n => format!("{n} messages in {room} with \"{query}\":"),
                };
                self.push(place.clone(), system(now, LineKind::Notice(header)));
                // Each at its own time and with its id, so it can be found in the history.
                for m in messages {
                    let text = if m.action {
                        format!("#{} * {} {}", m.id, m.from, m.text)
                    } else {
                        format!("#{} <{}> {}", m.id, m.from, m.text)
                    };
                    self.push(place.clone(), system(m.ts, LineKind::Notice(text)));
                }
            }
            ServerMsg::RoomList { rooms, more, after } => {
                let mut text = match (&after, more) {
                    (None, false) => format!("{} rooms:", rooms.len()),
                    (None, true) => "rooms:".to_string(),
                    (Some(_), _) => "more rooms:".to_string(),
                };
                for r in &rooms {
                    text.push_str(&format!(
                        "\n  {} ({} members) {}",
                        r.name, r.members, r.topic
                    ));
                }
                self.local(now, LineKind::Notice(text.trim_end().to_string()));
                if more && let Some(last) = rooms.last() {
                    self.send(
                        now,
                        ClientMsg::Rooms {
                            after: Some(last.name.clone()),
                        },
                    );
                }
            }
            ServerMsg::History {
                room,
                messages,
                more,
                newer,
                gap,
            } => {
                let key = names::key(&room);
                if newer && let Some(last) = messages.last() {
                    // A catch-up that did not fit in one reply: ask for the rest.
                    self.send(
                        now,
                        ClientMsg::History {
                            room: room.clone(),
                            before: None,
                            after: Some(last.id),
                            before_ts: None,
                            after_ts: None,
                            latest: false,
                            limit: 200,
                        },
                    );
                }
                // Only the server knows whether what was missed is gone: `more` says older
                // messages exist (the room's history on join always has them), not that any
                // are lost.
                if self.catching_up.remove(&key) && gap {
                    self.push(
                        Some(key.clone()),
                        system(
                            now,
                            LineKind::Notice(format!(
                                "some messages in {room} from while you were away are no longer kept"
                            )),
                        ),
                    );
                }
                if let Some(c) = self.conversations.get_mut(&key) {
                    if c.lines.iter().all(|l| l.id.is_none()) || messages.is_empty() {
                        c.more_history = more;
                    } else if let (Some(first), Some(oldest)) = (messages.first(), c.oldest_id())
                        && first.id <= oldest
                    {
                        c.more_history = more;
                    }
                }
                if self.paging.remove(&key) && messages.is_empty() {
                    self.push(
                        Some(key.clone()),
                        system(
                            now,
                            LineKind::Notice(format!("no earlier messages in {room}")),
                        ),
                    );
                }
                let arrival = if self.catch_up_open.contains(&key) {
                    if !newer {
                        self.catch_up_open.remove(&key);
                    }
                    Arrival::CatchUp
                } else {
                    Arrival::History
                };
                for msg in messages {
                    self.on_message(msg, arrival);
                }
            }
            ServerMsg::Ping { token } => self.send_now(ClientMsg::Pong { token }),
            ServerMsg::Pong { .. } => {}
            ServerMsg::Ack { cid, id } => {
                if let Some(i) = self.unacked.iter().position(|u| u.cid == cid) {
                    self.unacked.remove(i);
                    self.outputs.push_back(Output::Event(Event::Acked(id)));
                }
            }
            ServerMsg::Error {
                code,
                message,
                cid: Some(cid),
            } if self.unacked.iter().any(|u| u.cid == cid) => {
                let i = self
                    .unacked
                    .iter()
                    .position(|u| u.cid == cid)
                    .expect("checked above");
                let refused = self.unacked.remove(i).expect("index in range");
                self.local(now, LineKind::Error(message.clone()));
                self.outputs.push_back(Output::Event(Event::Refused {
                    input: refused.input,
                    code: Some(code),
                    reason: message,
                }));
            }
            ServerMsg::Error { code, message, .. } => self.on_error(now, code, message),
            ServerMsg::Kick {
                room,
                name,
                by,
                reason,
                ts,
            } => {
                let key = names::key(&room);
                let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
                if self.is_me(&name) {
                    // The room stays the target of what is typed there, and says why it is
                    // refused: nothing the user writes for #mod goes anywhere else.
                    self.room_keys.remove(&key);
                    let text = format!("you were removed from {room} by {by}{why}");
                    match self.conversations.get_mut(&key) {
                        Some(c) => {
                            c.left = true;
                            c.members.clear();
                            c.roles.clear();
                            self.push(Some(key), system(ts, LineKind::Error(text)));
                        }
                        None => self.local(now, LineKind::Error(text)),
                    }
                    return;
                }
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.members.retain(|m| names::key(m) != names::key(&name));
                    c.roles.remove(&names::key(&name));
                }
                let text = format!("{by} removed {name} from {room}{why}");
                self.push(Some(key), system(ts, LineKind::Notice(text)));
            }
            ServerMsg::Ban { room, ban } => {
                let text = describe_ban(&ban, room.as_deref());
                let key = room.as_deref().map(names::key);
                match key.filter(|k| self.conversations.contains_key(k)) {
                    Some(key) => self.push(Some(key), system(ban.ts, LineKind::Notice(text))),
                    None => self.local(now, LineKind::Notice(text)),
                }
            }
            ServerMsg::Unban {
                room,
                target,
                mute,
                by,
                ts,
            } => {
                let what = if mute { "unmuted" } else { "lifted the ban of" };
                let place = room.as_deref().unwrap_or("the server");
                let text = format!("{by} {what} {target} in {place}");
                let key = room.as_deref().map(names::key);
                match key.filter(|k| self.conversations.contains_key(k)) {
                    Some(key) => self.push(Some(key), system(ts, LineKind::Notice(text))),
                    None => self.local(now, LineKind::Notice(text)),
                }
            }
            ServerMsg::BanList {
                room,
                bans,
                more,
                after,
            } => {
                if more {
                    let after = Some(after.unwrap_or(0) + bans.len() as u32);
                    let next = match &room {
                        Some(room) => ClientMsg::Bans {
                            room: room.clone(),
                            after,
                        },
                        None => ClientMsg::ServerBans { after },
                    };
                    self.send(now, next);
                }
                let place = room.as_deref().unwrap_or("the server");
                let mut text = if bans.is_empty() && after.is_none() {
                    format!("no bans or mutes in {place}")
                } else if after.is_some() {
                    format!("bans and mutes of {place}, continued")
                } else {
                    format!("bans and mutes of {place}")
                };
                for ban in &bans {
                    text.push_str(&format!("\n  {}", describe_ban(ban, None)));
                }
                let key = room.as_deref().map(names::key);
                match key.filter(|k| self.conversations.contains_key(k)) {
                    Some(key) => self.push(Some(key), system(now, LineKind::Notice(text))),
                    None => self.local(now, LineKind::Notice(text)),
                }
            }
            ServerMsg::Role {
                room,
                name,
                role,
                by,
                ts,
                ..
            } => {
                let key = names::key(&room);
                if let Some(c) = self.conversations.get_mut(&key) {
                    if role == Role::Member {
                        c.roles.remove(&names::key(&name));
                    } else {
                        c.roles.insert(names::key(&name), role);
                    }
                }
                let text = match (by, role) {
                    (None, _) => format!("{name} owns {room}"),
                    (Some(by), Role::Member) => format!("{by} took {name}'s role in {room} away"),
                    (Some(by), role) => format!("{by} made {name} {} of {room}", role_noun(role)),
                };
                if self.conversations.contains_key(&key) {
                    self.push(Some(key), system(ts, LineKind::Notice(text)));
                } else {
                    self.local(now, LineKind::Notice(text));
                }
            }
            ServerMsg::Mode {
                room,
                modes,
                by,
                ts,
                ..
            } => {
                let key = names::key(&room);
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.modes = modes;
                }
                let text = match by {
                    Some(by) => format!("{by} set the modes of {room}: {}", describe_modes(modes)),
                    None => format!("modes of {room}: {}", describe_modes(modes)),
                };
                if self.conversations.contains_key(&key) {
                    self.push(Some(key), system(ts.unwrap_or(now), LineKind::Notice(text)));
                } else {
                    self.local(now, LineKind::Notice(text));
                }
            }
            ServerMsg::Invite {
                room,
                name,
                by,
                expires: _,
            } => {
                let text = if self.is_me(&name) {
                    format!("{by} invites you to {room}: /join {room}")
                } else {
                    format!("{by} invited {name} to {room}")
                };
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::RoomClosed {
                room,
                by,
                reason,
                ts: _,
            } => {
                let key = names::key(&room);
                let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
                self.close_conversation(&key);
                self.room_keys.remove(&key);
                self.local(now, LineKind::Error(format!("{by} closed {room}{why}")));
            }
            ServerMsg::Connections { conns, more } => {
                let mut text = format!(
                    "connections ({}{})",
                    conns.len(),
                    if more { "+" } else { "" }
                );
                for c in &conns {
                    let account = c
                        .account
                        .as_deref()
                        .map(|a| format!(" account {a}"))
                        .unwrap_or_default();
                    let rooms = if c.rooms == 1 { "room" } else { "rooms" };
                    text.push_str(&format!(
                        "\n  c{} {} from {}{account}, in {} {rooms}",
                        c.conn, c.name, c.addr, c.rooms
                    ));
                }
                if more && let Some(last) = conns.last() {
                    self.send(
                        now,
                        ClientMsg::Connections {
                            after: Some(last.conn),
                        },
                    );
                }
                self.local(now, LineKind::Notice(text));
            }
            ServerMsg::Bye { reason } => {
                if matches!(self.state, ConnState::Closed { .. }) {
                    return;
                }
                self.notice_everywhere(now, &format!("server closed the connection: {reason}"));
            }
        }
    }

    // ----- internals -----

    fn run(&mut self, now: UnixMillis, input: u64, cmd: Command) {
        match cmd {
            Command::Help => {
                let mut text = String::from("commands:");
                for (_, usage, what) in COMMANDS {
                    text.push_str(&format!("\n  {usage:<24} {what}"));
                }
                text.push_str(
                    "\n  text without a slash goes to the active room; //text sends /text",
                );
                self.local(now, LineKind::Notice(text));
            }
            Command::Switch(target) => {
                let index = match target.parse::<usize>() {
                    Ok(n) if n >= 1 => Some(n - 1),
                    _ => self.conversations.get_index_of(&names::key(&target)),
                };
                match index.filter(|i| *i < self.conversations.len()) {
                    Some(i) => self.switch_to_index(i),
                    None => self.local(now, LineKind::Error(format!("no conversation {target}"))),
                }
            }
            Command::Query(name) => {
                let key = self.open(&name, ConversationKind::Direct);
                if let Some(c) = self.conversations.get_mut(&key) {
                    c.members = vec![name];
                }
                self.activate(key);
            }
            Command::Away(reason) => self.submit(now, ClientMsg::Away { reason }),
            Command::Search(words) => {
                match self.active().filter(|c| c.kind == ConversationKind::Room) {
                    Some(c) => {
                        let room = c.name.clone();
                        self.submit(
                            now,
                            ClientMsg::Search {
                                room,
                                query: words,
                                before: None,
                                limit: 20,
                            },
                        );
                    }
                    None => self.local(now, LineKind::Error("/search works in a room".into())),
                }
            }
            Command::Highlights => {
                if self.highlights.is_empty() {
                    self.local(now, LineKind::Notice("no highlights yet".into()));
                    return;
                }
                let header = format!("the last {} highlights:", self.highlights.len());
                self.local(now, LineKind::Notice(header));
                // Each at its own time, so every front-end shows when it was said.
                let lines: Vec<Line> = self
                    .highlights
                    .iter()
                    .filter_map(|(place, line)| {
                        let text = match &line.kind {
                            LineKind::Message { from, text } => format!("{place} <{from}> {text}"),
                            LineKind::Action { from, text } => format!("{place} * {from} {text}"),
                            _ => return None,
                        };
                        Some(system(line.ts, LineKind::Notice(text)))
                    })
                    .collect();
                let key = self.active.clone();
                for line in lines {
                    self.push(key.clone(), line);
                }
            }
            Command::Quit(reason) => {
                self.send_now(ClientMsg::Quit {
                    reason: reason.clone(),
                });
                self.set_state(ConnState::Closed {
                    reason: reason.unwrap_or_else(|| "quit".into()),
                });
            }
            Command::Close => match self.active().map(|c| (c.kind, c.name.clone())) {
                Some((ConversationKind::Direct, _)) => {
                    let key = self.active.clone().unwrap_or_default();
                    self.close_conversation(&key);
                }
                Some((ConversationKind::Room, room)) => {
                    self.submit(now, ClientMsg::Part { room, reason: None })
                }
                None => self.local(now, LineKind::Error("nothing to close".into())),
            },
            Command::Nick(name) => {
                if matches!(self.state, ConnState::NameRejected { .. }) {
                    self.set_name(now, &name);
                } else {
                    // The name changes when the server says so (`nick`); a refused one
                    // changes nothing, not the name the next hello asks for.
                    self.submit(now, ClientMsg::Nick { name });
                }
            }
            Command::Join { room, key: secret } => {
                let key = names::key(&room);
                if self.conversations.contains_key(&key) {
                    self.activate(key);
                    return;
                }
                if let Some(secret) = &secret {
                    self.room_keys.insert(key.clone(), secret.clone());
                }
                self.joining = Some(key);
                self.submit(
                    now,
                    ClientMsg::Join {
                        room,
                        since: None,
                        key: secret,
                    },
                );
            }
            Command::Kick { name, reason } => {
                self.in_active_room(now, |room| ClientMsg::Kick { room, name, reason });
            }
            Command::Ban {
                target,
                duration,
                reason,
                mute,
            } => self.in_active_room(now, |room| ClientMsg::Ban {
                room,
                target,
                duration,
                reason,
                mute,
            }),
            Command::Unban { target, mute } => {
                self.in_active_room(now, |room| ClientMsg::Unban { room, target, mute });
            }
            Command::Bans => {
                self.in_active_room(now, |room| ClientMsg::Bans { room, after: None });
            }
            Command::Role { name, role } => {
                self.in_active_room(now, |room| ClientMsg::Role {
                    room,
                    name,
                    role,
                    at_least: false,
                });
            }
            Command::Mode(change) => self.in_active_room(now, |room| ClientMsg::Mode {
                room,
                moderated: change.moderated,
                invite_only: change.invite_only,
                topic_lock: change.topic_lock,
                registered_only: change.registered_only,
                secret: change.secret,
                key: change.key,
                limit: change.limit,
                open: change.open,
            }),
            Command::Invite { name, duration } => {
                self.in_active_room(now, |room| ClientMsg::Invite {
                    room,
                    name,
                    duration,
                });
            }
            Command::Kill { name, reason } => self.submit(now, ClientMsg::Kill { name, reason }),
            Command::ServerBan {
                target,
                duration,
                reason,
            } => self.submit(
                now,
                ClientMsg::ServerBan {
                    target,
                    duration,
                    reason,
                },
            ),
            Command::ServerUnban(target) => self.submit(now, ClientMsg::ServerUnban { target }),
            Command::ServerBans => self.submit(now, ClientMsg::ServerBans { after: None }),
            Command::CloseRoom { room, reason } => {
                self.submit(now, ClientMsg::CloseRoom { room, reason });
            }
            Command::OpenRoom(room) => self.submit(now, ClientMsg::OpenRoom { room }),
            Command::Connections => self.submit(now, ClientMsg::Connections { after: None }),
            Command::Rooms => self.submit(now, ClientMsg::Rooms { after: None }),
            Command::Register(password) => {
                self.auth_pending = Some(password.clone());
                self.submit(now, ClientMsg::Register { password });
            }
            Command::Login { account, password } => {
                self.auth_pending = Some(password.clone());
                self.submit(now, ClientMsg::Login { account, password });
            }
            Command::Logout => self.submit(now, ClientMsg::Logout {}),
            Command::Passwd { old, new } => {
                self.auth_pending = Some(new.clone());
                self.submit(now, ClientMsg::Passwd { old, new });
            }
            Command::Unregister(password) => {
                self.submit(now, ClientMsg::Unregister { password });
            }
            Command::Msg { to, text } => {
                // Said where the user is, as irssi does; the message itself goes to the
                // conversation with them.
                let key = names::key(&to);
                if self.active.as_deref() != Some(key.as_str()) {
                    // A line for NickServ carries a password: the echo (on screen, in the
                    // logs) says only that it went.
                    let echo = if crate::command::holds_secret(&format!("/msg {to} {text}")) {
                        format!("-> *{to}* (not shown: it has a password in it)")
                    } else {
                        format!("-> *{to}* {text}")
                    };
                    self.local(now, LineKind::Notice(echo));
                }
                self.asked_away.insert(key);
                self.counted(
                    now,
                    input,
                    ClientMsg::Msg {
                        to,
                        text,
                        action: false,
                        cid: None,
                        notice: false,
                        tags: ClientTags::new(),
                    },
                );
            }
            Command::Say(_) | Command::Me(_) | Command::Reply(_) | Command::React(_)
                if self.active.is_none() =>
            {
                self.refuse_input(now, input, "join a room first: /join #room".to_string());
            }
            Command::Say(text) => self.say(now, input, text, false, ClientTags::new()),
            Command::Me(text) => self.say(now, input, text, true, ClientTags::new()),
            Command::Reply(text) => {
                let Some(parent) = self.answerable() else {
                    let why = "there is no message from someone else here to reply to";
                    self.refuse_input(now, input, why.to_string());
                    return;
                };
                let tags = ClientTags::from([("draft/reply".to_string(), parent.to_string())]);
                self.say(now, input, text, false, tags);
            }
            Command::React(emoji) => {
                let Some(parent) = self.answerable() else {
                    let why = "there is no message from someone else here to react to";
                    self.refuse_input(now, input, why.to_string());
                    return;
                };
                if self.active().is_some_and(|c| c.left) {
                    let (_, name) = self.active_target();
                    let why = format!("you are not in {name}; /join {name} to go back");
                    self.refuse_input(now, input, why);
                    return;
                }
                let (_, to) = self.active_target();
                let tags = ClientTags::from([
                    ("draft/react".to_string(), emoji),
                    ("draft/reply".to_string(), parent.to_string()),
                ]);
                let msg = ClientMsg::Tag {
                    to,
                    tags,
                    cid: None,
                };
                self.counted(now, input, msg);
            }
            Command::Part { room, reason } => {
                let room = room.or_else(|| {
                    self.active()
                        .filter(|c| c.kind == ConversationKind::Room)
                        .map(|c| c.name.clone())
                });
                match room {
                    Some(room) => self.submit(now, ClientMsg::Part { room, reason }),
                    None => self.local(now, LineKind::Error("usage: /part #room".into())),
                }
            }
            Command::Whois(name) => self.submit(now, ClientMsg::Whois { name }),
            Command::Who(room) => match room.or_else(|| self.active_room()) {
                Some(room) => self.submit(now, ClientMsg::Who { room, after: None }),
                None => self.local(now, LineKind::Error("usage: /who #room".into())),
            },
            Command::Topic(topic) => match self.active_room() {
                Some(room) => self.submit(now, ClientMsg::Topic { room, topic }),
                None => self.local(now, LineKind::Error("switch to a room first".into())),
            },
            Command::History(limit) => match self.active_room() {
                Some(room) => {
                    self.paging.insert(names::key(&room));
                    let before = self.active().and_then(Conversation::oldest_id);
                    self.submit(
                        now,
                        ClientMsg::History {
                            room,
                            before,
                            after: None,
                            before_ts: None,
                            after_ts: None,
                            latest: false,
                            limit,
                        },
                    );
                }
                None => self.local(now, LineKind::Error("switch to a room first".into())),
            },
        }
    }

    /// The names of the rooms the user is in, in the order opened.
    fn room_names(&self) -> Vec<String> {
        self.conversations
            .values()
            .filter(|c| c.kind == ConversationKind::Room && !c.left)
            .map(|c| c.name.clone())
            .collect()
    }

    fn active_target(&self) -> (ConversationKind, String) {
        let c = self
            .active()
            .expect("caller checked there is an active conversation");
        (c.kind, c.name.clone())
    }

    /// Sends a command about the active room, or says to switch to one.
    fn in_active_room(&mut self, now: UnixMillis, msg: impl FnOnce(String) -> ClientMsg) {
        match self.active_room() {
            Some(room) => self.submit(now, msg(room)),
            None => self.local(now, LineKind::Error("switch to a room first".into())),
        }
    }

    fn active_room(&self) -> Option<String> {
        self.active()
            .filter(|c| c.kind == ConversationKind::Room)
            .map(|c| c.name.clone())
    }

    /// Sends a message the user wrote under a new cid, and keeps it until the server
    /// acknowledges or refuses it: sent now when online, else on the next registration.
    /// Text (or an action) to the active conversation, in as many messages as the server's
    /// limits need.
    /// Refuses an input here, without the server: said in the conversation, and as a refusal
    /// naming the input (so a pipe knows which line was not sent).
    fn refuse_input(&mut self, now: UnixMillis, input: u64, reason: String) {
        self.local(now, LineKind::Error(reason.clone()));
        self.outputs.push_back(Output::Event(Event::Refused {
            input,
            code: None,
            reason,
        }));
    }

    /// The newest message from someone else in the active conversation: what `/reply` and
    /// `/react` answer.
    fn answerable(&self) -> Option<MsgId> {
        let c = self.active()?;
        c.lines.iter().rev().find_map(|l| match &l.kind {
            LineKind::Message { from, .. } | LineKind::Action { from, .. } if !self.is_me(from) => {
                l.id
            }
            _ => None,
        })
    }

    fn say(&mut self, now: UnixMillis, input: u64, text: String, action: bool, tags: ClientTags) {
        let (kind, name) = self.active_target();
        if self.active().is_some_and(|c| c.left) {
            let why = format!("you are not in {name}; /join {name} to go back");
            self.refuse_input(now, input, why);
            return;
        }
        // The tags belong to the message: on its first part when it must be cut.
        let mut tags = Some(tags);
        for text in self.message_parts(text) {
            let (room, cid) = (name.clone(), None);
            let tags = tags.take().unwrap_or_default();
            let msg = match (kind, action) {
                (ConversationKind::Room, false) => ClientMsg::Say {
                    room,
                    text,
                    cid,
                    notice: false,
                    tags,
                },
                (ConversationKind::Room, true) => ClientMsg::Me {
                    room,
                    text,
                    cid,
                    tags,
                },
                (ConversationKind::Direct, _) => ClientMsg::Msg {
                    to: room,
                    text,
                    action,
                    cid,
                    notice: false,
                    tags,
                },
            };
            self.counted(now, input, msg);
        }
    }

    /// A message as the server will take it: one, or several in order when it is longer (in
    /// bytes or lines) than the limits the server announced.
    fn message_parts(&self, text: String) -> Vec<String> {
        match self.limits {
            Some(l)
                if text.len() > l.max_text as usize
                    || text.lines().count() > l.max_text_lines as usize =>
            {
                text::split_message(&text, l.max_text as usize, l.max_text_lines as usize)
            }
            _ => vec![text],
        }
    }

    fn counted(&mut self, now: UnixMillis, input: u64, mut msg: ClientMsg) {
        if matches!(self.state, ConnState::Closed { .. }) {
            self.local(
                now,
                LineKind::Error("not connected; your message was not sent".into()),
            );
            return;
        }
        self.cids_made += 1;
        let cid = format!("{}-{}", self.config.cid_prefix, self.cids_made);
        if let ClientMsg::Say { cid: c, .. }
        | ClientMsg::Me { cid: c, .. }
        | ClientMsg::Msg { cid: c, .. }
        | ClientMsg::Tag { cid: c, .. } = &mut msg
        {
            *c = Some(cid.clone());
        }
        self.unacked.push_back(Unacked {
            cid,
            msg: msg.clone(),
            input,
        });
        if self.is_online() {
            self.send(now, msg);
        } else {
            self.local(
                now,
                LineKind::Notice("not connected; the message will be sent on reconnect".into()),
            );
        }
    }

    fn submit(&mut self, now: UnixMillis, msg: ClientMsg) {
        if self.is_online() {
            self.send(now, msg);
        } else {
            self.local(
                now,
                LineKind::Error("not connected; your message was not sent".into()),
            );
        }
    }

    /// Queues a frame behind the others, to go out as flood control allows.
    fn send(&mut self, now: UnixMillis, msg: ClientMsg) {
        self.tx.push_back(msg);
        self.pump(now);
    }

    /// Sends a frame at once: registration, liveness and quitting never wait behind chat.
    fn send_now(&mut self, msg: ClientMsg) {
        self.outputs.push_back(Output::Send(msg));
    }

    /// Sends what the flood-control tokens allow.
    fn pump(&mut self, now: UnixMillis) {
        if !self.is_online() {
            return;
        }
        let Some(limits) = self.limits.filter(|l| l.flood_rate > 0) else {
            while let Some(msg) = self.tx.pop_front() {
                self.outputs.push_back(Output::Send(msg));
            }
            return;
        };
        // Two messages short of the server's burst: arrivals bunched by the network still fit.
        let cap = u64::from(limits.flood_burst.saturating_sub(2).max(1)) * 1000;
        let elapsed = now.saturating_sub(self.tokens_at);
        self.tokens = (self.tokens + elapsed * u64::from(limits.flood_rate)).min(cap);
        self.tokens_at = now;
        while self.tokens >= 1000
            && let Some(msg) = self.tx.pop_front()
        {
            self.tokens -= 1000;
            self.outputs.push_back(Output::Send(msg));
        }
    }

    fn send_hello(&mut self) {
        let mut name = self.wanted_name.clone();
        for _ in 0..self.name_retries {
            name.push('_');
        }
        self.send_now(ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name,
            password: self.password.clone(),
        });
    }

    fn set_state(&mut self, state: ConnState) {
        if self.state != state {
            self.state = state.clone();
            self.outputs.push_back(Output::Event(Event::State(state)));
        }
    }

    fn schedule_reconnect(&mut self, now: UnixMillis, reason: &str) {
        if matches!(self.state, ConnState::Closed { .. }) {
            return;
        }
        self.awaiting_room = false;
        self.joining = None;
        if !self.held.is_empty() {
            self.held.clear();
            self.local(
                now,
                LineKind::Error("not connected; your message was not sent".into()),
            );
        }
        // Frames not written are gone with the connection; what the user wrote stays in
        // `unacked` and is sent again, under the same cids, once registered again.
        self.tx.clear();
        self.limits = None;
        self.catching_up.clear();
        self.catch_up_open.clear();
        self.rejoining.clear();
        self.paging.clear();
        let attempt = self.reconnect_attempt;
        self.reconnect_attempt += 1;
        let delay = self
            .config
            .backoff_min
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.backoff_max);
        self.set_state(ConnState::Reconnecting {
            attempt: attempt + 1,
            at: now + delay,
            reason: reason.to_string(),
        });
    }

    fn on_welcome(
        &mut self,
        now: UnixMillis,
        name: String,
        server: String,
        motd: Option<String>,
        limits: Limits,
    ) {
        self.tx.clear();
        self.limits = Some(limits);
        // The server's bucket starts full and `hello` took one.
        self.tokens = u64::from(limits.flood_burst.saturating_sub(3)) * 1000;
        self.tokens_at = now;
        let reconnect = self.was_online;
        self.awaiting_room = self.conversations.is_empty();
        self.was_online = true;
        self.reconnect_attempt = 0;
        self.name_retries = 0;
        self.name = Some(name.clone());
        self.set_state(ConnState::Online);
        // A reconnect is one quiet line: the message of the day was read at the first connect.
        let mut text = if reconnect {
            format!("reconnected to {server} as {name}")
        } else {
            format!("connected to {server} as {name}")
        };
        if let Some(motd) = motd.filter(|m| !m.is_empty() && !reconnect) {
            text.push_str(&format!("\n{motd}"));
        }
        self.local(now, LineKind::Notice(text));
        if !reconnect {
            for room in self.config.autojoin.clone() {
                self.joining = Some(names::key(&room));
                self.send(
                    now,
                    ClientMsg::Join {
                        room,
                        since: None,
                        key: None,
                    },
                );
            }
        }
        if reconnect {
            // Rejoin every room, asking for what was missed since the last id seen. The server
            // put us back in its default room already; `since` fills any gap there too.
            let rooms = self.room_names();
            for room in rooms {
                if self.last_id.is_some() {
                    self.catching_up.insert(names::key(&room));
                    self.catch_up_open.insert(names::key(&room));
                }
                self.rejoining.insert(names::key(&room));
                let key = self.room_keys.get(&names::key(&room)).cloned();
                self.send(
                    now,
                    ClientMsg::Join {
                        room,
                        since: self.last_id,
                        key,
                    },
                );
            }
        }
        // Then everything not yet acknowledged, in order, under its first cid: the server
        // answers what it already has with the original acknowledgement.
        let resend: Vec<ClientMsg> = self.unacked.iter().map(|u| u.msg.clone()).collect();
        for msg in resend {
            self.send(now, msg);
        }
    }

    /// The user leaves a conversation: everything in it is read. An account tells the server,
    /// for its other devices.
    fn mark_read(&mut self, key: &str) {
        let logged_in = self.account.is_some() && self.is_online();
        let Some(c) = self.conversations.get_mut(key) else {
            return;
        };
        let Some(newest) = c.lines.iter().rev().find_map(|l| l.id) else {
            return;
        };
        if c.read_marker.is_some_and(|m| m >= newest) {
            return;
        }
        c.read_marker = Some(newest);
        if logged_in {
            let target = c.name.clone();
            // Switching takes no clock: the latest time the session knows paces it.
            let now = self.tokens_at.max(self.last_rx);
            self.submit(now, ClientMsg::MarkRead { target, id: newest });
        }
    }

    /// Another device (or the server, at join) says how far the account has read: what is
    /// before the marker is no longer unread here.
    fn on_read_marker(&mut self, target: &str, id: MsgId) {
        let me = self.name.clone();
        let active = self.active.clone();
        let key = names::key(target);
        let Some(c) = self.conversations.get_mut(&key) else {
            return;
        };
        if c.read_marker.is_some_and(|m| m >= id) {
            return;
        }
        c.read_marker = Some(id);
        if active.as_deref() == Some(key.as_str()) {
            return;
        }
        let direct = c.kind == ConversationKind::Direct;
        let unread: Vec<bool> = c
            .lines
            .iter()
            .filter(|l| l.id.is_some_and(|i| i > id))
            .filter_map(|l| match &l.kind {
                LineKind::Message { from, .. } | LineKind::Action { from, .. } => {
                    let mine = me
                        .as_deref()
                        .is_some_and(|m| names::key(m) == names::key(from));
                    (!mine).then_some(l.mention || direct)
                }
                _ => None,
            })
            .collect();
        let (was, mentions) = (c.unread, c.mentions);
        c.unread = c.unread.min(unread.len());
        c.mentions = c.mentions.min(unread.iter().filter(|m| **m).count());
        if (c.unread, c.mentions) != (was, mentions) {
            let name = c.name.clone();
            self.outputs.push_back(Output::Event(Event::Read(name)));
        }
    }

    fn on_away(&mut self, now: UnixMillis, name: String, reason: Option<String>) {
        let key = names::key(&name);
        let before = match &reason {
            Some(r) => self.away.insert(key.clone(), r.clone()),
            None => self.away.remove(&key),
        };
        let was_away = before.is_some();
        // The answer to writing to someone away comes every time; it is shown once (until
        // the reason changes or they come back), where the user is.
        if self.asked_away.remove(&key) && !self.is_me(&name) {
            if let Some(r) = &reason
                && before.as_ref() != Some(r)
            {
                self.local(now, LineKind::Notice(format!("{name} is away: {r}")));
            }
            return;
        }
        let text = match (&reason, self.is_me(&name)) {
            (Some(r), true) => format!("you are marked away: {r}"),
            (None, true) => "you are no longer marked away".to_string(),
            (Some(r), false) => format!("{name} is away: {r}"),
            (None, false) => format!("{name} is back"),
        };
        if self.is_me(&name) {
            self.local(now, LineKind::Notice(text));
        } else if self.conversations.contains_key(&key) && (reason.is_some() || was_away) {
            // Said in the direct conversation with them: the answer to writing to someone away,
            // or news of it.
            self.push(Some(key), system(now, LineKind::Notice(text)));
        }
    }

    /// The latest lines that mentioned the user or came to them directly, with the name of
    /// the conversation each is in, oldest first (at most 100).
    pub fn highlights(&self) -> impl DoubleEndedIterator<Item = (&str, &Line)> {
        self.highlights.iter().map(|(c, l)| (c.as_str(), l))
    }

    /// Why `name` is away, if they are.
    pub fn away_reason(&self, name: &str) -> Option<&str> {
        self.away.get(&names::key(name)).map(String::as_str)
    }

    fn on_nick(&mut self, old: String, new: String, ts: UnixMillis) {
        if let Some(reason) = self.away.remove(&names::key(&old)) {
            self.away.insert(names::key(&new), reason);
        }
        if self.is_me(&old) {
            self.name = Some(new.clone());
            self.wanted_name = new.clone();
        }
        let old_key = names::key(&old);
        // A direct conversation follows the person.
        if let Some(index) = self.conversations.get_index_of(&old_key)
            && self.conversations[index].kind == ConversationKind::Direct
        {
            let new_key = names::key(&new);
            if let Some((_, mut c)) = self.conversations.shift_remove_index(index) {
                c.name = new.clone();
                c.members = vec![new.clone()];
                let (last, _) = self.conversations.insert_full(new_key.clone(), c);
                self.conversations.move_index(last, index.min(last));
                if self.active.as_deref() == Some(old_key.as_str()) {
                    self.active = Some(new_key);
                }
            }
        }
        let keys: Vec<String> = self
            .conversations
            .iter()
            .filter(|(_, c)| c.members.iter().any(|m| names::key(m) == old_key))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(c) = self.conversations.get_mut(&key) {
                for m in c.members.iter_mut() {
                    if names::key(m) == old_key {
                        *m = new.clone();
                    }
                }
                c.members.sort_by_cached_key(|n| names::key(n));
            }
            let line = system(
                ts,
                LineKind::Nick {
                    old: old.clone(),
                    new: new.clone(),
                },
            );
            self.push(Some(key), line);
        }
    }

    fn on_message(&mut self, msg: ChatMessage, arrival: Arrival) {
        let key = names::key(&msg.room);
        if !self.conversations.contains_key(&key) {
            return;
        }
        if !msg.kept() {
            // A typing notice and the like: nothing to show, and no place in catch-up.
            return;
        }
        self.see_id(msg.id);
        let said = Said {
            id: msg.id,
            ts: msg.ts,
            from: msg.from,
            text: msg.text,
            action: msg.action,
            notice: msg.notice,
            tags: msg.tags,
        };
        self.on_said(&key, said, arrival);
    }

    /// A message (room or direct) for the conversation `key`: a reaction counts under the
    /// message it names; anything else is a line, quoting the message it answers.
    fn on_said(&mut self, key: &str, said: Said, arrival: Arrival) {
        let parent = protocol::reply_to(&said.tags);
        if let Some(emoji) = protocol::reaction(&said.text, &said.tags) {
            let emoji = emoji.to_string();
            let Some(c) = self.conversations.get_mut(key) else {
                return;
            };
            let Some(line) = parent.and_then(|p| c.lines.iter_mut().find(|l| l.id == Some(p)))
            else {
                // What it reacts to is not in the scrollback: nothing to count it under.
                return;
            };
            let who = names::key(&said.from);
            let r = match line.reactions.iter_mut().position(|r| r.emoji == emoji) {
                Some(i) => &mut line.reactions[i],
                None => {
                    line.reactions.push(Reaction {
                        emoji: emoji.clone(),
                        from: Vec::new(),
                    });
                    line.reactions.last_mut().expect("just pushed")
                }
            };
            if r.from.iter().any(|f| names::key(f) == who) {
                return;
            }
            r.from.push(said.from.clone());
            let to = quote(line);
            let conversation = c.name.clone();
            self.outputs.push_back(Output::Event(Event::Reacted {
                conversation,
                from: said.from,
                emoji,
                to,
            }));
            return;
        }
        let reply = parent.map(|id| Quote {
            id,
            said: self
                .conversations
                .get(key)
                .and_then(|c| c.lines.iter().find(|l| l.id == Some(id)))
                .and_then(|l| quote(l).said),
        });
        let kind = if said.action {
            LineKind::Action {
                from: said.from,
                text: said.text,
            }
        } else {
            LineKind::Message {
                from: said.from,
                text: said.text,
            }
        };
        let mut line = line_at(Some(said.id), said.ts, kind);
        line.notice = said.notice;
        line.reply = reply;
        self.insert_message(key, line, arrival);
    }

    fn on_error(&mut self, now: UnixMillis, code: ErrorCode, message: String) {
        match code {
            ErrorCode::NameTaken
            | ErrorCode::InvalidName
            | ErrorCode::NameReserved
            | ErrorCode::AccountRequired
            | ErrorCode::BadCredentials
            | ErrorCode::LoginThrottled
                if self.state == ConnState::Registering =>
            {
                // After a reconnect our old connection may still hold the name for a while:
                // take a variant rather than stall.
                if self.was_online && code == ErrorCode::NameTaken && self.name_retries < 3 {
                    self.name_retries += 1;
                    self.send_hello();
                    return;
                }
                let account = matches!(
                    code,
                    ErrorCode::NameReserved | ErrorCode::BadCredentials | ErrorCode::LoginThrottled
                )
                .then(|| self.wanted_name.clone());
                self.set_state(ConnState::NameRejected {
                    reason: message.clone(),
                    account: account.clone(),
                });
                self.local(now, LineKind::Error(message));
                let how = match &account {
                    Some(account) => {
                        format!("type another name, or /login {account} <password> to log in")
                    }
                    None => "type another name".to_string(),
                };
                self.local(now, LineKind::Notice(how));
            }
            ErrorCode::BadCredentials
            | ErrorCode::LoginThrottled
            | ErrorCode::WeakPassword
            | ErrorCode::AccountExists
            | ErrorCode::RegistrationThrottled
            | ErrorCode::AlreadyLoggedIn
            | ErrorCode::NotLoggedIn => {
                // The account command failed: the password in force stays what it was.
                self.auth_pending = None;
                self.local(now, LineKind::Error(message));
            }
            // Banned from the server: trying again would only be refused again.
            ErrorCode::UnsupportedVersion | ErrorCode::Banned
                if code == ErrorCode::UnsupportedVersion
                    || self.state == ConnState::Registering =>
            {
                self.set_state(ConnState::Closed {
                    reason: message.clone(),
                });
                self.local(now, LineKind::Error(message));
            }
            ErrorCode::InvalidRoom
            | ErrorCode::TooManyRooms
            | ErrorCode::RoomLimit
            | ErrorCode::RoomCreationThrottled
            | ErrorCode::Banned
            | ErrorCode::InviteOnly
            | ErrorCode::BadKey
            | ErrorCode::RegisteredOnly
            | ErrorCode::RoomClosed
            | ErrorCode::OwnedRoomLimit
            | ErrorCode::AccountRequired
            | ErrorCode::StoreUnavailable
                if self.joining.is_some() =>
            {
                // The join failed: nothing is on its way any more.
                self.joining = None;
                self.local(now, LineKind::Error(message));
                self.release_held(now);
            }
            _ => self.local(now, LineKind::Error(message)),
        }
    }

    /// Runs the lines held while a room was on its way, once none is.
    fn release_held(&mut self, now: UnixMillis) {
        if self.awaiting_room || self.joining.is_some() {
            return;
        }
        for (input, line) in std::mem::take(&mut self.held) {
            self.run_input(now, input, &line);
        }
    }

    fn see_id(&mut self, id: MsgId) {
        self.last_id = Some(self.last_id.map_or(id, |last| last.max(id)));
    }

    fn is_me(&self, name: &str) -> bool {
        self.name
            .as_deref()
            .is_some_and(|me| names::key(me) == names::key(name))
    }

    /// Opens (or finds) a conversation and returns its key. The first one opened takes over
    /// the status lines (welcome, message of the day), so they stay in view.
    fn open(&mut self, name: &str, kind: ConversationKind) -> String {
        let key = names::key(name);
        if !self.conversations.contains_key(&key) && kind == ConversationKind::Direct {
            self.make_room_for_a_direct_conversation();
        }
        if !self.conversations.contains_key(&key) {
            let mut c = Conversation::new(name.to_string(), kind);
            if self.conversations.is_empty() {
                c.lines = std::mem::take(&mut self.status);
            }
            self.conversations.insert(key.clone(), c);
        }
        key
    }

    /// Closes the direct conversation quiet the longest when there are `max_direct` already.
    fn make_room_for_a_direct_conversation(&mut self) {
        let directs = self
            .conversations
            .values()
            .filter(|c| c.kind == ConversationKind::Direct)
            .count();
        if directs < self.config.max_direct.max(1) {
            return;
        }
        let quietest = self
            .conversations
            .iter()
            .filter(|(k, c)| {
                c.kind == ConversationKind::Direct && self.active.as_deref() != Some(k.as_str())
            })
            .min_by_key(|(_, c)| c.lines.back().map_or(0, |l| l.ts))
            .map(|(k, _)| k.clone());
        if let Some(key) = quietest {
            self.close_conversation(&key);
        }
    }

    fn close_conversation(&mut self, key: &str) {
        let Some(index) = self.conversations.get_index_of(key) else {
            return;
        };
        self.conversations.shift_remove_index(index);
        if self.active.as_deref() == Some(key) {
            self.active = None;
            let next = index.min(self.conversations.len().saturating_sub(1));
            self.switch_to_index(next);
            if self.active.is_none() {
                self.outputs.push_back(Output::Event(Event::Switched(None)));
            }
        }
    }

    fn activate(&mut self, key: String) {
        if let Some(old) = self.active.clone()
            && old != key
        {
            self.mark_read(&old);
        }
        if let Some(c) = self.conversations.get_mut(&key) {
            c.unread = 0;
            c.mentions = 0;
            let name = c.name.clone();
            if self.active.as_deref() != Some(key.as_str()) {
                self.active = Some(key);
                self.outputs
                    .push_back(Output::Event(Event::Switched(Some(name))));
            }
        }
    }

    /// Inserts a message line in id order, dropping duplicates (catch-up may overlap).
    fn insert_message(&mut self, key: &str, mut line: Line, arrival: Arrival) {
        let live = arrival == Arrival::Live;
        let me = self.name.clone();
        let highlights = &self.config.highlights;
        let active = self.active.as_deref() == Some(key);
        let Some(c) = self.conversations.get_mut(key) else {
            return;
        };
        let id = line.id.expect("message lines carry ids");
        let newest = c.lines.iter().rev().find_map(|l| l.id);
        let position = if newest.is_none_or(|n| id > n) {
            c.lines.len()
        } else if c.lines.iter().any(|l| l.id == Some(id)) {
            return;
        } else {
            c.lines
                .iter()
                .position(|l| l.id.is_some_and(|other| other > id))
                .unwrap_or(c.lines.len())
        };
        let (from, text) = match &line.kind {
            LineKind::Message { from, text } | LineKind::Action { from, text } => (from, text),
            _ => unreachable!("only messages are inserted by id"),
        };
        let mine = me
            .as_deref()
            .is_some_and(|m| names::key(m) == names::key(from));
        line.mention = !mine
            && (me.as_deref().is_some_and(|m| mentions(text, m))
                || highlights.iter().any(|w| mentions(text, w)));
        let mut position = position;
        if !live && position == c.lines.len() {
            // History that arrives after the join notice belongs before it.
            while position > 0
                && c.lines[position - 1].id.is_none()
                && c.lines[position - 1].ts >= line.ts
            {
                position -= 1;
            }
        }
        let appended = position == c.lines.len();
        let news = !mine && appended && arrival != Arrival::History;
        let notify = news && (line.mention || c.kind == ConversationKind::Direct);
        if news && !active {
            c.unread += 1;
            if notify {
                c.mentions += 1;
            }
        }
        let name = c.name.clone();
        c.lines.insert(position, line.clone());
        let limit = self.config.scrollback.max(1);
        while c.lines.len() > limit {
            c.lines.pop_front();
            c.more_history = true;
        }
        if notify {
            self.notifications += 1;
            self.highlights.push_back((name.clone(), line.clone()));
            if self.highlights.len() > HIGHLIGHTS_KEPT {
                self.highlights.pop_front();
            }
        }
        let notice = notify.then(|| Event::Notify {
            conversation: name.clone(),
            line: line.clone(),
        });
        self.outputs.push_back(Output::Event(Event::Line {
            conversation: Some(name),
            line,
            history: arrival == Arrival::History,
        }));
        if let Some(notice) = notice {
            self.outputs.push_back(Output::Event(notice));
        }
    }

    /// Appends a non-message line to a conversation (or the status area).
    fn push(&mut self, key: Option<String>, line: Line) {
        let limit = self.config.scrollback.max(1);
        let conversation = match key.as_deref().and_then(|k| self.conversations.get_mut(k)) {
            Some(c) => {
                c.lines.push_back(line.clone());
                while c.lines.len() > limit {
                    c.lines.pop_front();
                }
                Some(c.name.clone())
            }
            None => {
                self.status.push_back(line.clone());
                while self.status.len() > limit {
                    self.status.pop_front();
                }
                None
            }
        };
        self.outputs.push_back(Output::Event(Event::Line {
            conversation,
            line,
            history: false,
        }));
    }

    /// A local line in the active conversation (or the status area).
    fn local(&mut self, now: UnixMillis, kind: LineKind) {
        let key = self.active.clone();
        self.push(key, system(now, kind));
    }

    /// Connection news goes to every conversation, so whichever the user looks at shows it.
    /// Line-oriented front-ends get it once, as a status line.
    fn notice_everywhere(&mut self, now: UnixMillis, text: &str) {
        let line = system(now, LineKind::Notice(text.to_string()));
        if self.conversations.is_empty() {
            self.push(None, line);
            return;
        }
        let limit = self.config.scrollback.max(1);
        for c in self.conversations.values_mut() {
            c.lines.push_back(line.clone());
            while c.lines.len() > limit {
                c.lines.pop_front();
            }
        }
        self.outputs.push_back(Output::Event(Event::Line {
            conversation: None,
            line,
            history: false,
        }));
    }
}

fn system(ts: UnixMillis, kind: LineKind) -> Line {
    line_at(None, ts, kind)
}

/// A message as the session takes it in, from a room or direct.
struct Said {
    id: MsgId,
    ts: UnixMillis,
    from: String,
    text: String,
    action: bool,
    notice: bool,
    tags: ClientTags,
}

/// A line as a reply or a reaction quotes it.
fn quote(line: &Line) -> Quote {
    let said = match &line.kind {
        LineKind::Message { from, text } | LineKind::Action { from, text } => {
            Some((from.clone(), text.clone()))
        }
        _ => None,
    };
    Quote {
        id: line.id.unwrap_or_default(),
        said,
    }
}

fn line_at(id: Option<MsgId>, ts: UnixMillis, kind: LineKind) -> Line {
    Line {
        id,
        ts,
        mention: false,
        kind,
        notice: false,
        reply: None,
        reactions: Vec::new(),
    }
}

/// A ban or mute as a line of text: who set it on what, why, and until when.
fn describe_ban(ban: &BanInfo, room: Option<&str>) -> String {
    let what = if ban.mute { "muted" } else { "banned" };
    let place = room.map(|r| format!(" in {r}")).unwrap_or_default();
    let why = ban
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let until = ban
        .expires
        .map(|at| format!(" (for {})", text::duration(at.saturating_sub(ban.ts))))
        .unwrap_or_default();
    format!("{} {what} {}{place}{until}{why}", ban.by, ban.target)
}

fn role_noun(role: Role) -> &'static str {
    match role {
        Role::Owner => "an owner",
        Role::Op => "an operator",
        Role::Voice => "voiced",
        Role::Member => "a member",
    }
}

/// Modes as words, and their IRC letters.
fn describe_modes(m: RoomModes) -> String {
    let set: Vec<String> = [
        (m.moderated, "moderated (+m)"),
        (m.invite_only, "invite-only (+i)"),
        (m.topic_lock, "topic locked (+t)"),
        (m.registered_only, "accounts only (+R)"),
        (m.secret, "secret (+s)"),
        (m.key, "key needed (+k)"),
        (m.open, "open to messages from outside (-n)"),
        (m.closed, "closed"),
    ]
    .into_iter()
    .filter_map(|(on, word)| on.then_some(word.to_string()))
    .chain(m.limit.map(|n| format!("at most {n} people (+l)")))
    .collect();
    if set.is_empty() {
        "none".to_string()
    } else {
        set.join(", ")
    }
}

fn insert_member(members: &mut Vec<String>, name: &str) {
    let key = names::key(name);
    if !members.iter().any(|m| names::key(m) == key) {
        members.push(name.to_string());
        members.sort_by_cached_key(|n| names::key(n));
    }
}

/// True when `text` names `me` as a whole word, in any case.
fn mentions(text: &str, me: &str) -> bool {
    let me = me.to_lowercase();
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .any(|word| word == me)
}

/// A colour of the nick palette: its index in the xterm 256-colour palette, which terminals
/// draw, and the RGB that index stands for there, which the GUI draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NickColour {
    /// xterm 256-colour index.
    pub xterm: u8,
    /// Its red, green and blue.
    pub rgb: [u8; 3],
}

/// The nick palette every front-end uses: eleven colours from the xterm cube, apart from each
/// other, readable on dark and light backgrounds, none of them red (errors and the read
/// marker), the bold yellow of mentions in the terminals or the orange of mentions in the GUI. The user's own nick has none of them (see [`nick_colour`]).
pub const NICK_COLOURS: [NickColour; 11] = [
    NickColour {
        xterm: 37,
        rgb: [0, 175, 175],
    },
    NickColour {
        xterm: 34,
        rgb: [0, 175, 0],
    },
    NickColour {
        xterm: 178,
        rgb: [215, 175, 0],
    },
    NickColour {
        xterm: 170,
        rgb: [215, 95, 215],
    },
    NickColour {
        xterm: 33,
        rgb: [0, 135, 255],
    },
    NickColour {
        xterm: 141,
        rgb: [175, 135, 255],
    },
    NickColour {
        xterm: 72,
        rgb: [95, 175, 135],
    },
    NickColour {
        xterm: 180,
        rgb: [215, 175, 135],
    },
    NickColour {
        xterm: 107,
        rgb: [135, 175, 95],
    },
    NickColour {
        xterm: 110,
        rgb: [135, 175, 215],
    },
    NickColour {
        xterm: 175,
        rgb: [215, 135, 175],
    },
];

/// The colour of `name`'s nick, the same in every front-end and every run (a hash of its
/// case-insensitive key); `None` for the user's own name (`me`), which front-ends show in their
/// own distinct style (bold, in the text colour).
pub fn nick_colour(name: &str, me: Option<&str>) -> Option<NickColour> {
    let key = names::key(name);
    if me.is_some_and(|me| names::key(me) == key) {
        return None;
    }
    // FNV-1a over the key: stable across runs and platforms.
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    Some(NICK_COLOURS[hash as usize % NICK_COLOURS.len()])
}

/// An idle time as people say it: `42 s`, `5 min`, `3 h 20 min`, `2 days`.
fn idle_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} days", secs / 86_400),
    }
}
