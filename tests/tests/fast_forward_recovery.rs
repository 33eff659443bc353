//! The threat: a fast-forward. An attacker who held the index key signs an
//! index with an enormous serial; the node accepts it (the signature is
//! good) and from then on refuses every real index, whose serials are
//! lower — the attacker froze the node with one file. Recovery, as in TUF:
//! the publisher rotates the index key in a new root; a node that adopts a
//! root whose index role has different keys forgets the serial it had, so
//! the publisher's normal serials are accepted again, and the attacker's
//! inflated index, signed by the revoked key, is not.

use std::fs;

use ferry_tests::fixtures::{NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::roots::{release_with, root, rotate_to, sign};
use ferry_tests::tamper::{read_json, Signer};
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

const INFLATED: u64 = 1_000_000_000;

fn trusted_serial(node: &ferry_tests::fixtures::Node) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(node.state_dir.join("trusted.json")).unwrap()).unwrap();
    json["index_serial"].as_u64().unwrap()
}

#[test]
fn rotating_the_index_key_lets_a_fast_forwarded_node_recover() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    rotate_to(&ws, &[&ws.public_key], &[], &[&ws.secret_key]);
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("node", NodeConfig::new(server.url(), &ws.public_key));
    node.ferry_ok(&["apply"]);

    // The attacker, holding the index key, serves an inflated index.
    let genuine_index = fs::read(ws.repo.join("index.json")).unwrap();
    let genuine_signature = fs::read(ws.repo.join("index.json.minisig")).unwrap();
    let mut inflated = read_json(&ws.repo, "index.json");
    inflated["serial"] = INFLATED.into();
    let attacker = Signer::from_file(&ws.secret_key);
    let inflated_bytes = manifests::canonical::to_canonical_json(&inflated).unwrap();
    let inflated_signature = attacker.sign("index.json", &inflated_bytes);
    server.serve_bytes("index.json", inflated_bytes.clone());
    server.serve_bytes("index.json.minisig", inflated_signature.clone());
    node.ferry_ok(&["apply"]);
    assert_eq!(
        trusted_serial(&node),
        INFLATED,
        "the node was fast-forwarded"
    );
    server.clear_faults();
    server.stop_serving("index.json");
    server.stop_serving("index.json.minisig");

    // The publisher's real releases are now refused.
    fs::write(ws.repo.join("index.json"), &genuine_index).unwrap();
    fs::write(ws.repo.join("index.json.minisig"), &genuine_signature).unwrap();
    ws.publish("1.1.0", "stable", &ws.input(2));
    let unchanged = Unchanged::of(&node);
    let out = node.ferry(&["apply"]);
    unchanged.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["older than serial 1000000000"],
    );

    // Recovery: root 2 moves the index role to a new key (the root and
    // manifests roles keep theirs), and the index is re-signed with it.
    let (index_secret, index_public) = ws.keygen("index-2");
    root(&ws, "init", &[]).assert_success();
    root(
        &ws,
        "add-key",
        &[
            "--role",
            "index",
            "--key",
            &index_public.display().to_string(),
        ],
    )
    .assert_success();
    root(
        &ws,
        "remove-key",
        &[
            "--role",
            "index",
            "--key",
            &ws.public_key.display().to_string(),
        ],
    )
    .assert_success();
    sign(&ws, &[&ws.secret_key]);
    root(&ws, "rotate", &[]).assert_success();
    release_with(&ws, "1.2.0", &ws.input(3), &[&ws.secret_key, &index_secret]).assert_success();
    let serial = read_json(&ws.repo, "index.json")["serial"]
        .as_u64()
        .unwrap();
    assert!(
        serial < 10,
        "the publisher kept its normal serials ({serial})"
    );

    node.ferry_ok(&["apply"]);
    node.assert_current("1.2.0", &ws.input(3));
    assert_eq!(trusted_serial(&node), serial);

    // The attacker's inflated index, signed by the revoked key, is refused.
    let unchanged = Unchanged::of(&node);
    server.serve_bytes("index.json", inflated_bytes);
    server.serve_bytes("index.json.minisig", inflated_signature);
    let out = node.ferry(&["apply"]);
    unchanged.assert_refused(&node, &out, VERIFICATION_FAILED, &["index.json"]);
}
