//! One ferry operation per node at a time.
//!
//! Two concurrent operations (a timer-started apply and an operator's
//! rollback, say) would each believe they own `current`. An exclusive,
//! non-blocking flock on `state_dir/lock` makes the second fail at once with
//! its own exit code, before it reads or writes anything else. The kernel
//! drops the lock when the process dies, so a crashed run never wedges a node.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::NodeError;

/// Held for the whole operation; released on drop (or process exit).
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, NodeError> {
        crate::durable::create_dir_all(state_dir, 0o755).map_err(|e| {
            NodeError::io(
                format!("cannot create state_dir {}", state_dir.display()),
                e,
            )
        })?;
        let path = state_dir.join("lock");
        match try_lock_file(&path)? {
            Some(file) => Ok(StateLock { _file: file, path }),
            None => Err(NodeError::LockHeld { path }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating it) and exclusively flocks `path` without waiting;
/// `None` when another process holds it. flock, not a pid file: the
/// kernel drops it when its holder dies, so a crash never leaves a lock.
pub fn try_lock_file(path: &Path) -> Result<Option<File>, NodeError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| NodeError::io(format!("cannot open lock file {}", path.display()), e))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(NodeError::io(
            format!("cannot lock {}", path.display()),
            io::Error::from(e),
        )),
    }
}

/// Whether some process holds the state lock right now, told without
/// taking it: a read-only command that took the lock, even for a moment,
/// would make a concurrent apply fail with "another ferry operation is
/// running". Linux lists every flock in `/proc/locks` by device and inode.
/// `None` when it cannot be told (no `/proc`); `Some(false)` when there is
/// no lock file at all.
pub fn held_by_anyone(state_dir: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(state_dir.join("lock")) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = (
        rustix::fs::major(meta.dev()),
        rustix::fs::minor(meta.dev()),
        meta.ino(),
    );
    Some(locks.lines().any(|line| holder_of(line) == Some(wanted)))
}

/// The device and inode a `/proc/locks` line says is flocked, e.g.
/// `1: FLOCK  ADVISORY  WRITE 10413 fe:00:10010679 0 EOF` (major and minor
/// in hex). Waiters (`1: -> FLOCK ...`) hold nothing and are skipped.
fn holder_of(line: &str) -> Option<(u32, u32, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    let mut parts = fields.get(5)?.split(':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let inode = parts.next()?.parse().ok()?;
    Some((major, minor, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_without_taking_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(held_by_anyone(dir.path()), Some(false));
        let lock = StateLock::acquire(dir.path()).unwrap();
        assert_eq!(held_by_anyone(dir.path()), Some(true));
        drop(lock);
        assert_eq!(held_by_anyone(dir.path()), Some(false));
    }

    #[test]
    fn proc_locks_lines_are_read() {
        assert_eq!(
            holder_of("1: FLOCK  ADVISORY  WRITE 10413 fe:00:10010679 0 EOF"),
            Some((0xfe, 0, 10010679))
        );
        assert_eq!(
            holder_of("1: -> FLOCK  ADVISORY  WRITE 10413 fe:00:10010679 0 EOF"),
            None
        );
        assert_eq!(
            holder_of("2: POSIX  ADVISORY  WRITE 10413 fe:00:10010679 0 EOF"),
            None
        );
    }
}
