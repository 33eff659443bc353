//! Stopping a rollout on request: `abort` (no more nodes, for good) and
//! `pause` (no more nodes until `resume`), from the CLI or the API.
//!
//! A coordinator driving the rollout holds its lock and cannot be stopped
//! from outside without leaving a node half-updated, so it is *asked*: a
//! request file (`<state>/rollouts/<id>.abort` or `.pause`, [`crate::lock`])
//! it reads before every stage and during every bake; nodes updating when
//! it sees the request finish first. A rollout nobody drives (awaiting
//! promotion, planned, or left by a dead coordinator) changes state at once.

use std::path::Path;

use jiff::Timestamp;

use crate::error::{CoordinatorError, Result};
use crate::lock::{self, RolloutLock, StopRequest};
use crate::record::{label, RolloutRecord, RolloutState};

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A coordinator drives it: asked to stop before its next stage.
    Requested,
    /// Nobody drove it: it is aborted (or paused) now.
    Now(RolloutState),
}

/// The states `request` applies to.
fn allowed(request: StopRequest) -> &'static [RolloutState] {
    match request {
        StopRequest::Abort => &[
            RolloutState::Planned,
            RolloutState::Running,
            RolloutState::AwaitingPromotion,
            RolloutState::Paused,
        ],
        // A rollout awaiting promotion or paused already waits for an
        // operator; one that ended cannot be paused.
        StopRequest::Pause => &[RolloutState::Running],
    }
}

/// Aborts or pauses rollout `id` (see the module docs).
pub fn stop(state_dir: &Path, id: &str, request: StopRequest) -> Result<Stopped> {
    let refuse = |record: &RolloutRecord| match record.state.is_terminal() {
        true => CoordinatorError::AlreadyEnded {
            id: id.to_string(),
            state: label(record.state),
        },
        false => CoordinatorError::WrongState {
            id: id.to_string(),
            state: label(record.state),
            allowed: allowed(request)
                .iter()
                .map(|s| label(*s))
                .collect::<Vec<_>>()
                .join(" or "),
            verb: request.done(),
        },
    };
    let record = RolloutRecord::load(state_dir, id)?;
    if !allowed(request).contains(&record.state) {
        return Err(refuse(&record));
    }
    let Some(_lock) = RolloutLock::try_acquire(state_dir, id)? else {
        lock::request_stop(state_dir, id, request)?;
        return Ok(Stopped::Requested);
    };
    // Loaded again under the lock: a coordinator may have ended it since.
    let mut record = RolloutRecord::load(state_dir, id)?;
    if !allowed(request).contains(&record.state) {
        return Err(refuse(&record));
    }
    let (state, note) = match request {
        StopRequest::Abort => (RolloutState::Aborted, "aborted by `ferry rollout abort`"),
        StopRequest::Pause => (
            RolloutState::Paused,
            "paused by `ferry rollout pause` (its coordinator was not running)",
        ),
    };
    record.state = state;
    record.note(None, note);
    record.save(state_dir, Timestamp::now())?;
    lock::clear_stop_request(state_dir, id, request);
    Ok(Stopped::Now(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path, state: RolloutState) -> String {
        let mut r = crate::record::one_stage_record(state);
        r.save(dir, Timestamp::now()).unwrap();
        r.id
    }

    #[test]
    fn a_driven_rollout_is_asked_and_an_undriven_one_stops_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = saved(dir.path(), RolloutState::Running);
        // Driven: the lock is held elsewhere.
        let held = RolloutLock::acquire(dir.path(), &id).unwrap();
        assert_eq!(
            stop(dir.path(), &id, StopRequest::Pause).unwrap(),
            Stopped::Requested
        );
        assert!(lock::stop_requested(dir.path(), &id, StopRequest::Pause));
        assert!(!lock::stop_requested(dir.path(), &id, StopRequest::Abort));
        drop(held);
        // Not driven: paused now, and the request is gone.
        assert_eq!(
            stop(dir.path(), &id, StopRequest::Pause).unwrap(),
            Stopped::Now(RolloutState::Paused)
        );
        assert!(!lock::stop_requested(dir.path(), &id, StopRequest::Pause));
        // A paused rollout cannot be paused again, but can be aborted.
        let err = stop(dir.path(), &id, StopRequest::Pause)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is paused") && err.contains("running"),
            "{err}"
        );
        assert_eq!(
            stop(dir.path(), &id, StopRequest::Abort).unwrap(),
            Stopped::Now(RolloutState::Aborted)
        );
        let err = stop(dir.path(), &id, StopRequest::Abort)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is already aborted"), "{err}");
    }
}
