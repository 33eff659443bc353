//! The promise: a node's `[policy]` decides which release it runs and when
//! the timer may install it. An unattended run (`ferry apply --unattended`)
//! outside the maintenance window, or before a release has soaked, installs
//! nothing, says why and when it may, records no failure and exits 0; inside
//! the window it installs. An operator's plain `ferry apply` installs now.
//! A release signed `critical` skips the window and the soak only on nodes
//! with `critical_bypasses_windows`, and never a blackout date.
//! Version rules (`exclude_versions`) bind everyone unless
//! `--ignore-policy`. `ferry check` reports all of it, with exit 10
//! (install now), 11 (deferred) or 0 (nothing the policy allows).
//!
//! The repository is dated with `SOURCE_DATE_EPOCH` and the node's clock
//! moved with `FERRY_NOW` (read only by the fault-injection build), so the
//! window is hit or missed on purpose, not by the time the suite runs.

use std::fs;
use std::io::Write;

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::Output;
use serde_json::Value;

/// 1.0.0 published Monday 2030-06-03 00:00 UTC, 2.0.0 at 06:00 UTC.
const PUBLISHED_1: &str = "2030-06-03T00:00:00Z";
const PUBLISHED_2: &str = "2030-06-03T06:00:00Z";
/// Monday 14:00 in Berlin (CEST, UTC+2): outside a Tuesday night window.
const MONDAY_AFTERNOON: &str = "2030-06-03T12:00:00Z";
/// Tuesday 02:00 in Berlin: the window below opens.
const TUESDAY_WINDOW_OPENS: &str = "2030-06-04T00:00:00Z";
/// Tuesday 03:00 in Berlin: inside it.
const TUESDAY_IN_WINDOW: &str = "2030-06-04T01:00:00Z";

const TUESDAY_NIGHTS: &str = r#"
timezone = "Europe/Berlin"
windows = [{ days = ["tue"], start = "02:00", end = "04:00" }]
"#;

fn epoch(at: &str) -> String {
    at.parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
        .to_string()
}

/// A repository with 1.0.0 and 2.0.0, each dated by `SOURCE_DATE_EPOCH`.
fn repository() -> Workspace {
    repository_with(&[])
}

/// [`repository`], 2.0.0 published with `extra` arguments.
fn repository_with(extra: &[&str]) -> Workspace {
    let ws = Workspace::new();
    for (version, generation, at) in [("1.0.0", 1, PUBLISHED_1), ("2.0.0", 2, PUBLISHED_2)] {
        let mut release = ws.release_command(version, CHANNEL, &ws.input(generation));
        if version == "2.0.0" {
            release.args(extra);
        }
        let out = ferry_tests::run::run(release.env("SOURCE_DATE_EPOCH", epoch(at)));
        out.assert_success();
    }
    ws
}

/// A node with `policy` as its `[policy]` table, running 1.0.0 (installed
/// by an operator before the policy matters).
fn node_on_v1(ws: &Workspace, name: &str, policy: &str) -> Node {
    let node = ws.node(name);
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(&node.config)
        .unwrap();
    write!(config, "\n[policy]\n{policy}\n").unwrap();
    node.ferry_at(PUBLISHED_2, &["apply", "--version", "1.0.0"])
        .assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    node
}

/// `ferry check --json` at `now`: its exit code and report.
fn check(node: &Node, now: &str) -> (i32, Value) {
    let out = node.ferry_at(now, &["check", "--json"]);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e})\n{out}"));
    (out.code.expect("check exited"), report)
}

/// Asserts that an unattended run deferred: exit 0, one line naming the
/// version, the `why` and `next allowed at <next>`, nothing installed,
/// nothing recorded.
#[track_caller]
fn assert_deferred(node: &Node, out: &Output, why: &str, next: &str) {
    out.assert_success()
        .assert_stdout_contains("not installing 2.0.0 now")
        .assert_stdout_contains(why)
        .assert_stdout_contains(&format!("next allowed at {next}"));
    assert_eq!(out.stdout.lines().count(), 1, "one line, said once\n{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(node.releases_on_disk(), ["1.0.0"], "nothing was staged");
    let history = node.history_json();
    assert_eq!(
        history.len(),
        1,
        "a deferral records nothing, only the first install is in the history: {history:#?}"
    );
}

#[test]
fn unattended_runs_wait_for_the_window_and_say_when() {
    let ws = repository();
    let node = node_on_v1(&ws, "timer", TUESDAY_NIGHTS);

    let (code, report) = check(&node, MONDAY_AFTERNOON);
    assert_eq!(code, 11, "deferred by policy: {report:#}");
    assert_eq!(report["installed"], "1.0.0", "{report:#}");
    assert_eq!(report["latest"], "2.0.0", "{report:#}");
    assert_eq!(report["target"], "2.0.0", "{report:#}");
    assert_eq!(report["update_available"], true, "{report:#}");
    assert_eq!(report["policy_allows_now"], false, "{report:#}");
    assert_eq!(
        report["next_allowed_at"], TUESDAY_WINDOW_OPENS,
        "{report:#}"
    );
    let reason = report["policy_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("outside the maintenance windows (tue 02:00-04:00 Europe/Berlin)"),
        "{report:#}"
    );

    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"]);
    assert_deferred(
        &node,
        &out,
        "outside the maintenance windows",
        TUESDAY_WINDOW_OPENS,
    );
    // The local time too, for the operator reading the journal.
    out.assert_stdout_contains("(2030-06-04 02:00 Europe/Berlin)");

    // In the window: allowed, and installed.
    let (code, report) = check(&node, TUESDAY_IN_WINDOW);
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(report["policy_allows_now"], true, "{report:#}");
    assert_eq!(report["policy_reason"], Value::Null, "{report:#}");
    assert_eq!(report["next_allowed_at"], Value::Null, "{report:#}");
    node.ferry_at(TUESDAY_IN_WINDOW, &["apply", "--unattended"])
        .assert_success()
        .assert_stdout_contains("updated 1.0.0 -> 2.0.0");
    node.assert_current("2.0.0", &ws.input(2));
    let (code, report) = check(&node, TUESDAY_IN_WINDOW);
    assert_eq!(code, 0, "up to date: {report:#}");
    assert_eq!(report["update_available"], false, "{report:#}");
}

#[test]
fn a_critical_release_skips_window_and_soak_when_allowed_but_never_a_blackout() {
    let ws = repository_with(&["--critical"]);
    let strict = format!("{TUESDAY_NIGHTS}soak_hours = 24\n");
    let allowing = format!("{strict}critical_bypasses_windows = true\n");
    let frozen = format!("{allowing}blackout_dates = [\"2030-06-03\"]\n");

    // Monday afternoon: 6 h into a 24 h soak, outside the Tuesday window.
    let node = node_on_v1(&ws, "allowing", &allowing);
    let (code, report) = check(&node, MONDAY_AFTERNOON);
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(report["policy_allows_now"], true, "{report:#}");
    node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"])
        .assert_success()
        .assert_stdout_contains("updated 1.0.0 -> 2.0.0");
    node.assert_current("2.0.0", &ws.input(2));

    // Without the node's consent, critical changes nothing: the window
    // and the soak both still hold it back (24 h after 06:00 Monday is
    // Tuesday 08:00 Berlin, so the next Tuesday window opens a week later).
    let node = node_on_v1(&ws, "strict", &strict);
    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"]);
    assert_deferred(
        &node,
        &out,
        "outside the maintenance windows",
        "2030-06-11T00:00:00Z",
    );

    // A blackout binds even a critical release the node lets through,
    // until the local day ends (the window is still bypassed then).
    let node = node_on_v1(&ws, "frozen", &frozen);
    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"]);
    assert_deferred(
        &node,
        &out,
        "2030-06-03 is a blackout date",
        "2030-06-03T22:00:00Z",
    );
    out.assert_stdout_contains("(2030-06-04 00:00 Europe/Berlin)");
}

#[test]
fn an_operator_installs_outside_the_window() {
    let ws = repository();
    let node = node_on_v1(&ws, "operator", TUESDAY_NIGHTS);
    node.ferry_at(MONDAY_AFTERNOON, &["apply"])
        .assert_success()
        .assert_stdout_contains("updated 1.0.0 -> 2.0.0");
    node.assert_current("2.0.0", &ws.input(2));
}

#[test]
fn a_release_waits_for_its_soak() {
    let ws = repository();
    let node = node_on_v1(&ws, "soak", "soak_hours = 24");
    // 2.0.0 was published at 06:00: it soaks until 06:00 the next day.
    let soaked = "2030-06-04T06:00:00Z";

    let (code, report) = check(&node, MONDAY_AFTERNOON);
    assert_eq!(code, 11, "{report:#}");
    assert_eq!(report["next_allowed_at"], soaked, "{report:#}");
    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"]);
    assert_deferred(&node, &out, &format!("soaking until {soaked}"), soaked);

    // A second before the end it still waits; at the end it installs.
    let out = node.ferry_at("2030-06-04T05:59:59Z", &["apply", "--unattended"]);
    assert_deferred(&node, &out, "soaking", soaked);
    node.ferry_at(soaked, &["apply", "--unattended"])
        .assert_success();
    node.assert_current("2.0.0", &ws.input(2));
}

#[test]
fn an_excluded_version_is_never_the_target() {
    let ws = repository();
    let node = node_on_v1(&ws, "excluded", r#"exclude_versions = ["2.0.0"]"#);

    let (code, report) = check(&node, MONDAY_AFTERNOON);
    assert_eq!(code, 0, "nothing the policy allows is newer: {report:#}");
    assert_eq!(report["latest"], "2.0.0", "{report:#}");
    assert_eq!(report["target"], "1.0.0", "{report:#}");
    assert_eq!(report["update_available"], false, "{report:#}");

    for args in [&["apply", "--unattended"][..], &["apply"]] {
        node.ferry_at(MONDAY_AFTERNOON, args)
            .assert_success()
            .assert_stdout_contains("already at 1.0.0");
        node.assert_current("1.0.0", &ws.input(1));
    }

    // Asked for by name, it is refused with the rule and the way out...
    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--version", "2.0.0"]);
    out.assert_code(8)
        .assert_stderr_contains("2.0.0 is not allowed by the policy")
        .assert_stderr_contains("policy.exclude_versions")
        .assert_stderr_contains("--ignore-policy");
    node.assert_current("1.0.0", &ws.input(1));

    // ...which overrides it for this run.
    node.ferry_at(
        MONDAY_AFTERNOON,
        &["apply", "--version", "2.0.0", "--ignore-policy"],
    )
    .assert_success();
    node.assert_current("2.0.0", &ws.input(2));
}

#[test]
fn auto_false_reports_but_never_installs_unattended() {
    let ws = repository();
    let node = node_on_v1(&ws, "manual", "auto = false");
    let (code, report) = check(&node, MONDAY_AFTERNOON);
    assert_eq!(code, 11, "{report:#}");
    assert_eq!(report["next_allowed_at"], Value::Null, "{report:#}");
    let out = node.ferry_at(MONDAY_AFTERNOON, &["apply", "--unattended"]);
    out.assert_success()
        .assert_stdout_contains("policy.auto = false")
        .assert_stdout_contains("it will not install unattended");
    node.assert_current("1.0.0", &ws.input(1));
}
