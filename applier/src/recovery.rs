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
//! Read-only commands never recover: `ferry status` shows the journal and
//! what [`decide`] says the next mutating command will do about it.
//! Before acting, recovery checks that the release it would leave
//! `current` on exists (see [`crate::recovery_preconditions`]).

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::in_place::{self, InPlacePlan};
use crate::journal::{Journal, Step};
use crate::lifecycle::{GoLiveFailure, Transition};
use crate::lock::StateLock;
use crate::release_dir::{self, Depth};
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::store::ContentStore;
use crate::{converge, faults, kept_manifests, switch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The outcome is recorded: remove the journal.
    Close,
    /// `current` names the target: verify it and record success.
    Commit,
    /// `current` does not name the target: record the interruption, the
    /// node stays where it is.
    Abandon,
    /// Point `current` back at the origin, then record the rollback.
    SwitchBack,
}

impl Action {
    /// The action's name in `ferry status --json` (`next_action`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Commit => "commit",
            Action::Abandon => "abandon",
            Action::SwitchBack => "switch-back",
        }
    }

    /// What the next mutating command will do about `journal`, for an
    /// operator reading `ferry status`.
    pub fn describe(self, journal: &Journal) -> String {
        let from = show(&journal.from_version);
        let to = &journal.to_version;
        match self {
            Action::Close => "close the journal: its outcome is already recorded".into(),
            Action::Commit => {
                format!("finish it: check {to} against its signed manifest and keep it (or switch back to {from} if it does not match)")
            }
            Action::Abandon => format!("undo it: the node stays on {from}"),
            Action::SwitchBack => format!("switch back to {from} and record the rollback"),
        }
    }
}

/// `current` is where the `current` symlink points (symlink mode); in-place
/// mode decides from the journal alone, because from `staged` on its files
/// may be any mix of old and new until converged.
pub fn decide(journal: &Journal, mode: InstallMode, current: Option<&Version>) -> Action {
    match (journal.step, mode) {
        (Step::Committed, _) => Action::Close,
        (Step::RollingBack, _) => Action::SwitchBack,
        (Step::Planned | Step::Fetching, InstallMode::InPlace) => Action::Abandon,
        (_, InstallMode::InPlace) => Action::Commit,
        _ if current == Some(&journal.to_version) => Action::Commit,
        _ => Action::Abandon,
    }
}

/// Recovers an interrupted operation, if there is one. The caller holds the
/// lock (that is what proves the journal's writer is gone). Returns a line
/// saying what was done.
pub fn recover(config: &Config, _lock: &StateLock) -> Result<Option<String>> {
    let state_dir = &config.install.state_dir;
    remove_temporaries(config)
        .map_err(|e| NodeError::io("cannot remove temporary files of an earlier run", e))?;
    let Some(mut journal) = Journal::load(state_dir)? else {
        return Ok(None);
    };
    let root = &config.install.root;
    let mode = config.install.mode;
    let current = crate::installed::version(config)?;
    if let Some(plan) = InPlacePlan::load(state_dir)? {
        converge::remove_temporaries(root, &plan.entries)
            .map_err(|e| NodeError::io("cannot remove temporaries beside targets", e))?;
    }
    let what = format!(
        "interrupted {} {} -> {} (at step {})",
        kind_name(journal.operation),
        show(&journal.from_version),
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
        false => decide(&journal, mode, current.as_ref()),
    };
    crate::recovery_preconditions::check(config, &journal, action)?;
    tracing::warn!(?action, journal = %journal.id, "recovering an interrupted operation");
    let message = match action {
        Action::Close => {
            Journal::close(state_dir)?;
            format!("{what}: its outcome was already recorded")
        }
        Action::Commit if mode == InstallMode::InPlace => {
            roll_forward_in_place(config, &mut journal, &what)?
        }
        Action::SwitchBack if mode == InstallMode::InPlace => {
            let store = ContentStore::open(state_dir)?;
            in_place::restore(config, &mut journal, &store, "interrupted while restoring")?
        }
        Action::Commit => {
            let keys = config.trusted_keys()?;
            let manifest = kept_manifests::load(state_dir, &journal.to_version, &keys)?;
            let live = release_dir::release_path(root, &journal.to_version);
            let problems = release_dir::verify(manifest.manifest(), &live, Depth::Content)
                .map_err(|e| NodeError::io(format!("cannot check {}", live.display()), e))?;
            if problems.is_empty() {
                finish_live(config, &mut journal, &what)?
            } else {
                crate::recovery_preconditions::check_switch_back(config, &journal)?;
                // The crash may have come after the service was restarted
                // onto the new files: the old release goes back into
                // service, as after any failure past the switch.
                journal.advance(state_dir, Step::RollingBack)?;
                switch_back_and_restore(
                    config,
                    &mut journal,
                    &problems.join("; "),
                    WayBack::Begins,
                )?
            }
        }
        Action::SwitchBack => switch_back_and_restore(
            config,
            &mut journal,
            "interrupted while switching back",
            WayBack::Underway,
        )?,
        Action::Abandon => {
            let reverted = revert_interrupted_migrations(config, &journal);
            if mode == InstallMode::Symlink {
                release_dir::clean_leftovers(root).map_err(|e| {
                    NodeError::io("cannot clean leftovers of the interrupted run", e)
                })?;
            }
            InPlacePlan::remove(state_dir)?;
            let stays = match (&current, &journal.from_version) {
                (c, f) if c == f => format!("undone, the node stays on {}", show(c)),
                (c, _) => format!(
                    "undone; `current` points at {}, which this operation did not set",
                    show(c)
                ),
            };
            let message = format!("{what}: {stays}{reverted}");
            conclude(config, &mut journal, Outcome::Interrupted, message.clone())?;
            message
        }
    };
    Ok(Some(message))
}

/// `current` names the interrupted operation's target and its tree matches
/// the manifest. The crash may have come anywhere between the switch and
/// the record, before or after the service picked the release up, so the
/// release is put into service the way the interrupted operation would
/// have (restart, reload or blue-green, the gate if `[health]` is set,
/// then `post_apply` or `post_rollback`). An update that fails there is
/// rolled back, exactly as `apply` would have; an operator's rollback stays
/// where the operator sent it, recorded as failed.
fn finish_live(config: &Config, journal: &mut Journal, what: &str) -> Result<String> {
    let target = journal.to_version.clone();
    let from = journal.from_version.clone();
    let transition = Transition::new(config, from.as_ref(), &target);
    let rollback = journal.operation == OperationKind::Rollback;
    if let Err(failure) = transition.resume_go_live(rollback) {
        if !rollback {
            journal.advance(&config.install.state_dir, Step::RollingBack)?;
            return switch_back_and_restore(config, journal, &failure.message, WayBack::Begins);
        }
        let message = format!(
            "{what}: switched to {target}, but it did not go into service: {}; check the service, then `ferry rollback --to VERSION` or `ferry apply`",
            failure.message
        );
        conclude_switched(config, journal, Outcome::Failed, message.clone())?;
        return Ok(message);
    }
    let message = format!("{what}: finished, now at {target} and in service");
    conclude(config, journal, Outcome::Success, message.clone())?;
    Ok(message)
}

/// Where a way back stands when recovery takes it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WayBack {
    /// Recovery decides to go back now: `pre_rollback` runs first.
    Begins,
    /// The interrupted process had begun it (and ran `pre_rollback`).
    Underway,
}

/// Switches back to the journal's origin, then brings the old release back
/// into service as if its service had been stopped (after a crash nobody
/// knows how far the way forward got) unless a blue-green old instance
/// still answers as itself, and records the rollback. An update's way back
/// runs its rollback hooks as `apply` would.
fn switch_back_and_restore(
    config: &Config,
    journal: &mut Journal,
    cause: &str,
    way_back: WayBack,
) -> Result<String> {
    let root = &config.install.root;
    let (from, to) = (journal.from_version.clone(), journal.to_version.clone());
    let transition = Transition::new(config, from.as_ref(), &to);
    let update = journal.operation == OperationKind::Apply;
    let mut notes = Vec::new();
    if update && way_back == WayBack::Begins {
        notes.extend(transition.pre_rollback().err());
    }
    match &journal.from_version {
        Some(from) => switch::switch_to(root, from),
        None => switch::unset(root),
    }
    .map_err(|e| NodeError::io("cannot switch back", e))?;
    let reverted = revert_interrupted_migrations(config, journal);
    let restored = transition.restore(&GoLiveFailure {
        message: cause.to_string(),
        old_stopped: !transition.restored_still_serving(),
    });
    if update {
        notes.extend(transition.post_rollback().err());
    }
    let mut message = format!(
        "{} {} -> {} rolled back to {}: {cause}{reverted}; {}",
        kind_name(journal.operation),
        show(&journal.from_version),
        journal.to_version,
        show(&journal.from_version),
        restored.summary
    );
    for note in &notes {
        message.push_str(&format!("; {note}"));
    }
    conclude(config, journal, Outcome::RolledBack, message.clone())?;
    Ok(message)
}

/// An interrupted apply that is being undone may have run migrations
/// before its switch: their downs run (newest first) from the staged
/// release, so the old release gets back the data it knows. Returns a note
/// for the record ("" when there was nothing to revert).
fn revert_interrupted_migrations(config: &Config, journal: &Journal) -> String {
    if journal.operation != OperationKind::Apply {
        return String::new();
    }
    let state_dir = &config.install.state_dir;
    let ids = match crate::migrations::applied_since(state_dir, journal.started_at) {
        Ok(ids) if ids.is_empty() => return String::new(),
        Ok(ids) => ids,
        Err(e) => return format!("; migrations could not be read: {e}"),
    };
    let reverted = config.trusted_keys().and_then(|keys| {
        let manifest = kept_manifests::load(state_dir, &journal.to_version, &keys)?;
        let release = match config.install.mode {
            InstallMode::Symlink => {
                release_dir::release_path(&config.install.root, &journal.to_version)
            }
            InstallMode::InPlace => config.install.root.clone(),
        };
        crate::migrations::revert(
            state_dir,
            manifest.manifest(),
            &release,
            &ids,
            &crate::migrations::operation_env(journal.from_version.as_ref(), &journal.to_version),
            config.migrations.timeout(),
        )
    });
    match reverted {
        Ok(()) => format!("; migrations reverted: {}", ids.join(", ")),
        Err(e) => format!("; its migrations could NOT be reverted: {e}"),
    }
}

/// Finishes an interrupted in-place operation by converging its planned
/// writes again; if that fails, converges back to its restore point.
fn roll_forward_in_place(config: &Config, journal: &mut Journal, what: &str) -> Result<String> {
    let state_dir = &config.install.state_dir;
    let store = ContentStore::open(state_dir)?;
    let Some(plan) = InPlacePlan::load(state_dir)? else {
        return Err(NodeError::Other(format!(
            "{what}: the in-place plan is missing; check the files against `ferry verify`"
        )));
    };
    let done = converge::converge(&config.install.root, &plan.entries, &store)
        .and_then(|()| converge::check(&config.install.root, &plan.entries, true));
    match done {
        Ok(problems) if problems.is_empty() => {
            let message = format!("{what}: finished, now at {}", journal.to_version);
            conclude(config, journal, Outcome::Success, message.clone())?;
            in_place::finish(config)?;
            Ok(message)
        }
        Ok(problems) => {
            journal.advance(state_dir, Step::RollingBack)?;
            in_place::restore(config, journal, &store, &problems.join("; "))
        }
        Err(e) => {
            journal.advance(state_dir, Step::RollingBack)?;
            in_place::restore(config, journal, &store, &e.to_string())
        }
    }
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

/// Points `current` back at the journal's origin (or removes it when
/// nothing was installed before) and records `outcome`.
pub fn switch_back(
    config: &Config,
    journal: &mut Journal,
    outcome: Outcome,
    cause: &str,
) -> Result<String> {
    let root = &config.install.root;
    let result = match &journal.from_version {
        Some(from) => switch::switch_to(root, from),
        None => switch::unset(root),
    };
    result.map_err(|e| NodeError::io("cannot switch back", e))?;
    let message = format!(
        "{} {} -> {} rolled back to {}: {cause}",
        kind_name(journal.operation),
        show(&journal.from_version),
        journal.to_version,
        show(&journal.from_version)
    );
    conclude(config, journal, outcome, message.clone())?;
    Ok(message)
}

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

fn show(v: &Option<Version>) -> String {
    v.as_ref().map_or("nothing".to_string(), |v| v.to_string())
}

pub fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Apply => "apply",
        OperationKind::Rollback => "rollback",
        OperationKind::Repair => "repair",
    }
}

fn step_name(step: Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    /// Where `current` points after the action runs, in a model of the node.
    fn after(action: Action, journal: &Journal, current: Option<Version>) -> Option<Version> {
        match action {
            Action::Close | Action::Abandon => current,
            // Commit keeps the target when it verifies; otherwise it switches back.
            Action::Commit => current,
            Action::SwitchBack => journal.from_version.clone(),
        }
    }

    /// Every operation × step × origin × where `current` points.
    #[test]
    fn every_interruption_ends_on_the_old_or_the_new_release() {
        let origins = [None, Some(v("1.0.0"))];
        let target = v("2.0.0");
        let foreign = v("9.9.9");
        for operation in [OperationKind::Apply, OperationKind::Rollback] {
            for from in &origins {
                for step in Step::ALL {
                    let currents = [
                        None,
                        from.clone(),
                        Some(target.clone()),
                        Some(foreign.clone()),
                    ];
                    for current in currents {
                        let journal = Journal {
                            id: "t".into(),
                            operation,
                            from_version: from.clone(),
                            to_version: target.clone(),
                            step,
                            started_at: jiff::Timestamp::UNIX_EPOCH,
                            bytes_downloaded: 0,
                            transfer: Default::default(),
                        };
                        let action = decide(&journal, InstallMode::Symlink, current.as_ref());
                        let end = after(action, &journal, current.clone());
                        let case = format!("{operation:?} from {from:?} at {step:?} with current {current:?}: {action:?}");
                        // Never record success unless the target is live.
                        if action == Action::Commit {
                            assert_eq!(current.as_ref(), Some(&target), "{case}");
                        }
                        // Never claim the node stayed put while it runs the target.
                        if action == Action::Abandon {
                            assert_ne!(current.as_ref(), Some(&target), "{case}");
                        }
                        // A node that was on the old or the new release stays on one of them.
                        if current == *from || current.as_ref() == Some(&target) {
                            assert!(
                                end == *from || end.as_ref() == Some(&target),
                                "{case} ends at {end:?}"
                            );
                        }
                        // Recovery never moves a node that ferry did not move.
                        if current.as_ref() == Some(&foreign) && step != Step::RollingBack {
                            assert_eq!(end, current, "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_table_reads_as_documented() {
        let mut j = Journal {
            id: "t".into(),
            operation: OperationKind::Apply,
            from_version: Some(v("1.0.0")),
            to_version: v("2.0.0"),
            step: Step::Fetching,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            bytes_downloaded: 0,
            transfer: Default::default(),
        };
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("1.0.0"))),
            Action::Abandon
        );
        j.step = Step::Staged;
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("1.0.0"))),
            Action::Abandon
        );
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("2.0.0"))),
            Action::Commit
        );
        j.step = Step::Verified;
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("2.0.0"))),
            Action::Commit
        );
        j.step = Step::Committed;
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("2.0.0"))),
            Action::Close
        );
        j.step = Step::RollingBack;
        assert_eq!(
            decide(&j, InstallMode::Symlink, Some(&v("2.0.0"))),
            Action::SwitchBack
        );
    }
}
