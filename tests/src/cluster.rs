//! A small cluster for the rollout tests: five real nodes on one machine,
//! each with its own install root and state directory, and the coordinator
//! (`ferry rollout …`) run with a state directory inside the workspace.

use std::process::Command;

use crate::binaries;
use crate::fixtures::{Node, Workspace, CHANNEL};
use crate::run::{run, Output};

/// Five nodes `n1`..`n5` on 1.0.0, installed by the real `ferry apply`,
/// and 1.1.0 published.
pub fn five_nodes_on_1_0_0() -> (Workspace, Vec<Node>) {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let nodes: Vec<Node> = (1..=5).map(|i| ws.node(&format!("n{i}"))).collect();
    for node in &nodes {
        node.ferry_ok(&["apply", "--version", "1.0.0"]);
    }
    ws.publish("1.1.0", CHANNEL, &ws.input(2));
    (ws, nodes)
}

/// `ferry ARGS --state-dir <ws>/coordinator`, with a clean environment,
/// run to its end.
pub fn coordinator(ws: &Workspace, args: &[&str]) -> Output {
    run(&mut coordinator_command(ws, args))
}

/// The command [`coordinator`] runs, for tests that start it in the
/// background (to kill it, or to act while it runs).
pub fn coordinator_command(ws: &Workspace, args: &[&str]) -> Command {
    let mut command = Command::new(binaries::ferry());
    command
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .args(args)
        .arg("--state-dir")
        .arg(ws.dir.join("coordinator"));
    command
}

/// Writes `<ws>/cluster.toml` for `nodes`: n1 the leader, the `command`
/// transport running each node's own `ferry` (the apply of `failing`, if
/// any, exits 1 before running ferry), and `rollout` as the `[rollout]`
/// table's body.
pub fn command_inventory(
    ws: &Workspace,
    nodes: &[Node],
    failing: Option<&str>,
    rollout: &str,
) -> std::path::PathBuf {
    command_inventory_with(ws, nodes, "", failing, rollout)
}

/// [`command_inventory`] with `before` (a shell line, `{name}` allowed)
/// run before each apply and rollback, e.g. to slow nodes down or hold
/// them at a known point.
pub fn command_inventory_with(
    ws: &Workspace,
    nodes: &[Node],
    before: &str,
    failing: Option<&str>,
    rollout: &str,
) -> std::path::PathBuf {
    let mut text = String::new();
    for node in nodes {
        let role = if node.name == "n1" {
            "leader"
        } else {
            "follower"
        };
        text.push_str(&format!(
            "[[node]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nrole = \"{role}\"\n",
            node.name
        ));
    }
    let config = format!("{}/nodes/{{name}}/ferry.toml", ws.dir.display());
    let before = if before.is_empty() {
        String::new()
    } else {
        format!("{before} && ")
    };
    let guard = failing.map_or(String::new(), |name| format!("test {{name}} != {name} && "));
    text.push_str(&format!(
        "[transport]\nkind = \"command\"\ntemplate = \"{before}{guard}{{ferry}} --config {config} apply --version {{version}} --output json\"\nstatus_template = \"{{ferry}} --config {config} status --json\"\n"
    ));
    text.push_str(&format!("[rollout]\n{rollout}\n"));
    let path = ws.dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ferry rollout start --inventory INVENTORY --version 1.1.0`, run to its end.
pub fn start_rollout(ws: &Workspace, inventory: &std::path::Path) -> Output {
    run(&mut start_rollout_command(ws, inventory))
}

/// The command [`start_rollout`] runs, to start it in the background.
pub fn start_rollout_command(ws: &Workspace, inventory: &std::path::Path) -> Command {
    start_version_command(ws, inventory, "1.1.0", &[])
}

/// `ferry rollout start --inventory INVENTORY --version VERSION EXTRA…`.
pub fn start_version_command(
    ws: &Workspace,
    inventory: &std::path::Path,
    version: &str,
    extra: &[&str],
) -> Command {
    let inventory = inventory.to_string_lossy();
    let mut args = vec![
        "rollout",
        "start",
        "--inventory",
        &inventory,
        "--version",
        version,
    ];
    args.extend(extra);
    coordinator_command(ws, &args)
}

/// The stages of a rollout record (or plan) as lists of node names.
pub fn stage_nodes(stages: &serde_json::Value) -> Vec<Vec<String>> {
    stages
        .as_array()
        .expect("stages are an array")
        .iter()
        .map(|s| {
            s["nodes"]
                .as_array()
                .expect("a stage has nodes")
                .iter()
                .map(|n| n.as_str().expect("node names are strings").to_string())
                .collect()
        })
        .collect()
}

/// The rollout record `<ws>/coordinator/rollouts/<id>.json`.
pub fn rollout_record(ws: &Workspace, id: &str) -> serde_json::Value {
    let path = ws.dir.join(format!("coordinator/rollouts/{id}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The id `ferry rollout start` printed first ("rollout <id>").
pub fn printed_rollout_id(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("rollout "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}
