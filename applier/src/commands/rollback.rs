//! `ferry rollback [--to V]`: switch back to a release still on disk, after
//! re-verifying it against its kept signed manifest. Journaled like an
//! apply, so a crash mid-rollback is finished by the next command.

use jiff::Timestamp;
use semver::Version;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::journal::{Journal, Step};
use crate::lock::StateLock;
use crate::release_dir::Depth;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::{kept_manifests, recovery, release_dir, switch};

pub fn run(config: &Config, to: Option<Version>) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(recovery::recover(config, &lock)?);
    let started = Timestamp::now();
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let current = switch::current_version(root)
        .map_err(|e| NodeError::io("cannot read the current release", e))?;
    let node = NodeState::load(state_dir)?;
    let Some(target) = to.or_else(|| node.previous_version.clone()) else {
        return Err(NodeError::Other(
            "no previous release to roll back to (see `ferry status`); use `ferry rollback --to VERSION`".into(),
        ));
    };
    if current.as_ref() == Some(&target) {
        println!("already at {target}: nothing to do");
        return Ok(());
    }
    if let Err(e) = check_target(config, &target) {
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
        };
        let _ = state::record(state_dir, &mut node, operation);
        return Err(e);
    }

    let mut journal = Journal::begin(
        state_dir,
        OperationKind::Rollback,
        current.clone(),
        target.clone(),
    )?;
    journal.advance(state_dir, Step::Staged)?;
    if let Err(e) = switch::switch_to(root, &target) {
        let e = NodeError::io(format!("cannot switch to {target}"), e);
        recovery::conclude(config, &mut journal, Outcome::Failed, e.to_string())?;
        return Err(e);
    }
    journal.advance(state_dir, Step::Switched)?;
    journal.advance(state_dir, Step::Verified)?;
    recovery::conclude(
        config,
        &mut journal,
        Outcome::Success,
        format!("rolled back to {target}"),
    )?;
    println!(
        "rolled back {} -> {target}",
        current.map_or("nothing".to_string(), |v| v.to_string())
    );
    Ok(())
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
