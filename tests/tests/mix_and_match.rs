//! The threat: a mirror or attacker combines files that are each validly
//! signed but come from different publications — a manifest of another
//! publication of the same version, an index from another repository, an
//! object of another release — to install a combination the publisher never
//! released. Signatures alone cannot tell; the pins can: the index pins each
//! manifest's SHA-256 and size, each manifest pins each object's.

use std::fs;

use ferry_tests::threats::{
    assert_pin_refused, other_publication, served, Unchanged, VERIFICATION_FAILED,
};

#[test]
fn a_manifest_from_another_publication_is_rejected_by_the_index_pin() {
    let s = served(|_| {});
    let before = s.on_release_1();
    // The same key published a different 1.1.0 (generation 3) elsewhere:
    // its manifest is validly signed, for this version and this channel.
    let other = other_publication(&s.ws, "other-repo", &[("1.1.0", "stable", 3)]);
    for path in ["manifests/1.1.0.json", "manifests/1.1.0.json.minisig"] {
        s.server
            .serve_bytes(path, fs::read(other.join(path)).unwrap());
    }
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &["1.1.0"]);
    assert_pin_refused(&out);
    s.node.assert_current("1.0.0", &s.ws.input(1));
}

#[test]
fn an_index_from_another_publication_does_not_vouch_for_this_ones_manifests() {
    // A fresh node (nothing trusted yet) is served the other repository's
    // index, valid and signed, with this repository's manifests.
    let s = served(|_| {});
    let other = other_publication(&s.ws, "other-repo", &[("1.1.0", "stable", 3)]);
    for path in ["index.json", "index.json.minisig"] {
        s.server
            .serve_bytes(path, fs::read(other.join(path)).unwrap());
    }
    let before = Unchanged::of(&s.node);
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &["1.1.0"]);
    assert_pin_refused(&out);
    s.node.assert_root_untouched();
}

#[test]
fn an_object_from_another_release_is_rejected_by_the_manifest_pin() {
    let s = served(|_| {});
    let before = s.on_release_1();
    // 1.1.0's bin/app object is answered with 1.0.0's: a genuine, validly
    // compressed object of this very repository, just not the pinned one.
    let wanted = s.object(2, "bin/app");
    let older = s.object(1, "bin/app");
    s.server
        .serve_bytes(&wanted, fs::read(s.ws.repo.join(&older)).unwrap());
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(&s.node, &out, VERIFICATION_FAILED, &[&wanted]);
    assert!(
        out.stderr.contains("corrupt") || out.stderr.contains("larger than"),
        "the message should say the object is not the signed one\n{out}"
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
}
