//! `ferry rollback [--to V]`: switch back to a release still on disk, after
//! re-verifying it against its kept signed manifest.

use jiff::Timestamp;
use semver::Version;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::{kept_manifests, release_dir, switch};

pub fn run(config: &Config, to: Option<Version>) -> Result<()> {
    let _lock = StateLock::acquire(&config.install.state_dir)?;
    let started = Timestamp::now();
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let current = switch::current_version(root)
        .map_err(|e| NodeError::io("cannot read the current release", e))?;
    let mut node = NodeState::load(state_dir)?;
    let target = match to.or_else(|| node.previous_version.clone()) {
        Some(v) => v,
        None => {
            return Err(NodeError::Other(
                "no previous release to roll back to (see `ferry status`); use `ferry rollback --to VERSION`".into(),
            ))
        }
    };
    if current.as_ref() == Some(&target) {
        println!("already at {target}: nothing to do");
        return Ok(());
    }
    let result = switch_back(config, &target);
    let (outcome, message) = match &result {
        Ok(()) => (Outcome::Success, format!("rolled back to {target}")),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    if result.is_ok() {
        node.previous_version = current.clone();
    }
    let operation = Operation {
        operation: OperationKind::Rollback,
        from_version: current.clone(),
        to_version: Some(target.clone()),
        outcome,
        started_at: started,
        finished_at: Timestamp::now(),
        message,
        bytes_downloaded: 0,
    };
    let recorded = state::record(state_dir, &mut node, operation);
    result?;
    recorded?;
    println!(
        "rolled back {} -> {target}",
        current.map_or("nothing".to_string(), |v| v.to_string())
    );
    Ok(())
}

fn switch_back(config: &Config, target: &Version) -> Result<()> {
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
    let problems = release_dir::verify(manifest.manifest(), &path)
        .map_err(|e| NodeError::io(format!("cannot check {}", path.display()), e))?;
    if !problems.is_empty() {
        return Err(NodeError::verification(format!(
            "release {target} on disk no longer matches its signed manifest, refusing to switch to it:\n  {}",
            problems.join("\n  ")
        )));
    }
    switch::switch_to(root, target)
        .map_err(|e| NodeError::io(format!("cannot switch to {target}"), e))
}
