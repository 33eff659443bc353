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
