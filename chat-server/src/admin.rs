//! Maintenance subcommands for the person running the server: back up and restore the
//! database, list, reset and delete accounts, export a room's history.
//!
//! They work whether the server runs or not. Reads (backups, lists, exports) go to the SQLite
//! file directly: WAL lets them read a consistent snapshot while the server writes. Changes go
//! through the running server when there is one, over a Unix socket in the data directory
//! (`control.sock`, readable by the server's user only), so that what it holds in memory
//! changes with the file; when it is stopped, they change the file directly, holding the lock
//! the server takes at start (`chat.lock`), so that it cannot start in the middle.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_core::names;
use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};

use crate::Config;

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copy the database to DEST, consistent even while the server runs (SQLite's online
    /// backup). DEST is a file, or a directory (made if it ends with /) to write
    /// chat-YYYYMMDD-HHMMSS.sqlite3 into.
    Backup {
        /// Where to write the copy.
        dest: PathBuf,
    },
    /// Replace the database with a backup. The server must be stopped; the database it
    /// replaces is kept beside it as chat.sqlite3.before-restore-YYYYMMDD-HHMMSS.
    Restore {
        /// The backup to restore.
        source: PathBuf,
    },
    /// List, reset the password of, or delete registered accounts.
    #[command(subcommand)]
    Accounts(Accounts),
    /// Write a room's stored history as JSON Lines, one message per line, oldest first.
    Export {
        /// The room (with its #).
        room: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// What to do with accounts.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Accounts {
    /// List every registered account with its rooms; a server operator is marked.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Register an account (its password asked twice on a terminal, or one line from standard
    /// input with --password-stdin): to make the account an `--operator` names before anyone
    /// connects.
    Add {
        /// The account's name.
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (asked twice on a terminal, or one line from standard input with
    /// --password-stdin). Devices logged in to the account are disconnected.
    ResetPassword {
        /// The account.
        name: String,
        /// Read the new password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account: its devices are disconnected and its name is free to register.
    /// Messages it sent stay in the rooms' history.
    Delete {
        /// The account.
        name: String,
    },
}

/// The database file in a data directory.
pub fn database(dir: &Path) -> PathBuf {
    dir.join("chat.sqlite3")
}

/// The control socket in a data directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// The lock file in a data directory.
fn lock_path(dir: &Path) -> PathBuf {
    dir.join("chat.lock")
}

/// Takes the data directory's lock: held by a running server, and by a subcommand changing a
/// stopped server's database. `None` when someone else holds it.
pub fn lock(dir: &Path) -> anyhow::Result<Option<File>> {
    crate::private::dir(dir)?;
    let path = lock_path(dir);
    let file =
        crate::private::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(err)) => {
            // A file system without locks (some network file systems): go on unlocked.
            tracing::warn!(path = %path.display(), %err, "cannot lock the data directory; nothing keeps a second server out of it");
            Ok(Some(file))
        }
    }
}

/// A change asked of the running server over its control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Register an account with this password hash.
    AddAccount {
        /// The account.
        account: String,
        /// Its hash (PHC string).
        hash: String,
    },
    /// Set an account's password hash.
    ResetPassword {
        /// The account.
        account: String,
        /// The new hash (PHC string).
        hash: String,
    },
    /// Delete an account.
    DeleteAccount {
        /// The account.
        account: String,
    },
}

impl Request {
    /// What it does, for the log (never the hash).
    pub fn describe(&self) -> String {
        match self {
            Request::AddAccount { account, .. } => format!("added the account {account}"),
            Request::ResetPassword { account, .. } => format!("reset the password of {account}"),
            Request::DeleteAccount { account } => format!("deleted the account {account}"),
        }
    }
}

/// The running server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs a subcommand.
pub fn run(config: &Config, command: &Command) -> anyhow::Result<()> {
    if config.in_memory {
        bail!("this server keeps nothing on disk (in-memory): there is nothing to maintain");
    }
    let dir = &config.data_dir;
    match command {
        Command::Backup { dest } => backup(dir, dest),
        Command::Restore { source } => restore(dir, source),
        Command::Export { room, output } => {
            let conn = open_existing(dir)?;
            match output {
                Some(path) => {
                    let file = File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    let n = export(&conn, room, &mut out)?;
                    out.flush()?;
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    eprintln!("exported {n} messages of {room} to {}", path.display());
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    let n = export(&conn, room, &mut out)?;
                    out.flush()?;
                    eprintln!("exported {n} messages of {room}");
                }
            }
            Ok(())
        }
        Command::Accounts(Accounts::List { json }) => {
            let conn = open_existing(dir)?;
            let mut out = std::io::stdout().lock();
            list_accounts(&conn, &config.operators, *json, &mut out)
        }
        Command::Accounts(Accounts::Add {
            name,
            password_stdin,
        }) => {
            let password = new_password(*password_stdin, config.min_password)?;
            let hash = chat_core::password::hash(&password, &config.password_cost());
            let request = Request::AddAccount {
                account: name.clone(),
                hash,
            };
            let how = change(dir, &request)?;
            eprintln!("added the account {name} ({how})");
            Ok(())
        }
        Command::Accounts(Accounts::ResetPassword {
            name,
            password_stdin,
        }) => {
            let password = new_password(*password_stdin, config.min_password)?;
            let hash = chat_core::password::hash(&password, &config.password_cost());
            let request = Request::ResetPassword {
                account: name.clone(),
                hash,
            };
            let how = change(dir, &request)?;
            eprintln!("the password of {name} is reset ({how}); its devices were disconnected");
            Ok(())
        }
        Command::Accounts(Accounts::Delete { name }) => {
            let request = Request::DeleteAccount {
                account: name.clone(),
            };
            let how = change(dir, &request)?;
            eprintln!("deleted the account {name} ({how})");
            Ok(())
        }
    }
}

/// Opens the database of a data directory, which must exist.
fn open_existing(dir: &Path) -> anyhow::Result<Connection> {
    let path = database(dir);
    if !path.is_file() {
        bail!(
            "there is no database at {} (is --data-dir right?)",
            path.display()
        );
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != crate::store::SCHEMA_VERSION {
        bail!(
            "{} has schema version {version} and this chat-server knows {}: {}",
            path.display(),
            crate::store::SCHEMA_VERSION,
            if version < crate::store::SCHEMA_VERSION {
                "start the server once to upgrade it"
            } else {
                "use the newer chat-server that wrote it"
            }
        );
    }
    Ok(conn)
}

/// Makes a change: through the running server if there is one, else in the file. Says which.
fn change(dir: &Path, request: &Request) -> anyhow::Result<&'static str> {
    let socket = socket_path(dir);
    #[cfg(unix)]
    if let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) {
        let reply = ask(stream, request)?;
        return match reply.error {
            None => Ok("through the running server"),
            Some(error) => bail!("{error}"),
        };
    }
    let Some(_lock) = lock(dir)? else {
        bail!(
            "the server holding {} is running but does not answer on {}",
            dir.display(),
            socket.display()
        );
    };
    let mut conn = open_existing(dir)?;
    let tx = conn.transaction()?;
    let changed = match request {
        Request::AddAccount { account, hash } => {
            crate::store::add_account(&tx, account, hash)?;
            1
        }
        Request::ResetPassword { account, hash } => tx.execute(
            "UPDATE accounts SET hash = ?2 WHERE key = ?1",
            params![names::key(account), hash],
        )?,
        Request::DeleteAccount { account } => {
            let key = names::key(account);
            let name: Option<String> = tx
                .query_row("SELECT name FROM accounts WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .ok();
            if let Some(name) = &name {
                crate::store::delete_account(&tx, name)?;
            }
            usize::from(name.is_some())
        }
    };
    let account = match request {
        Request::AddAccount { account, .. }
        | Request::ResetPassword { account, .. }
        | Request::DeleteAccount { account } => account,
    };
    if changed == 0 {
        bail!("there is no account called {account}");
    }
    tx.commit()?;
    Ok("in the database; the server is stopped")
}

/// Sends one request over the control socket and reads the answer.
#[cfg(unix)]
fn ask(stream: std::os::unix::net::UnixStream, request: &Request) -> anyhow::Result<Reply> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("the server did not answer")?;
    serde_json::from_str(&answer).context("the server's answer cannot be read")
}

/// The new password: one line of standard input, or asked twice without echo.
fn new_password(from_stdin: bool, min: usize) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("new password: ")
            .context("cannot read a password (no terminal? use --password-stdin)")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing changed");
        }
        first
    };
    if password.chars().count() < min {
        bail!("a password has at least {min} characters (min-password)");
    }
    if password.len() > chat_core::hub::MAX_PASSWORD {
        bail!(
            "a password has at most {} bytes",
            chat_core::hub::MAX_PASSWORD
        );
    }
    Ok(password)
}

/// Copies the database to `dest` in one read transaction (so the copy is the database at one
/// instant, whatever the server commits meanwhile), checks the copy, and renames it into place.
pub fn backup(dir: &Path, dest: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let source = open_existing(dir)?;
    if dest.as_os_str().to_string_lossy().ends_with('/') {
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
    }
    let dest = if dest.is_dir() {
        dest.join(format!(
            "chat-{}.sqlite3",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ))
    } else {
        dest.to_path_buf()
    };
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    // A backup holds what the database holds: only its owner reads it.
    crate::private::file(&partial)?;
    {
        let mut copy = Connection::open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
            // All pages in one step: one read transaction, one consistent snapshot. Steps of
            // a few pages would start over each time the server commits.
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => {}
                other => bail!("the backup did not finish: {other:?}"),
            }
        }
        // One self-contained file: no WAL beside it.
        copy.pragma_update(None, "journal_mode", "DELETE")?;
        let ok: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if ok != "ok" {
            bail!("the copy fails its integrity check: {ok}");
        }
    }
    File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &dest)
        .with_context(|| format!("cannot move the copy to {}", dest.display()))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    let copy = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |table: &str| -> rusqlite::Result<i64> {
        copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
    };
    let size = std::fs::metadata(&dest)?.len();
    println!(
        "backed up {} messages, {} direct messages and {} accounts to {} ({:.1} MB in {} ms)",
        count("messages")?,
        count("directs")?,
        count("accounts")?,
        dest.display(),
        size as f64 / 1e6,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Puts a backup in place of the database of a stopped server.
pub fn restore(dir: &Path, source: &Path) -> anyhow::Result<()> {
    let Some(_lock) = lock(dir)? else {
        bail!(
            "the server holding {} is running: stop it first, then restore",
            dir.display()
        );
    };
    {
        let backup = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", source.display()))?;
        let ok: String = backup
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .with_context(|| format!("{} is not an SQLite database", source.display()))?;
        if ok != "ok" {
            bail!("{} fails its integrity check: {ok}", source.display());
        }
        let version: i64 = backup.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > crate::store::SCHEMA_VERSION {
            bail!(
                "{} was written by a newer chat-server (schema {version})",
                source.display()
            );
        }
        backup
            .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .with_context(|| format!("{} is not a chat-server database", source.display()))?;
    }
    let db = database(dir);
    if db.exists() {
        // Fold the WAL in first, so that the file kept aside is whole. The database being
        // replaced may be damaged (the reason for a restore): then its WAL goes aside with it,
        // under the name SQLite looks for beside it.
        let _ =
            Connection::open(&db).and_then(|c| c.pragma_update(None, "wal_checkpoint", "TRUNCATE"));
        let aside = format!(
            "chat.sqlite3.before-restore-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        );
        std::fs::rename(&db, dir.join(&aside))?;
        let wal = dir.join("chat.sqlite3-wal");
        if wal.exists() {
            std::fs::rename(&wal, dir.join(format!("{aside}-wal")))?;
        }
        eprintln!(
            "the database it replaces is kept as {}",
            dir.join(&aside).display()
        );
    }
    let _ = std::fs::remove_file(dir.join("chat.sqlite3-shm"));
    let partial = dir.join("chat.sqlite3.partial");
    std::fs::copy(source, &partial).with_context(|| format!("cannot copy {}", source.display()))?;
    File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &db)?;
    let _ = File::open(dir).and_then(|d| d.sync_all());
    println!(
        "restored {} into {}; start the server",
        source.display(),
        db.display()
    );
    Ok(())
}

/// One exported message.
#[derive(Serialize)]
struct Exported<'a> {
    id: i64,
    ts: i64,
    time: String,
    room: &'a str,
    from: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    action: bool,
}

/// Writes the stored messages of `room`, oldest first, one JSON object per line; returns how
/// many. One read transaction: a consistent snapshot.
pub fn export(conn: &Connection, room: &str, out: &mut impl Write) -> anyhow::Result<u64> {
    let key = names::key(room);
    let tx = conn.unchecked_transaction()?;
    let known: i64 = tx.query_row(
        "SELECT (SELECT count(*) FROM messages WHERE room_key = ?1)
              + (SELECT count(*) FROM topics WHERE room_key = ?1)
              + (SELECT count(*) FROM room_settings WHERE room_key = ?1)",
        [&key],
        |r| r.get(0),
    )?;
    if known == 0 {
        bail!("the store has nothing of {room}: no messages, topic or settings");
    }
    let mut statement = tx.prepare(
        "SELECT id, ts, room, sender, text, action FROM messages WHERE room_key = ?1 ORDER BY id",
    )?;
    let mut rows = statement.query([&key])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let (room, from, text): (String, String, String) = (row.get(2)?, row.get(3)?, row.get(4)?);
        let ts: i64 = row.get(1)?;
        let message = Exported {
            id: row.get(0)?,
            ts,
            time: chrono::DateTime::from_timestamp_millis(ts)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            room: &room,
            from: &from,
            text: &text,
            action: row.get(5)?,
        };
        serde_json::to_writer(&mut *out, &message)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

/// One listed account.
#[derive(Serialize)]
struct Listed {
    name: String,
    rooms: Vec<String>,
    owned: Vec<String>,
    operator: bool,
}

/// Lists the accounts, by name.
pub fn list_accounts(
    conn: &Connection,
    operators: &[String],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let operators: Vec<String> = operators.iter().map(|o| names::key(o)).collect();
    let mut statement =
        conn.prepare("SELECT key, name, rooms, owned FROM accounts ORDER BY key")?;
    let split = |s: String| -> Vec<String> {
        s.split('\n')
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect()
    };
    let accounts: Vec<Listed> = statement
        .query_map([], |r| {
            let key: String = r.get(0)?;
            Ok(Listed {
                operator: operators.contains(&key),
                name: r.get(1)?,
                rooms: split(r.get(2)?),
                owned: split(r.get(3)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    if json {
        for account in &accounts {
            serde_json::to_writer(&mut *out, account)?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    let width = accounts
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(out, "{:width$}  OPERATOR  ROOMS", "NAME")?;
    for account in &accounts {
        let rooms = account.rooms.join(" ");
        let operator = if account.operator { "yes" } else { "" };
        writeln!(out, "{:width$}  {operator:8}  {rooms}", account.name)?;
    }
    writeln!(out, "({} accounts)", accounts.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        let request = Request::DeleteAccount {
            account: "ada".into(),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(text, r#"{"op":"delete_account","account":"ada"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        assert_eq!(serde_json::to_string(&Reply { error: None }).unwrap(), "{}");
    }

    #[test]
    fn a_held_lock_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(held.is_some());
        assert!(lock(dir.path()).unwrap().is_none(), "a second holder");
        drop(held);
        assert!(lock(dir.path()).unwrap().is_some(), "free again");
    }
}
