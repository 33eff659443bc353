//! The promise: `ferry apply --dry-run` tells an operator what an update
//! would fetch and cost, and changes nothing — not the install root, not the
//! state directory (only its lock file may appear), not on a fresh node and
//! not on one that already runs a release.

use ferry_tests::fixtures::{render, tree_snapshot, Node, SnapshotEntry, Workspace};

/// Everything below the state directory except the lock file, whose
/// existence is allowed to change (taking the lock may create it).
fn state_without_lock(node: &Node) -> Vec<SnapshotEntry> {
    tree_snapshot(&node.state_dir)
        .into_iter()
        .filter(|e| e.path != "lock")
        .collect()
}

fn assert_is_plan(out: &ferry_tests::run::Output) {
    out.assert_success();
    out.assert_stdout_contains("dry run: nothing changed");
    let lower = out.stdout.to_lowercase();
    assert!(
        lower.contains("download"),
        "the plan does not say what it would download\n{out}"
    );
    assert!(
        out.stdout.chars().any(|c| c.is_ascii_digit()),
        "the plan shows no byte counts\n{out}"
    );
}

#[test]
fn dry_run_on_a_fresh_node_writes_nothing() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("fresh");
    let state_before = state_without_lock(&node);

    let out = node.ferry(&["apply", "--dry-run"]);
    assert_is_plan(&out);
    assert!(
        out.stdout.contains("1.1.0"),
        "the plan does not name the version it would install\n{out}"
    );

    node.assert_root_untouched();
    let state_after = state_without_lock(&node);
    assert_eq!(
        state_after,
        state_before,
        "--dry-run changed the state directory:\n{}",
        render(&state_after)
    );
}

#[test]
fn dry_run_on_an_installed_node_writes_nothing() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("installed");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let root_before = tree_snapshot(&node.root);
    let state_before = state_without_lock(&node);
    let status_before = node.status_json();

    let out = node.ferry(&["apply", "--dry-run"]);
    assert_is_plan(&out);
    assert!(
        out.stdout.contains("1.1.0"),
        "the plan does not name the version it would install\n{out}"
    );
    // It names what it would fetch: the changed and added files.
    for changed in ["bin/app", "etc/app.toml", "share/doc/CHANGELOG.md"] {
        out.assert_stdout_contains(changed);
    }

    assert_eq!(
        tree_snapshot(&node.root),
        root_before,
        "--dry-run changed the install root"
    );
    let state_after = state_without_lock(&node);
    assert_eq!(
        state_after,
        state_before,
        "--dry-run changed the state directory:\n{}",
        render(&state_after)
    );
    assert_eq!(
        node.status_json(),
        status_before,
        "--dry-run changed the status"
    );
    node.assert_current("1.0.0", &ws.input(1));
}
