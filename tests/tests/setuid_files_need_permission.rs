//! The threat: a signed manifest asks for mode 4755 (a stolen key, a build
//! that ran `chmod u+s`), and the node makes a setuid-root file in
//! `releases/<version>/`, hard-linked into `state_dir/store` and kept in
//! old releases, where any local user can run it. The promise: by default
//! the node refuses setuid, setgid and sticky bits, naming the file and its
//! mode, before it writes anything (exit 3) — over the network, from a
//! bundle and in place, and when rolling back to a kept release that has
//! them; `[install] allow_special_modes = true` allows them. The store is
//! ferry's alone (0700), also on a node whose older ferry made it 0755.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{release_tree, write_tree, Entry, Node, Workspace, CHANNEL};
use ferry_tests::run::run;
use ferry_tests::tamper::read_json;
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

const ALLOW: &str = "allow_special_modes = true\n";

/// Generation 2's tree with `bin/app` setuid (4755), written once.
fn setuid_input(ws: &Workspace) -> PathBuf {
    let dir = ws.dir.join("inputs").join("v2-setuid");
    if !dir.exists() {
        let entries: Vec<Entry> = release_tree(2)
            .into_iter()
            .map(|entry| match entry {
                Entry::File { path, content, .. } if path == "bin/app" => Entry::File {
                    path,
                    mode: 0o4755,
                    content,
                },
                other => other,
            })
            .collect();
        write_tree(&dir, &entries);
    }
    dir
}

/// Publishes 1.0.0 (ordinary) and 1.1.0 (with a setuid `bin/app`), and
/// checks that the signed manifest really asks for 4755.
fn publish(ws: &Workspace) {
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    ws.publish("1.1.0", CHANNEL, &setuid_input(ws));
    let manifest = read_json(&ws.repo, "manifests/1.1.0.json");
    let app = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "bin/app")
        .expect("bin/app in the manifest");
    assert_eq!(app["mode"], "4755", "the publisher kept the mode: {app}");
}

/// Adds `lines` to the node's `[install]` table.
fn add_to_install(node: &Node, lines: &str) {
    let text = fs::read_to_string(&node.config).unwrap();
    let text = text.replacen("[install]\n", &format!("[install]\n{lines}"), 1);
    fs::write(&node.config, text).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[track_caller]
fn assert_store_private(node: &Node) {
    let store = node.state_dir.join("store");
    assert_eq!(mode_of(&store), 0o700, "{} must be 0700", store.display());
}

const MENTIONS: [&str; 3] = ["bin/app 4755 (setuid)", "nothing was changed", ALLOW_KEY];
const ALLOW_KEY: &str = "[install] allow_special_modes = true";

#[test]
fn a_setuid_file_is_refused_by_default_with_nothing_installed() {
    let ws = Workspace::new();
    publish(&ws);

    // A node with nothing installed: not even its install root appears.
    let fresh = ws.node("fresh");
    let out = fresh.ferry(&["apply", "--version", "1.1.0"]);
    out.assert_code(VERIFICATION_FAILED);
    for needle in MENTIONS {
        out.assert_stderr_contains(needle);
    }
    fresh.assert_root_untouched();
    assert!(!fresh.state_dir.join("store").exists(), "{out}");

    // A node on 1.0.0: the install root and everything it trusts stay.
    let node = ws.node("n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    assert_store_private(&node);
    let before = Unchanged::of(&node).except("trusted.json");
    for args in [
        &["apply", "--dry-run"][..],
        &["apply"],
        &["apply", "--unattended"],
    ] {
        let out = node.ferry(args);
        before.assert_refused(&node, &out, VERIFICATION_FAILED, &MENTIONS);
    }
    assert_eq!(node.releases_on_disk(), ["1.0.0"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn a_setuid_file_from_a_bundle_or_in_place_is_refused_too() {
    let ws = Workspace::new();
    publish(&ws);
    let tar = ws.dir.join("v1.1.0.tar");
    run(ws
        .publisher()
        .arg("bundle")
        .arg("--repo")
        .arg(&ws.repo)
        .arg("--out")
        .arg(&tar)
        .args(["--version", "1.1.0"]))
    .assert_success();
    let node = ws.node("offline");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let before = Unchanged::of(&node).except("trusted.json");
    let out = node.ferry(&["apply", "--bundle", tar.to_str().unwrap()]);
    before.assert_refused(&node, &out, VERIFICATION_FAILED, &MENTIONS);

    let in_place = ws.in_place_node("in-place", "");
    in_place.ferry_ok(&["apply", "--version", "1.0.0"]);
    let app = in_place.root.join("bin/app");
    let before = Unchanged::of(&in_place).except("trusted.json");
    let out = in_place.ferry(&["apply"]);
    before.assert_refused(&in_place, &out, VERIFICATION_FAILED, &MENTIONS);
    assert_eq!(mode_of(&app), 0o755, "{out}");
}

#[test]
fn allow_special_modes_installs_the_setuid_file() {
    let ws = Workspace::new();
    publish(&ws);
    let node = ws.node("n1");
    add_to_install(&node, ALLOW);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &setuid_input(&ws));
    // Installed read-only: the manifest's 4755 without its write bit.
    assert_eq!(mode_of(&node.current().join("bin/app")), 0o4555);
    assert_store_private(&node);
    node.ferry_ok(&["verify"]);

    // Taking the permission back: the kept release with the setuid file is
    // not switched to again, and the node stays where it is.
    node.ferry_ok(&["rollback"]);
    fs::write(
        &node.config,
        fs::read_to_string(&node.config).unwrap().replace(ALLOW, ""),
    )
    .unwrap();
    let out = node.ferry(&["rollback", "--to", "1.1.0"]);
    out.assert_code(VERIFICATION_FAILED);
    for needle in MENTIONS {
        out.assert_stderr_contains(needle);
    }
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn a_store_an_older_ferry_left_open_is_made_private() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let store = node.state_dir.join("store");
    assert_store_private(&node);
    // What ferry before this change made.
    fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
    node.ferry_ok(&["apply"]);
    assert_store_private(&node);
    node.assert_current("1.1.0", &ws.input(2));
}
