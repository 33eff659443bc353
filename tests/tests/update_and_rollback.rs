//! The promise: a node moves between published releases — forward, back, to
//! a chosen version — and each time the installed tree is exactly the
//! published one (bytes, modes, symlinks, nothing extra), unchanged content is
//! stored once, history records every operation, and old releases are pruned.

use std::collections::BTreeSet;
use std::fs;

use ferry_tests::fixtures::{
    assert_tree_matches, inode, release_tree, sha256_hex, tree_snapshot, Entry, Workspace, CHANNEL,
};
use serde_json::Value;

fn str_field<'a>(status: &'a Value, key: &str) -> Option<&'a str> {
    status
        .get(key)
        .unwrap_or_else(|| panic!("status has no {key:?}: {status:#}"))
        .as_str()
}

/// The distinct contents of regular files across `generations`.
fn distinct_contents(generations: &[u32]) -> BTreeSet<String> {
    generations
        .iter()
        .flat_map(|g| release_tree(*g))
        .filter_map(|e| match e {
            Entry::File { content, .. } => Some(sha256_hex(&content)),
            _ => None,
        })
        .collect()
}

#[test]
fn update_rollback_history_and_pruning() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (v1, v2) = (ws.input(1), ws.input(2));
    let node = ws.node("n1");

    // Unchanged content is one object in the repository, named by its hash.
    let objects: BTreeSet<String> = ws.repo_objects().into_iter().collect();
    assert_eq!(
        objects,
        distinct_contents(&[1, 2]),
        "the repository should hold exactly one object per distinct file content of 1.0.0 and 1.1.0"
    );

    // An explicit version.
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.assert_current("1.0.0", &v1);
    let status = node.status_json();
    assert_eq!(
        str_field(&status, "current_version"),
        Some("1.0.0"),
        "{status:#}"
    );
    assert_eq!(status["previous_version"], Value::Null, "{status:#}");
    assert_eq!(str_field(&status, "channel"), Some(CHANNEL), "{status:#}");

    // The latest on the channel.
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &v2);
    let status = node.status_json();
    assert_eq!(
        str_field(&status, "current_version"),
        Some("1.1.0"),
        "{status:#}"
    );
    assert_eq!(
        str_field(&status, "previous_version"),
        Some("1.0.0"),
        "{status:#}"
    );
    assert_eq!(str_field(&status, "channel"), Some(CHANNEL), "{status:#}");

    // Unchanged files are the same stored object, hard-linked into both releases.
    for unchanged in ["share/doc/README.md", "lib/plugins/x/plugin.so"] {
        let a = node.release_dir("1.0.0").join(unchanged);
        let b = node.release_dir("1.1.0").join(unchanged);
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{unchanged}");
        assert_eq!(
            inode(&a),
            inode(&b),
            "{unchanged} is not hard-linked between releases 1.0.0 and 1.1.0 (contract: store/ objects are hard-linked into releases)"
        );
    }

    // Back to the previous release.
    node.ferry_ok(&["rollback"]);
    node.assert_current("1.0.0", &v1);
    assert_eq!(
        str_field(&node.status_json(), "current_version"),
        Some("1.0.0")
    );

    // Forward again, then back to a named version.
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &v2);
    node.ferry_ok(&["rollback", "--to", "1.0.0"]);
    node.assert_current("1.0.0", &v1);
    assert_eq!(
        str_field(&node.status_json(), "current_version"),
        Some("1.0.0")
    );

    // Asking for what is already current changes nothing.
    let before = tree_snapshot(&node.root);
    node.ferry_ok(&["apply", "--version", "1.0.0"])
        .assert_stdout_or_stderr_contains("already");
    assert_eq!(
        tree_snapshot(&node.root),
        before,
        "applying the current version changed the install root"
    );
    node.assert_current("1.0.0", &v1);

    // History lists every operation, in order, with its outcome.
    let history = node.history_json();
    let field = |op: &Value, key: &str| -> String {
        op[key].as_str().map(str::to_string).unwrap_or_default()
    };
    let done: Vec<(String, String, String)> = history
        .iter()
        .map(|op| {
            (
                field(op, "operation"),
                field(op, "to_version"),
                field(op, "outcome"),
            )
        })
        .collect();
    let expected = [
        ("apply", "1.0.0"),
        ("apply", "1.1.0"),
        ("rollback", "1.0.0"),
        ("apply", "1.1.0"),
        ("rollback", "1.0.0"),
    ];
    // The five operations appear in this order (others, such as no-ops,
    // may sit between them), and all five, having succeeded, share one
    // non-empty outcome.
    let mut it = done.iter();
    let mut outcomes = BTreeSet::new();
    for (operation, to) in expected {
        let found = it.find(|(o, t, _)| o == operation && t == to).unwrap_or_else(|| {
            panic!("history lacks `{operation}` to {to} in the expected order: {done:?}\n{history:#?}")
        });
        outcomes.insert(found.2.clone());
    }
    assert!(
        outcomes.len() == 1 && !outcomes.contains(""),
        "successful operations should share one non-empty outcome, got {outcomes:?}: {done:?}"
    );
    for op in &history {
        assert!(
            op["started_at"].is_string(),
            "operation without started_at: {op:#}"
        );
    }
    let text = node.ferry_ok(&["history"]);
    let lines = text.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        lines >= expected.len(),
        "`ferry history` should print one line per operation\n{text}"
    );
    assert!(
        text.stdout.contains("rollback"),
        "`ferry history` does not mention the rollbacks\n{text}"
    );

    // A third release: with keep_releases at its default (2), only the new
    // current and its previous release stay on disk.
    ws.publish("1.2.0", CHANNEL, &ws.input(3));
    node.ferry_ok(&["apply"]);
    node.assert_current("1.2.0", &ws.input(3));
    let status = node.status_json();
    assert_eq!(
        str_field(&status, "current_version"),
        Some("1.2.0"),
        "{status:#}"
    );
    let previous = str_field(&status, "previous_version")
        .expect("a previous version")
        .to_string();
    let on_disk = node.releases_on_disk();
    let mut expected_on_disk = vec!["1.2.0".to_string(), previous.clone()];
    expected_on_disk.sort();
    assert_eq!(
        on_disk, expected_on_disk,
        "keep_releases = 2 keeps current and previous only"
    );
    let listed: Vec<String> = status["releases"]
        .as_array()
        .unwrap_or_else(|| panic!("status has no releases array: {status:#}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed, expected_on_disk,
        "status.releases should list what is on disk"
    );
    assert_tree_matches(
        &node.release_dir(&previous),
        &ws.input(if previous == "1.0.0" { 1 } else { 2 }),
    );
}
