//! The threat: a manifest signed by the *trusted* key (stolen key,
//! compromised build, publisher bug) names paths or symlinks that leave the
//! release tree — `..`, absolute paths, empty components, NUL bytes,
//! symlinks to `/etc` — hoping the node writes outside its install root.
//!
//! Each case re-signs a crafted manifest with the workspace's own key and
//! pins it in a re-signed index, so the signature checks pass and only the
//! path rules stand between the manifest and the disk. The node must refuse
//! (exit 3) before writing anything: the install root stays empty and nothing
//! appears outside the workspace.

use std::path::Path;

use ferry_tests::fixtures::Workspace;
use ferry_tests::tamper::{files_mut, resign_manifest, sort_files, Signer};
use serde_json::{json, Value};

/// Publishes 1.0.0, lets `edit` change its manifest's `files`, re-signs
/// everything with the trusted key, and checks that `ferry apply` refuses
/// it cleanly; `mention` must appear in stderr.
fn assert_crafted_manifest_rejected(edit: impl FnOnce(&Workspace, &mut Vec<Value>), mention: &str) {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let signer = Signer::from_file(&ws.secret_key);
    resign_manifest(&ws.repo, "1.0.0", &signer, |manifest| {
        edit(&ws, files_mut(manifest));
        sort_files(manifest);
    });

    let node = ws.node("victim");
    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    out.assert_code(3);
    out.assert_stderr_contains(mention);
    node.assert_root_untouched();
    ws.assert_nothing_beside_workspace();
}

/// A copy of the manifest's entry for `etc/app.toml` (a real object the
/// repository serves) under another path.
fn file_entry_at(files: &[Value], path: &str) -> Value {
    let mut entry = files
        .iter()
        .find(|e| e["path"] == "etc/app.toml")
        .expect("the v1 manifest lists etc/app.toml")
        .clone();
    entry["path"] = Value::from(path);
    entry
}

fn add_file(path: &'static str) -> impl FnOnce(&Workspace, &mut Vec<Value>) {
    move |_, files| {
        let entry = file_entry_at(files, path);
        files.push(entry);
    }
}

fn add_symlink(
    path: &'static str,
    target: &'static str,
) -> impl FnOnce(&Workspace, &mut Vec<Value>) {
    move |_, files| files.push(json!({"path": path, "kind": "symlink", "target": target}))
}

/// The control: the same re-signing with a harmless edit is accepted, so the
/// refusals below are about the paths and not about the crafting.
#[test]
fn resigned_manifest_with_a_harmless_symlink_is_accepted() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    resign_manifest(
        &ws.repo,
        "1.0.0",
        &Signer::from_file(&ws.secret_key),
        |manifest| {
            files_mut(manifest)
                .push(json!({"path": "bin/app-link", "kind": "symlink", "target": "./app"}));
            sort_files(manifest);
        },
    );
    let node = ws.node("control");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let link = node.current().join("bin/app-link");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("./app"));
    assert_eq!(
        std::fs::read(&link).unwrap(),
        std::fs::read(ws.input(1).join("bin/app")).unwrap()
    );
}

#[test]
fn dotdot_path_is_rejected() {
    assert_crafted_manifest_rejected(add_file("../escape"), "../escape");
}

#[test]
fn dotdot_deep_enough_to_leave_the_workspace_is_rejected() {
    // From <sandbox>/ws/nodes/victim/root/releases/1.0.0 this is <sandbox>/escape.
    assert_crafted_manifest_rejected(
        add_file("../../../../../../escape"),
        "../../../../../../escape",
    );
}

#[test]
fn absolute_path_is_rejected() {
    // Absolute, and pointing beside the workspace, where
    // assert_nothing_beside_workspace would see it.
    assert_crafted_manifest_rejected(
        |ws, files| {
            let target = ws.sandbox().join("abs/path");
            let entry = file_entry_at(files, target.to_str().unwrap());
            files.push(entry);
        },
        "abs/path",
    );
}

#[test]
fn literal_abs_path_is_rejected() {
    assert!(
        !Path::new("/abs/path").exists(),
        "/abs/path exists before the test"
    );
    assert_crafted_manifest_rejected(add_file("/abs/path"), "/abs/path");
    assert!(!Path::new("/abs").exists(), "the node created /abs");
}

#[test]
fn dotdot_inside_a_path_is_rejected() {
    assert_crafted_manifest_rejected(add_file("a/../../x"), "a/../../x");
}

#[test]
fn empty_component_is_rejected() {
    assert_crafted_manifest_rejected(add_file("a//b"), "a//b");
}

#[test]
fn nul_byte_in_a_path_is_rejected() {
    assert_crafted_manifest_rejected(add_file("etc/app.toml\0.evil"), "etc/app.toml");
}

#[test]
fn symlink_to_a_parent_outside_the_tree_is_rejected() {
    assert_crafted_manifest_rejected(add_symlink("bin/evil", "../../etc"), "bin/evil");
}

#[test]
fn symlink_to_an_absolute_path_is_rejected() {
    assert_crafted_manifest_rejected(add_symlink("bin/passwd", "/etc/passwd"), "bin/passwd");
}

#[test]
fn file_beneath_a_symlink_is_rejected() {
    // `lib/plugins/y -> x` stays inside the tree, but a file listed below it
    // would be written through the link rather than into a directory the
    // manifest declared.
    assert_crafted_manifest_rejected(
        |_, files| {
            files.push(json!({"path": "lib/plugins/y", "kind": "symlink", "target": "x"}));
            let entry = file_entry_at(files, "lib/plugins/y/evil.so");
            files.push(entry);
        },
        "lib/plugins/y",
    );
}
