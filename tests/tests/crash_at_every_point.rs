//! The promise: whatever instant an update or a rollback is killed at, the
//! next `ferry` command leaves the node on exactly the old release or
//! exactly the new one — every file's bytes and mode — with the journal
//! closed, `status` telling the truth and no temporary file left behind.
//!
//! The walk is mechanical. A run of the fault-injection build of `ferry`
//! with `FERRY_CRASH_LOG` lists every crash point the operation passes (each
//! fsync, rename and journal write, between files; `name#N` for the N-th
//! time a point is reached). Then, for each of them, a fresh node is set up
//! the same way, the operation is run with `FERRY_CRASH_AT` pointing at it
//! (the process dies by SIGKILL there), and the normal binary is run to
//! recover and is checked. Finally the interrupted operation is run again
//! and must complete.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::binaries;
use ferry_tests::fixtures::{Node, Workspace};

const OLD: &str = "1.0.0";
const NEW: &str = "1.1.0";

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

fn fault_command(node: &Node, args: &[&str]) -> Command {
    let mut command = Command::new(binaries::ferry_with_fault_injection());
    command
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_CRASH_AT")
        .env_remove("FERRY_CRASH_LOG")
        .arg("--config")
        .arg(&node.config)
        .args(args);
    command
}

/// Every crash point `operation` passes, in order.
fn crash_points(ws: &Workspace, operation: Operation) -> Vec<String> {
    let node = ws.node(&format!("discover-{operation:?}"));
    operation.prepare(&node);
    let log = ws.dir.join(format!("points-{operation:?}.log"));
    let (_, _, args) = operation.plan();
    let out = fault_command(&node, args)
        .env("FERRY_CRASH_LOG", &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the discovery run of {operation:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let points: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
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
fn assert_consistent(ws: &Workspace, node: &Node, context: &str) -> String {
    let status = node.status_json();
    let version = node
        .current_version()
        .unwrap_or_else(|| panic!("{context}: nothing installed after recovery"));
    assert!(
        version == OLD || version == NEW,
        "{context}: current is {version}"
    );
    let generation = if version == OLD { 1 } else { 2 };
    node.assert_current(&version, &ws.input(generation));
    assert_eq!(
        status["current_version"],
        version.as_str(),
        "{context}: status lies: {status:#}"
    );
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

fn walk(operation: Operation) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let points = crash_points(&ws, operation);
    let (before, after, args) = operation.plan();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (i, point) in points.iter().enumerate() {
        let context = format!("{operation:?} killed at {point}");
        let node = ws.node(&format!("{operation:?}-{i}"));
        operation.prepare(&node);
        let out = fault_command(&node, args)
            .env("FERRY_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{context}: the process was not killed there (status {:?}); stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let landed = assert_consistent(&ws, &node, &context);
        *outcomes.entry(landed.clone()).or_default() += 1;

        // The interrupted operation, run again, completes.
        let again = match operation {
            Operation::Update => node.ferry(&["apply"]),
            Operation::Rollback => node.ferry(&["rollback", "--to", after]),
        };
        again.assert_success();
        assert_eq!(
            node.current_version().as_deref(),
            Some(after),
            "{context}: rerun"
        );
        assert_consistent(&ws, &node, &format!("{context}, then rerun"));
        assert!(
            fs::read_dir(node.state_dir.join("downloads")).map_or(true, |mut d| d.next().is_none()),
            "{context}: downloads left after a completed rerun"
        );
        // Keep the sandbox small: this node has served its purpose.
        fs::remove_dir_all(&node.dir).unwrap();
    }
    println!(
        "{operation:?} {before} -> {after}: walked {} crash points; recovery ended on {outcomes:?}",
        points.len()
    );
    assert!(
        outcomes.contains_key(before) && outcomes.contains_key(after),
        "{outcomes:?}"
    );
}

#[test]
fn update_killed_at_every_crash_point_recovers() {
    walk(Operation::Update);
}

#[test]
fn rollback_killed_at_every_crash_point_recovers() {
    walk(Operation::Rollback);
}
