//! What a failed rollout does: put back the failed nodes this rollout
//! moved, roll back per `rollback_on_failure`, and end `failed` with an
//! error that names what failed.
//!
//! The rollout is `rolling-back` the whole time, so a watch (the CLI's,
//! the dashboard's) follows the way back to its end, and a coordinator
//! killed during it leaves a record that says so (`ferry rollout rollback
//! ID` finishes it). Only nodes that run the version this rollout
//! installed are put back ([`revert::revert_if_ours`]): a node someone
//! else moved meanwhile is left alone and named.

use std::path::Path;

use jiff::Timestamp;

use crate::error::{CoordinatorError, Result};
use crate::inventory::{Inventory, RollbackScope, RolloutPolicy};
use crate::live_view::RolloutView;
use crate::record::{RolloutRecord, RolloutState};
use crate::revert;

/// Why a rollout stops with a failure: what to report, and which nodes
/// `rollback_on_failure = "node"` rolls back.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFailure {
    /// (node or gate, why).
    pub failed: Vec<(String, String)>,
    /// Nodes that failed their own apply: each is returned to its old
    /// version if it is not there already, whatever the scope.
    pub failed_nodes: Vec<String>,
    /// Updated nodes a narrow rollback returns (a stage whose metrics
    /// gate failed: each of its nodes is a suspect).
    pub suspects: Vec<String>,
}

/// Something failed: return the failed nodes to their old version where
/// they are not on it already, roll back per policy, mark the rollout
/// failed, and return the error naming what failed.
pub fn fail(
    state_dir: &Path,
    mut record: RolloutRecord,
    inventory: &Inventory,
    policy: &RolloutPolicy,
    own_ferry: &Path,
    view: &RolloutView,
    failure: &StageFailure,
) -> Result<()> {
    // `rolling-back` until the way back is done, so a watch (the CLI's,
    // the dashboard's) follows the automatic rollback to its end instead
    // of stopping at the failure with rolled-back nodes still shown new.
    record.state = RolloutState::RollingBack;
    let what: Vec<String> = failure
        .failed
        .iter()
        .map(|(n, why)| format!("{n} ({why})"))
        .collect();
    record.note(None, format!("failed at {}", what.join(", ")));
    record.save(state_dir, Timestamp::now())?;
    let mut rollback_errors = Vec::new();
    let say = |line: &str| view.say(line);
    // A failed node normally put itself back (its health gate failed, or
    // it never switched); one that did not (killed mid-switch, a failing
    // post_apply with no rollback of its own) is put back here, but only
    // if it runs the version this rollout installed: a node that refused
    // because someone else had moved it (another rollout, an operator) is
    // not this rollout's to undo.
    for name in &failure.failed_nodes {
        let (Some(node), Some(from)) = (
            inventory.node(name),
            record.nodes.get(name).and_then(|p| p.from.clone()),
        ) else {
            continue;
        };
        let target = record.version.clone();
        match revert::revert_if_ours(inventory, node, &target, &from, own_ferry) {
            Ok(revert::Reverted::AlreadyBack) => {}
            Err(revert::NodeRevertError::Unknown(e)) => {
                let message = format!("its version could not be checked after the failure: {e}");
                record.note(Some(name), message.clone());
                rollback_errors.push(format!("{name}: {message}"));
            }
            result => rollback_errors.extend(revert::record_rollback(
                &mut record,
                name,
                &from,
                result,
                &say,
            )),
        }
        record.save(state_dir, Timestamp::now())?;
    }
    let order = revert::rollback_order(&record, policy.rollback_on_failure, &failure.suspects);
    rollback_errors.extend(revert::roll_back_in_waves(
        &mut record,
        order,
        inventory,
        own_ferry,
        state_dir,
        &say,
    )?);
    record.state = RolloutState::Failed;
    record.note(None, "automatic rollback done");
    record.save(state_dir, Timestamp::now())?;
    let rolled = match policy.rollback_on_failure {
        RollbackScope::All => "every node it had updated was rolled back",
        RollbackScope::Node if failure.suspects.is_empty() => "only the failed node is back on its old version; the other updated nodes stay on the new version",
        RollbackScope::Node => "the nodes of the failed stage were rolled back; the nodes updated before it stay on the new version",
    };
    Err(CoordinatorError::Failed {
        id: record.id,
        failed: what,
        rolled,
        rollback_errors,
    })
}
