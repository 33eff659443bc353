//! The threat: two rollouts on one cluster undo each other. Started at
//! once, the second one's canary failed on a node the first had already
//! moved to a newer version, its failure handling rolled that node back,
//! and the first still reported every node on its version.
//!
//! The promise: one rollout is active per cluster (named by the
//! inventory's `cluster` key, else its absolute path). A second `start`,
//! `plan` or `execute` while one runs, awaits promotion or rolls back is
//! refused with exit 9 naming the active rollout, before any node is
//! asked anything; of two started at the same instant exactly one runs.
//! A failed rollout puts back only nodes that run the version *it*
//! installed: a node someone else moved is left alone. Records keep the
//! inventory's absolute path, so `promote` works from any directory.

use std::path::Path;
use std::process::Command;

use ferry_tests::cluster::{
    command_inventory, command_inventory_with, coordinator, coordinator_command,
    five_nodes_on_1_0_0, printed_rollout_id, rollout_record, start_version_command,
};
use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};

const CLUSTER_BUSY: i32 = 9;

fn start_command(ws: &Workspace, inventory: &Path, version: &str, promote: &str) -> Command {
    start_version_command(ws, inventory, version, &["--promote", promote])
}

fn id_of(out: &Output) -> String {
    printed_rollout_id(&out.stdout).unwrap_or_else(|| panic!("no rollout id printed\n{out}"))
}

fn versions(nodes: &[Node]) -> Vec<Option<String>> {
    nodes.iter().map(Node::current_version).collect()
}

fn rollout_files(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.dir.join("coordinator/rollouts"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn two_rollouts_started_at_once_one_runs_the_other_is_refused() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    ws.publish("1.1.1", CHANNEL, &ws.input(3));
    // Each apply takes a moment, so the two overlap whatever the order.
    let inventory = command_inventory_with(
        &ws,
        &nodes,
        "sleep 0.3",
        None,
        "canary = 1\nmax_unavailable = 2",
    );
    let mut first = start_command(&ws, &inventory, "1.1.0", "auto");
    let mut second = start_command(&ws, &inventory, "1.1.1", "auto");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&mut first));
        let b = s.spawn(|| run(&mut second));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (winner, loser, version) = match (a.code, b.code) {
        (Some(0), Some(CLUSTER_BUSY)) => (a, b, "1.1.0"),
        (Some(CLUSTER_BUSY), Some(0)) => (b, a, "1.1.1"),
        _ => panic!("exactly one rollout must run and the other exit 9\n{a}\n{b}"),
    };
    loser.assert_stderr_contains("one rollout at a time per cluster");
    // Refused before a record or a node was touched.
    assert_eq!(rollout_files(&ws), 1);
    let id = id_of(&winner);
    assert_eq!(rollout_record(&ws, &id)["state"], "succeeded");
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some(version));
        // One apply each: the initial install and this rollout's.
        assert_eq!(node.history_json().len(), 2, "{}", node.name);
    }
}

#[test]
fn a_rollout_awaiting_promotion_holds_its_cluster_until_it_ends() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    ws.publish("1.1.1", CHANNEL, &ws.input(3));
    let inventory = command_inventory(&ws, &nodes, None, "canary = 1\nmax_unavailable = 2");
    // Started with a relative inventory path from the workspace.
    let mut start = coordinator_command(
        &ws,
        &[
            "rollout",
            "start",
            "--inventory",
            "cluster.toml",
            "--version",
            "1.1.0",
            "--promote",
            "manual",
        ],
    );
    start.current_dir(&ws.dir);
    let out = run(&mut start);
    out.assert_success();
    let id = id_of(&out);
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "awaiting-promotion", "{r}");
    let stored = r["inventory"].as_str().unwrap();
    assert!(Path::new(stored).is_absolute(), "{r}");
    let before = versions(&nodes);

    // The same cluster by another path, by `plan`, by `start`: refused,
    // naming the rollout that holds it and how to end it.
    let link = ws.dir.join("same-cluster.toml");
    std::os::unix::fs::symlink(&inventory, &link).unwrap();
    for args in [
        vec![
            "rollout",
            "start",
            "--inventory",
            link.to_str().unwrap(),
            "--version",
            "1.1.1",
        ],
        vec![
            "rollout",
            "plan",
            "--inventory",
            inventory.to_str().unwrap(),
            "--version",
            "1.1.1",
        ],
    ] {
        coordinator(&ws, &args)
            .assert_code(CLUSTER_BUSY)
            .assert_stderr_contains(&format!("rollout {id} is awaiting-promotion"))
            .assert_stderr_contains(&format!("ferry rollout promote {id}"));
    }
    assert_eq!(versions(&nodes), before, "a refused rollout touched a node");
    assert_eq!(rollout_files(&ws), 1);

    // Its own promotion is allowed, from another directory.
    let mut promote = coordinator_command(&ws, &["rollout", "promote", &id]);
    promote.current_dir("/");
    run(&mut promote).assert_success();
    assert_eq!(rollout_record(&ws, &id)["state"], "succeeded");
    // Ended: the cluster is free again.
    run(&mut start_command(&ws, &inventory, "1.1.1", "auto")).assert_success();
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.1"));
    }
}

#[test]
fn a_failed_rollout_leaves_a_node_someone_else_moved() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    ws.publish("1.1.1", CHANNEL, &ws.input(3));
    let inventory = command_inventory(&ws, &nodes, None, "canary = 1\nmax_unavailable = 2");
    let out = coordinator(
        &ws,
        &[
            "rollout",
            "plan",
            "--inventory",
            inventory.to_str().unwrap(),
            "--version",
            "1.1.0",
        ],
    );
    out.assert_success();
    let id = out.stdout.lines().next().unwrap().trim().to_string();
    let canary = rollout_record(&ws, &id)["plan"]["stages"][0]["nodes"][0]
        .as_str()
        .unwrap()
        .to_string();
    // Between plan and execute an operator moves the canary past 1.1.0:
    // its apply of 1.1.0 is refused as a downgrade, and the rollout fails.
    let moved = nodes.iter().find(|n| n.name == canary).unwrap();
    moved.ferry_ok(&["apply", "--version", "1.1.1"]);
    let out = coordinator(&ws, &["rollout", "execute", &id]);
    out.assert_code(1)
        .assert_stdout_contains("which this rollout did not install: left alone");
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["nodes"][&canary]["state"], "failed", "{r}");
    // Still on the operator's 1.1.1, and no rollback ran on it.
    assert_eq!(moved.current_version().as_deref(), Some("1.1.1"));
    let ops = moved.history_json();
    assert!(
        ops.iter().all(|op| op["operation"] != "rollback"),
        "{ops:#?}"
    );
    for node in nodes.iter().filter(|n| n.name != canary) {
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
    // Failed, so it holds the cluster no more; its rollback is pointed at.
    coordinator(&ws, &["rollout", "resume", &id])
        .assert_code(1)
        .assert_stderr_contains(&format!("ferry rollout rollback {id}"));
}

#[test]
fn the_api_answers_409_while_another_rollout_holds_the_cluster() {
    use ferry_tests::rollout_api::ApiServer;

    let (ws, nodes) = five_nodes_on_1_0_0();
    ws.publish("1.1.1", CHANNEL, &ws.input(3));
    let inventory = command_inventory(&ws, &nodes, None, "canary = 1\nmax_unavailable = 2");
    let api = ApiServer::start(&ws, &inventory);
    // Two plans while nothing runs: planning holds nothing afterwards.
    let first = api.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.0", "promote": "manual"}"#),
        201,
    );
    let second = api.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.1"}"#),
        201,
    );
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    // The first runs its canary and waits for promotion, holding the cluster.
    coordinator(&ws, &["rollout", "execute", first]).assert_success();
    assert_eq!(rollout_record(&ws, first)["state"], "awaiting-promotion");
    let before = versions(&nodes);
    for (path, body) in [
        (
            "/api/v1/updates/execute",
            format!(r#"{{"id": "{second}"}}"#),
        ),
        (
            "/api/v1/updates/plan",
            r#"{"version": "1.1.1"}"#.to_string(),
        ),
    ] {
        let reply = api.call("POST", path, Some(&api.token), Some(&body));
        assert_eq!(reply.status, 409, "{path}: {reply:?}");
        let error = reply.error();
        assert!(
            error.contains(&format!("rollout {first} is awaiting-promotion")),
            "{error}"
        );
    }
    assert_eq!(rollout_record(&ws, second)["state"], "planned");
    assert_eq!(versions(&nodes), before, "a refused request touched a node");
}
