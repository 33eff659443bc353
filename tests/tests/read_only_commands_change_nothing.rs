//! The promise: looking at a node changes nothing. `status`, `history`,
//! `check`, `verify`, `migrations`, `restore-points list`, `preflight` and
//! `apply --dry-run` never take the state lock, never recover an
//! interrupted operation (no switch, no restart, no hook) and create
//! nothing on a node that has no state directory yet. `status` reports an
//! interrupted operation and what the next mutating command will do about
//! it, and keeps answering when `journal.json` or `state.json` is damaged.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ferry_tests::binaries;
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::run;

/// Exit code when another ferry operation holds the lock (contract).
const LOCKED: i32 = 75;

#[test]
fn read_only_commands_on_a_fresh_node_create_nothing() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("fresh");
    let commands: [(&[&str], &[i32]); 9] = [
        (&["status"], &[0]),
        (&["status", "--json"], &[0]),
        (&["history"], &[0]),
        (&["check"], &[10]),
        (&["apply", "--dry-run"], &[0]),
        (&["preflight"], &[0]),
        // Nothing installed: these fail, but still write nothing.
        (&["verify"], &[1]),
        (&["migrations"], &[0]),
        (&["restore-points", "list"], &[0]),
    ];
    for (args, codes) in commands {
        let out = node.ferry(args);
        assert!(
            out.code.is_some_and(|c| codes.contains(&c)),
            "ferry {args:?} exited {:?}, expected one of {codes:?}\n{out}",
            out.code
        );
        assert!(
            !node.state_dir.exists(),
            "ferry {args:?} created the state directory {}\n{out}",
            node.state_dir.display()
        );
        assert!(
            !node.root.exists(),
            "ferry {args:?} created the install root\n{out}"
        );
    }
}

/// 1.0.0 installed, then an update to 1.1.0 killed (SIGKILL) at `point`,
/// leaving its journal behind.
fn node_with_killed_update(ws: &Workspace, name: &str, point: &str) -> Node {
    let node = ws.node(name);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let out = Command::new(binaries::ferry_with_fault_injection())
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_CRASH_LOG")
        .env("FERRY_CRASH_AT", point)
        .arg("--config")
        .arg(&node.config)
        .args(["apply", "--version", "1.1.0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the update was not killed at {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node.state_dir.join("journal.json").exists());
    node
}

#[test]
fn status_reports_a_killed_update_and_leaves_it_to_the_next_apply() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    // Killed right after `current` moved to 1.1.0: recovery will commit it.
    let node = node_with_killed_update(&ws, "switched", "switch:after-rename");
    let journal = fs::read(node.state_dir.join("journal.json")).unwrap();
    let history = fs::read(node.state_dir.join("history.jsonl")).unwrap();
    let link = fs::read_link(node.current()).unwrap();

    let status = node.status_json();
    let human = node.ferry_ok(&["status"]);
    node.ferry_ok(&["history"]);
    node.ferry_ok(&["verify"]);

    assert_eq!(
        fs::read(node.state_dir.join("journal.json")).unwrap(),
        journal,
        "a read-only command touched the journal"
    );
    assert_eq!(
        fs::read(node.state_dir.join("history.jsonl")).unwrap(),
        history,
        "a read-only command recorded something"
    );
    assert_eq!(fs::read_link(node.current()).unwrap(), link);
    let interrupted = &status["interrupted_operation"];
    assert_eq!(interrupted["next_action"], "commit", "{status:#}");
    assert_eq!(interrupted["journal"]["to_version"], "1.1.0", "{status:#}");
    assert!(
        interrupted["next_action_description"]
            .as_str()
            .is_some_and(|d| d.contains("1.1.0")),
        "{status:#}"
    );
    assert!(status["operation_in_progress"].is_null(), "{status:#}");
    human.assert_stdout_contains("interrupted: apply 1.0.0 -> 1.1.0");
    human.assert_stdout_contains("the next apply, rollback or repair will finish it");

    // The next mutating command recovers.
    let out = node.ferry_ok(&["apply", "--version", "1.1.0"]);
    out.assert_stderr_contains("ferry: recovered: interrupted apply 1.0.0 -> 1.1.0");
    assert!(!node.state_dir.join("journal.json").exists());
    let status = node.status_json();
    assert!(status["interrupted_operation"].is_null(), "{status:#}");
    assert_eq!(status["current_version"], "1.1.0", "{status:#}");
}

#[test]
fn polling_read_only_commands_never_makes_an_apply_exit_75() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("polled");
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    let done = AtomicBool::new(false);
    let applies = thread::scope(|s| {
        for args in [&["status", "--json"][..], &["history"], &["verify"]] {
            let (node, done) = (&node, &done);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let out = run(&mut node.command(args));
                    assert_eq!(out.code, Some(0), "ferry {args:?} during applies\n{out}");
                }
            });
        }
        let applies: Vec<_> = (0..24).map(|_| node.ferry(&["apply"])).collect();
        done.store(true, Ordering::Relaxed);
        applies
    });
    for out in &applies {
        assert_ne!(
            out.code,
            Some(LOCKED),
            "a read-only poll held the lock\n{out}"
        );
        out.assert_success();
    }
}

#[test]
fn status_answers_with_a_corrupt_journal_or_state_file() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("corrupt");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    for file in ["journal.json", "state.json"] {
        let path = node.state_dir.join(file);
        let saved = fs::read(&path).ok();
        fs::write(&path, b"{\"id\": ").unwrap();
        let status = node.status_json();
        let problems = status["problems"].as_array().cloned().unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains(file))),
            "status does not report the damaged {file}: {status:#}"
        );
        assert_eq!(status["current_version"], "1.0.0", "{status:#}");
        node.ferry_ok(&["status"])
            .assert_stdout_contains(&format!("problem:   {}", path.display()));
        match saved {
            Some(bytes) => fs::write(&path, bytes).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
    }
}
