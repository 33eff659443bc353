//! The promise: `ferry rollout start` (without --dry-run) moves every node
//! to the version stage by stage (canary, batches, leader last) through the
//! inventory's transport; a failed node stops the rollout and rolls back
//! every node it updated, newest first; a manual promotion stops after the
//! canary until `promote`; and `resume` finishes what a dead coordinator
//! left without applying any node twice.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::cluster::{
    command_inventory, coordinator, five_nodes_on_1_0_0 as cluster, printed_rollout_id,
    rollout_record,
};
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::Output;
use jiff::Timestamp;
use serde_json::Value;

/// A `cluster.toml` with n1 the leader and the `command` transport; the
/// apply of `failing` (if any) exits 1 before running ferry.
fn write_inventory(ws: &Workspace, nodes: &[Node], failing: Option<&str>) -> PathBuf {
    command_inventory(
        ws,
        nodes,
        failing,
        "canary = 1\nmax_unavailable = 3\nbake_seconds = 0",
    )
}

fn start(ws: &Workspace, inventory: &Path, promote: &str) -> Output {
    let inventory = inventory.to_string_lossy();
    coordinator(
        ws,
        &[
            "rollout",
            "start",
            "--inventory",
            &inventory,
            "--version",
            "1.1.0",
            "--promote",
            promote,
        ],
    )
}

/// The id `start` printed first.
fn rollout_id(out: &Output) -> String {
    printed_rollout_id(&out.stdout).unwrap_or_else(|| panic!("no rollout id printed\n{out}"))
}

fn record(ws: &Workspace, id: &str) -> Value {
    rollout_record(ws, id)
}

/// Each node's (operation, to_version, finished_at) in its history, after
/// the initial 1.0.0 install.
fn operations(node: &Node) -> Vec<(String, String, Timestamp)> {
    node.history_json()
        .iter()
        .skip(1)
        .map(|op| {
            (
                op["operation"].as_str().unwrap().to_string(),
                op["to_version"].as_str().unwrap().to_string(),
                op["finished_at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn applied_once(nodes: &[Node]) {
    for node in nodes {
        let ops = operations(node);
        assert_eq!(ops.len(), 1, "{}: {ops:?}", node.name);
        assert_eq!((ops[0].0.as_str(), ops[0].1.as_str()), ("apply", "1.1.0"));
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
}

/// The leader's apply finished after every follower's.
fn leader_last(nodes: &[Node]) {
    let leader = operations(&nodes[0])[0].2;
    for node in &nodes[1..] {
        assert!(
            operations(node)[0].2 < leader,
            "{} after the leader",
            node.name
        );
    }
}

#[test]
fn auto_promotion_updates_every_node_with_the_leader_last() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, None);
    let out = start(&ws, &inventory, "auto");
    out.assert_success().assert_stdout_contains("succeeded");
    let id = rollout_id(&out);
    let r = record(&ws, &id);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["stage_index"], 4, "{r}");
    for node in &nodes {
        assert_eq!(r["nodes"][&node.name]["state"], "updated", "{r}");
    }
    assert_eq!(r["nodes"]["n1"]["update_order"], 5, "{r}");
    assert_eq!(r["nodes"]["n2"]["update_order"], 1, "{r}");
    applied_once(&nodes);
    leader_last(&nodes);
    coordinator(&ws, &["rollout", "status", &id]).assert_stdout_contains("succeeded");
}

#[test]
fn a_failed_node_rolls_back_every_updated_node_newest_first() {
    let (ws, nodes) = cluster();
    // Stages: canary n2, batch [n3, n4], batch [n5], leader n1; n4 fails.
    let inventory = write_inventory(&ws, &nodes, Some("n4"));
    let out = start(&ws, &inventory, "auto");
    out.assert_code(1)
        .assert_stderr_contains("failed at node n4");
    let id = rollout_id(&out);
    let r = record(&ws, &id);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["nodes"]["n4"]["state"], "failed", "{r}");
    for name in ["n2", "n3"] {
        assert_eq!(r["nodes"][name]["state"], "rolled-back", "{r}");
    }
    for name in ["n5", "n1"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    for node in &nodes {
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.0.0"),
            "{}",
            node.name
        );
    }
    // n2 and n3 applied then rolled back, n3 (updated last) first.
    let n2 = operations(&nodes[1]);
    let n3 = operations(&nodes[2]);
    for ops in [&n2, &n3] {
        let kinds: Vec<(&str, &str)> = ops
            .iter()
            .map(|(o, v, _)| (o.as_str(), v.as_str()))
            .collect();
        assert_eq!(kinds, [("apply", "1.1.0"), ("rollback", "1.0.0")]);
    }
    assert!(n3[1].2 < n2[1].2, "n3 must be rolled back before n2");
    for node in [&nodes[0], &nodes[3], &nodes[4]] {
        assert!(operations(node).is_empty(), "{} was touched", node.name);
    }
}

#[test]
fn manual_promotion_stops_after_the_canary_until_promote() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, None);
    let out = start(&ws, &inventory, "manual");
    out.assert_success()
        .assert_stdout_contains("rollout promote");
    let id = rollout_id(&out);
    let r = record(&ws, &id);
    assert_eq!(r["state"], "awaiting-promotion", "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "updated", "{r}");
    for node in &nodes {
        let expected = if node.name == "n2" { "1.1.0" } else { "1.0.0" };
        assert_eq!(node.current_version().as_deref(), Some(expected));
    }
    // resume refuses a rollout waiting for a person.
    coordinator(&ws, &["rollout", "resume", &id])
        .assert_code(1)
        .assert_stderr_contains("awaiting-promotion");
    coordinator(&ws, &["rollout", "promote", &id]).assert_success();
    assert_eq!(record(&ws, &id)["state"], "succeeded");
    applied_once(&nodes);
    leader_last(&nodes);
}

#[test]
fn resume_finishes_exactly_what_a_dead_coordinator_left() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, None);
    // The coordinator stops after the canary; then the record is edited
    // to look like one killed in batch 1: n3 applied but still
    // `updating`, n4 `updating` but never applied, the rest pending.
    let id = rollout_id(&start(&ws, &inventory, "manual"));
    nodes[2].ferry_ok(&["apply", "--version", "1.1.0"]);
    let path = ws.dir.join(format!("coordinator/rollouts/{id}.json"));
    let mut r = record(&ws, &id);
    r["state"] = "running".into();
    r["nodes"]["n3"]["state"] = "updating".into();
    r["nodes"]["n4"]["state"] = "updating".into();
    fs::write(&path, serde_json::to_vec_pretty(&r).unwrap()).unwrap();

    // It says what it found done, not only what it does.
    coordinator(&ws, &["rollout", "resume", &id])
        .assert_success()
        .assert_stdout_contains("already on 1.1.0: n2")
        .assert_stdout_contains("n3: found on 1.1.0");
    let r = record(&ws, &id);
    assert_eq!(r["state"], "succeeded", "{r}");
    applied_once(&nodes);
    leader_last(&nodes);
    // Finished: nothing is left to resume, and abort refuses it.
    coordinator(&ws, &["rollout", "resume", &id]).assert_code(1);
    coordinator(&ws, &["rollout", "abort", &id])
        .assert_code(1)
        .assert_stderr_contains("already succeeded");
}

#[test]
fn abort_stops_a_waiting_rollout() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, None);
    let id = rollout_id(&start(&ws, &inventory, "manual"));
    coordinator(&ws, &["rollout", "abort", &id]).assert_success();
    assert_eq!(record(&ws, &id)["state"], "aborted");
    coordinator(&ws, &["rollout", "promote", &id])
        .assert_code(1)
        .assert_stderr_contains("aborted");
    assert_eq!(nodes[0].current_version().as_deref(), Some("1.0.0"));
}
