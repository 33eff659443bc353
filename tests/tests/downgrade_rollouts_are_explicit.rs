//! The threat: a rollout to a version older than the nodes run was
//! planned, and then every node's `ferry apply --version V` refused it
//! ("older than the installed release"): the canary failed, the rollout
//! failed, and the operator had no way to ask for the downgrade.
//!
//! The promise: a downgrade is asked for explicitly, each time. Without
//! `--allow-downgrade` the plan is refused before any node is touched,
//! naming the newer nodes and the flag; with it every node runs `ferry
//! apply --allow-downgrade` and lands on the older version. The inventory
//! cannot make downgrades implicit.

use ferry_tests::cluster::{command_inventory, five_nodes_on_1_0_0, start_version_command};
use ferry_tests::fixtures::Node;
use ferry_tests::run::run;

fn versions(nodes: &[Node]) -> Vec<Option<String>> {
    nodes.iter().map(Node::current_version).collect()
}

#[test]
fn a_downgrade_rollout_needs_allow_downgrade_and_then_reaches_every_node() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = command_inventory(&ws, &nodes, None, "canary = 1\nmax_unavailable = 2");
    run(&mut start_version_command(
        &ws,
        &inventory,
        "1.1.0",
        &["--promote", "auto"],
    ))
    .assert_success();
    let on_new = versions(&nodes);
    assert!(on_new.iter().all(|v| v.as_deref() == Some("1.1.0")));

    for extra in [&["--dry-run"][..], &["--promote", "auto"][..]] {
        run(&mut start_version_command(&ws, &inventory, "1.0.0", extra))
            .assert_code(1)
            .assert_stderr_contains("is a downgrade")
            .assert_stderr_contains("--allow-downgrade")
            .assert_stderr_contains("n1 (1.1.0)");
    }
    assert_eq!(
        versions(&nodes),
        on_new,
        "a refused downgrade touched a node"
    );

    run(&mut start_version_command(
        &ws,
        &inventory,
        "1.0.0",
        &["--promote", "auto", "--allow-downgrade"],
    ))
    .assert_success();
    for node in &nodes {
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.0.0"),
            "{}",
            node.name
        );
        let last = node.history_json().pop().unwrap();
        assert_eq!(last["operation"], "apply", "{last}");
        assert_eq!(last["to_version"], "1.0.0", "{last}");
        assert_eq!(last["outcome"], "success", "{last}");
    }
}

#[test]
fn the_inventory_cannot_allow_downgrades_for_every_rollout() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = command_inventory(&ws, &nodes, None, "allow_downgrade = true");
    run(&mut start_version_command(
        &ws,
        &inventory,
        "1.1.0",
        &["--dry-run"],
    ))
    .assert_code(1)
    .assert_stderr_contains("allow_downgrade")
    .assert_stderr_contains("ferry rollout start --allow-downgrade");
}
