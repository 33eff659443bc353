//! Which version a node runs, whatever its install mode.
//!
//! In symlink mode the `current` symlink is the truth. In in-place mode
//! there is no symlink: the version is recorded in `state.json` by the same
//! atomic write that concludes an operation, and while an operation is in
//! flight the journal (not this value) says what is on disk.

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::state::NodeState;
use crate::switch;

pub fn version(config: &Config) -> Result<Option<Version>> {
    match config.install.mode {
        InstallMode::Symlink => switch::current_version(&config.install.root).map_err(|e| {
            let current = config.install.root.join("current");
            NodeError::io(format!("cannot read {}", current.display()), e)
        }),
        InstallMode::InPlace => Ok(NodeState::load(&config.install.state_dir)?.installed_version),
    }
}
