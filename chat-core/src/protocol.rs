//! Protocol v1: the typed messages a client and a server exchange.
//!
//! These types are the single source of truth for the wire format; `docs/protocol.md` documents
//! each of them with an example, and a test parses every example in that document. The JSON Lines
//! framing lives in [`crate::codec`]; nothing here knows about bytes or sockets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks, sent in `hello` and `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A server-assigned message id. Ids are unique across the whole server and strictly increase
/// in the order the server accepted the messages, including across restarts.
pub type MsgId = u64;

/// Milliseconds since the Unix epoch, as stamped by the server.
pub type UnixMillis = u64;

/// A message sent by a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Opens the session: the protocol version the client speaks and the name it asks for.
    /// With a password, `name` is an account to log in to, and the session starts logged in.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// The requested name; the server normalises and validates it.
        name: String,
        /// The account's password, to log in as `name`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
    },
    /// Registers the current name as an account with this password, and logs in to it. From
    /// then on nobody else may use the name, whether its owner is online or not.
    Register {
        /// The new account's password.
        password: Secret,
    },
    /// Logs in to an account; the connection takes the account's name.
    Login {
        /// The account's name.
        account: String,
        /// Its password.
        password: Secret,
    },
    /// Makes this connection a server operator with the password of an operator's account
    /// (one that `--operator` names), without logging in to it: IRC's `OPER`. Answered with
    /// `operator`, or `bad_credentials` / `not_permitted`.
    Oper {
        /// The operator's account.
        account: String,
        /// Its password.
        password: Secret,
    },
    /// Logs this connection out of its account; the server then closes it.
    Logout {},
    /// Watches names (IRC's MONITOR): answered with `watching` for the names added, then a
    /// `watching` whenever one of them comes online or goes offline. At most 100 names a
    /// connection (`list_full` past it); `clear` first forgets every name watched.
    Watch {
        /// Names to watch.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        add: Vec<String>,
        /// Names to stop watching (not answered).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<String>,
        /// Forget every name watched first.
        #[serde(default, skip_serializing_if = "is_false")]
        clear: bool,
        /// Also hear of the watched people's away, real-name changes (IRC's
        /// extended-monitor), as if they shared a room; absent leaves it as it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<bool>,
    },
    /// Changes the password of the account this connection is logged in to.
    Passwd {
        /// The current password.
        old: Secret,
        /// The new one.
        new: Secret,
    },
    /// Deletes the account this connection is logged in to. Its other connections are closed;
    /// this one stays, as a guest with the same name.
    Unregister {
        /// The account's password, to confirm.
        password: Secret,
    },
    /// Asks for another name.
    Nick {
        /// The new name.
        name: String,
    },
    /// Joins a room, creating it if it does not exist.
    Join {
        /// Room name, such as `#rust`.
        room: String,
        /// The last message id the client saw: the server replays every later message of the room
        /// it still keeps. Without it the server sends the room's recent history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<MsgId>,
        /// The room's key, when it has one (`mode` with `key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Secret>,
    },
    /// Leaves a room.
    Part {
        /// Room name.
        room: String,
        /// Shown to the other members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Says something in a room.
    Say {
        /// Room name.
        room: String,
        /// The text; may span several lines.
        text: String,
        /// The client's own id for this message, to make sending it idempotent: the server
        /// answers a repeat of a recent `cid` with the original `ack` instead of a second copy.
        /// 1 to 64 printable ASCII characters; unguessable ids are the client's job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
        /// A notice: meant to be read, never answered (bots answer messages, not notices;
        /// IRC's `NOTICE`).
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
        /// Tags for the other clients ([`ClientTags`]): `draft/reply` and the like.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: ClientTags,
    },
    /// An action in a room (`/me waves`).
    Me {
        /// Room name.
        room: String,
        /// The action text, without the sender's name.
        text: String,
        /// The client's own id for this message, to make sending it idempotent: the server
        /// answers a repeat of a recent `cid` with the original `ack` instead of a second copy.
        /// 1 to 64 printable ASCII characters; unguessable ids are the client's job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
        /// Tags for the other clients ([`ClientTags`]): `draft/reply` and the like.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: ClientTags,
    },
    /// A message of tags alone (IRC's `TAGMSG`) to a room or a user: a reaction
    /// (`draft/react` with `draft/reply`), a typing notice, anything clients agree on. Kept in
    /// history when it is a reaction; otherwise only relayed to who is there.
    Tag {
        /// A room name, or a user's name.
        to: String,
        /// The tags; at least one.
        tags: ClientTags,
        /// The client's own id for this message, to make sending it idempotent: the server
        /// answers a repeat of a recent `cid` with the original `ack` instead of a second copy.
        /// 1 to 64 printable ASCII characters; unguessable ids are the client's job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
    },
    /// A direct message to one user.
    Msg {
        /// The recipient's name.
        to: String,
        /// The text.
        text: String,
        /// True for an action (`/me` in a direct conversation).
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
        /// The client's own id for this message, to make sending it idempotent: the server
        /// answers a repeat of a recent `cid` with the original `ack` instead of a second copy.
        /// 1 to 64 printable ASCII characters; unguessable ids are the client's job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
        /// A notice: meant to be read, never answered (bots answer messages, not notices;
        /// IRC's `NOTICE`).
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
        /// Tags for the other clients ([`ClientTags`]): `draft/reply` and the like.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: ClientTags,
    },
    /// Gets a room's topic, or sets it when `topic` is present.
    Topic {
        /// Room name.
        room: String,
        /// The new topic; an empty string clears it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    /// Asks for the member list of a room.
    Who {
        /// Room name.
        room: String,
        /// Continue a long list: only members after this name (in the list's order).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Asks who is in a room, or who has a name matching a mask (`*` and `?` wildcards, any
    /// case), with what `whois` would say of each: IRC's `WHO`. A mask finds people who share a
    /// room with the asker, and anyone by their exact name.
    People {
        /// A room (`#...`) or a mask.
        target: String,
    },
    /// Asks for the server's counts and time: IRC's `LUSERS` and `TIME`.
    Stats {},
    /// Asks who used a name lately and is gone: IRC's `WHOWAS`.
    Whowas {
        /// The name.
        name: String,
        /// At most this many entries, newest first (all kept, when absent or 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    /// Sets what `whois` shows of the connection besides its name: a user name (IRC's
    /// "ident") and a real name. Either may be left out to keep it. Unanswered.
    Profile {
        /// Up to 10 letters, digits, `_`, `-` or `.`; other characters are dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Up to 100 characters; control characters are dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        realname: Option<String>,
        /// Marks the connection a bot, or no longer one (IRCv3 bot mode): its messages carry
        /// `bot`, and `whois` and `people` say so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bot: Option<bool>,
    },
    /// Asks about a connected person: their account, the rooms of theirs the asker may see,
    /// whether they are away or a server operator, and how long they have been idle.
    Whois {
        /// Their name.
        name: String,
    },
    /// Asks for the list of rooms with their member counts.
    Rooms {
        /// Continue a long list: only rooms after this name (in the list's order).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Pages through a room's history, all of it (what the server keeps in memory, then its
    /// store): back from `before` (or the newest), or forward from `after` (to continue a
    /// catch-up). Bounds by time (`before_ts`, `after_ts`, milliseconds) narrow it further;
    /// both kinds of bound may be given together (a range).
    History {
        /// Room name.
        room: String,
        /// Only messages with a smaller id; without it, the newest messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<MsgId>,
        /// Only messages with a larger id, oldest first unless `latest`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MsgId>,
        /// Only messages stamped before this time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_ts: Option<UnixMillis>,
        /// Only messages stamped after this time, oldest first unless `latest`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_ts: Option<UnixMillis>,
        /// With a lower bound (`after`, `after_ts`): the newest messages within the bounds
        /// rather than the oldest.
        #[serde(default, skip_serializing_if = "is_false")]
        latest: bool,
        /// At most this many messages (the server caps it).
        #[serde(default = "default_history_limit")]
        limit: u32,
    },
    /// Removes someone (every device of theirs) from a room. They may join again unless banned.
    /// Operators and owners only, and only people of a lower role.
    Kick {
        /// Room name.
        room: String,
        /// Who.
        name: String,
        /// Shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Bans from a room (or, with `mute`, silences in it) whoever `target` matches; see
    /// docs/protocol.md for targets. Members it matches are removed (a mute leaves them in).
    Ban {
        /// Room name.
        room: String,
        /// `account:NAME`, `name:PATTERN` (`*` and `?`), `addr:IP[/BITS]`, or a bare name: the
        /// account of that name, else the address of the guest using it, else that exact name.
        target: String,
        /// Lifts itself after this many seconds; without it the ban stays until `unban`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<u64>,
        /// Shown to the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// A mute: they stay, read, and cannot speak.
        #[serde(default, skip_serializing_if = "is_false")]
        mute: bool,
    },
    /// Lifts a ban (or a mute) from a room, by its target as `bans` lists it.
    Unban {
        /// Room name.
        room: String,
        /// The target, as listed (a bare name is resolved as for `ban`).
        target: String,
        /// Lift a mute rather than a ban.
        #[serde(default, skip_serializing_if = "is_false")]
        mute: bool,
    },
    /// Lists a room's bans and mutes (anyone may ask; addresses are not shown).
    Bans {
        /// Room name.
        room: String,
        /// Continue a long list: skip this many entries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u32>,
    },
    /// Gives a registered account a role in a room (`member` takes any role away).
    Role {
        /// Room name.
        room: String,
        /// The account's name.
        name: String,
        /// The role.
        role: Role,
        /// Only raise: someone whose role is this one or above keeps theirs (IRC's `+v` on an
        /// operator adds nothing they lack).
        #[serde(default, skip_serializing_if = "is_false")]
        at_least: bool,
    },
    /// Asks for a room's modes, or changes those given (operators and owners).
    Mode {
        /// Room name.
        room: String,
        /// Only voiced members and above may speak.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderated: Option<bool>,
        /// Only invited people (and operators) may join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite_only: Option<bool>,
        /// Only operators and owners may set the topic.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic_lock: Option<bool>,
        /// Only people logged in to an account may join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registered_only: Option<bool>,
        /// Secret: only members see the room (its place in the room list, history, members,
        /// topic); to anyone else it does not exist.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<bool>,
        /// A key (password) to join with; an empty string removes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Secret>,
        /// At most this many people in the room; 0 lifts the limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Open: anyone who may read the room may send to it without joining (IRC's `-n`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        open: Option<bool>,
    },
    /// Invites someone to a room: they may join it past invite-only, the key and
    /// registered-only (not past a ban) until the invite expires. Operators and owners.
    Invite {
        /// Room name.
        room: String,
        /// Who: an account, or a guest by its current name.
        name: String,
        /// Expires after this many seconds (the server's default when absent; 0: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<u64>,
    },
    /// Server operators: disconnects every connection of a name.
    Kill {
        /// Who.
        name: String,
        /// Shown to them and in their quit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Server operators: bans a target (as for `ban`, without name patterns' room scope) from
    /// the whole server. Matching connections are closed.
    ServerBan {
        /// `account:NAME`, `name:PATTERN`, `addr:IP[/BITS]`, or a bare name.
        target: String,
        /// Lifts itself after this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<u64>,
        /// Shown to the banned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Server operators: lifts a server-wide ban.
    ServerUnban {
        /// The target, as listed.
        target: String,
    },
    /// Server operators: lists the server-wide bans, addresses included.
    ServerBans {
        /// Continue a long list: skip this many entries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u32>,
    },
    /// Server operators: closes a room. Everyone in it is removed and nobody may join it
    /// (server operators aside) until it is opened again.
    CloseRoom {
        /// Room name.
        room: String,
        /// Shown to the members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Server operators: opens a closed room again.
    OpenRoom {
        /// Room name.
        room: String,
    },
    /// Server operators: lists the connections, with their accounts and addresses.
    Connections {
        /// Continue a long list: only connections with a larger id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// Liveness check; the server answers with `pong` carrying the same token.
    Ping {
        /// Echoed back unchanged.
        token: String,
    },
    /// The answer to a server `ping`.
    Pong {
        /// The token of the ping being answered.
        token: String,
    },
    /// Searches a room's messages (all the store keeps, not only what is in memory) for
    /// messages that have every word of `query` (a word matches as a prefix, in any case).
    /// Newest first; page back with `before` = the smallest id of a page.
    Search {
        /// The room (the sender must be in it).
        room: String,
        /// The words.
        query: String,
        /// Only messages older than this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<MsgId>,
        /// Most results wanted (the server caps it).
        #[serde(default = "default_search_limit")]
        limit: u32,
    },
    /// Marks a conversation read up to a message: `target` is a room, or the other person of
    /// a direct conversation. Kept for accounts only, and only forward; every device of the
    /// account hears the new marker (`read_marker`), so reading on one clears the others.
    MarkRead {
        /// The room, or the other person's name.
        target: String,
        /// The newest message read.
        id: MsgId,
    },
    /// Marks the client away, with a reason shown in member lists and to whoever writes to
    /// it directly; without a reason (or an empty one), marks it back.
    Away {
        /// Why: "lunch", "back at 3".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Leaves the server; the reason is shown to everyone who shares a room with the client.
    Quit {
        /// The quit message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

fn default_history_limit() -> u32 {
    50
}

fn default_search_limit() -> u32 {
    20
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A message sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Registration succeeded.
    Welcome {
        /// The protocol version the server speaks.
        version: u32,
        /// The client's name as the server normalised it.
        name: String,
        /// The server's name.
        server: String,
        /// Message of the day, if the server has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        motd: Option<String>,
        /// Limits the client should respect.
        limits: Limits,
        /// The account the session is logged in to, when `hello` carried a password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    },
    /// The connection is logged in to this account (after `register`, `login`, or a `hello`
    /// with a password). The name is the account's.
    LoggedIn {
        /// The account's name.
        account: String,
    },
    /// The connection is a server operator (after `oper`), with the rights of this account.
    Operator {
        /// The operator's account.
        account: String,
    },
    /// The connection is logged out of this account; the server closes it next.
    LoggedOut {
        /// The account's name.
        account: String,
    },
    /// The account's password was changed.
    PasswordChanged {
        /// The account's name.
        account: String,
    },
    /// The account was deleted; the connection stays, as a guest.
    AccountDeleted {
        /// The account's name.
        account: String,
    },
    /// Someone (possibly the receiver) joined a room.
    Join {
        /// Room name.
        room: String,
        /// Who joined.
        name: String,
        /// When.
        ts: UnixMillis,
    },
    /// Someone left a room.
    Part {
        /// Room name.
        room: String,
        /// Who left.
        name: String,
        /// Their parting words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        ts: UnixMillis,
    },
    /// Someone left the server; sent once to everyone who shared a room with them.
    Quit {
        /// Who quit.
        name: String,
        /// Why: their quit message, or what the server saw (`ping timeout`, `connection lost`, ...).
        reason: String,
        /// When.
        ts: UnixMillis,
    },
    /// Someone changed name; sent to everyone who shares a room with them, and to them.
    Nick {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
        /// When.
        ts: UnixMillis,
    },
    /// A message in a room.
    Message(ChatMessage),
    /// A direct message, delivered to the recipient and echoed to the sender.
    Direct {
        /// Server message id.
        id: MsgId,
        /// Server timestamp.
        ts: UnixMillis,
        /// Sender.
        from: String,
        /// Recipient.
        to: String,
        /// Text; empty for a message of tags alone.
        text: String,
        /// True for an action.
        #[serde(default, skip_serializing_if = "is_false")]
        action: bool,
        /// True for a notice.
        #[serde(default, skip_serializing_if = "is_false")]
        notice: bool,
        /// The sender marked itself a bot.
        #[serde(default, skip_serializing_if = "is_false")]
        bot: bool,
        /// The sender's tags for the recipient's client.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: ClientTags,
    },
    /// A room's topic: the reply to a topic query, sent on join, and broadcast when it changes.
    Topic {
        /// Room name.
        room: String,
        /// The topic; empty when none is set.
        topic: String,
        /// Who set it, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When it was set, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<UnixMillis>,
    },
    /// The members of a room, sent on join and in answer to `who`.
    Members {
        /// Room name.
        room: String,
        /// Member names, sorted case-insensitively.
        names: Vec<String>,
        /// The roles of members who have one (owner, op, voice); the rest are plain members.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        roles: BTreeMap<String, Role>,
        /// More members follow that did not fit: ask with `who` and `after` = the last name.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
        /// Set when this continues a list (the `after` that was asked for).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// The members of this page who are away, with their reasons.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        away: BTreeMap<String, String>,
        /// The room is secret (its members see it; nobody else does).
        #[serde(default, skip_serializing_if = "is_false")]
        secret: bool,
    },
    /// The answer to `stats`.
    Stats {
        /// Connections with a name.
        users: u64,
        /// The most there have been at once since the server started.
        max_users: u64,
        /// Connections that have not sent `hello` (or IRC registration) yet.
        unregistered: u64,
        /// Server operators connected.
        operators: u64,
        /// Rooms in memory.
        rooms: u64,
        /// The server's time (milliseconds since the epoch).
        time: UnixMillis,
    },
    /// The answer to `whowas`: who had the name and left, newest first (empty: nobody the
    /// server remembers).
    Whowas {
        /// The name, as asked.
        name: String,
        /// Each time it was let go.
        entries: Vec<Departed>,
    },
    /// The answer to `people`: each person found, sorted by name.
    People {
        /// The room or mask, as asked.
        target: String,
        /// Who.
        people: Vec<Person>,
        /// More people matched than fit in one line.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    /// The answer to `whois`.
    Whois {
        /// Their name, as they wrote it.
        name: String,
        /// Their user name (their name unless they set one with `profile`).
        user: String,
        /// Their real name (their name unless they set one with `profile`).
        realname: String,
        /// The account they are logged in to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<String>,
        /// Their rooms that the asker may see (every room the asker may read: not a secret
        /// room the asker is not in), sorted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<String>,
        /// Their role in those rooms, where they have one.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        roles: BTreeMap<String, Role>,
        /// Why they are away, if they are.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away: Option<String>,
        /// They are a server operator.
        #[serde(default, skip_serializing_if = "is_false")]
        operator: bool,
        /// They are a bot (see `profile`).
        #[serde(default, skip_serializing_if = "is_false")]
        bot: bool,
        /// Seconds since they last sent a message.
        idle: u64,
        /// When they connected (milliseconds since the epoch, server time).
        since: UnixMillis,
    },
    /// Someone sharing a room (or this connection itself) set a new real name (`profile`).
    Realname {
        /// Who.
        name: String,
        /// The new real name.
        realname: String,
    },
    /// Watched names that are online (as they are written now) and offline: the answer to
    /// `watch`, and news when one comes or goes.
    Watching {
        /// Online, as written by whoever holds them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        online: Vec<String>,
        /// Offline.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        offline: Vec<String>,
    },
    /// The person written to is not connected: the direct message waits for them and is
    /// delivered when their account next connects (it was acknowledged as stored).
    Offline {
        /// Who.
        name: String,
    },
    /// The answer to `search`: matching messages, newest first.
    SearchResults {
        /// The room searched.
        room: String,
        /// The words, as asked.
        query: String,
        /// The messages found, newest first.
        messages: Vec<ChatMessage>,
        /// Older matches follow: ask again with `before` = the last id.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    /// Where an account has read a conversation up to: after `mark_read` from any of its
    /// devices (to all of them), and after the history of a room it joins.
    ReadMarker {
        /// The room, or the other person's name.
        target: String,
        /// The newest message read.
        id: MsgId,
    },
    /// Someone went away or came back: sent to everyone who shares a room with them (and their
    /// own connections), and to whoever writes directly to someone away.
    Away {
        /// Who.
        name: String,
        /// Why; `None` when they are back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The list of rooms, in answer to `rooms`.
    RoomList {
        /// One entry per room, sorted case-insensitively.
        rooms: Vec<RoomInfo>,
        /// More rooms follow that did not fit: ask with `rooms` and `after` = the last name.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
        /// Set when this continues a list (the `after` that was asked for).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A batch of stored room messages, oldest first: on join, on catch-up, or when paging back.
    History {
        /// Room name.
        room: String,
        /// The messages, in id order.
        messages: Vec<ChatMessage>,
        /// True when older messages exist before the first one sent.
        more: bool,
        /// On catch-up (`join` with `since`): some of the messages missed are no longer kept,
        /// so what follows `since` is not all there was.
        #[serde(default, skip_serializing_if = "is_false")]
        gap: bool,
        /// True when newer messages follow the last one sent that did not fit in this reply (on
        /// catch-up, and for `history` with `after`): ask for them with `history` and `after`
        /// set to the last id received.
        #[serde(default, skip_serializing_if = "is_false")]
        newer: bool,
    },
    /// Someone was removed from a room by an operator; sent to the room, them included.
    Kick {
        /// Room name.
        room: String,
        /// Who was removed.
        name: String,
        /// Who removed them.
        by: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        ts: UnixMillis,
    },
    /// A ban or mute was set: in a room (sent to its members), or server-wide (`room` absent,
    /// sent to the operator who set it).
    Ban {
        /// Room name; absent for a server-wide ban.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The ban.
        ban: BanInfo,
    },
    /// A ban or mute was lifted (by someone, or by its expiry when `by` is absent).
    Unban {
        /// Room name; absent for a server-wide ban.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The target, as it was listed.
        target: String,
        /// It was a mute.
        #[serde(default, skip_serializing_if = "is_false")]
        mute: bool,
        /// Who lifted it.
        by: String,
        /// When.
        ts: UnixMillis,
    },
    /// The bans and mutes of a room (or of the server, `room` absent), in answer to `bans`.
    BanList {
        /// Room name; absent for the server's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Oldest first.
        bans: Vec<BanInfo>,
        /// More follow that did not fit: ask again with `after` = the entries received so far.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
        /// Set when this continues a list (the `after` that was asked for).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u32>,
    },
    /// Someone's role in a room changed; sent to the room.
    Role {
        /// Room name.
        room: String,
        /// The account's name.
        name: String,
        /// The new role.
        role: Role,
        /// The role before, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Role>,
        /// Who gave it (absent when the server did, as for a room's creator).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When.
        ts: UnixMillis,
    },
    /// A room's modes: the answer to a `mode` query, and sent to the room when they change.
    Mode {
        /// Room name.
        room: String,
        /// The modes now.
        modes: RoomModes,
        /// The modes before, when this announces a change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<RoomModes>,
        /// When the room was made (or last loaded from the store), in the answer to a query.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created: Option<UnixMillis>,
        /// Who changed them, when this announces a change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When, likewise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<UnixMillis>,
    },
    /// An invitation to a room; sent to the invited (every device) and to who invited.
    Invite {
        /// Room name.
        room: String,
        /// Who is invited.
        name: String,
        /// Who invited.
        by: String,
        /// When the invitation lapses; absent: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<UnixMillis>,
    },
    /// A server operator closed the room; sent to its members, who are no longer in it.
    RoomClosed {
        /// Room name.
        room: String,
        /// The operator.
        by: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        ts: UnixMillis,
    },
    /// The connections, in answer to `connections` (server operators).
    Connections {
        /// One entry per registered connection, by id.
        conns: Vec<ConnInfo>,
        /// More follow: ask with `after` = the last id.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    /// Liveness check; answer with `pong` and the same token.
    Ping {
        /// Echo it back.
        token: String,
    },
    /// The answer to a client `ping`.
    Pong {
        /// The token of the ping.
        token: String,
    },
    /// The server stored the client's message `cid` under `id`: it will not deliver it twice.
    /// Sent to the sender only, right after the message itself, and again (with the original
    /// id) when the client repeats a `cid` the server still remembers.
    Ack {
        /// The client's id, as sent.
        cid: String,
        /// The server's id for the message.
        id: MsgId,
    },
    /// A request failed, or the client sent something the server could not accept.
    Error {
        /// Stable, machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
        /// The `cid` of the message refused, when the refusal is about one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cid: Option<String>,
    },
    /// The server is closing this connection, for the reason given.
    Bye {
        /// Why.
        reason: String,
    },
}

/// A password or other secret. Its `Debug` form never shows it, so it stays out of logs and
/// panic messages; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A stored room message (say or action), as delivered live and in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Server message id.
    pub id: MsgId,
    /// Server timestamp.
    pub ts: UnixMillis,
    /// Room name.
    pub room: String,
    /// Sender, stamped by the server.
    pub from: String,
    /// Text.
    pub text: String,
    /// True for an action (`/me`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub action: bool,
    /// True for a notice (meant to be read, never answered).
    #[serde(default, skip_serializing_if = "is_false")]
    pub notice: bool,
    /// The sender marked itself a bot (see `profile`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// The sender's tags for other clients; with an empty `text`, a message of tags alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: ClientTags,
}

impl ChatMessage {
    /// The id of the message this one answers (its `draft/reply` tag), if any.
    pub fn reply_to(&self) -> Option<MsgId> {
        reply_to(&self.tags)
    }

    /// The reaction this message is (`draft/react` on a message without text), if it is one.
    pub fn reaction(&self) -> Option<&str> {
        reaction(&self.text, &self.tags)
    }

    /// Whether the message is kept in history: everything but a message of tags alone that is
    /// not a reaction (a typing notice is relayed, not kept).
    pub fn kept(&self) -> bool {
        kept(&self.text, &self.tags)
    }
}

/// Tags a client puts on a message for other clients: IRCv3's client-only tags, named without
/// their `+`. The server relays them as they came and reads only two: `draft/reply` (the id
/// of the message answered) and `draft/react` (a reaction, on a message without text, with
/// `draft/reply` naming the message reacted to). An empty value is a tag without one.
pub type ClientTags = BTreeMap<String, String>;

/// The most bytes of tags on one message, counted as `+name=value;` for each: what IRC leaves
/// for a client's tags.
pub const MAX_TAG_BYTES: usize = 4094;

/// The id in a `draft/reply` tag.
pub fn reply_to(tags: &ClientTags) -> Option<MsgId> {
    tags.get("draft/reply").and_then(|v| v.parse().ok())
}

/// The reaction a message of `text` and `tags` is.
pub fn reaction<'a>(text: &str, tags: &'a ClientTags) -> Option<&'a str> {
    if !text.is_empty() {
        return None;
    }
    tags.get("draft/react")
        .or_else(|| tags.get("react"))
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// Whether a message of `text` and `tags` is kept in history.
pub fn kept(text: &str, tags: &ClientTags) -> bool {
    !text.is_empty() || reaction(text, tags).is_some()
}

/// What is wrong with a message's tags, if anything: a name is `[vendor/]name` of ASCII
/// letters, digits, `-` and `.` (vendor), a value holds no NUL, and all of them fit
/// [`MAX_TAG_BYTES`].
pub fn tags_problem(tags: &ClientTags) -> Option<String> {
    let mut bytes = 0;
    for (name, value) in tags {
        let (vendor, key) = name.rsplit_once('/').unwrap_or(("", name));
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let vendor_ok = vendor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !key_ok || !vendor_ok || name.starts_with('/') {
            return Some(format!("{name:?} is not a tag name"));
        }
        if value.contains('\0') {
            return Some(format!("the tag {name} holds a NUL"));
        }
        bytes += name.len() + value.len() + 3;
    }
    (bytes > MAX_TAG_BYTES)
        .then(|| format!("the tags take {bytes} bytes; the limit is {MAX_TAG_BYTES}"))
}

/// A member's role in a room, lowest first. Roles belong to accounts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// No role: speaks unless the room is moderated or they are muted.
    #[default]
    Member,
    /// Speaks in a moderated room and past a mute.
    Voice,
    /// Kicks, bans, mutes, invites, sets modes and the topic, gives roles up to its own.
    Op,
    /// All an operator does, on operators too; the first account to create a room owns it.
    Owner,
}

/// Rooms with the prefix of a role in each (`~#den #lobby`), as `whois` answers are shown.
pub fn rooms_with_roles(rooms: &[String], roles: &BTreeMap<String, Role>) -> String {
    let shown: Vec<String> = rooms
        .iter()
        .map(|r| format!("{}{r}", roles.get(r).copied().unwrap_or_default().prefix()))
        .collect();
    shown.join(" ")
}

impl Role {
    /// The prefix text clients show before a member's name: `~` owner, `@` op, `+` voice.
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Owner => "~",
            Role::Op => "@",
            Role::Voice => "+",
            Role::Member => "",
        }
    }

    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Op => "op",
            Role::Voice => "voice",
            Role::Member => "member",
        }
    }
}

/// A ban or mute as members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// What it matches: `account:NAME`, `name:PATTERN`, `addr:IP[/BITS]`, or `guest:NAME` (the
    /// address of a guest, which is not shown).
    pub target: String,
    /// A mute (reads, cannot speak) rather than a ban.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mute: bool,
    /// Who set it.
    pub by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was set.
    pub ts: UnixMillis,
    /// When it lifts itself; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<UnixMillis>,
}

/// One entry of a `whowas` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departed {
    /// Their name, as they wrote it.
    pub name: String,
    /// Their user name.
    pub user: String,
    /// Their real name.
    pub realname: String,
    /// When they left (milliseconds since the epoch, server time).
    pub ts: UnixMillis,
}

/// One person in a `people` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Their name.
    pub name: String,
    /// Their user name (their name unless they set one with `profile`).
    pub user: String,
    /// Their real name (their name unless they set one with `profile`).
    pub realname: String,
    /// The account they are logged in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// They are away.
    #[serde(default, skip_serializing_if = "is_false")]
    pub away: bool,
    /// They are a server operator.
    #[serde(default, skip_serializing_if = "is_false")]
    pub operator: bool,
    /// They are a bot.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// Seconds since they last sent a message.
    #[serde(default)]
    pub idle: u64,
    /// A room they are in, that the asker may see (the room asked about, for a room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Their role there.
    #[serde(default, skip_serializing_if = "is_member")]
    pub role: Role,
}

fn is_member(role: &Role) -> bool {
    *role == Role::Member
}

/// A room's modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomModes {
    /// Only voiced members and above speak.
    #[serde(default, skip_serializing_if = "is_false")]
    pub moderated: bool,
    /// Only the invited join.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invite_only: bool,
    /// Only operators and owners set the topic.
    #[serde(default, skip_serializing_if = "is_false")]
    pub topic_lock: bool,
    /// Only accounts join.
    #[serde(default, skip_serializing_if = "is_false")]
    pub registered_only: bool,
    /// Only members see it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    /// Joining needs a key (which is not shown).
    #[serde(default, skip_serializing_if = "is_false")]
    pub key: bool,
    /// A server operator closed it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub closed: bool,
    /// At most this many people may be in it (those invited, and its operators, join past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Anyone who may read it may send to it without joining (IRC's `-n`); by default only
    /// its members speak in it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub open: bool,
}

/// One connection in a `connections` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// The server's id for it.
    pub conn: u64,
    /// Its name.
    pub name: String,
    /// The account it is logged in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Its address (an IPv6 address cut to its /64).
    pub addr: String,
    /// How many rooms it is in.
    pub rooms: u32,
}

/// One room in a `room_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// How many members it has now.
    pub members: u32,
    /// Its topic; empty when none.
    pub topic: String,
}

/// Limits announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest accepted line, in bytes, including the newline.
    pub max_line: u32,
    /// Longest accepted message text, in bytes.
    pub max_text: u32,
    /// Most lines in one message text.
    pub max_text_lines: u32,
    /// Longest name, in characters.
    pub max_name: u32,
    /// Messages a client may send at once before flood control delays it (every message
    /// but `pong` counts, `hello` included).
    #[serde(default)]
    pub flood_burst: u32,
    /// Messages per second a client may send after its burst; 0 when there is no limit.
    #[serde(default)]
    pub flood_rate: u32,
}

/// Stable error codes carried by [`ServerMsg::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line exceeded the maximum length; it was discarded.
    LineTooLong,
    /// The line was not valid UTF-8; it was discarded.
    InvalidUtf8,
    /// The line was not a JSON object of a known shape.
    Malformed,
    /// The `type` field named no known message.
    UnknownType,
    /// `hello` named a protocol version this server does not speak.
    UnsupportedVersion,
    /// A message other than `hello`, `ping` or `quit` arrived before registration.
    NotRegistered,
    /// `hello` arrived twice.
    AlreadyRegistered,
    /// The name is not acceptable (empty, too long, whitespace or control characters).
    InvalidName,
    /// Someone else uses that name.
    NameTaken,
    /// The room name is not acceptable.
    InvalidRoom,
    /// No room of that name.
    NoSuchRoom,
    /// The room holds as many people as its limit allows.
    RoomFull,
    /// The person invited is in the room already.
    AlreadyInRoom,
    /// The person named (to kick, or to give a guest a role) is not in the room.
    NotThere,
    /// The client is not a member of that room.
    NotInRoom,
    /// No user of that name is connected.
    NoSuchUser,
    /// The text is empty.
    EmptyText,
    /// The text exceeds the byte limit.
    TextTooLong,
    /// The text has too many lines.
    TooManyLines,
    /// The client is already in the maximum number of rooms.
    TooManyRooms,
    /// The topic exceeds the length limit.
    TopicTooLong,
    /// The server holds its maximum number of connections.
    ServerFull,
    /// The client's address holds its maximum number of connections.
    TooManyConnections,
    /// The client's address opened connections faster than the server allows.
    ConnectionThrottled,
    /// The client sends faster than the flood limit allows; its messages are being delayed.
    Flooding,
    /// The server holds as many rooms as it allows; no new room can be made now.
    RoomLimit,
    /// The client made new rooms faster than the server allows; try again in a minute.
    RoomCreationThrottled,
    /// The server cannot store messages now (its storage is failing, or too many messages wait
    /// for it). With a `cid`, that message was refused and never will be delivered; without one,
    /// it is news: messages already accepted wait and are delivered when storage recovers.
    StoreUnavailable,
    /// The recipient is getting direct messages from too many new people; try again later.
    DirectThrottled,
    /// Wrong password, or no such account (the server does not say which).
    BadCredentials,
    /// Too many failed logins for this account or from this address; try again later.
    LoginThrottled,
    /// The name belongs to a registered account: log in to use it, or pick another.
    NameReserved,
    /// An account of that name (or one that looks like it) exists already.
    AccountExists,
    /// This address created accounts faster than the server allows.
    RegistrationThrottled,
    /// The server lets only registered accounts in: say `hello` with a password.
    AccountRequired,
    /// The connection is not logged in to an account.
    NotLoggedIn,
    /// The connection is logged in already.
    AlreadyLoggedIn,
    /// The password is too short or too long.
    WeakPassword,
    /// Your role in the room (or on the server) does not allow that.
    NotPermitted,
    /// You are banned from the room (or the server).
    Banned,
    /// You cannot speak in the room: it is moderated, or you are muted.
    CannotSpeak,
    /// The room is invite-only and you have no invitation.
    InviteOnly,
    /// The room has a key and you gave none, or the wrong one.
    BadKey,
    /// Only people logged in to an account may join the room.
    RegisteredOnly,
    /// A server operator closed the room.
    RoomClosed,
    /// No such ban.
    NoSuchBan,
    /// The room's list (bans, invites, roles) is full.
    ListFull,
    /// The account owns as many rooms as the server allows.
    OwnedRoomLimit,
    /// Too many searches or history pages are on their way (this connection's, or the
    /// server's): try again in a moment.
    Busy,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::AlreadyInRoom => "already_in_room",
            ErrorCode::NotThere => "not_there",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::EmptyText => "empty_text",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::TooManyLines => "too_many_lines",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::TopicTooLong => "topic_too_long",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ConnectionThrottled => "connection_throttled",
            ErrorCode::Flooding => "flooding",
            ErrorCode::RoomLimit => "room_limit",
            ErrorCode::RoomCreationThrottled => "room_creation_throttled",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::DirectThrottled => "direct_throttled",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::LoginThrottled => "login_throttled",
            ErrorCode::NameReserved => "name_reserved",
            ErrorCode::AccountExists => "account_exists",
            ErrorCode::RegistrationThrottled => "registration_throttled",
            ErrorCode::AccountRequired => "account_required",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::NotPermitted => "not_permitted",
            ErrorCode::Banned => "banned",
            ErrorCode::CannotSpeak => "cannot_speak",
            ErrorCode::InviteOnly => "invite_only",
            ErrorCode::BadKey => "bad_key",
            ErrorCode::RegisteredOnly => "registered_only",
            ErrorCode::RoomClosed => "room_closed",
            ErrorCode::NoSuchBan => "no_such_ban",
            ErrorCode::ListFull => "list_full",
            ErrorCode::OwnedRoomLimit => "owned_room_limit",
            ErrorCode::Busy => "busy",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
