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

use super::execute::{rollback_order, RolloutLock, ROLLBACK_TIMEOUT};
use super::inventory::{Inventory, InventoryNode, RollbackScope};
use super::record::{NodeRolloutState, RolloutRecord, RolloutState};
use super::transport::{command_line, RemoteCommand};
use crate::error::{NodeError, Result};
use crate::shell::ShellCommand;

/// Runs `ferry rollback --to <from>` on `node` through the transport.
pub fn revert_node(
    inventory: &Inventory,
    node: &InventoryNode,
    from: &Version,
    own_ferry: &Path,
) -> std::result::Result<(), String> {
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
    .run_checked()
    .map(|_| ())
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
    RolloutRecord::load(state_dir, id)?;
    let _lock = RolloutLock::acquire(state_dir, id)?;
    let mut record = RolloutRecord::load(state_dir, id)?;
    if let Some(why) = refuse_rollback(record.state) {
        return Err(NodeError::Other(format!(
            "rollout {id} cannot be rolled back: {why}"
        )));
    }
    let inventory = Inventory::load(&record.inventory).map_err(NodeError::Other)?;
    let order = rollback_order(&record, RollbackScope::All);
    record.state = RolloutState::RollingBack;
    record.save(state_dir, Timestamp::now())?;
    let mut errors = Vec::new();
    for (name, from) in &order {
        let result = match inventory.node(name) {
            Some(node) => revert_node(&inventory, node, from, own_ferry),
            None => Err(format!(
                "node {name} is no longer in {}",
                record.inventory.display()
            )),
        };
        let progress = record
            .nodes
            .get_mut(name)
            .expect("rollback_order names recorded nodes");
        match result {
            Ok(()) => {
                println!("  {name}: rolled back to {from}");
                progress.state = NodeRolloutState::RolledBack;
                progress.message = Some(format!("rolled back to {from}"));
            }
            Err(e) => {
                println!("  {name}: ROLLBACK FAILED: {e}");
                progress.message = Some(format!("rollback to {from} failed: {e}"));
                errors.push(format!("{name}: {e}"));
            }
        }
        record.save(state_dir, Timestamp::now())?;
    }
    if !errors.is_empty() {
        // Failed: a rollback can be tried again, a rollout cannot go on.
        record.state = RolloutState::Failed;
        record.save(state_dir, Timestamp::now())?;
        return Err(NodeError::Other(format!(
            "rollout {id}: rollbacks that failed: {}; fix those nodes and run `ferry rollout rollback {id}` again",
            errors.join("; ")
        )));
    }
    record.state = RolloutState::RolledBack;
    record.save(state_dir, Timestamp::now())?;
    println!(
        "rollout {id} rolled back: {} node(s) returned to their old version",
        order.len()
    );
    Ok(())
}
