//! The threat: the node is handed software it did not ask for, every file
//! validly signed — another version's manifest at the path of the version
//! it wants, a manifest of another channel, an object swapped for other
//! content that decompresses fine. The node must install exactly the
//! version, channel and bytes it asked for, or nothing.
//!
//! Two layers are checked: with the genuine index the pins reject the
//! swap; with an index that (through a publisher bug or a stolen index key)
//! pins the wrong file, the manifest's own version and channel fields, and
//! each object's content digest, still do.

use std::fs;

use ferry_tests::fixtures::sha256_hex;
use ferry_tests::tamper::{files_mut, resign_index, resign_manifest, Signer};
use ferry_tests::threats::{
    assert_pin_refused, other_publication, served, Served, VERIFICATION_FAILED,
};
use serde_json::Value;

/// Serves `bytes` and `signature` as the manifest of 1.1.0.
fn serve_as_1_1_0(s: &Served, bytes: &[u8], signature: &[u8]) {
    s.server.serve_bytes("manifests/1.1.0.json", bytes.to_vec());
    s.server
        .serve_bytes("manifests/1.1.0.json.minisig", signature.to_vec());
}

/// Re-signs the index so that it pins `bytes` as the manifest of 1.1.0.
fn pin_as_1_1_0(s: &Served, bytes: &[u8]) {
    let (sha256, size) = (sha256_hex(bytes), bytes.len() as u64);
    resign_index(&s.ws.repo, &Signer::from_file(&s.ws.secret_key), |index| {
        let pin = &mut index["channels"]["stable"]["releases"]["1.1.0"];
        pin["sha256"] = Value::from(sha256);
        pin["size"] = Value::from(size);
    });
}

#[test]
fn another_versions_manifest_at_a_versions_path_is_rejected() {
    let s = served(|_| {});
    // The index is verified before the manifest is refused: its serial is
    // rightly recorded (trust state is saved on every path); nothing else
    // may change.
    let before = s.on_release_1().except("trusted.json");
    let old = fs::read(s.ws.repo.join("manifests/1.0.0.json")).unwrap();
    let old_signature = fs::read(s.ws.repo.join("manifests/1.0.0.json.minisig")).unwrap();
    serve_as_1_1_0(&s, &old, &old_signature);

    // The genuine index pins 1.1.0's manifest: the pin refuses 1.0.0's.
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &["1.1.0"]);
    assert_pin_refused(&out);

    // An index that pins 1.0.0's manifest under 1.1.0: the manifest itself
    // says which version it describes.
    pin_as_1_1_0(&s, &old);
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["describes version 1.0.0, not 1.1.0"],
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
}

#[test]
fn another_channels_manifest_is_rejected() {
    let s = served(|_| {});
    // The index is verified before the manifest is refused: its serial is
    // rightly recorded (trust state is saved on every path); nothing else
    // may change.
    let before = s.on_release_1().except("trusted.json");
    // The same key published 1.1.0 on channel "beta" elsewhere.
    let beta = other_publication(&s.ws, "beta-repo", &[("1.1.0", "beta", 2)]);
    let bytes = fs::read(beta.join("manifests/1.1.0.json")).unwrap();
    let signature = fs::read(beta.join("manifests/1.1.0.json.minisig")).unwrap();
    serve_as_1_1_0(&s, &bytes, &signature);

    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &["1.1.0"]);
    assert_pin_refused(&out);

    pin_as_1_1_0(&s, &bytes);
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["belongs to channel \"beta\""],
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
}

/// A valid zstd object of content the publisher never released, exactly
/// `size` bytes long (padded with a zstd skippable frame, which decoders
/// pass over), so that only its digest can give it away.
fn rogue_object(size: usize) -> Vec<u8> {
    let mut object =
        zstd::encode_all(&b"#!/bin/sh\necho installed by an attacker\n"[..], 3).unwrap();
    let padding = size - object.len() - 8;
    object.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    object.extend_from_slice(&(padding as u32).to_le_bytes());
    object.resize(size, 0);
    assert_eq!(
        zstd::decode_all(&object[..]).unwrap(),
        b"#!/bin/sh\necho installed by an attacker\n"
    );
    object
}

#[test]
fn an_object_swapped_for_other_valid_content_is_rejected() {
    let s = served(|_| {});
    let before = s.on_release_1();
    let object = s.object(2, "bin/app");
    let size = fs::metadata(s.ws.repo.join(&object)).unwrap().len();
    let rogue = rogue_object(size as usize);
    s.server.serve_bytes(&object, rogue.clone());

    // The manifest pins the compressed object's digest and size.
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &[&object, "corrupt"]);

    // A manifest that pins the rogue object's compressed digest and size
    // (but, as it must, the content's own digest): the content check after
    // decompression refuses it.
    let (rogue_sha, rogue_size) = (sha256_hex(&rogue), rogue.len() as u64);
    let signer = Signer::from_file(&s.ws.secret_key);
    resign_manifest(&s.ws.repo, "1.1.0", &signer, |manifest| {
        for entry in files_mut(manifest) {
            if entry["path"] == "bin/app" {
                entry["object"]["sha256"] = Value::from(rogue_sha.clone());
                entry["object"]["size"] = Value::from(rogue_size);
            }
        }
    });
    let out = s.node.ferry(&["apply"]);
    // The re-signed index is genuine and newer: the node rightly records
    // its serial; nothing else may change.
    before.except("trusted.json").assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["content of bin/app", "is wrong"],
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
}
