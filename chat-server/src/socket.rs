//! A client's socket, plaintext or TLS, with the non-blocking operations the reader and the
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
        }
    }

    /// Writes as much of `buf` as can go without waiting; `WouldBlock` when nothing can.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write(buf),
            Socket::Tls(t) => t.try_write(buf),
        }
    }

    /// Waits until a write can make progress.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.writable().await,
            Socket::Tls(t) => t.flushed().await,
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
        }
    }

    /// Waits until there is something to read.
    pub async fn readable(&self) -> io::Result<()> {
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
        }
    }

    /// Ends the sending side once everything written has gone out (TLS: then `close_notify`).
    pub async fn finish(&self) {
        if let Socket::Tls(t) = self {
            let _ = t.flushed().await;
            t.lock().send_close_notify();
            let _ = t.flushed().await;
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
