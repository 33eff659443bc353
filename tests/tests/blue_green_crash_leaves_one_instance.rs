//! The threat: blue-green runs two instances on one port for a while, so
//! every slip in telling them apart ends in two copies of the service (one
//! of them no longer tracked) or in none. The promises:
//! - ferry killed at the switch or at any later crash point of a
//!   blue-green update, then `ferry apply`: exactly one instance serves,
//!   the new one; recovery asks the health check before starting anything;
//! - a `stop_command` that fails is not taken at its word: ferry asks
//!   whether the old instance still answers before choosing what to stop;
//! - a candidate that crashes on start is reported as such, with the old
//!   release (which served throughout) healthy;
//! - blue-green whose health check cannot tell the candidate from the old
//!   instance is refused when the configuration is loaded.

use std::fs;

use ferry_demo_service::commands::blue_green_commands;
use ferry_tests::binaries;
use ferry_tests::blue_green::{namespace, BlueGreenNode, ADDR};
use ferry_tests::crash_walk;
use ferry_tests::demo::demo_release;
use ferry_tests::fixtures::{Workspace, CHANNEL};

/// A node in `ns` serving 1.0.0, with a healthy 2.0.0 published.
fn serving_1_0_0<'a>(
    ws: &Workspace,
    ns: &'a ferry_tests::netns::NetworkNamespace,
    name: &str,
) -> BlueGreenNode<'a> {
    let node = BlueGreenNode::named(ws, ns, name);
    node.ferry(&["apply", "--version", "1.0.0"])
        .assert_success();
    assert_eq!(node.instances("1.0.0"), 1);
    node
}

fn workspace_with_1_0_0_and_2_0_0() -> Workspace {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    ws
}

/// Every crash point of a blue-green update from the switch of `current`
/// on, discovered by one uninterrupted run.
fn points_from_the_switch_on(ws: &Workspace) -> Vec<String> {
    let ns = namespace("blue_green_crash_discovery").expect("a namespace");
    let node = serving_1_0_0(ws, &ns, "discover");
    let log = node.node.dir.join("points.log");
    let lines = crash_walk::discover(
        &mut node.fault_command(&["apply"]),
        &log,
        "a blue-green update",
    );
    crash_walk::from_the_switch_on(&lines).to_vec()
}

#[test]
fn a_crash_at_the_switch_or_later_leaves_one_instance_serving() {
    if namespace("a_crash_at_the_switch_or_later_leaves_one_instance_serving").is_none() {
        return;
    }
    let ws = workspace_with_1_0_0_and_2_0_0();
    let points = points_from_the_switch_on(&ws);
    assert!(points.len() >= 10, "too few crash points: {points:?}");
    for (i, point) in points.iter().enumerate() {
        // A namespace per case: no instance of an earlier case can answer.
        let ns = namespace("a_crash_at_the_switch_or_later").expect("a namespace");
        let node = serving_1_0_0(&ws, &ns, &format!("n{i}"));
        crash_walk::kill_at(&mut node.fault_command(&["apply"]), point, "apply");

        let out = node.ferry(&["apply"]);
        out.assert_success();
        let case = format!("killed at {point}, then `ferry apply`:\n{out}");
        assert_eq!(node.instances("2.0.0"), 1, "one new instance; {case}");
        assert_eq!(node.instances("1.0.0"), 0, "no old instance; {case}");
        assert_eq!(node.running(), ["2.0.0"], "{case}");
        assert_eq!(
            node.node.current_version().as_deref(),
            Some("2.0.0"),
            "{case}"
        );
        drop(node);
    }
}

/// Replaces the node's `stop_command` (the demo one) with `change(stop)`.
fn change_stop_command(node: &BlueGreenNode<'_>, change: impl FnOnce(&str) -> String) {
    let (_, stop) = blue_green_commands(ADDR, &node.pid_dir, &node.node.dir.join("demo.log"));
    node.edit_config(
        &format!("stop_command = {stop:?}"),
        &format!("stop_command = {:?}", change(&stop)),
    );
}

#[test]
fn a_stop_command_that_times_out_after_stopping_the_old_instance_leaves_the_new_one_serving() {
    let Some(ns) = namespace("a_stop_command_that_times_out") else {
        return;
    };
    let ws = workspace_with_1_0_0_and_2_0_0();
    let node = serving_1_0_0(&ws, &ns, "n1");
    // The old instance really stops; the command then hangs past its
    // deadline.
    change_stop_command(&node, |stop| format!("{stop}; sleep 30"));
    node.edit_config(
        "command_timeout_seconds = 20",
        "command_timeout_seconds = 2",
    );

    let out = node.ferry(&["apply"]);
    out.assert_success();
    assert_eq!(node.running(), ["2.0.0"], "{out}");
    assert_eq!(node.instances("2.0.0"), 1, "{out}");
    assert_eq!(node.instances("1.0.0"), 0, "{out}");
    assert_eq!(node.node.current_version().as_deref(), Some("2.0.0"));
}

#[test]
fn a_stop_command_that_fails_with_the_old_instance_still_answering_keeps_the_old_one() {
    let Some(ns) = namespace("a_stop_command_that_fails_with_the_old_instance") else {
        return;
    };
    let ws = workspace_with_1_0_0_and_2_0_0();
    let node = serving_1_0_0(&ws, &ns, "n1");
    change_stop_command(&node, |stop| {
        format!("if [ {{version}} = 1.0.0 ]; then echo cannot stop >&2; exit 1; fi; {stop}")
    });

    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(6), "{out}");
    out.assert_stderr_contains("2.0.0 is healthy but 1.0.0 did not stop");
    out.assert_stderr_contains("1.0.0 is healthy again");
    assert_eq!(node.running(), ["1.0.0"], "the candidate went\n{out}");
    assert_eq!(node.instances("1.0.0"), 1, "{out}");
    assert_eq!(node.instances("2.0.0"), 0, "{out}");
    assert_eq!(node.node.current_version().as_deref(), Some("1.0.0"));
}

#[test]
fn a_candidate_that_crashes_on_start_is_reported_with_the_old_release_healthy() {
    let Some(ns) = namespace("a_candidate_that_crashes_on_start") else {
        return;
    };
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    // 2.0.0's settings file is one the demo service refuses: it exits at
    // once, before it listens or writes its pid file.
    let broken = ws.dir.join("inputs/demo-2.0.0-broken");
    fs::create_dir_all(broken.join("bin")).unwrap();
    fs::copy(binaries::demo_service(), broken.join("bin/demo-service")).unwrap();
    fs::write(
        broken.join("demo.toml"),
        "version = \"2.0.0\"\nno_such_setting = true\n",
    )
    .unwrap();
    ws.publish("2.0.0", CHANNEL, &broken);
    let node = serving_1_0_0(&ws, &ns, "n1");
    node.edit_config(
        "retries = 100\ntimeout_seconds = 15",
        "retries = 20\ntimeout_seconds = 3",
    );

    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(6), "{out}");
    out.assert_stderr_contains("2.0.0 is not healthy");
    out.assert_stderr_contains("1.0.0 is healthy again");
    assert!(
        !out.stderr.contains("could not be brought back"),
        "the old release served throughout\n{out}"
    );
    assert_eq!(node.running(), ["1.0.0"], "{out}");
    assert_eq!(node.instances("1.0.0"), 1, "{out}");
    assert_eq!(node.node.current_version().as_deref(), Some("1.0.0"));
}

#[test]
fn blue_green_whose_health_check_cannot_tell_releases_apart_is_refused_at_config_load() {
    // No namespace needed: the configuration is refused before anything runs.
    let ws = Workspace::new();
    let node = ws.node("n1");
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(
        "\n[service]\nstrategy = \"blue-green\"\nstart_command = \"start {version}\"\nstop_command = \"stop {version}\"\n\
         [health]\nurl = \"http://127.0.0.1:8080/health\"\n",
    );
    fs::write(&node.config, &config).unwrap();

    let out = node.ferry(&["check"]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_contains("health.expect_version = true");
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "one line names the key\n{out}"
    );
    assert!(!node.state_dir.exists(), "nothing was created\n{out}");

    // Naming the version in the health answer is what it asks for.
    fs::write(
        &node.config,
        config.replace(
            "url = \"http://127.0.0.1:8080/health\"\n",
            "url = \"http://127.0.0.1:8080/health\"\nexpect_version = true\n",
        ),
    )
    .unwrap();
    let out = node.ferry(&["check"]);
    assert!(!out.stderr.contains("expect_version"), "{out}");
}
