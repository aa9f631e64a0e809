//! A client's socket, plaintext, TLS or WebSocket, with the non-blocking operations the reader and the
//! [`outbox`](crate::outbox) use: write what the kernel takes now, wait until it takes more,
//! read what has arrived.
//!
//! TLS is rustls driven by hand (sans-IO), so that a TLS connection keeps the plaintext path's
//! shape: the hub's flushers write every connection in one pass, without waking a task per
//! connection. Plaintext handed to [`Socket::try_write`] is encrypted at once; the ciphertext goes
//! to the kernel as far as it takes it, and the connection's drain task ([`Socket::drain`])
//! writes the rest when the socket becomes writable. rustls buffers at most [`TLS_BUFFER`]
//! bytes; past that a write takes nothing (`WouldBlock`), which the outbox treats as a client
//! that reads slowly, with the same bounds and timeout as plaintext.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Most ciphertext rustls holds for one connection before writes wait.
pub const TLS_BUFFER: usize = 256 << 10;

/// A connected client.
#[derive(Clone)]
pub enum Socket {
    /// Plaintext TCP.
    Plain(Arc<TcpStream>),
    /// TLS over TCP, after the handshake.
    Tls(Arc<TlsSocket>),
    /// IRC over WebSocket, after the handshake.
    Ws(Arc<WsSocket>),
}

/// A TLS connection whose handshake is done.
pub struct TlsSocket {
    tcp: Arc<TcpStream>,
    tls: Mutex<ServerConnection>,
    /// Ciphertext is left over for the drain task to write.
    leftover: Notify,
}

/// Writes to a shared `TcpStream` without waiting (rustls wants `io::Write`).
struct NonBlocking<'a>(&'a TcpStream);

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<Arc<TcpStream>> for Socket {
    fn from(tcp: Arc<TcpStream>) -> Self {
        Socket::Plain(tcp)
    }
}

impl Socket {
    /// Wraps a TLS connection whose handshake is complete.
    pub fn tls(tcp: TcpStream, mut tls: ServerConnection) -> Self {
        tls.set_buffer_limit(Some(TLS_BUFFER));
        Socket::Tls(Arc::new(TlsSocket {
            tcp: Arc::new(tcp),
            tls: Mutex::new(tls),
            leftover: Notify::new(),
        }))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(tcp) => tcp,
            Socket::Tls(t) => &t.tcp,
            Socket::Ws(w) => &w.tcp,
        }
    }

    /// Writes as much of `buf` as can go without waiting; `WouldBlock` when nothing can.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write(buf),
            Socket::Tls(t) => t.try_write(buf),
            Socket::Ws(w) => w.try_write(buf),
        }
    }

    /// Waits until a write can make progress.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.writable().await,
            Socket::Tls(t) => t.flushed().await,
            Socket::Ws(w) => w.flushed().await,
        }
    }

    /// Reads what has arrived into `buf`. `Ok(None)` at the end of the stream; `Ok(Some(0))`
    /// when nothing was ready (or, over TLS, only records that carry no data).
    pub fn try_read(&self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        match self {
            Socket::Plain(tcp) => match tcp.try_read_buf(buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Some(0)),
                Err(err) => Err(err),
            },
            Socket::Tls(t) => t.try_read(buf),
            Socket::Ws(w) => w.try_read(buf),
        }
    }

    /// Waits until there is something to read.
    pub async fn readable(&self) -> io::Result<()> {
        if let Socket::Ws(w) = self
            && w.more.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        self.tcp().readable().await
    }

    /// Runs for the connection's lifetime: writes ciphertext left over by a write the kernel
    /// did not take whole. Plaintext has nothing left over, so it waits forever.
    pub async fn drain(&self) {
        match self {
            Socket::Plain(_) => std::future::pending().await,
            Socket::Tls(t) => loop {
                t.leftover.notified().await;
                if t.flushed().await.is_err() {
                    return;
                }
            },
            Socket::Ws(w) => loop {
                w.leftover.notified().await;
                if w.flushed().await.is_err() {
                    return;
                }
            },
        }
    }

    /// Ends the sending side once everything written has gone out (TLS: then `close_notify`).
    pub async fn finish(&self) {
        if let Socket::Tls(t) = self {
            let _ = t.flushed().await;
            t.lock().send_close_notify();
            let _ = t.flushed().await;
        }
        if let Socket::Ws(w) = self {
            let _ = w.flushed().await;
            let _ = w.lock().close(None);
            let _ = w.flushed().await;
        }
        // Tokio's `shutdown` needs the socket exclusively; it is shared here.
        let _ = socket2::SockRef::from(self.tcp()).shutdown(Shutdown::Write);
    }
}

impl TlsSocket {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes pending ciphertext to the kernel; true when none is left.
    fn push_out(&self, tls: &mut ServerConnection) -> io::Result<bool> {
        while tls.wants_write() {
            match tls.write_tls(&mut NonBlocking(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut tls = self.lock();
        // Ciphertext of earlier writes goes first; while it waits, nothing new is taken.
        if !self.push_out(&mut tls)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if !self.push_out(&mut tls)? {
            self.leftover.notify_one();
        }
        Ok(n)
    }

    /// Waits until every ciphertext byte is with the kernel.
    async fn flushed(&self) -> io::Result<()> {
        loop {
            if self.push_out(&mut self.lock())? {
                return Ok(());
            }
            self.tcp.writable().await?;
        }
    }

    fn try_read(&self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let mut raw = [0u8; 16 << 10];
        let (n, eof) = match self.tcp.try_read(&mut raw) {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => (0, false),
            Err(err) => return Err(err),
        };
        let mut tls = self.lock();
        let mut incoming = &raw[..n];
        while !incoming.is_empty() {
            tls.read_tls(&mut incoming)?;
            tls.process_new_packets().map_err(io::Error::other)?;
        }
        let mut got = 0;
        let mut closed = eof;
        let mut chunk = [0u8; 4096];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => {
                    // A clean `close_notify` from the client.
                    closed = true;
                    break;
                }
                Ok(k) => {
                    buf.extend_from_slice(&chunk[..k]);
                    got += k;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        // Reading may have produced records to send (alerts, key updates).
        if !self.push_out(&mut tls)? {
            self.leftover.notify_one();
        }
        if closed && got == 0 {
            return Ok(None);
        }
        Ok(Some(got))
    }
}

/// Most bytes of frames tungstenite holds for one WebSocket connection before writes wait.
pub const WS_BUFFER: usize = 256 << 10;

/// Most bytes of messages taken in one read.
const WS_READ: usize = 16 << 10;

/// An IRC connection over WebSocket (the IRCv3 WebSocket transport): each message one IRC
/// line, without its CR LF. The `binary.ircv3.net` subprotocol sends binary messages,
/// `text.ircv3.net` (or none) text messages; either kind is read.
pub struct WsSocket {
    tcp: Arc<TcpStream>,
    ws: Mutex<tungstenite::WebSocket<Io>>,
    binary: bool,
    /// Frames are left over for the drain task to write.
    leftover: Notify,
    /// A read stopped at [`WS_READ`] with messages still buffered: read again without waiting.
    more: std::sync::atomic::AtomicBool,
}

/// The TCP stream as tungstenite's stream: reads and writes what can go now, `WouldBlock`
/// otherwise.
struct Io(Arc<TcpStream>);

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The subprotocols offered, in the order the server prefers when the client names both
/// first-come: the client's order decides.
const SUBPROTOCOLS: [&str; 2] = ["binary.ircv3.net", "text.ircv3.net"];

impl WsSocket {
    /// Runs the WebSocket handshake, taking the first subprotocol the client offers that the
    /// server speaks.
    pub async fn accept(tcp: TcpStream) -> io::Result<Socket> {
        use tungstenite::handshake::HandshakeError;
        use tungstenite::handshake::server::{Request, Response};
        let tcp = Arc::new(tcp);
        let chosen = Arc::new(Mutex::new(None::<&'static str>));
        let pick = chosen.clone();
        // The callback's type is tungstenite's, its error an HTTP response.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, mut resp: Response| {
            let offered = req
                .headers()
                .get_all("Sec-WebSocket-Protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .find_map(|p| SUBPROTOCOLS.into_iter().find(|s| *s == p));
            if let Some(p) = offered {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", p.parse().expect("a header value"));
                *pick.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            }
            Ok(resp)
        };
        let config = tungstenite::protocol::WebSocketConfig::default()
            // A line too long is the IRC side's to refuse (417), not the framing's.
            .max_message_size(Some(64 << 10))
            .max_frame_size(Some(64 << 10))
            .max_write_buffer_size(WS_BUFFER);
        let mut progress =
            tungstenite::accept_hdr_with_config(Io(tcp.clone()), callback, Some(config));
        let ws = loop {
            match progress {
                Ok(ws) => break ws,
                Err(HandshakeError::Interrupted(mid)) => {
                    // Waiting for the request, almost always; a response the kernel would not
                    // take at once is tried again shortly.
                    let wait = std::time::Duration::from_millis(50);
                    if let Ok(ready) = tokio::time::timeout(wait, tcp.readable()).await {
                        ready?;
                    }
                    progress = mid.handshake();
                }
                Err(HandshakeError::Failure(err)) => return Err(io::Error::other(err)),
            }
        };
        let binary = *chosen.lock().unwrap_or_else(|e| e.into_inner()) == Some(SUBPROTOCOLS[0]);
        Ok(Socket::Ws(Arc::new(WsSocket {
            tcp,
            ws: Mutex::new(ws),
            binary,
            leftover: Notify::new(),
            more: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, tungstenite::WebSocket<Io>> {
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes pending frames to the kernel; true when none is left.
    fn push_out(ws: &mut tungstenite::WebSocket<Io>) -> io::Result<bool> {
        match ws.flush() {
            Ok(()) => Ok(true),
            Err(tungstenite::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                Ok(false)
            }
            Err(err) => Err(io::Error::other(err)),
        }
    }

    /// Takes the whole lines at the front of `buf`, a message each.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut ws = self.lock();
        if !Self::push_out(&mut ws)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let msg = if self.binary {
                tungstenite::Message::binary(text.to_vec())
            } else {
                match std::str::from_utf8(text) {
                    Ok(t) => tungstenite::Message::text(t),
                    // Only UTF-8 is written; should anything else come, it goes as binary.
                    Err(_) => tungstenite::Message::binary(text.to_vec()),
                }
            };
            match ws.write(msg) {
                Ok(()) => taken += line.len(),
                Err(tungstenite::Error::WriteBufferFull(_)) => break,
                Err(tungstenite::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    taken += line.len();
                    break;
                }
                Err(err) => return Err(io::Error::other(err)),
            }
        }
        if !Self::push_out(&mut ws)? {
            self.leftover.notify_one();
        }
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Waits until every frame is with the kernel.
    async fn flushed(&self) -> io::Result<()> {
        loop {
            if Self::push_out(&mut self.lock())? {
                return Ok(());
            }
            self.tcp.writable().await?;
        }
    }

    /// Reads the messages that have arrived, each as a line ending in CR LF.
    fn try_read(&self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let mut ws = self.lock();
        let mut got = 0;
        let mut closed = false;
        // As much as a read of a plain socket takes at a time, so that a client that never
        // stops sending cannot grow the buffer before its lines are handled.
        while got < WS_READ {
            match ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    got += push_line(buf, text.as_bytes());
                }
                Ok(tungstenite::Message::Binary(bytes)) => got += push_line(buf, &bytes),
                // Pings are answered by tungstenite (on the next flush).
                Ok(_) => {}
                Err(tungstenite::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    break;
                }
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(_),
                ) => {
                    closed = true;
                    break;
                }
                Err(err) => return Err(io::Error::other(err)),
            }
        }
        if got >= WS_READ {
            self.more.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if !Self::push_out(&mut ws)? {
            self.leftover.notify_one();
        }
        if closed && got == 0 {
            return Ok(None);
        }
        Ok(Some(got))
    }
}

/// One message as a line: its text and CR LF (a message that ends in one keeps it).
fn push_line(buf: &mut BytesMut, text: &[u8]) -> usize {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    buf.extend_from_slice(text);
    buf.extend_from_slice(b"\r\n");
    text.len() + 2
}
