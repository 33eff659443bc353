//! Who may drive a rollout: the per-rollout lock, and the abort request a
//! second process leaves for the one holding it.
//!
//! Two coordinators driving one rollout would both update the next stage:
//! twice the nodes down at once, which is how a cluster loses its quorum.
//! So a coordinator holds `<state>/rollouts/<id>.lock` (flock: the kernel
//! drops it when the process dies, so a killed coordinator never leaves a
//! rollout locked). `ferry rollout abort` and `pause` cannot take that
//! lock from a running coordinator; they leave `<id>.abort` or `<id>.pause`
//! instead, which the coordinator reads before every stage and during
//! every bake.

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

/// What a second process may ask of the coordinator driving a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// No more nodes, for good (`ferry rollout abort`).
    Abort,
    /// No more nodes until `ferry rollout resume` (`ferry rollout pause`).
    Pause,
}

impl StopRequest {
    fn suffix(self) -> &'static str {
        match self {
            StopRequest::Abort => "abort",
            StopRequest::Pause => "pause",
        }
    }

    /// The past participle, for messages ("can be paused").
    pub fn done(self) -> &'static str {
        match self {
            StopRequest::Abort => "aborted",
            StopRequest::Pause => "paused",
        }
    }
}

/// `<state>/rollouts/<id>.abort` (or `.pause`): present while requested.
pub fn stop_request_path(state_dir: &Path, id: &str, request: StopRequest) -> PathBuf {
    RolloutRecord::dir(state_dir).join(format!("{id}.{}", request.suffix()))
}

/// Asks the coordinator driving `id` to stop before its next stage.
pub fn request_stop(state_dir: &Path, id: &str, request: StopRequest) -> Result<()> {
    let path = stop_request_path(state_dir, id, request);
    let dir = RolloutRecord::dir(state_dir);
    ferry_node::durable::create_dir_all(&dir, 0o755)
        .map_err(|e| CoordinatorError::io(format!("cannot create {}", dir.display()), e))?;
    let text = format!("{} requested\n", request.suffix());
    ferry_node::durable::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|e| CoordinatorError::io(format!("cannot write {}", path.display()), e))
}

pub fn stop_requested(state_dir: &Path, id: &str, request: StopRequest) -> bool {
    stop_request_path(state_dir, id, request).exists()
}

/// Forgets a request (it has been honoured, or the rollout ended).
pub fn clear_stop_request(state_dir: &Path, id: &str, request: StopRequest) {
    let _ = std::fs::remove_file(stop_request_path(state_dir, id, request));
}

pub fn abort_requested(state_dir: &Path, id: &str) -> bool {
    stop_requested(state_dir, id, StopRequest::Abort)
}

/// Forgets an abort request (it has been honoured, or the rollout ended).
pub fn clear_abort_request(state_dir: &Path, id: &str) {
    clear_stop_request(state_dir, id, StopRequest::Abort);
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
        request_stop(dir.path(), "r1", StopRequest::Abort).unwrap();
        assert!(abort_requested(dir.path(), "r1"));
        assert!(!abort_requested(dir.path(), "r2"));
        clear_abort_request(dir.path(), "r1");
        assert!(!abort_requested(dir.path(), "r1"));
    }
}
