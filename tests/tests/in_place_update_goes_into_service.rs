//! The promise: an in-place node's service follows its files like a
//! symlink node's does. Every update and rollback in place runs the
//! configured strategy (`restart_command`), the health gate and
//! `post_apply`/`post_rollback` after its files are converged, and a release
//! that does not go into service is undone from its restore point, with
//! the old release restarted: the node never keeps new files under an old
//! process, or a failed release under a success.
//!
//! The service commands only write lines to a marker file: what ran, for
//! which version, is what these tests look at.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{Node, Workspace};

/// An in-place node whose restart command and hooks append
/// `<what> <FERRY_TO_VERSION>` to its marker; the restart fails for
/// `fail_for`, if given.
fn in_place_service_node(ws: &Workspace, name: &str, fail_for: Option<&str>) -> (Node, PathBuf) {
    let node = ws.in_place_node(name, "");
    let marker = node.dir.join("marker");
    let note = |what: &str| format!("echo \"{what} $FERRY_TO_VERSION\" >> {}", marker.display());
    let restart = match fail_for {
        Some(bad) => format!(
            "{}; if [ \"$FERRY_TO_VERSION\" = {bad} ]; then exit 3; fi",
            note("restart")
        ),
        None => note("restart"),
    };
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!(
        "\n[service]\nstrategy = \"restart\"\nrestart_command = {restart:?}\npost_apply = {:?}\npost_rollback = {:?}\n",
        note("post_apply"),
        note("post_rollback"),
    ));
    fs::write(&node.config, config).unwrap();
    (node, marker)
}

fn take_marker(marker: &Path) -> Vec<String> {
    let text = fs::read_to_string(marker).unwrap_or_default();
    let _ = fs::remove_file(marker);
    text.lines().map(String::from).collect()
}

fn installed(node: &Node) -> Option<String> {
    node.status_json()["current_version"]
        .as_str()
        .map(String::from)
}

#[test]
fn in_place_updates_and_rollbacks_restart_the_service() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (node, marker) = in_place_service_node(&ws, "n1", None);

    node.ferry(&["apply", "--version", "1.0.0"])
        .assert_success();
    assert_eq!(take_marker(&marker), ["restart 1.0.0", "post_apply 1.0.0"]);

    node.ferry(&["apply"]).assert_success();
    assert_eq!(take_marker(&marker), ["restart 1.1.0", "post_apply 1.1.0"]);
    assert_eq!(installed(&node).as_deref(), Some("1.1.0"));

    node.ferry(&["rollback"])
        .assert_success()
        .assert_stdout_contains("in place (restore point");
    assert_eq!(
        take_marker(&marker),
        ["restart 1.0.0", "post_rollback 1.0.0"]
    );
    assert_eq!(installed(&node).as_deref(), Some("1.0.0"));
    node.ferry(&["verify"]).assert_success();
}

#[test]
fn an_in_place_release_that_does_not_start_is_undone_and_the_old_one_restarted() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (node, marker) = in_place_service_node(&ws, "n1", Some("1.1.0"));
    node.ferry(&["apply", "--version", "1.0.0"])
        .assert_success();
    take_marker(&marker);

    let out = node.ferry(&["apply"]);
    out.assert_code(6)
        .assert_stderr_contains("undone from restore point")
        .assert_stderr_contains("the service did not restart");
    // The new files went live and failed; the old files came back and the
    // old release was restarted on them. An update that fails in place
    // runs its rollback hook like a symlink node's.
    assert_eq!(
        take_marker(&marker),
        ["restart 1.1.0", "restart 1.0.0", "post_rollback 1.0.0"]
    );
    assert_eq!(installed(&node).as_deref(), Some("1.0.0"));
    node.ferry(&["verify"]).assert_success();
    let history = node.ferry(&["history", "--json"]);
    history
        .assert_success()
        .assert_stdout_contains("rolled-back");
}
