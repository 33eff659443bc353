//! `ferry rollback [--to V]`: switch back to a release still on disk, after
//! re-verifying it against its kept signed manifest. Journaled like an
//! apply, so a crash mid-rollback is finished by the next command.

use jiff::Timestamp;
use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::events;
use crate::journal::{Journal, Step};
use crate::lifecycle::Transition;
use crate::lock::StateLock;
use crate::release_dir::Depth;
use crate::restore_point::RestorePoint;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::store::ContentStore;
use crate::{in_place, installed, kept_manifests, migrations, recovery, release_dir, switch};

pub fn run(config: &Config, to: Option<Version>) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(recovery::recover(config, &lock)?);
    let started = Timestamp::now();
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let current = installed::version(config)?;
    let node = NodeState::load(state_dir)?;
    let Some(target) = to.or_else(|| node.previous_version.clone()) else {
        return Err(NodeError::Other(
            "no previous release to roll back to (see `ferry status`); use `ferry rollback --to VERSION`".into(),
        ));
    };
    if current.as_ref() == Some(&target) {
        events::say(format!("already at {target}: nothing to do"));
        events::emit(
            events::Event::UpToDate,
            serde_json::json!({ "version": target.to_string() }),
        );
        return Ok(());
    }
    let checked = match config.install.mode {
        InstallMode::Symlink => check_target(config, &target).map(|()| None),
        InstallMode::InPlace => restore_point_of(config, &target).map(Some),
    };
    let point = match checked {
        Ok(point) => point,
        Err(e) => {
            let mut node = node;
            let operation = Operation {
                id: None,
                operation: OperationKind::Rollback,
                from_version: current,
                to_version: Some(target),
                outcome: Outcome::Failed,
                started_at: started,
                finished_at: Timestamp::now(),
                message: e.to_string(),
                bytes_downloaded: 0,
                transfer: Default::default(),
            };
            let _ = state::record(state_dir, &mut node, operation.clone());
            crate::announce::operation_finished(config, &operation);
            return Err(e);
        }
    };

    let mut journal = Journal::begin(
        state_dir,
        OperationKind::Rollback,
        current.clone(),
        target.clone(),
    )?;
    if let Some(point) = point {
        let store = ContentStore::open(state_dir)?;
        in_place::switch(config, &mut journal, &store, point.entries)?;
        recovery::conclude(
            config,
            &mut journal,
            Outcome::Success,
            format!("rolled back to {target} from restore point {}", point.id),
        )?;
        events::say(format!(
            "rolled back {} -> {target} in place (restore point {})",
            current
                .as_ref()
                .map_or("nothing".to_string(), |v| v.to_string()),
            point.id
        ));
        events::emit(
            events::Event::RolledBack,
            events::versions(current.as_ref(), &target),
        );
        return in_place::finish(config);
    }
    journal.advance(state_dir, Step::Staged)?;
    let transition = Transition::new(config, current.as_ref(), &target);
    if let Err(e) = transition.operator_pre_rollback() {
        let e = NodeError::Other(format!("{e}; nothing was switched"));
        return Err(recovery::fail(config, &mut journal, e));
    }
    if let Err(e) = revert_migrations(config, current.as_ref(), &target) {
        return Err(recovery::fail(config, &mut journal, e));
    }
    if let Err(e) = switch::switch_to(root, &target) {
        let e = NodeError::io(format!("cannot switch to {target}"), e);
        return Err(recovery::fail(config, &mut journal, e));
    }
    if let Err(e) = journal.advance(state_dir, Step::Switched) {
        return Err(undo_unrecorded_switch(
            config,
            &mut journal,
            current.as_ref(),
            e,
        ));
    }
    journal.advance(state_dir, Step::Verified)?;
    if let Err(failure) = transition.operator_go_live() {
        // The operator chose this release: ferry does not flip again on its
        // own. The files are switched; the service needs a look. The
        // release left is the previous one now, so `ferry rollback` can
        // take the node back to it.
        let message = format!(
            "switched to {target}, but it did not go into service: {}; check the service, then `ferry rollback --to VERSION` or `ferry apply`",
            failure.message
        );
        recovery::conclude_switched(config, &mut journal, Outcome::Failed, message.clone())?;
        return Err(NodeError::Other(message));
    }
    recovery::conclude(
        config,
        &mut journal,
        Outcome::Success,
        format!("rolled back to {target}"),
    )?;
    events::say(format!(
        "rolled back {} -> {target}",
        current
            .as_ref()
            .map_or("nothing".to_string(), |v| v.to_string())
    ));
    events::emit(
        events::Event::RolledBack,
        events::versions(current.as_ref(), &target),
    );
    Ok(())
}

/// The switch to the rollback's target happened, but the journal could not
/// say so (a full `state_dir`). No service has picked the target up yet:
/// the switch is undone at once and the migrations this rollback reverted
/// run their ups again, so the release left keeps the data it knows. If
/// even the switch back fails, the journal stays open for the next run.
fn undo_unrecorded_switch(
    config: &Config,
    journal: &mut Journal,
    left: Option<&Version>,
    error: NodeError,
) -> NodeError {
    let root = &config.install.root;
    let target = journal.to_version.clone();
    let back = match left {
        Some(left) => switch::switch_to(root, left),
        None => switch::unset(root),
    };
    let runs = left.map_or("nothing".to_string(), |v| v.to_string());
    if let Err(e) = back {
        return NodeError::SwitchNotRecorded {
            cause: Box::new(error),
            undone: format!(
                "could NOT switch back to {runs} ({e}): `current` names {target}; the next ferry run finishes the rollback"
            ),
        };
    }
    let mut undone = format!("switched back: not rolled back, {runs} still runs");
    if let Some(left) = left {
        match reapply_migrations(config, left, &target) {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => undone.push_str(&format!("; migrations applied again: {}", ids.join(", "))),
            Err(e) => undone.push_str(&format!(
                "; its reverted migrations could NOT be applied again: {e}"
            )),
        }
    }
    let error = NodeError::SwitchNotRecorded {
        cause: Box::new(error),
        undone,
    };
    recovery::fail(config, journal, error)
}

/// The ups of `left`'s migrations that this rollback reverted, run again
/// from its tree.
fn reapply_migrations(config: &Config, left: &Version, target: &Version) -> Result<Vec<String>> {
    let state_dir = &config.install.state_dir;
    let keys = config.trusted_keys()?;
    let manifest = kept_manifests::load(state_dir, left, &keys)?;
    Ok(migrations::apply_pending(
        state_dir,
        manifest.manifest(),
        &release_dir::release_path(&config.install.root, left),
        &migrations::operation_env(Some(target), left),
        config.migrations.timeout(),
    )?)
}

/// Going back from `current` to `target`: the downs of the migrations
/// `current` shipped that `target` does not know, newest first, from the
/// current release's tree, before the switch (refused, with nothing
/// changed, when one has no down).
fn revert_migrations(config: &Config, current: Option<&Version>, target: &Version) -> Result<()> {
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

/// In-place: the newest restore point holding `target`, every saved file
/// checked against its recorded SHA-256 first.
fn restore_point_of(config: &Config, target: &Version) -> Result<RestorePoint> {
    let state_dir = &config.install.state_dir;
    let points = RestorePoint::list(state_dir)?;
    let Some(point) = points
        .into_iter()
        .rev()
        .find(|p| p.version.as_ref() == Some(target))
    else {
        return Err(NodeError::Other(format!(
            "no restore point holds {target} (see `ferry restore-points list`); install it with `ferry apply --version {target} --allow-downgrade`"
        )));
    };
    let problems = point.verify(state_dir)?;
    if !problems.is_empty() {
        return Err(NodeError::verification(format!(
            "restore point {} of {target} is damaged, refusing to restore from it (nothing was changed):\n  {}",
            point.id,
            problems.join("\n  ")
        )));
    }
    Ok(point)
}

/// The target must be on disk and still match its signed manifest.
fn check_target(config: &Config, target: &Version) -> Result<()> {
    let root = &config.install.root;
    let on_disk = release_dir::releases_on_disk(root)
        .map_err(|e| NodeError::io("cannot list releases", e))?;
    if !on_disk.contains(target) {
        let list: Vec<String> = on_disk.iter().map(|v| v.to_string()).collect();
        return Err(NodeError::Other(format!(
            "release {target} is not on disk (on disk: {}); install it with `ferry apply --version {target} --allow-downgrade`",
            if list.is_empty() { "none".into() } else { list.join(", ") }
        )));
    }
    let keys = config.trusted_keys()?;
    let manifest = kept_manifests::load(&config.install.state_dir, target, &keys)?;
    let path = release_dir::release_path(root, target);
    let problems = release_dir::verify(manifest.manifest(), &path, Depth::Content)
        .map_err(|e| NodeError::io(format!("cannot check {}", path.display()), e))?;
    if !problems.is_empty() {
        return Err(NodeError::verification(format!(
            "release {target} on disk no longer matches its signed manifest, refusing to switch to it:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(())
}
