//! `ferry rollback [--to V]`: switch back to a release still on disk, after
//! re-verifying it against its kept signed manifest. Journaled like an
//! apply, so a crash mid-rollback is finished by the next command.

use jiff::Timestamp;
use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::events;
use crate::journal::{Journal, Step};
use crate::lock::StateLock;
use crate::operation::decide;
use crate::operation::error::OperationError;
use crate::operation::{Ended, Move, Run};
use crate::restore_point::RestorePoint;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::store::ContentStore;
use crate::{installed, kept_manifests, migrations, recovery, release_dir, release_repair};
use manifests::VerifiedManifest;

pub fn run(config: &Config, to: Option<Version>) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(recovery::recover(config, &lock)?);
    let started = Timestamp::now();
    let state_dir = &config.install.state_dir;
    let current = installed::version(config)?;
    let node = NodeState::load(state_dir)?;
    let Some(target) = to.or_else(|| node.previous_version.clone()) else {
        return Err(OperationError::NoPrevious.into());
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
        InstallMode::Symlink => check_target(config, current.as_ref(), &target).map(|()| None),
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

    let journal = Journal::begin(
        state_dir,
        OperationKind::Rollback,
        current.clone(),
        target.clone(),
    )?;
    let in_place = point.is_some();
    let mut run = Run::rollback(config, journal, point.map(|p| (p.id, p.entries)));
    // A rollback's target is on disk and verified: it starts at the switch
    // (in place, the switch writes `staged` once its restore point exists).
    if !in_place {
        run.journal.advance(state_dir, Step::Staged)?;
    }
    match run.drive(Move::Switch)? {
        Ended::Live(_) => {
            let how = match run.restore_point() {
                Some(point) => format!(" in place (restore point {point})"),
                None => String::new(),
            };
            events::say(format!(
                "rolled back {} -> {target}{how}",
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
        Ended::RolledBack(message) => Err(NodeError::RolledBack(message)),
        other => Err(OperationError::NotInService(other.message().to_string()).into()),
    }
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
        return Err(OperationError::NoRestorePoint(target.clone()).into());
    };
    // As for a switch (`check_target`): a release kept from when special
    // modes were allowed is not put back once they are not. In place the
    // restore point holds the files; the release's kept manifest says
    // what they were installed as.
    if !config.install.allow_special_modes {
        let keys = config.trusted_keys()?;
        if let Ok(manifest) = kept_manifests::load(state_dir, target, &keys) {
            decide::special_modes(manifest.manifest(), false)?;
        }
    }
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

/// The target must be on disk and match its signed manifest (repaired from
/// verified content if it does not, [`repair_target`]), and
/// the down scripts the rollback will run from the `current` release must
/// be the ones its kept manifest pins: checked here, before the journal
/// begins and before any hook or script runs.
fn check_target(config: &Config, current: Option<&Version>, target: &Version) -> Result<()> {
    let root = &config.install.root;
    let on_disk =
        release_dir::releases_on_disk(root).map_err(|e| release_dir::listing_failed(root, e))?;
    if !on_disk.contains(target) {
        return Err(OperationError::NotOnDisk {
            target: target.clone(),
            on_disk: on_disk.iter().map(|v| v.to_string()).collect(),
        }
        .into());
    }
    let keys = config.trusted_keys()?;
    let manifest = kept_manifests::load(&config.install.state_dir, target, &keys)?;
    // A release kept from before the node refused special modes (or from
    // before the operator took the permission back) is not switched to.
    decide::special_modes(manifest.manifest(), config.install.allow_special_modes)?;
    repair_target(config, &manifest)?;
    if let Some(current) = current {
        let state_dir = &config.install.state_dir;
        let from = kept_manifests::load(state_dir, current, &keys)?;
        let ids = migrations::reverts_needed(state_dir, from.manifest(), manifest.manifest())?;
        migrations::check_downs(
            from.manifest(),
            &release_dir::release_path(root, current),
            &ids,
        )?;
    }
    Ok(())
}

/// Re-hashes the target and repairs what differs from verified content (an
/// edit forced through the live release may have reached it through a
/// shared inode), before the journal begins. If it cannot be made whole the
/// rollback is refused: nothing live has changed, and the error names the
/// files and what to do.
fn repair_target(config: &Config, manifest: &VerifiedManifest) -> Result<()> {
    let target = &manifest.manifest().version;
    let store = ContentStore::open(&config.install.state_dir)?;
    let mut sources = None;
    match release_repair::check_and_repair(config, &store, &mut sources, manifest) {
        Ok(repaired) if repaired.entries.is_empty() => Ok(()),
        Ok(repaired) => {
            events::say(format!(
                "release {target} differed from its signed manifest; repaired from verified content before switching: {}",
                repaired.entries.join(", ")
            ));
            Ok(())
        }
        // Differences that remain after a repair are a verification
        // failure; a repair that could not run (disk full, repository
        // unreachable) keeps its own kind and exit status, so an operator
        // is not sent looking for tampering when the disk is full.
        Err(e @ NodeError::RepairIncomplete { .. }) => Err(NodeError::verification(format!(
            "release {target} on disk no longer matches its signed manifest and could not be repaired, refusing to switch to it (nothing live was changed): {e}\n  make the repository reachable and run `ferry rollback` again, or `ferry apply --version {target}` to rebuild it"
        ))),
        Err(e) => Err(NodeError::RepairFailed {
            target: target.clone(),
            source: Box::new(e),
        }),
    }
}
