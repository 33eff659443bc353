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
            "move it aside: the next operation starts a fresh record",
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

/// Every operation recorded, oldest first. A line that is not a record
/// (torn by a power cut mid-append, so possibly cut inside a UTF-8
/// character, or damaged) is skipped with one warning per read: one bad
/// line must not hide the others or block the next operation.
pub fn history(state_dir: &Path) -> Result<Vec<Operation>> {
    let path = history_path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(format!("cannot read {}", path.display()), e)),
    };
    let (records, skipped) = parse_history(&bytes);
    if skipped > 0 {
        errln!(
            "ferry: warning: skipped {skipped} unreadable line(s) of {} (torn or damaged records)",
            path.display()
        );
    }
    Ok(records)
}

/// The records of a history file and how many non-empty lines were not one.
fn parse_history(bytes: &[u8]) -> (Vec<Operation>, usize) {
    let mut skipped = 0;
    let records = bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .filter_map(|line| {
            let record = serde_json::from_slice(line).ok();
            skipped += usize::from(record.is_none());
            record
        })
        .collect();
    (records, skipped)
}

/// Copies of the signed manifests of installed releases, kept so a rollback
/// can re-verify a release tree without the network.
pub fn kept_manifest_path(state_dir: &Path, version: &Version) -> PathBuf {
    state_dir.join("manifests").join(format!("{version}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_line(version: &str) -> String {
        let op = Operation {
            id: None,
            operation: OperationKind::Apply,
            from_version: None,
            to_version: Some(version.parse().unwrap()),
            outcome: Outcome::Success,
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
            message: "updated to ü".into(),
            bytes_downloaded: 0,
            transfer: Transfer::default(),
        };
        serde_json::to_string(&op).unwrap()
    }

    #[test]
    fn torn_and_invalid_lines_are_skipped_and_counted() {
        let first = record_line("1.0.0");
        let torn = record_line("2.0.0");
        // Cut inside the two-byte `ü`: not UTF-8 any more.
        let cut = torn.find('ü').unwrap() + 1;
        let mut bytes = format!("{first}\nnot json\n\n").into_bytes();
        bytes.extend_from_slice(&torn.as_bytes()[..cut]);
        bytes.push(b'\n');
        bytes.extend_from_slice(record_line("3.0.0").as_bytes());
        let (records, skipped) = parse_history(&bytes);
        let versions: Vec<String> = records
            .iter()
            .map(|r| r.to_version.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(versions, ["1.0.0", "3.0.0"]);
        assert_eq!(skipped, 2);
    }
}
