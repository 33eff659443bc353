//! One module per subcommand; `main.rs` only dispatches here.
//!
//! Read-only commands (`status`, `history`, `check`, `verify`,
//! `migrations`, `restore-points list|show`, `preflight`, `apply
//! --dry-run`) never take the state lock, never recover an interrupted
//! operation and create nothing: a poll during an apply must not make it
//! fail with "another ferry operation is running", and a look at a node
//! must not switch, restart or run hooks. Mutating commands recover first,
//! under the lock.

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
use crate::error::Result;
use crate::policy::ReleaseFacts;

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
        let role = config
            .coordination
            .as_ref()
            .map(|c| c.role)
            .unwrap_or_default();
        crate::waves::place(&manifest.waves, &node.id, role, &manifest.version, created)
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
