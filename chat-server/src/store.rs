//! Durable storage: SQLite in WAL mode, written by one dedicated thread with group commit.
//!
//! The hub hands out [`Record`]s; this thread takes every record waiting, writes them in one
//! transaction, commits, and reports the highest committed id back, at which point the hub
//! delivers (and so acknowledges) those messages. Under load many messages share one commit; when
//! idle a lone message is committed at once.
//!
//! Durability promise: an acknowledged message is in the database file's WAL. With
//! `synchronous=NORMAL` it survives the server process being killed (even with `kill -9`); a power
//! failure or OS crash may lose the last commits before a checkpoint.
//!
//! The same thread answers the hub's requests to load a room that is not in memory (someone
//! joins a room that expired from memory, or that nobody joined since the start), and applies
//! the retention policy: messages older than [`Retention::max_age_days`], and past
//! [`Retention::per_room`] in a room, are deleted at start and then every ten minutes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_core::hub::{
    Ban, ConnId, HistoryQuery, Record, RestoredRoom, RoomSettings, StoredAccount, StoredDirect,
};
use chat_core::names;
use chat_core::protocol::{ChatMessage, ClientTags, MsgId};
use rusqlite::{Connection, OptionalExtension, params};

/// Most records in one transaction, so one huge backlog does not hold a commit too long.
const MAX_BATCH: usize = 4096;

/// How often the retention policy runs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The schema version this code writes (`PRAGMA user_version`). Version 1 keys rooms by
/// full Unicode case folding (earlier databases used lowercase) and keeps client message ids;
/// version 2 keeps the rooms an account owns and the id it was registered under; version 3
/// adds the full-text index; version 4 keeps whether a message is a notice, and its client
/// tags (JSON, empty for none), and whether its sender was a bot.
pub const SCHEMA_VERSION: i64 = 4;

/// What was in the database at startup.
#[derive(Debug, Default)]
pub struct Restored {
    /// The rooms asked for at startup, with their topics and recent history.
    pub rooms: Vec<RestoredRoom>,
    /// One more than the highest id ever stored.
    pub next_id: MsgId,
    /// Number of messages stored in all.
    pub messages: u64,
    /// The client ids of the most recent messages, oldest first, with their ids.
    pub cids: Vec<(String, MsgId)>,
    /// Every registered account.
    pub accounts: Vec<StoredAccount>,
    /// The server-wide bans.
    pub server_bans: Vec<Ban>,
    /// Direct messages waiting for accounts that were not connected, oldest first.
    pub offline: Vec<StoredDirect>,
}

/// How long stored messages are kept. Zero means no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Messages older than this many days are deleted.
    pub max_age_days: u64,
    /// Only the newest this many messages of each room are kept.
    pub per_room: u64,
}

/// What the store thread reports back.
#[derive(Debug)]
pub enum Report {
    /// Every record up to this id is committed.
    Committed(MsgId),
    /// Commits have failed for longer than the configured patience; they are still retried.
    Down,
    /// A commit succeeded again after [`Report::Down`].
    Up,
    /// The answer to [`Store::load`].
    Loaded {
        /// The key asked for.
        key: String,
        /// The room, if the store has anything of it.
        room: Option<Box<RestoredRoom>>,
    },
    /// [`Store::load`] failed: the room could not be read.
    LoadFailed {
        /// The key asked for.
        key: String,
    },
    /// The answer to [`Store::history`] (empty when the store could not read it).
    History {
        /// Who asked.
        conn: ConnId,
        /// What was asked.
        query: HistoryQuery,
        /// The messages, oldest first.
        messages: Vec<ChatMessage>,
        /// More lie beyond the limit.
        more: bool,
    },
}

/// Faults to inject into the store, for tests of what the server does when storage fails.
#[derive(Debug, Default)]
pub struct Faults {
    /// How many of the next commits fail as an I/O error would (`usize::MAX`: all, until
    /// set back to 0).
    pub fail_commits: AtomicUsize,
}

impl Faults {
    /// True (and one fewer to come) when this commit is to fail.
    fn take_failure(&self) -> bool {
        self.fail_commits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }
}

/// How the store thread behaves when commits fail.
#[derive(Debug, Clone)]
pub struct Patience {
    /// Failing this long makes the store report [`Report::Down`].
    pub down_after: Duration,
    /// At shutdown, how long a failing batch is still retried before it is given up (and
    /// logged: those messages were never acknowledged).
    pub at_shutdown: Duration,
    /// Injected faults (tests).
    pub faults: Arc<Faults>,
    /// Where the time each commit takes is recorded (the server's metrics).
    pub commit_seconds: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            down_after: Duration::from_secs(5),
            at_shutdown: Duration::from_secs(5),
            faults: Arc::default(),
            commit_seconds: None,
        }
    }
}

/// Work for the store thread.
enum Job {
    Append(Record),
    Load(String),
}

/// Reads (history pages and searches) queued server-wide for the readers; past this the
/// store refuses them ([`Store::history`]) and the asker hears `busy`.
pub const READ_QUEUE: usize = 16;

/// The writer thread and the readers, seen from the server.
pub struct Store {
    tx: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// History pages and searches, for the readers: bounded, so a storm of slow searches
    /// is refused rather than queued without end.
    reads: Option<std_mpsc::SyncSender<(ConnId, HistoryQuery)>>,
    /// The reader threads, each with its own read-only connection: WAL lets them read beside
    /// the writer, so no search or history page ever waits in front of a commit.
    readers: Vec<JoinHandle<()>>,
    path: PathBuf,
}

/// How many reader threads: half the cores (at least one, at most four), so that searches
/// leave the hub and the writer a core of their own.
fn reader_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().div_ceil(2))
        .clamp(1, 4)
}

/// A reader thread: answers history pages and searches from its own connection until the
/// queue closes.
fn read_loop(
    conn: Connection,
    rx: Arc<std::sync::Mutex<std_mpsc::Receiver<(ConnId, HistoryQuery)>>>,
    report: impl Fn(Report),
) {
    // Searches are the slow reads: they yield the core to the hub and the writer whenever
    // those have work (nice 19 on this thread alone; Linux keeps niceness per thread).
    if let Err(err) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(%err, "store: cannot lower a reader's priority");
    }
    loop {
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((asker, query)) = job else {
            break;
        };
        let (messages, more) = match read_history(&conn, &query) {
            Ok(found) => found,
            Err(err) => {
                tracing::error!(%err, key = %query.key, "store: cannot read history");
                (Vec::new(), false)
            }
        };
        report(Report::History {
            conn: asker,
            query,
            messages,
            more,
        });
    }
}

impl Store {
    /// Opens (creating if needed) `dir/chat.sqlite3`, loads what the hub needs back (the rooms
    /// named in `rooms`, the next id, recent client ids), and starts the store thread. `report`
    /// is called on that thread after each transaction and with each loaded room.
    pub fn open(
        dir: &Path,
        history: usize,
        rooms: &[String],
        dedupe_window: usize,
        retention: Retention,
        patience: Patience,
        report: impl Fn(Report) + Clone + Send + 'static,
    ) -> anyhow::Result<(Store, Restored)> {
        crate::private::dir(dir)?;
        let path = dir.join("chat.sqlite3");
        // Created 0600 first: SQLite gives the WAL and SHM the database's mode.
        crate::private::file(&path)?;
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY,
                 ts INTEGER NOT NULL,
                 room_key TEXT NOT NULL,
                 room TEXT NOT NULL,
                 sender TEXT NOT NULL,
                 text TEXT NOT NULL,
                 action INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room_key, id);
             -- Full-text index of room messages for `search`, kept in step by triggers
             -- (retention deletes go through them too).
             CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
                 text, content='messages', content_rowid='id',
                 tokenize='unicode61 remove_diacritics 2'
             );
             CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
                 INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
             END;
             CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
                 INSERT INTO messages_fts (messages_fts, rowid, text)
                 VALUES ('delete', old.id, old.text);
             END;
             CREATE TABLE IF NOT EXISTS directs (
                 id INTEGER PRIMARY KEY,
                 ts INTEGER NOT NULL,
                 sender TEXT NOT NULL,
                 recipient TEXT NOT NULL,
                 text TEXT NOT NULL,
                 action INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS topics (
                 room_key TEXT PRIMARY KEY,
                 room TEXT NOT NULL,
                 topic TEXT NOT NULL,
                 set_by TEXT NOT NULL,
                 ts INTEGER NOT NULL,
                 id INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS accounts (
                 key TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 hash TEXT NOT NULL,
                 rooms TEXT NOT NULL DEFAULT '',
                 id INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS room_settings (
                 room_key TEXT PRIMARY KEY,
                 room TEXT NOT NULL,
                 settings TEXT NOT NULL,
                 id INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS server_state (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL,
                 id INTEGER NOT NULL
             );",
        )
        .context("cannot create the schema")?;
        migrate(&conn).context("cannot migrate the database")?;
        prune(&conn, retention, now_millis()).context("cannot apply the retention policy")?;
        let restored =
            load(&conn, history, rooms, dedupe_window).context("cannot load stored rooms")?;
        let (reads_tx, reads_rx) = std_mpsc::sync_channel(READ_QUEUE);
        let reads_rx = Arc::new(std::sync::Mutex::new(reads_rx));
        let mut readers = Vec::new();
        for i in 0..reader_count() {
            let reader = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open database {} to read", path.display()))?;
            reader.busy_timeout(Duration::from_secs(5))?;
            let (rx, report) = (reads_rx.clone(), report.clone());
            readers.push(
                std::thread::Builder::new()
                    .name(format!("chat-read-{i}"))
                    .spawn(move || read_loop(reader, rx, report))
                    .context("cannot start a store reader")?,
            );
        }
        let (tx, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || store_loop(conn, rx, history, retention, patience, report))
            .context("cannot start the store thread")?;
        Ok((
            Store {
                tx: Some(tx),
                thread: Some(thread),
                reads: Some(reads_tx),
                readers,
                path,
            },
            restored,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a record for the next commit.
    pub fn append(&self, record: Record) {
        if let Some(tx) = &self.tx {
            // The thread only stops after `close`, so a send cannot fail before that.
            let _ = tx.send(Job::Append(record));
        }
    }

    /// Asks for a room by key: its topic and recent history come back as [`Report::Loaded`],
    /// after every record queued before it is committed.
    pub fn load(&self, key: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::Load(key));
        }
    }

    /// Asks a reader for a page of a room's history (or a search); it comes back as
    /// [`Report::History`]. It sees what is committed: the hub only shows messages once they
    /// are. Refused, the query handed back, when [`READ_QUEUE`] reads wait already.
    #[must_use = "a refused read must be answered (busy)"]
    pub fn history(&self, conn: ConnId, query: HistoryQuery) -> Option<HistoryQuery> {
        let Some(reads) = &self.reads else {
            return Some(query);
        };
        match reads.try_send((conn, query)) {
            Ok(()) => None,
            Err(
                std_mpsc::TrySendError::Full((_, q)) | std_mpsc::TrySendError::Disconnected((_, q)),
            ) => Some(q),
        }
    }

    /// Stops the readers, then commits everything queued and stops the writer thread.
    pub fn close(&mut self) {
        self.reads.take();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Brings an older database to [`SCHEMA_VERSION`].
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        // A newer chat-server wrote it: this one would misread it.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database has schema version {version}, newer than this chat-server's \
                 {SCHEMA_VERSION}: run the chat-server that wrote it, or restore a backup \
                 made before the upgrade"
            )),
        ));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (table, column, kind) in [
        ("accounts", "owned", "TEXT NOT NULL DEFAULT ''"),
        ("accounts", "created", "INTEGER NOT NULL DEFAULT 0"),
        ("accounts", "markers", "TEXT NOT NULL DEFAULT ''"),
        ("directs", "pending", "INTEGER NOT NULL DEFAULT 0"),
        ("messages", "notice", "INTEGER NOT NULL DEFAULT 0"),
        ("messages", "tags", "TEXT NOT NULL DEFAULT ''"),
        ("directs", "notice", "INTEGER NOT NULL DEFAULT 0"),
        ("directs", "tags", "TEXT NOT NULL DEFAULT ''"),
        ("messages", "bot", "INTEGER NOT NULL DEFAULT 0"),
        ("directs", "bot", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let has = tx
            .prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
            .is_ok();
        if !has {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    for table in ["messages", "directs"] {
        let has_cid = tx
            .prepare(&format!("SELECT cid FROM {table} LIMIT 0"))
            .is_ok();
        if !has_cid {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN cid TEXT"))?;
        }
    }
    // Room keys are now made by full case folding: recompute them from the display names.
    for table in ["messages", "topics"] {
        let rooms: Vec<(String, String)> = tx
            .prepare(&format!("SELECT DISTINCT room, room_key FROM {table}"))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (room, old_key) in rooms {
            let new_key = names::key(&room);
            if new_key != old_key {
                let sql = format!(
                    "UPDATE OR IGNORE {table} SET room_key = ?1 WHERE room = ?2 AND room_key = ?3"
                );
                tx.execute(&sql, params![new_key, room, old_key])?;
            }
        }
    }
    // Schema 3 added the full-text index: fill it with the messages stored before.
    if version < 3 {
        tx.execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()
}

/// Deletes what the retention policy no longer keeps.
fn prune(conn: &Connection, retention: Retention, now: u64) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    if retention.max_age_days > 0 {
        let cutoff = now.saturating_sub(retention.max_age_days * 86_400_000) as i64;
        deleted += conn.execute("DELETE FROM messages WHERE ts < ?1", params![cutoff])?;
        deleted += conn.execute("DELETE FROM directs WHERE ts < ?1", params![cutoff])?;
    }
    if retention.per_room > 0 {
        deleted += conn.execute(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM (
                     SELECT id, ROW_NUMBER() OVER (PARTITION BY room_key ORDER BY id DESC) AS n
                     FROM messages)
                 WHERE n > ?1)",
            params![retention.per_room as i64],
        )?;
    }
    if deleted > 0 {
        tracing::info!(deleted, "store: retention policy deleted old messages");
    }
    Ok(deleted)
}

/// One more than the highest id anything in the store was sequenced under.
fn next_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages), 0),
                    COALESCE((SELECT MAX(id) FROM directs), 0),
                    COALESCE((SELECT MAX(id) FROM topics), 0),
                    COALESCE((SELECT MAX(id) FROM accounts), 0),
                    COALESCE((SELECT MAX(id) FROM room_settings), 0),
                    COALESCE((SELECT MAX(id) FROM server_state), 0)) + 1",
        [],
        |r| r.get(0),
    )
}

/// Registers an account in a stopped server's database, with the rules the running server
/// applies ([`chat_core::hub::Hub::add_account`]): a valid name, not a service's, neither an
/// account's nor like one. Its id follows every id stored, as the server would give it.
pub fn add_account(tx: &rusqlite::Transaction<'_>, name: &str, hash: &str) -> anyhow::Result<()> {
    let name = names::normalize_name(name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))?;
    if names::is_service(&name) {
        anyhow::bail!("{name} is a service's name");
    }
    let wanted = names::skeletons(&name);
    let mut stmt = tx.prepare("SELECT key, name FROM accounts")?;
    let existing = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in existing {
        let (key, other) = row?;
        if key == names::key(&name) {
            anyhow::bail!("the account {other} exists already");
        }
        if names::skeletons(&other).iter().any(|s| wanted.contains(s)) {
            anyhow::bail!("{name} looks like the account {other}");
        }
    }
    let id = next_id(tx)?;
    tx.execute(
        "INSERT INTO accounts (key, name, hash, id, created) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![names::key(&name), name, hash, id],
    )?;
    Ok(())
}

fn load(
    conn: &Connection,
    history: usize,
    rooms: &[String],
    dedupe_window: usize,
) -> rusqlite::Result<Restored> {
    let next_id = next_id(conn)?;
    let messages: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
    let mut restored_rooms = Vec::new();
    for name in rooms {
        if let Some(room) = load_room(conn, &names::key(name), history)? {
            restored_rooms.push(room);
        }
    }
    let mut cids: Vec<(String, MsgId)> = conn
        .prepare(
            "SELECT cid, id FROM (
                 SELECT cid, id FROM messages WHERE cid IS NOT NULL
                 UNION ALL SELECT cid, id FROM directs WHERE cid IS NOT NULL)
             ORDER BY id DESC LIMIT ?1",
        )?
        .query_map(params![dedupe_window as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    cids.reverse();
    let accounts = conn
        .prepare("SELECT name, hash, rooms, owned, created, markers FROM accounts ORDER BY id")?
        .query_map([], |r| {
            let rooms: String = r.get(2)?;
            let owned: String = r.get(3)?;
            let markers: String = r.get(5)?;
            Ok(StoredAccount {
                name: r.get(0)?,
                hash: r.get(1)?,
                rooms: rooms.lines().map(str::to_string).collect(),
                owned: owned.lines().map(str::to_string).collect(),
                created: r.get::<_, i64>(4)? as u64,
                // One `key<TAB>id` line per conversation; a line that does not read is skipped
                // (a marker is a convenience, not data to refuse a start over).
                markers: markers
                    .lines()
                    .filter_map(|l| {
                        let (key, id) = l.split_once('\t')?;
                        Some((key.to_string(), id.parse().ok()?))
                    })
                    .collect(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let server_bans = conn
        .query_row(
            "SELECT value FROM server_state WHERE key = 'bans'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .map(|json| from_json::<Vec<Ban>>(&json, "server bans"))
        .transpose()?
        .unwrap_or_default();
    let offline = conn
        .prepare(
            "SELECT id, ts, sender, recipient, text, action, notice, tags, bot FROM directs
             WHERE pending = 1 ORDER BY id",
        )?
        .query_map([], |r| {
            Ok(StoredDirect {
                id: r.get::<_, i64>(0)? as u64,
                ts: r.get::<_, i64>(1)? as u64,
                from: r.get(2)?,
                to: r.get(3)?,
                text: r.get(4)?,
                action: r.get(5)?,
                notice: r.get(6)?,
                tags: tags_from(&r.get::<_, String>(7)?)?,
                bot: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Restored {
        offline,
        rooms: restored_rooms,
        next_id: next_id as u64,
        messages: messages as u64,
        cids,
        accounts,
        server_bans,
    })
}

/// Reads JSON the store wrote; a row that does not parse is an error naming what it held.
fn from_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> rusqlite::Result<T> {
    serde_json::from_str(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("stored {what} do not parse: {e}").into(),
        )
    })
}

/// The columns [`message_row`] reads, in its order.
const MESSAGE_COLUMNS: &str = "id, ts, room, sender, text, action, notice, tags, bot";

/// A message from a row of `SELECT {MESSAGE_COLUMNS} FROM messages`.
fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: r.get::<_, i64>(0)? as u64,
        ts: r.get::<_, i64>(1)? as u64,
        room: r.get(2)?,
        from: r.get(3)?,
        text: r.get(4)?,
        action: r.get(5)?,
        notice: r.get(6)?,
        tags: tags_from(&r.get::<_, String>(7)?)?,
        bot: r.get(8)?,
    })
}

/// A message's client tags as stored: JSON, or empty for none.
fn tags_json(tags: &ClientTags) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        serde_json::to_string(tags).expect("tags serialize")
    }
}

/// The client tags [`tags_json`] stored.
fn tags_from(json: &str) -> rusqlite::Result<ClientTags> {
    if json.is_empty() {
        Ok(ClientTags::new())
    } else {
        from_json(json, "message tags")
    }
}

/// A page of a room's history within the query's bounds, oldest first, and whether more lie
/// beyond its limit.
/// A search's words as an FTS5 query: each a quoted prefix (`"word"*`), all required.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A page of a room's history within the query's bounds (or a search, when it has words),
/// oldest first, and whether more lie beyond its limit.
fn read_history(conn: &Connection, q: &HistoryQuery) -> rusqlite::Result<(Vec<ChatMessage>, bool)> {
    if let Some(words) = &q.search {
        return search(conn, q, words);
    }
    let order = if q.newest { "DESC" } else { "ASC" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE room_key = ?1 AND id > ?2 AND id < ?3 AND ts > ?4 AND ts < ?5
         ORDER BY id {order} LIMIT ?6"
    ))?;
    let bound =
        |v: Option<u64>, default: i64| v.map_or(default, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let limit = q.limit.max(1);
    let mut messages: Vec<ChatMessage> = stmt
        .query_map(
            params![
                q.key,
                bound(q.after, -1),
                bound(q.before, i64::MAX),
                bound(q.after_ts, -1),
                bound(q.before_ts, i64::MAX),
                limit as i64 + 1
            ],
            message_row,
        )?
        .collect::<Result<_, _>>()?;
    let more = messages.len() > limit;
    messages.truncate(limit);
    if q.newest {
        messages.reverse();
    }
    Ok((messages, more))
}

/// A room's messages matching an FTS5 query (?1) in room ?2 below id ?3, newest first, at most
/// ?4. The index comes first, newest match first; CROSS JOIN keeps SQLite from scanning the
/// room's messages and testing each against the index instead.
const SEARCH_SQL: &str =
    "SELECT m.id, m.ts, m.room, m.sender, m.text, m.action, m.notice, m.tags, m.bot
     FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid
     WHERE messages_fts MATCH ?1 AND m.room_key = ?2 AND messages_fts.rowid < ?3
     ORDER BY messages_fts.rowid DESC LIMIT ?4";

/// A search through the full-text index: the newest matches below `before`, oldest first.
fn search(
    conn: &Connection,
    q: &HistoryQuery,
    words: &[String],
) -> rusqlite::Result<(Vec<ChatMessage>, bool)> {
    let mut stmt = conn.prepare_cached(SEARCH_SQL)?;
    let limit = q.limit.max(1);
    let before = q
        .before
        .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut messages: Vec<ChatMessage> = stmt
        .query_map(
            params![fts_query(words), q.key, before, limit as i64 + 1],
            message_row,
        )?
        .collect::<Result<_, _>>()?;
    let more = messages.len() > limit;
    messages.truncate(limit);
    messages.reverse();
    Ok((messages, more))
}

/// A room's topic and newest `history` messages, or `None` when the store has neither.
fn load_room(
    conn: &Connection,
    key: &str,
    history: usize,
) -> rusqlite::Result<Option<RestoredRoom>> {
    let mut recent = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE room_key = ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let mut messages: Vec<ChatMessage> = recent
        .query_map(params![key, history as i64 + 1], message_row)?
        .collect::<Result<_, _>>()?;
    // One more than asked for tells whether older messages exist.
    let more = messages.len() > history;
    messages.truncate(history);
    messages.reverse();
    let mut room = RestoredRoom {
        name: messages.last().map(|m| m.room.clone()).unwrap_or_default(),
        more,
        history: messages,
        ..RestoredRoom::default()
    };
    let stored_topic = conn
        .prepare_cached("SELECT room, topic, set_by, ts FROM topics WHERE room_key = ?1")?
        .query_row(params![key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    if let Some((name, text, by, ts)) = stored_topic {
        room.name = name;
        room.topic = text;
        room.topic_set = Some((by, ts as u64));
    }
    let stored_settings = conn
        .prepare_cached("SELECT room, settings FROM room_settings WHERE room_key = ?1")?
        .query_row(params![key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    if let Some((name, json)) = stored_settings {
        room.settings = from_json::<RoomSettings>(&json, "room settings")?;
        if room.name.is_empty() {
            room.name = name;
        }
    }
    if room.name.is_empty() {
        return Ok(None);
    }
    Ok(Some(room))
}

fn store_loop(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Job>,
    history: usize,
    retention: Retention,
    patience: Patience,
    report: impl Fn(Report),
) {
    let mut batch: Vec<Record> = Vec::with_capacity(256);
    let mut loads = Vec::new();
    let mut pruned_at = Instant::now();
    // While a batch fails: since when, whether the hub was told, and the wait before a retry.
    let mut failing_since: Option<Instant> = None;
    let mut down = false;
    let mut backoff = Duration::from_millis(50);
    let mut closed = false;
    loop {
        // Idle: block for the first job. With a failed batch waiting: no longer than the backoff.
        let first = if batch.is_empty() {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        } else if closed {
            std::thread::sleep(backoff);
            None
        } else {
            match rx.recv_timeout(backoff) {
                Ok(job) => Some(job),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    closed = true;
                    None
                }
            }
        };
        // Then whatever else is already waiting.
        let mut next = first;
        while let Some(job) = next.take() {
            match job {
                Job::Append(record) => batch.push(record),
                Job::Load(key) => loads.push(key),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let through = batch.iter().map(Record::id).max().unwrap_or(0);
            let written = if patience.faults.take_failure() {
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                    Some("injected fault".into()),
                ))
            } else {
                let started = Instant::now();
                let written = write_batch(&mut conn, &batch);
                if let Some(histogram) = &patience.commit_seconds {
                    histogram.observe(started.elapsed().as_secs_f64());
                }
                written
            };
            match written {
                Ok(()) => {
                    batch.clear();
                    // Up before the commit it comes with: once the held messages are
                    // acknowledged, their sender may send again and must not be refused.
                    if let Some(since) = failing_since.take() {
                        tracing::warn!(after = ?since.elapsed(), "store: commits succeed again");
                        if down {
                            down = false;
                            report(Report::Up);
                        }
                    }
                    report(Report::Committed(through));
                    backoff = Duration::from_millis(50);
                }
                Err(err) => {
                    // Nothing in this batch is acknowledged, nor anything after it: the batch is
                    // kept, retried (with what arrives meanwhile), and no id past it is reported.
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    tracing::error!(
                        %err,
                        records = batch.len(),
                        failing_for = ?since.elapsed(),
                        "store: commit failed; retrying"
                    );
                    if !down && since.elapsed() >= patience.down_after {
                        down = true;
                        tracing::error!(
                            "store: commits keep failing; new messages are refused until they succeed"
                        );
                        report(Report::Down);
                    }
                    if closed && since.elapsed() >= patience.at_shutdown {
                        tracing::error!(
                            records = batch.len(),
                            "store: giving up at shutdown; these messages were never acknowledged and are not stored"
                        );
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        // Loads run after the commit of everything queued before them (while commits fail,
        // they see what is committed; held messages reach joiners live once they commit).
        for key in loads.drain(..) {
            match load_room(&conn, &key, history) {
                Ok(room) => report(Report::Loaded {
                    key,
                    room: room.map(Box::new),
                }),
                Err(err) => {
                    tracing::error!(%err, %key, "store: cannot load a room");
                    report(Report::LoadFailed { key });
                }
            }
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = Instant::now();
            if let Err(err) = prune(&conn, retention, now_millis()) {
                tracing::error!(%err, "store: retention policy failed");
            }
        }
        if closed && batch.is_empty() {
            break;
        }
    }
    if let Err(err) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(%err, "store: checkpoint at shutdown failed");
    }
}

/// Deletes an account (by its name) and drops the direct messages that waited for it.
pub(crate) fn delete_account(
    tx: &rusqlite::Transaction<'_>,
    account: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM accounts WHERE key = ?1")?
        .execute(params![names::key(account)])?;
    tx.prepare_cached("UPDATE directs SET pending = 0 WHERE pending = 1 AND recipient = ?1")?
        .execute(params![account])?;
    Ok(())
}

fn write_batch(conn: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut message = tx.prepare_cached(
            "INSERT INTO messages (id, ts, room_key, room, sender, text, action, cid, notice, tags, bot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut direct = tx.prepare_cached(
            "INSERT INTO directs (id, ts, sender, recipient, text, action, cid, pending, notice, tags, bot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        // An account's waiting messages were delivered, or the account is gone.
        let mut delivered = tx.prepare_cached(
            "UPDATE directs SET pending = 0 WHERE pending = 1 AND recipient = ?1",
        )?;
        let mut topic = tx.prepare_cached(
            "INSERT INTO topics (room_key, room, topic, set_by, ts, id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (room_key) DO UPDATE SET room = ?2, topic = ?3, set_by = ?4, ts = ?5, id = ?6",
        )?;
        let mut account = tx.prepare_cached(
            // The id a new account is inserted under is its identity for the roles it is
            // given (`created`); a password change keeps it.
            "INSERT INTO accounts (key, name, hash, id, created) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (key) DO UPDATE SET name = ?2, hash = ?3, id = ?4",
        )?;
        let mut account_rooms = tx
            .prepare_cached("UPDATE accounts SET rooms = ?2, owned = ?3, id = ?4 WHERE key = ?1")?;
        let mut read_markers =
            tx.prepare_cached("UPDATE accounts SET markers = ?2, id = ?3 WHERE key = ?1")?;
        let mut settings = tx.prepare_cached(
            "INSERT INTO room_settings (room_key, room, settings, id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room_key) DO UPDATE SET room = ?2, settings = ?3, id = ?4",
        )?;
        let mut state = tx.prepare_cached(
            "INSERT INTO server_state (key, value, id) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = ?2, id = ?3",
        )?;
        for record in batch {
            match record {
                Record::Account { id, name, hash } => {
                    account.execute(params![names::key(name), name, hash, *id as i64])?;
                }
                Record::AccountRooms {
                    id,
                    account,
                    rooms,
                    owned,
                } => {
                    account_rooms.execute(params![
                        names::key(account),
                        rooms.join("\n"),
                        owned.join("\n"),
                        *id as i64
                    ])?;
                }
                Record::ReadMarkers {
                    id,
                    account,
                    markers,
                } => {
                    let lines: Vec<String> =
                        markers.iter().map(|(k, m)| format!("{k}\t{m}")).collect();
                    read_markers.execute(params![
                        names::key(account),
                        lines.join("\n"),
                        *id as i64
                    ])?;
                }
                Record::RoomSettings {
                    id,
                    room,
                    settings: s,
                } => {
                    let json = serde_json::to_string(s).expect("settings serialize");
                    settings.execute(params![names::key(room), room, json, *id as i64])?;
                }
                Record::ServerBans { id, bans } => {
                    let json = serde_json::to_string(bans).expect("bans serialize");
                    state.execute(params!["bans", json, *id as i64])?;
                }
                Record::AccountDeleted { account, .. } => delete_account(&tx, account)?,
                Record::OfflineDelivered { account, .. } => {
                    delivered.execute(params![account])?;
                }
                Record::Message { msg: m, cid } => {
                    message.execute(params![
                        m.id as i64,
                        m.ts as i64,
                        names::key(&m.room),
                        m.room,
                        m.from,
                        m.text,
                        m.action,
                        cid,
                        m.notice,
                        tags_json(&m.tags),
                        m.bot
                    ])?;
                }
                Record::Direct {
                    msg: d,
                    cid,
                    offline,
                } => {
                    direct.execute(params![
                        d.id as i64,
                        d.ts as i64,
                        d.from,
                        d.to,
                        d.text,
                        d.action,
                        cid,
                        offline,
                        d.notice,
                        tags_json(&d.tags),
                        d.bot
                    ])?;
                }
                Record::Topic {
                    id,
                    room,
                    topic: text,
                    by,
                    ts,
                } => {
                    topic.execute(params![
                        names::key(room),
                        room,
                        text,
                        by,
                        *ts as i64,
                        *id as i64
                    ])?;
                }
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::hub::Record;

    fn message(id: u64, ts: u64, room: &str, text: &str) -> Record {
        Record::Message {
            msg: ChatMessage {
                id,
                ts,
                room: room.into(),
                from: "alice".into(),
                text: text.into(),
                action: false,
                notice: false,
                bot: false,
                tags: ClientTags::new(),
            },
            cid: Some(format!("c{id}")),
        }
    }

    fn open(dir: &Path, retention: Retention) -> (Store, Restored, std_mpsc::Receiver<Report>) {
        let (tx, rx) = std_mpsc::channel();
        let (store, restored) = Store::open(
            dir,
            100,
            &["#lobby".into()],
            10,
            retention,
            Patience::default(),
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        (store, restored, rx)
    }

    fn committed(rx: &std_mpsc::Receiver<Report>, through: MsgId) {
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                Report::Committed(id) if id >= through => return,
                _ => {}
            }
        }
    }

    #[test]
    fn search_finds_every_stored_message_with_all_the_words() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, rx) = open(dir.path(), Retention::default());
        let texts = [
            "Deploying the release now",
            "the deploy failed: disk full",
            "lunch?",
            "Déploiement fini, the DEPLOY worked",
            "unrelated \"quotes\" here",
        ];
        for (i, text) in texts.iter().enumerate() {
            store.append(message(i as u64 + 1, 1000, "#ops", text));
        }
        store.append(message(6, 1000, "#other", "deploy elsewhere"));
        committed(&rx, 6);
        let conn = Connection::open(dir.path().join("chat.sqlite3")).unwrap();
        let query = |words: &[&str], before: Option<u64>, limit: usize| {
            let q = HistoryQuery {
                key: "#ops".into(),
                before,
                after: None,
                before_ts: None,
                after_ts: None,
                newest: true,
                limit,
                search: Some(words.iter().map(|w| w.to_string()).collect()),
            };
            let (found, more) = read_history(&conn, &q).unwrap();
            (found.iter().map(|m| m.id).collect::<Vec<_>>(), more)
        };
        // Word prefixes, any case, accents folded, only this room; oldest first.
        assert_eq!(query(&["deploy"], None, 10), (vec![1, 2, 4], false));
        assert_eq!(query(&["deploy", "disk"], None, 10), (vec![2], false));
        assert_eq!(query(&["deploiement"], None, 10), (vec![4], false));
        // Paging back: the newest two, then what is older.
        assert_eq!(query(&["deploy"], None, 2), (vec![2, 4], true));
        assert_eq!(query(&["deploy"], Some(2), 2), (vec![1], false));
        // Quotes in the words are text to the tokenizer, never FTS syntax (no error).
        assert_eq!(query(&["\"quotes"], None, 10), (vec![5], false));
        assert_eq!(query(&["NEAR(", "AND"], None, 10), (vec![], false));
        assert_eq!(query(&["quotes"], None, 10), (vec![5], false));
        assert_eq!(query(&["nothing"], None, 10), (vec![], false));
        // Retention deletes leave the index too.
        conn.execute("DELETE FROM messages WHERE id = 1", [])
            .unwrap();
        assert_eq!(query(&["deploy"], None, 10), (vec![2, 4], false));
        // The plan walks the index, newest match first, and looks each message up by id; a
        // plan that scans the room and tests every message against the index took seconds on
        // 100,000 messages instead of milliseconds.
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {SEARCH_SQL}"))
            .unwrap()
            .query_map(params!["\"x\"*", "#ops", i64::MAX, 10], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan[0].starts_with("SCAN messages_fts VIRTUAL TABLE"),
            "{plan:?}"
        );
        assert!(plan[1].contains("USING INTEGER PRIMARY KEY"), "{plan:?}");
    }

    #[test]
    fn read_markers_are_kept_with_their_account() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _, rx) = open(dir.path(), Retention::default());
        store.append(Record::Account {
            id: 1,
            name: "Ada".into(),
            hash: "$argon2id$x".into(),
        });
        store.append(Record::ReadMarkers {
            id: 2,
            account: "Ada".into(),
            markers: vec![("#lobby".into(), 7), ("bob".into(), 9)],
        });
        store.append(Record::ReadMarkers {
            id: 3,
            account: "ada".into(),
            markers: vec![("#lobby".into(), 8), ("bob".into(), 9)],
        });
        committed(&rx, 3);
        store.close();
        let (_store, restored, _rx) = open(dir.path(), Retention::default());
        assert_eq!(
            restored.accounts[0].markers,
            vec![("#lobby".to_string(), 8), ("bob".to_string(), 9)]
        );
    }

    #[test]
    fn readers_answer_history_and_searches_beside_the_writer_and_refuse_past_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _, rx) = open(dir.path(), Retention::default());
        for id in 1..=20 {
            store.append(message(
                id,
                1000 + id,
                "#ops",
                &format!("deploy number {id}"),
            ));
        }
        committed(&rx, 20);
        let query = |search: Option<Vec<String>>| HistoryQuery {
            key: "#ops".into(),
            before: Some(15),
            after: None,
            before_ts: None,
            after_ts: None,
            newest: true,
            limit: 3,
            search,
        };
        assert!(store.history(ConnId(1), query(None)).is_none());
        assert!(
            store
                .history(ConnId(2), query(Some(vec!["deploy".into()])))
                .is_none()
        );
        let mut answered = Vec::new();
        while answered.len() < 2 {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                Report::History {
                    conn,
                    messages,
                    more,
                    ..
                } => {
                    let ids: Vec<MsgId> = messages.iter().map(|m| m.id).collect();
                    assert_eq!((ids, more), (vec![12, 13, 14], true));
                    answered.push(conn);
                }
                Report::Committed(_) => {}
                other => panic!("{other:?}"),
            }
        }
        answered.sort();
        assert_eq!(answered, [ConnId(1), ConnId(2)]);
        // A burst far past the queue: some are handed back (refused), none is lost, and
        // every one taken is answered.
        let refused = (0..READ_QUEUE * 20)
            .filter(|i| store.history(ConnId(*i as u64), query(None)).is_some())
            .count();
        let taken = READ_QUEUE * 20 - refused;
        let mut answers = 0;
        while answers < taken {
            if let Report::History { .. } = rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                answers += 1;
            }
        }
        assert!(
            refused > 0,
            "a burst of {} reads was never refused",
            READ_QUEUE * 20
        );
        store.close();
    }

    #[test]
    fn rooms_load_on_demand_with_their_history_and_cids_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, restored, rx) = open(dir.path(), Retention::default());
        assert_eq!(restored.next_id, 1);
        for id in 1..=5 {
            store.append(message(id, 1000 + id, "#Rust", &format!("m{id}")));
        }
        committed(&rx, 5);
        store.load(names::key("#RUST"));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Report::Loaded {
                key,
                room: Some(room),
            } => {
                assert_eq!(key, "#rust");
                assert_eq!(room.name, "#Rust");
                assert_eq!(room.history.len(), 5);
                assert!(!room.more);
            }
            other => panic!("{other:?}"),
        }
        store.load("#nothing".into());
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Report::Loaded { room: None, .. }
        ));
        store.close();
        let (_store, restored, _rx) = open(dir.path(), Retention::default());
        assert_eq!(restored.next_id, 6);
        let cids: Vec<String> = restored.cids.iter().map(|(c, _)| c.clone()).collect();
        assert_eq!(cids, ["c1", "c2", "c3", "c4", "c5"]);
    }

    #[test]
    fn notices_and_client_tags_come_back_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _, rx) = open(dir.path(), Retention::default());
        let tags = |pairs: &[(&str, &str)]| -> ClientTags {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut notice = message(1, 1001, "#den", "build finished");
        let mut reaction = message(2, 1002, "#den", "");
        if let Record::Message { msg, .. } = &mut notice {
            msg.notice = true;
            msg.tags = tags(&[("draft/reply", "7"), ("bot", "")]);
        }
        if let Record::Message { msg, .. } = &mut reaction {
            msg.tags = tags(&[("draft/react", "👍"), ("draft/reply", "1")]);
        }
        store.append(notice);
        store.append(reaction);
        store.append(message(3, 1003, "#den", "plain"));
        committed(&rx, 3);
        store.close();
        let (store, _, rx) = open(dir.path(), Retention::default());
        store.load(names::key("#den"));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Report::Loaded {
                room: Some(room), ..
            } => {
                let h = &room.history;
                assert!(h[0].notice);
                assert_eq!(h[0].tags, tags(&[("draft/reply", "7"), ("bot", "")]));
                assert_eq!(h[1].reaction(), Some("👍"));
                assert_eq!(h[1].reply_to(), Some(1));
                assert!(!h[2].notice && h[2].tags.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retention_deletes_by_age_and_by_count_per_room() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_millis();
        let old = now - 10 * 86_400_000;
        let (mut store, _, rx) = open(dir.path(), Retention::default());
        store.append(message(1, old, "#a", "old"));
        for id in 2..=6 {
            store.append(message(id, now, "#a", "new"));
        }
        store.append(message(7, now, "#b", "b"));
        committed(&rx, 7);
        store.close();
        let count = |dir: &Path| -> i64 {
            Connection::open(dir.join("chat.sqlite3"))
                .unwrap()
                .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(dir.path()), 7);
        let by_age = Retention {
            max_age_days: 7,
            per_room: 0,
        };
        drop(open(dir.path(), by_age));
        assert_eq!(count(dir.path()), 6, "the 10-day-old message is gone");
        let by_count = Retention {
            max_age_days: 0,
            per_room: 3,
        };
        drop(open(dir.path(), by_count));
        assert_eq!(count(dir.path()), 4, "#a keeps its newest 3, #b its one");
    }

    #[test]
    fn an_old_database_gets_case_folded_room_keys_a_cid_column_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("chat.sqlite3")).unwrap();
            conn.execute_batch(
                "CREATE TABLE messages (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                     room_key TEXT NOT NULL, room TEXT NOT NULL, sender TEXT NOT NULL,
                     text TEXT NOT NULL, action INTEGER NOT NULL);
                 INSERT INTO messages VALUES (1, 1, '#straße', '#STRASSE', 'a', 'hi', 0);",
            )
            .unwrap();
        }
        let (store, restored, rx) = open(dir.path(), Retention::default());
        assert_eq!(restored.next_id, 2);
        store.load(names::key("#strasse"));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Report::Loaded {
                room: Some(room), ..
            } => {
                assert_eq!(room.history[0].text, "hi");
                assert!(!room.history[0].notice && room.history[0].tags.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accounts_of_schema_1_keep_working_and_settings_come_back_with_their_room() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("chat.sqlite3")).unwrap();
            conn.execute_batch(
                "CREATE TABLE accounts (key TEXT PRIMARY KEY, name TEXT NOT NULL,
                     hash TEXT NOT NULL, rooms TEXT NOT NULL DEFAULT '', id INTEGER NOT NULL);
                 INSERT INTO accounts VALUES ('ada', 'Ada', '$argon2id$x', '#lobby', 3);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let (store, restored, rx) = open(dir.path(), Retention::default());
        assert_eq!(restored.next_id, 4);
        let ada = &restored.accounts[0];
        assert_eq!((ada.name.as_str(), ada.created), ("Ada", 0));
        assert!(ada.owned.is_empty());
        // A room with nothing but settings is a room the store has.
        let settings: RoomSettings = serde_json::from_str(
            r#"{"roles":{"ada":{"role":"owner","account":0}},"modes":{"topic_lock":true}}"#,
        )
        .unwrap();
        store.append(Record::RoomSettings {
            id: 4,
            room: "#Quiet".into(),
            settings: settings.clone(),
        });
        committed(&rx, 4);
        store.load(names::key("#quiet"));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Report::Loaded {
                room: Some(room), ..
            } => {
                assert_eq!(room.name, "#Quiet");
                assert_eq!(room.settings, settings);
            }
            other => panic!("{other:?}"),
        }
        // A settings row that does not parse is an error, not a room without its bans.
        let conn = Connection::open(dir.path().join("chat.sqlite3")).unwrap();
        conn.execute(
            "UPDATE room_settings SET settings = '{\"bans\": 7}' WHERE room_key = ?1",
            params![names::key("#quiet")],
        )
        .unwrap();
        let err = load_room(&conn, &names::key("#quiet"), 10).unwrap_err();
        assert!(err.to_string().contains("room settings"), "{err}");
    }
}
