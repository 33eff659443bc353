//! Why a migration did not run, or could not be undone. What stays applied
//! to the data is named in every message: the operator must know whether
//! the data and the live release still agree.

use std::fmt;
use std::path::PathBuf;

use manifests::Sha256Digest;
use semver::Version;
use thiserror::Error;

use super::HISTORY_FILE;
use crate::error::NodeError;
use crate::shell::CommandError;

#[derive(Debug, Error)]
pub enum MigrationError {
    /// An applied migration's script changed: it is never run again.
    #[error("migration {id} was applied on this node (from release {ran}, checksum {old}), but release {version} ships it with checksum {new}: an applied migration must not change, and this node will not run it again; republish {version} with the original {id} script and put the change in a new migration with a higher id")]
    Edited {
        id: String,
        ran: Version,
        old: Sha256Digest,
        version: Version,
        new: Sha256Digest,
    },
    /// Going back past a migration without a down script.
    #[error("cannot go back from {from} to {to}: migration {id}, applied with {from}, has no down script, so its change to the data cannot be undone; stay on {from} (or a release that ships {id}), or restore the data from a backup taken before it and remove its record from {HISTORY_FILE}")]
    Irreversible {
        from: Version,
        to: Version,
        id: String,
    },
    #[error(transparent)]
    NoDown(NoDownScript),
    /// A script on disk differs from what the release's signed manifest
    /// pins: someone or something changed the release tree after it was
    /// staged. Exit 3, like any content that fails verification.
    #[error("the {direction} script of migration {id} of release {version} ({}) does not match the release's signed manifest: {found}; ferry will not run it, and no migration script ran. Run `ferry repair` to restore the installed release's files from verified content, then try again", path.display())]
    ScriptAltered {
        version: Version,
        id: String,
        direction: &'static str,
        path: PathBuf,
        /// What is on disk instead.
        found: String,
    },
    /// A run of downs stopped at a failing one.
    #[error("{reason}{}; still applied: {}: repair the data or the down script, then revert again", reverted_text(reverted), remaining.join(", "))]
    RevertStopped {
        reason: StepFailure,
        reverted: Vec<String>,
        /// The id that failed and every older one not reached.
        remaining: Vec<String>,
    },
    /// An up failed; see [`UpFailed`].
    #[error(transparent)]
    UpFailed(Box<UpFailed>),
}

/// Why the down script of a migration cannot be run from a release.
#[derive(Debug, Error)]
pub enum NoDownScript {
    #[error(
        "release {version} does not ship migration {id}, so its down script cannot be run from it"
    )]
    NotShipped { version: Version, id: String },
    #[error("migration {id} of release {version} has no down script: its change to the data cannot be undone by ferry; restore the data from a backup, or ship a migration that fixes it forward")]
    Missing { version: Version, id: String },
}

fn reverted_text(reverted: &[String]) -> String {
    if reverted.is_empty() {
        String::new()
    } else {
        format!("; reverted: {}", reverted.join(", "))
    }
}

/// Why one script did not run to success, or its outcome could not be
/// recorded (each is kept in the migration's `last_error`).
#[derive(Debug, Error)]
pub enum StepFailure {
    /// It could not start, failed or timed out (status and output tail).
    #[error(transparent)]
    Script(Box<CommandError>),
    /// Its down cannot be run from this release.
    #[error(transparent)]
    NoDown(Box<NoDownScript>),
    /// `migrations.json` could not be written.
    #[error(transparent)]
    Record(Box<NodeError>),
    /// The script changed on disk after the check before the first script
    /// ran: it was not run.
    #[error(transparent)]
    Altered(Box<NodeError>),
}

impl From<CommandError> for StepFailure {
    fn from(e: CommandError) -> Self {
        StepFailure::Script(Box::new(e))
    }
}

/// The up of `id` failed. The ups the same run had applied before it were
/// reverted (`reverted`, newest first) as far as their downs allowed;
/// `not_reverted` are still applied, and `revert_error` says why.
#[derive(Debug)]
pub struct UpFailed {
    pub id: String,
    pub reason: StepFailure,
    pub reverted: Vec<String>,
    pub not_reverted: Vec<String>,
    pub revert_error: Option<StepFailure>,
}

impl fmt::Display for UpFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migration {} failed: {}", self.id, self.reason)?;
        if !self.reverted.is_empty() {
            write!(
                f,
                "; the migrations applied before it were reverted: {}",
                self.reverted.join(", ")
            )?;
        }
        if !self.not_reverted.is_empty() {
            write!(
                f,
                "; NOT reverted, still applied to the data: {} ({}): repair the data by hand, \
                 `ferry migrations` shows the record",
                self.not_reverted.join(", "),
                self.revert_error
                    .as_ref()
                    .map_or("no reason recorded".to_string(), |e| e.to_string())
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for UpFailed {}
