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
use tokio::net::TcpListener;

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

/// Connections served at once; past this a new one is closed at once (a probe retries), so
/// that slow clients can hold at most this many tasks and file descriptors.
const MAX_CONNECTIONS: usize = 1024;
/// A request whose headers have not arrived whole by then is dropped (slow clients).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer than this, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The largest request accepted (headers included).
const MAX_REQUEST: usize = 8192;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
/// HTTP/1.1 by hyper, each connection on its own task: a client that sends nothing, or its
/// headers a byte at a time, holds only its own connection until the header timeout, never
/// another's answer.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Full: closing now keeps the accept loop (and everyone else's answers) moving.
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

type Response = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

/// The answer to one request.
fn answer<B>(request: &hyper::Request<B>, metrics: &Metrics) -> Response {
    use hyper::{Method, StatusCode};
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
            head,
        );
    }
    match request.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
            head,
        ),
        "/healthz" | "/livez" => respond(StatusCode::OK, "text/plain", "ok\n".into(), head),
        "/readyz" if metrics.ready() => {
            respond(StatusCode::OK, "text/plain", "ready\n".into(), head)
        }
        "/readyz" => {
            let why = if metrics.store_up.get() == 1 {
                "starting\n"
            } else {
                "store unavailable\n"
            };
            respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                why.into(),
                head,
            )
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics, /healthz and /readyz are here\n".into(),
            head,
        ),
    }
}

fn respond(status: hyper::StatusCode, content_type: &str, body: String, head: bool) -> Response {
    let length = body.len();
    let body = if head { String::new() } else { body };
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CONTENT_LENGTH, length)
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(http_body_util::Full::new(body.into()))
        .expect("a response of known parts")
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
