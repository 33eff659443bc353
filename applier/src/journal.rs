//! The write-ahead journal of the operation in progress:
//! `state_dir/journal.json`.
//!
//! Each step is made durable (temp file, fsync, rename, fsync of the
//! directory) before the effects that follow it begin, so after a crash the
//! journal names the last step the node had committed to, and
//! [`crate::recovery`] can finish or undo the operation from it and from
//! where `current` points. No journal file means no operation in flight.
//!
//! An apply walks: planned → fetching → staged → switched → verified →
//! committed; a rollback: planned → staged → switched → verified →
//! committed. `rolling-back` is written before an operation undoes its own
//! switch (a release that fails verification after the switch).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{NodeError, Result};
use crate::faults;
use crate::state::{OperationKind, Transfer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The plan is made; nothing outside state_dir has changed.
    Planned,
    /// Objects are being downloaded into the store (resumable).
    Fetching,
    /// The new release tree is complete and durable; `current` is about to
    /// be switched to it.
    Staged,
    /// `current` points at the new release.
    Switched,
    /// The live tree was checked against its signed manifest.
    Verified,
    /// State and history record the outcome; the journal is about to go.
    Committed,
    /// `current` is being switched back to `from`.
    RollingBack,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Planned,
        Step::Fetching,
        Step::Staged,
        Step::Switched,
        Step::Verified,
        Step::Committed,
        Step::RollingBack,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Unique per operation; history uses it to record an operation once.
    pub id: String,
    pub operation: OperationKind,
    pub from_version: Option<Version>,
    pub to_version: Version,
    pub step: Step,
    pub started_at: Timestamp,
    #[serde(default)]
    pub bytes_downloaded: u64,
    #[serde(flatten)]
    pub transfer: Transfer,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.json")
}

impl Journal {
    pub fn begin(
        state_dir: &Path,
        operation: OperationKind,
        from: Option<Version>,
        to: Version,
    ) -> Result<Journal> {
        let started_at = Timestamp::now();
        let journal = Journal {
            id: format!("{}-{}", started_at.as_nanosecond(), std::process::id()),
            operation,
            from_version: from,
            to_version: to,
            step: Step::Planned,
            started_at,
            bytes_downloaded: 0,
            transfer: Transfer::default(),
        };
        journal.write(state_dir)?;
        Ok(journal)
    }

    /// Moves to `step` durably; the caller performs the step's effects after.
    pub fn advance(&mut self, state_dir: &Path, step: Step) -> Result<()> {
        if let Some(e) = faults::failed_write(&format!("journal:{step:?}")) {
            return Err(NodeError::io(
                format!("cannot write {}", path(state_dir).display()),
                e,
            ));
        }
        self.step = step;
        self.write(state_dir)
    }

    fn write(&self, state_dir: &Path) -> Result<()> {
        faults::point("journal:before-write");
        durable::save_json(&path(state_dir), self)?;
        faults::point("journal:after-write");
        Ok(())
    }

    /// The interrupted operation, if any.
    pub fn load(state_dir: &Path) -> Result<Option<Journal>> {
        let path = path(state_dir);
        match std::fs::read(&path) {
            // write_atomic never leaves a torn journal, so this is damage
            // from outside ferry: do not guess what the node was doing.
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                NodeError::CorruptState {
                    path: path.clone(),
                    source,
                    if_corrupt: "check where `current` points and the releases on disk, then remove the file",
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Closes the journal: the operation is over, whatever its outcome.
    pub fn close(state_dir: &Path) -> Result<()> {
        let path = path(state_dir);
        faults::point("journal:before-close");
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(NodeError::io(
                    format!("cannot remove {}", path.display()),
                    e,
                ))
            }
        }
        durable::sync_dir(state_dir)
            .map_err(|e| NodeError::io(format!("cannot fsync {}", state_dir.display()), e))?;
        faults::point("journal:after-close");
        Ok(())
    }
}
