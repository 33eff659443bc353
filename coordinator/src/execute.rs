//! Executing a rollout: walking the record's stages, running `ferry apply`
//! on each stage's nodes at once, gating each stage, and rolling back when
//! something fails.
//!
//! The decisions (which nodes a stage still needs, what follows a stage,
//! what to roll back and in which order, what an apply's result means)
//! are pure functions of the record, unit-tested below; `drive` only runs
//! commands and saves the record after every node state change, so a
//! killed coordinator leaves a record `resume` can continue.
//!
//! A stage passes when every node's own `ferry apply` succeeded (the
//! node's health gate is part of that: a node whose new release is
//! unhealthy rolls itself back and exits 6) and, when `[rollout]` has a
//! `metrics_gate`, when its reading is within bounds right after the stage
//! and for the whole bake time that follows.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_node::events::{Event, EventLine};
use jiff::Timestamp;

use crate::error::{CoordinatorError, Result};
use crate::failure::{self, StageFailure};
use crate::gate::{self, Bake};
use crate::inventory::{Inventory, InventoryNode, Promote, RolloutPolicy};
use crate::leadership;
use crate::live_view::RolloutView;
use crate::lock;
use crate::node_apply::{self, NodeWork};
use crate::plan::StageKind;
use crate::record::{NodeRolloutState, RolloutRecord, RolloutState};
use crate::shared_record::SharedRecord;
use crate::transport::{self, RemoteCommand};

pub use crate::lock::RolloutLock;

/// How long one node's `ferry rollback` may take.
pub const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How often the live view is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

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

/// Records what a node's apply reported while it ran: its step, and its
/// health once its own gate decided. `live` is `healthy` only when the
/// node says a health check passed; a node without `[health]` says
/// `"health": "none"` and is `unchecked` (it went live, nothing checked
/// it). A node too old to say either is taken at its `live`, as before.
pub fn record_event(record: &mut RolloutRecord, name: &str, line: &EventLine) -> bool {
    let Some(node) = record.nodes.get_mut(name) else {
        return false;
    };
    let event = line.event;
    let (phase, health) = match event {
        Event::Plan | Event::Fetched | Event::Staged | Event::Switched => {
            (Some(event.name()), None)
        }
        Event::Live => {
            let checked = line.fields.get("health").and_then(|h| h.as_str()) != Some("none");
            (
                Some(event.name()),
                Some(if checked { "healthy" } else { "unchecked" }),
            )
        }
        Event::RolledBack => (None, Some("unhealthy")),
        _ => return false,
    };
    let before = (node.phase.clone(), node.health.clone());
    if let Some(phase) = phase {
        node.phase = Some(phase.to_string());
    }
    if let Some(health) = health {
        node.health = Some(health.to_string());
    }
    before != (node.phase.clone(), node.health.clone())
}

/// What an apply's exit code and last JSON event mean.
pub fn judge_apply(code: Option<i32>, timed_out: bool, last_event: Option<Event>) -> NodeOutcome {
    if timed_out {
        return NodeOutcome::Failed("apply timed out".into());
    }
    match (code, last_event) {
        (Some(0), Some(Event::Applied | Event::UpToDate)) => NodeOutcome::Updated,
        (_, Some(Event::RolledBack)) => NodeOutcome::Failed(
            "its health check failed and it rolled itself back (`rolled_back`)".into(),
        ),
        (_, Some(Event::Halted)) => NodeOutcome::Failed(
            "the fleet is halted in etcd (`ferry coordination status` on the node says why; `clear-halt` lets it go on)".into(),
        ),
        (code, Some(event)) => NodeOutcome::Failed(format!(
            "apply ended with `{}` (exit {})",
            event.name(),
            code.map_or("by signal".into(), |c| c.to_string())
        )),
        (Some(255), None) => NodeOutcome::Failed(
            "unreachable: the transport exited 255 before ferry printed anything (is the node up, and does ssh reach it?)".into(),
        ),
        (code, None) => NodeOutcome::Failed(format!(
            "apply printed no outcome event (exit {}): unreachable or not a ferry?",
            code.map_or("by signal".into(), |c| c.to_string())
        )),
    }
}

/// `<state>/rollouts/<id>.out/`: the nodes' outputs while they run.
fn capture_dir(state_dir: &Path, id: &str) -> std::path::PathBuf {
    RolloutRecord::dir(state_dir).join(format!("{id}.out"))
}

/// Walks `record` from its current stage until it succeeds, waits for
/// promotion, is aborted, or fails (then rolls back per policy and returns
/// the error).
pub fn drive(
    state_dir: &Path,
    mut record: RolloutRecord,
    inventory: &Inventory,
    policy: &RolloutPolicy,
    own_ferry: &Path,
) -> Result<()> {
    let view = RolloutView::for_stdout();
    let id = record.id.clone();
    record.state = RolloutState::Running;
    let from_stage = record.stage_index + 1;
    record.note(None, format!("coordinator running from stage {from_stage}"));
    record.save(state_dir, Timestamp::now())?;
    // Left by a coordinator killed mid-stage (its transports may still
    // write to their files: removing them is fine).
    let captures = capture_dir(state_dir, &id);
    let _ = std::fs::remove_dir_all(&captures);
    ferry_node::durable::create_dir_all(&captures, 0o700)
        .map_err(|e| CoordinatorError::io(format!("cannot create {}", captures.display()), e))?;
    let shared = SharedRecord::new(record, state_dir);
    let stop_drawing = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        if view.is_live() {
            scope.spawn(|| {
                while !stop_drawing.load(Ordering::SeqCst) {
                    shared.read(|r| view.draw(r));
                    std::thread::sleep(REDRAW);
                }
            });
        }
        let result = walk_stages(&shared, inventory, policy, own_ferry, &view);
        stop_drawing.store(true, Ordering::SeqCst);
        result
    });
    let record = shared.into_inner();
    let _ = std::fs::remove_dir_all(&captures);
    view.finish(&record);
    match result {
        Ok(Walked::Done) => {
            lock::clear_abort_request(state_dir, &id);
            view.say(&format!(
                "rollout {id} succeeded: every node runs {}",
                record.version
            ));
            Ok(())
        }
        Ok(Walked::AwaitingPromotion) => {
            view.say(&format!(
                "canary done; check it, then continue with `ferry rollout promote {id} --state-dir {}`",
                state_dir.display()
            ));
            Ok(())
        }
        Ok(Walked::Paused) => {
            lock::clear_stop_request(state_dir, &id, lock::StopRequest::Pause);
            view.say(&format!(
                "rollout {id} paused before stage {}; continue with `ferry rollout resume {id} --state-dir {}`",
                record.stage_index + 1,
                state_dir.display()
            ));
            Ok(())
        }
        Ok(Walked::Aborted) => {
            lock::clear_abort_request(state_dir, &id);
            Err(CoordinatorError::Aborted {
                id,
                stage: record.stage_index + 1,
                version: Box::new(record.version.clone()),
            })
        }
        Ok(Walked::Failed(failure)) => {
            lock::clear_abort_request(state_dir, &id);
            failure::fail(
                state_dir, record, inventory, policy, own_ferry, &view, &failure,
            )
        }
        Err(e) => Err(e),
    }
}

/// How walking the stages ended.
enum Walked {
    Done,
    AwaitingPromotion,
    Aborted,
    Paused,
    Failed(StageFailure),
}

fn walk_stages(
    shared: &SharedRecord<'_>,
    inventory: &Inventory,
    policy: &RolloutPolicy,
    own_ferry: &Path,
    view: &RolloutView,
) -> Result<Walked> {
    let (id, version) = shared.read(|r| (r.id.clone(), r.version.clone()));
    let state_dir = shared.state_dir();
    let aborted = || lock::abort_requested(state_dir, &id);
    let paused = || lock::stop_requested(state_dir, &id, lock::StopRequest::Pause);
    let stop = || aborted() || paused();
    let capture_dir = capture_dir(state_dir, &id);
    loop {
        if aborted() {
            shared.update(|r| {
                r.state = RolloutState::Aborted;
                r.note(None, "aborted on request; no more nodes will be updated");
            })?;
            return Ok(Walked::Aborted);
        }
        if paused() {
            shared.update(|r| {
                r.state = RolloutState::Paused;
                r.note(None, "paused on request; `ferry rollout resume` goes on");
            })?;
            return Ok(Walked::Paused);
        }
        let index = shared.read(|r| r.stage_index);
        follow_leader(shared, inventory, index, view)?;
        let Some((stage_name, stage_nodes, work)) = shared.read(|r| {
            r.plan
                .stages
                .get(index)
                .map(|s| (s.name.clone(), s.nodes.clone(), stage_work(r, index)))
        }) else {
            shared.update(|r| {
                r.state = RolloutState::Succeeded;
                r.note(None, format!("succeeded: every node runs {version}"));
            })?;
            return Ok(Walked::Done);
        };
        let nodes = work
            .iter()
            .map(|(name, state)| {
                inventory.node(name).map(|n| (n, *state)).ok_or_else(|| {
                    CoordinatorError::NodeLeftInventory {
                        node: name.clone(),
                        id: id.clone(),
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let message = format!(
            "stage {} ({stage_name}): {} node(s)",
            index + 1,
            nodes.len()
        );
        view.say(&message);
        shared.update(|r| r.note(None, message))?;
        let work = NodeWork {
            apply: match policy.allow_downgrade {
                true => RemoteCommand::ApplyDowngrade(&version),
                false => RemoteCommand::Apply(&version),
            },
            timeout: Duration::from_secs(policy.apply_timeout_seconds),
            stage_ends: policy
                .stage_timeout_seconds
                .map(|s| std::time::Instant::now() + Duration::from_secs(s)),
        };
        run_stage(
            shared,
            inventory,
            work,
            own_ferry,
            &capture_dir,
            view,
            &nodes,
        )?;

        let failed: Vec<(String, String)> = shared.read(|r| {
            stage_nodes
                .iter()
                .filter_map(|n| {
                    let p = r.nodes.get(n)?;
                    (p.state == NodeRolloutState::Failed)
                        .then(|| (n.clone(), p.message.clone().unwrap_or_default()))
                })
                .collect()
        });
        if !failed.is_empty() {
            return Ok(Walked::Failed(StageFailure {
                failed_nodes: failed.iter().map(|(n, _)| n.clone()).collect(),
                failed: failed
                    .into_iter()
                    .map(|(n, why)| (format!("node {n}"), why))
                    .collect(),
                suspects: Vec::new(),
            }));
        }
        let gate_failure = |why: String| {
            Walked::Failed(StageFailure {
                failed: vec![("the metrics gate".into(), why)],
                failed_nodes: Vec::new(),
                suspects: stage_nodes.clone(),
            })
        };
        let updated = updated_nodes(shared, inventory);
        if let Some(metrics) = &policy.metrics_gate {
            match gate::check(metrics, &updated) {
                Err(why) => return Ok(gate_failure(why)),
                Ok(highest) => shared.update(|r| {
                    r.note(
                        None,
                        format!("metrics gate holds: {highest} (max {})", metrics.max),
                    )
                })?,
            }
        }
        let next = shared.update(|r| {
            r.stage_index = index + 1;
            after_stage(r, index, policy.promote)
        })?;
        match next {
            AfterStage::Succeeded => {}
            AfterStage::AwaitPromotion => {
                shared.update(|r| {
                    r.state = RolloutState::AwaitingPromotion;
                    r.note(None, "canary done: awaiting `ferry rollout promote`");
                })?;
                return Ok(Walked::AwaitingPromotion);
            }
            AfterStage::Next if policy.bake_seconds > 0 || policy.metrics_gate.is_some() => {
                let message = match &policy.metrics_gate {
                    Some(_) => format!(
                        "baking {}s; the metrics gate must hold",
                        policy.bake_seconds
                    ),
                    None => format!("baking {}s", policy.bake_seconds),
                };
                view.say(&message);
                shared.update(|r| r.note(None, message))?;
                match gate::bake(
                    policy.metrics_gate.as_ref(),
                    &updated,
                    policy.bake_seconds,
                    &stop,
                ) {
                    Bake::Held => {}
                    // The loop's first checks mark it aborted or paused.
                    Bake::Stopped => {}
                    Bake::Broken(why) => return Ok(gate_failure(why)),
                }
            }
            AfterStage::Next => {}
        }
    }
}

/// Asks `leader_command` who leads now and makes the stages still to run
/// agree ([`leadership::follow`]), noting a change in the timeline. An
/// inventory without the command has a fixed leader: nothing to ask.
fn follow_leader(
    shared: &SharedRecord<'_>,
    inventory: &Inventory,
    index: usize,
    view: &RolloutView,
) -> Result<()> {
    if inventory.leader_command.is_none() {
        return Ok(());
    }
    let Some(leader) = inventory.current_leader()? else {
        return Ok(());
    };
    let moved = shared.update(|r| {
        let moved = leadership::follow(&mut r.plan, index, &leader);
        if let Some(line) = moved.describe() {
            r.note(None, line);
        }
        moved
    })?;
    if let Some(line) = moved.describe() {
        view.say(&line);
    }
    Ok(())
}

/// The inventory entries of every node the rollout has updated so far.
fn updated_nodes<'i>(
    shared: &SharedRecord<'_>,
    inventory: &'i Inventory,
) -> Vec<&'i InventoryNode> {
    shared.read(|r| {
        inventory
            .nodes
            .iter()
            .filter(|n| {
                r.nodes
                    .get(&n.name)
                    .is_some_and(|p| p.state == NodeRolloutState::Updated)
            })
            .collect()
    })
}

/// Updates a stage's nodes at once; each thread records its node's steps
/// and outcome. `Err` only when the record cannot be saved.
fn run_stage(
    shared: &SharedRecord<'_>,
    inventory: &Inventory,
    work: NodeWork<'_>,
    own_ferry: &Path,
    capture_dir: &Path,
    view: &RolloutView,
    nodes: &[(&InventoryNode, NodeRolloutState)],
) -> Result<()> {
    let version = work.apply.version().expect("an apply names its version");
    let errors: Vec<CoordinatorError> = std::thread::scope(|scope| {
        let runs: Vec<_> = nodes
            .iter()
            .map(|&(node, state)| {
                scope.spawn(move || -> Result<()> {
                    let name = node.name.as_str();
                    // Left `updating` by a dead coordinator: it may be done,
                    // or still applying (then wait for it, not re-apply).
                    if state == NodeRolloutState::Updating {
                        if let Ok(Some(current)) = transport::settled_version(
                            &inventory.transport,
                            node,
                            own_ferry,
                            work.time_left(),
                        ) {
                            if &current == version {
                                view.say(&format!(
                                    "  {name}: found on {version} (its apply finished while no coordinator ran)"
                                ));
                                return shared.update(|r| {
                                    record_outcome(r, name, &NodeOutcome::Updated);
                                    r.note(
                                        Some(name),
                                        format!(
                                            "found on {version} after a restart of the coordinator"
                                        ),
                                    );
                                });
                            }
                        }
                    }
                    shared.update(|r| {
                        if let Some(n) = r.nodes.get_mut(name) {
                            n.state = NodeRolloutState::Updating;
                            n.phase = None;
                            n.health = None;
                        }
                        r.note(Some(name), format!("updating to {version}"));
                    })?;
                    let on_event = |line: &EventLine| {
                        let _ = shared.update(|r| {
                            if record_event(r, name, line) {
                                r.note(Some(name), line.event.name().replace('_', " "));
                            }
                        });
                    };
                    let outcome = node_apply::apply(
                        inventory,
                        node,
                        work,
                        own_ferry,
                        capture_dir,
                        &on_event,
                    );
                    match &outcome {
                        NodeOutcome::Updated => {
                            view.say(&format!("  {name}: updated to {version}"))
                        }
                        NodeOutcome::Failed(why) => view.say(&format!("  {name}: FAILED: {why}")),
                    }
                    shared.update(|r| {
                        record_outcome(r, name, &outcome);
                        let note = match &outcome {
                            NodeOutcome::Updated => format!("updated to {version}"),
                            NodeOutcome::Failed(why) => format!("failed: {why}"),
                        };
                        r.note(Some(name), note);
                    })
                })
            })
            .collect();
        runs.into_iter()
            .filter_map(|run| run.join().expect("a node thread panicked").err())
            .collect()
    });
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::RollbackScope;
    use crate::plan::{RolloutPlan, Stage};
    use crate::revert::{rollback_order, rollback_waves};
    use semver::Version;
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
    fn rollbacks_go_newest_update_first_and_scope_node_takes_only_suspects() {
        let mut r = record();
        for name in ["b", "d", "c"] {
            record_outcome(&mut r, name, &NodeOutcome::Updated);
        }
        record_outcome(&mut r, "a", &NodeOutcome::Failed("boom".into()));
        assert_eq!(r.nodes["a"].state, NodeRolloutState::Failed);
        assert_eq!(r.nodes["a"].message.as_deref(), Some("boom"));
        let v1 = Version::new(1, 0, 0);
        assert_eq!(
            rollback_order(&r, RollbackScope::All, &[]),
            vec![
                ("c".to_string(), v1.clone()),
                ("d".to_string(), v1.clone()),
                ("b".to_string(), v1.clone())
            ]
        );
        assert!(rollback_order(&r, RollbackScope::Node, &[]).is_empty());
        // A stage whose gate failed: its nodes, newest first; the failed
        // node is not "updated" and is handled on its own.
        let suspects = ["c".to_string(), "d".to_string(), "a".to_string()];
        assert_eq!(
            rollback_order(&r, RollbackScope::Node, &suspects),
            vec![("c".to_string(), v1.clone()), ("d".to_string(), v1)]
        );
    }

    #[test]
    fn rollbacks_run_a_stage_at_a_time_later_stages_first() {
        let mut r = record();
        for name in ["b", "d", "c"] {
            record_outcome(&mut r, name, &NodeOutcome::Updated);
        }
        let order = rollback_order(&r, RollbackScope::All, &[]);
        let waves: Vec<Vec<String>> = rollback_waves(&r, order)
            .into_iter()
            .map(|w| w.into_iter().map(|(n, _)| n).collect())
            .collect();
        assert_eq!(waves, vec![vec!["c", "d"], vec!["b"]]);
    }

    #[test]
    fn node_events_set_its_step_and_health() {
        let line = |json: &str| EventLine::parse(json).unwrap();
        let mut r = record();
        assert!(record_event(&mut r, "b", &line(r#"{"event":"fetched"}"#)));
        assert!(!record_event(&mut r, "b", &line(r#"{"event":"fetched"}"#)));
        assert_eq!(r.nodes["b"].phase.as_deref(), Some("fetched"));
        assert!(record_event(
            &mut r,
            "b",
            &line(r#"{"event":"live","health":"passed"}"#)
        ));
        assert_eq!(r.nodes["b"].health.as_deref(), Some("healthy"));
        // No [health] on the node: it went live, nothing checked it.
        assert!(record_event(
            &mut r,
            "d",
            &line(r#"{"event":"live","health":"none"}"#)
        ));
        assert_eq!(r.nodes["d"].health.as_deref(), Some("unchecked"));
        assert!(record_event(
            &mut r,
            "c",
            &line(r#"{"event":"rolled_back"}"#)
        ));
        assert_eq!(r.nodes["c"].health.as_deref(), Some("unhealthy"));
        assert!(!record_event(&mut r, "c", &line(r#"{"event":"applied"}"#)));
        assert!(!record_event(
            &mut r,
            "nobody",
            &line(r#"{"event":"live"}"#)
        ));
    }

    #[test]
    fn only_a_clean_exit_with_applied_or_up_to_date_is_success() {
        assert_eq!(
            judge_apply(Some(0), false, Some(Event::Applied)),
            NodeOutcome::Updated
        );
        assert_eq!(
            judge_apply(Some(0), false, Some(Event::UpToDate)),
            NodeOutcome::Updated
        );
        for (code, timed_out, event) in [
            (Some(6), false, Some(Event::RolledBack)),
            (Some(1), false, Some(Event::Failed)),
            (Some(1), false, Some(Event::Applied)),
            (Some(0), false, None),
            (Some(255), false, None),
            (None, true, Some(Event::Applied)),
        ] {
            assert!(
                matches!(judge_apply(code, timed_out, event), NodeOutcome::Failed(_)),
                "{code:?} {timed_out} {event:?}"
            );
        }
        assert!(matches!(
            judge_apply(Some(255), false, None),
            NodeOutcome::Failed(why) if why.starts_with("unreachable")
        ));
        assert_eq!(
            node_apply::events("{\"event\":\"started\"}\nnoise\n{\"event\":\"applied\"}\n"),
            [Event::Unknown, Event::Applied]
        );
    }
}
