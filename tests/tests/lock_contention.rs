//! The threat: two ferry runs on one node at once (a timer and an operator,
//! two timers) interleave their writes and leave a half-switched install.
//! Exactly one may proceed; the other must stop at once with exit 75 and
//! say why, and the winner's result must be intact.

use std::thread;
use std::time::Duration;

use ferry_tests::fixtures::{NodeConfig, Workspace};
use ferry_tests::http_server::{Fault, TestServer};

/// Exit code when another ferry operation holds the lock (contract).
const LOCKED: i32 = 75;

#[test]
fn concurrent_applies_one_wins_one_gets_75() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let server = TestServer::serve(&ws.repo);
    // Every request is slow, so whichever run takes the lock holds it for
    // several seconds while the other one starts.
    server.set_fault("", Fault::Delay(Duration::from_millis(400)));
    let node = ws.node_with("busy", NodeConfig::new(server.url(), &ws.public_key));

    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| node.ferry(&["apply"]));
        thread::sleep(Duration::from_millis(50));
        let b = s.spawn(|| node.ferry(&["apply"]));
        (a.join().unwrap(), b.join().unwrap())
    });

    let codes = [a.code, b.code];
    let winners = codes.iter().filter(|c| **c == Some(0)).count();
    let losers: Vec<_> = [&a, &b]
        .into_iter()
        .filter(|o| o.code == Some(LOCKED))
        .collect();
    assert!(
        winners == 1 && losers.len() == 1,
        "expected exactly one success and one exit {LOCKED}, got {codes:?}\nfirst run:\n{a}\nsecond run:\n{b}"
    );
    losers[0].assert_stderr_contains("another ferry operation is running");

    server.clear_faults();
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(node.status_json()["current_version"], "1.0.0");
}

/// An update racing a rollback and a second update on a node that has two
/// releases: exactly one of the three runs, the other two get exit 75, and
/// the node ends on the winner's result with its journal closed.
#[test]
fn apply_racing_rollback_and_apply_exactly_one_runs() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    ws.publish("1.1.0", "stable", &ws.input(2));
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("race", NodeConfig::new(server.url(), &ws.public_key));
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);
    node.ferry_ok(&["rollback"]);
    // Now on 1.0.0 with 1.1.0 on disk: `apply` and `rollback --to 1.1.0`
    // would both move the node to 1.1.0; `apply` fetches slowly.
    ws.publish("1.2.0", "stable", &ws.input(3));
    server.set_fault("", Fault::Delay(Duration::from_millis(400)));

    let runs = thread::scope(|s| {
        let first = s.spawn(|| node.ferry(&["apply"]));
        thread::sleep(Duration::from_millis(100));
        let rollback = s.spawn(|| node.ferry(&["rollback", "--to", "1.1.0"]));
        let second = s.spawn(|| node.ferry(&["apply"]));
        [
            first.join().unwrap(),
            rollback.join().unwrap(),
            second.join().unwrap(),
        ]
    });
    let codes: Vec<_> = runs.iter().map(|o| o.code).collect();
    let winners: Vec<usize> = (0..3).filter(|&i| runs[i].code == Some(0)).collect();
    let locked = runs.iter().filter(|o| o.code == Some(LOCKED)).count();
    assert!(
        winners.len() == 1 && locked == 2,
        "expected one success and two exit {LOCKED}, got {codes:?}\n{}\n{}\n{}",
        runs[0],
        runs[1],
        runs[2]
    );
    for (i, run) in runs.iter().enumerate() {
        if i != winners[0] {
            run.assert_stderr_contains("another ferry operation is running");
        }
    }
    server.clear_faults();
    let expected = match winners[0] {
        1 => ("1.1.0", 2),
        _ => ("1.2.0", 3),
    };
    node.assert_current(expected.0, &ws.input(expected.1));
    assert!(!node.state_dir.join("journal.json").exists());
    assert_eq!(node.status_json()["current_version"], expected.0);
}
