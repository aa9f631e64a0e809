//! The hub's tunables and the limits it announces to clients.

use super::*;

/// Tunables of the hub. Every limit is here so that the server can expose it as a flag.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Name announced in `welcome`.
    pub server_name: String,
    /// Message of the day, sent in `welcome`.
    pub motd: Option<String>,
    /// The room every native client joins on `hello` (IRC clients choose their own); empty
    /// for none.
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
    /// Only registered accounts may come in (`hello` with a password); guests are refused.
    pub require_account: bool,
    /// Failed logins one account may take from one address (an IPv6 /64) within a minute
    /// before that address is locked out of that account: for a minute the first time, twice
    /// as long each time after, up to an hour. The owner logging in from elsewhere is not
    /// stopped. Wrong room keys are counted the same way, per room and address. 0 means no
    /// limit.
    pub login_failures_per_account: u32,
    /// Failed logins one account may take from every address together within an hour before
    /// each further attempt on it is slowed ([`HubConfig::login_ceiling_delay`]) rather than
    /// refused. 0 means no ceiling.
    pub login_failures_account_ceiling: u32,
    /// How long an attempt on an account over its ceiling waits before its password is
    /// checked, in milliseconds.
    pub login_ceiling_delay: u64,
    /// Failed logins one address (an IPv6 /64) may make within a minute before it is locked,
    /// likewise. 0 means no limit.
    pub login_failures_per_addr: u32,
    /// Accounts one address may register per hour; 0 means no limit.
    pub registrations_per_addr_per_hour: u32,
    /// Shortest password accepted, in characters.
    pub min_password: usize,
    /// Accounts (by name) that operate the server: they may kill connections, ban from the
    /// whole server, close rooms, list connections, and moderate every room.
    pub operators: Vec<String>,
    /// Rooms one guest connection may create; 0 means no limit. Accounts are limited by
    /// [`HubConfig::max_owned_rooms`] instead.
    pub max_rooms_per_guest: u32,
    /// Rooms one account may own (creating a room owns it); 0 means no limit.
    pub max_owned_rooms: usize,
    /// How long an invitation lasts when the inviter gives no duration, in milliseconds;
    /// 0 means invitations last until an operator of the room replaces them.
    pub invite_expiry: u64,
    /// Most bans, invitations and roles one room (and bans the server) keeps.
    pub max_list: usize,
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
            require_account: false,
            login_failures_per_account: 3,
            login_failures_account_ceiling: 100,
            login_ceiling_delay: 2_000,
            login_failures_per_addr: 10,
            registrations_per_addr_per_hour: 3,
            min_password: 8,
            operators: Vec::new(),
            max_rooms_per_guest: 10,
            max_owned_rooms: 20,
            invite_expiry: 86_400_000,
            max_list: 500,
        }
    }
}

impl Hub {
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
}
