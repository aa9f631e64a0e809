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

pub mod outbox;
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

/// Server configuration: every flag is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version, about = "A self-hostable chat server")]
pub struct Config {
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
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./chat-data")]
    pub data_dir: PathBuf,
    /// Keep nothing on disk: history lives in memory and is lost on exit.
    #[arg(long, env = "CHAT_IN_MEMORY")]
    pub in_memory: bool,
    /// Server name announced to clients.
    #[arg(long, env = "CHAT_SERVER_NAME", default_value = "chat")]
    pub server_name: String,
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
    /// Failed logins per minute that lock an account (for a minute, doubling up to an hour);
    /// 0 means no limit.
    #[arg(long, env = "CHAT_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 3)]
    pub login_failures_per_account: u32,
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

    /// The configuration the hub state machine takes.
    pub fn hub_config(&self) -> HubConfig {
        let ms = |secs: f64| (secs.max(0.0) * 1000.0) as u64;
        HubConfig {
            server_name: self.server_name.clone(),
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
    fn start(&self, conn: ConnId, work: PasswordWork) {
        let (cost, permits, done) = (self.cost, self.permits.clone(), self.done.clone());
        tokio::spawn(async move {
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
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        t.total -= 1;
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
    serve_with_faults(config, listener, shutdown, Arc::default()).await
}

/// [`serve`], with storage faults to inject (tests of what happens when the disk fails).
pub async fn serve_with_faults(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    faults: Arc<store::Faults>,
) -> anyhow::Result<()> {
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
            std::slice::from_ref(&hub_config.default_room),
            hub_config.dedupe_window,
            retention,
            store::Patience {
                down_after: Duration::from_secs_f64(config.store_down_after.max(0.0)),
                faults,
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
    #[cfg(unix)]
    if let Some(certs) = certificates.clone() {
        tokio::spawn(reload_on_sighup(certs));
    }

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
        conns: HashMap::new(),
        addrs: HashMap::new(),
        irc: HashMap::new(),
        holding: std::collections::HashSet::new(),
        irc_info,
        store,
        passwords,
    };
    let hub_task = tokio::spawn(run_hub(hub, shell, events_rx, reports_rx, done_rx, stop_rx));
    let ids = Arc::new(AtomicU64::new(0));
    let throttle = Arc::new(Mutex::new(Throttle::new(
        config.connect_burst,
        config.connect_rate,
    )));
    let mut listeners = vec![(listener, acceptor, Wire::Json)];
    listeners.extend(plain.map(|plain| (plain, None, Wire::Json)));
    let irc_wire = Wire::Irc(irc::Caps::default());
    listeners.extend(irc_plain.map(|irc| (irc, None, irc_wire)));
    listeners.extend(irc_tls.map(|(irc, tls)| (irc, Some(tls), irc_wire)));
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, tls, wire) in listeners {
        accepting.spawn(accept_loop(
            listener,
            tls,
            wire,
            config.clone(),
            events_tx.clone(),
            tracker.clone(),
            ids.clone(),
            throttle.clone(),
        ));
    }
    drop(events_tx);
    tokio::select! {
        _ = accepting.join_next() => {}
        () = shutdown => tracing::info!("shutting down"),
    }
    accepting.abort_all();
    let _ = stop_tx.send(());
    hub_task.await.context("hub task failed")?;
    // Give writers a moment to deliver `bye` and close their sockets.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while open_connections(&tracker) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the TLS certificate on every SIGHUP; connections in progress keep theirs.
#[cfg(unix)]
async fn reload_on_sighup(certs: Arc<tls::Certificates>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: the TLS certificate will not reload");
        return;
    };
    while hup.recv().await.is_some() {
        match certs.reload() {
            Ok(()) => {
                tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded");
            }
            Err(err) => tracing::error!("TLS certificate not reloaded, the old one stays: {err:#}"),
        }
    }
}

fn open_connections(tracker: &Mutex<Tracker>) -> usize {
    tracker.lock().map_or(0, |t| t.total)
}

/// What the hub task holds besides the hub: the connections' queues, the store, and the
/// password workers.
struct Shell {
    conns: HashMap<ConnId, Outbox>,
    /// Peer addresses, for the log.
    addrs: HashMap<ConnId, IpAddr>,
    /// The IRC adapter of each IRC connection.
    irc: HashMap<ConnId, irc::Adapter>,
    /// IRC connections whose adapter holds what the hub sends them (logged in through SASL,
    /// registration not finished).
    holding: std::collections::HashSet<ConnId>,
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
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
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
                    store::Report::Committed(through) => Input::Committed { through },
                    store::Report::Loaded { key, room } => Input::RoomLoaded {
                        key,
                        room: room.map(|r| *r),
                    },
                    store::Report::LoadFailed { key } => Input::RoomLoadFailed { key },
                    store::Report::History { conn, query, messages, more } => {
                        Input::HistoryLoaded { conn, query, messages, more }
                    }
                    store::Report::Down => Input::StoreDown,
                    store::Report::Up => Input::StoreUp,
                };
                hub.handle(now, input);
                shell.perform(&mut hub, &mut dirty, now);
            }
            Some((conn, verified, hash)) = passwords.recv() => {
                let now = tick(&mut hub);
                hub.handle(now, Input::PasswordDone { conn, verified, hash });
                shell.perform(&mut hub, &mut dirty, now);
            }
            () = sleep => {
                let now = tick(&mut hub);
                hub.handle_timeout(now);
                shell.perform(&mut hub, &mut dirty, now);
            }
            _ = &mut stop => break,
        }
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
                    if let Some(adapter) = self.irc.get_mut(&conn) {
                        adapter.asking(asked);
                    }
                    hub.handle(
                        now,
                        Input::Frame {
                            conn,
                            frame: Ok(msg),
                        },
                    );
                    self.perform(hub, dirty, now);
                }
                irc::Action::Caps(caps) => hub.set_wire(conn, Wire::Irc(caps)),
            }
            if !self.irc.contains_key(&conn) {
                return;
            }
        }
        self.note_holding(conn);
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
                    Output::Reply { conn, name, msg } => {
                        let Some(adapter) = self.irc.get_mut(&conn) else {
                            continue;
                        };
                        DELIVERIES.fetch_add(1, Ordering::Relaxed);
                        let more = adapter.reply(&name, &msg, &mut scratch);
                        if adapter.holding() {
                            self.holding.insert(conn);
                        }
                        let bytes = scratch.split().freeze();
                        if !bytes.is_empty() {
                            queue(conns, dirty, conn, bytes, &mut too_slow);
                        }
                        if let Some(next) = more {
                            // The next page of an answer IRC gives whole (NAMES, LIST).
                            hub.handle(
                                now,
                                Input::Frame {
                                    conn,
                                    frame: Ok(next),
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
                        Some(store) => store.history(conn, query),
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
                    Output::Password { conn, work } => self.passwords.start(conn, work),
                    Output::Audit { conn, text } => {
                        let addr = self.addrs.get(&conn).map(ToString::to_string);
                        let addr = addr.as_deref().unwrap_or("unknown");
                        tracing::info!(target: "chat_server::audit", %conn, addr, "{text}");
                    }
                    Output::LoginFailed { conn, account } => {
                        let addr = self.addrs.get(&conn).map(ToString::to_string);
                        let addr = addr.as_deref().unwrap_or("unknown");
                        tracing::warn!(%conn, addr, ?account, "failed login");
                    }
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

/// Accepts connections, enforcing the total and per-address limits.
#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    wire: Wire,
    config: Config,
    events: mpsc::Sender<Event>,
    tracker: Arc<Mutex<Tracker>>,
    ids: Arc<AtomicU64>,
    throttle: Arc<Mutex<Throttle>>,
) {
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
        let ip = peer.ip();
        let admitted = throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(ip, std::time::Instant::now());
        if !admitted {
            tracing::info!(%peer, "refused connection: connecting too fast");
            tokio::spawn(refuse(
                stream,
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
                Some((
                    ErrorCode::ServerFull,
                    "the server is full; try again later".to_string(),
                ))
            } else if from_ip >= config.max_per_ip {
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
                None
            }
        };
        if let Some((code, message)) = refusal {
            tracing::info!(%peer, %code, "refused connection");
            tokio::spawn(refuse(stream, wire, code, message));
            continue;
        }
        let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed) + 1);
        let guard = TrackerGuard {
            tracker: tracker.clone(),
            ip,
        };
        tracing::debug!(%conn, %peer, "accepted");
        tokio::spawn(connection(
            stream,
            tls.clone(),
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

/// Tells a refused client why, then closes.
async fn refuse(mut stream: TcpStream, wire: Wire, code: ErrorCode, message: String) {
    let mut buf = BytesMut::new();
    if wire != Wire::Json {
        let error = irc::Message::new("ERROR", &[&format!("Closing link: {message}")]);
        irc::line::write(&error, &mut buf);
    } else {
        encode_refusal(code, message, &mut buf);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.shutdown().await;
    })
    .await;
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

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one connection: the TLS handshake if any, then a reader and a writer, until either
/// ends.
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    wire: Wire,
    conn: ConnId,
    events: mpsc::Sender<Event>,
    bounds: Bounds,
    _guard: TrackerGuard,
) {
    let _ = stream.set_nodelay(true);
    let addr = stream
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
    let socket = match tls {
        None => Socket::from(Arc::new(stream)),
        Some(acceptor) => {
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
                    Ok(l) => irc::line::parse(&l),
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
