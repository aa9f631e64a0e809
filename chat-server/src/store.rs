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

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use chat_core::hub::{Record, RestoredRoom};
use chat_core::names;
use chat_core::protocol::{ChatMessage, MsgId};
use rusqlite::{Connection, params};

/// Most records in one transaction, so one huge backlog does not hold a commit too long.
const MAX_BATCH: usize = 4096;

/// What was in the database at startup.
#[derive(Debug, Default)]
pub struct Restored {
    /// Rooms with their topics and recent history.
    pub rooms: Vec<RestoredRoom>,
    /// One more than the highest id ever stored.
    pub next_id: MsgId,
    /// Number of messages stored in all.
    pub messages: u64,
}

/// The writer thread, seen from the server.
pub struct Store {
    tx: Option<std_mpsc::Sender<Record>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `dir/chat.sqlite3`, loads what the hub needs back, and starts
    /// the writer thread. `on_commit` is called on that thread with the highest committed id
    /// after each transaction.
    pub fn open(
        dir: &Path,
        history: usize,
        on_commit: impl Fn(MsgId) + Send + 'static,
    ) -> anyhow::Result<(Store, Restored)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join("chat.sqlite3");
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
             );",
        )
        .context("cannot create the schema")?;
        let restored = load(&conn, history).context("cannot load stored rooms")?;
        let (tx, rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-store".into())
            .spawn(move || write_loop(conn, rx, on_commit))
            .context("cannot start the store thread")?;
        Ok((
            Store {
                tx: Some(tx),
                thread: Some(thread),
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
            let _ = tx.send(record);
        }
    }

    /// Commits everything queued and stops the writer thread.
    pub fn close(&mut self) {
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

fn load(conn: &Connection, history: usize) -> rusqlite::Result<Restored> {
    let next_id: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages), 0),
                    COALESCE((SELECT MAX(id) FROM directs), 0),
                    COALESCE((SELECT MAX(id) FROM topics), 0)) + 1",
        [],
        |r| r.get(0),
    )?;
    let messages: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
    let mut keys: Vec<String> = conn
        .prepare(
            "SELECT room_key FROM messages GROUP BY room_key UNION SELECT room_key FROM topics",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    keys.sort();
    keys.dedup();
    let mut rooms = Vec::with_capacity(keys.len());
    let mut recent = conn.prepare(
        "SELECT id, ts, room, sender, text, action FROM messages
         WHERE room_key = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut topic =
        conn.prepare("SELECT room, topic, set_by, ts FROM topics WHERE room_key = ?1")?;
    let mut count = conn.prepare("SELECT COUNT(*) FROM messages WHERE room_key = ?1")?;
    for key in keys {
        let mut history: Vec<ChatMessage> = recent
            .query_map(params![key, history as i64], |r| {
                Ok(ChatMessage {
                    id: r.get::<_, i64>(0)? as u64,
                    ts: r.get::<_, i64>(1)? as u64,
                    room: r.get(2)?,
                    from: r.get(3)?,
                    text: r.get(4)?,
                    action: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        history.reverse();
        let total: i64 = count.query_row(params![key], |r| r.get(0))?;
        let mut room = RestoredRoom {
            name: history.first().map(|m| m.room.clone()).unwrap_or_default(),
            more: (total as usize) > history.len(),
            history,
            ..RestoredRoom::default()
        };
        let stored_topic = topic
            .query_row(params![key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .ok();
        if let Some((name, text, by, ts)) = stored_topic {
            room.name = name;
            room.topic = text;
            room.topic_set = Some((by, ts as u64));
        }
        if names::key(&room.name) == key {
            rooms.push(room);
        }
    }
    Ok(Restored {
        rooms,
        next_id: next_id as u64,
        messages: messages as u64,
    })
}

fn write_loop(mut conn: Connection, rx: std_mpsc::Receiver<Record>, on_commit: impl Fn(MsgId)) {
    let mut batch = Vec::with_capacity(256);
    // Blocks for the first record of a batch, then takes whatever else is already waiting.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let through = batch.iter().map(Record::id).max().unwrap_or(0);
        match write_batch(&mut conn, &batch) {
            Ok(()) => on_commit(through),
            Err(err) => {
                // The messages stay unacknowledged: their senders never see the echo. Keep
                // going, so a transient error (disk full) does not stop later commits.
                tracing::error!(%err, records = batch.len(), "store: commit failed");
            }
        }
        batch.clear();
    }
    if let Err(err) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(%err, "store: checkpoint at shutdown failed");
    }
}

fn write_batch(conn: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut message = tx.prepare_cached(
            "INSERT INTO messages (id, ts, room_key, room, sender, text, action)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut direct = tx.prepare_cached(
            "INSERT INTO directs (id, ts, sender, recipient, text, action)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut topic = tx.prepare_cached(
            "INSERT INTO topics (room_key, room, topic, set_by, ts, id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (room_key) DO UPDATE SET room = ?2, topic = ?3, set_by = ?4, ts = ?5, id = ?6",
        )?;
        for record in batch {
            match record {
                Record::Message(m) => {
                    message.execute(params![
                        m.id as i64,
                        m.ts as i64,
                        names::key(&m.room),
                        m.room,
                        m.from,
                        m.text,
                        m.action
                    ])?;
                }
                Record::Direct {
                    id,
                    ts,
                    from,
                    to,
                    text,
                    action,
                } => {
                    direct.execute(params![*id as i64, *ts as i64, from, to, text, action])?;
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
