//! The promise: an update that runs out of disk space — while downloading,
//! while decompressing into the store, or while building the release tree —
//! leaves the node on its old release, byte for byte, says that the disk is
//! full, records the failure, leaves nothing that looks like a release
//! behind, and completes once space has been freed.
//!
//! The disk is a real size-limited tmpfs and the error a real ENOSPC from the
//! kernel. `ferry`'s pre-flight space check would refuse these updates up
//! front (`preflight_space_check.rs` proves that), so the failing run uses
//! the fault-injection build with `FERRY_FAULT_SKIP_SPACE_CHECK=1`; every
//! other command is the normal binary.
//!
//! Sizes: release 1.0.0 carries a 1 MiB incompressible file, 1.1.0 replaces
//! it with a 3 MiB one (its object is 3 MiB too). The node is installed on a
//! roomy tmpfs, which is then shrunk to what is in use plus just enough room
//! for the update to fail at the chosen step.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::binaries;
use ferry_tests::fixtures::{
    pseudo_random, release_tree, render, tree_snapshot, write_tree, Entry, Node, NodeConfig,
    Workspace,
};
use ferry_tests::run::{run, Output};
use ferry_tests::small_fs::{relocate, SmallFilesystem};

const OLD: &str = "1.0.0";
const NEW: &str = "1.1.0";
const MIB: u64 = 1024 * 1024;
/// Size of the tmpfs the old release is installed on.
const ROOMY_KIB: u64 = 64 * 1024;

/// Inputs of 1.0.0 and 1.1.0: the fixture generations 1 and 2, each with an
/// incompressible `lib/payload.bin` (1 MiB, then 3 MiB).
fn publish(ws: &Workspace) -> (PathBuf, PathBuf) {
    let input = |generation: u32, seed: u64, bytes: u64| {
        let dir = ws.dir.join("inputs").join(format!("big-v{generation}"));
        let mut tree = release_tree(generation);
        tree.push(Entry::File {
            path: "lib/payload.bin",
            mode: 0o644,
            content: pseudo_random(seed, bytes as usize),
        });
        write_tree(&dir, &tree);
        dir
    };
    let (v1, v2) = (input(1, 0xd15c_0001, MIB), input(2, 0xd15c_0002, 3 * MIB));
    // Level 1: the payload does not compress anyway, and it is faster.
    for (version, dir) in [(OLD, &v1), (NEW, &v2)] {
        run(ws
            .release_command(version, ferry_tests::fixtures::CHANNEL, dir)
            .args(["--zstd-level", "1"]))
        .assert_success();
    }
    (v1, v2)
}

/// `ferry apply` by the fault-injection build, with the space check off.
fn apply_without_space_check(node: &Node) -> Output {
    run(Command::new(binaries::ferry_with_fault_injection())
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_CRASH_AT")
        .env_remove("FERRY_CRASH_LOG")
        .env("FERRY_FAULT_SKIP_SPACE_CHECK", "1")
        .env("NO_COLOR", "1")
        .arg("--config")
        .arg(&node.config)
        .arg("apply"))
}

/// Entries anywhere below `dir` whose names mark unfinished work:
/// temporaries, staging and removal directories, partial downloads.
fn leftovers(dir: &Path) -> Vec<String> {
    tree_snapshot(dir)
        .into_iter()
        .map(|e| e.path)
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.contains(".tmp")
                || name.starts_with(".staging-")
                || name.starts_with(".remove-")
                || name.ends_with(".part")
        })
        .collect()
}

/// Where the space runs out.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// install.root and state_dir share the small tmpfs; the 3 MiB object
    /// does not fit while it is downloaded.
    SharedDownloading,
    /// Shared small tmpfs; the object fits, its decompressed copy does not.
    SharedDecompressing,
    /// Only install.root is on the small tmpfs (state_dir is on the big
    /// disk), so release files are copies: the release tree does not fit.
    RootOnlyStaging,
}

/// Installs 1.0.0 on a node laid out as `layout`, shrinks its tmpfs, runs
/// the update into ENOSPC, checks the node is intact, frees space and
/// completes the update.
fn disk_full_then_freed(layout: Layout, test: &str) {
    let ws = Workspace::new();
    let (v1, v2) = publish(&ws);
    let mut node = ws.node_with(test, NodeConfig::new(ws.repo_url(), &ws.public_key));
    let disk = node.dir.join("disk");
    let Some(small) = SmallFilesystem::mount_or_skip(&disk, ROOMY_KIB, test) else {
        return;
    };
    match layout {
        Layout::SharedDownloading | Layout::SharedDecompressing => {
            relocate(&mut node, &disk.join("root"), &disk.join("state"))
        }
        Layout::RootOnlyStaging => {
            let state = node.state_dir.clone();
            relocate(&mut node, &disk.join("root"), &state)
        }
    }

    // 1.0.0, installed normally (the space check passes on the roomy disk).
    node.ferry_ok(&["apply", "--version", OLD]);
    node.assert_current(OLD, &v1);

    // Shrink: what is in use plus `room`.
    let room = match layout {
        // Less than the 3 MiB object.
        Layout::SharedDownloading => 2 * MIB,
        // The object (3 MiB) and 1.5 MiB, half its decompressed content.
        Layout::SharedDecompressing => 3 * MIB + 3 * MIB / 2,
        // bin/app (200 KiB) fits, the 3 MiB payload does not.
        Layout::RootOnlyStaging => 2 * MIB,
    };
    small.resize((small.used_bytes() + room).div_ceil(1024));
    let root_before = tree_snapshot(&node.root);
    let history_before = node.history_json().len();

    // The update runs into a full disk.
    let out = apply_without_space_check(&node);
    assert_eq!(
        out.code,
        Some(1),
        "a full disk is an ordinary error (exit 1)\n{out}"
    );
    out.assert_stderr_contains("No space left on device");
    let step_word = match layout {
        Layout::SharedDownloading => "objects/",
        Layout::SharedDecompressing => "store/",
        Layout::RootOnlyStaging => "lib/payload.bin",
    };
    out.assert_stderr_contains(step_word);
    // The message names the local file that could not be written and the
    // filesystem that is full, not only what was being fetched.
    out.assert_stderr_contains(&format!("{}/", disk.display()));
    out.assert_stderr_contains(&format!(
        "the filesystem mounted at {} is full",
        disk.display()
    ));

    // Still on 1.0.0, exactly.
    node.assert_current(OLD, &v1);
    assert_eq!(
        node.releases_on_disk(),
        [OLD],
        "releases/ must hold 1.0.0 only: no half-built 1.1.0, no staging directory"
    );
    let root_after = tree_snapshot(&node.root);
    assert_eq!(
        root_after,
        root_before,
        "the failed update changed the install root:\n{}",
        render(&root_after)
    );
    // What the failed run leaves in state_dir: a partial download is kept
    // on purpose (the next run resumes it); nothing else unfinished.
    let left: Vec<String> = leftovers(&node.state_dir)
        .into_iter()
        .filter(|p| !(p.starts_with("downloads/") && p.ends_with(".part")))
        .collect();
    assert!(
        left.is_empty(),
        "unfinished work left in {}: {left:?}",
        node.state_dir.display()
    );

    // status tells the truth: on 1.0.0, the update failed, because of space.
    let status = node.status_json();
    assert_eq!(status["current_version"], OLD, "{status:#}");
    assert_eq!(status["releases"], serde_json::json!([OLD]), "{status:#}");
    let last = &status["last_operation"];
    assert_eq!(last["outcome"], "failed", "{status:#}");
    assert_eq!(last["to_version"], NEW, "{status:#}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("No space left on device")),
        "the recorded failure does not name the cause: {status:#}"
    );
    assert!(status["operation_in_progress"].is_null(), "{status:#}");
    assert!(
        !node.state_dir.join("journal.json").exists(),
        "the journal is still open"
    );
    let history = node.history_json();
    assert_eq!(
        history.len(),
        history_before + 1,
        "one failed operation, recorded once: {history:#?}"
    );

    // Space freed: the same update completes with the normal binary.
    small.resize(ROOMY_KIB);
    let out = node.ferry_ok(&["apply"]);
    out.assert_stdout_contains(NEW);
    node.assert_current(NEW, &v2);
    assert_eq!(node.releases_on_disk(), [OLD, NEW]);
    let status = node.status_json();
    assert_eq!(status["current_version"], NEW, "{status:#}");
    assert_eq!(status["last_operation"]["outcome"], "success", "{status:#}");
    assert_eq!(status["previous_version"], OLD, "{status:#}");
    for dir in [&node.root, &node.state_dir] {
        let left = leftovers(dir);
        assert!(
            left.is_empty(),
            "leftovers after the completed update in {}: {left:?}",
            dir.display()
        );
    }
    // What the failed run had downloaded completely was not fetched again.
    let downloaded = status["last_operation"]["bytes_downloaded"]
        .as_u64()
        .expect("bytes_downloaded");
    if let Layout::SharedDecompressing | Layout::RootOnlyStaging = layout {
        assert!(
            downloaded < MIB,
            "the 3 MiB object was fetched again ({downloaded} bytes downloaded): {status:#}"
        );
    }
    // Unmounting works: nothing of ferry's holds the filesystem.
    drop(small);
    assert!(
        !node.root.join("current").exists(),
        "{} is still mounted",
        disk.display()
    );
}

#[test]
fn enospc_while_downloading_keeps_the_old_release() {
    disk_full_then_freed(
        Layout::SharedDownloading,
        "enospc_while_downloading_keeps_the_old_release",
    );
}

#[test]
fn enospc_while_decompressing_into_the_store_keeps_the_old_release() {
    disk_full_then_freed(
        Layout::SharedDecompressing,
        "enospc_while_decompressing_into_the_store_keeps_the_old_release",
    );
}

#[test]
fn enospc_while_staging_on_another_filesystem_keeps_the_old_release() {
    disk_full_then_freed(
        Layout::RootOnlyStaging,
        "enospc_while_staging_on_another_filesystem_keeps_the_old_release",
    );
}
