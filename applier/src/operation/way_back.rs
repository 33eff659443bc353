//! The table's backward moves: the way back after the switch, abandoning
//! an operation a crash cut short before its switch, undoing a switch the
//! journal could not record, and the migrations each of them moves back.

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::events;
use crate::in_place::{self, InPlacePlan};
use crate::lifecycle::{GoLiveFailure, Transition};
use crate::state::{OperationKind, Outcome};
use crate::{faults, kept_manifests, migrations, release_dir, switch};

use super::record::{conclude, fail, kind_name};
use super::run::{Ended, Run};
use super::table::{show, ServiceBack, WayBack};

impl Run<'_> {
    /// `rolling-back`: the files go back (`current`, or in place the
    /// restore point), this update's migrations are reverted before the
    /// old release starts (it expects its own schema), the old release
    /// goes back into service unless nothing touched it, and the rollback
    /// is recorded. An update's way back runs its rollback hooks; a hook
    /// that fails is noted, never a reason to stay on a broken release.
    pub(super) fn way_back(&mut self, way_back: WayBack) -> Result<Ended> {
        let (from, to) = self.versions();
        let transition = Transition::new(self.config, from.as_ref(), &to);
        let update = self.update_kind();
        let touched = way_back.service != ServiceBack::Untouched;
        let mut notes = Vec::new();
        if update && touched && way_back.begins {
            notes.extend(transition.pre_rollback().err());
        }
        let undone = match self.config.install.mode {
            InstallMode::Symlink => {
                match &from {
                    Some(from) => switch::switch_to(&self.config.install.root, from),
                    None => switch::unset(&self.config.install.root),
                }
                .map_err(|e| {
                    let current = self.config.install.root.join("current");
                    NodeError::io(format!("cannot switch {} back", current.display()), e)
                })?;
                faults::point("apply:switched-back");
                format!("rolled back to {}", show(from.as_ref()))
            }
            InstallMode::InPlace => {
                let store = self.store()?;
                let point = in_place::converge_back(self.config, &store)?;
                format!("undone from restore point {point}")
            }
        };
        let reverted = self.revert_update_migrations();
        let restored = match way_back.service {
            ServiceBack::Untouched => None,
            ServiceBack::Known { old_stopped } => Some(transition.restore(&GoLiveFailure {
                message: way_back.cause.clone(),
                old_stopped,
            })),
            ServiceBack::Ask => Some(transition.restore(&GoLiveFailure {
                message: way_back.cause.clone(),
                old_stopped: !transition.restored_still_serving(),
            })),
        };
        if let Some(restored) = restored.as_ref().filter(|r| !r.ok) {
            tracing::error!(summary = %restored.summary, "the old release did not come back cleanly");
        }
        if update && touched {
            notes.extend(transition.post_rollback().err());
        }
        let mut message = format!(
            "{} {} -> {to} {undone}: {}{reverted}",
            kind_name(self.journal.operation),
            show(from.as_ref()),
            way_back.cause,
        );
        if let Some(restored) = restored {
            message.push_str(&format!("; {}", restored.summary));
        }
        for note in &notes {
            message.push_str(&format!("; {note}"));
        }
        conclude(
            self.config,
            &mut self.journal,
            Outcome::RolledBack,
            message.clone(),
        )?;
        InPlacePlan::remove(self.state_dir_path())?;
        Ok(Ended::RolledBack(message))
    }

    /// After a crash before the switch: the node still runs what it ran.
    /// Migrations an update ran before its switch are reverted, leftovers
    /// of the staging are cleaned (the store and partial downloads stay
    /// for the next attempt), and the interruption is recorded.
    pub(super) fn abandon(&mut self) -> Result<Ended> {
        let reverted = self.revert_update_migrations();
        if self.config.install.mode == InstallMode::Symlink {
            release_dir::clean_leftovers(&self.config.install.root).map_err(|e| {
                let releases = self.config.install.root.join("releases");
                let context = format!(
                    "cannot clean leftovers of the interrupted run in {}",
                    releases.display()
                );
                NodeError::io(context, e)
            })?;
        }
        InPlacePlan::remove(self.state_dir_path())?;
        let current = self.resumed.as_ref().and_then(|r| r.current.clone());
        let stays = if current == self.journal.from_version {
            format!("undone, the node stays on {}", show(current.as_ref()))
        } else {
            format!(
                "undone; `current` points at {}, which this operation did not set",
                show(current.as_ref())
            )
        };
        let message = format!("{}: {stays}{reverted}", self.what());
        conclude(
            self.config,
            &mut self.journal,
            Outcome::Interrupted,
            message.clone(),
        )?;
        Ok(Ended::Undone(message))
    }

    /// The switch happened, but the journal could not say so (a full
    /// `state_dir`). No service has picked the target up yet, so the switch
    /// is undone at once and the migrations moved for it moved back,
    /// rather than leaving `current` on a release nothing runs. If even the
    /// switch back fails, the journal stays open: the next ferry run finds
    /// `current` on the target and finishes the operation.
    pub(super) fn undo_unrecorded_switch(&mut self, error: NodeError) -> NodeError {
        let (from, to) = self.versions();
        let root = &self.config.install.root;
        let runs = show(from.as_ref());
        let back = match &from {
            Some(from) => switch::switch_to(root, from),
            None => switch::unset(root),
        };
        let update = self.journal.operation == OperationKind::Apply;
        if let Err(e) = back {
            let next = match update {
                true => "finishes or undoes the update",
                false => "finishes the rollback",
            };
            return NodeError::SwitchNotRecorded {
                cause: Box::new(error),
                undone: format!(
                    "could NOT switch back to {runs} ({e}): `current` names {to}; the next ferry run {next}"
                ),
            };
        }
        let undone = match (update, &from) {
            (true, _) => format!(
                "switched back: {to} was not installed, {runs} still runs{}",
                self.revert_update_migrations()
            ),
            (false, Some(left)) => format!(
                "switched back: not rolled back, {runs} still runs{}",
                reapply_after_rollback(self.config, left, &to)
            ),
            (false, None) => format!("switched back: not rolled back, {runs} still runs"),
        };
        let error = NodeError::SwitchNotRecorded {
            cause: Box::new(error),
            undone,
        };
        fail(self.config, &mut self.journal, error)
    }

    /// An update's migrations run since its journal began, reverted
    /// (newest first) from its release. A note for the record: "" when
    /// there was nothing to revert.
    pub(super) fn revert_update_migrations(&self) -> String {
        if self.journal.operation != OperationKind::Apply {
            return String::new();
        }
        let config = self.config;
        let state_dir = self.state_dir_path();
        let ids = match migrations::applied_since(state_dir, self.journal.started_at) {
            Ok(ids) if ids.is_empty() => return String::new(),
            Ok(ids) => ids,
            Err(e) => return format!("; migrations could not be read: {e}"),
        };
        let to = &self.journal.to_version;
        let reverted = config.trusted_keys().and_then(|keys| {
            let manifest = kept_manifests::load(state_dir, to, &keys)?;
            let release = match config.install.mode {
                InstallMode::Symlink => release_dir::release_path(&config.install.root, to),
                InstallMode::InPlace => config.install.root.clone(),
            };
            migrations::revert(
                state_dir,
                manifest.manifest(),
                &release,
                &ids,
                &migrations::operation_env(self.journal.from_version.as_ref(), to),
                config.migrations.timeout(),
            )
        });
        match reverted {
            Ok(()) => format!("; migrations reverted: {}", ids.join(", ")),
            Err(e) => format!("; its migrations could NOT be reverted: {e}"),
        }
    }

    fn state_dir_path(&self) -> &std::path::Path {
        &self.config.install.state_dir
    }
}

/// Going back from `current` to `target` (an operator's rollback): the
/// downs of the migrations `current` shipped that `target` does not know,
/// newest first, from the current release's tree, before the switch
/// (refused, with nothing changed, when one has no down).
pub(super) fn revert_for_rollback(
    config: &Config,
    current: Option<&Version>,
    target: &Version,
) -> Result<()> {
    let Some(current) = current else {
        return Ok(());
    };
    let state_dir = &config.install.state_dir;
    let keys = config.trusted_keys()?;
    let from = kept_manifests::load(state_dir, current, &keys)?;
    let to = kept_manifests::load(state_dir, target, &keys)?;
    let ids = migrations::reverts_needed(state_dir, from.manifest(), to.manifest())?;
    if ids.is_empty() {
        return Ok(());
    }
    migrations::revert(
        state_dir,
        from.manifest(),
        &release_dir::release_path(&config.install.root, current),
        &ids,
        &migrations::operation_env(Some(current), target),
        config.migrations.timeout(),
    )?;
    events::say(format!("reverted migrations: {}", ids.join(", ")));
    Ok(())
}

/// The ups of `left`'s migrations that a rollback to `target` reverted,
/// run again from its tree. A note for the record.
fn reapply_after_rollback(config: &Config, left: &Version, target: &Version) -> String {
    let state_dir = &config.install.state_dir;
    let applied = config.trusted_keys().and_then(|keys| {
        let manifest = kept_manifests::load(state_dir, left, &keys)?;
        Ok(migrations::apply_pending(
            state_dir,
            manifest.manifest(),
            &release_dir::release_path(&config.install.root, left),
            &migrations::operation_env(Some(target), left),
            config.migrations.timeout(),
        )?)
    });
    match applied {
        Ok(ids) if ids.is_empty() => String::new(),
        Ok(ids) => format!("; migrations applied again: {}", ids.join(", ")),
        Err(e) => format!("; its reverted migrations could NOT be applied again: {e}"),
    }
}
