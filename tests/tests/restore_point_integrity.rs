//! The promise: an in-place rollback restores only what its restore point
//! recorded. Every saved file is checked against the restore point's SHA-256
//! list first; one damaged byte and the restore is refused with nothing
//! changed. `ferry restore-points` lists, shows and prunes them.

use ferry_tests::fixtures::{assert_tree_matches, flip_byte, tree_snapshot, Node, Workspace};

fn points(node: &Node) -> Vec<serde_json::Value> {
    let out = node.ferry_ok(&["restore-points", "list", "--json"]);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn a_damaged_restore_point_is_refused_and_nothing_changes() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.in_place_node("damaged", "keep_restore_points = 2\n");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);
    assert_tree_matches(&node.root, &ws.input(2));

    let of_v1 = points(&node)
        .into_iter()
        .find(|p| p["version"] == "1.0.0")
        .expect("the update to 1.1.0 made a restore point of 1.0.0");
    let id = of_v1["id"].as_str().unwrap();
    // Damage the saved copy of bin/app (it differs between the versions).
    let app = of_v1["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "bin/app")
        .unwrap();
    let saved = node
        .state_dir
        .join("restore-points")
        .join(id)
        .join("objects")
        .join(app["sha256"].as_str().unwrap());
    flip_byte(&saved, 10);

    let before = tree_snapshot(&node.root);
    let out = node.ferry(&["rollback"]);
    out.assert_code(3).assert_stderr_contains("is damaged");
    out.assert_stderr_contains("bin/app");
    assert_eq!(
        tree_snapshot(&node.root),
        before,
        "a refused restore changed files"
    );
    assert_eq!(node.status_json()["current_version"], "1.1.0");
    node.ferry(&["restore-points", "show", id]).assert_code(3);
}

#[test]
fn restore_points_are_listed_shown_kept_and_cleaned() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.in_place_node("listing", "keep_restore_points = 2\n");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);
    node.ferry_ok(&["rollback"]);
    assert_tree_matches(&node.root, &ws.input(1));
    node.ferry_ok(&["apply"]);
    // Four in-place operations, retention keeps the newest two.
    let listed = points(&node);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let id = listed[1]["id"].as_str().unwrap();
    node.ferry_ok(&["restore-points", "show", id])
        .assert_stdout_contains("every saved file matches its SHA-256");
    node.ferry_ok(&["restore-points", "clean", "--keep", "1"]);
    assert_eq!(points(&node).len(), 1);
    // The remaining one still restores.
    node.ferry_ok(&["rollback"]);
    assert_tree_matches(&node.root, &ws.input(1));
}
