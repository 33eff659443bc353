//! The threat: a server (or anyone between it and the node) answers with
//! more data than was published — an endless body, a body longer than its
//! signed size, a `Content-Length` that lies — to fill the node's memory or
//! disk, or to hold it reading forever. The node must read no more than the
//! signed size (the index and signatures: a fixed cap), refuse with a
//! message naming the file, finish quickly, and keep nothing of it.

use std::time::{Duration, Instant};

use ferry_tests::http_server::Fault;
use ferry_tests::threats::{downloads, served, Unchanged, VERIFICATION_FAILED};

/// Far below what reading endless data until a timeout would take.
const QUICKLY: Duration = Duration::from_secs(20);

/// The index and signatures are fixed-capped: 1 MiB and 16 KiB.
const INDEX_CAP: &str = "1048576 bytes";
const SIGNATURE_CAP: &str = "16384 bytes";

#[test]
fn endless_index_manifest_and_signatures_are_cut_at_their_caps() {
    let s = served(|_| {});
    let before = s.on_release_1();
    let cases = [
        ("index.json", INDEX_CAP),
        ("index.json.minisig", SIGNATURE_CAP),
        ("manifests/1.1.0.json", "manifests/1.1.0.json"),
        ("manifests/1.1.0.json.minisig", SIGNATURE_CAP),
    ];
    for (path, mention) in cases {
        for content_length in [None, Some(1 << 40)] {
            s.server
                .set_fault_exact(path, Fault::Endless { content_length });
            let started = Instant::now();
            let out = s.node.ferry(&["apply"]);
            let took = started.elapsed();
            eprintln!("case: endless {path}, Content-Length {content_length:?}");
            before.assert_refused(
                &s.node,
                &out,
                VERIFICATION_FAILED,
                &[path, "larger than", mention],
            );
            assert!(took < QUICKLY, "{path}: took {took:?}\n{out}");
            let requests = s.server.requests();
            assert_eq!(
                requests.iter().filter(|r| r.path == path).count(),
                1,
                "too large is not worth a retry\n{out}"
            );
            s.server.clear_faults();
            s.server.reset_counters();
        }
    }
    s.node.assert_current("1.0.0", &s.ws.input(1));
}

#[test]
fn an_oversized_index_is_refused_by_its_content_length() {
    let s = served(|_| {});
    s.server
        .set_fault_exact("index.json", Fault::Oversize(2 * 1024 * 1024));
    let before = Unchanged::of(&s.node);
    let out = s.node.ferry(&["apply"]);
    before.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["index.json", INDEX_CAP],
    );
    s.node.assert_root_untouched();
    let served = s.server.requests_for("index.json")[0].body_bytes;
    assert!(
        served < 1 << 30,
        "the node should stop reading: {served} bytes were handed to it"
    );
}

#[test]
fn endless_or_oversized_objects_are_refused_and_nothing_is_kept() {
    let s = served(|_| {});
    let before = s.on_release_1();
    let object = s.object(2, "bin/app");
    let faults = [
        Fault::Endless {
            content_length: None,
        },
        Fault::Endless {
            content_length: Some(1 << 40),
        },
        Fault::Oversize(1),
    ];
    for fault in faults {
        s.server.set_fault(&object, fault.clone());
        let started = Instant::now();
        let out = s.node.ferry(&["apply"]);
        let took = started.elapsed();
        eprintln!("case: {fault:?}");
        before.assert_refused(
            &s.node,
            &out,
            VERIFICATION_FAILED,
            &[&object, "larger than"],
        );
        assert!(took < QUICKLY, "{fault:?}: took {took:?}\n{out}");
        assert!(
            downloads(&s.node).is_empty(),
            "nothing of an oversized object is kept: {:?}\n{out}",
            downloads(&s.node)
        );
        s.server.clear_faults();
    }
    s.node.assert_current("1.0.0", &s.ws.input(1));

    // With the faults gone the same node updates: the refusals left nothing
    // behind that gets in the way.
    s.node.ferry_ok(&["apply"]);
    s.node.assert_current("1.1.0", &s.ws.input(2));
}

#[test]
fn a_body_longer_than_its_honest_content_length_is_read_only_to_that_length() {
    // The server announces the right length, then keeps sending: the node
    // reads what was announced (the signed bytes) and hangs up.
    let s = served(|_| {});
    let object = s.object(1, "bin/app");
    let size = std::fs::metadata(s.ws.repo.join(&object)).unwrap().len();
    s.server.set_fault(
        &object,
        Fault::Endless {
            content_length: Some(size),
        },
    );
    let started = Instant::now();
    s.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    assert!(started.elapsed() < QUICKLY, "{:?}", started.elapsed());
    s.node.assert_current("1.0.0", &s.ws.input(1));
}
