//! The threat: someone between the publisher and the node — a mirror, a
//! CDN, a disk, an attacker with write access to the repository — changes,
//! removes or re-signs repository files. The node must refuse (exit 3), say
//! what failed, and write nothing to its install root: a fresh node stays
//! empty, an updated node stays on its release with its tree untouched.

use std::fs;

use ferry_tests::fixtures::{
    flip_byte, key_id, sha256_hex, tree_snapshot, Node, NodeConfig, Workspace,
};
use ferry_tests::run::Output;
use ferry_tests::tamper::{resign_index, Signer};

/// Exit code for failed verification (contract).
const VERIFICATION_FAILED: i32 = 3;

#[track_caller]
fn assert_rejected(out: &Output, mentions: &[&str]) {
    out.assert_code(VERIFICATION_FAILED);
    for needle in mentions {
        out.assert_stderr_contains(needle);
    }
}

/// A workspace with 1.0.0 and 1.1.0 published and a node that trusts it.
fn published() -> (Workspace, Node) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n");
    (ws, node)
}

/// The repository object holding `file` of input `generation`.
fn object_of(ws: &Workspace, generation: u32, file: &str) -> (String, std::path::PathBuf) {
    let digest = sha256_hex(&fs::read(ws.input(generation).join(file)).unwrap());
    let path = ws.repo.join("objects").join(&digest);
    assert!(
        path.is_file(),
        "the repository has no object {digest} for {file}"
    );
    (digest, path)
}

/// Runs `ferry apply` on a node already on 1.0.0 after `tamper`, and checks
/// the node is still on 1.0.0 with every byte of its install root unchanged.
fn assert_updated_node_survives(
    ws: &Workspace,
    node: &Node,
    tamper: impl FnOnce(),
    mentions: &[&str],
) {
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let before = tree_snapshot(&node.root);
    tamper();
    assert_rejected(&node.ferry(&["apply"]), mentions);
    assert_eq!(
        tree_snapshot(&node.root),
        before,
        "a rejected update changed the install root"
    );
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(node.status_json()["current_version"], "1.0.0");
    ws.assert_nothing_beside_workspace();
}

#[test]
fn tampered_manifest_is_rejected() {
    let (ws, node) = published();
    flip_byte(&ws.repo.join("manifests/1.0.0.json"), 200);
    assert_rejected(
        &node.ferry(&["apply", "--version", "1.0.0"]),
        &["manifest", "1.0.0"],
    );
    node.assert_root_untouched();
    ws.assert_nothing_beside_workspace();
}

#[test]
fn tampered_manifest_leaves_an_updated_node_on_its_release() {
    let (ws, node) = published();
    let manifest = ws.repo.join("manifests/1.1.0.json");
    assert_updated_node_survives(
        &ws,
        &node,
        || flip_byte(&manifest, 200),
        &["manifest", "1.1.0"],
    );
}

#[test]
fn tampered_object_is_rejected() {
    let (ws, node) = published();
    let (digest, object) = object_of(&ws, 1, "bin/app");
    flip_byte(&object, 4096);
    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    out.assert_code(VERIFICATION_FAILED);
    assert!(
        out.stderr.contains(&digest[..12]) || out.stderr.contains("bin/app"),
        "stderr should name the corrupted object ({digest}) or the file it carries (bin/app)\n{out}"
    );
    node.assert_root_untouched();
    ws.assert_nothing_beside_workspace();
}

#[test]
fn tampered_object_leaves_an_updated_node_on_its_release() {
    let (ws, node) = published();
    let (digest, object) = object_of(&ws, 2, "bin/app");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let before = tree_snapshot(&node.root);
    flip_byte(&object, 4096);
    let out = node.ferry(&["apply"]);
    out.assert_code(VERIFICATION_FAILED);
    assert!(
        out.stderr.contains(&digest[..12]) || out.stderr.contains("bin/app"),
        "stderr should name the corrupted object ({digest}) or the file it carries (bin/app)\n{out}"
    );
    assert_eq!(
        tree_snapshot(&node.root),
        before,
        "a rejected update changed the install root"
    );
    node.assert_current("1.0.0", &ws.input(1));
    ws.assert_nothing_beside_workspace();
}

#[test]
fn repository_signed_by_another_key_is_rejected() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (_, other_public) = ws.keygen("someone-else");
    let node = ws.node_with("n", NodeConfig::new(ws.repo_url(), &other_public));
    let out = node.ferry(&["apply"]);
    assert_rejected(&out, &["index.json"]);
    assert!(
        out.stderr.contains(&key_id(&ws.public_key)),
        "stderr should name the key that signed the index ({}) so an operator can tell which key is missing\n{out}",
        key_id(&ws.public_key)
    );
    node.assert_root_untouched();
}

#[test]
fn missing_index_signature_is_rejected() {
    let (ws, node) = published();
    fs::remove_file(ws.repo.join("index.json.minisig")).unwrap();
    assert_rejected(&node.ferry(&["apply"]), &["index.json"]);
    node.assert_root_untouched();
}

#[test]
fn missing_manifest_signature_is_rejected() {
    let (ws, node) = published();
    fs::remove_file(ws.repo.join("manifests/1.0.0.json.minisig")).unwrap();
    assert_rejected(
        &node.ferry(&["apply", "--version", "1.0.0"]),
        &["manifest", "1.0.0"],
    );
    node.assert_root_untouched();
}

#[test]
fn missing_manifest_signature_leaves_an_updated_node_on_its_release() {
    let (ws, node) = published();
    let signature = ws.repo.join("manifests/1.1.0.json.minisig");
    assert_updated_node_survives(
        &ws,
        &node,
        || fs::remove_file(&signature).unwrap(),
        &["manifest", "1.1.0"],
    );
}

#[test]
fn index_replaced_and_signed_by_an_untrusted_key_is_rejected() {
    let (ws, node) = published();
    let (attacker_secret, attacker_public) = ws.keygen("attacker");
    // A plausible replacement: same releases, a higher serial, a fresh
    // signature — by a key the node does not trust.
    resign_index(&ws.repo, &Signer::from_file(&attacker_secret), |_| {});
    let out = node.ferry(&["apply"]);
    assert_rejected(&out, &["index.json"]);
    assert!(
        out.stderr.contains(&key_id(&attacker_public)),
        "stderr should name the untrusted key ({})\n{out}",
        key_id(&attacker_public)
    );
    node.assert_root_untouched();
}

#[test]
fn index_replaced_by_an_untrusted_key_leaves_an_updated_node_on_its_release() {
    let (ws, node) = published();
    let (attacker_secret, _) = ws.keygen("attacker");
    let repo = ws.repo.clone();
    assert_updated_node_survives(
        &ws,
        &node,
        || resign_index(&repo, &Signer::from_file(&attacker_secret), |_| {}),
        &["index.json"],
    );
}
