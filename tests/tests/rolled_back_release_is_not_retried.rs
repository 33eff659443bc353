//! The promise: a release this node put live and rolled back by itself is
//! not tried again by the timer. Without it every hourly `ferry apply
//! --unattended` restarts the service onto the bad release, rolls back,
//! exits 6 and pages again. An unattended run defers it (exit 0, nothing
//! recorded, nothing announced) until a newer release is published, which
//! it then installs, or an operator names it (`ferry apply --version V`).
//! `ferry check` and `ferry status` show it as rolled back here, with when
//! and why.
//!
//! 2.0.0's `post_apply` fails while a marker file exists, so the release
//! goes live, fails, and is rolled back (exit 6) like a bad build would.

use std::fs;
use std::path::PathBuf;

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::webhook::WebhookReceiver;
use serde_json::Value;

/// Exit status of `ferry check` for an update the policy defers.
const CHECK_DEFERRED: i32 = 11;

struct Setup {
    ws: Workspace,
    node: Node,
    hooks: WebhookReceiver,
    /// While it exists, 2.0.0's `post_apply` fails.
    broken: PathBuf,
}

/// 1.0.0 and 2.0.0 published, the node on 1.0.0, a webhook receiver.
fn setup() -> Setup {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    ws.publish("2.0.0", CHANNEL, &ws.input(2));
    let node = ws.node("db");
    let hooks = WebhookReceiver::start();
    let broken = node.dir.join("broken");
    fs::write(&broken, "").unwrap();
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!(
        "\n[service]\nstrategy = \"none\"\npost_apply = \"test ! -e {} || test \\\"$FERRY_TO_VERSION\\\" != 2.0.0\"\n\n[[notify]]\nurl = \"{}\"\n",
        broken.display(),
        hooks.url("hook")
    ));
    fs::write(&node.config, config).unwrap();
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    Setup {
        ws,
        node,
        hooks,
        broken,
    }
}

fn events(hooks: &WebhookReceiver) -> Vec<String> {
    hooks
        .delivered_to("hook")
        .iter()
        .map(|d| d["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The first unattended run meets the bad release: live, failed, rolled back.
fn roll_back_2_0_0(s: &Setup) {
    s.node
        .ferry(&["apply", "--unattended"])
        .assert_code(6)
        .assert_stderr_contains("post_apply");
    assert_eq!(s.node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(events(&s.hooks), ["applied", "rolled_back"]);
}

#[test]
fn an_automatic_rollback_is_not_retried_unattended_until_a_newer_release() {
    let s = setup();
    roll_back_2_0_0(&s);
    let records = s.node.history_json().len();

    // The timer's next runs: deferred, exit 0, the node untouched, nothing
    // recorded and nothing announced, even once the failure would pass.
    fs::remove_file(&s.broken).unwrap();
    for _ in 0..2 {
        let out = s.node.ferry(&["apply", "--unattended"]);
        out.assert_success()
            .assert_stdout_contains("2.0.0 was rolled back on this node at");
        assert_eq!(s.node.current_version().as_deref(), Some("1.0.0"));
    }
    assert_eq!(
        s.node.history_json().len(),
        records,
        "a deferral records nothing"
    );
    assert_eq!(
        events(&s.hooks),
        ["applied", "rolled_back"],
        "announced once"
    );

    // `check` says so: available, not now, when and why.
    let check = s.node.ferry(&["check", "--json"]);
    check.assert_code(CHECK_DEFERRED);
    let report: Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(report["target"], "2.0.0");
    assert_eq!(report["update_available"], true);
    assert_eq!(report["policy_allows_now"], false);
    assert!(report["next_allowed_at"].is_null(), "{report:#}");
    let here = &report["rolled_back_here"];
    assert_eq!(here["version"], "2.0.0");
    assert!(
        here["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{here}"
    );
    assert!(
        here["reason"].as_str().unwrap().contains("post_apply"),
        "{here}"
    );
    s.node
        .ferry(&["check"])
        .assert_code(CHECK_DEFERRED)
        .assert_stdout_contains("2.0.0 was rolled back on this node at");

    // `status` too, in JSON and for people.
    let status = s.node.status_json();
    let listed = status["rolled_back_here"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{status:#}");
    assert_eq!(listed[0]["version"], "2.0.0");
    assert_eq!(listed[0]["at"], here["at"]);
    s.node
        .ferry_ok(&["status"])
        .assert_stdout_contains("rolled back here: 2.0.0 was rolled back on this node at");

    // A newer release is chosen and installed by the timer.
    s.ws.publish("2.0.1", CHANNEL, &s.ws.input(3));
    s.node.ferry_ok(&["apply", "--unattended"]);
    assert_eq!(s.node.current_version().as_deref(), Some("2.0.1"));
    assert_eq!(events(&s.hooks), ["applied", "rolled_back", "applied"]);
    // 2.0.0 stays remembered (it was never installed) but no longer stands
    // between the node and its updates.
    s.node
        .ferry_ok(&["apply", "--unattended"])
        .assert_stdout_contains("already at 2.0.1");
}

#[test]
fn an_operator_who_names_the_release_tries_it_again() {
    let s = setup();
    roll_back_2_0_0(&s);
    fs::remove_file(&s.broken).unwrap();

    // A plain operator's run still installs the channel's latest now; the
    // unattended timer is what the memory holds back. Naming it, even
    // from the timer's command line, is the operator's decision.
    s.node
        .ferry_ok(&["apply", "--unattended", "--version", "2.0.0"]);
    assert_eq!(s.node.current_version().as_deref(), Some("2.0.0"));
    let status = s.node.status_json();
    assert_eq!(
        status["rolled_back_here"],
        Value::Array(vec![]),
        "{status:#}"
    );
    s.node
        .ferry_ok(&["apply", "--unattended"])
        .assert_stdout_contains("already at 2.0.0");
    assert_eq!(
        events(&s.hooks),
        ["applied", "rolled_back", "applied"],
        "one announcement per operation"
    );
}
