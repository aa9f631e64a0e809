//! Files only the server's user may read, whatever the umask it was started with: the data
//! directory (0700) and everything in it (0600: the database and its WAL and SHM, which hold
//! password hashes and every message; the TLS key; the lock; the control socket), and backups.
//! An existing directory or file that is looser is tightened, with a warning naming what it was.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Creates the directory (and its parents) 0700, or tightens it to 0700 when it exists with
/// rights for others, then tightens every file in it to 0600.
pub fn dir(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create data directory {}", path.display()))?;
    }
    tighten(path, 0o700)?;
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let entry = entry?;
        let kind = entry.file_type()?;
        // The control socket is a file too; subdirectories are the operator's.
        if !kind.is_dir() && !kind.is_symlink() {
            tighten(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Creates an empty file 0600 if there is none (SQLite then writes into it, and gives its WAL
/// and SHM the same mode), else tightens it to 0600.
pub fn file(path: &Path) -> anyhow::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => tighten(path, 0o600),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Opens (creating 0600) a file to write, such as the data directory's lock.
pub fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Takes the rights of group and others away from `path` when it has any, saying so.
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let was = meta.permissions().mode() & 0o7777;
    if was & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{was:04o}"),
        now = format!("{mode:04o}"),
        "other users could read this; it is private now"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_and_file_are_private_and_loose_ones_are_tightened() {
        let base = tempfile::tempdir().unwrap();
        let dir_path = base.path().join("a/data");
        dir(&dir_path).unwrap();
        assert_eq!(mode(&dir_path), 0o700);
        let db = dir_path.join("chat.sqlite3");
        file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::set_permissions(&dir_path, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        let wal = dir_path.join("chat.sqlite3-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, Permissions::from_mode(0o664)).unwrap();
        dir(&dir_path).unwrap();
        assert_eq!(
            (mode(&dir_path), mode(&db), mode(&wal)),
            (0o700, 0o600, 0o600)
        );
        // A file that exists keeps its content.
        std::fs::write(&db, b"kept").unwrap();
        file(&db).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"kept");
    }
}
