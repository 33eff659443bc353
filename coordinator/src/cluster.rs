//! One active rollout per cluster.
//!
//! Two rollouts driving one cluster undo each other: the second one's
//! canary fails on a node the first has already moved past, and its
//! failure handling rolls that node back under the first one's feet. The
//! rollout lock ([`crate::lock`]) is per rollout id and cannot see this.
//! So every command that changes a cluster's nodes (`start`, `plan`,
//! `execute`, `promote`, `resume`, `rollback`, and the API's plan and
//! execute) first *claims* the cluster:
//!
//! - a flock on `<state>/rollouts/cluster-<hash>.lock`, held for as long
//!   as the command works, so two commands racing are decided by the
//!   kernel, and a killed coordinator never leaves the cluster locked;
//! - under it, a look at every record of the same cluster: one that is
//!   running, awaiting promotion, paused or rolling back, and is not the rollout
//!   being continued, refuses the claim. A rollout awaiting promotion has
//!   no process holding anything, and one whose coordinator died is still
//!   half done, so the records and not only the lock say who has the
//!   cluster.
//!
//! A cluster is named by the inventory's `cluster` key, else by the
//! inventory's absolute path (so two paths to one file are one cluster).
//! The records live in the coordinator's `--state-dir`: coordinators that
//! do not share one do not see each other, which docs/ROLLOUTS.md says.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{CoordinatorError, Result};
use crate::inventory::Inventory;
use crate::record::{RolloutRecord, RolloutState};

/// Holds a cluster's flock while a command changes its nodes.
pub struct ClusterClaim {
    _file: File,
}

/// The name a cluster is known by in records: `cluster:<name>` from the
/// inventory's `cluster` key, else `inventory:<absolute path>`.
pub fn key(inventory: &Inventory, absolute_path: &Path) -> String {
    match &inventory.cluster {
        Some(name) => format!("cluster:{name}"),
        None => format!("inventory:{}", absolute_path.display()),
    }
}

/// The cluster a record belongs to (records from before clusters were
/// named carry their inventory's path only).
pub fn of_record(record: &RolloutRecord) -> String {
    record
        .cluster
        .clone()
        .unwrap_or_else(|| format!("inventory:{}", record.inventory.display()))
}

/// The inventory's path made absolute, symlinks resolved: what a record
/// stores, so `promote`, `resume` and `rollback` work from any directory.
pub fn absolute_inventory(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| {
        CoordinatorError::io(
            format!("cannot resolve the inventory path {}", path.display()),
            e,
        )
    })
}

/// Whether a rollout in `state` holds its cluster.
pub fn holds_cluster(state: RolloutState) -> bool {
    matches!(
        state,
        RolloutState::Running
            | RolloutState::AwaitingPromotion
            | RolloutState::Paused
            | RolloutState::RollingBack
    )
}

/// The rollout other than `own_id` that holds cluster `key`, if any.
pub fn active_on(
    state_dir: &Path,
    key: &str,
    own_id: Option<&str>,
) -> Result<Option<RolloutRecord>> {
    Ok(RolloutRecord::list(state_dir)?
        .into_iter()
        .filter(|r| Some(r.id.as_str()) != own_id)
        .filter(|r| holds_cluster(r.state))
        .find(|r| of_record(r) == key))
}

/// Claims cluster `key` for a command working on rollout `own_id` (none
/// for a new one), or refuses naming what holds it.
pub fn claim(state_dir: &Path, key: &str, own_id: Option<&str>) -> Result<ClusterClaim> {
    let dir = RolloutRecord::dir(state_dir);
    ferry_node::durable::create_dir_all(&dir, 0o755)
        .map_err(|e| CoordinatorError::io(format!("cannot create {}", dir.display()), e))?;
    let lock = lock_path(state_dir, key);
    let file = ferry_node::lock::try_lock_file(&lock)?;
    let busy = |active: Option<RolloutRecord>| CoordinatorError::ClusterBusy {
        cluster: key.to_string(),
        active: active.map(|r| (r.id, crate::record::label(r.state))),
        lock: lock.clone(),
    };
    let Some(file) = file else {
        return Err(busy(active_on(state_dir, key, own_id)?));
    };
    if let Some(active) = active_on(state_dir, key, own_id)? {
        return Err(busy(Some(active)));
    }
    Ok(ClusterClaim { _file: file })
}

/// `<state>/rollouts/cluster-<hash>.lock`. The hash only names the file:
/// two keys sharing one would only wait for each other, and the records
/// compare whole keys.
fn lock_path(state_dir: &Path, key: &str) -> PathBuf {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    RolloutRecord::dir(state_dir).join(format!("cluster-{hash:016x}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, cluster: &str, state: RolloutState) -> RolloutRecord {
        let mut r = crate::record::one_stage_record(state);
        r.id = id.into();
        r.cluster = Some(cluster.into());
        r
    }

    #[test]
    fn a_cluster_is_held_by_its_active_rollout_and_by_a_running_command() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let now = jiff::Timestamp::now();
        record("old", "cluster:a", RolloutState::Succeeded)
            .save(state, now)
            .unwrap();
        record("other", "cluster:b", RolloutState::Running)
            .save(state, now)
            .unwrap();
        // Nothing active on `a`: claimed; a second claim meanwhile waits
        // for nothing and is refused.
        let held = claim(state, "cluster:a", None).unwrap();
        let err = claim(state, "cluster:a", None).err().unwrap();
        assert_eq!(err.exit(), ferry_node::exit::Exit::ClusterBusy, "{err}");
        drop(held);
        // A rollout awaiting promotion holds it with no process at all,
        // except for commands that continue that very rollout.
        record("canary-done", "cluster:a", RolloutState::AwaitingPromotion)
            .save(state, now)
            .unwrap();
        let err = claim(state, "cluster:a", None).err().unwrap().to_string();
        assert!(
            err.contains("canary-done") && err.contains("awaiting-promotion"),
            "{err}"
        );
        assert!(err.contains("ferry rollout abort canary-done"), "{err}");
        claim(state, "cluster:a", Some("canary-done")).unwrap();
        // Another cluster is independent.
        claim(state, "cluster:c", None).unwrap();
        // A planned rollout holds nothing.
        record("p", "cluster:c", RolloutState::Planned)
            .save(state, now)
            .unwrap();
        claim(state, "cluster:c", None).unwrap();
    }

    #[test]
    fn lock_names_are_stable_and_differ_by_key() {
        let dir = Path::new("/s");
        assert_eq!(lock_path(dir, "cluster:a"), lock_path(dir, "cluster:a"));
        assert_ne!(lock_path(dir, "cluster:a"), lock_path(dir, "cluster:b"));
    }
}
