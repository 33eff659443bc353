//! The promise: a primary repository that is down costs a node with a
//! healthy `[repository] mirrors` entry one warning naming it, and nothing
//! else. Every fetch — the root walk, the index, manifests, objects — and
//! every command that fetches (`apply`, `check`, `preflight`, `repair`)
//! goes through the same sources, so none of them is stuck on the primary.

use std::fs;
use std::net::TcpListener;

use ferry_tests::fixtures::{Node, NodeConfig, Workspace, CHANNEL};
use ferry_tests::http_server::{Fault, TestServer};
use ferry_tests::roots::{release_with, rotate_to};
use ferry_tests::run::Output;

/// A URL nothing listens on: a port the system gave out, then closed.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

/// A node whose primary is `primary` (down) and whose one mirror serves
/// the workspace's repository. Two retries with the default backoff
/// (0.2 s, 0.4 s): they must not name the primary again either.
fn node_with_dead_primary(ws: &Workspace, primary: &str, mirror: &TestServer) -> Node {
    let mut config = NodeConfig::new(primary.to_string(), &ws.public_key);
    config.retries = Some(2);
    config.mirrors = vec![mirror.url()];
    ws.node_with("node", config)
}

/// Asserts that stderr names `primary` exactly once, as unreachable.
#[track_caller]
fn assert_named_once(out: &Output, primary: &str) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(primary.trim_end_matches('/')))
        .collect();
    assert_eq!(lines.len(), 1, "one warning names the primary\n{out}");
    assert!(
        lines[0].contains(&format!("primary {primary}")) && lines[0].contains("cannot be reached"),
        "{out}"
    );
}

fn trusted_json(node: &Node) -> serde_json::Value {
    serde_json::from_slice(&fs::read(node.state_dir.join("trusted.json")).unwrap()).unwrap()
}

#[test]
fn apply_and_check_complete_from_the_mirror_when_the_primary_port_is_closed() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let mirror = TestServer::serve(&ws.repo);
    let primary = closed_port_url();
    let node = node_with_dead_primary(&ws, &primary, &mirror);

    let out = node.ferry_ok(&["apply"]);
    node.assert_current("1.0.0", &ws.input(1));
    assert_named_once(&out, &primary);

    ws.publish("1.1.0", CHANNEL, &ws.input(2));
    let out = node.ferry(&["check"]);
    out.assert_code(10)
        .assert_stdout_contains("update available: 1.0.0 -> 1.1.0");
    assert_named_once(&out, &primary);

    let out = node.ferry(&["preflight"]);
    out.assert_success()
        .assert_stdout_contains("pre-flight checks for 1.1.0");
    assert_named_once(&out, &primary);

    let out = node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    assert_named_once(&out, &primary);
}

#[test]
fn repair_fetches_missing_content_from_the_mirror() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let mirror = TestServer::serve(&ws.repo);
    let primary = closed_port_url();
    let node = node_with_dead_primary(&ws, &primary, &mirror);
    node.ferry_ok(&["apply"]);

    // Written through in place: the store's hard-linked copy is damaged
    // too, so the repair must download the content again.
    let app = node.release_dir("1.0.0").join("bin/app");
    let mut bytes = fs::read(&app).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&app, bytes).unwrap();
    mirror.reset_counters();

    let out = node.ferry_ok(&["repair"]);
    out.assert_stdout_contains("repaired");
    node.assert_current("1.0.0", &ws.input(1));
    assert!(
        mirror
            .requests_for("objects/")
            .iter()
            .any(|r| r.status == 200),
        "the content came from the mirror\n{out}"
    );
    assert_named_once(&out, &primary);
}

#[test]
fn the_root_walk_goes_through_the_mirror_when_the_primary_answers_503() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let mirror = TestServer::serve(&ws.repo);
    // Up, but failing every request.
    let primary_server = TestServer::serve(&ws.repo);
    primary_server.set_fault("", Fault::Status(503));
    let primary = primary_server.url();
    let node = node_with_dead_primary(&ws, &primary, &mirror);
    node.ferry_ok(&["apply"]);
    assert_eq!(trusted_json(&node)["root_version"], 0);

    // Root 1: the key nodes already trust. Root 2: k1 only, signed by the
    // old key and k1. 1.1.0 is signed by k1 alone: only a node that walked
    // both roots can verify it.
    let (k1_secret, k1_public) = ws.keygen("k1");
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    rotate_to(&ws, &[&k1_public], &[], &[&ws.secret_key, &k1_secret]);
    release_with(&ws, "1.1.0", &ws.input(2), &[&k1_secret]).assert_success();

    // `check` walks the roots too, and records what it adopted.
    let out = node.ferry(&["check"]);
    out.assert_code(10)
        .assert_stdout_contains("update available: 1.0.0 -> 1.1.0");
    assert_named_once(&out, &primary);
    assert_eq!(trusted_json(&node)["root_version"], 2, "{out}");

    let out = node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    assert_named_once(&out, &primary);
    assert_eq!(
        fs::read(node.state_dir.join("trusted-root.json")).unwrap(),
        fs::read(ws.repo.join("roots/2.json")).unwrap(),
        "the node keeps the newest root it adopted"
    );
    assert!(
        mirror
            .requests_for("roots/2.json")
            .iter()
            .any(|r| r.status == 200),
        "root 2 came from the mirror"
    );
}
