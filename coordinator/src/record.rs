//! The persisted rollout record: `<state dir>/rollouts/<id>.json`, one per
//! rollout (the coordinator's state dir is `--state-dir`, by default
//! `/var/lib/ferry`, so records land in `/var/lib/ferry/rollouts/`).
//!
//! A coordinator can be killed at any point (an operator's laptop closes,
//! a CI job times out), and a rollout half done is a cluster with mixed
//! versions. So everything needed to continue — the plan, each node's
//! state, the stage reached — is written, atomically and durably
//! (`ferry_node::durable`), before and after every step; `ferry rollout resume`
//! continues from it without redoing finished nodes, and `status`/`list`
//! read it while a coordinator runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{CoordinatorError, Result};
use crate::inventory::RolloutPolicy;
use crate::plan::RolloutPlan;
use ferry_node::durable;

/// A state as its JSON spelling ("awaiting-promotion", "rolled-back"), so
/// the human and machine outputs use the same words.
pub fn label<T: Serialize>(state: T) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// The coordinator's state dir unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferry";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub id: String,
    pub version: Version,
    /// The inventory the rollout was started with, for `resume`.
    pub inventory: PathBuf,
    /// The cluster this rollout holds while active ([`crate::cluster`]):
    /// `cluster:<name>` or `inventory:<absolute path>`. Absent in records
    /// written before clusters were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub plan: RolloutPlan,
    pub nodes: BTreeMap<String, NodeProgress>,
    /// The stage being worked on (== `plan.stages.len()` when all are done).
    pub stage_index: usize,
    pub state: RolloutState,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// The policy (with the flags' overrides) the rollout runs with, so
    /// `promote` and `resume` go on with the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RolloutPolicy>,
    /// The newest [`TIMELINE_ENTRIES`] events, oldest first.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Planned (`ferry rollout plan`, `POST /api/v1/updates/plan`) and not
    /// started yet: `ferry rollout execute` starts it.
    Planned,
    Running,
    /// Canary done; waiting for `ferry rollout promote`.
    AwaitingPromotion,
    /// Stopped between stages by `ferry rollout pause`; `resume` goes on.
    Paused,
    Succeeded,
    Failed,
    Aborted,
    /// `ferry rollout rollback` is returning its updated nodes to their old
    /// versions.
    RollingBack,
    /// `ferry rollout rollback` returned its updated nodes to their old
    /// versions.
    RolledBack,
}

impl RolloutState {
    /// Nothing more will happen to a rollout in this state on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RolloutState::Succeeded
                | RolloutState::Failed
                | RolloutState::Aborted
                | RolloutState::RolledBack
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProgress {
    pub state: NodeRolloutState,
    /// The version it ran before the rollout (what a rollback returns to).
    pub from: Option<Version>,
    /// Why it failed or was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// 1 for the first node this rollout updated, 2 for the next...:
    /// rollbacks go newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_order: Option<u32>,
    /// The last step the node's own `ferry apply` reported (`plan`,
    /// `fetched`, `staged`, `switched`, `live`), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What its own health gate said: `healthy` once its apply reached
    /// `live` through a health check, `unchecked` when it went live with
    /// no `[health]` configured, `unhealthy` when it rolled itself back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// One line of a rollout's timeline (`ferry rollout status`, the
/// dashboard): what happened, when, and to which node if to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub message: String,
}

/// The timeline keeps its newest entries only: a record is rewritten
/// after every change, and a 1,000-node rollout must not make that
/// quadratic.
pub const TIMELINE_ENTRIES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRolloutState {
    Pending,
    Updating,
    Updated,
    Failed,
    RolledBack,
    /// Already on the target when the rollout started.
    Skipped,
}

impl RolloutRecord {
    /// A new record for `plan`: planned nodes pending, the others skipped.
    /// The id is the creation time and the version, so `list` sorts by age
    /// and a name says what it was.
    pub fn new(
        plan: RolloutPlan,
        inventory: PathBuf,
        current_versions: &BTreeMap<String, Option<Version>>,
        now: Timestamp,
    ) -> RolloutRecord {
        let mut nodes = BTreeMap::new();
        for name in plan.nodes_in_order() {
            nodes.insert(
                name.to_string(),
                NodeProgress {
                    state: NodeRolloutState::Pending,
                    from: current_versions.get(name).cloned().flatten(),
                    message: None,
                    update_order: None,
                    phase: None,
                    health: None,
                },
            );
        }
        for name in &plan.skipped {
            nodes.insert(
                name.clone(),
                NodeProgress {
                    state: NodeRolloutState::Skipped,
                    from: current_versions.get(name).cloned().flatten(),
                    message: None,
                    update_order: None,
                    phase: None,
                    health: None,
                },
            );
        }
        let id = format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), plan.target);
        RolloutRecord {
            id,
            version: plan.target.clone(),
            inventory,
            cluster: None,
            plan,
            nodes,
            stage_index: 0,
            state: RolloutState::Running,
            created: now,
            updated: now,
            policy: None,
            timeline: Vec::new(),
        }
    }

    /// Adds an event to the timeline, dropping the oldest past
    /// [`TIMELINE_ENTRIES`].
    pub fn note(&mut self, node: Option<&str>, message: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            at: Timestamp::now(),
            node: node.map(str::to_string),
            message: message.into(),
        });
        if self.timeline.len() > TIMELINE_ENTRIES {
            let excess = self.timeline.len() - TIMELINE_ENTRIES;
            self.timeline.drain(..excess);
        }
    }

    /// `<state_dir>/rollouts`: where the records are.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("rollouts")
    }

    pub fn path(state_dir: &Path, id: &str) -> PathBuf {
        Self::dir(state_dir).join(format!("{id}.json"))
    }

    /// Writes the record atomically, creating the state directory.
    pub fn save(&mut self, state_dir: &Path, now: Timestamp) -> Result<()> {
        let dir = Self::dir(state_dir);
        durable::create_dir_all(&dir, 0o755).map_err(|e| {
            CoordinatorError::io(
                format!("cannot create the rollout directory {}", dir.display()),
                e,
            )
        })?;
        self.updated = now;
        Ok(durable::save_json(&Self::path(state_dir, &self.id), self)?)
    }

    pub fn load(state_dir: &Path, id: &str) -> Result<RolloutRecord> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(CoordinatorError::BadRolloutId { id: id.to_string() });
        }
        let path = Self::path(state_dir, id);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CoordinatorError::UnknownRollout {
                    id: id.to_string(),
                    dir: Self::dir(state_dir),
                }
            } else {
                CoordinatorError::io(format!("cannot read {}", path.display()), e)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|source| CoordinatorError::CorruptRecord { path, source })
    }

    /// Every rollout in `state_dir`, oldest first. An unreadable record is
    /// an error naming it rather than a silently shorter list.
    pub fn list(state_dir: &Path) -> Result<Vec<RolloutRecord>> {
        let dir = Self::dir(state_dir);
        let cannot_list = |e| CoordinatorError::io(format!("cannot list {}", dir.display()), e);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(cannot_list(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(cannot_list)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Atomic writes leave dot-named temporaries while they run.
            if let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            {
                records.push(Self::load(state_dir, id)?);
            }
        }
        records.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// How many nodes are in `state`.
    pub fn count(&self, state: NodeRolloutState) -> usize {
        self.nodes.values().filter(|n| n.state == state).count()
    }
}

/// A record of a one-node, one-stage rollout of 1.1.0 in `state`: for the
/// unit tests of what reads records (locks, clusters, stop requests).
#[cfg(test)]
pub(crate) fn one_stage_record(state: RolloutState) -> RolloutRecord {
    use crate::plan::{Stage, StageKind};
    let plan = RolloutPlan {
        target: "1.1.0".parse().unwrap(),
        cluster_size: 1,
        batch_size: 1,
        leader: None,
        stages: vec![Stage {
            name: "canary".into(),
            kind: StageKind::Canary,
            nodes: vec!["n1".into()],
            why: String::new(),
        }],
        skipped: Vec::new(),
        warnings: Vec::new(),
    };
    let mut r = RolloutRecord::new(plan, "/x".into(), &BTreeMap::new(), Timestamp::now());
    r.state = state;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Stage, StageKind};

    fn plan() -> RolloutPlan {
        RolloutPlan {
            target: Version::new(1, 1, 0),
            cluster_size: 3,
            batch_size: 1,
            leader: Some("a".into()),
            stages: vec![
                Stage {
                    name: "canary".into(),
                    kind: StageKind::Canary,
                    nodes: vec!["b".into()],
                    why: "first".into(),
                },
                Stage {
                    name: "leader".into(),
                    kind: StageKind::Leader,
                    nodes: vec!["a".into()],
                    why: "last".into(),
                },
            ],
            skipped: vec!["c".into()],
            warnings: vec![],
        }
    }

    fn currents() -> BTreeMap<String, Option<Version>> {
        [
            ("a".to_string(), Some(Version::new(1, 0, 0))),
            ("b".to_string(), None),
            ("c".to_string(), Some(Version::new(1, 1, 0))),
        ]
        .into()
    }

    #[test]
    fn a_new_record_has_pending_and_skipped_nodes_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut record = RolloutRecord::new(plan(), "/c.toml".into(), &currents(), now);
        assert_eq!(record.id, "20261201T100000Z-1.1.0");
        assert_eq!(record.nodes["a"].state, NodeRolloutState::Pending);
        assert_eq!(record.nodes["a"].from, Some(Version::new(1, 0, 0)));
        assert_eq!(record.nodes["c"].state, NodeRolloutState::Skipped);
        assert_eq!(record.count(NodeRolloutState::Pending), 2);
        let later: Timestamp = "2026-12-01T10:05:00Z".parse().unwrap();
        record.save(dir.path(), later).unwrap();
        let loaded = RolloutRecord::load(dir.path(), &record.id).unwrap();
        assert_eq!(loaded, record);
        assert_eq!(loaded.updated, later);
        assert_eq!(loaded.created, now);
    }

    #[test]
    fn list_is_oldest_first_and_ignores_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RolloutRecord::list(&dir.path().join("none"))
            .unwrap()
            .is_empty());
        for time in ["2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z"] {
            let now: Timestamp = time.parse().unwrap();
            RolloutRecord::new(plan(), "/c.toml".into(), &currents(), now)
                .save(dir.path(), now)
                .unwrap();
        }
        std::fs::write(dir.path().join("rollouts/.tmp.json"), "partial").unwrap();
        let ids: Vec<String> = RolloutRecord::list(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["20261201T000000Z-1.1.0", "20261202T000000Z-1.1.0"]);
    }

    #[test]
    fn unknown_ids_and_corrupt_records_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = RolloutRecord::load(dir.path(), "nope")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no rollout nope") && err.contains("rollout list"),
            "{err}"
        );
        let err = RolloutRecord::load(dir.path(), "../etc/passwd")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no rollout id"), "{err}");
        std::fs::create_dir_all(dir.path().join("rollouts")).unwrap();
        std::fs::write(dir.path().join("rollouts/bad.json"), "{").unwrap();
        let err = RolloutRecord::list(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.json is corrupt"), "{err}");
    }
}
