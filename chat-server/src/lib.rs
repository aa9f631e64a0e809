//! The chat server: tokio sockets, timers and storage around chat-core's [`Hub`].
//!
//! Tasks and who owns what:
//! - the **accept loop** enforces the connection limits and spawns one task per connection;
//! - each **connection task** runs a reader (bytes to frames, sent to the hub) and a writer
//!   that only works when the client reads slowly or the connection closes ([`outbox`]);
//! - the **hub task** owns the [`Hub`] state machine: it feeds it events with the current time,
//!   wakes it at its deadlines, and performs its outputs. A room message arrives as one `Bytes`
//!   and is queued, reference-counted, on every member's queue; a full queue disconnects that
//!   member only ("send queue exceeded");
//! - the **flusher tasks**, one per runtime worker, write each connection that has messages
//!   queued after a batch of hub events, in one pass and one `write` per connection;
//! - the **store thread** ([`store`]) commits records in batches and reports back, after which
//!   the hub delivers (acknowledges) them.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod outbox;
pub mod private;
pub mod socket;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use chat_core::codec::{self, FrameError, LineDecoder, Wire};
use chat_core::hub::{ConnId, Hub, HubConfig, Input, Output, PasswordWork, reason};
use chat_core::irc;
use chat_core::password::PasswordCost;
use chat_core::protocol::{ClientMsg, ErrorCode, ServerMsg, UnixMillis};
use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::outbox::{DirtySet, Outbox, Stopped, WRITE_CALLS};
use crate::socket::Socket;

/// Server configuration: every flag is also an environment variable and a key of the
/// configuration file ([`config`]).
#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(name = "chat-server", version, about = "A self-hostable chat server")]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Read settings from this TOML file (`--print-config` writes one); flags and environment
    /// variables override it.
    #[arg(long, env = "CHAT_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the configuration (the defaults, or what the flags, environment and file make)
    /// as an annotated TOML file, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// Check the configuration (file, flags, environment, certificates, addresses) without
    /// starting; exit 0 when it is fine, 2 when not.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Maintenance of a stopped or running server's data.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<admin::Command>,
    /// Address to listen on: TLS when a certificate is given, plaintext otherwise (which
    /// needs --allow-plaintext unless the address is loopback).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:53000")]
    pub listen: String,
    /// TLS certificate chain (PEM) for --listen; reloaded on SIGHUP.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate made on first start and kept in the data
    /// directory (for demos and tests; clients trust it on first use).
    #[arg(long, env = "CHAT_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// A second, plaintext listener beside a TLS one (loopback unless --allow-plaintext).
    #[arg(long, env = "CHAT_PLAIN_LISTEN")]
    pub plain_listen: Option<String>,
    /// Allow plaintext on an address other than loopback: passwords and messages then cross
    /// the network unencrypted.
    #[arg(long, env = "CHAT_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Directory holding the SQLite database (chat.sqlite3).
    #[arg(
        long,
        env = "CHAT_DATA_DIR",
        default_value = "./chat-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Keep nothing on disk: history lives in memory and is lost on exit.
    #[arg(long, env = "CHAT_IN_MEMORY")]
    pub in_memory: bool,
    /// Server name announced to clients.
    #[arg(long, env = "CHAT_SERVER_NAME", default_value = "chat")]
    pub server_name: String,
    /// The room native clients are put in when they connect, `none` for no such room. IRC
    /// clients are never put in it: they join what they choose, as on any IRC server.
    #[arg(long, env = "CHAT_DEFAULT_ROOM", default_value = "#lobby")]
    pub default_room: String,
    /// Message of the day, sent to every client on connect.
    #[arg(long, env = "CHAT_MOTD")]
    pub motd: Option<String>,
    /// Messages kept per room for history and catch-up.
    #[arg(long, env = "CHAT_HISTORY", default_value_t = 1000)]
    pub history: usize,
    /// Most simultaneous connections.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address.
    #[arg(long, env = "CHAT_MAX_PER_IP", default_value_t = 50)]
    pub max_per_ip: usize,
    /// New connections one IP address may open at once (a classroom behind one NAT).
    #[arg(long, env = "CHAT_CONNECT_BURST", default_value_t = 20)]
    pub connect_burst: u32,
    /// New connections per second one IP address may open after its burst; 0 means no limit.
    #[arg(long, env = "CHAT_CONNECT_RATE", default_value_t = 2.0)]
    pub connect_rate: f64,
    /// Longest accepted line, in bytes.
    #[arg(long, env = "CHAT_MAX_LINE", default_value_t = codec::DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Messages queued for one client before it is disconnected as too slow.
    #[arg(long, env = "CHAT_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,
    /// Bytes queued for a slow reader before it is disconnected as too slow.
    #[arg(long, env = "CHAT_SEND_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub send_queue_bytes: usize,
    /// Messages a client may send in a burst before throttling.
    #[arg(long, env = "CHAT_FLOOD_BURST", default_value_t = 10)]
    pub flood_burst: u32,
    /// Sustained messages per second per client; 0 turns flood control off.
    #[arg(long, env = "CHAT_FLOOD_RATE", default_value_t = 5)]
    pub flood_rate: u32,
    /// Seconds of silence before a client is pinged.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 60.0)]
    pub ping_interval: f64,
    /// Seconds a pinged client has to answer.
    #[arg(long, env = "CHAT_PING_TIMEOUT", default_value_t = 30.0)]
    pub ping_timeout: f64,
    /// Seconds a new connection has to say hello.
    #[arg(long, env = "CHAT_REGISTER_TIMEOUT", default_value_t = 30.0)]
    pub register_timeout: f64,
    /// Most rooms held in memory; at the cap the room empty the longest makes way, and when
    /// every room has members new rooms are refused (`room_limit`).
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,
    /// New rooms one connection may create at once.
    #[arg(long, env = "CHAT_ROOM_CREATE_BURST", default_value_t = 5)]
    pub room_create_burst: u32,
    /// New rooms one connection may create per minute after its burst; 0 means no limit.
    #[arg(long, env = "CHAT_ROOM_CREATE_RATE", default_value_t = 5)]
    pub room_create_rate: u32,
    /// New people who may send one user direct messages per minute; 0 means no limit.
    #[arg(long, env = "CHAT_DIRECT_NEW_SENDERS", default_value_t = 10)]
    pub direct_new_senders: u32,
    /// Seconds an empty room stays in memory (its history stays on disk).
    #[arg(long, env = "CHAT_ROOM_EXPIRY", default_value_t = 3600.0)]
    pub room_expiry: f64,
    /// Delete stored messages older than this many days; 0 keeps them forever.
    #[arg(long, env = "CHAT_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u64,
    /// Keep only the newest this many stored messages per room; 0 keeps them all.
    #[arg(long, env = "CHAT_RETENTION_MESSAGES", default_value_t = 0)]
    pub retention_messages: u64,
    /// Seconds of failing commits after which new messages are refused (`store_unavailable`)
    /// until the store recovers; accepted ones are held and retried, never dropped.
    #[arg(long, env = "CHAT_STORE_DOWN_AFTER", default_value_t = 5.0)]
    pub store_down_after: f64,
    /// Admit registered accounts only: guests are refused at hello.
    #[arg(long, env = "CHAT_REQUIRE_ACCOUNT")]
    pub require_account: bool,
    /// Failed logins per minute on one account from one address (an IPv6 /64) that lock that
    /// address out of that account (for a minute, doubling up to an hour); the owner logging
    /// in from elsewhere is not stopped. Wrong room keys count the same way per room. 0 means
    /// no limit.
    #[arg(long, env = "CHAT_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 3)]
    pub login_failures_per_account: u32,
    /// Failed logins per hour on one account from all addresses together past which every
    /// further attempt on it waits 2 s before its password is checked (slowed, not locked);
    /// 0 means no ceiling.
    #[arg(
        long,
        env = "CHAT_LOGIN_FAILURES_ACCOUNT_CEILING",
        default_value_t = 100
    )]
    pub login_failures_account_ceiling: u32,
    /// Failed logins per minute that lock an address (an IPv6 /64), likewise.
    #[arg(long, env = "CHAT_LOGIN_FAILURES_PER_ADDR", default_value_t = 10)]
    pub login_failures_per_addr: u32,
    /// Accounts one address may register per hour; 0 means no limit.
    #[arg(long, env = "CHAT_REGISTRATIONS_PER_HOUR", default_value_t = 3)]
    pub registrations_per_hour: u32,
    /// Shortest password accepted, in characters.
    #[arg(long, env = "CHAT_MIN_PASSWORD", default_value_t = 8)]
    pub min_password: usize,
    /// Memory per password hash (argon2id), in KiB.
    #[arg(long, env = "CHAT_PASSWORD_MEMORY_KIB", default_value_t = PasswordCost::default().memory_kib)]
    pub password_memory_kib: u32,
    /// Passes per password hash (argon2id).
    #[arg(long, env = "CHAT_PASSWORD_ITERATIONS", default_value_t = PasswordCost::default().iterations)]
    pub password_iterations: u32,
    /// An account that operates the server (repeat the flag, or separate names with commas):
    /// logged in to it, a client may kill connections, ban from the whole server, close rooms,
    /// list connections, and moderate every room.
    #[arg(long = "operator", env = "CHAT_OPERATORS", value_delimiter = ',')]
    pub operators: Vec<String>,
    /// Rooms one guest connection may create; 0 means no limit.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_GUEST", default_value_t = 10)]
    pub max_rooms_per_guest: u32,
    /// Rooms one account may own (creating a room owns it); 0 means no limit.
    #[arg(long, env = "CHAT_MAX_OWNED_ROOMS", default_value_t = 20)]
    pub max_owned_rooms: usize,
    /// Seconds an invitation lasts when the inviter gives no duration; 0: until replaced.
    #[arg(long, env = "CHAT_INVITE_EXPIRY", default_value_t = 86_400.0)]
    pub invite_expiry: f64,
    /// Also speak IRC on this address (for example 127.0.0.1:6667): irssi, weechat, HexChat or
    /// The Lounge join the same rooms. Plaintext, so loopback only unless --allow-plaintext.
    #[arg(long, env = "CHAT_IRC_LISTEN")]
    pub irc_listen: Option<String>,
    /// Also speak IRC over TLS on this address (for example 0.0.0.0:6697), with the
    /// certificate of --tls-cert or --tls-self-signed.
    #[arg(long, env = "CHAT_IRC_TLS_LISTEN")]
    pub irc_tls_listen: Option<String>,
    /// Also speak IRC over WebSocket on this address (the IRCv3 WebSocket transport, for
    /// browser clients such as gamja or Kiwi IRC): `ws://`, so loopback only unless
    /// --allow-plaintext; put a TLS proxy in front for `wss://`.
    #[arg(long, env = "CHAT_IRC_WS_LISTEN")]
    pub irc_ws_listen: Option<String>,
    /// Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) over HTTP on
    /// this address (a port alone means 127.0.0.1), or `off`. Anyone who reaches it sees the
    /// counts, so keep it on loopback or a private network. When the default address is taken
    /// (a second server on the machine) the server starts without metrics and says so.
    #[arg(long, env = "CHAT_METRICS_LISTEN", default_value = metrics::DEFAULT_LISTEN)]
    pub metrics_listen: String,
    /// What is logged, as tracing filter directives (`info`, `debug`,
    /// `info,chat_server::audit=warn`); RUST_LOG, when set, wins. Message text and passwords
    /// are never logged at info.
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    pub log: String,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log collectors.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log filter `directives` describe (`--log`), or why they do not parse.
pub fn log_filter(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(directives)
        .map_err(|err| err.to_string())
}

impl Config {
    /// True when --listen serves TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() || self.tls_self_signed
    }

    /// The certificates for --listen, if it serves TLS (making the self-signed one if asked).
    pub fn certificates(&self) -> anyhow::Result<Option<Arc<tls::Certificates>>> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ if self.tls_self_signed => {
                let host = self
                    .listen
                    .rsplit_once(':')
                    .map_or(self.listen.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
                if !hosts.contains(&host) && !host.is_empty() && host != "0.0.0.0" && host != "::" {
                    hosts.push(host);
                }
                tls::self_signed(&self.data_dir.join("tls"), &hosts)?
            }
            _ => return Ok(None),
        };
        tls::Certificates::load(&cert, &key).map(Some)
    }

    /// The default room, `None` for `none`.
    pub fn default_room(&self) -> Option<String> {
        let room = self.default_room.trim();
        (!room.eq_ignore_ascii_case("none")).then(|| room.to_string())
    }

    /// The configuration the hub state machine takes.
    pub fn hub_config(&self) -> HubConfig {
        let ms = |secs: f64| (secs.max(0.0) * 1000.0) as u64;
        HubConfig {
            server_name: self.server_name.clone(),
            default_room: self.default_room().unwrap_or_default(),
            motd: self.motd.clone(),
            max_line: self.max_line,
            history: self.history,
            ping_interval: ms(self.ping_interval),
            ping_timeout: ms(self.ping_timeout),
            register_timeout: ms(self.register_timeout),
            flood_burst: self.flood_burst,
            flood_rate: self.flood_rate,
            durable: !self.in_memory,
            max_rooms: self.max_rooms,
            room_create_burst: self.room_create_burst,
            room_create_per_minute: self.room_create_rate,
            room_expiry: ms(self.room_expiry),
            direct_new_senders_per_minute: self.direct_new_senders,
            require_account: self.require_account,
            login_failures_per_account: self.login_failures_per_account,
            login_failures_account_ceiling: self.login_failures_account_ceiling,
            login_failures_per_addr: self.login_failures_per_addr,
            registrations_per_addr_per_hour: self.registrations_per_hour,
            min_password: self.min_password,
            operators: self.operators.clone(),
            max_rooms_per_guest: self.max_rooms_per_guest,
            max_owned_rooms: self.max_owned_rooms,
            invite_expiry: ms(self.invite_expiry),
            ..HubConfig::default()
        }
    }

    /// How the server presents itself to IRC clients.
    pub fn irc_server(&self) -> irc::ServerInfo {
        let hub = self.hub_config();
        irc::ServerInfo {
            name: self.server_name.clone(),
            network: self.server_name.clone(),
            created: irc::time_tag(wall_millis()),
            topic_len: hub.max_topic,
            max_rooms: hub.max_rooms_per_conn,
            reason_len: 300,
            max_text: hub.max_text,
            max_lines: hub.max_text_lines,
            ..irc::ServerInfo::default()
        }
    }

    /// This configuration with the settings a running server takes from a reload
    /// ([`config::LIVE`]) taken from `new`; the others stay as they are until a restart.
    pub fn with_live(&self, new: &Config) -> Config {
        let mut c = self.clone();
        c.motd = new.motd.clone();
        c.max_connections = new.max_connections;
        c.max_per_ip = new.max_per_ip;
        c.connect_burst = new.connect_burst;
        c.connect_rate = new.connect_rate;
        c.send_queue = new.send_queue;
        c.send_queue_bytes = new.send_queue_bytes;
        c.flood_burst = new.flood_burst;
        c.flood_rate = new.flood_rate;
        c.ping_interval = new.ping_interval;
        c.ping_timeout = new.ping_timeout;
        c.register_timeout = new.register_timeout;
        c.max_rooms = new.max_rooms;
        c.room_create_burst = new.room_create_burst;
        c.room_create_rate = new.room_create_rate;
        c.direct_new_senders = new.direct_new_senders;
        c.room_expiry = new.room_expiry;
        c.require_account = new.require_account;
        c.login_failures_per_account = new.login_failures_per_account;
        c.login_failures_account_ceiling = new.login_failures_account_ceiling;
        c.login_failures_per_addr = new.login_failures_per_addr;
        c.registrations_per_hour = new.registrations_per_hour;
        c.min_password = new.min_password;
        c.password_memory_kib = new.password_memory_kib;
        c.password_iterations = new.password_iterations;
        c.operators = new.operators.clone();
        c.max_rooms_per_guest = new.max_rooms_per_guest;
        c.max_owned_rooms = new.max_owned_rooms;
        c.invite_expiry = new.invite_expiry;
        c.log = new.log.clone();
        c
    }

    /// The cost of each password hash.
    pub fn password_cost(&self) -> PasswordCost {
        PasswordCost {
            memory_kib: self.password_memory_kib.max(8),
            iterations: self.password_iterations.max(1),
            lanes: 1,
        }
    }
}

/// Runs password work (argon2id, slow on purpose) on the blocking pool, at most one job per
/// core at a time, and hands the results back to the hub task. The hub never waits for it.
struct Passwords {
    cost: PasswordCost,
    permits: Arc<tokio::sync::Semaphore>,
    done: mpsc::UnboundedSender<(ConnId, bool, Option<String>)>,
}

impl Passwords {
    /// Runs the work on the blocking pool after `delay` milliseconds (the hub slows attempts
    /// on an account over its ceiling of failed logins), at most one job per permit.
    fn start(&self, conn: ConnId, work: PasswordWork, delay: u64) {
        let (cost, permits, done) = (self.cost, self.permits.clone(), self.done.clone());
        tokio::spawn(async move {
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let result = tokio::task::spawn_blocking(move || work.perform(&cost)).await;
            // A failed job is a failed check: the client hears `bad_credentials`, never nothing.
            let (verified, hash) = result.unwrap_or((false, None));
            let _ = done.send((conn, verified, hash));
        });
    }
}

/// What the tasks tell the hub task.
enum Event {
    /// A new connection and its send queue (the hub's grip on it: a full queue means the
    /// client is too slow, and dropping it lets the writer flush what is queued, then close).
    Accepted {
        conn: ConnId,
        addr: IpAddr,
        outbox: Outbox,
        wire: Wire,
    },
    Frame {
        conn: ConnId,
        frame: Result<ClientMsg, FrameError>,
    },
    /// A line from an IRC client, parsed (off the hub task) or not.
    IrcLine {
        conn: ConnId,
        line: Result<irc::Message, irc::LineError>,
    },
    Closed {
        conn: ConnId,
        reason: String,
    },
}

/// Connection counts, total and per address, shared by the accept loop and connection tasks.
#[derive(Default)]
struct Tracker {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Per-address token buckets for new connections, so that a reconnect loop cannot make every
/// room announce a join and a quit hundreds of times a second. Deadlines use the monotonic clock.
struct Throttle {
    burst: f64,
    rate: f64,
    buckets: HashMap<IpAddr, (f64, std::time::Instant)>,
    /// Accepts since the last sweep of full buckets.
    since_sweep: usize,
}

impl Throttle {
    /// Takes new limits (a reload); buckets keep their tokens.
    fn configure(&mut self, burst: u32, rate: f64) {
        self.burst = f64::from(burst.max(1));
        self.rate = rate;
    }

    fn new(burst: u32, rate: f64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            rate,
            buckets: HashMap::new(),
            since_sweep: 0,
        }
    }

    /// Takes a token for `ip`; false when it has none.
    fn admit(&mut self, ip: IpAddr, now: std::time::Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            // Forget addresses whose buckets have refilled: they are as if never seen.
            self.since_sweep = 0;
            let (burst, rate) = (self.burst, self.rate);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (burst, rate) = (self.burst, self.rate);
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decrements the tracker when a connection task ends, however it ends.
struct TrackerGuard {
    tracker: Arc<Mutex<Tracker>>,
    ip: IpAddr,
    metrics: Arc<metrics::Metrics>,
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        t.total -= 1;
        self.metrics.connections.set(t.total as i64);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Messages queued onto connections since start (one per recipient), for `stats`.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Counters for benchmarks: (messages queued to connections, socket write calls).
pub fn stats() -> (u64, u64) {
    (
        DELIVERIES.load(Ordering::Relaxed),
        WRITE_CALLS.load(Ordering::Relaxed),
    )
}

/// How long shutdown waits for writers to flush their goodbyes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The wall clock, for stamping messages.
fn wall_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The monotonic clock the hub's deadlines follow: milliseconds since the server started.
/// Stepping the system clock does not move it.
fn mono_millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Reads both clocks: sets the hub's wall clock, and returns the monotonic time to pass in.
fn tick(hub: &mut Hub) -> u64 {
    hub.set_wall_clock(wall_millis());
    mono_millis()
}

/// Binds the listening socket named in the configuration. Refuses plaintext on an address
/// other than loopback unless `--allow-plaintext` says so.
pub async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if !config.tls() {
        plaintext_allowed(config, &listener)?;
    }
    Ok(listener)
}

/// Checks the plaintext policy for a bound listener: loopback, or `--allow-plaintext` (and a
/// warning).
fn plaintext_allowed(config: &Config, listener: &TcpListener) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    if local.ip().is_loopback() {
        return Ok(());
    }
    if !config.allow_plaintext {
        anyhow::bail!(
            "refusing to serve plaintext on {local}, which is not loopback: give --tls-cert and \
             --tls-key (or --tls-self-signed), or --allow-plaintext to accept that passwords and \
             messages cross the network unencrypted"
        );
    }
    tracing::warn!(%local, "serving PLAINTEXT on a non-loopback address: passwords and messages are not encrypted");
    Ok(())
}

/// Runs the server on `listener` until `shutdown` completes, then tells every client, flushes
/// the store and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_with(config, listener, shutdown, Options::default()).await
}

/// [`serve`], with storage faults to inject (tests of what happens when the disk fails).
pub async fn serve_with_faults(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    faults: Arc<store::Faults>,
) -> anyhow::Result<()> {
    let options = Options {
        faults,
        ..Options::default()
    };
    serve_with(config, listener, shutdown, options).await
}

/// Makes the configuration again, from the same flags, environment and file (on SIGHUP).
pub type Reload = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Sets the log filter to new directives (on a reload that changes `log`).
pub type SetLog = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a server may be given besides its configuration.
#[derive(Default)]
pub struct Options {
    /// Storage faults to inject (tests).
    pub faults: Arc<store::Faults>,
    /// How to read the configuration again on SIGHUP; without it SIGHUP only reloads the TLS
    /// certificate.
    pub reload: Option<Reload>,
    /// How to apply a new log filter.
    pub set_log: Option<SetLog>,
}

/// What the SIGHUP task and the control socket tell the hub task.
enum Control {
    /// Take the live settings of this configuration.
    Reconfigure(Arc<Config>),
    /// A change the server's operator asked for (`chat-server accounts ...`).
    Admin(admin::Request, tokio::sync::oneshot::Sender<admin::Reply>),
}

/// [`serve`], with [`Options`].
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    options: Options,
) -> anyhow::Result<()> {
    let Options {
        faults,
        reload,
        set_log,
    } = options;
    let metrics = Arc::new(metrics::Metrics::new());
    // Held until the server stops: a second server, or a subcommand changing the database
    // file directly, waits for it.
    let _lock = if config.in_memory {
        None
    } else {
        let lock = admin::lock(&config.data_dir)?;
        if lock.is_none() {
            anyhow::bail!(
                "another chat-server is using the data directory {}",
                config.data_dir.display()
            );
        }
        lock
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel::<Control>();
    let (events_tx, events_rx) = mpsc::channel::<Event>(4096);
    let (reports_tx, reports_rx) = mpsc::unbounded_channel::<store::Report>();
    let hub_config = config.hub_config();
    let mut hub = Hub::new(hub_config.clone());
    let irc_info = Arc::new(config.irc_server());
    hub.set_irc_server(irc_info.clone());
    let store = if config.in_memory {
        tracing::info!("storage: in memory (nothing is kept after exit)");
        None
    } else {
        let retention = store::Retention {
            max_age_days: config.retention_days,
            per_room: config.retention_messages,
        };
        let (store, restored) = store::Store::open(
            &config.data_dir,
            config.history,
            config.default_room().as_slice(),
            hub_config.dedupe_window,
            retention,
            store::Patience {
                down_after: Duration::from_secs_f64(config.store_down_after.max(0.0)),
                faults,
                commit_seconds: Some(metrics.commit_seconds.clone()),
                ..store::Patience::default()
            },
            move |report| {
                // Unbounded: the store thread must never block on the hub, even at shutdown.
                let _ = reports_tx.send(report);
            },
        )?;
        tracing::info!(
            path = %store.path().display(),
            messages = restored.messages,
            next_id = restored.next_id,
            "storage: SQLite (rooms load when joined)"
        );
        let now = tick(&mut hub);
        for name in hub.restore(now, restored.rooms, restored.next_id) {
            tracing::warn!(room = ?name, "a stored room's name is not valid any more; its history stays on disk, unreachable");
        }
        hub.restore_cids(restored.cids);
        for name in hub.restore_accounts(restored.accounts) {
            tracing::warn!(account = ?name, "a stored account's name is not valid any more; it cannot log in");
        }
        hub.restore_server_bans(restored.server_bans);
        hub.restore_offline(restored.offline);
        tracing::info!(
            accounts = hub.account_count(),
            server_bans = hub.server_bans().len(),
            "accounts loaded"
        );
        Some(store)
    };
    for operator in &config.operators {
        if !hub.account_exists(operator) {
            tracing::warn!(
                account = ?operator,
                "an --operator account is not registered: whoever registers that name first \
                 becomes a server operator; register it now"
            );
        }
    }
    let local = listener.local_addr()?;
    let certificates = config.certificates()?;
    let acceptor = match &certificates {
        Some(certs) => {
            tracing::info!(%local, fingerprint = %certs.fingerprint(), "listening (TLS)");
            Some(tokio_rustls::TlsAcceptor::from(certs.server_config()?))
        }
        None => {
            tracing::info!(%local, "listening (plaintext)");
            None
        }
    };
    let plain = match &config.plain_listen {
        Some(addr) => {
            let plain = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            plaintext_allowed(&config, &plain)?;
            tracing::info!(local = %plain.local_addr()?, "listening (plaintext)");
            Some(plain)
        }
        None => None,
    };
    let irc_plain = match &config.irc_listen {
        Some(addr) => {
            let irc = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for IRC on {addr}"))?;
            plaintext_allowed(&config, &irc)?;
            tracing::info!(local = %irc.local_addr()?, "listening for IRC (plaintext)");
            Some(irc)
        }
        None => None,
    };
    let irc_ws = match &config.irc_ws_listen {
        Some(addr) => {
            let ws = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for IRC over WebSocket on {addr}"))?;
            plaintext_allowed(&config, &ws)?;
            tracing::info!(local = %ws.local_addr()?, "listening for IRC over WebSocket");
            Some(ws)
        }
        None => None,
    };
    let irc_tls = match &config.irc_tls_listen {
        Some(addr) => {
            let Some(certs) = &certificates else {
                anyhow::bail!(
                    "--irc-tls-listen needs a certificate: give --tls-cert and --tls-key, or \
                     --tls-self-signed"
                );
            };
            let irc = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for IRC on {addr}"))?;
            tracing::info!(local = %irc.local_addr()?, "listening for IRC (TLS)");
            Some((irc, tokio_rustls::TlsAcceptor::from(certs.server_config()?)))
        }
        None => None,
    };
    let metrics_task = match metrics::address(&config.metrics_listen).map_err(anyhow::Error::msg)? {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => {
                let local = l.local_addr()?;
                if local.ip().is_loopback() {
                    tracing::info!(%local, "metrics on http://{local}/metrics");
                } else {
                    tracing::warn!(%local, "metrics on a non-loopback address: anyone who reaches it reads the counts");
                }
                Some(tokio::spawn(metrics::serve(l, metrics.clone())))
            }
            Err(err) if config.metrics_listen == metrics::DEFAULT_LISTEN => {
                tracing::warn!(%err, addr = %config.metrics_listen, "no metrics: the default metrics address is taken (set metrics-listen)");
                None
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot listen for metrics on {addr}"));
            }
        },
    };
    #[cfg(unix)]
    let control_task = if config.in_memory {
        None
    } else {
        match bind_control(&config.data_dir) {
            Ok(listener) => Some(tokio::spawn(admin_socket(listener, control_tx.clone()))),
            Err(err) => {
                // A data directory whose path is too long for a Unix socket, say: the server
                // runs, and the account subcommands need it stopped.
                tracing::warn!(
                    "no control socket, so `chat-server accounts` changes need the server stopped: {err:#}"
                );
                None
            }
        }
    };
    let (live_tx, live_rx) = tokio::sync::watch::channel(Arc::new(config.clone()));
    #[cfg(unix)]
    let sighup_task = tokio::spawn(reload_on_sighup(
        Arc::new(config.clone()),
        certificates.clone(),
        reload,
        set_log,
        live_tx,
        control_tx.clone(),
    ));
    #[cfg(not(unix))]
    let _ = (reload, set_log, live_tx);

    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let passwords = Passwords {
        cost: config.password_cost(),
        permits: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        done: done_tx,
    };
    let shell = Shell {
        metrics: metrics.clone(),
        admin_waiting: Vec::new(),
        conns: HashMap::new(),
        addrs: HashMap::new(),
        irc: HashMap::new(),
        holding: std::collections::HashSet::new(),
        labeled: std::collections::HashSet::new(),
        irc_info,
        store,
        passwords,
    };
    let hub_task = tokio::spawn(run_hub(
        hub, shell, events_rx, reports_rx, done_rx, control_rx, stop_rx,
    ));
    let ids = Arc::new(AtomicU64::new(0));
    let throttle = Arc::new(Mutex::new(Throttle::new(
        config.connect_burst,
        config.connect_rate,
    )));
    let mut listeners = vec![(listener, Transport::with(acceptor), Wire::Json)];
    listeners.extend(plain.map(|plain| (plain, Transport::Plain, Wire::Json)));
    let irc_wire = Wire::Irc(irc::Caps::default());
    listeners.extend(irc_plain.map(|irc| (irc, Transport::Plain, irc_wire)));
    listeners.extend(irc_tls.map(|(irc, tls)| (irc, Transport::Tls(tls), irc_wire)));
    listeners.extend(irc_ws.map(|ws| (ws, Transport::WebSocket, irc_wire)));
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, transport, wire) in listeners {
        accepting.spawn(accept_loop(
            listener,
            transport,
            wire,
            live_rx.clone(),
            events_tx.clone(),
            Shared {
                tracker: tracker.clone(),
                ids: ids.clone(),
                throttle: throttle.clone(),
                metrics: metrics.clone(),
            },
        ));
    }
    drop(events_tx);
    drop(control_tx);
    metrics.set_listening();
    tokio::select! {
        _ = accepting.join_next() => {}
        () = shutdown => tracing::info!("shutting down"),
    }
    accepting.abort_all();
    let _ = stop_tx.send(());
    #[cfg(unix)]
    {
        sighup_task.abort();
        if let Some(task) = control_task {
            task.abort();
            let _ = std::fs::remove_file(admin::socket_path(&config.data_dir));
        }
    }
    hub_task.await.context("hub task failed")?;
    if let Some(task) = metrics_task {
        task.abort();
    }
    // Give writers a moment to deliver `bye` and close their sockets.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while open_connections(&tracker) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// On every SIGHUP: reads the configuration again and applies what can change live (logging
/// what cannot), and reloads the TLS certificate; connections in progress keep theirs.
#[cfg(unix)]
async fn reload_on_sighup(
    mut current: Arc<Config>,
    certs: Option<Arc<tls::Certificates>>,
    reload: Option<Reload>,
    set_log: Option<SetLog>,
    live: tokio::sync::watch::Sender<Arc<Config>>,
    control: mpsc::UnboundedSender<Control>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: nothing will reload");
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(reload) = &reload {
            match reload() {
                Err(err) => {
                    tracing::error!("configuration not reloaded, the running one stays: {err:#}")
                }
                Ok(new) => {
                    let changes = config::changes(&current, &new);
                    let next = Arc::new(current.with_live(&new));
                    if changes.live.iter().any(|k| k == "log")
                        && let Some(set_log) = &set_log
                        && let Err(err) = set_log(&next.log)
                    {
                        tracing::error!(%err, "the log filter did not change");
                    }
                    let _ = control.send(Control::Reconfigure(next.clone()));
                    let _ = live.send(next.clone());
                    current = next;
                    tracing::info!(changed = ?changes.live, "configuration reloaded");
                    for key in &changes.restart {
                        tracing::warn!(setting = %key, "changed in the configuration, but only a restart applies it; the running value stays");
                    }
                }
            }
        }
        if let Some(certs) = &certs {
            match certs.reload() {
                Ok(()) => {
                    tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded");
                }
                Err(err) => {
                    tracing::error!("TLS certificate not reloaded, the old one stays: {err:#}")
                }
            }
        }
    }
}

/// Binds the control socket in the data directory, readable and writable by the server's
/// user only. The data directory's lock is held, so a socket file left there is stale.
#[cfg(unix)]
fn bind_control(dir: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = admin::socket_path(dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers `chat-server accounts ...` run beside the server: one JSON request per
/// connection, one JSON answer.
#[cfg(unix)]
async fn admin_socket(listener: tokio::net::UnixListener, control: mpsc::UnboundedSender<Control>) {
    use tokio::io::AsyncBufReadExt;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let control = control.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let read = tokio::io::AsyncReadExt::take(read, 64 * 1024);
            let got = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::BufReader::new(read).read_line(&mut line),
            )
            .await;
            let reply = match (got, serde_json::from_str::<admin::Request>(&line)) {
                (Ok(Ok(_)), Ok(request)) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let _ = control.send(Control::Admin(request, tx));
                    rx.await.unwrap_or_else(|_| admin::Reply {
                        error: Some("the server is shutting down".into()),
                    })
                }
                (_, Err(err)) => admin::Reply {
                    error: Some(format!("not a request: {err}")),
                },
                (_, Ok(_)) => return,
            };
            let mut text = serde_json::to_vec(&reply).unwrap_or_default();
            text.push(b'\n');
            let _ = write.write_all(&text).await;
        });
    }
}

fn open_connections(tracker: &Mutex<Tracker>) -> usize {
    tracker.lock().map_or(0, |t| t.total)
}

/// What the hub task holds besides the hub: the connections' queues, the store, and the
/// password workers.
struct Shell {
    metrics: Arc<metrics::Metrics>,
    /// Changes asked over the control socket, answered once the store has committed them.
    admin_waiting: Vec<(u64, tokio::sync::oneshot::Sender<admin::Reply>)>,
    conns: HashMap<ConnId, Outbox>,
    /// Peer addresses, for the log.
    addrs: HashMap<ConnId, IpAddr>,
    /// The IRC adapter of each IRC connection.
    irc: HashMap<ConnId, irc::Adapter>,
    /// IRC connections whose adapter holds what the hub sends them (logged in through SASL,
    /// registration not finished).
    holding: std::collections::HashSet<ConnId>,
    /// IRC connections with labeled commands whose answers are still being gathered.
    labeled: std::collections::HashSet<ConnId>,
    irc_info: Arc<irc::ServerInfo>,
    store: Option<store::Store>,
    passwords: Passwords,
}

/// Owns the hub: feeds it events and deadlines, performs its outputs.
async fn run_hub(
    mut hub: Hub,
    mut shell: Shell,
    mut events: mpsc::Receiver<Event>,
    mut reports: mpsc::UnboundedReceiver<store::Report>,
    mut passwords: mpsc::UnboundedReceiver<(ConnId, bool, Option<String>)>,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut counted = chat_core::hub::Counters::default();
    shell.count(&hub, &mut counted);
    let mut batch = Vec::with_capacity(256);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let flushers = outbox::Flusher::spawn(workers);
    let mut dirty = flushers.set();
    loop {
        let sleep = async {
            match hub.poll_timeout() {
                Some(at) => {
                    let wait = at.saturating_sub(mono_millis());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = events.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                let now = tick(&mut hub);
                for event in batch.drain(..) {
                    let input = match event {
                        Event::Accepted { conn, addr, outbox, wire } => {
                            shell.conns.insert(conn, outbox);
                            shell.addrs.insert(conn, addr);
                            if wire != Wire::Json {
                                shell.irc.insert(conn, irc::Adapter::new(shell.irc_info.clone()));
                            }
                            Input::Connect { conn, addr, wire }
                        }
                        Event::Frame { conn, frame } => Input::Frame { conn, frame },
                        Event::IrcLine { conn, line } => {
                            shell.irc_line(&mut hub, &mut dirty, now, conn, line);
                            continue;
                        }
                        Event::Closed { conn, reason } => {
                            shell.conns.remove(&conn);
                            shell.addrs.remove(&conn);
                            shell.irc.remove(&conn);
                            shell.holding.remove(&conn);
                            Input::Disconnect { conn, reason }
                        }
                    };
                    hub.handle(now, input);
                    shell.perform(&mut hub, &mut dirty, now);
                }
            }
            Some(report) = reports.recv() => {
                let now = tick(&mut hub);
                let input = match report {
                    store::Report::Committed(through) => {
                        shell.committed(through);
                        Input::Committed { through }
                    }
                    store::Report::Loaded { key, room } => Input::RoomLoaded {
                        key,
                        room: room.map(|r| *r),
                    },
                    store::Report::LoadFailed { key } => Input::RoomLoadFailed { key },
                    store::Report::History { conn, query, messages, more } => {
                        Input::HistoryLoaded { conn, query, messages, more }
                    }
                    store::Report::Down => {
                        shell.metrics.store_up.set(0);
                        Input::StoreDown
                    }
                    store::Report::Up => {
                        shell.metrics.store_up.set(1);
                        Input::StoreUp
                    }
                };
                hub.handle(now, input);
                shell.perform(&mut hub, &mut dirty, now);
            }
            Some((conn, verified, hash)) = passwords.recv() => {
                let now = tick(&mut hub);
                hub.handle(now, Input::PasswordDone { conn, verified, hash });
                shell.perform(&mut hub, &mut dirty, now);
            }
            Some(control) = control.recv() => {
                let now = tick(&mut hub);
                shell.control(&mut hub, now, control);
                shell.perform(&mut hub, &mut dirty, now);
            }
            () = sleep => {
                let now = tick(&mut hub);
                hub.handle_timeout(now);
                shell.perform(&mut hub, &mut dirty, now);
            }
            _ = &mut stop => break,
        }
        shell.count(&hub, &mut counted);
        // Everything this batch queued goes out in one pass, many messages per write.
        flushers.dispatch(&mut dirty);
    }
    let now = tick(&mut hub);
    hub.handle(now, Input::Shutdown);
    shell.perform(&mut hub, &mut dirty, now);
    flushers.dispatch(&mut dirty);
    if let Some(store) = shell.store.as_mut() {
        store.close();
        tracing::info!("store flushed");
    }
}

impl Shell {
    /// Brings the metrics up to date with the hub.
    fn count(&self, hub: &Hub, counted: &mut chat_core::hub::Counters) {
        let now = hub.counters();
        let m = &self.metrics;
        m.messages_in.inc_by(now.messages - counted.messages);
        m.flood_kicks.inc_by(now.flood_kicks - counted.flood_kicks);
        *counted = now;
        m.accounts.set(hub.account_count() as i64);
        m.rooms.set(hub.room_count() as i64);
    }

    /// Does what the SIGHUP task or the control socket asks.
    fn control(&mut self, hub: &mut Hub, now: UnixMillis, control: Control) {
        match control {
            Control::Reconfigure(config) => {
                hub.reconfigure(config.hub_config());
                self.passwords.cost = config.password_cost();
            }
            Control::Admin(request, reply) => {
                let done = match &request {
                    admin::Request::AddAccount { account, hash } => {
                        hub.add_account(account, hash.clone())
                    }
                    admin::Request::ResetPassword { account, hash } => {
                        hub.reset_password(now, account, hash.clone())
                    }
                    admin::Request::DeleteAccount { account } => hub.remove_account(now, account),
                };
                match done {
                    Ok(id) => {
                        tracing::info!(target: "chat_server::audit", "{} (the server's operator)", request.describe());
                        if self.store.is_some() {
                            self.admin_waiting.push((id, reply));
                        } else {
                            let _ = reply.send(admin::Reply { error: None });
                        }
                    }
                    Err(error) => {
                        let _ = reply.send(admin::Reply { error: Some(error) });
                    }
                }
            }
        }
    }

    /// Answers the operator's changes that are now on disk.
    fn committed(&mut self, through: u64) {
        if self.admin_waiting.is_empty() {
            return;
        }
        for (id, reply) in std::mem::take(&mut self.admin_waiting) {
            if id <= through {
                let _ = reply.send(admin::Reply { error: None });
            } else {
                self.admin_waiting.push((id, reply));
            }
        }
    }

    /// Runs one IRC line through the connection's adapter: its own answers go out at once, in
    /// order with what the hub answers to the messages it makes of the line.
    fn irc_line(
        &mut self,
        hub: &mut Hub,
        dirty: &mut DirtySet,
        now: UnixMillis,
        conn: ConnId,
        line: Result<irc::Message, irc::LineError>,
    ) {
        let Some(adapter) = self.irc.get_mut(&conn) else {
            return;
        };
        for action in adapter.line(line) {
            match action {
                irc::Action::Send(bytes) => {
                    let mut too_slow = Vec::new();
                    queue(&self.conns, dirty, conn, bytes, &mut too_slow);
                    self.drop_slow(hub, now, too_slow);
                }
                irc::Action::Hub { msg, asked } => {
                    // The hub's answers carry the tag, so each is rendered against the
                    // command that asked, however long the hub held the frame.
                    let tag = self.irc.get_mut(&conn).map_or(0, |a| a.asking(asked));
                    hub.handle(
                        now,
                        Input::Request {
                            conn,
                            frame: Ok(msg),
                            tag,
                        },
                    );
                    self.perform(hub, dirty, now);
                }
                irc::Action::Caps(caps) => hub.set_wire(conn, Wire::Irc(caps)),
                irc::Action::Answered => {
                    hub.handle(now, Input::Answered { conn });
                    self.perform(hub, dirty, now);
                }
            }
            if !self.irc.contains_key(&conn) {
                return;
            }
        }
        self.note_holding(conn);
        let mut too_slow = Vec::new();
        self.labels(hub, dirty, conn, true, &mut too_slow);
        if !too_slow.is_empty() {
            self.drop_slow(hub, now, too_slow);
            self.perform(hub, dirty, now);
        }
    }

    /// Writes the answers of labeled commands the hub is done with (`seal`: the line just
    /// handled has asked for all it makes).
    fn labels(
        &mut self,
        hub: &Hub,
        dirty: &mut DirtySet,
        conn: ConnId,
        seal: bool,
        too_slow: &mut Vec<ConnId>,
    ) {
        let Some(adapter) = self.irc.get_mut(&conn) else {
            self.labeled.remove(&conn);
            return;
        };
        let mut out = BytesMut::new();
        let answering = |tag| hub.answering(conn, tag);
        let open = if seal {
            adapter.seal_labels(answering, &mut out)
        } else {
            adapter.finish_labels(answering, &mut out)
        };
        if open {
            self.labeled.insert(conn);
        } else {
            self.labeled.remove(&conn);
        }
        if !out.is_empty() {
            queue(&self.conns, dirty, conn, out.freeze(), too_slow);
        }
    }

    fn note_holding(&mut self, conn: ConnId) {
        if self.irc.get(&conn).is_some_and(irc::Adapter::holding) {
            self.holding.insert(conn);
        } else {
            self.holding.remove(&conn);
        }
    }

    /// Drops the clients whose queues overflowed, telling the hub.
    fn drop_slow(&mut self, hub: &mut Hub, now: UnixMillis, too_slow: Vec<ConnId>) {
        for conn in too_slow {
            if let Some(outbox) = self.conns.remove(&conn) {
                tracing::info!(%conn, "dropping a client that does not read: send queue exceeded");
                self.metrics.queue_drops.inc();
                outbox.kill();
                self.irc.remove(&conn);
                self.holding.remove(&conn);
                hub.handle(
                    now,
                    Input::Disconnect {
                        conn,
                        reason: reason::SEND_QUEUE_EXCEEDED.into(),
                    },
                );
            }
        }
    }

    /// Performs everything the hub asked for.
    fn perform(&mut self, hub: &mut Hub, dirty: &mut DirtySet, now: UnixMillis) {
        let mut too_slow = Vec::new();
        let mut scratch = BytesMut::new();
        loop {
            while let Some(output) = hub.poll_output() {
                let conns = &mut self.conns;
                match output {
                    Output::Transmit { to, bytes } => {
                        DELIVERIES.fetch_add(to.len() as u64, Ordering::Relaxed);
                        self.metrics.deliveries.inc_by(to.len() as u64);
                        for conn in to {
                            if !self.holding.is_empty()
                                && self.holding.contains(&conn)
                                && let Some(adapter) = self.irc.get_mut(&conn)
                            {
                                adapter.hold(&bytes);
                                continue;
                            }
                            let Some(outbox) = conns.get(&conn) else {
                                continue;
                            };
                            match outbox.push(bytes.clone()) {
                                Ok(Some(d)) => dirty.add(conn.0, d),
                                Ok(None) => {}
                                Err(outbox::Full) => too_slow.push(conn),
                            }
                        }
                    }
                    Output::Reply {
                        conn,
                        name,
                        msg,
                        tag,
                    } => {
                        let Some(adapter) = self.irc.get_mut(&conn) else {
                            continue;
                        };
                        DELIVERIES.fetch_add(1, Ordering::Relaxed);
                        self.metrics.deliveries.inc();
                        let more = adapter.reply(tag, &name, &msg, &mut scratch);
                        if adapter.holding() {
                            self.holding.insert(conn);
                        }
                        let bytes = scratch.split().freeze();
                        if !bytes.is_empty() {
                            queue(conns, dirty, conn, bytes, &mut too_slow);
                        }
                        if let Some(next) = more {
                            // The next page of an answer IRC gives whole (NAMES, LIST),
                            // answering the same request.
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
                    Output::Close { conn, reason } => {
                        tracing::debug!(%conn, %reason, "closing");
                        // Dropping the queue's sender lets the writer flush what is queued, then close.
                        conns.remove(&conn);
                        self.irc.remove(&conn);
                        self.holding.remove(&conn);
                    }
                    Output::Store(record) => match self.store.as_ref() {
                        Some(store) => store.append(record),
                        None => tracing::error!("a durable hub without a store"),
                    },
                    Output::LoadRoom { key } => match self.store.as_ref() {
                        Some(store) => store.load(key),
                        None => hub.handle(now, Input::RoomLoaded { key, room: None }),
                    },
                    Output::LoadHistory { conn, query } => match self.store.as_ref() {
                        Some(store) => {
                            if let Some(query) = store.history(conn, query) {
                                self.metrics.reads_busy.inc();
                                hub.handle(now, Input::HistoryBusy { conn, query });
                            }
                        }
                        None => hub.handle(
                            now,
                            Input::HistoryLoaded {
                                conn,
                                query,
                                messages: Vec::new(),
                                more: false,
                            },
                        ),
                    },
                    Output::Password { conn, work, delay } => {
                        self.passwords.start(conn, work, delay)
                    }
                    Output::Audit { conn, text } => {
                        let addr = self.addrs.get(&conn).map(ToString::to_string);
                        let addr = addr.as_deref().unwrap_or("unknown");
                        tracing::info!(target: "chat_server::audit", %conn, addr, "{text}");
                    }
                    Output::LoginFailed { conn, account } => {
                        let addr = self.addrs.get(&conn).map(ToString::to_string);
                        let addr = addr.as_deref().unwrap_or("unknown");
                        tracing::warn!(%conn, addr, ?account, "failed login");
                        self.metrics.login_failures.inc();
                    }
                }
            }
            if !self.labeled.is_empty() {
                let labeled: Vec<ConnId> = self.labeled.iter().copied().collect();
                for conn in labeled {
                    self.labels(hub, dirty, conn, false, &mut too_slow);
                }
            }
            if too_slow.is_empty() {
                return;
            }
            let slow = std::mem::take(&mut too_slow);
            self.drop_slow(hub, now, slow);
        }
    }
}

/// Queues bytes for one connection; a full queue puts it on `too_slow`.
fn queue(
    conns: &HashMap<ConnId, Outbox>,
    dirty: &mut DirtySet,
    conn: ConnId,
    bytes: bytes::Bytes,
    too_slow: &mut Vec<ConnId>,
) {
    let Some(outbox) = conns.get(&conn) else {
        return;
    };
    match outbox.push(bytes) {
        Ok(Some(d)) => dirty.add(conn.0, d),
        Ok(None) => {}
        Err(outbox::Full) => too_slow.push(conn),
    }
}

/// What every accept loop shares.
struct Shared {
    tracker: Arc<Mutex<Tracker>>,
    ids: Arc<AtomicU64>,
    throttle: Arc<Mutex<Throttle>>,
    metrics: Arc<metrics::Metrics>,
}

/// Accepts connections, enforcing the total and per-address limits (those in force: a reload
/// changes them for the next connection).
async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    wire: Wire,
    mut live: tokio::sync::watch::Receiver<Arc<Config>>,
    events: mpsc::Sender<Event>,
    shared: Shared,
) {
    let Shared {
        tracker,
        ids,
        throttle,
        metrics,
    } = shared;
    let mut config = live.borrow_and_update().clone();
    // TLS handshakes spent on refusals at once; past this a refused client is closed silently.
    let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSAL_HANDSHAKES));
    let tls = match &transport {
        Transport::Tls(acceptor) => Some(acceptor.clone()),
        _ => None,
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, usually: wait for some to free up.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // An IPv4 client of a dual-stack (`[::]`) socket arrives as `::ffff:a.b.c.d`: every
        // policy (limits, throttles, bans, logs) sees its IPv4 address.
        let ip = peer.ip().to_canonical();
        let peer = std::net::SocketAddr::new(ip, peer.port());
        if live.has_changed().unwrap_or(false) {
            config = live.borrow_and_update().clone();
            throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .configure(config.connect_burst, config.connect_rate);
        }
        let admitted = throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(ip, std::time::Instant::now());
        if !admitted {
            metrics.refuse("throttled");
            tracing::info!(%peer, "refused connection: connecting too fast");
            if matches!(transport, Transport::WebSocket) {
                continue;
            }
            tokio::spawn(refuse(
                stream,
                tls.clone().zip(Some(refusals.clone())),
                wire,
                ErrorCode::ConnectionThrottled,
                format!(
                    "{ip} opens connections too fast (limit {} a second); wait a moment",
                    config.connect_rate
                ),
            ));
            continue;
        }
        let refusal = {
            let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
            let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
            if t.total >= config.max_connections {
                metrics.refuse("server_full");
                Some((
                    ErrorCode::ServerFull,
                    "the server is full; try again later".to_string(),
                ))
            } else if from_ip >= config.max_per_ip {
                metrics.refuse("per_address");
                Some((
                    ErrorCode::TooManyConnections,
                    format!(
                        "too many connections from {ip} (limit {})",
                        config.max_per_ip
                    ),
                ))
            } else {
                t.total += 1;
                *t.per_ip.entry(ip).or_insert(0) += 1;
                metrics.connections.set(t.total as i64);
                None
            }
        };
        if let Some((code, message)) = refusal {
            tracing::info!(%peer, %code, "refused connection");
            if matches!(transport, Transport::WebSocket) {
                // Nothing can be said before a WebSocket handshake: closed.
                continue;
            }
            tokio::spawn(refuse(
                stream,
                tls.clone().zip(Some(refusals.clone())),
                wire,
                code,
                message,
            ));
            continue;
        }
        let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed) + 1);
        let guard = TrackerGuard {
            tracker: tracker.clone(),
            ip,
            metrics: metrics.clone(),
        };
        tracing::debug!(%conn, %peer, "accepted");
        tokio::spawn(connection(
            stream,
            transport.clone(),
            wire,
            conn,
            events.clone(),
            Bounds {
                max_line: config.max_line,
                send_queue: config.send_queue,
                send_queue_bytes: config.send_queue_bytes,
            },
            guard,
        ));
    }
}

/// Refused TLS clients told why at once (each costs a handshake); the rest are closed silently.
const REFUSAL_HANDSHAKES: usize = 32;

/// Tells a refused client why, then closes. On a TLS listener the refusal is written inside
/// the TLS session, never in plaintext before it: the handshake is finished first, within the
/// handshake timeout and at most [`REFUSAL_HANDSHAKES`] at once. A client refused for
/// connecting too fast is closed without a handshake (spending one would be what the limit
/// is there to stop).
async fn refuse(
    stream: TcpStream,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<tokio::sync::Semaphore>)>,
    wire: Wire,
    code: ErrorCode,
    message: String,
) {
    let mut buf = BytesMut::new();
    if wire != Wire::Json {
        let error = irc::Message::new("ERROR", &[&format!("Closing link: {message}")]);
        irc::line::write(&error, &mut buf);
    } else {
        encode_refusal(code, message, &mut buf);
    }
    async fn tell<S: tokio::io::AsyncWrite + Unpin>(mut stream: S, buf: &[u8]) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(buf).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
    let Some((acceptor, permits)) = tls else {
        return tell(stream, &buf).await;
    };
    if code == ErrorCode::ConnectionThrottled {
        return;
    }
    let Ok(_permit) = permits.try_acquire_owned() else {
        return;
    };
    if let Ok(Ok(session)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
    {
        tell(session, &buf).await;
    }
}

fn encode_refusal(code: ErrorCode, message: String, buf: &mut BytesMut) {
    codec::encode(
        &ServerMsg::Error {
            code,
            message,
            cid: None,
        },
        buf,
    );
    codec::encode(
        &ServerMsg::Bye {
            reason: code.to_string(),
        },
        buf,
    );
}

/// A connection's limits: the longest line it may send, and how much may queue for it.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_line: usize,
    send_queue: usize,
    send_queue_bytes: usize,
}

/// What a listener speaks under its wire format.
#[derive(Clone)]
enum Transport {
    /// Plain TCP.
    Plain,
    /// TLS, with this acceptor.
    Tls(tokio_rustls::TlsAcceptor),
    /// IRC over WebSocket (`--irc-ws-listen`).
    WebSocket,
}

impl Transport {
    fn with(tls: Option<tokio_rustls::TlsAcceptor>) -> Transport {
        tls.map_or(Transport::Plain, Transport::Tls)
    }
}

/// How long a client has to complete the TLS (or WebSocket) handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one connection: the TLS handshake if any, then a reader and a writer, until either
/// ends.
async fn connection(
    stream: TcpStream,
    transport: Transport,
    wire: Wire,
    conn: ConnId,
    events: mpsc::Sender<Event>,
    bounds: Bounds,
    _guard: TrackerGuard,
) {
    let _ = stream.set_nodelay(true);
    let addr = stream
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| {
            a.ip().to_canonical()
        });
    let socket = match transport {
        Transport::Plain => Socket::from(Arc::new(stream)),
        Transport::WebSocket => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket::WsSocket::accept(stream)).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(err)) => {
                    tracing::debug!(%conn, %addr, %err, "WebSocket handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%conn, %addr, "WebSocket handshake timed out");
                    return;
                }
            }
        }
        Transport::Tls(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let (tcp, session) = tls.into_inner();
                    Socket::tls(tcp, session)
                }
                Ok(Err(err)) => {
                    tracing::debug!(%conn, %addr, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%conn, %addr, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let (outbox, writer) =
        outbox::outbox(socket.clone(), bounds.send_queue, bounds.send_queue_bytes);
    if events
        .send(Event::Accepted {
            conn,
            addr,
            outbox,
            wire,
        })
        .await
        .is_err()
    {
        return;
    }
    let reason = tokio::select! {
        why = read_frames(&socket, conn, &events, bounds.max_line, wire) => why,
        () = socket.drain() => reason::CONNECTION_LOST.into(),
        why = writer.run() => match why {
            Stopped::Closed => "closed by server".into(),
            Stopped::Killed => reason::SEND_QUEUE_EXCEEDED.into(),
            Stopped::Lost => reason::CONNECTION_LOST.into(),
            Stopped::TimedOut => "write timed out".into(),
        },
    };
    tracing::debug!(%conn, %reason, "connection ended");
    let _ = events.send(Event::Closed { conn, reason }).await;
}

/// Reads lines, decodes them and hands them to the hub. Returns why the connection ended.
async fn read_frames(
    rd: &Socket,
    conn: ConnId,
    events: &mpsc::Sender<Event>,
    max_line: usize,
    wire: Wire,
) -> String {
    let irc = wire != Wire::Json;
    let max_line = if irc { irc::line::MAX_LINE } else { max_line };
    let mut decoder = LineDecoder::new(max_line);
    let mut buf = BytesMut::new();
    let mut fresh_tls = matches!(rd, Socket::Tls(_));
    loop {
        while let Some(line) = decoder.next_line(&mut buf) {
            let event = if irc {
                let line = match line {
                    Ok(l) => irc::line::parse_client(&l),
                    Err(_) => Err(irc::LineError::TooLong),
                };
                Event::IrcLine { conn, line }
            } else {
                let frame = line.and_then(|l| codec::decode_client(&l));
                Event::Frame { conn, frame }
            };
            if events.send(event).await.is_err() {
                return reason::SERVER_SHUTDOWN.into();
            }
        }
        if buf.is_empty() {
            // An idle connection holds no read buffer.
            buf = BytesMut::new();
        }
        // A TLS session may hold data that came with the end of its handshake: read that
        // before waiting for the socket.
        if !std::mem::take(&mut fresh_tls)
            && let Err(err) = rd.readable().await
        {
            return format!("{}: {err}", reason::CONNECTION_LOST);
        }
        buf.reserve(4096);
        match rd.try_read(&mut buf) {
            Ok(None) => return "connection closed".into(),
            Ok(Some(_)) => {}
            Err(_) => return reason::CONNECTION_LOST.into(),
        }
    }
}
