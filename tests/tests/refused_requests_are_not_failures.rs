//! The promise: a request ferry turns down before anything starts — a
//! `--version` the channel does not publish (a typo), a downgrade without
//! `--allow-downgrade`, a version `[policy]` does not allow — is a refusal,
//! not a failure: exit 8, `refused` in the history and as the last JSON
//! event, and no `failed` notification, so nobody is paged for a typo on a
//! healthy node. `ferry preflight --version` with a version not published
//! and `ferry check` on a channel the repository lacks are refused the
//! same way (exit 8, the `refused` event), recording nothing. And a new
//! release whose live tree does not match its manifest right after the
//! switch is rolled back and says so with exit 6, like every other
//! automatic rollback.
//!
//! Real `ferry-publish` releases, the real `ferry` binary, a webhook
//! receiver on 127.0.0.1 recording every notification.

use std::fs;

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::Output;
use ferry_tests::threats::REFUSED;
use ferry_tests::webhook::WebhookReceiver;
use serde_json::Value;

const ROLLED_BACK: i32 = 6;

/// Appends `text` (TOML tables) to the node's configuration.
fn configure(node: &Node, text: &str) {
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push('\n');
    config.push_str(text);
    fs::write(&node.config, config).unwrap();
}

/// 1.0.0 and 1.1.0 published; a node on `installed`, with a receiver of
/// every notification.
fn node_on(installed: &str) -> (Workspace, Node, WebhookReceiver) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n1");
    let hooks = WebhookReceiver::start();
    configure(
        &node,
        &format!("[[notify]]\nurl = \"{}\"\n", hooks.url("all")),
    );
    node.ferry_ok(&["apply", "--version", installed]);
    (ws, node, hooks)
}

fn last_event(out: &Output) -> Value {
    let line = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON event ({e})\n{out}"))
}

/// A read-only command asked for something not on offer: exit 8, a
/// `refused` final event whose message mentions `mention`, nothing
/// recorded, nothing announced.
#[track_caller]
fn assert_read_only_refused(node: &Node, hooks: &WebhookReceiver, args: &[&str], mention: &str) {
    let sent_before = hooks.deliveries().len();
    let history_before = node.history_json();
    let mut json_args = vec!["--output", "json"];
    json_args.extend_from_slice(args);
    let out = node.ferry(&json_args);
    out.assert_code(REFUSED);
    let last = last_event(&out);
    assert_eq!(last["event"], "refused", "{out}");
    assert_eq!(last["exit_code"], REFUSED, "{out}");
    assert!(last["message"].as_str().unwrap().contains(mention), "{out}");
    node.ferry(args)
        .assert_code(REFUSED)
        .assert_stderr_contains(mention);
    assert_eq!(
        node.history_json(),
        history_before,
        "a read-only command recorded"
    );
    assert_eq!(
        hooks.deliveries().len(),
        sent_before,
        "a refusal was announced"
    );
}

/// The request was refused: exit 8, a `refused` final event whose message
/// mentions `mention`, a `refused` record for `to_version`, nothing changed
/// and no notification sent.
#[track_caller]
fn assert_refused(
    ws: &Workspace,
    node: &Node,
    hooks: &WebhookReceiver,
    args: &[&str],
    mention: &str,
    to_version: Option<&str>,
) {
    let sent_before = hooks.deliveries().len();
    let history_before = node.history_json().len();
    let mut json_args = vec!["--output", "json"];
    json_args.extend_from_slice(args);
    let out = node.ferry(&json_args);
    out.assert_code(REFUSED);
    assert!(!out.stderr.contains("panicked"), "{out}");
    let last = last_event(&out);
    assert_eq!(last["event"], "refused", "{out}");
    assert_eq!(last["exit_code"], REFUSED, "{out}");
    assert!(last["message"].as_str().unwrap().contains(mention), "{out}");
    node.assert_current("1.0.0", &ws.input(1));

    let history = node.history_json();
    assert_eq!(history.len(), history_before + 1, "{history:#?}");
    let record = history.last().unwrap();
    assert_eq!(record["outcome"], "refused", "{record:#}");
    assert_eq!(record["to_version"].as_str(), to_version, "{record:#}");
    node.ferry_ok(&["status"]).assert_stdout_contains("REFUSED");
    node.ferry_ok(&["history"])
        .assert_stdout_contains("REFUSED");

    let sent: Vec<Value> = hooks.deliveries()[sent_before..]
        .iter()
        .map(|d| d.json())
        .collect();
    assert!(sent.is_empty(), "a refusal was announced: {sent:#?}");
}

#[test]
fn a_version_the_channel_does_not_publish_is_refused_not_failed() {
    let (ws, node, hooks) = node_on("1.0.0");
    assert_refused(
        &ws,
        &node,
        &hooks,
        &["apply", "--version", "2.0.2"],
        "2.0.2",
        Some("2.0.2"),
    );
    // Human output names what is published.
    node.ferry(&["apply", "--version", "2.0.2"])
        .assert_code(REFUSED)
        .assert_stderr_contains("not published")
        .assert_stderr_contains("1.1.0");
    // --ignore-policy does not make a version up.
    node.ferry(&["apply", "--version", "2.0.2", "--ignore-policy"])
        .assert_code(REFUSED);
    // Asking whether the node could take it is the same typo.
    assert_read_only_refused(
        &node,
        &hooks,
        &["preflight", "--version", "2.0.2"],
        "2.0.2 is not published on channel",
    );
    node.ferry_ok(&["preflight", "--version", "1.1.0"]);
    // The request fixed, the update goes through and is announced.
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    node.assert_current("1.1.0", &ws.input(2));
    let events: Vec<Value> = hooks.deliveries().iter().map(|d| d.json()).collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["applied", "applied"], "{events:#?}");
}

#[test]
fn a_downgrade_without_the_flag_is_refused_not_failed() {
    let (ws, node, hooks) = node_on("1.0.0");
    node.ferry_ok(&["apply"]);
    let sent_before = hooks.deliveries().len();
    let out = node.ferry(&["--output", "json", "apply", "--version", "1.0.0"]);
    out.assert_code(REFUSED);
    assert_eq!(last_event(&out)["event"], "refused", "{out}");
    node.assert_current("1.1.0", &ws.input(2));
    assert_eq!(node.history_json().last().unwrap()["outcome"], "refused");
    assert_eq!(
        hooks.deliveries().len(),
        sent_before,
        "a refusal was announced"
    );
    // Asked for, it is a downgrade like any other update.
    node.ferry_ok(&["apply", "--version", "1.0.0", "--allow-downgrade"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn a_version_the_policy_excludes_is_refused_not_failed() {
    let (ws, node, hooks) = node_on("1.0.0");
    configure(&node, "[policy]\nexclude_versions = [\"1.1.0\"]\n");
    assert_refused(
        &ws,
        &node,
        &hooks,
        &["apply", "--version", "1.1.0"],
        "exclude_versions",
        Some("1.1.0"),
    );
}

#[test]
fn a_release_above_the_nodes_min_upgrade_from_is_refused_not_failed() {
    let (ws, node, hooks) = node_on("1.0.0");
    let out = ferry_tests::run::run(
        ws.release_command("2.0.0", CHANNEL, &ws.input(3))
            .args(["--min-upgrade-from", "1.1.0"]),
    );
    out.assert_success();
    let mention = "apply 1.1.0 first";
    assert_refused(&ws, &node, &hooks, &["apply"], mention, Some("2.0.0"));
}

#[test]
fn a_channel_the_repository_does_not_have_is_refused_not_failed() {
    let (ws, node, hooks) = node_on("1.0.0");
    let config = fs::read_to_string(&node.config).unwrap();
    let moved = config.replace(&format!("channel = \"{CHANNEL}\""), "channel = \"nightly\"");
    assert_ne!(config, moved);
    fs::write(&node.config, moved).unwrap();
    let mention = "\"nightly\" is not in the repository";
    assert_refused(&ws, &node, &hooks, &["apply"], mention, None);
    assert_read_only_refused(&node, &hooks, &["check"], mention);
    assert_read_only_refused(&node, &hooks, &["preflight"], mention);
}

#[test]
fn a_live_tree_that_differs_from_its_manifest_after_the_switch_exits_6() {
    let (ws, node, hooks) = node_on("1.0.0");
    // `pre_apply` runs in the staged release after its last check and
    // before the switch: what it changes is only seen once 1.1.0 is live.
    configure(&node, "[service]\npre_apply = \"printf x >> bin/app\"\n");
    let out = node.ferry(&["--output", "json", "apply"]);
    out.assert_code(ROLLED_BACK);
    let last = last_event(&out);
    assert_eq!(last["event"], "rolled_back", "{out}");
    assert_eq!(last["exit_code"], ROLLED_BACK, "{out}");
    out.assert_stderr_contains("does not match its manifest");
    node.assert_current("1.0.0", &ws.input(1));
    let record = node.history_json().last().cloned().unwrap();
    assert_eq!(record["outcome"], "rolled-back", "{record:#}");
    let events: Vec<Value> = hooks.deliveries().iter().map(|d| d.json()).collect();
    assert_eq!(
        events.last().unwrap()["event"],
        "rolled_back",
        "{events:#?}"
    );
}
