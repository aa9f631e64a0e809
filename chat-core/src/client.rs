//! The async side of a client: a [`Transport`] trait with TCP and in-memory implementations,
//! and a driver task that runs a [`Session`], reconnecting with backoff.
//!
//! The driver is a small loop: it performs the session's outputs (connect, send, disconnect),
//! feeds it what arrives (server messages, the user's actions, deadlines) with the current time,
//! and tells the front-end through a callback when something changed. All client behaviour stays
//! in the session; front-ends read its state through [`ClientHandle::with_session`].

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::codec::{self, FrameError, LineDecoder};
use crate::protocol::{ClientMsg, ServerMsg, UnixMillis};
use crate::session::{ConnState, Event, Output, Session};

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a transport hands back from [`Transport::recv`].
#[derive(Debug)]
pub enum Received {
    /// A message.
    Msg(ServerMsg),
    /// A line that could not be read; the stream goes on.
    Bad(FrameError),
    /// The server closed the connection.
    Closed,
}

/// A connection to the server, carrying typed messages.
#[async_trait]
pub trait Transport: Send {
    /// Sends one message.
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()>;
    /// Waits for the next message. Must be cancel-safe: dropping the future loses nothing.
    async fn recv(&mut self) -> io::Result<Received>;
    /// Flushes and closes the sending side.
    async fn close(&mut self) -> io::Result<()>;
}

/// Opens transports, once at start and again on every reconnect.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The transport it opens.
    type Transport: Transport + 'static;
    /// Opens a connection.
    async fn connect(&self) -> io::Result<Self::Transport>;
    /// Where it connects to, for messages.
    fn describe(&self) -> String;
}

/// A byte stream a [`TcpTransport`] can run over: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The native protocol over TCP, or over TLS.
pub struct TcpTransport {
    stream: Box<dyn Stream>,
    decoder: LineDecoder,
    /// Bytes read but not yet decoded; lives here so `recv` is cancel-safe.
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl TcpTransport {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream, max_line: usize) -> Self {
        let _ = stream.set_nodelay(true);
        Self::over(Box::new(stream), max_line)
    }

    /// Runs over any byte stream (a TLS one, say).
    pub fn over(stream: Box<dyn Stream>, max_line: usize) -> Self {
        Self {
            stream,
            decoder: LineDecoder::new(max_line),
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::new(),
        }
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        self.write_buf.clear();
        codec::encode(msg, &mut self.write_buf);
        self.stream.write_all(&self.write_buf).await
    }

    async fn recv(&mut self) -> io::Result<Received> {
        loop {
            if let Some(line) = self.decoder.next_line(&mut self.read_buf) {
                return Ok(match line.and_then(|l| codec::decode_server(&l)) {
                    Ok(msg) => Received::Msg(msg),
                    Err(err) => Received::Bad(err),
                });
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Ok(Received::Closed);
            }
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").finish_non_exhaustive()
    }
}

/// Connects over TCP to `addr` (`host:port`), with TLS if it has a configuration.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    /// `host:port`.
    pub addr: String,
    /// Longest line accepted from the server.
    pub max_line: usize,
    /// TLS, if the connection is encrypted.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl TcpConnector {
    /// A connector for `host:port`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            max_line: 1 << 20,
            tls: None,
        }
    }

    /// A connector for `host:port` over TLS, trusting what `trust` trusts.
    pub fn tls(addr: impl Into<String>, trust: crate::tls::Trust) -> io::Result<Self> {
        let addr = addr.into();
        let config = crate::tls::client_config(&addr, trust)?;
        Ok(Self {
            tls: Some(config),
            ..Self::new(addr)
        })
    }
}

#[async_trait]
impl Connector for TcpConnector {
    type Transport = TcpTransport;

    async fn connect(&self) -> io::Result<TcpTransport> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| timed_out())??;
        let Some(config) = &self.tls else {
            return Ok(TcpTransport::new(stream, self.max_line));
        };
        let _ = stream.set_nodelay(true);
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| timed_out())??;
        Ok(TcpTransport::over(Box::new(tls), self.max_line))
    }

    fn describe(&self) -> String {
        self.addr.clone()
    }
}

/// One end of an in-memory connection, as seen by the client.
#[derive(Debug)]
pub struct MemoryTransport {
    tx: mpsc::UnboundedSender<ClientMsg>,
    rx: mpsc::UnboundedReceiver<ServerMsg>,
}

/// The other end of an in-memory connection: whatever plays the server.
#[derive(Debug)]
pub struct MemoryPeer {
    /// Messages the client sent.
    pub rx: mpsc::UnboundedReceiver<ClientMsg>,
    /// Send messages to the client; dropping it closes the connection.
    pub tx: mpsc::UnboundedSender<ServerMsg>,
}

/// A connected in-memory pair.
pub fn memory_pair() -> (MemoryTransport, MemoryPeer) {
    let (client_tx, client_rx) = mpsc::unbounded_channel();
    let (server_tx, server_rx) = mpsc::unbounded_channel();
    (
        MemoryTransport {
            tx: client_tx,
            rx: server_rx,
        },
        MemoryPeer {
            rx: client_rx,
            tx: server_tx,
        },
    )
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        self.tx
            .send(msg.clone())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "peer gone"))
    }

    async fn recv(&mut self) -> io::Result<Received> {
        Ok(match self.rx.recv().await {
            Some(msg) => Received::Msg(msg),
            None => Received::Closed,
        })
    }

    async fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands each new in-memory connection's server end to a listener, like a socket accept queue.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    accept: mpsc::UnboundedSender<MemoryPeer>,
}

impl MemoryConnector {
    /// A connector and the queue on which its connections arrive.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<MemoryPeer>) {
        let (accept, incoming) = mpsc::unbounded_channel();
        (Self { accept }, incoming)
    }
}

#[async_trait]
impl Connector for MemoryConnector {
    type Transport = MemoryTransport;

    async fn connect(&self) -> io::Result<MemoryTransport> {
        let (transport, peer) = memory_pair();
        self.accept
            .send(peer)
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "nobody listening"))?;
        Ok(transport)
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// The current time as the session takes it: the wall clock when the process first asked,
/// moved on by the monotonic clock. Reconnect backoff, pings and pacing therefore never jump
/// when the system clock is stepped; the times shown on local notices stay close to the wall
/// clock (messages carry the server's own stamps).
pub fn now_millis() -> UnixMillis {
    static START: std::sync::OnceLock<(std::time::Instant, UnixMillis)> =
        std::sync::OnceLock::new();
    let (instant, wall) = START.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (std::time::Instant::now(), wall)
    });
    wall + instant.elapsed().as_millis() as u64
}

type Action = Box<dyn FnOnce(&mut Session, UnixMillis) + Send>;

/// The front-end's handle on a running client.
#[derive(Clone)]
pub struct ClientHandle {
    session: Arc<Mutex<Session>>,
    actions: mpsc::UnboundedSender<Action>,
}

impl ClientHandle {
    /// Reads the session's state (to render it).
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        f(&session)
    }

    /// Runs `f` on the session inside the driver, which then performs the outputs.
    pub fn act(&self, f: impl FnOnce(&mut Session, UnixMillis) + Send + 'static) {
        let _ = self.actions.send(Box::new(f));
    }

    /// Handles a line the user typed (text or a `/command`).
    pub fn submit(&self, line: impl Into<String>) {
        let line = line.into();
        self.act(move |s, now| s.handle_input(now, &line));
    }

    /// Waits until the driver has handled every action submitted before this call.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.act(move |_, _| {
            let _ = tx.send(());
        });
        let _ = rx.await;
    }

    /// Retries registration with another name after a refusal.
    pub fn set_name(&self, name: impl Into<String>) {
        let name = name.into();
        self.act(move |s, now| s.set_name(now, &name));
    }
}

/// A driver that runs nothing by itself, for front-end tests: the test feeds server messages,
/// runs the actions the UI submitted, and inspects what the session wants to send.
pub struct LocalDriver {
    session: Arc<Mutex<Session>>,
    actions: mpsc::UnboundedReceiver<Action>,
    /// The time passed to the session; tests move it by hand.
    pub now: UnixMillis,
}

impl LocalDriver {
    /// Runs every action the UI submitted, then drains the session's outputs.
    pub fn run_pending(&mut self) -> Vec<Output> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(action) = self.actions.try_recv() {
            action(&mut session, self.now);
        }
        std::iter::from_fn(|| session.poll_output()).collect()
    }

    /// Delivers a server message to the session, then runs pending actions.
    pub fn server(&mut self, msg: ServerMsg) -> Vec<Output> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_server(self.now, msg);
        self.run_pending()
    }

    /// Tells the session a connection is open (it will say hello).
    pub fn connected(&mut self) -> Vec<Output> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_connected(self.now);
        self.run_pending()
    }

    /// Tells the session the connection dropped.
    pub fn disconnected(&mut self, reason: &str) -> Vec<Output> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_disconnected(self.now, reason);
        self.run_pending()
    }
}

/// A handle whose actions are run by a [`LocalDriver`] instead of a task.
pub fn local(session: Session, now: UnixMillis) -> (ClientHandle, LocalDriver) {
    let session = Arc::new(Mutex::new(session));
    let (actions, rx) = mpsc::unbounded_channel();
    let handle = ClientHandle {
        session: session.clone(),
        actions,
    };
    let driver = LocalDriver {
        session,
        actions: rx,
        now,
    };
    (handle, driver)
}

/// Starts the driver task for `session` on the current tokio runtime. `notify` is called, from
/// the driver task, with each batch of events; keep it quick (wake a UI, print lines).
/// The returned join handle completes when the session is closed.
pub fn spawn<C: Connector>(
    connector: C,
    session: Session,
    notify: impl Fn(&[Event]) + Send + Sync + 'static,
) -> (ClientHandle, tokio::task::JoinHandle<()>) {
    let session = Arc::new(Mutex::new(session));
    let (actions, rx) = mpsc::unbounded_channel();
    let handle = ClientHandle {
        session: session.clone(),
        actions,
    };
    let task = tokio::spawn(drive(connector, session, rx, notify));
    (handle, task)
}

async fn drive<C: Connector>(
    connector: C,
    session: Arc<Mutex<Session>>,
    mut actions: mpsc::UnboundedReceiver<Action>,
    notify: impl Fn(&[Event]),
) {
    let lock = || session.lock().unwrap_or_else(|e| e.into_inner());
    lock().start(now_millis());
    let mut transport: Option<C::Transport> = None;
    loop {
        // Perform everything the session asked for.
        let (outputs, timeout, closed) = {
            let mut s = lock();
            let outputs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
            let closed = matches!(s.state(), ConnState::Closed { .. });
            (outputs, s.poll_timeout(), closed)
        };
        let mut events = Vec::new();
        let mut connect = false;
        for output in outputs {
            match output {
                Output::Event(event) => events.push(event),
                Output::Connect => connect = true,
                Output::Disconnect => {
                    transport = None;
                    lock().handle_disconnected(now_millis(), "server stopped answering pings");
                }
                Output::Send(msg) => {
                    if let Some(t) = transport.as_mut()
                        && let Err(err) = t.send(&msg).await
                    {
                        transport = None;
                        lock().handle_disconnected(now_millis(), &err.to_string());
                    }
                }
            }
        }
        if !events.is_empty() {
            notify(&events);
        }
        if closed {
            if let Some(mut t) = transport.take() {
                let _ = t.close().await;
                // Give the server a moment to read our quit before the socket goes away.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(Received::Msg(_) | Received::Bad(_)) = t.recv().await {}
                })
                .await;
            }
            return;
        }
        if connect {
            let result = connector.connect().await;
            let now = now_millis();
            match result {
                Ok(t) => {
                    transport = Some(t);
                    lock().handle_connected(now);
                }
                Err(err) => lock().handle_connect_failed(
                    now,
                    &format!("cannot connect to {}: {err}", connector.describe()),
                ),
            }
            continue;
        }
        let sleep = async {
            match timeout {
                Some(at) => {
                    let wait = at.saturating_sub(now_millis());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                None => std::future::pending().await,
            }
        };
        let received = async {
            match transport.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            action = actions.recv() => match action {
                Some(action) => action(&mut lock(), now_millis()),
                // Every handle is gone: leave politely.
                None => lock().handle_input(now_millis(), "/quit"),
            },
            received = received => {
                let now = now_millis();
                match received {
                    Ok(Received::Msg(msg)) => lock().handle_server(now, msg),
                    Ok(Received::Bad(err)) => lock().handle_unreadable(now, &err.to_string()),
                    Ok(Received::Closed) => {
                        transport = None;
                        lock().handle_disconnected(now, "the server closed the connection");
                    }
                    Err(err) => {
                        transport = None;
                        lock().handle_disconnected(now, &err.to_string());
                    }
                }
            }
            () = sleep => lock().handle_timeout(now_millis()),
        }
    }
}
