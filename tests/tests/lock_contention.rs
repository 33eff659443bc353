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
