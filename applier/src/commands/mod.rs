//! One module per subcommand; `main.rs` only dispatches here.

pub mod apply;
pub mod check;
pub mod history;
pub mod install_units;
pub mod migrations;
pub mod preflight;
pub mod repair;
pub mod restore_points;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod verify;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::recovery;

/// Tells the operator what recovery did, on stderr (stdout may be JSON).
pub fn announce_recovery(message: Option<String>) {
    if let Some(message) = message {
        eprintln!("ferry: recovered: {message}");
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
                Err(e) => eprintln!(
                    "ferry: warning: an interrupted operation could not be recovered yet: {e}"
                ),
            }
            Ok(())
        }
        Err(NodeError::LockHeld { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
