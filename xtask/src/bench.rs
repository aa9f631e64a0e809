//! `cargo xtask bench`: an open-loop load generator and the benchmark report.
//!
//! `cargo xtask bench` builds the server and this tool in release, then runs the suite in the
//! release binary (`xtask bench-run`) pinned to core 1 while the server is pinned to core 0.
//! Senders send on a fixed schedule and stamp each message with its scheduled time, so a slow
//! server cannot hide its delay by slowing the senders; every receiver records delivery delay
//! in an HdrHistogram. Server CPU, write syscalls and RSS come from `/proc/<pid>`.
//!
//! The generator speaks the native protocol through [`Wire`], so another codec (IRC) can drive
//! the same load against other servers.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A part of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// One sender to rooms of rising size, at rising offered loads.
    Fanout,
    /// Ten senders in a room of 1000.
    Senders,
    /// A room of 1000 where everyone talks.
    Talk,
    /// A bare write loop on the server's core: the kernel's floor for the same loads.
    Floor,
    /// 1000 rooms of 10 members.
    Rooms,
    /// Stalled readers among readers that keep up.
    Slow,
    /// Connect, register and quit.
    Churn,
    /// Idle connections: how many, and memory each.
    Idle,
    /// The default durable mode (SQLite, group commit) against the in-memory mode:
    /// send-to-acknowledgement and delivery delays at 1k, 10k and 50k messages/s.
    Durable,
    /// Accounts and TLS: one argon2id hash at the default cost, the TLS handshake, and
    /// connect-hello-quit over TLS against plaintext.
    Security,
    /// Reads beside writes: a bystander's send-to-acknowledgement time with and without 24
    /// connections searching a word 40,000 stored messages share (10,000 with --quick), each
    /// at 5 searches a second (the default request limit).
    Storm,
    /// Search: a room of 100,000 stored messages (20,000 with --quick), then `search` round
    /// trips through the store's full-text index.
    Search,
    /// Over IRC, side by side: this server's IRC listener and ngIRCd (Debian's, penalties
    /// off), the same loads: a room of 1000 at 1M, 2M and 4M deliveries/s (past saturation),
    /// and 1000 rooms of 10 at 50,000 deliveries/s.
    Irc,
}

/// Which protocol the load speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireKind {
    /// This server's JSON Lines.
    Native,
    /// IRC, to load other servers (ngIRCd, ergo) the same way.
    Irc,
}

/// `cargo xtask bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A shorter suite: fewer sizes, 2 s runs.
    #[arg(long)]
    quick: bool,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Parts of the suite to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Room sizes for the fan-out runs, comma-separated [default: 10,100,1000,5000].
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Offered deliveries/s for the fan-out and rooms runs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Seconds measured per run [default: 4, or 2 with --quick].
    #[arg(long)]
    secs: Option<f64>,
    /// Load a server that is already running at ADDR:PORT instead of starting ours.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// The pid of the --target server, to sample its CPU and memory.
    #[arg(long, requires = "target")]
    target_pid: Option<u32>,
    /// The protocol to speak.
    #[arg(long, value_enum, default_value = "native")]
    wire: WireKind,
    /// How many clients register at once.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// The chat-server binary to start for each scenario (set by `bench`).
    #[arg(long, hide = true)]
    server: Option<PathBuf>,
}

/// `xtask bench-floor` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    addr: String,
    rooms: usize,
    members: usize,
    rate: f64,
    secs: f64,
}

/// `cargo xtask bench`: build in release, then run the suite pinned to core 1. `raw` are the
/// arguments as given, passed on to the release build's `bench-run`.
pub fn run(_args: &BenchArgs, raw: &[String]) -> anyhow::Result<()> {
    let bin = crate::build(&["chat-server", "xtask"], true)?;
    // Through sh, to raise the soft file limit to the hard one for the generator's connections.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n $(ulimit -Hn) 2>/dev/null; exec \"$@\"",
        "sh",
    ]);
    if which("taskset") {
        cmd.args(["taskset", "-c", "1"]);
    }
    cmd.arg(bin.join("xtask"));
    let status = cmd
        .arg("bench-run")
        .arg("--server")
        .arg(bin.join("chat-server"))
        .args(raw)
        .status()?;
    anyhow::ensure!(status.success(), "benchmark failed");
    Ok(())
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The wire protocol the generator speaks: the native JSON Lines one, or IRC to run the same
/// loads against IRC servers.
pub trait Wire: Send + Sync {
    /// The room every client is in after registering, if the protocol has one.
    fn default_room(&self) -> Option<&'static str>;
    /// True when a sender receives its own messages back.
    fn echoes(&self) -> bool;
    /// Bytes that register `name`, leaving the default room unless `stay_in_lobby`.
    fn register(&self, name: &str, stay_in_lobby: bool) -> Vec<u8>;
    /// Bytes that join `room`.
    fn join(&self, room: &str) -> Vec<u8>;
    /// Bytes for one message to `room` carrying `payload`.
    fn say(&self, room: &str, payload: &str, out: &mut Vec<u8>);
    /// Bytes that say goodbye.
    fn quit(&self) -> Vec<u8>;
    /// True when `line` ends registration or a join (the client is in the room).
    fn is_ready(&self, line: &[u8]) -> bool;
    /// The payload of a room message line, if it is one.
    fn payload<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]>;
}

/// The native protocol.
pub struct JsonLines;

impl Wire for JsonLines {
    fn default_room(&self) -> Option<&'static str> {
        Some("#lobby")
    }

    fn echoes(&self) -> bool {
        true
    }

    fn quit(&self) -> Vec<u8> {
        b"{\"type\":\"quit\"}\n".to_vec()
    }

    fn register(&self, name: &str, stay: bool) -> Vec<u8> {
        let mut out = format!("{{\"type\":\"hello\",\"version\":1,\"name\":\"{name}\"}}\n");
        if !stay {
            out.push_str("{\"type\":\"part\",\"room\":\"#lobby\"}\n");
        }
        out.into_bytes()
    }

    fn join(&self, room: &str) -> Vec<u8> {
        format!("{{\"type\":\"join\",\"room\":\"{room}\"}}\n").into_bytes()
    }

    fn say(&self, room: &str, payload: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"say\",\"room\":\"");
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(b"\",\"text\":\"");
        out.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }

    fn is_ready(&self, line: &[u8]) -> bool {
        memchr::memmem::find(line, b"\"type\":\"history\"").is_some()
    }

    fn payload<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        if !line.starts_with(b"{\"type\":\"message\"") {
            return None;
        }
        let start = memchr::memmem::find(line, b"\"text\":\"")? + 8;
        let end = start + memchr::memchr(b'"', &line[start..])?;
        Some(&line[start..end])
    }
}

/// IRC (RFC 1459/2812 client messages), for the same loads against IRC servers. IRC has no
/// default room and does not echo a sender's own messages.
pub struct Irc;

impl Wire for Irc {
    fn default_room(&self) -> Option<&'static str> {
        None
    }

    fn echoes(&self) -> bool {
        false
    }

    fn quit(&self) -> Vec<u8> {
        b"QUIT :bye\r\n".to_vec()
    }

    fn register(&self, name: &str, _stay: bool) -> Vec<u8> {
        format!("NICK {name}\r\nUSER {name} 0 * :{name}\r\n").into_bytes()
    }

    fn join(&self, room: &str) -> Vec<u8> {
        format!("JOIN {room}\r\n").into_bytes()
    }

    fn say(&self, room: &str, payload: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PRIVMSG ");
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(b" :");
        out.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn is_ready(&self, line: &[u8]) -> bool {
        // End of NAMES (the join is complete), end of MOTD or no MOTD (registered).
        let numeric = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        matches!(numeric, b"366" | b"376" | b"422")
    }

    fn payload<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let at = memchr::memmem::find(line, b" PRIVMSG ")? + 9;
        let start = at + memchr::memmem::find(&line[at..], b" :")? + 2;
        let text = &line[start..];
        Some(text.strip_suffix(b"\r").unwrap_or(text))
    }
}

/// The scheduled send time in a payload `t<nanoseconds>:<padding>`.
fn stamp(payload: &[u8]) -> Option<u64> {
    let digits = payload.strip_prefix(b"t")?;
    let end = memchr::memchr(b':', digits)?;
    let mut value = 0u64;
    for &d in &digits[..end] {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters sampled from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    cpu_seconds: f64,
    write_syscalls: u64,
    rss_bytes: u64,
    /// Messages the server queued onto connections (from its own counters).
    deliveries: u64,
}

fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name; 100 ticks a second.
    let cpu_seconds = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    ProcStats {
        cpu_seconds,
        write_syscalls: 0,
        rss_bytes,
        deliveries: 0,
    }
}

/// Where the load goes: the chat server this suite starts, or a server already running.
enum Target {
    /// `chat-server` at this path, started afresh for each scenario.
    Spawn(PathBuf),
    /// A server someone else started (`--target ADDR`), whose CPU is sampled when its pid is
    /// given (`--target-pid`).
    External { addr: SocketAddr, pid: Option<u32> },
}

/// The server under load in one scenario.
struct Server {
    addr: SocketAddr,
    /// The process, when this suite started it (pinned to core 0 with a high file limit),
    /// with its stderr, where SIGUSR1 makes it print its counters.
    child: Option<(Child, tempfile::NamedTempFile)>,
    /// The process to sample, when known.
    pid: Option<u32>,
    /// It prints its own counters on SIGUSR1 (our server does; others do not).
    counters: bool,
}

impl Server {
    fn start(target: &Target, extra: &[&str]) -> anyhow::Result<Server> {
        match target {
            Target::Spawn(binary) => Server::spawn(binary, extra),
            Target::External { addr, pid } => Ok(Server {
                addr: *addr,
                child: None,
                pid: *pid,
                counters: false,
            }),
        }
    }

    fn spawn(binary: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let pin = if which("taskset") {
            "taskset -c 0 "
        } else {
            ""
        };
        let queue = if extra.contains(&"--send-queue") {
            ""
        } else {
            "--send-queue 4096"
        };
        // Without a data directory the server keeps nothing: the in-memory mode.
        let memory = if extra.contains(&"--data-dir") {
            ""
        } else {
            "--in-memory"
        };
        let script = format!(
            "ulimit -n $(ulimit -Hn) 2>/dev/null; exec {pin}{} --listen {addr} {memory} \
             --flood-rate 0 --connect-rate 0 --ping-interval 3600 --max-connections 200000 --max-per-ip 200000 {queue} {}",
            binary.display(),
            extra.join(" ")
        );
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new("sh")
            .args(["-c", &script])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id();
        Ok(Server {
            addr,
            child: Some((child, log)),
            pid: Some(pid),
            counters: true,
        })
    }

    /// Our server with an IRC listener too; the load goes to the IRC listener.
    fn spawn_irc(binary: &Path) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let irc: SocketAddr = ([127, 0, 0, 1], port).into();
        let listen = irc.to_string();
        let mut server = Server::spawn(binary, &["--irc-listen", &listen])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(irc).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the IRC listener did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server.addr = irc;
        Ok(server)
    }

    /// ngIRCd from Debian, pinned to core 0 like ours, with `xtask/bench/ngircd.conf` on a
    /// free port.
    fn spawn_ngircd() -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let conf = std::fs::read_to_string(crate::root().join("xtask/bench/ngircd.conf"))?
            .replace("Ports = 6667", &format!("Ports = {port}"));
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), conf)?;
        let pin = if which("taskset") {
            "taskset -c 0 "
        } else {
            ""
        };
        let script = format!(
            "ulimit -n $(ulimit -Hn) 2>/dev/null; exec {pin}ngircd -n -f {}",
            file.path().display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "ngircd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id();
        Ok(Server {
            addr,
            child: Some((child, file)),
            pid: Some(pid),
            counters: false,
        })
    }

    /// True when the server reports its own delivery and write counters.
    fn counts(&self) -> bool {
        self.counters
    }

    fn stats(&self) -> ProcStats {
        let Some(pid) = self.pid else {
            return ProcStats::default();
        };
        let mut stats = proc_stats(pid);
        let Some((_, log)) = self.child.as_ref().filter(|_| self.counters) else {
            return stats;
        };
        // Socket writes are not in /proc/<pid>/io; the server counts its own and prints them
        // on SIGUSR1. Wait for the new line, not the last one.
        let lines = |log: &str| complete_stats_lines(log).len();
        let read_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
        let seen = lines(&read_log());
        let _ = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut log = read_log();
        while lines(&log) == seen && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            log = read_log();
        }
        if lines(&log) == seen {
            eprintln!("bench: the server printed no counters within 5 s ({seen} lines before)");
            return stats;
        }
        if let Some(line) = complete_stats_lines(&log).last() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            stats.write_syscalls = field("writes=");
            stats.deliveries = field("deliveries=");
        }
        stats
    }
}

/// The server's counter lines, complete ones only: a line still being written is not read.
fn complete_stats_lines(log: &str) -> Vec<&str> {
    log.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with("stats "))
        .map(str::trim_end)
        .collect()
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens a client connection, spreading source addresses over 127.0.0.x so that more than one
/// address's worth of ephemeral ports is available.
async fn connect(addr: SocketAddr, index: usize) -> anyhow::Result<TcpStream> {
    let block = index / 20_000 % 250;
    let stream = if block == 0 {
        // The kernel's own port choice is much faster than bind-then-connect.
        TcpStream::connect(addr).await?
    } else {
        let socket = TcpSocket::new_v4()?;
        socket.bind((Ipv4Addr::new(127, 0, 0, 1 + block as u8), 0).into())?;
        socket.connect(addr).await?
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Registers as `name` and joins `room` ("#lobby", the default room, means staying there;
/// `None` means no room).
async fn register(
    stream: &mut TcpStream,
    wire: &dyn Wire,
    name: &str,
    room: Option<&str>,
) -> anyhow::Result<()> {
    let stay = room.is_some() && room == wire.default_room();
    stream.write_all(&wire.register(name, stay)).await?;
    until_ready(stream, wire).await?;
    if let Some(room) = room.filter(|_| !stay) {
        stream.write_all(&wire.join(room)).await?;
        until_ready(stream, wire).await?;
    }
    Ok(())
}

/// How many clients register at once (`--parallel`); servers with a short listen backlog need
/// fewer.
static PARALLEL: AtomicU64 = AtomicU64::new(256);

/// Connects and registers a client for each `(name, room)`, [`PARALLEL`] at a time; the
/// connections come back in the order asked for.
async fn connect_all(
    addr: SocketAddr,
    wire: &Arc<dyn Wire>,
    specs: Vec<(String, String)>,
) -> anyhow::Result<Vec<TcpStream>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        PARALLEL.load(Ordering::Relaxed).max(1) as usize,
    ));
    let mut set = tokio::task::JoinSet::new();
    let n = specs.len();
    for (k, (name, room)) in specs.into_iter().enumerate() {
        let permit = limit.clone().acquire_owned().await?;
        let wire = wire.clone();
        set.spawn(async move {
            let _permit = permit;
            let mut s = connect(addr, k).await?;
            register(&mut s, wire.as_ref(), &name, Some(&room)).await?;
            anyhow::Ok((k, s))
        });
    }
    let mut out: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (k, s) = joined??;
        out[k] = Some(s);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Reads until the server has finished registering or joining.
async fn until_ready(stream: &mut TcpStream, wire: &dyn Wire) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed during registration");
        buf.extend_from_slice(&chunk[..n]);
        if buf.split(|&b| b == b'\n').any(|l| wire.is_ready(l)) {
            return Ok(());
        }
    }
}

/// One row of the report.
#[derive(Debug, Default)]
struct Row {
    scenario: String,
    offered_msgs: f64,
    offered_deliveries: f64,
    delivered: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    cpu_per_million: f64,
    syscw_per_delivery: f64,
    note: String,
}

/// What receivers share.
struct Tally {
    delivered: AtomicU64,
    measuring: AtomicBool,
    /// Arrival time (ns) of the last measured delivery, for the delivered rate.
    last_ns: AtomicU64,
    /// Receivers that have seen the warm-up marker, i.e. have read through the join storm.
    warmed: AtomicU64,
}

/// Reads messages, recording the delay of each since its scheduled send time into `hist`.
/// Runs until the connection closes or the task is aborted.
async fn receive(
    mut stream: impl tokio::io::AsyncRead + Unpin,
    wire: Arc<dyn Wire>,
    tally: Arc<Tally>,
    hist: Arc<Mutex<Histogram<u64>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut count = 0u64;
    loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let now = now_ns();
        let measuring = tally.measuring.load(Ordering::Relaxed);
        let mut start = 0;
        {
            let mut hist = hist.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(end) = memchr::memchr(b'\n', &buf[start..filled]) {
                let line = &buf[start..start + end];
                start += end + 1;
                let Some(payload) = wire.payload(line) else {
                    continue;
                };
                if payload == b"warm" {
                    tally.warmed.fetch_add(1, Ordering::Relaxed);
                } else if measuring && let Some(sent) = stamp(payload) {
                    let _ = hist.record(now.saturating_sub(sent) / 1000);
                    count += 1;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            filled = 0;
        }
        if count > 0 {
            tally.delivered.fetch_add(count, Ordering::Relaxed);
            tally.last_ns.fetch_max(now, Ordering::Relaxed);
            count = 0;
        }
    }
}

/// Receivers running under [`receive`], each with its histogram.
#[derive(Default)]
struct Receivers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    hists: Vec<Arc<Mutex<Histogram<u64>>>>,
}

impl Receivers {
    fn spawn(
        &mut self,
        stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        wire: Arc<dyn Wire>,
        tally: Arc<Tally>,
    ) {
        let hist = Arc::new(Mutex::new(new_histogram()));
        self.hists.push(hist.clone());
        self.tasks
            .push(tokio::spawn(receive(stream, wire, tally, hist)));
    }

    /// Stops every receiver and merges their histograms.
    async fn finish(self) -> Histogram<u64> {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let mut all = new_histogram();
        for h in self.hists {
            let _ = all.add(&*h.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, from 1 µs to 60 s, 2 significant digits.
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
}

/// Rooms under an open-loop load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Rooms; one is the default room, more are `#r0`, `#r1`, ...
    rooms: usize,
    /// Members of each room that read and measure.
    receivers: usize,
    /// Members of each room that send (and also receive, unmeasured).
    senders: usize,
    /// Every receiver also sends (`senders` is then ignored): a room where everyone talks.
    talkers: bool,
    /// Messages per second, all senders together.
    rate: f64,
    /// Seconds measured (after a half-second warm-up).
    secs: f64,
    /// Extra bytes per message.
    padding: usize,
    /// Receivers (among `receivers`) that never read.
    stalled: usize,
}

impl Load {
    /// One room of `receivers` and one sender.
    fn room(receivers: usize, rate: f64, secs: f64) -> Load {
        Load {
            rooms: 1,
            receivers,
            senders: 1,
            talkers: false,
            rate,
            secs,
            padding: 0,
            stalled: 0,
        }
    }

    fn room_name(&self, i: usize) -> String {
        if self.rooms == 1 {
            "#lobby".into()
        } else {
            format!("#r{i}")
        }
    }
}

/// Runs `load` against `server`.
async fn fanout(server: &Server, wire: Arc<dyn Wire>, load: Load) -> anyhow::Result<Row> {
    let Load {
        rooms,
        receivers,
        senders,
        talkers,
        rate,
        secs,
        padding,
        stalled,
    } = load;
    let senders = if talkers { 0 } else { senders };
    anyhow::ensure!(
        (senders > 0 || talkers) && stalled < receivers,
        "bad load {load:?}"
    );
    let tally = Arc::new(Tally {
        delivered: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        last_ns: AtomicU64::new(0),
        warmed: AtomicU64::new(0),
    });
    // Everyone connects and joins first, many at a time (IRC servers hold each join a while).
    let mut specs = Vec::new();
    for r in 0..rooms {
        let room = load.room_name(r);
        specs.extend((0..receivers).map(|i| (format!("r{r}x{i}"), room.clone())));
        specs.extend((0..senders).map(|i| (format!("s{r}x{i}"), room.clone())));
    }
    let mut streams = connect_all(server.addr, &wire, specs).await?.into_iter();
    let mut readers = Receivers::default();
    let mut stuck = Vec::new();
    let mut sender_writers = Vec::new();
    let mut sender_rooms = Vec::new();
    let mut drains = Vec::new();
    // The sender of each room's warm-up marker.
    let mut first_senders = Vec::new();
    for r in 0..rooms {
        let room = load.room_name(r);
        first_senders.push(sender_writers.len());
        for i in 0..receivers {
            let s = streams.next().context("a connection is missing")?;
            if i < stalled {
                stuck.push(s);
            } else if talkers {
                let (rd, wr) = s.into_split();
                readers.spawn(rd, wire.clone(), tally.clone());
                sender_writers.push(wr);
                sender_rooms.push(room.clone());
            } else {
                readers.spawn(s, wire.clone(), tally.clone());
            }
        }
        for _ in 0..senders {
            let s = streams.next().context("a connection is missing")?;
            // Senders receive every message too; drain them without measuring.
            let (mut rd, wr) = s.into_split();
            drains.push(tokio::spawn(async move {
                let mut sink = vec![0u8; 64 * 1024];
                while rd.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            }));
            sender_writers.push(wr);
            sender_rooms.push(room.clone());
        }
    }
    // Joining thousands of members queues millions of join lines; start measuring only once
    // every receiver has read through them (it has seen this marker).
    for &k in &first_senders {
        let mut marker = Vec::new();
        wire.say(&sender_rooms[k], "warm", &mut marker);
        sender_writers[k].write_all(&marker).await?;
    }
    // Who gets each message: every measured receiver, but a talker not its own message when
    // the protocol does not echo.
    let own = usize::from(talkers && !wire.echoes());
    let per_message = receivers - stalled - own;
    let warm_expected = rooms * per_message;
    let settle = Instant::now() + Duration::from_secs(120);
    while tally.warmed.load(Ordering::Relaxed) < warm_expected as u64 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pad = "x".repeat(padding);
    // Warm up for half a second, then measure.
    let warmup = 0.5;
    let interval = 1.0 / rate;
    let total = ((secs + warmup) * rate) as u64;
    let before = server.stats();
    let start = Instant::now();
    let start_ns = now_ns();
    let self_before = proc_stats(std::process::id());
    let mut measuring_from = None;
    let mut max_lag = Duration::ZERO;
    let mut next = 0u64;
    let mut by_sender: Vec<Vec<u8>> = vec![Vec::new(); sender_writers.len()];
    let mut busy = Vec::new();
    while next < total {
        let now = start.elapsed().as_secs_f64();
        if measuring_from.is_none() && now >= warmup {
            tally.delivered.store(0, Ordering::Relaxed);
            tally.measuring.store(true, Ordering::Relaxed);
            measuring_from = Some((now_ns(), next));
        }
        let due = ((now / interval) as u64 + 1).min(total);
        // Send everything whose scheduled time has come, each stamped with that time; message
        // n goes from sender n (round robin), so rooms take turns.
        while next < due {
            let scheduled = start_ns + (next as f64 * interval * 1e9) as u64;
            let k = (next as usize) % sender_writers.len();
            if by_sender[k].is_empty() {
                busy.push(k);
            }
            wire.say(
                &sender_rooms[k],
                &format!("t{scheduled}:{pad}"),
                &mut by_sender[k],
            );
            next += 1;
        }
        for k in busy.drain(..) {
            sender_writers[k].write_all(&by_sender[k]).await?;
            by_sender[k].clear();
        }
        let lag = start.elapsed().as_secs_f64() - (next as f64 * interval);
        max_lag = max_lag.max(Duration::from_secs_f64(lag.max(0.0)));
        let wait = (next as f64 * interval) - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
    // Let deliveries drain, then stop.
    let (measure_start, sent_start) = measuring_from.unwrap_or((now_ns(), 0));
    let sent = next - sent_start;
    let expected = sent * per_message as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(3);
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // From the first measured send to the last measured arrival.
    let elapsed = tally
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(measure_start) as f64
        / 1e9;
    let after = server.stats();
    let self_after = proc_stats(std::process::id());
    drains.iter().for_each(|d| d.abort());
    let hist = readers.finish().await;
    let delivered = hist.len() as f64;
    let measured_secs = secs.max(1e-9);
    // Zero when the server's counters could not be read: then the per-delivery figures are
    // unknown, not huge.
    // A server this suite did not start has no counters: count the deliveries it was offered
    // over the whole run instead.
    let queued = match after.deliveries.saturating_sub(before.deliveries) {
        _ if !server.counts() => (next * per_message as u64) as f64,
        0 => f64::NAN,
        n => n as f64,
    };
    let mut row = Row {
        offered_msgs: rate,
        offered_deliveries: rate * per_message as f64,
        delivered: delivered / elapsed.max(measured_secs),
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        p999_ms: hist.value_at_quantile(0.999) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
        // Over the whole run (warm-up included), per message the server queued.
        cpu_per_million: (after.cpu_seconds - before.cpu_seconds) / (queued / 1e6),
        syscw_per_delivery: after.write_syscalls.saturating_sub(before.write_syscalls) as f64
            / queued,
        ..Row::default()
    };
    let mut notes = Vec::new();
    if queued.is_nan() {
        notes.push("server counters unavailable".to_string());
    }
    if !server.counts() {
        row.syscw_per_delivery = f64::NAN;
        if server.pid.is_none() {
            row.cpu_per_million = f64::NAN;
        }
    }
    if delivered < expected as f64 * 0.99 {
        notes.push(format!(
            "{:.0}% delivered",
            100.0 * delivered / expected.max(1) as f64
        ));
    }
    // The generator's own CPU over the whole run, drain included: near one core means the
    // figures are the generator's limit, not the server's.
    let gen_cpu =
        (self_after.cpu_seconds - self_before.cpu_seconds) / start.elapsed().as_secs_f64();
    if gen_cpu > 0.85 || max_lag > Duration::from_millis(50) {
        notes.push(format!(
            "load generator saturated (cpu {:.0}%, send lag {} ms)",
            gen_cpu * 100.0,
            max_lag.as_millis()
        ));
    }
    if stalled > 0 {
        let mut dropped = 0;
        for mut s in stuck {
            let mut sink = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
            if matches!(closed, Ok(Ok(_))) {
                dropped += 1;
            }
        }
        notes.push(format!("{dropped}/{stalled} stalled readers dropped"));
    }
    row.note = notes.join("; ");
    Ok(row)
}

/// The least work any fan-out server must do for `load`: a process on the server's core that
/// writes every due message to every member of its room, one write per socket per round, with
/// no parsing, queues or tasks. Its delay is the floor the kernel's loopback TCP sets on this
/// machine.
async fn floor(load: Load) -> anyhow::Result<Row> {
    let Load {
        rooms,
        receivers,
        rate,
        secs,
        ..
    } = load;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n $(ulimit -Hn) 2>/dev/null; exec \"$@\"",
        "sh",
    ]);
    if which("taskset") {
        cmd.args(["taskset", "-c", "0"]);
    }
    let warmup = 0.5;
    let mut child = cmd
        .arg(&exe)
        .args(["bench-floor", &addr.to_string()])
        .args([
            rooms.to_string(),
            receivers.to_string(),
            rate.to_string(),
            (secs + warmup).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let tally = Arc::new(Tally {
        delivered: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        last_ns: AtomicU64::new(0),
        warmed: AtomicU64::new(0),
    });
    let wire: Arc<dyn Wire> = Arc::new(JsonLines);
    let mut readers = Receivers::default();
    for _ in 0..rooms * receivers {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        readers.spawn(stream, wire.clone(), tally.clone());
    }
    let before = proc_stats(child.id());
    let self_before = proc_stats(std::process::id());
    let run_start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    tally.delivered.store(0, Ordering::Relaxed);
    tally.measuring.store(true, Ordering::Relaxed);
    let measure_start = now_ns();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after = proc_stats(child.id());
    let expected = (secs * rate) as u64 * receivers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(3);
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = tally
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(measure_start) as f64
        / 1e9;
    // The writer prints its write calls per delivery when it is done.
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read as _;
        let _ = out.read_to_string(&mut report);
    }
    let _ = child.wait();
    let writes_per_delivery = report.trim().parse().unwrap_or(f64::NAN);
    let gen_cpu = (proc_stats(std::process::id()).cpu_seconds - self_before.cpu_seconds)
        / run_start.elapsed().as_secs_f64();
    let hist = readers.finish().await;
    let delivered = hist.len() as f64;
    let scenario = if rooms == 1 {
        format!("floor: bare write loop, 1 room x {receivers} sockets")
    } else {
        format!("floor: bare write loop, {rooms} rooms x {receivers} sockets")
    };
    Ok(Row {
        scenario,
        offered_msgs: rate,
        offered_deliveries: rate * receivers as f64,
        delivered: delivered / elapsed.max(secs),
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        p999_ms: hist.value_at_quantile(0.999) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
        cpu_per_million: (after.cpu_seconds - before.cpu_seconds)
            / (secs * rate * receivers as f64 / 1e6),
        syscw_per_delivery: writes_per_delivery,
        note: if gen_cpu > 0.85 {
            format!("load generator saturated (cpu {:.0}%)", gen_cpu * 100.0)
        } else {
            String::new()
        },
    })
}

/// `xtask bench-floor ADDR ROOMS MEMBERS RATE SECS`: the writer half of [`floor`], run on the
/// server's core. Message n goes to room n mod ROOMS. Prints its writes per delivery at the end.
pub fn run_floor(args: &FloorArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let FloorArgs {
        addr,
        rooms,
        members,
        rate,
        secs,
    } = args.clone();
    let mut socks = Vec::with_capacity(rooms * members);
    for _ in 0..rooms * members {
        let s = std::net::TcpStream::connect(addr.as_str())?;
        s.set_nodelay(true)?;
        socks.push(s);
    }
    let interval = 1.0 / rate;
    let total = (secs * rate) as u64;
    let start = Instant::now();
    let start_ns = now_ns();
    let mut next = 0u64;
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); rooms];
    let mut touched = Vec::new();
    let (mut writes, mut deliveries) = (0u64, 0u64);
    while next < total {
        let now = start.elapsed().as_secs_f64();
        let due = ((now / interval) as u64 + 1).min(total);
        while next < due {
            let scheduled = start_ns + (next as f64 * interval * 1e9) as u64;
            let room = (next as usize) % rooms;
            if pending[room].is_empty() {
                touched.push(room);
            }
            writeln!(
                pending[room],
                "{{\"type\":\"message\",\"id\":{next},\"ts\":{},\"room\":\"#r{room}\",\"from\":\"s0\",\"text\":\"t{scheduled}:\"}}",
                scheduled / 1_000_000
            )?;
            next += 1;
            deliveries += members as u64;
        }
        for room in touched.drain(..) {
            for s in &mut socks[room * members..(room + 1) * members] {
                s.write_all(&pending[room])?;
                writes += 1;
            }
            pending[room].clear();
        }
        let wait = (next as f64 * interval) - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
    println!("{}", writes as f64 / deliveries.max(1) as f64);
    Ok(())
}

/// `n` idle registered connections: server memory per connection.
async fn idle(
    server: &Server,
    wire: Arc<dyn Wire>,
    n: usize,
) -> anyhow::Result<(Row, Vec<TcpStream>)> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.stats();
    let mut conns = Vec::with_capacity(n);
    let start = Instant::now();
    let mut failed = None;
    for i in 0..n {
        let result = async {
            let mut s = connect(server.addr, i).await?;
            register(&mut s, wire.as_ref(), &format!("idle{i}"), None).await?;
            anyhow::Ok(s)
        }
        .await;
        match result {
            Ok(s) => conns.push(s),
            Err(err) => {
                failed = Some(format!("stopped at {i}: {err}"));
                break;
            }
        }
    }
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.stats();
    let held = conns.len();
    let per_conn = after.rss_bytes.saturating_sub(before.rss_bytes) as f64 / held.max(1) as f64;
    let row = Row {
        scenario: format!("idle: {held} connections held"),
        delivered: held as f64 / connect_secs,
        p50_ms: per_conn,
        note: failed.unwrap_or_default(),
        ..Row::default()
    };
    Ok((row, conns))
}

/// Connect, register, quit, repeated by `parallel` loops for `secs`: connects per second.
async fn churn(
    server: &Server,
    wire: Arc<dyn Wire>,
    parallel: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for p in 0..parallel {
        let (done, wire) = (done.clone(), wire.clone());
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                let index = p * 1_000_000 + i;
                if let Ok(mut s) = connect(addr, index % 200_000).await
                    && register(&mut s, wire.as_ref(), &format!("c{p}x{i}"), None)
                        .await
                        .is_ok()
                {
                    let _ = s.write_all(&wire.quit()).await;
                    let mut sink = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink))
                        .await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs)
}

/// The median of some durations, in milliseconds.
fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Search: fills a room of a durable server with `n` messages (six words each from a small
/// vocabulary, and a unique one), then times `search` round trips, 20 of each query.
async fn search(target: &Target, n: usize, extra: &mut String) -> anyhow::Result<()> {
    use chat_core::client::{Connector, Received, Transport};
    use chat_core::protocol::{ClientMsg, ServerMsg};

    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let server = Server::start(target, &["--data-dir", &data])?;
    let mut t = chat_core::client::TcpConnector::new(server.addr.to_string())
        .connect()
        .await?;
    async fn until<T: Transport>(
        t: &mut T,
        mut done: impl FnMut(&ServerMsg) -> bool,
    ) -> anyhow::Result<ServerMsg> {
        loop {
            match t.recv().await? {
                Received::Msg(m) if done(&m) => return Ok(m),
                Received::Msg(_) | Received::Bad(_) => {}
                Received::Closed => anyhow::bail!("the server closed the connection"),
            }
        }
    }
    t.send(&ClientMsg::Hello {
        version: chat_core::protocol::PROTOCOL_VERSION,
        name: "filler".into(),
        password: None,
    })
    .await?;
    t.send(&ClientMsg::Join {
        room: "#big".into(),
        since: None,
        key: None,
    })
    .await?;
    until(
        &mut t,
        |m| matches!(m, ServerMsg::History { room, .. } if room == "#big"),
    )
    .await?;
    const WORDS: [&str; 14] = [
        "deploy",
        "build",
        "test",
        "review",
        "lunch",
        "coffee",
        "parser",
        "docs",
        "bug",
        "release",
        "wiki",
        "staging",
        "dns",
        "benchmark",
    ];
    let mut rng = crate::bots::Rng::new(7);
    let started = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(500) {
        for &i in batch {
            let words: Vec<&str> = (0..6)
                .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize])
                .collect();
            t.send(&ClientMsg::Say {
                room: "#big".into(),
                text: format!("{} m{i}", words.join(" ")),
                cid: Some(format!("s{i}")),
                notice: false,
                tags: Default::default(),
            })
            .await?;
        }
        let last = format!("s{}", batch[batch.len() - 1]);
        until(
            &mut t,
            |m| matches!(m, ServerMsg::Ack { cid, .. } if *cid == last),
        )
        .await?;
    }
    let fill = started.elapsed().as_secs_f64();
    writeln!(
        extra,
        "- search: {n} messages stored in {fill:.1} s, then `search` round trips (median of 20):"
    )
    .ok();
    for query in [
        "deploy",
        "coffee dns",
        "benchmark staging review",
        &format!("m{}", n / 2),
        "nothinglikeit",
    ] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..20 {
            let asked = Instant::now();
            t.send(&ClientMsg::Search {
                room: "#big".into(),
                query: query.to_string(),
                before: None,
                limit: 20,
            })
            .await?;
            if let ServerMsg::SearchResults { messages, .. } =
                until(&mut t, |m| matches!(m, ServerMsg::SearchResults { .. })).await?
            {
                found = messages.len();
            }
            times.push(asked.elapsed());
        }
        let ms = median_ms(times);
        writeln!(extra, "  - \"{query}\": **{ms:.2} ms**, {found} results").ok();
        eprintln!("bench: search {query:?}: {ms:.2} ms, {found} results");
    }
    let _ = t.close().await;
    Ok(())
}

/// Reads beside writes: a durable server with `n` stored messages in #big that all have the
/// word "deploy"; a bystander in #chat sends a message every 20 ms and times each
/// acknowledgement, first alone, then while 24 connections (one address) search their own
/// room #quiet for "deploy" 5 times a second each (each search walks all `n` matches in the
/// index), then alone again. Reports p50/p99 for each phase and how the
/// searches were answered (results, or `busy`).
async fn storm(target: &Target, n: usize, secs: f64, extra: &mut String) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let server = Server::start(target, &["--data-dir", &data])?;
    // A line-oriented client on the native protocol.
    async fn client(
        addr: SocketAddr,
        name: &str,
        room: &str,
    ) -> anyhow::Result<(
        tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    )> {
        let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
        let mut rd = tokio::io::BufReader::new(rd);
        let hello = format!(r#"{{"type":"hello","version":1,"name":"{name}"}}"#);
        let join = format!(r#"{{"type":"join","room":"{room}"}}"#);
        wr.write_all(format!("{hello}\n{join}\n").as_bytes())
            .await?;
        let mut line = String::new();
        loop {
            line.clear();
            anyhow::ensure!(
                rd.read_line(&mut line).await? > 0,
                "{name}: connection closed"
            );
            if line.contains("\"history\"") && line.contains(&format!("\"room\":\"{room}\"")) {
                return Ok((rd, wr));
            }
        }
    }
    let (mut frd, mut fwr) = client(server.addr, "filler", "#big").await?;
    let started = Instant::now();
    let mut line = String::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut out = String::new();
        for &i in batch {
            let say = format!(
                r##"{{"type":"say","room":"#big","text":"deploy step {i} of the release","cid":"f{i}"}}"##
            );
            writeln!(out, "{say}").ok();
        }
        fwr.write_all(out.as_bytes()).await?;
        let last = format!("\"cid\":\"f{}\"", batch[batch.len() - 1]);
        loop {
            line.clear();
            anyhow::ensure!(
                frd.read_line(&mut line).await? > 0,
                "filler: connection closed"
            );
            if line.contains("\"ack\"") && line.contains(&last) {
                break;
            }
        }
    }
    let fill = started.elapsed().as_secs_f64();
    let (mut brd, mut bwr) = client(server.addr, "bystander", "#chat").await?;
    // One phase: the bystander's send-to-ack times over `secs`, a message every 20 ms sent on
    // schedule (open loop: a slow acknowledgement does not slow the sending), each timed from
    // its send to its `ack`; acknowledgements that have not come 60 s after the last send
    // fail the run.
    async fn phase(
        rd: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        tag: &str,
        secs: f64,
    ) -> anyhow::Result<Histogram<u64>> {
        let count = (secs * 50.0) as usize;
        let sent: Mutex<Vec<Option<Instant>>> = Mutex::new(vec![None; count]);
        let start = Instant::now();
        let writer = async {
            for i in 0..count {
                tokio::time::sleep_until((start + Duration::from_millis(20 * i as u64)).into())
                    .await;
                let say =
                    format!(r##"{{"type":"say","room":"#chat","text":"hello","cid":"{tag}{i}"}}"##);
                sent.lock().unwrap()[i] = Some(Instant::now());
                wr.write_all(format!("{say}\n").as_bytes()).await?;
            }
            anyhow::Ok(())
        };
        let reader = async {
            let mut hist = new_histogram();
            let mut line = String::new();
            let deadline = start + Duration::from_secs_f64(secs + 60.0);
            let prefix = format!("\"cid\":\"{tag}");
            let mut acked = 0;
            while acked < count {
                line.clear();
                let n = tokio::time::timeout_at(deadline.into(), rd.read_line(&mut line))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{} of {count} acknowledgements did not come within 60 s",
                            count - acked
                        )
                    })??;
                anyhow::ensure!(n > 0, "bystander: connection closed");
                if !line.contains("\"ack\"") {
                    continue;
                }
                let Some(at) = line.find(&prefix) else {
                    continue;
                };
                let digits: String = line[at + prefix.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Some(Some(t)) = digits
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| sent.lock().unwrap().get(i).copied())
                {
                    hist.record(t.elapsed().as_micros() as u64).ok();
                    acked += 1;
                }
            }
            anyhow::Ok(hist)
        };
        let (written, hist) = tokio::join!(writer, reader);
        written?;
        hist
    }
    // A second to warm up (connections, caches), not counted.
    phase(&mut brd, &mut bwr, "w", 1.0).await?;
    let quiet = phase(&mut brd, &mut bwr, "q", secs).await?;
    // The storm: 24 searchers, each paced at 5 searches a second, reading answers as they come.
    let stop = Arc::new(AtomicBool::new(false));
    let (results, busy, sent) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut searchers = Vec::new();
    for s in 0..24 {
        let (mut rd, mut wr) = client(server.addr, &format!("searcher{s}"), "#quiet").await?;
        let (stop, results, busy, sent) =
            (stop.clone(), results.clone(), busy.clone(), sent.clone());
        searchers.push(tokio::spawn(async move {
            let reader = tokio::spawn(async move {
                let mut line = String::new();
                while rd.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if line.contains("\"search_results\"") {
                        results.fetch_add(1, Ordering::Relaxed);
                    } else if line.contains("\"busy\"") {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    line.clear();
                }
            });
            // In a room of their own, so that each search walks every "deploy" of #big in
            // the index before it finds none of its room: the slowest search there is.
            let search = r##"{"type":"search","room":"#quiet","query":"deploy","limit":20}"##;
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && start.elapsed().as_secs_f64() < secs {
                tokio::time::sleep_until((start + Duration::from_millis(200 * i + 7 * s)).into())
                    .await;
                if wr
                    .write_all(format!("{search}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            drop(wr);
            reader.abort();
        }));
    }
    let stormy = phase(&mut brd, &mut bwr, "s", secs).await?;
    stop.store(true, Ordering::Relaxed);
    for s in searchers {
        let _ = s.await;
    }
    let after = phase(&mut brd, &mut bwr, "a", secs).await?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (sent, results, busy) = (
        sent.load(Ordering::Relaxed),
        results.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    writeln!(
        extra,
        "- reads beside writes: {n} stored messages with \"deploy\" (filled in {fill:.1} s); a bystander's send-to-ack, a message every 20 ms, {secs:.0} s a phase:"
    )
    .ok();
    for (name, h) in [
        ("alone", &quiet),
        ("while 24 connections search \"deploy\" 5/s each", &stormy),
        ("alone again", &after),
    ] {
        writeln!(
            extra,
            "  - {name}: p50 **{:.2} ms**, p99 **{:.2} ms**, max {:.2} ms",
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        )
        .ok();
        eprintln!(
            "bench: storm, {name}: p50 {:.2} ms, p99 {:.2} ms",
            ms(h, 0.5),
            ms(h, 0.99)
        );
    }
    writeln!(
        extra,
        "  - searches: {sent} sent, {results} answered with results, {busy} refused `busy`; p99 during the storm is {:.1}x alone",
        ms(&stormy, 0.99) / ms(&quiet, 0.99).max(0.001)
    )
    .ok();
    eprintln!("bench: storm searches: {sent} sent, {results} results, {busy} busy");
    drop(server);
    Ok(())
}

/// Accounts and TLS: what a login costs the server, what a handshake costs, and how many
/// connect-hello-quit cycles a second a TLS listener takes against a plaintext one.
async fn security(target: &Target, secs: f64, extra: &mut String) -> anyhow::Result<()> {
    use chat_core::client::{Connector, Received, Transport};
    use chat_core::password::{self, PasswordCost};
    use chat_core::protocol::{ClientMsg, ServerMsg};
    use chat_core::tls::{KnownHosts, Trust};

    // One hash at the server's default cost, as a login pays it (verify costs the same).
    let cost = PasswordCost::default();
    let hashes: Vec<Duration> = (0..15)
        .map(|_| {
            let started = Instant::now();
            password::hash("correct horse battery staple", &cost);
            started.elapsed()
        })
        .collect();
    let hash_ms = median_ms(hashes);
    writeln!(
        extra,
        "- argon2id at the default cost ({} KiB, {} passes, {} lane): **{hash_ms:.1} ms per hash** (median of 15; a login verifies one)",
        cost.memory_kib, cost.iterations, cost.lanes
    )
    .ok();
    eprintln!("bench: argon2id {hash_ms:.1} ms");

    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().to_string();
    let tls_server = Server::start(target, &["--tls-self-signed", "--data-dir", &data])?;
    let plain_server = Server::start(target, &[])?;
    let pem = std::fs::read(dir.path().join("tls/self-signed.pem"))?;
    let der: rustls::pki_types::CertificateDer =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem)?;
    let trust = Trust {
        roots: rustls::RootCertStore::empty().into(),
        known: KnownHosts::at(dir.path().join("known_hosts")),
        accept: Some(chat_core::tls::fingerprint(&der)),
    };
    let tls = chat_core::client::TcpConnector::tls(tls_server.addr.to_string(), trust)?;
    let plain = chat_core::client::TcpConnector::new(plain_server.addr.to_string());

    // Handshakes one after another: TCP connect to TLS established.
    let mut handshakes = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let mut t = tls.connect().await?;
        handshakes.push(started.elapsed());
        let _ = t.close().await;
    }
    let mut connects = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let mut t = plain.connect().await?;
        connects.push(started.elapsed());
        let _ = t.close().await;
    }
    let (handshake_ms, connect_ms) = (median_ms(handshakes), median_ms(connects));
    writeln!(
        extra,
        "- TLS 1.3 handshake (self-signed ECDSA P-256, one client at a time): **{handshake_ms:.2} ms** median from connect to established, against {connect_ms:.2} ms for a plaintext connect"
    )
    .ok();

    // Connect, hello, welcome, quit, from 32 clients at once.
    async fn cycles<C: Connector>(connector: Arc<C>, secs: f64) -> f64 {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for p in 0..32 {
            let (done, connector) = (done.clone(), connector.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    i += 1;
                    let Ok(mut t) = connector.connect().await else {
                        continue;
                    };
                    let hello = ClientMsg::Hello {
                        version: 1,
                        name: format!("c{p}x{i}"),
                        password: None,
                    };
                    if t.send(&hello).await.is_err() {
                        continue;
                    }
                    loop {
                        match t.recv().await {
                            Ok(Received::Msg(ServerMsg::Welcome { .. })) => {
                                done.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(Received::Msg(_) | Received::Bad(_)) => {}
                            _ => break,
                        }
                    }
                    let _ = t.send(&ClientMsg::Quit { reason: None }).await;
                    let _ = t.close().await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        done.load(Ordering::Relaxed) as f64 / secs
    }
    let tls_rate = cycles(Arc::new(tls), secs).await;
    let plain_rate = cycles(Arc::new(plain), secs).await;
    writeln!(
        extra,
        "- connect, hello, welcome, quit from 32 clients at once: **{tls_rate:.0}/s over TLS**, {plain_rate:.0}/s in plaintext ({:.2}x)",
        tls_rate / plain_rate
    )
    .ok();
    eprintln!(
        "bench: TLS handshake {handshake_ms:.2} ms, {tls_rate:.0} TLS cycles/s vs {plain_rate:.0} plaintext"
    );
    Ok(())
}

/// The hard limit on open files of this process.
fn fd_limit() -> usize {
    let out = Command::new("sh").args(["-c", "ulimit -Hn"]).output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX)
}

/// `xtask bench-run`: the suite itself (run by `cargo xtask bench` in release).
pub fn run_suite(args: &BenchArgs) -> anyhow::Result<()> {
    let target = match args.target {
        Some(addr) => Target::External {
            addr,
            pid: args.target_pid,
        },
        None => Target::Spawn(
            args.server
                .clone()
                .context("--server (the chat-server binary) is required")?,
        ),
    };
    let wire: Arc<dyn Wire> = match args.wire {
        WireKind::Native => Arc::new(JsonLines),
        WireKind::Irc => Arc::new(Irc),
    };
    let quick = args.quick;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let secs = args.secs.unwrap_or(if quick { 2.0 } else { 4.0 });
    PARALLEL.store(args.parallel as u64, Ordering::Relaxed);
    let rates: Vec<f64> = if args.rates.is_empty() {
        vec![250_000.0, 500_000.0, 1_000_000.0, 2_000_000.0]
    } else {
        args.rates.clone()
    };
    let mut rows = Vec::new();
    let mut extra = String::new();
    runtime.block_on(async {
        // Fan-out: 1 sender to N receivers at rising offered loads.
        let sizes: Vec<usize> = match &args.sizes {
            list if !list.is_empty() => list.clone(),
            _ if quick => vec![100, 1000],
            _ => vec![10, 100, 1000, 5000],
        };
        let want = |part: Part| args.only.is_empty() || args.only.contains(&part);
        for &n in sizes.iter().filter(|_| want(Part::Fanout)) {
            for &deliveries in &rates {
                let rate: f64 = deliveries / n as f64;
                if rate > 100_000.0 {
                    continue;
                }
                let server = Server::start(&target, &[])?;
                let mut row = fanout(
                    &server,
                    wire.clone(),
                    Load::room(n, rate, secs),
                )
                .await?;
                row.scenario = format!("1 sender x {n} receivers");
                eprintln!("bench: {} at {:.0} deliveries/s: {:.0} delivered/s, p99 {:.2} ms {}", row.scenario, row.offered_deliveries, row.delivered, row.p99_ms, row.note);
                rows.push(row);
            }
        }
        // Several senders in one room.
        if want(Part::Senders) {
            let server = Server::start(&target, &[])?;
            let load = Load { senders: 10, ..Load::room(1000, 1000.0, secs) };
            let mut row = fanout(&server, wire.clone(), load).await?;
            row.scenario = "10 senders x 1000 receivers".into();
            eprintln!("bench: {} at {:.0} deliveries/s: {:.0} delivered/s, p99 {:.2} ms {}", row.scenario, row.offered_deliveries, row.delivered, row.p99_ms, row.note);
            rows.push(row);
        }
        // One room where everyone talks, each member about once a second (how IRC servers,
        // which throttle a single fast sender, are loaded to the same delivery rate).
        if want(Part::Talk) {
            let server = Server::start(&target, &[])?;
            let load = Load { talkers: true, ..Load::room(1000, 1000.0, secs) };
            let mut row = fanout(&server, wire.clone(), load).await?;
            row.scenario = "1000 members, all talking (1 message/s each)".into();
            eprintln!("bench: {} at {:.0} deliveries/s: {:.0} delivered/s, p99 {:.2} ms {}", row.scenario, row.offered_deliveries, row.delivered, row.p99_ms, row.note);
            rows.push(row);
        }
        // The kernel's floor for the same loads: a bare write loop on the server's core.
        if want(Part::Floor) {
            for &n in &sizes {
                if n < 1000 {
                    continue;
                }
                let rate = 1_000_000.0 / n as f64;
                let row = floor(Load::room(n, rate, secs)).await?;
                eprintln!("bench: {} at {:.0} deliveries/s: p99 {:.2} ms", row.scenario, row.offered_deliveries, row.p99_ms);
                rows.push(row);
            }
        }
        if want(Part::Floor) && want(Part::Rooms) {
            let rooms = if quick { 200 } else { 1000 };
            for deliveries in [50_000.0, 100_000.0] {
                let load = Load { rooms, receivers: 10, ..Load::room(10, deliveries / 10.0, secs) };
                let row = floor(load).await?;
                eprintln!("bench: {} at {:.0} deliveries/s: p99 {:.2} ms", row.scenario, row.offered_deliveries, row.p99_ms);
                rows.push(row);
            }
        }
        // Many rooms: 1000 rooms of 10 members, one of whom talks.
        let room_rates = if args.rates.is_empty() {
            vec![25_000.0, 50_000.0, 100_000.0]
        } else {
            rates.clone()
        };
        for &deliveries in room_rates.iter().filter(|_| want(Part::Rooms)) {
            let rooms = if quick { 200 } else { 1000 };
            let server = Server::start(&target, &[])?;
            let load = Load { rooms, receivers: 9, ..Load::room(9, deliveries / 9.0, secs) };
            let mut row = fanout(&server, wire.clone(), load).await?;
            row.scenario = format!("{rooms} rooms x 10 members (1 sender, 9 receivers each)");
            eprintln!("bench: {} at {:.0} deliveries/s: {:.0} delivered/s, p99 {:.2} ms {}", row.scenario, row.offered_deliveries, row.delivered, row.p99_ms, row.note);
            rows.push(row);
        }
        // Slow consumers: 10% of receivers stop reading; the others must not notice.
        if want(Part::Slow) {
            let server = Server::start(&target, &["--send-queue", "256"])?;
            let mut row = fanout(
                &server,
                wire.clone(),
                Load { padding: 1000, stalled: 20, ..Load::room(200, 2000.0, secs) },
            )
            .await?;
            row.scenario = "slow consumers: 200 receivers, 20 stalled, 1 KB messages".into();
            eprintln!("bench: {}: p99 {:.2} ms {}", row.scenario, row.p99_ms, row.note);
            rows.push(row);
        }
        // Churn.
        if want(Part::Churn) {
            let server = Server::start(&target, &[])?;
            let rate = churn(&server, wire.clone(), 32, secs).await?;
            writeln!(extra, "- connect, register and quit: **{rate:.0} connections/s** (32 in parallel, {secs} s)").ok();
            eprintln!("bench: churn {rate:.0}/s");
        }
        // Idle connections.
        if want(Part::Idle) {
            // Each process may hold at most `ulimit -Hn` descriptors (20,000 on this machine
            // kind, and not raisable without CAP_SYS_RESOURCE): the server and this generator
            // each need one per connection.
            let limit = fd_limit().saturating_sub(200);
            let n = if quick { 10_000 } else { 50_000 }.min(limit);
            let server = Server::start(&target, &[])?;
            let (row, conns) = idle(&server, wire.clone(), n).await?;
            writeln!(
                extra,
                "- idle connections: **{}** held; server RSS **{:.0} bytes per idle connection**; registered at {:.0} connections/s {}",
                conns.len(),
                row.p50_ms,
                row.delivered,
                row.note
            )
            .ok();
            eprintln!("bench: {} , {:.0} B each", row.scenario, row.p50_ms);
            drop(conns);
        }
        // Durable (SQLite, group commit) against in-memory: what acknowledging only committed
        // messages costs the sender, and what it costs the other members.
        if want(Part::Durable) && matches!(target, Target::Spawn(_)) {
            for rate in [1_000.0, 10_000.0, 50_000.0] {
                for durable in [false, true] {
                    let dir = tempfile::tempdir()?;
                    let data = dir.path().to_string_lossy().to_string();
                    let extra: Vec<&str> = if durable { vec!["--data-dir", &data] } else { vec![] };
                    let mode = if durable { "durable" } else { "in memory" };
                    // The sender alone in its room reads its own echo: the acknowledgement.
                    let server = Server::start(&target, &extra)?;
                    let load = Load { talkers: true, ..Load::room(1, rate, secs) };
                    let mut row = fanout(&server, wire.clone(), load).await?;
                    row.scenario = format!("send to acknowledgement, {mode}");
                    eprintln!("bench: {} at {rate:.0} msg/s: p50 {:.2} ms, p99 {:.2} ms {}", row.scenario, row.p50_ms, row.p99_ms, row.note);
                    rows.push(row);
                    drop(server);
                    let server = Server::start(&target, &extra)?;
                    let mut row = fanout(&server, wire.clone(), Load::room(10, rate, secs)).await?;
                    row.scenario = format!("1 sender x 10 receivers, {mode}");
                    eprintln!("bench: {} at {rate:.0} msg/s: p50 {:.2} ms, p99 {:.2} ms {}", row.scenario, row.p50_ms, row.p99_ms, row.note);
                    rows.push(row);
                }
            }
        }
        if want(Part::Security) && matches!(target, Target::Spawn(_)) {
            security(&target, secs, &mut extra).await?;
        }
        if want(Part::Search) && matches!(target, Target::Spawn(_)) {
            search(&target, if quick { 20_000 } else { 100_000 }, &mut extra).await?;
        }
        if want(Part::Storm) && matches!(target, Target::Spawn(_)) {
            storm(&target, if quick { 10_000 } else { 40_000 }, if quick { secs.max(4.0) } else { 10.0 }, &mut extra).await?;
        }
        // Over IRC: our IRC listener and ngIRCd, the same loads, one after the other.
        if want(Part::Irc) && let Target::Spawn(binary) = &target {
            let ngircd = which("ngircd");
            if !ngircd {
                writeln!(extra, "- over IRC: ngIRCd is not installed (apt-get install ngircd); only this server was measured").ok();
            }
            let rooms = if quick { 200 } else { 1000 };
            let loads = [
                ("1 sender x 1000 receivers", Load::room(1000, 1000.0, secs)),
                ("1 sender x 1000 receivers", Load::room(1000, 2000.0, secs)),
                ("1 sender x 1000 receivers", Load::room(1000, 4000.0, secs)),
                ("1000 rooms x 10 members", Load { rooms, receivers: 9, ..Load::room(9, 50_000.0 / 9.0, secs) }),
            ];
            for (name, load) in loads {
                for ours in [true, false] {
                    if !ours && !ngircd {
                        continue;
                    }
                    let server = if ours { Server::spawn_irc(binary)? } else { Server::spawn_ngircd()? };
                    let who = if ours { "chat-server (IRC)" } else { "ngIRCd 26" };
                    // A server that cannot take the load (resets connections while they
                    // register) is a result too, not the end of the suite.
                    let mut row = match fanout(&server, Arc::new(Irc), load).await {
                        Ok(row) => row,
                        Err(err) => Row {
                            offered_msgs: load.rate,
                            offered_deliveries: load.rate * load.receivers as f64,
                            p50_ms: f64::NAN,
                            p99_ms: f64::NAN,
                            p999_ms: f64::NAN,
                            max_ms: f64::NAN,
                            cpu_per_million: f64::NAN,
                            syscw_per_delivery: f64::NAN,
                            note: format!("failed: {err}"),
                            ..Row::default()
                        },
                    };
                    row.scenario = format!("IRC, {who}: {name}");
                    eprintln!("bench: {} at {:.0} deliveries/s: {:.0} delivered/s, p50 {:.2} ms, p99 {:.2} ms {}", row.scenario, row.offered_deliveries, row.delivered, row.p50_ms, row.p99_ms, row.note);
                    rows.push(row);
                }
            }
        }
        anyhow::Ok(())
    })?;
    let report = render(&rows, &extra);
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report)?;
    }
    Ok(())
}

fn render(rows: &[Row], extra: &str) -> String {
    let mut out = String::new();
    writeln!(out, "| load | offered msg/s | offered deliveries/s | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU s / 1M deliveries | write syscalls / delivery | notes |").ok();
    writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    .ok();
    let known = |v: f64, digits: usize| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.digits$}")
        }
    };
    for r in rows {
        writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} |",
            r.scenario,
            r.offered_msgs,
            r.offered_deliveries,
            r.delivered,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            known(r.cpu_per_million, 2),
            known(r.syscw_per_delivery, 3),
            r.note
        )
        .ok();
    }
    out.push('\n');
    out.push_str(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_wire_finds_payloads_and_stamps() {
        let wire = JsonLines;
        let line = br##"{"type":"message","id":7,"ts":1,"room":"#r3","from":"s3x0","text":"t1234567:xx"}"##;
        let payload = wire.payload(line).unwrap();
        assert_eq!(payload, b"t1234567:xx");
        assert_eq!(stamp(payload), Some(1_234_567));
        // Not a message, a message without a stamp, a damaged stamp.
        assert_eq!(wire.payload(br##"{"type":"joined","room":"#r3"}"##), None);
        assert_eq!(stamp(b"warm"), None);
        assert_eq!(stamp(b"t12a4:"), None);
        assert_eq!(stamp(b"t99999999999999999999999:"), None);
        assert!(wire.is_ready(br##"{"type":"history","room":"#lobby","messages":[]}"##));
    }

    #[test]
    fn what_the_generator_sends_is_what_the_server_parses() {
        let wire = JsonLines;
        let mut out = wire.register("r1", false);
        out.extend(wire.join("#r1"));
        wire.say("#r1", "t42:", &mut out);
        let lines: Vec<_> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 4);
        for line in lines {
            let msg = chat_core::codec::decode_client(line);
            assert!(msg.is_ok(), "{:?}: {msg:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_counter_line_still_being_written_is_not_read() {
        let log = "stats deliveries=5 writes=2\nWARN something\nstats deliveries=90 writes=";
        assert_eq!(complete_stats_lines(log), ["stats deliveries=5 writes=2"]);
    }

    #[test]
    fn the_irc_wire_reads_privmsg_and_numerics() {
        let wire = Irc;
        let line = b":s0x1!~s0x1@localhost PRIVMSG #lobby :t42:pad\r";
        assert_eq!(wire.payload(line), Some(&b"t42:pad"[..]));
        assert_eq!(stamp(wire.payload(line).unwrap()), Some(42));
        assert_eq!(wire.payload(b":irc.local NOTICE r0x1 :hello\r"), None);
        assert!(wire.is_ready(b":irc.local 366 r0x1 #lobby :End of NAMES list\r"));
        assert!(wire.is_ready(b":irc.local 376 r0x1 :End of MOTD command\r"));
        assert!(wire.is_ready(b":irc.local 422 r0x1 :MOTD file is missing\r"));
        assert!(!wire.is_ready(b":irc.local 001 r0x1 :Welcome\r"));
        let mut out = Vec::new();
        wire.say("#r1", "t7:", &mut out);
        assert_eq!(out, b"PRIVMSG #r1 :t7:\r\n");
    }
}
