//! The promise: a crash between the switch and the service restart does not
//! leave the service running the old code under a history that says the
//! new release is live. The next mutating ferry command finds the
//! interrupted operation and puts the release it lands on into service
//! exactly as the uninterrupted one would have: `restart_command`, then
//! `post_apply` (an update) or `post_rollback` (a rollback), with or
//! without `[health]`.
//!
//! Also here, the ways a finished switch could be left half-recorded: a
//! `post_rollback` that times out after a good switch back still leaves
//! the release it left as the one `ferry rollback` returns to, and a
//! journal that cannot record the switch (a full `state_dir`) has the
//! switch undone before any service saw it.
//!
//! The service commands only write lines to a marker file: what ran, for
//! which version, is all these tests look at.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::crash_walk::{self, fault_command};
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::{run, Output};

/// The restart command and hooks of every node here: each appends
/// `<what> <FERRY_TO_VERSION>` to the marker; the restart also notes itself
/// in the crash log, so a discovery run knows which crash points come
/// before it.
fn lifecycle_node(ws: &Workspace, name: &str) -> (Node, PathBuf) {
    let node = ws.node(name);
    let marker = node.dir.join("marker");
    let note = |what: &str| note_line(&marker, what);
    let restart = format!(
        "{}; if [ -n \"$FERRY_CRASH_LOG\" ]; then echo restart_command >> \"$FERRY_CRASH_LOG\"; fi",
        note("restart")
    );
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!(
        "\n[service]\nstrategy = \"restart\"\nrestart_command = {restart:?}\nhook_timeout_seconds = 2\npost_apply = {:?}\npost_rollback = {:?}\n",
        note("post_apply"),
        note("post_rollback"),
    ));
    fs::write(&node.config, config).unwrap();
    (node, marker)
}

/// A shell line appending `<what> <FERRY_TO_VERSION>` to `marker`.
fn note_line(marker: &Path, what: &str) -> String {
    format!("echo \"{what} $FERRY_TO_VERSION\" >> {}", marker.display())
}

/// The lines the service commands wrote since the last call.
fn take_marker(marker: &Path) -> Vec<String> {
    let text = fs::read_to_string(marker).unwrap_or_default();
    let _ = fs::remove_file(marker);
    text.lines().map(String::from).collect()
}

/// The crash points `args` passes from the switch of `current` up to (not
/// including) the restart command, on a node that `prepare` readies.
fn points_between_switch_and_restart(
    ws: &Workspace,
    prepare: &dyn Fn(&Node),
    args: &[&str],
) -> Vec<String> {
    let (node, _) = lifecycle_node(ws, &format!("discover-{}", args.join("-")));
    prepare(&node);
    let log = node.dir.join("points.log");
    let lines = crash_walk::discover(
        &mut fault_command(&node.config, args),
        &log,
        &args.join(" "),
    );
    let switched = crash_walk::position(&lines, "switch:after-rename");
    let restarted = crash_walk::position(&lines, "restart_command");
    assert!(switched < restarted, "{lines:?}");
    let points = lines[switched..restarted].to_vec();
    assert!(points.len() >= 3, "too few points: {points:?}");
    points
}

/// Runs `args` killed at `point`, asserting that it was.
fn killed_at(node: &Node, args: &[&str], point: &str) {
    crash_walk::kill_at(
        &mut fault_command(&node.config, args),
        point,
        &format!("{args:?}"),
    );
}

fn last_record(node: &Node) -> serde_json::Value {
    node.history_json().pop().expect("an operation in history")
}

#[test]
fn an_update_killed_between_switch_and_restart_is_put_into_service_by_the_next_apply() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let prepare = |node: &Node| {
        node.ferry_ok(&["apply", "--version", "1.0.0"]);
    };
    let points = points_between_switch_and_restart(&ws, &prepare, &["apply"]);
    for (i, point) in points.iter().enumerate() {
        let (node, marker) = lifecycle_node(&ws, &format!("n{i}"));
        prepare(&node);
        take_marker(&marker);
        killed_at(&node, &["apply"], point);
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"), "{point}");
        assert_eq!(take_marker(&marker), Vec::<String>::new(), "{point}");

        let out = node.ferry_ok(&["apply"]);
        assert_eq!(
            take_marker(&marker),
            ["restart 1.1.0", "post_apply 1.1.0"],
            "killed at {point}, then:\n{out}"
        );
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
        let record = last_record(&node);
        assert_eq!(record["outcome"], "success", "{point}: {record}");
        assert_eq!(record["to_version"], "1.1.0", "{point}: {record}");
    }
}

#[test]
fn a_rollback_killed_between_switch_and_restart_is_put_into_service_by_the_next_command() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let prepare = |node: &Node| {
        node.ferry_ok(&["apply", "--version", "1.0.0"]);
        node.ferry_ok(&["apply", "--version", "1.1.0"]);
    };
    let points = points_between_switch_and_restart(&ws, &prepare, &["rollback"]);
    for (i, point) in points.iter().enumerate() {
        let (node, marker) = lifecycle_node(&ws, &format!("n{i}"));
        prepare(&node);
        take_marker(&marker);
        killed_at(&node, &["rollback"], point);
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"), "{point}");
        assert_eq!(take_marker(&marker), Vec::<String>::new(), "{point}");

        // Any mutating command recovers first; this one then has nothing
        // left to do.
        let out = node.ferry_ok(&["apply", "--version", "1.0.0"]);
        assert_eq!(
            take_marker(&marker),
            ["restart 1.0.0", "post_rollback 1.0.0"],
            "killed at {point}, then:\n{out}"
        );
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
        let rollback = node
            .history_json()
            .into_iter()
            .rfind(|op| op["operation"] == "rollback")
            .expect("the rollback is recorded");
        assert_eq!(rollback["outcome"], "success", "{point}: {rollback}");
    }
}

#[test]
fn a_timed_out_post_rollback_still_leaves_the_way_back_open() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (node, marker) = lifecycle_node(&ws, "n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    let config = fs::read_to_string(&node.config).unwrap();
    let hook = format!(
        "post_rollback = {:?}\n",
        note_line(&marker, "post_rollback")
    );
    assert!(config.contains(&hook), "{config}");
    fs::write(
        &node.config,
        config.replace(&hook, "post_rollback = \"sleep 30\"\n"),
    )
    .unwrap();

    let out = node.ferry(&["rollback"]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_contains("post_rollback");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    take_marker(&marker);

    // The hook is fixed; a plain rollback goes back to the release left.
    fs::write(&node.config, config).unwrap();
    let out = node.ferry_ok(&["rollback"]);
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"), "{out}");
    assert_eq!(
        take_marker(&marker),
        ["restart 1.1.0", "post_rollback 1.1.0"]
    );
}

/// `ferry` (fault-injection build) with the journal's write of `switched`
/// failing as on a full disk.
fn with_switch_unrecorded(node: &Node, args: &[&str]) -> Output {
    run(fault_command(&node.config, args).env("FERRY_FAIL_WRITE", "journal:Switched"))
}

#[test]
fn an_update_whose_switch_cannot_be_recorded_is_switched_back_before_any_restart() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (node, marker) = lifecycle_node(&ws, "n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    take_marker(&marker);

    let out = with_switch_unrecorded(&node, &["apply"]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_contains("switched back: 1.1.0 was not installed, 1.0.0 still runs");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(take_marker(&marker), Vec::<String>::new());

    // Nothing half-done is left for the next run to trip over.
    node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    assert_eq!(take_marker(&marker), ["restart 1.1.0", "post_apply 1.1.0"]);
}

#[test]
fn a_rollback_whose_switch_cannot_be_recorded_is_switched_back_before_any_restart() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (node, marker) = lifecycle_node(&ws, "n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    take_marker(&marker);

    let out = with_switch_unrecorded(&node, &["rollback"]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_contains("switched back: not rolled back, 1.1.0 still runs");
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    assert_eq!(take_marker(&marker), Vec::<String>::new());

    node.ferry_ok(&["rollback"]);
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(
        take_marker(&marker),
        ["restart 1.0.0", "post_rollback 1.0.0"]
    );
}
