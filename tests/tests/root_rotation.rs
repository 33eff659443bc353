//! The threat: the keys a node trusts must change — a key is lost, stolen,
//! or its holder leaves — without reinstalling every node, and without
//! letting anyone who holds *some* keys (an attacker with a stolen key, or
//! with only the new ones) rewrite who is trusted. A node walks
//! `roots/1.json`, `roots/2.json`, … and accepts root N+1 only when a
//! threshold of root N's root keys and of its own signed it; it keeps each
//! root it adopted and never goes back to an older one.

use std::fs;

use ferry_tests::fixtures::{key_id, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::roots::{release_with, root, rotate_to, sign};
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

/// Publishes 1.0.0 with the workspace key and serves the repository; the
/// node trusts the workspace key through `public_keys` (root 0).
fn served() -> (Workspace, TestServer, ferry_tests::fixtures::Node) {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with(
        "node",
        ferry_tests::fixtures::NodeConfig::new(server.url(), &ws.public_key),
    );
    (ws, server, node)
}

fn trusted_json(node: &ferry_tests::fixtures::Node) -> serde_json::Value {
    serde_json::from_slice(&fs::read(node.state_dir.join("trusted.json")).unwrap()).unwrap()
}

#[test]
fn node_walks_the_chain_with_key_changes_and_keeps_each_root() {
    let (ws, _server, node) = served();
    node.ferry_ok(&["apply"]);
    let (k1_secret, k1_public) = ws.keygen("k1");
    let (k2_secret, k2_public) = ws.keygen("k2");

    // Root 1: the key nodes already trust. Root 2: k1 only, signed by the
    // old key and k1. Root 3: k2 only, signed by k1 and k2.
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    rotate_to(&ws, &[&k1_public], &[], &[&ws.secret_key, &k1_secret]);
    rotate_to(&ws, &[&k2_public], &[], &[&k1_secret, &k2_secret]);
    release_with(&ws, "1.1.0", &ws.input(2), &[&k2_secret]).assert_success();

    // A node that never saw roots 1-3 walks them all and installs 1.1.0,
    // signed by a key it was never configured with.
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    assert_eq!(
        fs::read(node.state_dir.join("trusted-root.json")).unwrap(),
        fs::read(ws.repo.join("roots/3.json")).unwrap(),
        "the node keeps the newest root it adopted"
    );
    for version in 1..=3 {
        assert!(node
            .state_dir
            .join(format!("roots/{version}.json"))
            .is_file());
    }
    assert_eq!(trusted_json(&node)["root_version"], 3);
    assert_eq!(
        trusted_json(&node)["index_role_keys"][0],
        key_id(&k2_public).as_str()
    );

    // 1.0.0's kept manifest is signed by the original key only, which root
    // 3 no longer lists: a rotation must not strand a node's rollback.
    node.ferry_ok(&["rollback"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn a_root_signed_only_by_new_keys_or_only_by_old_keys_is_refused() {
    let (ws, _server, node) = served();
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    node.ferry_ok(&["apply"]);
    let unchanged = Unchanged::of(&node);
    assert_eq!(trusted_json(&node)["root_version"], 1);
    let (new_secret, new_public) = ws.keygen("new");

    for (signers, publisher_says, node_says) in [
        // An attacker with a key of their own: the old root never vouched.
        (
            vec![&new_secret],
            "root version 2",
            "checked with the keys of trusted root 1",
        ),
        // An attacker with the old key only: the new root's own keys did not agree.
        (
            vec![&ws.secret_key],
            "root version 2",
            "checked with its own root keys",
        ),
    ] {
        root(
            &ws,
            "init",
            &["--force", "--key", &new_public.display().to_string()],
        )
        .assert_success();
        sign(
            &ws,
            &signers.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        );
        // The publisher refuses to publish it...
        let out = root(&ws, "rotate", &[]);
        out.assert_code(1);
        out.assert_stderr_contains(publisher_says);
        out.assert_stderr_contains("threshold");
        // ...so the attacker writes it into the repository directly.
        fs::create_dir_all(ws.repo.join("roots")).unwrap();
        fs::copy(
            ws.repo.join("root.draft.json"),
            ws.repo.join("roots/2.json"),
        )
        .unwrap();
        fs::copy(
            ws.repo.join("root.draft.json.minisig"),
            ws.repo.join("roots/2.json.minisig"),
        )
        .unwrap();
        let out = node.ferry(&["apply"]);
        unchanged.assert_refused(
            &node,
            &out,
            VERIFICATION_FAILED,
            &[
                "refusing root version 2",
                node_says,
                "stays on root version 1",
            ],
        );
        assert!(!node.state_dir.join("roots/2.json").exists());
        // Clean up for the next attempt (the publisher itself refuses to
        // work on a repository whose chain does not verify).
        fs::remove_file(ws.repo.join("roots/2.json")).unwrap();
        fs::remove_file(ws.repo.join("roots/2.json.minisig")).unwrap();
    }
}

#[test]
fn a_replayed_older_root_is_never_re_adopted() {
    let (ws, server, node) = served();
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    // A snapshot of the repository while it ended at root 1.
    let old_repo = ws.dir.join("old-repo");
    copy_tree(&ws.repo, &old_repo);
    let (k1_secret, k1_public) = ws.keygen("k1");
    rotate_to(&ws, &[&k1_public], &[], &[&ws.secret_key, &k1_secret]);
    release_with(&ws, "1.1.0", &ws.input(2), &[&k1_secret]).assert_success();
    node.ferry_ok(&["apply"]);
    assert_eq!(trusted_json(&node)["root_version"], 2);
    let unchanged = Unchanged::of(&node);

    // Root 1's bytes offered as root 3: validly signed, but by the old key,
    // and it says version 1.
    server.serve_bytes(
        "roots/3.json",
        fs::read(ws.repo.join("roots/1.json")).unwrap(),
    );
    server.serve_bytes(
        "roots/3.json.minisig",
        fs::read(ws.repo.join("roots/1.json.minisig")).unwrap(),
    );
    let out = node.ferry(&["apply"]);
    unchanged.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["refusing root version 3"],
    );

    // A mirror frozen at root 1 (and its index, signed by the old key): the
    // node stays on root 2 and refuses the old index.
    let frozen = TestServer::serve(&old_repo);
    let text = fs::read_to_string(&node.config)
        .unwrap()
        .replace(&server.url(), &frozen.url());
    fs::write(&node.config, text).unwrap();
    let out = node.ferry(&["apply"]);
    unchanged.assert_refused(&node, &out, VERIFICATION_FAILED, &["index.json"]);
    assert_eq!(
        fs::read(node.state_dir.join("trusted-root.json")).unwrap(),
        fs::read(ws.repo.join("roots/2.json")).unwrap()
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_node_bootstrapped_from_a_root_file_follows_later_roots() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    // The operator installs root 1 on the node, not a public key.
    let anchor = ws.dir.join("anchor");
    fs::create_dir_all(&anchor).unwrap();
    fs::copy(ws.repo.join("root.json"), anchor.join("root.json")).unwrap();
    fs::copy(
        ws.repo.join("root.json.minisig"),
        anchor.join("root.json.minisig"),
    )
    .unwrap();
    let (k1_secret, k1_public) = ws.keygen("k1");
    rotate_to(&ws, &[&k1_public], &[], &[&ws.secret_key, &k1_secret]);
    release_with(&ws, "1.1.0", &ws.input(2), &[&k1_secret]).assert_success();
    let server = TestServer::serve(&ws.repo);
    let mut config = ferry_tests::fixtures::NodeConfig::new(server.url(), &ws.public_key);
    config.public_keys.clear();
    config.trust_root = Some(anchor.join("root.json"));
    let node = ws.node_with("rooted", config);
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    assert_eq!(trusted_json(&node)["root_version"], 2);

    // A damaged anchor is refused before anything is fetched.
    let fresh = ws.node_with("damaged", {
        let mut c = ferry_tests::fixtures::NodeConfig::new(server.url(), &ws.public_key);
        c.public_keys.clear();
        c.trust_root = Some(anchor.join("root.json"));
        c
    });
    ferry_tests::fixtures::flip_byte(&anchor.join("root.json"), 10);
    let out = fresh.ferry(&["apply"]);
    out.assert_code(VERIFICATION_FAILED);
    out.assert_stderr_contains("trust anchor");
    fresh.assert_root_untouched();
}
