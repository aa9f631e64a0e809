//! Sending: each connection's bounded queue of outgoing messages, and the flushers that write
//! them to the sockets.
//!
//! A room message goes to every member, so this path runs once per recipient and is built to
//! cost as little as the kernel allows:
//! - the hub [`push`](Outbox::push)es shared message bytes onto a connection's queue: a lock, a
//!   `push_back`, an unlock. The first push onto an idle queue reports the connection as
//!   *dirty*; later pushes report nothing;
//! - after each batch of events the hub hands its dirty connections to a [`Flusher`] (one per
//!   runtime worker; a connection always goes to the same one). The flusher writes each
//!   connection's whole queue in one `write` straight from its loop, without waking any
//!   per-connection task: a message to 1000 members is 1000 `write`s in one pass, and all the
//!   messages that arrived during a pass go out together in the next;
//! - only when a socket does not take everything (the client reads slowly) does the
//!   connection's own writer task take over: it waits for the socket (at most
//!   [`WRITE_TIMEOUT`]), writes the rest and what has queued since, then hands the connection
//!   back. Meanwhile the queue grows; past its bound the hub drops the client (a client that
//!   does not read must not hold the server's memory), and [`kill`](Outbox::kill) stops the
//!   writer even in the middle of a write;
//! - a queue that reaches its bound before a flusher got to it (a burst to one client within
//!   one batch) is written by the hub on the spot; only a socket that does not take it makes
//!   the client too slow;
//! - an idle connection holds no queue memory: the queue is taken whole to be written and a
//!   new one starts empty.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::socket::Socket;

/// A client that accepts no bytes for this long is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Socket write calls made since start, for `stats`.
pub static WRITE_CALLS: AtomicU64 = AtomicU64::new(0);

/// Who, if anyone, is writing a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing queued, nobody writing.
    Idle,
    /// Queued and handed to a flusher, which has not taken it yet.
    Dirty,
    /// A flusher is writing what it took.
    Flushing,
    /// The socket was full: the connection's writer task owns writing until the queue is empty.
    Slow,
}

struct State {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`, against `Shared::limit_bytes`.
    queued_bytes: usize,
    mode: Mode,
    /// What a flusher could not write, for the writer task (in [`Mode::Slow`]).
    rest: Option<Bytes>,
    /// The hub is done with this connection: write what is queued, then close.
    closed: bool,
    /// Stop now, dropping what is queued.
    killed: bool,
    /// The writer task waiting for work (woken by hand-over, close and kill).
    work: Option<Waker>,
    /// The writer task waiting on its socket (woken by kill).
    kill: Option<Waker>,
    /// A push waits on `Shared::flushed` for the flusher's write to end.
    push_waiting: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a flusher finishes a write ([`Mode::Flushing`] ends), for a push that
    /// found the queue full meanwhile: the flusher's write never waits, so neither does it long.
    flushed: Condvar,
    socket: Socket,
    limit: usize,
    /// The bound in bytes: a few large messages weigh as much as many small ones.
    limit_bytes: usize,
    /// Socket write calls made for this connection (they also count in [`WRITE_CALLS`]).
    writes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; if it did, the queue is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub's end of a connection's queue. Dropping it closes the connection once everything
/// queued is written.
pub struct Outbox {
    shared: Arc<Shared>,
}

/// A connection with something to write, on its way to a flusher.
pub struct Dirty(Arc<Shared>);

/// The push did not fit: the client has `limit` messages or `limit_bytes` bytes waiting already.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// The connection's writer task's end.
pub struct Writer {
    shared: Arc<Shared>,
}

/// Why a writer task stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The hub closed the connection and everything queued was written.
    Closed,
    /// Killed by the hub; what was queued is dropped.
    Killed,
    /// The socket failed.
    Lost,
    /// The client accepted nothing for [`WRITE_TIMEOUT`].
    TimedOut,
}

/// A new queue of at most `limit` messages and `limit_bytes` bytes (but always room for one
/// message) not yet taken for writing to `socket`.
pub fn outbox(socket: impl Into<Socket>, limit: usize, limit_bytes: usize) -> (Outbox, Writer) {
    let socket = socket.into();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            mode: Mode::Idle,
            rest: None,
            closed: false,
            killed: false,
            work: None,
            kill: None,
            push_waiting: false,
        }),
        flushed: Condvar::new(),
        socket,
        limit: limit.max(1),
        limit_bytes,
        writes: AtomicU64::new(0),
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Writer { shared },
    )
}

impl Outbox {
    /// Queues `bytes`. Returns the connection when it just became dirty (hand it to a
    /// flusher). When `limit` messages are waiting, writes them to the socket first, right
    /// here (a burst bigger than the queue is not the client's fault); it fails only when the
    /// socket does not take them, that is, when the client does not read. Pushing to a killed
    /// connection does nothing.
    ///
    /// A flusher may be in the middle of writing an earlier batch when the queue fills: then
    /// the push waits for that write to end (it never blocks on the socket) and writes the
    /// queue itself, so "full" always means the socket refused bytes.
    pub fn push(&self, bytes: Bytes) -> Result<Option<Dirty>, Full> {
        match self.try_push(bytes) {
            Ok(dirty) => Ok(dirty),
            Err(bytes) => {
                self.wait_for_flusher();
                flush_shared(&self.shared, &mut BytesMut::new());
                self.try_push(bytes).map_err(|_| Full)
            }
        }
    }

    /// Returns once no flusher is writing this connection.
    fn wait_for_flusher(&self) {
        let mut state = self.shared.lock();
        while state.mode == Mode::Flushing && !state.killed {
            state.push_waiting = true;
            state = self
                .shared
                .flushed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn try_push(&self, bytes: Bytes) -> Result<Option<Dirty>, Bytes> {
        let mut state = self.shared.lock();
        if state.killed {
            return Ok(None);
        }
        let over_bytes =
            !state.queue.is_empty() && state.queued_bytes + bytes.len() > self.shared.limit_bytes;
        if state.queue.len() >= self.shared.limit || over_bytes {
            return Err(bytes);
        }
        state.queued_bytes += bytes.len();
        state.queue.push_back(bytes);
        if state.mode == Mode::Idle {
            state.mode = Mode::Dirty;
            return Ok(Some(Dirty(self.shared.clone())));
        }
        Ok(None)
    }

    /// Stops the writer at once, dropping what is queued.
    pub fn kill(&self) {
        let (wakers, push_waiting) = {
            let mut state = self.shared.lock();
            state.killed = true;
            state.queue = VecDeque::new();
            state.queued_bytes = 0;
            state.rest = None;
            let waiting = std::mem::take(&mut state.push_waiting);
            ([state.work.take(), state.kill.take()], waiting)
        };
        wakers.into_iter().flatten().for_each(Waker::wake);
        if push_waiting {
            self.shared.flushed.notify_all();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.work.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The writes of one set of connections, done in passes: see the module documentation.
pub struct Flusher {
    /// Buffer for joining a queue's messages into one write.
    out: BytesMut,
}

impl Flusher {
    /// Starts `n` flusher tasks (one per runtime worker is right) and returns where to send
    /// their work.
    pub fn spawn(n: usize) -> Flushers {
        let lanes = (0..n.max(1))
            .map(|_| {
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Dirty>>();
                tokio::spawn(async move {
                    let mut flusher = Flusher {
                        out: BytesMut::new(),
                    };
                    let mut lists = Vec::new();
                    while rx.recv_many(&mut lists, 64).await > 0 {
                        // Let input that is already waiting (other senders' messages, say) reach
                        // the hub first: everything it queues meanwhile goes out in this pass,
                        // rather than one whole pass per message.
                        tokio::task::yield_now().await;
                        while let Ok(list) = rx.try_recv() {
                            lists.push(list);
                        }
                        for list in lists.drain(..) {
                            flusher.flush(list);
                        }
                        if flusher.out.capacity() > 1 << 20 {
                            flusher.out = BytesMut::new();
                        }
                    }
                });
                tx
            })
            .collect();
        Flushers { lanes }
    }

    /// Writes every connection in `list`, as often as new messages arrive while it works.
    fn flush(&mut self, list: Vec<Dirty>) {
        let mut list = VecDeque::from(list);
        while let Some(Dirty(conn)) = list.pop_front() {
            if flush_shared(&conn, &mut self.out) {
                list.push_back(Dirty(conn));
            }
        }
    }
}

/// One write of everything `conn` has queued, if it is dirty (waiting for a flusher). Returns
/// true when more was queued meanwhile (only possible when the hub runs on another thread) and
/// the connection is dirty again.
fn flush_shared(conn: &Shared, out: &mut BytesMut) -> bool {
    let Some(batch) = begin_flush(conn) else {
        return false;
    };
    let bytes = join(batch, out);
    let written = write_now(conn, &bytes);
    finish_flush(conn, bytes, written)
}

/// Takes the queue of a dirty connection for writing, marking it [`Mode::Flushing`].
fn begin_flush(conn: &Shared) -> Option<VecDeque<Bytes>> {
    let mut state = conn.lock();
    if state.mode != Mode::Dirty || state.killed {
        return None;
    }
    state.mode = Mode::Flushing;
    Some(take_queue(&mut state))
}

/// Records how a flusher's write went and ends [`Mode::Flushing`]; see [`flush_shared`].
fn finish_flush(conn: &Shared, bytes: Bytes, written: std::io::Result<usize>) -> bool {
    let mut state = conn.lock();
    let again = if state.killed {
        false
    } else {
        match written {
            Ok(n) if n == bytes.len() => {
                if state.queue.is_empty() {
                    state.mode = Mode::Idle;
                    if state.closed {
                        // The writer task closes the socket.
                        wake(state.work.take());
                    }
                    false
                } else {
                    state.mode = Mode::Dirty;
                    true
                }
            }
            Ok(n) => {
                // The socket is full: the writer task waits for it.
                state.mode = Mode::Slow;
                state.rest = Some(bytes.slice(n..));
                wake(state.work.take());
                false
            }
            Err(_) => {
                // The writer task finds the socket failed and ends the connection.
                state.mode = Mode::Slow;
                state.rest = Some(bytes);
                wake(state.work.take());
                false
            }
        }
    };
    // Waking costs a syscall even with nobody waiting: only when a push is.
    let waiting = std::mem::take(&mut state.push_waiting);
    drop(state);
    if waiting {
        conn.flushed.notify_all();
    }
    again
}

/// Takes the whole queue for writing.
fn take_queue(state: &mut State) -> VecDeque<Bytes> {
    state.queued_bytes = 0;
    std::mem::take(&mut state.queue)
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The queue's messages as one buffer: the message itself when there is one, else joined.
fn join(mut batch: VecDeque<Bytes>, out: &mut BytesMut) -> Bytes {
    if batch.len() == 1 {
        return batch.pop_front().unwrap_or_default();
    }
    out.reserve(batch.iter().map(Bytes::len).sum());
    for b in &batch {
        out.extend_from_slice(b);
    }
    out.split().freeze()
}

/// Writes as much of `bytes` as the socket takes without waiting.
fn write_now(conn: &Shared, bytes: &[u8]) -> std::io::Result<usize> {
    let socket = &conn.socket;
    let mut written = 0;
    while written < bytes.len() {
        match socket.try_write(&bytes[written..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                WRITE_CALLS.fetch_add(1, Ordering::Relaxed);
                conn.writes.fetch_add(1, Ordering::Relaxed);
                written += n;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}

/// Where the hub sends dirty connections: one lane per flusher task.
pub struct Flushers {
    lanes: Vec<mpsc::UnboundedSender<Vec<Dirty>>>,
}

/// Dirty connections collected over one batch of hub events, sorted into lanes.
pub struct DirtySet {
    lanes: Vec<Vec<Dirty>>,
}

impl Flushers {
    /// An empty set to collect dirty connections into.
    pub fn set(&self) -> DirtySet {
        DirtySet {
            lanes: (0..self.lanes.len()).map(|_| Vec::new()).collect(),
        }
    }

    /// Hands everything in `set` to the flushers, leaving it empty.
    pub fn dispatch(&self, set: &mut DirtySet) {
        for (lane, list) in self.lanes.iter().zip(&mut set.lanes) {
            if !list.is_empty() {
                // A flusher only stops when the runtime does.
                let _ = lane.send(std::mem::take(list));
            }
        }
    }
}

impl DirtySet {
    /// Adds a connection; `key` picks its lane, the same one every time.
    pub fn add(&mut self, key: u64, dirty: Dirty) {
        let n = self.lanes.len() as u64;
        self.lanes[(key % n) as usize].push(dirty);
    }
}

impl Writer {
    /// Runs the connection's writer task: idle until a flusher hands over a full socket or
    /// the connection is closed or killed.
    pub async fn run(self) -> Stopped {
        let mut out = BytesMut::new();
        loop {
            let mut bytes = match self.work().await {
                Work::Stop(Stopped::Closed) => {
                    self.shared.socket.finish().await;
                    return Stopped::Closed;
                }
                Work::Stop(why) => return why,
                Work::Write(bytes) => bytes,
            };
            // Own the connection until its queue is empty.
            loop {
                if let Err(why) = self.write_all(&bytes).await {
                    return why;
                }
                let mut state = self.shared.lock();
                if state.killed {
                    return Stopped::Killed;
                }
                if state.queue.is_empty() {
                    state.mode = Mode::Idle;
                    break;
                }
                let batch = take_queue(&mut state);
                drop(state);
                bytes = join(batch, &mut out);
            }
            out = BytesMut::new();
        }
    }

    /// Waits for something to do.
    async fn work(&self) -> Work {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.killed {
                return Poll::Ready(Work::Stop(Stopped::Killed));
            }
            if state.mode == Mode::Slow
                && let Some(rest) = state.rest.take()
            {
                return Poll::Ready(Work::Write(rest));
            }
            if state.closed {
                match state.mode {
                    Mode::Idle => return Poll::Ready(Work::Stop(Stopped::Closed)),
                    // Closing: write the rest here rather than wait for a flusher.
                    Mode::Dirty => {
                        state.mode = Mode::Slow;
                        let batch = take_queue(&mut state);
                        let mut out = BytesMut::new();
                        return Poll::Ready(Work::Write(join(batch, &mut out)));
                    }
                    Mode::Flushing | Mode::Slow => {}
                }
            }
            if !state.work.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.work = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Writes all of `bytes`, waiting for the socket; stops early when killed.
    async fn write_all(&self, bytes: &[u8]) -> Result<(), Stopped> {
        let socket = &self.shared.socket;
        let mut written = 0;
        while written < bytes.len() {
            let ready = tokio::time::timeout(WRITE_TIMEOUT, socket.writable());
            tokio::select! {
                biased;
                () = self.killed() => return Err(Stopped::Killed),
                ready = ready => match ready {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Stopped::Lost),
                    Err(_) => return Err(Stopped::TimedOut),
                },
            }
            match socket.try_write(&bytes[written..]) {
                Ok(0) => return Err(Stopped::Lost),
                Ok(n) => {
                    WRITE_CALLS.fetch_add(1, Ordering::Relaxed);
                    self.shared.writes.fetch_add(1, Ordering::Relaxed);
                    written += n;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(Stopped::Lost),
            }
        }
        Ok(())
    }

    /// Completes when the connection is killed.
    async fn killed(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.killed {
                return Poll::Ready(());
            }
            if !state.kill.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.kill = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

enum Work {
    Write(Bytes),
    Stop(Stopped),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;

    /// A connected pair: the server's socket (shared, as the server holds it) and the client.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    fn flusher() -> Flusher {
        Flusher {
            out: BytesMut::new(),
        }
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
            .await
            .expect("data arrives")
            .unwrap();
        buf
    }

    #[tokio::test]
    async fn the_first_push_makes_a_connection_dirty_and_one_flush_writes_all_in_order() {
        let (socket, mut client) = pair().await;
        let (outbox, _writer) = outbox(socket, 8, usize::MAX);
        let first = outbox.push(Bytes::from("a\n")).unwrap();
        assert!(first.is_some(), "an idle connection becomes dirty");
        assert!(outbox.push(Bytes::from("b\n")).unwrap().is_none());
        assert!(outbox.push(Bytes::from("c\n")).unwrap().is_none());

        flusher().flush(vec![first.unwrap()]);
        assert_eq!(read_exactly(&mut client, 6).await, b"a\nb\nc\n");
        assert_eq!(
            outbox.shared.writes.load(Ordering::Relaxed),
            1,
            "three messages, one write"
        );
        // Idle again: no queue memory, and the next push is dirty again.
        {
            let state = outbox.shared.lock();
            assert_eq!(state.mode, Mode::Idle);
            assert_eq!(state.queue.capacity(), 0);
        }
        assert!(outbox.push(Bytes::from("d\n")).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_burst_bigger_than_the_queue_reaches_a_client_that_reads() {
        let (socket, mut client) = pair().await;
        let (outbox, _writer) = outbox(socket, 16, usize::MAX);
        let reader = tokio::spawn(async move { read_exactly(&mut client, 1000 * 4).await });
        // 1000 pushes with no flusher running: the queue holds 16, so the pushes write.
        let mut dirty = Vec::new();
        for i in 0..1000 {
            let line = Bytes::from(format!("{i:03}\n"));
            dirty.extend(
                outbox
                    .push(line)
                    .expect("a reading client is never too slow"),
            );
        }
        flusher().flush(dirty);
        let got = reader.await.unwrap();
        let expected: Vec<u8> = (0..1000)
            .flat_map(|i| format!("{i:03}\n").into_bytes())
            .collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_queue_that_fills_while_a_flusher_writes_is_not_full_for_a_reading_client() {
        let (socket, mut client) = pair().await;
        let (outbox, _writer) = outbox(socket, 4, usize::MAX);
        let outbox = Arc::new(outbox);
        outbox.push(Bytes::from("0\n")).unwrap().unwrap();
        // A flusher takes the queue and is about to write it...
        let batch = begin_flush(&outbox.shared).unwrap();
        // ...while the hub fills the queue to its bound and pushes once more.
        for i in 1..=4 {
            assert!(
                outbox
                    .push(Bytes::from(format!("{i}\n")))
                    .unwrap()
                    .is_none()
            );
        }
        let pusher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || outbox.push(Bytes::from("5\n")).map(|d| d.is_some()))
        };
        // The push waits for the write in progress rather than calling the client slow.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "the push waits for the flusher");
        let bytes = join(batch, &mut BytesMut::new());
        let written = write_now(&outbox.shared, &bytes);
        finish_flush(&outbox.shared, bytes, written);
        assert!(
            pusher.join().unwrap().is_ok(),
            "a reading client is not full"
        );
        outbox.push(Bytes::from("6\n")).unwrap();
        flush_shared(&outbox.shared, &mut BytesMut::new());
        assert_eq!(
            read_exactly(&mut client, 14).await,
            b"0\n1\n2\n3\n4\n5\n6\n"
        );
    }

    #[tokio::test]
    async fn a_full_socket_is_handed_to_the_writer_which_finishes_the_job() {
        let (socket, mut client) = pair().await;
        let (outbox, writer) = outbox(socket, 1000, usize::MAX);
        let writer = tokio::spawn(writer.run());
        // Far more than the socket buffers hold while the client is not reading.
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let dirty = outbox.push(chunk.clone()).unwrap().unwrap();
        for _ in 0..63 {
            outbox.push(chunk.clone()).unwrap();
        }
        flusher().flush(vec![dirty]);
        assert_eq!(outbox.shared.lock().mode, Mode::Slow);
        // More messages while the writer owns the connection are written after the rest.
        assert!(outbox.push(Bytes::from("end")).unwrap().is_none());
        let got = read_exactly(&mut client, 64 * 64 * 1024 + 3).await;
        assert!(got[..64 * 64 * 1024].iter().all(|&b| b == b'x'));
        assert_eq!(&got[64 * 64 * 1024..], b"end");
        // Back to idle: the next push goes to a flusher again.
        tokio::time::timeout(Duration::from_secs(5), async {
            while outbox.shared.lock().mode != Mode::Idle {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the writer hands the connection back");
        assert!(outbox.push(Bytes::from("again")).unwrap().is_some());
        assert!(!writer.is_finished());
    }

    #[tokio::test]
    async fn the_bound_counts_untaken_messages_and_a_kill_stops_a_blocked_writer() {
        let (socket, _client) = pair().await; // never reads
        let (outbox, writer) = outbox(socket, 4, usize::MAX);
        let writer = tokio::spawn(writer.run());
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        // Write until the socket is full and the writer task has the connection.
        for _ in 0..256 {
            if let Some(dirty) = outbox.push(chunk.clone()).unwrap() {
                flusher().flush(vec![dirty]);
            }
            if outbox.shared.lock().mode == Mode::Slow {
                break;
            }
        }
        assert_eq!(outbox.shared.lock().mode, Mode::Slow);
        // The writer is stuck on the full socket; the queue fills to its bound.
        for _ in 0..4 {
            outbox.push(chunk.clone()).unwrap();
        }
        assert!(matches!(outbox.push(chunk.clone()), Err(Full)));
        outbox.kill();
        let stopped = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("a killed writer stops at once")
            .unwrap();
        assert_eq!(stopped, Stopped::Killed);
        assert_eq!(outbox.shared.lock().queue.capacity(), 0);
        // Pushing to a killed connection is not an error.
        assert_eq!(outbox.push(chunk).map(|d| d.is_some()), Ok(false));
    }

    #[tokio::test]
    async fn closing_writes_what_is_queued_then_half_closes() {
        let (socket, mut client) = pair().await;
        let (outbox, writer) = outbox(socket, 8, usize::MAX);
        let writer = tokio::spawn(writer.run());
        // Queued and dirty, but no flusher ever runs: the writer writes it on close.
        let _dirty = outbox.push(Bytes::from("bye\n")).unwrap();
        drop(outbox);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the server closes")
            .unwrap();
        assert_eq!(got, b"bye\n");
        assert_eq!(writer.await.unwrap(), Stopped::Closed);
    }

    #[tokio::test]
    async fn a_flush_to_a_reset_connection_ends_it_as_lost() {
        let (socket, client) = pair().await;
        let (outbox, writer) = outbox(socket, 8, usize::MAX);
        let writer = tokio::spawn(writer.run());
        // Unread data at close makes the client's kernel answer with RST.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut stopped = None;
        for _ in 0..10 {
            if let Some(dirty) = outbox.push(Bytes::from("hello?\n")).unwrap() {
                flusher().flush(vec![dirty]);
            }
            if writer.is_finished() {
                stopped = Some(writer.await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stopped, Some(Stopped::Lost));
    }
}
