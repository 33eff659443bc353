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

/// `ferry ARGS --state-dir <ws>/coordinator`, with a clean environment.
pub fn coordinator(ws: &Workspace, args: &[&str]) -> Output {
    let mut command = Command::new(binaries::ferry());
    command
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .args(args)
        .arg("--state-dir")
        .arg(ws.dir.join("coordinator"));
    run(&mut command)
}
