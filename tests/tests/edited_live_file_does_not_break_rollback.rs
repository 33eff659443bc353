//! The threat: releases share bytes with the content store and with each
//! other (hard links where the filesystem has no reflinks), so an operator
//! who forces an edit of a live release's file (`chmod u+w`, append) also
//! changes the store and every kept release holding the same file; the
//! next rollback then found its target damaged and refused with no way
//! forward.
//!
//! The promise: installed release files are read-only (an accidental edit
//! fails loudly for anyone but root); a rollback re-hashes its target and
//! repairs it from verified content (the store if it still verifies, else
//! the repository) before switching, and refuses before anything changes
//! when it cannot; `ferry repair` repairs every kept release and the store;
//! a repaired file is a fresh inode, so the damage cannot spread again.
//! With reflinks (btrfs, xfs) the edit never reaches the other release at
//! all; these tests run on whatever filesystem holds the workspace and
//! check whichever case it is.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ferry_tests::fixtures::{assert_tree_matches, inode, sha256_hex, Node, Workspace};

const SHARED: &str = "share/doc/README.md";

/// 1.0.0 then 1.1.0 installed: `SHARED` is the same in both.
fn two_releases(ws: &Workspace, name: &str) -> Node {
    ws.publish_v1_v2();
    let node = ws.node(name);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    node
}

/// What an operator forcing the edit does (root ignores write bits, so the
/// `chmod` is what a non-root user would need): append through `current`.
/// Returns whether the edit reached release 1.0.0 through a shared inode.
fn force_edit(node: &Node) -> bool {
    let live = node.current().join(SHARED);
    let mode = fs::metadata(&live).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o444, "an installed release file must be read-only");
    let shared = inode(&live) == inode(&node.release_dir("1.0.0").join(SHARED));
    fs::set_permissions(&live, fs::Permissions::from_mode(0o644)).unwrap();
    let mut file = OpenOptions::new().append(true).open(&live).unwrap();
    file.write_all(b"edited on the live node\n").unwrap();
    drop(file);
    let previous = fs::read(node.release_dir("1.0.0").join(SHARED)).unwrap();
    assert_eq!(
        previous.ends_with(b"edited on the live node\n"),
        shared,
        "the edit must reach release 1.0.0 exactly when the file shares its inode"
    );
    shared
}

#[test]
fn rollback_repairs_its_target_from_verified_content_and_lands_on_it() {
    let ws = Workspace::new();
    let node = two_releases(&ws, "rollback");
    let damaged_inode = inode(&node.release_dir("1.0.0").join(SHARED));
    let shared = force_edit(&node);

    let out = node.ferry_ok(&["rollback"]);
    if shared {
        out.assert_stdout_or_stderr_contains("repaired from verified content before switching");
        out.assert_stdout_or_stderr_contains(SHARED);
        assert_ne!(
            inode(&node.release_dir("1.0.0").join(SHARED)),
            damaged_inode,
            "the repair must write a fresh inode, not through the shared one"
        );
    }
    node.assert_current("1.0.0", &ws.input(1));
    node.ferry_ok(&["verify"]);

    // 1.1.0, now kept, still carries the edit: `ferry repair` finds it.
    let out = node.ferry_ok(&["repair"]);
    out.assert_stdout_contains("1.1.0: repaired 1 entries of this kept release");
    out.assert_stdout_contains(SHARED);
    assert_tree_matches(&node.release_dir("1.1.0"), &ws.input(2));
    node.ferry_ok(&["verify"]);
    node.ferry_ok(&["repair"])
        .assert_stdout_contains("nothing to repair");
    // Forward again onto the repaired release.
    node.ferry_ok(&["rollback", "--to", "1.1.0"]);
    node.assert_current("1.1.0", &ws.input(2));
}

#[test]
fn repair_repairs_every_kept_release_and_the_store() {
    let ws = Workspace::new();
    let node = two_releases(&ws, "repair");
    let shared = force_edit(&node);

    node.ferry(&["verify"])
        .assert_code(4)
        .assert_stderr_contains(SHARED);
    let out = node.ferry_ok(&["repair"]);
    out.assert_stdout_contains("repaired 1 differences");
    if shared {
        out.assert_stdout_contains("1.0.0: repaired 1 entries of this kept release");
        out.assert_stdout_contains("removed 1 damaged store objects");
    }
    node.assert_current("1.1.0", &ws.input(2));
    assert_tree_matches(&node.release_dir("1.0.0"), &ws.input(1));
    node.ferry_ok(&["verify"]);
    // Every object left in the store hashes to its name.
    for entry in fs::read_dir(node.state_dir.join("store")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            sha256_hex(&fs::read(&path).unwrap()),
            name,
            "{}",
            path.display()
        );
    }
    node.ferry_ok(&["rollback"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn a_target_that_cannot_be_repaired_is_refused_before_anything_changes() {
    let ws = Workspace::new();
    let node = two_releases(&ws, "unrepairable");
    let readme = fs::read(node.release_dir("1.0.0").join(SHARED)).unwrap();
    // The repository no longer has the content either.
    fs::remove_file(ws.repo.join("objects").join(sha256_hex(&readme))).unwrap();
    // Damage 1.0.0's copy and the store's, each by a fresh inode so the
    // live release's copy stays intact whatever the filesystem shares.
    let target = node.release_dir("1.0.0").join(SHARED);
    replace_content(&target, b"damaged\n");
    replace_content(
        &node.state_dir.join("store").join(sha256_hex(&readme)),
        b"damaged\n",
    );
    let history = node.history_json().len();

    // The object is gone from the repository: the repair cannot run, and
    // the status is that cause's (1), not a verification failure (3).
    let out = node.ferry(&["rollback"]);
    out.assert_code(1)
        .assert_stderr_contains("repairing it failed, refusing to switch")
        .assert_stderr_contains(&sha256_hex(&readme))
        .assert_stderr_contains("ferry rollback");
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    node.assert_current("1.1.0", &ws.input(2));
    let last = node.history_json();
    assert_eq!(last.len(), history + 1);
    assert_eq!(last.last().unwrap()["outcome"], "failed", "{last:#?}");
}

/// Replaces `path` with a new file holding `content`.
fn replace_content(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("damaged");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}
