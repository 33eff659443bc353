//! The threat: a server that never fails a request but never finishes one
//! either — it stops sending after the headers (a stall) or sends a few
//! bytes now and then, just often enough that no single read times out (a
//! trickle) — holds the node, and the lock of every later update, forever.
//!
//! `[repository] stall_timeout_seconds` bounds the wait for any one read;
//! `min_bytes_per_second` bounds the average rate once a transfer has had
//! the stall timeout to get going. Each test checks the node gives up within
//! a bounded time with a message naming the setting, changes nothing, and
//! completes on the next run once the server behaves.

use std::time::{Duration, Instant};

use ferry_tests::http_server::Fault;
use ferry_tests::threats::{served, Unchanged, FAILED};

/// Two attempts of about one second each, their backoff and two process
/// starts, with a wide margin for a loaded machine.
const BOUND: Duration = Duration::from_secs(25);

/// A trickle well under the default 1024 bytes/s floor, but never silent
/// for as long as the one-second stall timeout.
fn trickle() -> Fault {
    Fault::Trickle {
        bytes: 16,
        every: Duration::from_millis(250),
        until: None,
    }
}

#[test]
fn a_trickled_object_fails_at_the_rate_floor_and_the_next_run_completes() {
    let s = served(|c| c.stall_timeout_seconds = Some(1));
    let before = s.on_release_1();
    let object = s.object(2, "bin/app");
    s.server.set_fault(&object, trickle());

    let started = Instant::now();
    let out = s.node.ferry(&["apply"]);
    let took = started.elapsed();
    before.assert_refused(
        &s.node,
        &out,
        FAILED,
        &["too slow", "min_bytes_per_second = 1024", &object],
    );
    assert!(took < BOUND, "took {took:?}\n{out}");
    s.node.assert_current("1.0.0", &s.ws.input(1));
    assert_eq!(s.node.status_json()["last_operation"]["outcome"], "failed");

    s.server.clear_faults();
    s.node.ferry_ok(&["apply"]);
    s.node.assert_current("1.1.0", &s.ws.input(2));
}

#[test]
fn a_trickled_index_fails_at_the_rate_floor() {
    let s = served(|c| c.stall_timeout_seconds = Some(1));
    let before = Unchanged::of(&s.node);
    s.server.set_fault_exact("index.json", trickle());

    let started = Instant::now();
    let out = s.node.ferry(&["apply"]);
    let took = started.elapsed();
    before.assert_refused(&s.node, &out, FAILED, &["index.json", "too slow"]);
    assert!(took < BOUND, "took {took:?}\n{out}");
    s.node.assert_root_untouched();
}

#[test]
fn a_stalled_manifest_fails_at_the_stall_timeout_not_the_request_timeout() {
    // timeout_seconds stays at its default (30 s): the stall timeout alone
    // must end the wait.
    let s = served(|c| c.stall_timeout_seconds = Some(1));
    let before = s.on_release_1();
    s.server
        .set_fault_exact("manifests/1.1.0.json", Fault::Stall(100));

    let started = Instant::now();
    let out = s.node.ferry(&["apply"]);
    let took = started.elapsed();
    before.assert_refused(
        &s.node,
        &out,
        FAILED,
        &["manifests/1.1.0.json", "stalled", "stall_timeout_seconds"],
    );
    assert!(took < BOUND, "took {took:?}\n{out}");
    let attempts = s
        .server
        .requests()
        .iter()
        .filter(|r| r.path == "manifests/1.1.0.json")
        .count();
    assert_eq!(attempts, 2, "a stall is transient: retried once\n{out}");

    s.server.clear_faults();
    s.node.ferry_ok(&["apply"]);
    s.node.assert_current("1.1.0", &s.ws.input(2));
}

#[test]
fn a_slow_start_above_the_floor_is_not_cut() {
    // 8 KiB every 100 ms for the first 96 KiB (about 80 KiB/s, past the one
    // second grace), then full speed: above the floor, so it must complete.
    let s = served(|c| c.stall_timeout_seconds = Some(1));
    let object = s.object(1, "bin/app");
    s.server.set_fault(
        &object,
        Fault::Trickle {
            bytes: 8 * 1024,
            every: Duration::from_millis(100),
            until: Some(96 * 1024),
        },
    );
    let out = s.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    s.node.assert_current("1.0.0", &s.ws.input(1));
    let gets: Vec<_> = s
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == object)
        .collect();
    assert_eq!(gets.len(), 1, "no attempt was cut: {gets:#?}\n{out}");
}
