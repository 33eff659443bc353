//! The promise: whatever instant an update or a rollback is killed at, the
//! next mutating `ferry` command leaves the node on exactly the old release
//! or exactly the new one — every file's bytes and mode — with the journal
//! closed, `status` telling the truth and no temporary file left behind.
//! Before that, `ferry status` (read-only) reports the interrupted
//! operation and leaves its journal alone.
//!
//! The walk is mechanical. A run of the fault-injection build of `ferry`
//! with `FERRY_CRASH_LOG` lists every crash point the operation passes (each
//! fsync, rename and journal write, between files; `name#N` for the N-th
//! time a point is reached). Then, for each of them, a fresh node is set up
//! the same way, the operation is run with `FERRY_CRASH_AT` pointing at it
//! (the process dies by SIGKILL there), `ferry status` is run and must
//! change nothing, then `ferry repair` (the lightest mutating command) is
//! run to recover and the node is checked. Finally the interrupted
//! operation is run again and must complete.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::crash_walk::{self, fault_command};
use ferry_tests::fixtures::{assert_tree_matches, Node, Workspace};

const OLD: &str = "1.0.0";
const NEW: &str = "1.1.0";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `releases/<v>` trees and the `current` symlink.
    Symlink,
    /// Files at fixed paths below the root, replaced one rename each.
    InPlace,
}

/// A node of `mode`; in-place nodes own `bin/ etc/ lib/ share/` below their root.
fn node(ws: &Workspace, name: &str, mode: Mode) -> Node {
    match mode {
        Mode::Symlink => ws.node(name),
        Mode::InPlace => ws.in_place_node(name, ""),
    }
}

/// The version the node reports (in-place nodes have no `current` link).
fn installed(node: &Node) -> Option<String> {
    node.status_json()["current_version"]
        .as_str()
        .map(String::from)
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    /// 1.0.0 installed; `ferry apply` to 1.1.0.
    Update,
    /// 1.0.0 then 1.1.0 installed; `ferry rollback` to 1.0.0.
    Rollback,
}

impl Operation {
    /// (release before, release after, arguments).
    fn plan(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Operation::Update => (OLD, NEW, &["apply"]),
            Operation::Rollback => (NEW, OLD, &["rollback"]),
        }
    }

    fn prepare(self, node: &Node) {
        node.ferry_ok(&["apply", "--version", OLD]);
        if let Operation::Rollback = self {
            node.ferry_ok(&["apply", "--version", NEW]);
        }
    }
}

/// Every crash point `operation` passes, in order.
fn crash_points(ws: &Workspace, mode: Mode, operation: Operation) -> Vec<String> {
    let node = node(ws, &format!("discover-{mode:?}-{operation:?}"), mode);
    operation.prepare(&node);
    let log = ws.dir.join(format!("points-{mode:?}-{operation:?}.log"));
    let (_, _, args) = operation.plan();
    let points = crash_walk::discover(
        &mut fault_command(&node.config, args),
        &log,
        &format!("{operation:?}"),
    );
    assert!(
        points.len() >= 10,
        "{operation:?} passes only {} crash points: {points:?}",
        points.len()
    );
    points
}

/// Names of leftover temporaries anywhere under `dir`, except partial
/// downloads kept on purpose for the next run to resume.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_part =
            name.ends_with(".part") && path.parent().is_some_and(|p| p.ends_with("downloads"));
        if name.contains(".tmp")
            || name.starts_with(".staging-")
            || name.starts_with(".remove-")
            || (name.ends_with(".part") && !is_part)
        {
            found.push(path.clone());
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(temporaries(&path));
        }
    }
    found
}

#[track_caller]
fn assert_consistent(ws: &Workspace, node: &Node, mode: Mode, context: &str) -> String {
    let status = node.status_json();
    let version = status["current_version"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| panic!("{context}: nothing installed after recovery: {status:#}"));
    assert!(
        version == OLD || version == NEW,
        "{context}: current is {version}"
    );
    let generation = if version == OLD { 1 } else { 2 };
    match mode {
        Mode::Symlink => {
            // status must agree with the symlink, the truth in this mode.
            node.assert_current(&version, &ws.input(generation));
        }
        // Every file below the root is the old release's, or every one the new's.
        Mode::InPlace => assert_tree_matches(&node.root, &ws.input(generation)),
    }
    assert!(
        !node.state_dir.join("journal.json").exists(),
        "{context}: the journal is still open after recovery"
    );
    assert!(
        status["operation_in_progress"].is_null(),
        "{context}: {status:#}"
    );
    for dir in [&node.root, &node.state_dir] {
        let left = temporaries(dir);
        assert!(
            left.is_empty(),
            "{context}: temporaries left behind: {left:#?}"
        );
    }
    version
}

/// `ferry status` after a kill is read-only: a journal left by the killed
/// process is still there afterwards, byte for byte, and is reported as
/// interrupted with what the next mutating command will do.
#[track_caller]
fn assert_status_only_reports(node: &Node, context: &str) {
    let journal = node.state_dir.join("journal.json");
    let before = fs::read(&journal).ok();
    let link_before = fs::read_link(node.current()).ok();
    let status = node.status_json();
    assert_eq!(
        fs::read(&journal).ok(),
        before,
        "{context}: status changed the journal"
    );
    assert_eq!(
        fs::read_link(node.current()).ok(),
        link_before,
        "{context}: status moved current"
    );
    let interrupted = &status["interrupted_operation"];
    if before.is_some() {
        let action = interrupted["next_action"].as_str().unwrap_or_default();
        assert!(
            ["close", "commit", "abandon", "switch-back"].contains(&action),
            "{context}: status does not say what recovery will do: {status:#}"
        );
        assert!(status["operation_in_progress"].is_null(), "{status:#}");
    } else {
        assert!(interrupted.is_null(), "{context}: {status:#}");
    }
}

fn walk(mode: Mode, operation: Operation) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    walk_in(&ws, mode, operation);
}

/// Generations 1 and 2 with `bin/app` a real executable and its next
/// build, so the publisher makes a delta for it and an update patches it.
fn workspace_with_deltas() -> Workspace {
    let ws = Workspace::new();
    let binary = ferry_tests::real_code::small_binary();
    // `input` writes a generation's tree only if it is not there yet.
    fs::write(ws.input(1).join("bin/app"), &binary).unwrap();
    fs::write(
        ws.input(2).join("bin/app"),
        ferry_tests::real_code::next_build(&binary, 1),
    )
    .unwrap();
    ws.publish_v1_v2();
    ws
}

fn walk_in(ws: &Workspace, mode: Mode, operation: Operation) -> Vec<String> {
    let points = crash_points(ws, mode, operation);
    let (before, after, args) = operation.plan();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (i, point) in points.iter().enumerate() {
        let context = format!("{mode:?} {operation:?} killed at {point}");
        let node = node(ws, &format!("{mode:?}-{operation:?}-{i}"), mode);
        operation.prepare(&node);
        crash_walk::kill_at(&mut fault_command(&node.config, args), point, &context);
        assert_status_only_reports(&node, &context);
        node.ferry(&["repair"]).assert_success();
        let landed = assert_consistent(ws, &node, mode, &context);
        *outcomes.entry(landed.clone()).or_default() += 1;

        // The interrupted operation, run again, completes.
        let again = match operation {
            Operation::Update => node.ferry(&["apply"]),
            Operation::Rollback => node.ferry(&["rollback", "--to", after]),
        };
        again.assert_success();
        assert_eq!(installed(&node).as_deref(), Some(after), "{context}: rerun");
        assert_consistent(ws, &node, mode, &format!("{context}, then rerun"));
        assert!(
            fs::read_dir(node.state_dir.join("downloads")).map_or(true, |mut d| d.next().is_none()),
            "{context}: downloads left after a completed rerun"
        );
        // Keep the sandbox small: this node has served its purpose.
        fs::remove_dir_all(&node.dir).unwrap();
    }
    println!(
        "{mode:?} {operation:?} {before} -> {after}: walked {} crash points; recovery ended on {outcomes:?}",
        points.len()
    );
    assert!(
        outcomes.contains_key(before) && outcomes.contains_key(after),
        "{outcomes:?}"
    );
    points
}

#[test]
fn update_killed_at_every_crash_point_recovers() {
    walk(Mode::Symlink, Operation::Update);
}

#[test]
fn update_by_delta_killed_at_every_crash_point_recovers() {
    let ws = workspace_with_deltas();
    let points = walk_in(&ws, Mode::Symlink, Operation::Update);
    assert!(
        points.iter().any(|p| p.starts_with("delta:patch-verified")),
        "the update did not take the delta path: {points:?}"
    );
}

#[test]
fn rollback_killed_at_every_crash_point_recovers() {
    walk(Mode::Symlink, Operation::Rollback);
}

#[test]
fn in_place_update_killed_at_every_crash_point_recovers() {
    walk(Mode::InPlace, Operation::Update);
}

#[test]
fn in_place_rollback_killed_at_every_crash_point_recovers() {
    walk(Mode::InPlace, Operation::Rollback);
}
