//! The threat: one stolen key. With a k-of-n role (here 2 of 3 for the
//! index and for manifests) a node accepts a file only when k *different*
//! keys of the role signed it: one signature is not enough, and the same
//! key signing twice still counts once. Blocks by keys outside the role
//! are ignored, never counted.

use std::fs;

use ferry_tests::fixtures::{Node, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::roots::{block_key_id, blocks, refresh, release_with, rotate_to};
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

struct Setup {
    ws: Workspace,
    _server: TestServer,
    node: Node,
    secrets: Vec<std::path::PathBuf>,
}

/// Keys A (the workspace key), B and C; root 1 gives every role all three
/// with threshold 2 for index and manifests (root role: 1, the key nodes
/// on `public_keys` already trust). 1.0.0 is installed, 1.1.0 published
/// with A and B.
fn setup() -> Setup {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let (b_secret, b_public) = ws.keygen("b");
    let (c_secret, c_public) = ws.keygen("c");
    rotate_to(
        &ws,
        &[&ws.public_key, &b_public, &c_public],
        &["--threshold-index", "2", "--threshold-manifests", "2"],
        &[&ws.secret_key],
    );
    // The index and 1.0.0's manifest were signed by A alone, before root 1.
    refresh(&ws, &[&ws.secret_key, &b_secret], &["--manifests"], &[]).assert_success();
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("node", NodeConfig::new(server.url(), &ws.public_key));
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    release_with(&ws, "1.1.0", &ws.input(2), &[&ws.secret_key, &b_secret]).assert_success();
    let secrets = vec![ws.secret_key.clone(), b_secret, c_secret];
    Setup {
        ws,
        _server: server,
        node,
        secrets,
    }
}

/// Rewrites a `.minisig` with `pick` applied to its blocks.
fn rewrite(path: &std::path::Path, pick: impl FnOnce(Vec<String>) -> Vec<String>) {
    let picked = pick(blocks(path));
    fs::write(path, picked.concat()).unwrap();
}

#[test]
fn index_needs_two_distinct_keys_of_its_role() {
    let s = setup();
    let signature = s.ws.repo.join("index.json.minisig");
    let good = fs::read(&signature).unwrap();
    assert_eq!(
        blocks(&signature).len(),
        2,
        "the release signed with A and B"
    );
    let unchanged = Unchanged::of(&s.node);

    // One signature.
    rewrite(&signature, |b| vec![b[0].clone()]);
    let out = s.node.ferry(&["apply"]);
    unchanged.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &[
            "index.json",
            "1 valid signature",
            "threshold of 2",
            "index role",
        ],
    );

    // The same key's block twice.
    fs::write(&signature, &good).unwrap();
    rewrite(&signature, |b| vec![b[0].clone(), b[0].clone()]);
    let out = s.node.ferry(&["apply"]);
    unchanged.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["1 valid signature", "threshold of 2", "counted once"],
    );
    let first_key = block_key_id(&blocks(&signature)[0]);
    out.assert_stderr_contains(&first_key);

    // Two distinct keys of the role: accepted.
    fs::write(&signature, &good).unwrap();
    s.node.ferry_ok(&["apply"]);
    s.node.assert_current("1.1.0", &s.ws.input(2));
}

#[test]
fn manifests_need_two_distinct_keys_of_their_role() {
    let s = setup();
    let signature = s.ws.repo.join("manifests/1.1.0.json.minisig");
    let good = fs::read(&signature).unwrap();
    // The index is genuine and verified before the manifest is refused:
    // the node rightly records its serial (issue 13: trust state is saved
    // on every path), so trusted.json may change; nothing else may.
    let unchanged = Unchanged::of(&s.node).except("trusted.json");

    rewrite(&signature, |b| vec![b[1].clone(), b[1].clone()]);
    let out = s.node.ferry(&["apply"]);
    unchanged.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["manifests/1.1.0.json", "threshold of 2", "manifests role"],
    );

    // A third key that is in the role (C) makes two distinct again, even
    // with the duplicate still there.
    fs::write(&signature, &good).unwrap();
    let c_block = {
        let manifest = fs::read(s.ws.repo.join("manifests/1.1.0.json")).unwrap();
        ferry_tests::tamper::Signer::from_file(&s.secrets[2])
            .sign("manifests/1.1.0.json", &manifest)
    };
    rewrite(&signature, |b| vec![b[1].clone(), b[1].clone(), c_block]);
    s.node.ferry_ok(&["apply"]);
    s.node.assert_current("1.1.0", &s.ws.input(2));
}

#[test]
fn a_release_signed_by_too_few_keys_is_refused_by_the_publisher() {
    let s = setup();
    let out = release_with(&s.ws, "1.2.0", &s.ws.input(3), &[&s.secrets[2]]);
    out.assert_code(1);
    out.assert_stderr_contains("needs signatures by 2");
    assert!(!s.ws.repo.join("manifests/1.2.0.json").exists());
}
