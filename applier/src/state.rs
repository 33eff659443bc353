//! What the node remembers: `state.json` (the previous release, the channel,
//! the last operation) and `history.jsonl` (every operation, appended).
//!
//! `current` is never read from here — the symlink is the truth — so a state
//! file lost or stale cannot make ferry lie about what runs.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{NodeError, Result};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// In-place mode only: the installed version (symlink mode reads `current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<Version>,
    pub previous_version: Option<Version>,
    pub channel: Option<String>,
    pub last_operation: Option<Operation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    Apply,
    Rollback,
    Repair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    Failed,
    /// The new release was live but failed its checks; the old one is back.
    RolledBack,
    /// A crash cut the operation short; recovery undid it.
    Interrupted,
    /// The request was turned down before the operation started (an
    /// unknown version, a downgrade not asked for, a `[policy]` rule):
    /// nothing changed, and nothing on the node is wrong.
    Refused,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// The journal id of the operation; absent for records of no journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub operation: OperationKind,
    pub from_version: Option<Version>,
    pub to_version: Option<Version>,
    pub outcome: Outcome,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub message: String,
    /// Every byte fetched over the network, a failed delta's included.
    #[serde(default)]
    pub bytes_downloaded: u64,
    #[serde(flatten)]
    pub transfer: Transfer,
}

/// How an operation's contents arrived: what deltas saved, what failed.
/// Absent in records written before deltas, which read as all zero.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Transfer {
    /// Contents rebuilt from a delta patch.
    pub deltas_used: u32,
    /// Deltas that failed (missing, corrupt, not applying, wrong result)
    /// and were replaced by their full object.
    pub delta_fallbacks: u32,
    /// Contents downloaded as full objects, fallbacks included.
    pub full_objects: u32,
    /// What the downloads would have been with full objects only.
    pub bytes_full_equivalent: u64,
    /// Bytes downloaded by fetches that arrived as a delta patch.
    pub delta_bytes: u64,
    /// Bytes downloaded by fetches that arrived as a full object, a failed
    /// delta's bytes before it included.
    pub full_bytes: u64,
}

impl Transfer {
    /// Counts `bytes` downloaded for one content, as a delta's or a full
    /// object's (for the metrics' delta/full split).
    pub fn count_fetched(&mut self, as_delta: bool, bytes: u64) {
        if as_delta {
            self.delta_bytes += bytes;
        } else {
            self.full_bytes += bytes;
        }
    }
}

fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}

impl NodeState {
    pub fn load(state_dir: &Path) -> Result<NodeState> {
        durable::load_json(
            &state_path(state_dir),
            "move it aside and run `ferry status` to start a fresh record",
        )
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        durable::save_json(&state_path(state_dir), self)
    }
}

/// Records a finished operation in both the state and the history. An
/// operation whose id the history already holds is not recorded again:
/// recovery may conclude an operation whose first conclusion a crash cut.
pub fn record(state_dir: &Path, state: &mut NodeState, operation: Operation) -> Result<()> {
    if operation.id.is_some() && history(state_dir)?.iter().any(|op| op.id == operation.id) {
        return Ok(());
    }
    let line = serde_json::to_string(&operation).expect("operation serialises");
    state.last_operation = Some(operation);
    state.save(state_dir)?;
    let path = history_path(state_dir);
    durable::append_line(&path, &line)
        .map_err(|e| NodeError::io(format!("cannot append to {}", path.display()), e))
}

pub fn history(state_dir: &Path) -> Result<Vec<Operation>> {
    let path = history_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(format!("cannot read {}", path.display()), e)),
    };
    // A torn last line (power cut mid-append) is skipped, not fatal.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Copies of the signed manifests of installed releases, kept so a rollback
/// can re-verify a release tree without the network.
pub fn kept_manifest_path(state_dir: &Path, version: &Version) -> PathBuf {
    state_dir.join("manifests").join(format!("{version}.json"))
}
