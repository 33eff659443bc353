//! The threat: a node whose apply hangs (a stuck download, a migration
//! waiting on a lock) held its rollout for a fixed 30 minutes, whatever
//! the cluster could afford, and a whole stage had no deadline at all.
//!
//! The promise: `[rollout] apply_timeout_seconds` bounds one node's apply
//! and `stage_timeout_seconds` a whole stage; an apply still running then
//! is stopped, its node fails naming the limit, and the rollout fails and
//! rolls back as for any failed node. Out-of-range values are refused.

use std::time::{Duration, Instant};

use ferry_tests::cluster::{command_inventory_with, five_nodes_on_1_0_0, start_version_command};
use ferry_tests::run::run;

#[test]
fn an_apply_past_its_timeout_is_stopped_and_fails_the_rollout() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    for (limits, says) in [
        ("apply_timeout_seconds = 2", "apply_timeout_seconds = 2"),
        (
            "apply_timeout_seconds = 600\nstage_timeout_seconds = 2",
            "stage_timeout_seconds ran out",
        ),
    ] {
        // Every apply hangs for a minute before it would run ferry.
        let inventory = command_inventory_with(
            &ws,
            &nodes,
            "sleep 60",
            None,
            &format!("canary = 1\nmax_unavailable = 2\npromote = \"auto\"\n{limits}"),
        );
        let started = Instant::now();
        let out = run(&mut start_version_command(&ws, &inventory, "1.1.0", &[]));
        out.assert_code(1)
            .assert_stderr_contains("its apply was stopped")
            .assert_stderr_contains(says);
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "the hung apply was waited out instead of stopped: {:?}",
            started.elapsed()
        );
        for node in &nodes {
            assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
        }
    }
    let inventory = command_inventory_with(&ws, &nodes, "", None, "apply_timeout_seconds = 0");
    run(&mut start_version_command(
        &ws,
        &inventory,
        "1.1.0",
        &["--dry-run"],
    ))
    .assert_code(1)
    .assert_stderr_contains("apply_timeout_seconds = 0 is out of range: use 1 to 604800");
}
