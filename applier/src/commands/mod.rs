//! One module per subcommand; `main.rs` only dispatches here.

pub mod apply;
pub mod check;
pub mod coordination;
pub mod history;
pub mod install_units;
pub mod migrations;
pub mod preflight;
pub mod repair;
pub mod restore_points;
pub mod rollback;
pub mod status;
pub mod verify;

use jiff::Timestamp;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::policy::ReleaseFacts;
use crate::recovery;

/// What the policy gate weighs about a release: its signed facts (`created`
/// is its pin's in the signed index, the manifest's own), when it has
/// rollout waves this node's place in them (the node id is looked up only
/// then, so a node without one is bothered only by releases with waves),
/// and whether this node rolled it back by itself before.
pub fn release_facts(
    config: &Config,
    manifest: &manifests::Manifest,
    created: Timestamp,
) -> Result<ReleaseFacts> {
    let wave = if manifest.waves.is_empty() {
        None
    } else {
        let node = config.node_id()?;
        crate::waves::place(&manifest.waves, &node.id, &manifest.version, created)
    };
    Ok(ReleaseFacts {
        version: manifest.version.clone(),
        created,
        critical: manifest.critical,
        wave,
        rolled_back_here: crate::rolled_back_here::RolledBackHere::load(&config.install.state_dir)?
            .get(&manifest.version)
            .cloned(),
    })
}

/// Tells the operator what recovery did, on stderr (stdout may be JSON).
pub fn announce_recovery(message: Option<String>) {
    if let Some(message) = message {
        errln!("ferry: recovered: {message}");
    }
}

/// For read-only commands: recover an interrupted operation if no other
/// ferry holds the lock; if one does, its journal describes work in
/// progress, not a crash, and is left alone.
pub fn recover_if_idle(config: &Config) -> Result<()> {
    if !config.install.state_dir.exists() {
        return Ok(());
    }
    match StateLock::acquire(&config.install.state_dir) {
        Ok(lock) => {
            // A read-only command still answers when recovery cannot finish
            // (say, the disk is full): it reports the unfinished journal.
            match recovery::recover(config, &lock) {
                Ok(message) => announce_recovery(message),
                Err(e) => errln!(
                    "ferry: warning: an interrupted operation could not be recovered yet: {e}"
                ),
            }
            Ok(())
        }
        Err(NodeError::LockHeld { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
