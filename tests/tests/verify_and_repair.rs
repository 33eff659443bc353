//! The promise: `ferry verify` finds every way the installed files drifted
//! from their signed manifest (content, mode, missing, extra) and exits 4
//! with the list; `ferry repair` puts them back, fetching and verifying what
//! the node no longer holds — even when the drifted file shared its inode
//! with the content store, so the store's copy was damaged too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_tests::fixtures::{assert_tree_matches, Node, Workspace};

/// Damages the tree at `dir` in four ways.
fn drift(dir: &Path) {
    // Written through in place: for a hard-linked release this also
    // changes the store's copy.
    let app = dir.join("bin/app");
    let mut bytes = fs::read(&app).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&app, bytes).unwrap();
    fs::set_permissions(dir.join("etc/app.toml"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::remove_file(dir.join("share/doc/README.md")).unwrap();
    fs::write(dir.join("lib/plugins/x/intruder.so"), b"not ours").unwrap();
}

fn check(node: &Node, tree: &Path, ws: &Workspace) {
    node.ferry_ok(&["verify"])
        .assert_stdout_contains("matches its signed manifest");
    drift(tree);
    let out = node.ferry(&["verify"]);
    out.assert_code(4);
    for needle in [
        "bin/app: content differs",
        "etc/app.toml: mode 0666, expected 0640",
        "share/doc/README.md: missing",
        "lib/plugins/x/intruder.so: not part of release 1.0.0",
    ] {
        out.assert_stderr_contains(needle);
    }
    node.ferry_ok(&["repair"])
        .assert_stdout_contains("repaired 4 differences");
    node.ferry_ok(&["verify"]);
    assert_tree_matches(tree, &ws.input(1));
    let history = node.history_json();
    let last = history.last().unwrap();
    assert_eq!(
        (last["operation"].as_str(), last["outcome"].as_str()),
        (Some("repair"), Some("success")),
        "{last:#}"
    );
    // Nothing to do the second time.
    node.ferry_ok(&["repair"])
        .assert_stdout_contains("nothing to repair");
}

#[test]
fn symlink_mode_drift_is_reported_and_repaired() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("symlink");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    check(&node, &node.release_dir("1.0.0"), &ws);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn in_place_drift_is_reported_and_repaired() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.in_place_node("in-place", "");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    check(&node, &node.root, &ws);
}

#[test]
fn verify_on_an_empty_node_says_what_to_do() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("empty");
    node.ferry(&["verify"])
        .assert_code(1)
        .assert_stderr_contains("run `ferry apply`");
}
