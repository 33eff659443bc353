//! The promise: on a terminal, `ferry rollout start` shows the cluster as
//! a table, one line per node with its version, state, step and health,
//! redrawn in place; in a pipe or a log it prints plain lines only.
//!
//! The terminal is a real pseudo-terminal: util-linux's `script` runs the
//! coordinator in one and records what it drew.

use std::process::Command;

use ferry_tests::binaries;
use ferry_tests::cluster::{command_inventory, coordinator, five_nodes_on_1_0_0 as cluster};
use ferry_tests::run::run;

#[test]
fn a_terminal_gets_one_line_per_node_redrawn_in_place_and_a_pipe_plain_lines() {
    let (ws, nodes) = cluster();
    let inventory = command_inventory(
        &ws,
        &nodes,
        None,
        "canary = 1\nmax_unavailable = 2\nbake_seconds = 1\npromote = \"auto\"",
    );
    let inventory = inventory.to_string_lossy().into_owned();
    let typescript = ws.dir.join("typescript");
    let coordinator_line = format!(
        "{} rollout start --inventory {inventory} --version 1.1.0 --state-dir {}",
        binaries::ferry().display(),
        ws.dir.join("coordinator").display()
    );
    let out = run(Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(&coordinator_line)
        .arg(&typescript)
        .env("TERM", "xterm")
        .env_remove("FERRY_CONFIG"));
    out.assert_success();
    let drawn = std::fs::read_to_string(&typescript).unwrap();
    // Moved back over its table and cleared it: redrawn in place.
    assert!(drawn.contains("\x1b[6F\x1b[J"), "{drawn:?}");
    let last_table: Vec<&str> = drawn.rsplit("\x1b[J").next().unwrap().lines().collect();
    let header = last_table
        .iter()
        .position(|l| l.starts_with("node") && l.contains("version") && l.contains("health"))
        .unwrap_or_else(|| panic!("no table header in {drawn:?}"));
    for node in &nodes {
        let line = last_table[header + 1..]
            .iter()
            .find(|l| l.starts_with(&format!("{} ", node.name)))
            .unwrap_or_else(|| panic!("no line for {} in {last_table:#?}", node.name));
        assert!(
            // The fixture nodes have no [health]: nothing checked them.
            line.contains("1.1.0") && line.contains("updated") && line.contains("unchecked"),
            "{line}"
        );
    }
    // In the middle of it, some node was seen moving.
    assert!(drawn.contains("1.0.0 → 1.1.0"), "{drawn:?}");

    // The same coordinator with stdout in a pipe: no cursor movement.
    for node in &nodes {
        node.ferry_ok(&["rollback", "--to", "1.0.0"]);
    }
    let piped = coordinator(
        &ws,
        &[
            "rollout",
            "start",
            "--inventory",
            &inventory,
            "--version",
            "1.1.0",
        ],
    );
    piped.assert_success().assert_stdout_contains("succeeded");
    assert!(!piped.stdout.contains('\x1b'), "{}", piped.stdout);
}
