//! Rolling nodes back to the version they ran before a rollout: one node
//! (`revert_node`, what a failed rollout does to the nodes it updated) or
//! a whole recorded rollout on request (`ferry rollout rollback ID`,
//! `POST /api/v1/updates/rollback/{id}`).
//!
//! Newest update first, the reverse of the order the rollout went: the
//! leader (updated last) is returned first, so the cluster passes through
//! the same mixed-version states it already survived on the way up.

use std::path::Path;

use jiff::Timestamp;
use semver::Version;

use crate::error::{CoordinatorError, Result};
use crate::execute::{RolloutLock, ROLLBACK_TIMEOUT};
use crate::inventory::{Inventory, InventoryNode, RollbackScope};
use crate::record::{NodeRolloutState, RolloutRecord, RolloutState};
use crate::transport::{command_line, RemoteCommand};
use ferry_node::shell::{CommandError, ShellCommand};

/// Why one node was not rolled back.
#[derive(Debug, thiserror::Error)]
pub enum NodeRevertError {
    /// The transport or `ferry rollback` on the node failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no longer in the inventory")]
    LeftInventory,
    /// Its version could not be read, so it is not known whose it is.
    #[error("its version could not be checked: {0}")]
    Unknown(String),
}

/// What [`revert_if_ours`] found on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverted {
    /// It ran the rollout's version and was rolled back.
    Done,
    /// It already runs the version it had before the rollout.
    AlreadyBack,
    /// It runs a version this rollout did not install: someone else (an
    /// operator, another coordinator) moved it, and it is left alone.
    NotOurs(Option<Version>),
}

/// Rolls `node` back to `from` only if it runs `target`, the version this
/// rollout installed. Undoing a change someone else made (a node another
/// rollout moved past this one, an operator's fix) would fight them, so
/// a node on any other version is left as it is and reported.
pub fn revert_if_ours(
    inventory: &Inventory,
    node: &InventoryNode,
    target: &Version,
    from: &Version,
    own_ferry: &Path,
) -> std::result::Result<Reverted, NodeRevertError> {
    let current =
        crate::transport::settled_version(&inventory.transport, node, own_ferry, ROLLBACK_TIMEOUT)
            .map_err(NodeRevertError::Unknown)?;
    match current {
        Some(v) if &v == target => {
            revert_node(inventory, node, from, own_ferry)?;
            Ok(Reverted::Done)
        }
        Some(v) if &v == from => Ok(Reverted::AlreadyBack),
        other => Ok(Reverted::NotOurs(other)),
    }
}

/// Runs `ferry rollback --to <from>` on `node` through the transport.
pub fn revert_node(
    inventory: &Inventory,
    node: &InventoryNode,
    from: &Version,
    own_ferry: &Path,
) -> std::result::Result<(), NodeRevertError> {
    let line = command_line(
        &inventory.transport,
        node,
        RemoteCommand::Rollback(from),
        own_ferry,
    );
    let what = format!("rollback of node {}", node.name);
    ShellCommand {
        what: &what,
        line: &line,
        env: Vec::new(),
        cwd: None,
        timeout: ROLLBACK_TIMEOUT,
    }
    .run_checked()?;
    Ok(())
}

/// The updated nodes to roll back after a failure, newest update first,
/// each with the version it ran before (nodes that ran nothing before
/// cannot be rolled back and are left out). Scope `all`: every updated
/// node; scope `node`: the updated `suspects` only.
pub fn rollback_order(
    record: &RolloutRecord,
    scope: RollbackScope,
    suspects: &[String],
) -> Vec<(String, Version)> {
    let mut updated: Vec<(u32, String, Version)> = record
        .nodes
        .iter()
        .filter(|(_, n)| n.state == NodeRolloutState::Updated)
        .filter(|(name, _)| scope == RollbackScope::All || suspects.contains(name))
        .filter_map(|(name, n)| Some((n.update_order.unwrap_or(0), name.clone(), n.from.clone()?)))
        .collect();
    updated.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    updated.into_iter().map(|(_, n, v)| (n, v)).collect()
}

/// Splits a rollback order into waves: consecutive nodes of one stage go
/// together, later stages first (the order is newest update first, so a
/// stage's nodes are next to each other in it).
pub fn rollback_waves(
    record: &RolloutRecord,
    order: Vec<(String, Version)>,
) -> Vec<Vec<(String, Version)>> {
    let stage_of = |name: &str| {
        record
            .plan
            .stages
            .iter()
            .position(|s| s.nodes.iter().any(|n| n == name))
    };
    // (stage, its nodes to roll back)
    type Wave = (Option<usize>, Vec<(String, Version)>);
    let mut waves: Vec<Wave> = Vec::new();
    for (name, from) in order {
        let stage = stage_of(&name);
        match waves.last_mut() {
            Some((last, wave)) if *last == stage => wave.push((name, from)),
            _ => waves.push((stage, vec![(name, from)])),
        }
    }
    waves.into_iter().map(|(_, wave)| wave).collect()
}

/// Records how one node's rollback went (state, message, timeline) and
/// says it; returns the error for the summary when it failed.
pub fn record_rollback(
    record: &mut RolloutRecord,
    name: &str,
    from: &Version,
    result: std::result::Result<Reverted, NodeRevertError>,
    say: &(dyn Fn(&str) + Sync),
) -> Option<String> {
    let progress = record.nodes.get_mut(name)?;
    match result {
        Ok(Reverted::Done) => {
            say(&format!("  {name}: rolled back to {from}"));
            progress.state = NodeRolloutState::RolledBack;
            progress.message = Some(format!("rolled back to {from}"));
            record.note(Some(name), format!("rolled back to {from}"));
            None
        }
        Ok(Reverted::AlreadyBack) => {
            progress.state = NodeRolloutState::RolledBack;
            progress.message = Some(format!("back on {from}"));
            record.note(Some(name), format!("already back on {from}"));
            None
        }
        Ok(Reverted::NotOurs(current)) => {
            let runs = current.map_or("no release".to_string(), |v| v.to_string());
            let line = format!(
                "runs {runs}, which this rollout did not install: left alone (someone else changed it)"
            );
            say(&format!("  {name}: {line}"));
            progress.message = Some(line.clone());
            record.note(Some(name), line);
            None
        }
        Err(e) => {
            say(&format!("  {name}: ROLLBACK FAILED: {e}"));
            progress.message = Some(format!("rollback to {from} failed: {e}"));
            record.note(Some(name), format!("rollback to {from} failed"));
            Some(format!("{name}: {e}"))
        }
    }
}

/// Rolls back `order` ([`rollback_order`]) a wave at a time
/// ([`rollback_waves`]): a wave's nodes at once, as many as were down
/// together on the way up, so rolling them back costs no more quorum than
/// updating them did. The record is saved after every wave; returns the
/// rollbacks that failed.
pub fn roll_back_in_waves(
    record: &mut RolloutRecord,
    order: Vec<(String, Version)>,
    inventory: &Inventory,
    own_ferry: &Path,
    state_dir: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    for wave in rollback_waves(record, order) {
        let target = record.version.clone();
        let target = &target;
        let results: Vec<(
            String,
            Version,
            std::result::Result<Reverted, NodeRevertError>,
        )> = std::thread::scope(|scope| {
            let runs: Vec<_> = wave
                .into_iter()
                .map(|(name, from)| {
                    scope.spawn(move || {
                        let result = match inventory.node(&name) {
                            Some(node) => revert_if_ours(inventory, node, target, &from, own_ferry),
                            None => Err(NodeRevertError::LeftInventory),
                        };
                        (name, from, result)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| run.join().expect("a rollback thread panicked"))
                .collect()
        });
        for (name, from, result) in results {
            errors.extend(record_rollback(record, &name, &from, result, say));
        }
        record.save(state_dir, Timestamp::now())?;
    }
    Ok(errors)
}

/// Why a rollout cannot be rolled back in `state`, if it cannot.
pub fn refuse_rollback(state: RolloutState) -> Option<&'static str> {
    match state {
        RolloutState::Planned => Some("it never started: nothing to roll back"),
        RolloutState::RolledBack => Some("it is already rolled back"),
        _ => None,
    }
}

/// `ferry rollout rollback ID`: every node the rollout updated back to its
/// old version, newest first, under the rollout's lock (so never while a
/// coordinator drives it). The record is saved after every node; the
/// rollout ends `rolled-back` when every node made it.
pub fn rollback_rollout(state_dir: &Path, id: &str, own_ferry: &Path) -> Result<()> {
    // Load first: an unknown id creates no lock file.
    let first = RolloutRecord::load(state_dir, id)?;
    let _cluster = crate::cluster::claim(state_dir, &crate::cluster::of_record(&first), Some(id))?;
    let _lock = RolloutLock::acquire(state_dir, id)?;
    let mut record = RolloutRecord::load(state_dir, id)?;
    if let Some(why) = refuse_rollback(record.state) {
        return Err(CoordinatorError::NotRollbackable {
            id: id.to_string(),
            why,
        });
    }
    let inventory = Inventory::load(&record.inventory)?;
    let order = rollback_order(&record, RollbackScope::All, &[]);
    let count = order.len();
    record.state = RolloutState::RollingBack;
    record.note(None, format!("rolling back {count} node(s) on request"));
    record.save(state_dir, Timestamp::now())?;
    let say = |line: &str| outln!("{line}");
    let errors = roll_back_in_waves(&mut record, order, &inventory, own_ferry, state_dir, &say)?;
    if !errors.is_empty() {
        // Failed: a rollback can be tried again, a rollout cannot go on.
        record.state = RolloutState::Failed;
        record.save(state_dir, Timestamp::now())?;
        return Err(CoordinatorError::RollbacksFailed {
            id: id.to_string(),
            errors,
        });
    }
    record.state = RolloutState::RolledBack;
    record.save(state_dir, Timestamp::now())?;
    outln!("rollout {id} rolled back: {count} node(s) returned to their old version");
    Ok(())
}
