//! The threat: a rollback. An attacker (or a stale mirror) serves an older,
//! validly signed index to hide a security release, or a node is pointed
//! at an older release with known holes. The node remembers the highest
//! index serial it accepted and refuses lower ones, and never installs a
//! version lower than the installed one unless an operator asks for it
//! (`ferry rollback`, or `ferry apply --version V --allow-downgrade`).

use std::fs;
use std::io::Write as _;

use ferry_tests::fixtures::{Node, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::run::run;
use ferry_tests::threats::{Unchanged, REFUSED, VERIFICATION_FAILED};

/// 1.0.0 then 1.1.0 published and served; returns the index (and its
/// signature) as it was with only 1.0.0, serial 1.
fn served() -> (Workspace, TestServer, Node, Vec<u8>, Vec<u8>) {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let old_index = fs::read(ws.repo.join("index.json")).unwrap();
    let old_signature = fs::read(ws.repo.join("index.json.minisig")).unwrap();
    ws.publish("1.1.0", "stable", &ws.input(2));
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("node", NodeConfig::new(server.url(), &ws.public_key));
    (ws, server, node, old_index, old_signature)
}

#[test]
fn a_replayed_older_index_is_refused() {
    let (ws, server, node, old_index, old_signature) = served();
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    let unchanged = Unchanged::of(&node);

    server.serve_bytes("index.json", old_index);
    server.serve_bytes("index.json.minisig", old_signature);
    let out = node.ferry(&["apply"]);
    unchanged.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["serial 1", "older than serial 2", "replaying an old index"],
    );
    // Even asking for 1.0.0 explicitly goes through the same index check.
    let out = node.ferry(&["apply", "--version", "1.0.0", "--allow-downgrade"]);
    unchanged.assert_refused(&node, &out, VERIFICATION_FAILED, &["older than serial 2"]);
}

#[test]
fn a_downgrade_needs_the_operator_to_ask_for_it() {
    let (ws, _server, node, _, _) = served();
    node.ferry_ok(&["apply"]);
    let unchanged = Unchanged::of(&node);

    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    unchanged.assert_refused(
        &node,
        &out,
        REFUSED,
        &[
            "1.0.0 is older than the installed 1.1.0",
            "--allow-downgrade",
        ],
    );

    node.ferry_ok(&["apply", "--version", "1.0.0", "--allow-downgrade"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn ferry_rollback_still_works() {
    let (ws, _server, node, _, _) = served();
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);
    node.ferry_ok(&["rollback"]);
    node.assert_current("1.0.0", &ws.input(1));
    // A rollback is local: the trusted serial is not lowered by it.
    let trusted: serde_json::Value =
        serde_json::from_slice(&fs::read(node.state_dir.join("trusted.json")).unwrap()).unwrap();
    assert_eq!(trusted["index_serial"], 2);
}

/// A node on 1.0.0 that trusted serial 1; 1.1.0 is then published (serial
/// 2) with a wave that opens in two days. Returns the serial-1 index and
/// its signature.
fn wave_held() -> (Workspace, TestServer, Node, Vec<u8>, Vec<u8>) {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let old_index = fs::read(ws.repo.join("index.json")).unwrap();
    let old_signature = fs::read(ws.repo.join("index.json.minisig")).unwrap();
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("node", NodeConfig::new(server.url(), &ws.public_key));
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(&node.config)
        .unwrap();
    writeln!(config, "\n[node]\nid = \"held\"").unwrap();
    node.ferry_ok(&["apply"]);
    node.assert_current("1.0.0", &ws.input(1));
    run(ws.release_command("1.1.0", "stable", &ws.input(2)).args([
        "--critical",
        "--waves",
        "100%@2d",
    ]))
    .assert_success();
    (ws, server, node, old_index, old_signature)
}

#[test]
fn an_index_seen_by_a_run_that_installed_nothing_is_never_replayed() {
    // Each of these verifies serial 2 and then installs nothing: a wave
    // defers the unattended run, `check` only reports, and an unpublished
    // version is refused. Each must remember serial 2 all the same.
    for (seen_by, code) in [
        (&["apply", "--unattended"][..], 0),
        (&["check"][..], 11),
        (&["apply", "--version", "1.0.1"][..], REFUSED),
    ] {
        let (ws, server, node, old_index, old_signature) = wave_held();
        let out = node.ferry(seen_by);
        out.assert_code(code);
        node.assert_current("1.0.0", &ws.input(1));
        let trusted: serde_json::Value =
            serde_json::from_slice(&fs::read(node.state_dir.join("trusted.json")).unwrap())
                .unwrap();
        assert_eq!(
            trusted["index_serial"], 2,
            "{seen_by:?} recorded serial 2\n{out}"
        );
        let unchanged = Unchanged::of(&node);

        server.serve_bytes("index.json", old_index);
        server.serve_bytes("index.json.minisig", old_signature);
        let out = node.ferry(&["apply"]);
        unchanged.assert_refused(
            &node,
            &out,
            VERIFICATION_FAILED,
            &["serial 1", "older than serial 2", "replaying an old index"],
        );
    }
}
