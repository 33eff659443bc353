//! The threat: a `journal.json` that names a release the node does not
//! have (deleted by hand, never staged, copied from another node) makes
//! crash recovery point `current` at a missing directory and report the
//! node healthy. The promise: before recovery switches to or commits a
//! release, that release must be on disk and its kept signed manifest must
//! verify; otherwise recovery refuses with exit 3, names the file and what
//! to do, and changes nothing.

use std::fs;

use ferry_tests::fixtures::{Node, Workspace};

/// Exit code of a verification failure (contract).
const VERIFICATION: i32 = 3;

/// 1.0.0 then 1.1.0 installed; `current` names 1.1.0.
fn node_on_1_1_0(ws: &Workspace, name: &str) -> Node {
    let node = ws.node(name);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    node
}

fn write_journal(node: &Node, from: &str, to: &str, step: &str) {
    let journal = serde_json::json!({
        "id": "planted-1",
        "operation": "apply",
        "from_version": from,
        "to_version": to,
        "step": step,
        "started_at": "2026-01-01T00:00:00Z",
        "bytes_downloaded": 0,
    });
    fs::write(
        node.state_dir.join("journal.json"),
        serde_json::to_vec_pretty(&journal).unwrap(),
    )
    .unwrap();
}

#[track_caller]
fn assert_refused_and_unchanged(node: &Node, named: &str) {
    let link = fs::read_link(node.current()).unwrap();
    let history = fs::read(node.state_dir.join("history.jsonl")).unwrap();
    for args in [&["apply"][..], &["repair"], &["rollback"]] {
        let out = node.ferry(args);
        out.assert_code(VERIFICATION);
        out.assert_stderr_contains("recovery refused");
        out.assert_stderr_contains(&node.state_dir.join("journal.json").display().to_string());
        out.assert_stderr_contains(named);
        assert_eq!(
            fs::read_link(node.current()).unwrap(),
            link,
            "ferry {args:?} moved current\n{out}"
        );
        assert!(
            node.current().join("bin").is_dir(),
            "current points at a missing release"
        );
        assert!(node.state_dir.join("journal.json").exists());
        assert_eq!(
            fs::read(node.state_dir.join("history.jsonl")).unwrap(),
            history,
            "ferry {args:?} recorded an outcome it did not reach\n{out}"
        );
    }
    // status still answers and says what the next command will do.
    let status = node.status_json();
    let description = status["interrupted_operation"]["next_action_description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(description.contains("refuse"), "{status:#}");
}

#[test]
fn a_switch_back_to_a_release_not_on_disk_is_refused() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = node_on_1_1_0(&ws, "missing-origin");
    write_journal(&node, "7.7.7", "1.1.0", "rolling-back");
    assert_refused_and_unchanged(&node, &node.release_dir("7.7.7").display().to_string());
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
}

#[test]
fn a_commit_without_its_kept_manifest_is_refused() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = node_on_1_1_0(&ws, "missing-manifest");
    write_journal(&node, "1.0.0", "1.1.0", "switched");
    let kept = node.state_dir.join("manifests/1.1.0.json");
    fs::remove_file(&kept).unwrap();
    assert_refused_and_unchanged(&node, &kept.display().to_string());
}

#[test]
fn a_journal_naming_releases_on_disk_is_still_recovered() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = node_on_1_1_0(&ws, "sound");
    write_journal(&node, "1.0.0", "1.1.0", "rolling-back");
    let out = node.ferry_ok(&["repair"]);
    out.assert_stderr_contains("ferry: recovered: apply 1.0.0 -> 1.1.0 rolled back to 1.0.0");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert!(!node.state_dir.join("journal.json").exists());
}
