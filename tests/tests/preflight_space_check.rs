//! The promise: before fetching anything, `ferry apply` makes sure that at
//! least twice the bytes the update writes are free on every filesystem it
//! writes to; otherwise it refuses with a clear message naming the place,
//! and changes nothing — not the install root, not the store, no download —
//! while `--dry-run` still shows the plan. And the check is not stricter
//! than that: with just over twice the need free, the update goes through.
//!
//! The accounting is checked at its boundary (64 KiB either side of the
//! need, computed here from the signed manifest and the node's store) for
//! the three ways a node's disks can be laid out:
//! - install.root and state_dir on one filesystem: release files are hard
//!   links into the store, so only downloads and the store count;
//! - install.root on another filesystem: release files are copies, counted
//!   against the root's filesystem;
//! - install.root a bind mount of the state's filesystem (containers mount
//!   volumes so): one pool of free space, yet link(2) fails across mounts,
//!   so release files are copies counted against that one pool.
//!
//! The filesystems are real size-limited tmpfs mounts (see
//! `ferry_tests::small_fs`), resized between steps.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{
    pseudo_random, release_tree, render, tree_snapshot, write_tree, Entry, Node, NodeConfig,
    SnapshotEntry, Workspace, CHANNEL,
};
use ferry_tests::run::run;
use ferry_tests::small_fs::{mounted_or_skip, relocate, BindMount, SmallFilesystem};

const OLD: &str = "1.0.0";
const NEW: &str = "1.1.0";
const MIB: u64 = 1024 * 1024;
const ROOMY_KIB: u64 = 64 * 1024;
/// Distance from the boundary on either side: tmpfs counts whole pages, and
/// a few small files (lock, trusted state) may be written before the check.
const MARGIN: u64 = 64 * 1024;

/// Inputs of 1.0.0 and 1.1.0: fixture generations 1 and 2 with a payload of
/// 1 MiB then 3 MiB. The payload of 1.1.0 compresses well (download and
/// release sizes differ a lot, so a check that confuses them fails).
fn publish(ws: &Workspace) -> (PathBuf, PathBuf) {
    let input = |generation: u32, content: Vec<u8>| {
        let dir = ws.dir.join("inputs").join(format!("space-v{generation}"));
        let mut tree = release_tree(generation);
        tree.push(Entry::File {
            path: "lib/payload.bin",
            mode: 0o644,
            content,
        });
        write_tree(&dir, &tree);
        dir
    };
    let v1 = input(1, pseudo_random(0x5ace_0001, MIB as usize));
    // Half noise, half zeros.
    let mut payload = pseudo_random(0x5ace_0002, 3 * MIB as usize / 2);
    payload.resize(3 * MIB as usize, 0);
    let v2 = input(2, payload);
    for (version, dir) in [(OLD, &v1), (NEW, &v2)] {
        run(ws
            .release_command(version, CHANNEL, dir)
            .args(["--zstd-level", "1"]))
        .assert_success();
    }
    (v1, v2)
}

/// What the update to `version` writes, computed independently of ferry
/// from the signed manifest and the node's store.
struct Need {
    /// Compressed objects to download plus their decompressed contents.
    state: u64,
    /// Bytes of every file of the release (what copies cost).
    release: u64,
}

fn need(ws: &Workspace, node: &Node, version: &str) -> Need {
    let bytes = fs::read(ws.repo.join("manifests").join(format!("{version}.json"))).unwrap();
    let manifest: manifests::Manifest = serde_json::from_slice(&bytes).unwrap();
    let held: BTreeSet<String> = fs::read_dir(node.state_dir.join("store"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut fetched = BTreeSet::new();
    let mut state = 0;
    for content in manifest.files.iter().filter_map(|f| f.content()) {
        let hex = content.sha256.to_hex();
        if !held.contains(&hex) && fetched.insert(hex) {
            state += content.object.size + content.size;
        }
    }
    Need {
        state,
        release: manifest.content_bytes(),
    }
}

/// The parts of the state directory an update fills: store and downloads.
fn store_and_downloads(node: &Node) -> Vec<(String, Vec<SnapshotEntry>)> {
    ["store", "downloads"]
        .iter()
        .map(|d| (d.to_string(), tree_snapshot(&node.state_dir.join(d))))
        .collect()
}

/// Resizes `fs` so that exactly `free` bytes (rounded to KiB) are free.
fn leave_free(fs: &SmallFilesystem, free: u64) {
    fs.resize((fs.used_bytes() + free).div_ceil(1024));
    let now = fs.free_bytes();
    assert!(
        now.abs_diff(free) <= 8 * 1024,
        "asked for {free} bytes free on {}, got {now}",
        fs.path().display()
    );
}

/// `ferry apply` must refuse up front and change nothing; `--dry-run` must
/// still print the plan. `names` are paths the message must mention.
#[track_caller]
fn assert_refused(node: &Node, v1: &Path, names: &[&Path]) {
    let root_before = tree_snapshot(&node.root);
    let state_before = store_and_downloads(node);
    let history_before = node.history_json().len();

    let out = node.ferry(&["apply"]);
    // 5: a pre-flight check failed (the disk check is one of them).
    out.assert_code(5);
    out.assert_stderr_contains("not enough disk space");
    out.assert_stderr_contains("nothing was changed");
    for name in names {
        out.assert_stderr_contains(&name.display().to_string());
    }

    let root_after = tree_snapshot(&node.root);
    assert_eq!(
        root_after,
        root_before,
        "the refused update changed the install root:\n{}",
        render(&root_after)
    );
    assert_eq!(
        store_and_downloads(node),
        state_before,
        "the refused update downloaded or stored something"
    );
    node.assert_current(OLD, v1);
    assert_eq!(node.releases_on_disk(), [OLD]);

    // The refusal is on record, and nothing is left running.
    let status = node.status_json();
    assert_eq!(status["current_version"], OLD, "{status:#}");
    let last = &status["last_operation"];
    assert_eq!(last["outcome"], "failed", "{status:#}");
    assert_eq!(last["to_version"], NEW, "{status:#}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("not enough disk space")),
        "{status:#}"
    );
    assert!(status["operation_in_progress"].is_null(), "{status:#}");
    assert_eq!(node.history_json().len(), history_before + 1);

    // A dry run still shows what the update would do.
    let out = node.ferry(&["apply", "--dry-run"]);
    out.assert_success();
    out.assert_stdout_contains(&format!("-> {NEW}"));
    out.assert_stdout_contains("dry run: nothing changed");
    assert_eq!(tree_snapshot(&node.root), root_before);
    assert_eq!(store_and_downloads(node), state_before);
}

/// With just enough room, the update goes through.
#[track_caller]
fn assert_applies(node: &Node, v2: &Path) {
    node.ferry_ok(&["apply"]).assert_stdout_contains(NEW);
    node.assert_current(NEW, v2);
    assert_eq!(node.status_json()["last_operation"]["outcome"], "success");
}

/// A node with 1.0.0 installed on a roomy tmpfs at `<node>/disk`.
struct Setup {
    ws: Workspace,
    node: Node,
    v1: PathBuf,
    v2: PathBuf,
    disk: PathBuf,
}

fn setup(test: &str) -> Setup {
    let ws = Workspace::new();
    let (v1, v2) = publish(&ws);
    let node = ws.node_with(test, NodeConfig::new(ws.repo_url(), &ws.public_key));
    let disk = node.dir.join("disk");
    Setup {
        ws,
        node,
        v1,
        v2,
        disk,
    }
}

#[test]
fn root_and_state_on_one_small_filesystem() {
    let test = "root_and_state_on_one_small_filesystem";
    let Setup {
        ws,
        mut node,
        v1,
        v2,
        disk,
    } = setup(test);
    let Some(small) = SmallFilesystem::mount_or_skip(&disk, ROOMY_KIB, test) else {
        return;
    };
    relocate(&mut node, &disk.join("root"), &disk.join("state"));
    node.ferry_ok(&["apply", "--version", OLD]);
    let need = need(&ws, &node, NEW);
    assert!(need.state > 4 * MIB, "the update is smaller than planned");

    // Far too small: v1 plus 2 MiB, less than the 3 MiB payload.
    leave_free(&small, 2 * MIB);
    assert_refused(&node, &v1, &[&node.state_dir]);

    // Just below twice the need: still refused. (Release files are hard
    // links here: their bytes do not count.)
    leave_free(&small, 2 * need.state - MARGIN);
    assert_refused(&node, &v1, &[&node.state_dir]);

    // Just above: it goes through.
    leave_free(&small, 2 * need.state + MARGIN);
    assert_applies(&node, &v2);
}

#[test]
fn root_alone_on_a_small_filesystem() {
    let test = "root_alone_on_a_small_filesystem";
    let Setup {
        ws,
        mut node,
        v1,
        v2,
        disk,
    } = setup(test);
    let Some(small) = SmallFilesystem::mount_or_skip(&disk, ROOMY_KIB, test) else {
        return;
    };
    // state_dir stays on the big disk.
    let state = node.state_dir.clone();
    relocate(&mut node, &disk.join("root"), &state);
    node.ferry_ok(&["apply", "--version", OLD]);
    let need = need(&ws, &node, NEW);
    // The boundary below tells the release's bytes from the store's only if
    // they differ enough.
    assert!(
        need.release.abs_diff(need.state) > MIB,
        "release {} and store {} bytes are too close",
        need.release,
        need.state
    );

    leave_free(&small, 2 * MIB);
    assert_refused(&node, &v1, &[&node.root]);

    leave_free(&small, 2 * need.release - MARGIN);
    assert_refused(&node, &v1, &[&node.root]);

    leave_free(&small, 2 * need.release + MARGIN);
    assert_applies(&node, &v2);
}

#[test]
fn root_on_a_bind_mount_of_the_state_filesystem() {
    let test = "root_on_a_bind_mount_of_the_state_filesystem";
    let Setup {
        ws,
        mut node,
        v1,
        v2,
        disk,
    } = setup(test);
    let Some(small) = SmallFilesystem::mount_or_skip(&disk, ROOMY_KIB, test) else {
        return;
    };
    // Declared after `small`, so unmounted before it.
    let Some(bind) = mounted_or_skip(
        BindMount::try_mount(&disk.join("volume"), &node.dir.join("root")),
        test,
    ) else {
        return;
    };
    let root = bind.path().to_path_buf();
    relocate(&mut node, &root, &disk.join("state"));
    node.ferry_ok(&["apply", "--version", OLD]);
    // The premise: release files are copies here (a hard link into the
    // store would make the link count 2).
    let payload = node.release_dir(OLD).join("lib/payload.bin");
    assert_eq!(
        fs::metadata(&payload).unwrap().nlink(),
        1,
        "{} is a hard link across a bind mount?",
        payload.display()
    );
    let need = need(&ws, &node, NEW);
    let total = need.state + need.release;

    // Enough for the downloads and the store twice, not for the copies too.
    leave_free(&small, 2 * total - MARGIN);
    assert_refused(&node, &v1, &[&node.state_dir, &node.root]);

    leave_free(&small, 2 * total + MARGIN);
    assert_applies(&node, &v2);
}
