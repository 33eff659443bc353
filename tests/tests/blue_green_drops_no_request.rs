//! The promise: with `strategy = "blue-green"`, clients never notice an
//! update. ferry starts the new release beside the old one on the same
//! port (SO_REUSEPORT), waits for it to answer healthy with its own
//! version, and only then stops the old one, which finishes what it
//! accepted; a load generator hammering the port the whole time sees no
//! failed request. A candidate that fails its health check is stopped and
//! the old release never stopped serving.
//!
//! Everything runs in a network namespace the test makes, with
//! `net.ipv4.tcp_migrate_req=1` (connections still queued on a closing
//! SO_REUSEPORT listener move to its sibling instead of being reset).

use std::net::SocketAddr;
use std::time::Duration;

use ferry_tests::binaries::demo_load;
use ferry_tests::blue_green::{namespace, serving_1_0_0_with_failing_2_0_0, BlueGreenNode, ADDR};
use ferry_tests::demo::demo_release;
use ferry_tests::fixtures::{Workspace, CHANNEL};
use ferry_tests::load::start_demo_load;

#[test]
fn a_blue_green_update_under_load_fails_no_request() {
    let Some(ns) = namespace("a_blue_green_update_under_load_fails_no_request") else {
        return;
    };
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let node = BlueGreenNode::new(&ws, &ns);
    node.ferry(&["apply", "--version", "1.0.0"])
        .assert_success();
    assert_eq!(node.running(), ["1.0.0"]);

    let addr: SocketAddr = ADDR.parse().unwrap();
    let load = start_demo_load(ns.command(demo_load()), addr, 4, Duration::from_secs(6));
    std::thread::sleep(Duration::from_millis(1500));
    let out = node.ferry(&["apply"]);
    out.assert_success();
    let report = load.finish();

    assert_eq!(
        report.failed, 0,
        "requests failed during the blue-green update: {:?}\n{out}",
        report.errors
    );
    assert!(report.ok > 100, "the load generator barely ran: {report:?}");
    assert!(
        report.versions.contains_key("1.0.0") && report.versions.contains_key("2.0.0"),
        "clients should have been served by both releases: {report:?}"
    );
    assert_eq!(node.running(), ["2.0.0"], "the old instance was stopped");
    assert_eq!(node.node.current_version().as_deref(), Some("2.0.0"));
}

#[test]
fn an_unhealthy_candidate_is_stopped_while_the_old_release_keeps_serving() {
    let Some(ns) = namespace("an_unhealthy_candidate_is_stopped") else {
        return;
    };
    let (_ws, node) = serving_1_0_0_with_failing_2_0_0(&ns);

    let addr: SocketAddr = ADDR.parse().unwrap();
    let load = start_demo_load(ns.command(demo_load()), addr, 4, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let out = node.ferry(&["apply"]);
    let report = load.finish();
    assert_eq!(out.code, Some(6), "{out}");
    assert!(out.stderr.contains("2.0.0 is not healthy"), "{out}");
    assert_eq!(
        node.running(),
        ["1.0.0"],
        "the candidate was stopped\n{out}"
    );
    assert_eq!(node.node.current_version().as_deref(), Some("1.0.0"));
    // Requests the candidate answered while it was up got its 200
    // `/version`; what matters is that none failed.
    assert_eq!(report.failed, 0, "{:?}\n{out}", report.errors);
}

/// The threat: a crash on the way back from a failed candidate, then a
/// recovery that starts the old release again while its first instance
/// still serves: two copies of a database on one port, one of them
/// orphaned. Recovery asks the health URL first, and leaves a serving old
/// instance alone.
#[test]
fn a_crash_on_the_way_back_leaves_one_old_instance() {
    let Some(ns) = namespace("a_crash_on_the_way_back_leaves_one_old_instance") else {
        return;
    };
    let (_ws, node) = serving_1_0_0_with_failing_2_0_0(&ns);
    assert_eq!(node.instances("1.0.0"), 1);

    // The candidate fails its gate; ferry is killed right after switching
    // back, before it stopped the candidate.
    let killed = node
        .ferry_command(
            ferry_tests::binaries::ferry_with_fault_injection(),
            &["apply"],
        )
        .env("FERRY_CRASH_AT", "apply:switched-back")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert_eq!(node.instances("2.0.0"), 1, "the candidate still runs");

    // The next run recovers: the candidate goes, the old instance stays
    // the only one.
    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    out.assert_success();
    out.assert_stdout_or_stderr_contains("rolled back to 1.0.0");
    assert_eq!(node.instances("2.0.0"), 0, "{out}");
    assert_eq!(node.instances("1.0.0"), 1, "one old instance\n{out}");
    assert_eq!(node.running(), ["1.0.0"]);
    assert_eq!(node.node.current_version().as_deref(), Some("1.0.0"));
}
