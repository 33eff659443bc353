//! Finishing or undoing an operation that a crash interrupted.
//!
//! Every mutating command (apply, rollback, repair, restore-points clean)
//! runs [`recover`] first, under the state lock: a journal
//! that exists while nobody holds the lock belongs to a process that died.
//! What to do is decided by [`decide`], a pure function of the journal and
//! of where `current` points, so every combination is tested exhaustively:
//!
//! - the switch happened (`current` is the target): finish the operation
//!   (re-verify the live tree; if it does not match its signed manifest,
//!   switch back);
//! - it did not (`current` is still the origin): undo it — the node keeps
//!   running what it ran, the staged tree and partial downloads stay on disk
//!   for the next attempt to reuse;
//! - the journal says the outcome is recorded: only close the journal;
//! - a switch back was in progress: complete it.
//!
//! Recovery acts through the same table as the first run
//! ([`crate::operation`]): a commit re-enters the forward path at the
//! live-tree check, so the release it lands on goes into service exactly as
//! the uninterrupted operation would have put it.
//!
//! Read-only commands never recover: `ferry status` shows the journal and
//! what [`decide`] says the next mutating command will do about it.
//! Before acting, recovery checks that the release it would leave
//! `current` on exists (see [`crate::recovery_preconditions`]).

use crate::config::{Config, InstallMode};
use crate::converge;
use crate::error::{NodeError, Result};
use crate::in_place::InPlacePlan;
use crate::journal::{Journal, Step};
use crate::lock::StateLock;
use crate::operation::table::show;
use crate::operation::{Resumed, Run};
use crate::release_dir;
use crate::state;

pub use crate::operation::record::{conclude, conclude_switched, fail, kind_name};
pub use crate::operation::table::{decide, Action};

/// Recovers an interrupted operation, if there is one. The caller holds the
/// lock (that is what proves the journal's writer is gone). Returns a line
/// saying what was done.
pub fn recover(config: &Config, _lock: &StateLock) -> Result<Option<String>> {
    let state_dir = &config.install.state_dir;
    remove_temporaries(config).map_err(|e| {
        let context = format!(
            "cannot remove temporary files of an earlier run (in {} or {})",
            config.install.root.display(),
            state_dir.display()
        );
        NodeError::io(context, e)
    })?;
    let Some(journal) = Journal::load(state_dir)? else {
        return Ok(None);
    };
    let root = &config.install.root;
    let current = crate::installed::version(config)?;
    if let Some(plan) = InPlacePlan::load(state_dir)? {
        converge::remove_temporaries(root, &plan.entries)
            .map_err(|e| NodeError::io("cannot remove temporaries beside targets", e))?;
    }
    let what = format!(
        "interrupted {} {} -> {} (at step {})",
        kind_name(journal.operation),
        show(journal.from_version.as_ref()),
        journal.to_version,
        step_name(journal.step)
    );
    // A crash between recording the outcome and closing the journal: the
    // operation is over, and its service commands already ran.
    let recorded = state::history(state_dir)?
        .iter()
        .any(|op| op.id.as_deref() == Some(journal.id.as_str()));
    let action = match recorded {
        true => Action::Close,
        false => decide(&journal, config.install.mode, current.as_ref()),
    };
    crate::recovery_preconditions::check(config, &journal, action)?;
    tracing::warn!(?action, journal = %journal.id, "recovering an interrupted operation");
    // In pull mode, recovery that touches the service takes a slot like
    // an update: the node is unavailable while it goes live or back. So
    // does any recovery of a node etcd still counts as down (it switched,
    // then died): that slot is given back only by a turn that ends with
    // the node healthy. Recovery never runs outside a slot then; when etcd
    // cannot say, it does not run (fail closed).
    let fleet = match crate::coordination::Fleet::from_config(config)? {
        Some(fleet) => match action {
            Action::Commit | Action::SwitchBack => Some(fleet),
            Action::Close | Action::Abandon => match fleet.marked_down() {
                Ok(true) => Some(fleet),
                Ok(false) => None,
                Err(e) => {
                    return Err(
                        crate::operation::error::OperationError::RecoveryWaitsForSlot {
                            what,
                            cause: e.to_string(),
                        }
                        .into(),
                    )
                }
            },
        },
        None => None,
    };
    let turn = match &fleet {
        Some(fleet) => Some(
            fleet
                .take_recovery_slot(journal.from_version.as_ref(), &journal.to_version)
                .map_err(|e| {
                    NodeError::from(
                        crate::operation::error::OperationError::RecoveryWaitsForSlot {
                            what: what.clone(),
                            cause: e.to_string(),
                        },
                    )
                })?,
        ),
        None => None,
    };
    let mut run = Run::resume(config, journal, Resumed { what, current }, turn);
    Ok(Some(run.drive(action.entry())?.message().to_string()))
}

/// Removes what a process killed between creating a temporary and renaming
/// it leaves behind: `.*.tmp-*` files beside state files and `current`, and
/// `.tmp-*` files in the store. Partial downloads (`downloads/*.part`) stay:
/// the next apply resumes them. Only safe under the lock.
fn remove_temporaries(config: &Config) -> std::io::Result<()> {
    let state_dir = &config.install.state_dir;
    let mut dirs = vec![
        state_dir.clone(),
        state_dir.join("manifests"),
        state_dir.join("store"),
    ];
    // In-place roots are shared with the system (often `/`): only ferry's
    // own symlink-mode root is swept wholesale.
    let symlink_mode = config.install.mode == InstallMode::Symlink;
    if symlink_mode {
        dirs.push(config.install.root.clone());
    }
    for dir in &dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut removed = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if (name.starts_with('.') && name.contains(".tmp-")) || name.starts_with(".tmp-") {
                std::fs::remove_file(entry.path())?;
                removed = true;
            }
        }
        if removed {
            crate::durable::sync_dir(dir)?;
        }
    }
    if symlink_mode {
        release_dir::clean_leftovers(&config.install.root)?;
    }
    crate::recovery_preconditions::sweep_repair_temporaries(config)?;
    // A restore point whose record was never written is a capture the crash
    // cut short: nothing relies on it.
    if let Ok(points) = std::fs::read_dir(crate::restore_point::dir(state_dir)) {
        for point in points {
            let point = point?.path();
            if !point.join("restore-point.json").is_file() {
                release_dir::remove_tree(&point)?;
            }
        }
    }
    Ok(())
}

fn step_name(step: Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
