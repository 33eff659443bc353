//! The promise: in pull mode a node counts as unavailable until it is
//! healthy again. A node that dies after its switch keeps its slot after
//! its etcd lease has lapsed (`<prefix>/down/<id>`, written without a
//! lease just before the switch), so no other node updates while it is
//! down; its recovery takes that slot back before it acts, finishes going
//! live inside it, and gives it back; only then does the next node go.
//! Recovery with `[coordination]` never runs outside a slot: when etcd
//! cannot say, it does not run.
//!
//! A real etcd, read back with `etcdctl` revision by revision; node n1 is
//! killed by the fault-injection build right after its switch
//! (`FERRY_CRASH_AT=switch:after-rename`), as a power cut would.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::binaries;
use ferry_tests::etcd::{Etcd, Key};
use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};
use serde_json::Value;

const PREFIX: &str = "/ferry/crash";

/// Two nodes on 1.0.0 with 1.1.0 published, one slot between them; the
/// hooks log `start <name>` / `end <name>` to the returned log.
fn fleet(etcd: &Etcd) -> (Workspace, Vec<Node>, std::path::PathBuf) {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let log = ws.dir.join("hooks.log");
    let nodes: Vec<Node> = ["n1", "n2"].iter().map(|name| ws.node(name)).collect();
    for node in &nodes {
        node.ferry_ok(&["apply", "--version", "1.0.0"]);
        let name = &node.name;
        let mut text = fs::read_to_string(&node.config).unwrap();
        text.push_str(&format!(
            "\n[node]\nid = \"{name}\"\n\n[service]\npre_apply = \"echo start {name} >> {log}\"\npost_apply = \"echo end {name} >> {log}\"\n\n[coordination]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\nmax_unavailable = 1\nlease_seconds = 2\npoll_interval_ms = 100\nwait_timeout_seconds = 120\n",
            etcd.url,
            log = log.display(),
        ));
        fs::write(&node.config, text).unwrap();
    }
    ws.publish("1.1.0", CHANNEL, &ws.input(2));
    (ws, nodes, log)
}

/// The node names under `<PREFIX>/<section>/` in `keys`.
fn names(keys: &[Key], section: &str) -> BTreeSet<String> {
    let prefix = format!("{PREFIX}/{section}/");
    keys.iter()
        .filter_map(|k| k.key.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn now_in(etcd: &Etcd, section: &str) -> BTreeSet<String> {
    names(
        &etcd.get_prefix(&format!("{PREFIX}/{section}/"), None),
        section,
    )
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn hook_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// n1 updates to 1.1.0 and is killed right after its switch.
fn crash_after_switch(node: &Node) {
    crash_at(node, "switch:after-rename");
}

/// `node` updates to 1.1.0 and is killed at the crash point `point`, after
/// its switch.
fn crash_at(node: &Node, point: &str) {
    let out = run(Command::new(binaries::ferry_with_fault_injection())
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .env("FERRY_CRASH_AT", point)
        .arg("--config")
        .arg(&node.config)
        .args(["apply", "--version", "1.1.0", "--output", "json"]));
    assert_eq!(out.code, None, "killed at the crash point\n{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
}

#[test]
fn a_node_that_dies_after_its_switch_keeps_its_slot_until_its_recovery_ends() {
    let Some(etcd) = Etcd::start_or_skip(
        "a_node_that_dies_after_its_switch_keeps_its_slot_until_its_recovery_ends",
    ) else {
        return;
    };
    let (ws, nodes, log) = fleet(&etcd);
    let (n1, n2) = (&nodes[0], &nodes[1]);

    crash_after_switch(n1);
    assert_eq!(now_in(&etcd, "down"), BTreeSet::from(["n1".to_string()]));
    // Its lease lapses: the slot and updating keys go, the mark stays.
    wait_until("n1's lease expired", || {
        now_in(&etcd, "slots").is_empty() && now_in(&etcd, "updating").is_empty()
    });
    assert_eq!(now_in(&etcd, "down"), BTreeSet::from(["n1".to_string()]));

    // n2's timer run queues and waits: n1 is still down.
    let n2_run = thread::spawn({
        let node = n2.clone();
        move || node.ferry(&["apply", "--unattended", "--output", "json"])
    });
    wait_until("n2 queues", || now_in(&etcd, "slots").contains("n2"));
    // Several of n1's lease lifetimes later, n2 still has not started.
    thread::sleep(Duration::from_secs(5));
    assert!(now_in(&etcd, "updating").is_empty());
    assert!(
        !hook_lines(&log).iter().any(|l| l == "start n2"),
        "{:?}",
        hook_lines(&log)
    );
    assert_eq!(n2.current_version().as_deref(), Some("1.0.0"));
    assert!(!n2_run.is_finished(), "n2 waits rather than giving up");
    // `coordination status` says why.
    let status = n2.ferry_ok(&["coordination", "status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["down"][0]["node"], "n1", "{status:#}");
    assert_eq!(status["down"][0]["to_version"], "1.1.0", "{status:#}");
    assert_eq!(status["waiting"][0]["node"], "n2", "{status:#}");

    // n1's recovery takes the slot back ahead of n2, finishes going live
    // (its post_apply), and gives it back.
    let recovered_at = etcd.revision();
    n1.ferry(&["repair"])
        .assert_success()
        .assert_stderr_contains("recovered: interrupted apply 1.0.0 -> 1.1.0");
    assert!(now_in(&etcd, "down").iter().all(|n| n != "n1"));
    n1.assert_current("1.1.0", &ws.input(2));

    // Then n2 goes.
    let out: Output = n2_run.join().unwrap();
    out.assert_success();
    let last: Value =
        serde_json::from_str(out.stdout.lines().rfind(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(last["event"], "applied", "{out}");
    n2.assert_current("1.1.0", &ws.input(2));
    assert!(now_in(&etcd, "down").is_empty());

    let lines = hook_lines(&log);
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {lines:?}"))
    };
    assert!(at("end n1") < at("start n2"), "{lines:?}");

    // etcd's own record: at no revision were two nodes unavailable (down
    // or updating); n1's recovery held the slot (updating) after the
    // crash, and n2 updated only after n1's mark was gone.
    let mut n1_recovered_in_slot = false;
    let mut n2_started = None;
    for (revision, keys) in etcd.history(&format!("{PREFIX}/")) {
        let down = names(&keys, "down");
        let updating = names(&keys, "updating");
        let unavailable: BTreeSet<&String> = down.iter().chain(&updating).collect();
        assert!(
            unavailable.len() <= 1,
            "at revision {revision}: down {down:?}, updating {updating:?}"
        );
        if revision > recovered_at && updating.contains("n1") {
            n1_recovered_in_slot = true;
        }
        if updating.contains("n2") && n2_started.is_none() {
            n2_started = Some(revision);
            assert!(n1_recovered_in_slot, "n1 recovered before n2 started");
        }
    }
    assert!(n1_recovered_in_slot, "n1's recovery ran inside a slot");
    assert!(n2_started.is_some(), "n2 held a slot");
}

/// Fail closed: with etcd unreachable the crashed node's recovery does not
/// run (it could not take a slot), and the node stays as it was.
#[test]
fn recovery_does_not_run_without_a_slot() {
    let Some(mut etcd) = Etcd::start_or_skip("recovery_does_not_run_without_a_slot") else {
        return;
    };
    let (_ws, nodes, log) = fleet(&etcd);
    let n1 = &nodes[0];
    crash_after_switch(n1);
    etcd.stop();
    let out = n1.ferry(&["repair"]);
    assert!(!out.success(), "{out}");
    out.assert_stderr_contains("interrupted apply 1.0.0 -> 1.1.0");
    assert!(
        !hook_lines(&log).iter().any(|l| l == "end n1"),
        "post_apply did not run outside a slot"
    );
    assert!(
        n1.status_json()["interrupted_operation"].is_object(),
        "the interrupted operation is still there to recover: {:#}",
        n1.status_json()
    );

    // Once etcd answers, the same command recovers inside a slot.
    etcd.restart();
    n1.ferry(&["repair"])
        .assert_success()
        .assert_stderr_contains("recovered: interrupted apply 1.0.0 -> 1.1.0");
    assert!(hook_lines(&log).iter().any(|l| l == "end n1"));
    assert!(now_in(&etcd, "down").is_empty());
}

/// A node killed after its update was recorded live, before its turn
/// ended: still marked, so the next node waits; its recovery only closes
/// the journal, inside the slot, and gives it back without a verdict on
/// the version (no halt), and the next node goes.
#[test]
fn a_node_killed_after_recording_its_update_frees_its_slot_without_halting() {
    let Some(etcd) = Etcd::start_or_skip(
        "a_node_killed_after_recording_its_update_frees_its_slot_without_halting",
    ) else {
        return;
    };
    let (ws, nodes, _log) = fleet(&etcd);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    crash_at(n1, "conclude:recorded");
    assert_eq!(now_in(&etcd, "down"), BTreeSet::from(["n1".to_string()]));
    wait_until("n1's lease expired", || now_in(&etcd, "slots").is_empty());

    let n2_run = thread::spawn({
        let node = n2.clone();
        move || node.ferry(&["apply", "--unattended"])
    });
    wait_until("n2 queues", || now_in(&etcd, "slots").contains("n2"));
    thread::sleep(Duration::from_secs(3));
    assert!(now_in(&etcd, "updating").is_empty());
    assert_eq!(n2.current_version().as_deref(), Some("1.0.0"));

    n1.ferry(&["repair"])
        .assert_success()
        .assert_stderr_contains("recovered: interrupted apply 1.0.0 -> 1.1.0");
    n2_run.join().unwrap().assert_success();
    n1.assert_current("1.1.0", &ws.input(2));
    n2.assert_current("1.1.0", &ws.input(2));
    assert!(now_in(&etcd, "down").is_empty());
    assert!(
        etcd.get_prefix(&format!("{PREFIX}/halt"), None).is_empty(),
        "a recovery that only closed the journal halts nothing"
    );
}
