//! The threat: an attacker who controls the network or a mirror makes the
//! node install files of the attacker's choosing, by serving an unsigned,
//! garbage-signed or attacker-signed index or manifest, or garbage in
//! place of an object. Nothing may be installed: the node refuses (exit 3),
//! says what failed, and its install root and trusted state stay exactly
//! as they were.

use ferry_tests::fixtures::key_id;
use ferry_tests::http_server::Fault;
use ferry_tests::tamper::Signer;
use ferry_tests::threats::{served, Served, Unchanged, VERIFICATION_FAILED};

const GARBAGE_SIGNATURE: &[u8] = b"untrusted comment: not a signature\nRWQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\ntrusted comment: nothing\nAAAA\n";

/// What the server does wrong in one case.
enum Attack {
    /// Answer 404 for exactly this path.
    Missing(&'static str),
    /// Serve these bytes at exactly this path.
    Serve(&'static str, Vec<u8>),
}

/// Runs `ferry apply` under each attack in turn, and checks each refusal.
fn refuse_each(s: &Served, before: &Unchanged, cases: Vec<(Attack, &[&str])>) {
    for (attack, mentions) in cases {
        match &attack {
            Attack::Missing(path) => s.server.set_fault_exact(path, Fault::Status(404)),
            Attack::Serve(path, bytes) => s.server.serve_bytes(path, bytes.clone()),
        }
        let out = s.node.ferry(&["apply"]);
        before.assert_refused(&s.node, &out, VERIFICATION_FAILED, mentions);
        s.server.clear_faults();
    }
}

#[test]
fn unsigned_or_badly_signed_metadata_installs_nothing_on_a_fresh_node() {
    let s = served(|_| {});
    let before = Unchanged::of(&s.node);
    let index = std::fs::read(s.ws.repo.join("index.json")).unwrap();
    let (attacker, attacker_public) = s.ws.keygen("attacker");
    let attacker_id = key_id(&attacker_public);
    let attacker_signature = Signer::from_file(&attacker)
        .sign("index.json", &index)
        .into_bytes();
    refuse_each(
        &s,
        &before,
        vec![
            (
                Attack::Missing("index.json.minisig"),
                &["index.json", "not signed"],
            ),
            (
                Attack::Serve("index.json.minisig", GARBAGE_SIGNATURE.to_vec()),
                &["index.json"],
            ),
            (
                Attack::Serve("index.json.minisig", attacker_signature),
                &["index.json", &attacker_id],
            ),
            (
                Attack::Serve(
                    "index.json",
                    b"{\"serial\": 99, \"releases\": \"all yours\"}".to_vec(),
                ),
                &["index.json"],
            ),
            (
                Attack::Missing("manifests/1.1.0.json.minisig"),
                &["manifests/1.1.0.json", "not signed"],
            ),
            (
                Attack::Serve("manifests/1.1.0.json.minisig", GARBAGE_SIGNATURE.to_vec()),
                &["1.1.0"],
            ),
        ],
    );
    s.node.assert_root_untouched();
    assert!(
        !s.node.state_dir.join("trusted.json").exists(),
        "nothing was trusted"
    );
}

#[test]
fn garbage_in_place_of_signed_files_leaves_an_updated_node_on_its_release() {
    let s = served(|_| {});
    let before = s.on_release_1();
    let manifest = std::fs::read(s.ws.repo.join("manifests/1.1.0.json")).unwrap();
    let (attacker, _) = s.ws.keygen("attacker");
    let attacker_signature = Signer::from_file(&attacker)
        .sign("manifests/1.1.0.json", &manifest)
        .into_bytes();
    let object = s.object(2, "bin/app");
    let object_size = std::fs::metadata(s.ws.repo.join(&object)).unwrap().len();
    let garbage = ferry_tests::fixtures::pseudo_random(0xbad, object_size as usize);
    // Leaked so the table can hold `&'static str` paths like the others.
    let object: &'static str = Box::leak(object.into_boxed_str());
    refuse_each(
        &s,
        &before,
        vec![
            (
                Attack::Serve("manifests/1.1.0.json.minisig", attacker_signature),
                &["1.1.0"],
            ),
            (
                Attack::Serve("manifests/1.1.0.json", b"#!/bin/sh\nrm -rf /\n".to_vec()),
                &["manifest of 1.1.0"],
            ),
            (Attack::Serve(object, garbage), &[object, "corrupt"]),
        ],
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
    assert_eq!(s.node.status_json()["current_version"], "1.0.0");
}
