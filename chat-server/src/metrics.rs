//! Metrics and health checks over HTTP (`--metrics-listen`): `/metrics` in the OpenMetrics
//! text format Prometheus scrapes (written by `prometheus-client`), `/healthz` (the process
//! answers) and `/readyz` (it listens and its store commits; 503 otherwise).
//!
//! The counters are atomics the tasks bump as they work; the gauges the hub task sets after
//! each batch. A scrape only reads them.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where metrics are served unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// The address `--metrics-listen` names: `off` is none, a port alone is on 127.0.0.1.
pub fn address(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Some((Ipv4Addr::LOCALHOST, port).into()));
    }
    text.to_socket_addrs()
        .map_err(|err| format!("not an address (host:port, a port, or off): {err}"))?
        .next()
        .map(Some)
        .ok_or_else(|| "names no address".to_string())
}

/// Labels of refused connections.
type Reason = Vec<(&'static str, &'static str)>;

/// Everything the server counts, and the registry that writes it out.
pub struct Metrics {
    registry: Registry,
    /// Open connections (native and IRC, TLS or not).
    pub connections: Gauge,
    /// Connections refused at accept, by reason.
    refused: Family<Reason, Counter>,
    /// Registered accounts.
    pub accounts: Gauge,
    /// Rooms held in memory.
    pub rooms: Gauge,
    /// Room and direct messages accepted from clients.
    pub messages_in: Counter,
    /// Messages queued to connections, one per recipient.
    pub deliveries: Counter,
    /// Clients dropped because they did not read what was sent to them.
    pub queue_drops: Counter,
    /// Clients dropped for flooding.
    pub flood_kicks: Counter,
    /// Failed logins (wrong password, or locked out).
    pub login_failures: Counter,
    /// History pages and searches refused because the store's queue of reads was full.
    pub reads_busy: Counter,
    /// How long each store transaction took to commit.
    pub commit_seconds: Histogram,
    /// 1 while the store commits, 0 while it fails.
    pub store_up: Gauge,
    /// Set once the listeners are up.
    listening: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chat");
        let metrics = Self {
            connections: Gauge::default(),
            refused: Family::default(),
            accounts: Gauge::default(),
            rooms: Gauge::default(),
            messages_in: Counter::default(),
            deliveries: Counter::default(),
            queue_drops: Counter::default(),
            flood_kicks: Counter::default(),
            login_failures: Counter::default(),
            reads_busy: Counter::default(),
            // 50 µs to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            store_up: Gauge::default(),
            listening: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open connections",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at accept, by reason",
            metrics.refused.clone(),
        );
        registry.register("accounts", "Registered accounts", metrics.accounts.clone());
        registry.register("rooms", "Rooms held in memory", metrics.rooms.clone());
        registry.register(
            "messages_received",
            "Room and direct messages accepted from clients",
            metrics.messages_in.clone(),
        );
        registry.register(
            "deliveries",
            "Messages queued to connections, one per recipient",
            metrics.deliveries.clone(),
        );
        registry.register(
            "queue_drops",
            "Clients disconnected because they did not read what was sent to them",
            metrics.queue_drops.clone(),
        );
        registry.register(
            "flood_kicks",
            "Clients disconnected for flooding",
            metrics.flood_kicks.clone(),
        );
        registry.register(
            "login_failures",
            "Failed logins (wrong password or locked out)",
            metrics.login_failures.clone(),
        );
        registry.register(
            "store_reads_busy",
            "History pages and searches refused (busy) because the store's read queue was full",
            metrics.reads_busy.clone(),
        );
        registry.register_with_unit(
            "store_commit",
            "Time to commit one store transaction",
            Unit::Seconds,
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "store_up",
            "1 while the store commits, 0 while it fails",
            metrics.store_up.clone(),
        );
        metrics.store_up.set(1);
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a refused connection.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Notes that the listeners are up.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Relaxed);
    }

    /// Ready for traffic: listening, and the store commits.
    pub fn ready(&self) -> bool {
        self.listening.load(Ordering::Relaxed) && self.store_up.get() == 1
    }

    /// The OpenMetrics text of everything.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Most scrapes answered at once; more wait for their turn.
const MAX_SCRAPES: usize = 16;
/// A request that has not arrived whole by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request accepted (headers included).
const MAX_REQUEST: usize = 8192;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics)).await;
            drop(permit);
        });
    }
}

/// Reads one request and answers it, then closes.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let (method, path) = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    request.method.unwrap_or_default().to_string(),
                    request.path.unwrap_or_default().to_string(),
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => {}
            _ => {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    "bad request\n",
                    true,
                )
                .await;
            }
        }
    };
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
            head,
        )
        .await;
    }
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => {
            let body = metrics.render();
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
                head,
            )
            .await
        }
        "/healthz" | "/livez" => respond(&mut stream, "200 OK", "text/plain", "ok\n", head).await,
        "/readyz" if metrics.ready() => {
            respond(&mut stream, "200 OK", "text/plain", "ready\n", head).await
        }
        "/readyz" => {
            let why = if metrics.store_up.get() == 1 {
                "starting\n"
            } else {
                "store unavailable\n"
            };
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                why,
                head,
            )
            .await
        }
        _ => {
            let body = "not found: /metrics, /healthz and /readyz are here\n";
            respond(&mut stream, "404 Not Found", "text/plain", body, head).await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("off"), Ok(None));
        assert_eq!(address("9477"), Ok(Some("127.0.0.1:9477".parse().unwrap())));
        assert_eq!(address("[::1]:9"), Ok(Some("[::1]:9".parse().unwrap())));
        assert!(address("nowhere").is_err());
    }

    #[test]
    fn the_text_names_every_metric() {
        let metrics = Metrics::new();
        metrics.messages_in.inc_by(3);
        metrics.refuse("throttled");
        metrics.commit_seconds.observe(0.002);
        let text = metrics.render();
        for line in [
            "chat_messages_received_total 3",
            "chat_connections_refused_total{reason=\"throttled\"} 1",
            "chat_store_commit_seconds_count 1",
            "chat_store_up 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
