//! Recording how an operation ended: history, `state.json`, the
//! announcement, then the journal closed. Every outcome of the table goes
//! through here, once per operation even when a crash makes it run twice.

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::faults;
use crate::journal::{Journal, Step};
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};

/// Records that `journal`'s operation failed before it changed anything and
/// hands back `error`. If even the record cannot be written (a full disk),
/// says so on stderr and still returns the original error: the journal
/// stays open and the next ferry run records the operation as interrupted.
pub fn fail(config: &Config, journal: &mut Journal, error: NodeError) -> NodeError {
    if let Err(record) = conclude(config, journal, Outcome::Failed, error.to_string()) {
        errln!("ferry: could not record this failure ({record}); the next ferry run will");
    }
    error
}

/// Records the outcome of `journal`'s operation (once per operation, even if
/// a crash makes this run twice), then closes the journal.
pub fn conclude(
    config: &Config,
    journal: &mut Journal,
    outcome: Outcome,
    message: String,
) -> Result<()> {
    record_outcome(
        config,
        journal,
        outcome,
        message,
        outcome == Outcome::Success,
    )
}

/// [`conclude`] for an operation that failed after its switch and stays
/// switched (an operator's rollback whose release did not go into service,
/// or whose `post_rollback` failed): `current` is the target, so the
/// release left becomes the previous one, and a plain `ferry rollback`
/// goes back to it.
pub fn conclude_switched(
    config: &Config,
    journal: &mut Journal,
    outcome: Outcome,
    message: String,
) -> Result<()> {
    record_outcome(config, journal, outcome, message, true)
}

fn record_outcome(
    config: &Config,
    journal: &mut Journal,
    outcome: Outcome,
    message: String,
    switched: bool,
) -> Result<()> {
    let state_dir = &config.install.state_dir;
    let mut node = NodeState::load(state_dir)?;
    if switched && journal.from_version.as_ref() != Some(&journal.to_version) {
        node.previous_version = journal.from_version.clone();
    }
    if outcome == Outcome::Success {
        if journal.operation == OperationKind::Apply {
            node.channel = Some(config.repository.channel.clone());
        }
        if config.install.mode == InstallMode::InPlace {
            node.installed_version = Some(journal.to_version.clone());
        }
    }
    let operation = Operation {
        id: Some(journal.id.clone()),
        operation: journal.operation,
        from_version: journal.from_version.clone(),
        to_version: Some(journal.to_version.clone()),
        outcome,
        started_at: journal.started_at,
        finished_at: jiff::Timestamp::now(),
        message,
        bytes_downloaded: journal.bytes_downloaded,
        transfer: journal.transfer,
    };
    state::record(state_dir, &mut node, operation.clone())?;
    crate::announce::operation_finished(config, &operation);
    faults::point("conclude:recorded");
    journal.advance(state_dir, Step::Committed)?;
    Journal::close(state_dir)
}

pub fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Apply => "apply",
        OperationKind::Rollback => "rollback",
        OperationKind::Repair => "repair",
    }
}
