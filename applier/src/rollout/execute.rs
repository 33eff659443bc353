//! Executing a rollout: walking the record's stages, running `ferry apply`
//! on each stage's nodes at once, and rolling back when one fails.
//!
//! The decisions (which nodes a stage still needs, what follows a stage,
//! what to roll back and in which order, what an apply's result means)
//! are pure functions of the record, unit-tested below; `drive` only runs
//! commands and saves the record after every node state change, so a
//! killed coordinator leaves a record `resume` can continue.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rustix::fs::{flock, FlockOperation};
use semver::Version;

use super::inventory::{Inventory, InventoryNode, Promote, RollbackScope, RolloutPolicy};
use super::plan::StageKind;
use super::record::{NodeRolloutState, RolloutRecord, RolloutState};
use super::transport::{self, command_line, shell_quote, RemoteCommand};
use crate::error::{NodeError, Result};
use crate::shell::ShellCommand;

/// How long one node's `ferry apply` may take (download, switch, health
/// check) before it counts as failed.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one node's `ferry rollback` may take.
pub const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What one node's apply came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    Updated,
    Failed(String),
}

/// What follows a finished stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStage {
    /// Every stage is done.
    Succeeded,
    /// The canary is done and the policy wants a person to promote.
    AwaitPromotion,
    /// Bake, then the next stage.
    Next,
}

/// The nodes of stage `index` that still need work: pending, or left
/// `updating` by a coordinator that died (to be re-checked first).
pub fn stage_work(record: &RolloutRecord, index: usize) -> Vec<(String, NodeRolloutState)> {
    let Some(stage) = record.plan.stages.get(index) else {
        return Vec::new();
    };
    stage
        .nodes
        .iter()
        .filter_map(|name| {
            let state = record.nodes.get(name)?.state;
            matches!(
                state,
                NodeRolloutState::Pending | NodeRolloutState::Updating
            )
            .then(|| (name.clone(), state))
        })
        .collect()
}

/// What follows stage `done` once every node of it is updated.
pub fn after_stage(record: &RolloutRecord, done: usize, promote: Promote) -> AfterStage {
    if done + 1 >= record.plan.stages.len() {
        AfterStage::Succeeded
    } else if record.plan.stages[done].kind == StageKind::Canary && promote == Promote::Manual {
        AfterStage::AwaitPromotion
    } else {
        AfterStage::Next
    }
}

/// Records `outcome` for `name` (numbering updated nodes in the order
/// they finished).
pub fn record_outcome(record: &mut RolloutRecord, name: &str, outcome: &NodeOutcome) {
    let next_order = record
        .nodes
        .values()
        .filter_map(|n| n.update_order)
        .max()
        .unwrap_or(0)
        + 1;
    if let Some(node) = record.nodes.get_mut(name) {
        match outcome {
            NodeOutcome::Updated => {
                node.state = NodeRolloutState::Updated;
                node.update_order = Some(next_order);
                node.message = None;
            }
            NodeOutcome::Failed(why) => {
                node.state = NodeRolloutState::Failed;
                node.message = Some(why.clone());
            }
        }
    }
}

/// The nodes to roll back after a failure, newest update first, each with
/// the version it ran before (nodes that ran nothing before cannot be
/// rolled back and are left out; `rollback_unknown` names them).
pub fn rollback_order(record: &RolloutRecord, scope: RollbackScope) -> Vec<(String, Version)> {
    if scope == RollbackScope::Node {
        return Vec::new();
    }
    let mut updated: Vec<(u32, String, Version)> = record
        .nodes
        .iter()
        .filter(|(_, n)| n.state == NodeRolloutState::Updated)
        .filter_map(|(name, n)| Some((n.update_order.unwrap_or(0), name.clone(), n.from.clone()?)))
        .collect();
    updated.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    updated.into_iter().map(|(_, n, v)| (n, v)).collect()
}

/// What an apply's exit code and last JSON event mean.
pub fn judge_apply(code: Option<i32>, timed_out: bool, last_event: Option<&str>) -> NodeOutcome {
    if timed_out {
        return NodeOutcome::Failed("apply timed out".into());
    }
    match (code, last_event) {
        (Some(0), Some("applied" | "up_to_date")) => NodeOutcome::Updated,
        (_, Some("rolled_back")) => NodeOutcome::Failed(
            "its health check failed and it rolled itself back (`rolled_back`)".into(),
        ),
        (code, Some(event)) => NodeOutcome::Failed(format!(
            "apply ended with `{event}` (exit {})",
            code.map_or("by signal".into(), |c| c.to_string())
        )),
        (code, None) => NodeOutcome::Failed(format!(
            "apply printed no outcome event (exit {}): unreachable or not a ferry?",
            code.map_or("by signal".into(), |c| c.to_string())
        )),
    }
}

/// The `event` of the last JSON line of `stdout`.
fn last_event(stdout: &str) -> Option<String> {
    stdout.lines().rev().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        value.get("event")?.as_str().map(str::to_string)
    })
}

/// Runs `line` with stdout to a file of our own (`ShellCommand` keeps
/// only a tail mixed with stderr); returns the outcome and stdout.
fn run_captured(
    what: &str,
    line: &str,
    timeout: Duration,
) -> std::result::Result<(crate::shell::Finished, String), String> {
    let path = std::env::temp_dir().join(format!(
        "ferry-rollout-{}-{}.out",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    ));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{what}: cannot create {}: {e}", path.display()))?;
    let redirected = format!("( {line}\n) >{}", shell_quote(&path.to_string_lossy()));
    let finished = ShellCommand {
        what,
        line: &redirected,
        env: Vec::new(),
        cwd: None,
        timeout,
    }
    .run();
    let stdout = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let finished = finished.map_err(|e| format!("{what}: `{line}` could not be started: {e}"))?;
    Ok((finished, stdout))
}

fn apply_node(
    inventory: &Inventory,
    node: &InventoryNode,
    version: &Version,
    own_ferry: &Path,
) -> NodeOutcome {
    let line = command_line(
        &inventory.transport,
        node,
        RemoteCommand::Apply(version),
        own_ferry,
    );
    match run_captured(
        &format!("apply on node {}", node.name),
        &line,
        APPLY_TIMEOUT,
    ) {
        Err(e) => NodeOutcome::Failed(e),
        Ok((finished, stdout)) => {
            let event = last_event(&stdout);
            match judge_apply(finished.code, finished.timed_out, event.as_deref()) {
                NodeOutcome::Failed(why) => {
                    let tail = finished.output.trim();
                    let tail = tail
                        .char_indices()
                        .rev()
                        .nth(400)
                        .map_or(tail, |(i, _)| &tail[i..]);
                    NodeOutcome::Failed(if tail.is_empty() {
                        why
                    } else {
                        format!("{why}; its output ends: {tail}")
                    })
                }
                ok => ok,
            }
        }
    }
}

/// Holds `<state>/rollouts/<id>.lock` while a coordinator drives a rollout.
pub struct RolloutLock {
    _file: File,
}

impl RolloutLock {
    pub fn acquire(state_dir: &Path, id: &str) -> Result<RolloutLock> {
        let dir = RolloutRecord::dir(state_dir);
        crate::durable::create_dir_all(&dir, 0o755)
            .map_err(|e| NodeError::io(format!("cannot create {}", dir.display()), e))?;
        let path: PathBuf = dir.join(format!("{id}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| NodeError::io(format!("cannot open {}", path.display()), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RolloutLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(NodeError::Other(format!(
                "rollout {id} is being driven by another coordinator ({} is locked)",
                path.display()
            ))),
            Err(e) => Err(NodeError::io(
                format!("cannot lock {}", path.display()),
                std::io::Error::from(e),
            )),
        }
    }
}

/// A group commit (see `RolloutRecord::save_shared`): at fleet scale the
/// nodes of a stage finish together, and a write each queued every one of
/// them behind the others' fsyncs.
fn save(record: &Mutex<RolloutRecord>, state_dir: &Path) -> Result<()> {
    RolloutRecord::save_shared(record, state_dir)
}

/// Walks `record` from its current stage until it succeeds, waits for
/// promotion, or fails (then rolls back per policy and returns the error).
pub fn drive(
    state_dir: &Path,
    mut record: RolloutRecord,
    inventory: &Inventory,
    policy: &RolloutPolicy,
    own_ferry: &Path,
) -> Result<()> {
    let version = record.version.clone();
    let id = record.id.clone();
    record.state = RolloutState::Running;
    record.save(state_dir, Timestamp::now())?;
    let record = Mutex::new(record);
    loop {
        let index = record.lock().expect("poisoned").stage_index;
        let (stage_name, work) = {
            let r = record.lock().expect("poisoned");
            if index >= r.plan.stages.len() {
                drop(r);
                let mut r = record.into_inner().expect("poisoned");
                r.state = RolloutState::Succeeded;
                r.save(state_dir, Timestamp::now())?;
                println!("rollout {id} succeeded: every node runs {version}");
                return Ok(());
            }
            (r.plan.stages[index].name.clone(), stage_work(&r, index))
        };
        println!("stage {} ({stage_name}): {} node(s)", index + 1, work.len());
        let node_of = |name: &str| {
            inventory.node(name).ok_or_else(|| {
                NodeError::Other(format!(
                    "node {name} of rollout {id} is no longer in the inventory"
                ))
            })
        };
        let mut nodes = Vec::new();
        for (name, _) in &work {
            nodes.push(node_of(name)?);
        }
        let errors: Vec<NodeError> = std::thread::scope(|scope| {
            let runs: Vec<_> = work
                .iter()
                .zip(&nodes)
                .map(|((name, state), node)| {
                    let record = &record;
                    let version = &version;
                    scope.spawn(move || -> Result<()> {
                        // Left `updating` by a dead coordinator: it may be done.
                        if *state == NodeRolloutState::Updating {
                            if let Ok(Some(current)) =
                                transport::current_version(&inventory.transport, node, own_ferry)
                            {
                                if &current == version {
                                    record_outcome(
                                        &mut record.lock().expect("poisoned"),
                                        name,
                                        &NodeOutcome::Updated,
                                    );
                                    return save(record, state_dir);
                                }
                            }
                        }
                        {
                            let mut r = record.lock().expect("poisoned");
                            if let Some(n) = r.nodes.get_mut(name.as_str()) {
                                n.state = NodeRolloutState::Updating;
                            }
                        }
                        save(record, state_dir)?;
                        let outcome = apply_node(inventory, node, version, own_ferry);
                        match &outcome {
                            NodeOutcome::Updated => println!("  {name}: updated to {version}"),
                            NodeOutcome::Failed(why) => println!("  {name}: FAILED: {why}"),
                        }
                        record_outcome(&mut record.lock().expect("poisoned"), name, &outcome);
                        save(record, state_dir)
                    })
                })
                .collect();
            runs.into_iter()
                .filter_map(|run| run.join().expect("a node thread panicked").err())
                .collect()
        });
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let failed: Vec<(String, String)> = {
            let r = record.lock().expect("poisoned");
            r.plan.stages[index]
                .nodes
                .iter()
                .filter_map(|n| {
                    let p = r.nodes.get(n)?;
                    (p.state == NodeRolloutState::Failed)
                        .then(|| (n.clone(), p.message.clone().unwrap_or_default()))
                })
                .collect()
        };
        if !failed.is_empty() {
            let record = record.into_inner().expect("poisoned");
            return fail(state_dir, record, inventory, policy, own_ferry, &failed);
        }
        let next = {
            let mut r = record.lock().expect("poisoned");
            r.stage_index = index + 1;
            after_stage(&r, index, policy.promote)
        };
        match next {
            AfterStage::AwaitPromotion => {
                let mut r = record.into_inner().expect("poisoned");
                r.state = RolloutState::AwaitingPromotion;
                r.save(state_dir, Timestamp::now())?;
                println!(
                    "canary done; check it, then continue with `ferry rollout promote {id} --state-dir {}`",
                    state_dir.display()
                );
                return Ok(());
            }
            AfterStage::Succeeded => save(&record, state_dir)?,
            AfterStage::Next => {
                save(&record, state_dir)?;
                if policy.bake_seconds > 0 {
                    println!("baking {}s", policy.bake_seconds);
                    std::thread::sleep(Duration::from_secs(policy.bake_seconds));
                }
            }
        }
    }
}

/// A node failed: roll back per policy, mark the rollout failed, and
/// return the error naming the node(s).
fn fail(
    state_dir: &Path,
    mut record: RolloutRecord,
    inventory: &Inventory,
    policy: &RolloutPolicy,
    own_ferry: &Path,
    failed: &[(String, String)],
) -> Result<()> {
    record.state = RolloutState::Failed;
    record.save(state_dir, Timestamp::now())?;
    let mut rollback_errors = Vec::new();
    for (name, from) in rollback_order(&record, policy.rollback_on_failure) {
        let Some(node) = inventory.node(&name) else {
            rollback_errors.push(format!("{name}: no longer in the inventory"));
            continue;
        };
        let line = command_line(
            &inventory.transport,
            node,
            RemoteCommand::Rollback(&from),
            own_ferry,
        );
        let what = format!("rollback of node {name}");
        let result = ShellCommand {
            what: &what,
            line: &line,
            env: Vec::new(),
            cwd: None,
            timeout: ROLLBACK_TIMEOUT,
        }
        .run_checked();
        let progress = record
            .nodes
            .get_mut(&name)
            .expect("rolled back nodes are in the record");
        match result {
            Ok(_) => {
                println!("  {name}: rolled back to {from}");
                progress.state = NodeRolloutState::RolledBack;
                progress.message = Some(format!("rolled back to {from}"));
            }
            Err(e) => {
                println!("  {name}: ROLLBACK FAILED: {e}");
                progress.message = Some(format!("rollback to {from} failed: {e}"));
                rollback_errors.push(format!("{name}: {e}"));
            }
        }
        record.save(state_dir, Timestamp::now())?;
    }
    let names: Vec<String> = failed
        .iter()
        .map(|(n, why)| format!("{n} ({why})"))
        .collect();
    let rolled = match policy.rollback_on_failure {
        RollbackScope::All => "every node it had updated was rolled back",
        // A node whose health gate failed rolled itself back; one that
        // failed before switching still runs its old version.
        RollbackScope::Node => "only the failed node is back on its old version (it rolled itself back, or never switched); the other updated nodes stay on the new version",
    };
    let mut message = format!(
        "rollout {} failed at node {}; {rolled}",
        record.id,
        names.join(", ")
    );
    if !rollback_errors.is_empty() {
        message.push_str(&format!(
            "; rollbacks that failed: {}",
            rollback_errors.join("; ")
        ));
    }
    Err(NodeError::Other(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::{RolloutPlan, Stage};
    use std::collections::BTreeMap;

    fn record() -> RolloutRecord {
        let stage = |name: &str, kind, nodes: &[&str]| Stage {
            name: name.into(),
            kind,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            why: String::new(),
        };
        let plan = RolloutPlan {
            target: Version::new(1, 1, 0),
            cluster_size: 4,
            batch_size: 2,
            leader: Some("a".into()),
            stages: vec![
                stage("canary", StageKind::Canary, &["b"]),
                stage("batch 1", StageKind::Batch, &["c", "d"]),
                stage("leader", StageKind::Leader, &["a"]),
            ],
            skipped: vec![],
            warnings: vec![],
        };
        let currents: BTreeMap<String, Option<Version>> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (n.to_string(), Some(Version::new(1, 0, 0))))
            .collect();
        RolloutRecord::new(plan, "/c.toml".into(), &currents, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_stage_needs_its_pending_and_updating_nodes_only() {
        let mut r = record();
        assert_eq!(
            stage_work(&r, 1),
            vec![
                ("c".to_string(), NodeRolloutState::Pending),
                ("d".to_string(), NodeRolloutState::Pending)
            ]
        );
        r.nodes.get_mut("c").unwrap().state = NodeRolloutState::Updated;
        r.nodes.get_mut("d").unwrap().state = NodeRolloutState::Updating;
        assert_eq!(
            stage_work(&r, 1),
            vec![("d".to_string(), NodeRolloutState::Updating)]
        );
        assert!(stage_work(&r, 7).is_empty());
    }

    #[test]
    fn manual_promotion_stops_after_the_canary_only() {
        let r = record();
        assert_eq!(
            after_stage(&r, 0, Promote::Manual),
            AfterStage::AwaitPromotion
        );
        assert_eq!(after_stage(&r, 0, Promote::Auto), AfterStage::Next);
        assert_eq!(after_stage(&r, 1, Promote::Manual), AfterStage::Next);
        assert_eq!(after_stage(&r, 2, Promote::Manual), AfterStage::Succeeded);
    }

    #[test]
    fn rollbacks_go_newest_update_first_and_only_with_scope_all() {
        let mut r = record();
        for name in ["b", "d", "c"] {
            record_outcome(&mut r, name, &NodeOutcome::Updated);
        }
        record_outcome(&mut r, "a", &NodeOutcome::Failed("boom".into()));
        assert_eq!(r.nodes["a"].state, NodeRolloutState::Failed);
        assert_eq!(r.nodes["a"].message.as_deref(), Some("boom"));
        let v1 = Version::new(1, 0, 0);
        assert_eq!(
            rollback_order(&r, RollbackScope::All),
            vec![
                ("c".to_string(), v1.clone()),
                ("d".to_string(), v1.clone()),
                ("b".to_string(), v1)
            ]
        );
        assert!(rollback_order(&r, RollbackScope::Node).is_empty());
    }

    #[test]
    fn only_a_clean_exit_with_applied_or_up_to_date_is_success() {
        assert_eq!(
            judge_apply(Some(0), false, Some("applied")),
            NodeOutcome::Updated
        );
        assert_eq!(
            judge_apply(Some(0), false, Some("up_to_date")),
            NodeOutcome::Updated
        );
        for (code, timed_out, event) in [
            (Some(6), false, Some("rolled_back")),
            (Some(1), false, Some("failed")),
            (Some(1), false, Some("applied")),
            (Some(0), false, None),
            (Some(255), false, None),
            (None, true, Some("applied")),
        ] {
            assert!(
                matches!(judge_apply(code, timed_out, event), NodeOutcome::Failed(_)),
                "{code:?} {timed_out} {event:?}"
            );
        }
        assert_eq!(
            last_event("{\"event\":\"started\"}\nnoise\n{\"event\":\"applied\"}\n").as_deref(),
            Some("applied")
        );
    }

    #[test]
    fn a_second_coordinator_cannot_drive_a_locked_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let held = RolloutLock::acquire(dir.path(), "r1").unwrap();
        let err = RolloutLock::acquire(dir.path(), "r1")
            .err()
            .expect("the second lock must fail")
            .to_string();
        assert!(err.contains("another coordinator"), "{err}");
        // Other rollouts are independent.
        RolloutLock::acquire(dir.path(), "r2").unwrap();
        drop(held);
        RolloutLock::acquire(dir.path(), "r1").unwrap();
    }
}
