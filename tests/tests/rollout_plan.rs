//! The promise: `ferry rollout start --dry-run` asks every real node what
//! it runs (through the inventory's transport) and shows a plan that
//! updates a canary follower first, then followers in batches no larger
//! than `max_unavailable` and the Raft majority allow, and the leader last;
//! it refuses a plan it cannot make safely (an unreachable node, a version
//! too far away) by naming the cause, and it changes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::cluster::{coordinator, five_nodes_on_1_0_0 as cluster, start_version_command};
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::{run, Output};
use serde_json::Value;

/// A `cluster.toml` for `nodes` with the `command` transport running this
/// build's `ferry` against each node's configuration.
fn write_inventory(ws: &Workspace, nodes: &[Node], leader: &str, extra: &str) -> PathBuf {
    let mut text = String::from(extra);
    for node in nodes {
        text.push_str(&format!(
            "[[node]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nrole = \"{}\"\nlabels = {{ zone = \"z{}\" }}\n",
            node.name,
            if node.name == leader { "leader" } else { "follower" },
            node.name.len()
        ));
    }
    text.push_str(&format!(
        "[transport]\nkind = \"command\"\ntemplate = \"{{ferry}} --config {}/nodes/{{name}}/ferry.toml apply --version {{version}} --output json\"\n",
        ws.dir.display()
    ));
    text.push_str("[rollout]\ncanary = 1\nmax_unavailable = 3\n");
    let path = ws.dir.join("cluster.toml");
    fs::write(&path, text).unwrap();
    path
}

fn dry_run(ws: &Workspace, inventory: &Path, version: &str, json: bool) -> Output {
    let extra: &[&str] = if json {
        &["--dry-run", "--json"]
    } else {
        &["--dry-run"]
    };
    run(&mut start_version_command(ws, inventory, version, extra))
}

fn stages(plan: &Value) -> Vec<(String, Vec<String>)> {
    plan["plan"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn parse(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("rollout start --dry-run --json is not JSON ({e})\n{out}"))
}

fn owned(expected: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    expected
        .iter()
        .map(|(n, ns)| (n.to_string(), ns.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn the_plan_puts_a_canary_first_batches_within_the_majority_and_the_leader_last() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, "n1", "");
    let out = dry_run(&ws, &inventory, "1.1.0", true);
    out.assert_success();
    let plan = parse(&out);
    // max_unavailable = 3, but 5 nodes keep their majority (3) with at
    // most 2 down.
    assert_eq!(plan["plan"]["batch_size"], 2, "{out}");
    assert_eq!(
        stages(&plan),
        owned(&[
            ("canary", &["n2"]),
            ("batch 1", &["n3", "n4"]),
            ("batch 2", &["n5"]),
            ("leader", &["n1"]),
        ])
    );
    for node in &nodes {
        assert_eq!(plan["current_versions"][&node.name], "1.0.0", "{out}");
    }
    let warnings = plan["plan"]["warnings"].to_string();
    assert!(
        warnings.contains("max_unavailable = 3 lowered to 2"),
        "{out}"
    );

    // A flag overrides [rollout]; the human form names every stage.
    let inventory_arg = inventory.to_string_lossy();
    let out = coordinator(
        &ws,
        &[
            "rollout",
            "start",
            "--inventory",
            &inventory_arg,
            "--version",
            "1.1.0",
            "--dry-run",
            "--max-unavailable",
            "2",
            "--canary",
            "40%",
        ],
    );
    out.assert_success();
    for line in [
        "canary     n2 (1.0.0), n3 (1.0.0)",
        "batch 1    n4 (1.0.0), n5 (1.0.0)",
        "leader     n1 (1.0.0)",
        "after the canary: promote manual, bake 0s between stages; on a failed node roll back every updated node",
        "dry run: nothing was changed",
    ] {
        out.assert_stdout_contains(line);
    }
    assert!(!out.stdout.contains("warning"), "{out}");

    // A dry run changes nothing: no record, every node still on 1.0.0.
    assert!(!ws.dir.join("coordinator").exists());
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
    let out = coordinator(&ws, &["rollout", "list"]);
    out.assert_success()
        .assert_stdout_contains("no rollouts in");
    coordinator(&ws, &["rollout", "status", "20260101T000000Z-1.1.0"])
        .assert_code(1)
        .assert_stderr_contains("no rollout 20260101T000000Z-1.1.0");
    // Continuing or stopping a rollout that does not exist names it and
    // creates nothing.
    for args in [
        &["rollout", "resume", "x"][..],
        &["rollout", "promote", "x"],
        &["rollout", "abort", "x"],
    ] {
        coordinator(&ws, args)
            .assert_code(1)
            .assert_stderr_contains("no rollout x");
    }
    assert!(!ws.dir.join("coordinator").exists());
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
}

#[test]
fn leader_command_moves_the_current_leader_last_and_skips_nodes_on_the_target() {
    let (ws, nodes) = cluster();
    // n4 is already on 1.1.0: it is skipped.
    nodes[3].ferry_ok(&["apply", "--version", "1.1.0"]);
    let inventory = write_inventory(&ws, &nodes, "n1", "leader_command = \"echo n3\"\n");
    let out = dry_run(&ws, &inventory, "1.1.0", true);
    out.assert_success();
    let plan = parse(&out);
    assert_eq!(plan["plan"]["leader"], "n3", "{out}");
    assert_eq!(plan["plan"]["skipped"], serde_json::json!(["n4"]), "{out}");
    assert_eq!(
        stages(&plan),
        owned(&[
            ("canary", &["n1"]),
            ("batch 1", &["n2", "n5"]),
            ("leader", &["n3"])
        ])
    );

    let unknown = write_inventory(&ws, &nodes, "n1", "leader_command = \"echo n9\"\n");
    dry_run(&ws, &unknown, "1.1.0", true)
        .assert_code(1)
        .assert_stderr_contains("leader_command printed \"n9\", which is no node");
}

#[test]
fn a_node_whose_status_cannot_be_read_fails_the_dry_run_naming_it() {
    let (ws, nodes) = cluster();
    fs::write(&nodes[2].config, "[repository\nbroken").unwrap();
    let inventory = write_inventory(&ws, &nodes, "n1", "");
    let out = dry_run(&ws, &inventory, "1.1.0", true);
    out.assert_code(1);
    out.assert_stderr_contains("unreachable nodes: n3 ");
    out.assert_stderr_contains("status of node n3");
    assert!(out.stdout.trim().is_empty(), "no plan on stdout\n{out}");
}

#[test]
fn a_target_two_major_versions_away_is_refused() {
    let (ws, nodes) = cluster();
    let inventory = write_inventory(&ws, &nodes, "n1", "");
    let out = dry_run(&ws, &inventory, "3.0.0", false);
    out.assert_code(1);
    out.assert_stderr_contains("version skew: 3.0.0 is more than one major version newer");
    // One minor too far is refused as well.
    dry_run(&ws, &inventory, "1.2.0", false)
        .assert_code(1)
        .assert_stderr_contains("more than one minor version newer");
}
