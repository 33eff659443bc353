//! The threat: the release directory `current` points at is deleted (by
//! hand, a cleanup script, a disk repair). The promise: `ferry apply` and
//! `ferry repair` rebuild it from verified content (the store, else the
//! repository, checked against the kept signed manifest) instead of
//! failing with a bare "No such file or directory".

use std::fs;

use ferry_tests::fixtures::Workspace;

#[test]
fn repair_rebuilds_a_deleted_current_release() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("repair");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    fs::remove_dir_all(node.release_dir("1.0.0")).unwrap();
    node.ferry(&["verify"]).assert_code(4);
    let status = node.status_json();
    assert!(
        status["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("is not on disk") && p.contains("ferry repair")),
        "status does not report the missing release: {status:#}"
    );

    node.ferry_ok(&["repair"]);
    assert_eq!(node.status_json()["problems"], serde_json::json!([]));
    node.assert_current("1.0.0", &ws.input(1));
    node.ferry_ok(&["verify"]);
}

#[test]
fn apply_of_the_installed_version_rebuilds_a_deleted_current_release() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("apply");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    fs::remove_dir_all(node.release_dir("1.0.0")).unwrap();
    // Nothing left in the store either: the content comes from the
    // repository, verified.
    fs::remove_dir_all(node.state_dir.join("store")).unwrap();

    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.assert_current("1.0.0", &ws.input(1));
    node.ferry_ok(&["verify"]);
}

#[test]
fn an_update_goes_ahead_when_the_current_release_was_deleted() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("update");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    fs::remove_dir_all(node.release_dir("1.0.0")).unwrap();

    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    node.assert_current("1.1.0", &ws.input(2));
}
