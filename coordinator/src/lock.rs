//! Who may drive a rollout: the per-rollout lock, and the abort request a
//! second process leaves for the one holding it.
//!
//! Two coordinators driving one rollout would both update the next stage:
//! twice the nodes down at once, which is how a cluster loses its quorum.
//! So a coordinator holds `<state>/rollouts/<id>.lock` (flock: the kernel
//! drops it when the process dies, so a killed coordinator never leaves a
//! rollout locked). `ferry rollout abort` cannot take that lock from a
//! running coordinator; it leaves `<id>.abort` instead, which the
//! coordinator reads before every stage and during every bake.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{CoordinatorError, Result};
use crate::record::RolloutRecord;

/// Holds `<state>/rollouts/<id>.lock` while a coordinator drives a rollout.
pub struct RolloutLock {
    _file: File,
}

impl RolloutLock {
    /// Takes the lock, or says that another coordinator holds it.
    pub fn acquire(state_dir: &Path, id: &str) -> Result<RolloutLock> {
        match RolloutLock::try_acquire(state_dir, id)? {
            Some(lock) => Ok(lock),
            None => Err(CoordinatorError::DrivenElsewhere {
                id: id.to_string(),
                lock: lock_path(state_dir, id),
            }),
        }
    }

    /// Takes the lock; `None` when another process holds it.
    pub fn try_acquire(state_dir: &Path, id: &str) -> Result<Option<RolloutLock>> {
        let dir = RolloutRecord::dir(state_dir);
        ferry_node::durable::create_dir_all(&dir, 0o755)
            .map_err(|e| CoordinatorError::io(format!("cannot create {}", dir.display()), e))?;
        let path = lock_path(state_dir, id);
        Ok(ferry_node::lock::try_lock_file(&path)?.map(|file| RolloutLock { _file: file }))
    }
}

fn lock_path(state_dir: &Path, id: &str) -> PathBuf {
    RolloutRecord::dir(state_dir).join(format!("{id}.lock"))
}

/// `<state>/rollouts/<id>.abort`: present while an abort is requested.
pub fn abort_request_path(state_dir: &Path, id: &str) -> PathBuf {
    RolloutRecord::dir(state_dir).join(format!("{id}.abort"))
}

/// Asks the coordinator driving `id` to stop before its next stage.
pub fn request_abort(state_dir: &Path, id: &str) -> Result<()> {
    let path = abort_request_path(state_dir, id);
    let dir = RolloutRecord::dir(state_dir);
    ferry_node::durable::create_dir_all(&dir, 0o755)
        .map_err(|e| CoordinatorError::io(format!("cannot create {}", dir.display()), e))?;
    ferry_node::durable::write_atomic(&path, b"abort requested\n", 0o644)
        .map_err(|e| CoordinatorError::io(format!("cannot write {}", path.display()), e))
}

pub fn abort_requested(state_dir: &Path, id: &str) -> bool {
    abort_request_path(state_dir, id).exists()
}

/// Forgets an abort request (it has been honoured, or the rollout ended).
pub fn clear_abort_request(state_dir: &Path, id: &str) {
    let _ = std::fs::remove_file(abort_request_path(state_dir, id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_coordinator_cannot_drive_a_locked_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let held = RolloutLock::acquire(dir.path(), "r1").unwrap();
        let err = RolloutLock::acquire(dir.path(), "r1")
            .err()
            .expect("the second lock must fail")
            .to_string();
        assert!(err.contains("another coordinator"), "{err}");
        assert!(RolloutLock::try_acquire(dir.path(), "r1")
            .unwrap()
            .is_none());
        // Other rollouts are independent.
        RolloutLock::acquire(dir.path(), "r2").unwrap();
        drop(held);
        RolloutLock::acquire(dir.path(), "r1").unwrap();
    }

    #[test]
    fn an_abort_request_is_seen_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!abort_requested(dir.path(), "r1"));
        request_abort(dir.path(), "r1").unwrap();
        assert!(abort_requested(dir.path(), "r1"));
        assert!(!abort_requested(dir.path(), "r2"));
        clear_abort_request(dir.path(), "r1");
        assert!(!abort_requested(dir.path(), "r1"));
    }
}
