//! The promise: a misbehaving network — a connection dropped mid-body, HTTP
//! 500s, a server shedding load with `Retry-After` (asked again no sooner
//! than it says), a stalled transfer, a flipped bit, a server that ignores
//! `Range` —
//! either heals through retries (with backoff, resuming what is on disk) or
//! leaves the node exactly as it was. Corrupt data is never installed.
//!
//! Every test runs a real `ferry` against the fault-injecting server in
//! `ferry_tests::http_server` on 127.0.0.1. Faults that heal are counted
//! (`set_fault_times`): they hit the first N requests, then the server
//! answers normally.

use std::fs;

use ferry_tests::fixtures::{
    sha256_hex, tree_snapshot, Node, NodeConfig, SnapshotEntry, Workspace,
};
use ferry_tests::http_server::{Fault, Request, TestServer};
use ferry_tests::run::Output;

struct Net {
    ws: Workspace,
    server: TestServer,
    node: Node,
}

/// 1.0.0 and 1.1.0 published and served over HTTP; a fresh node, its
/// configuration adjusted by `tweak`.
fn net(tweak: impl FnOnce(&mut NodeConfig)) -> Net {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let server = TestServer::serve(&ws.repo);
    let mut config = NodeConfig::new(server.url(), &ws.public_key);
    tweak(&mut config);
    let node = ws.node_with("node", config);
    Net { ws, server, node }
}

impl Net {
    /// The repository path of the object holding `file` of `generation`,
    /// and its size.
    fn object(&self, generation: u32, file: &str) -> (String, u64) {
        let content = fs::read(self.ws.input(generation).join(file)).unwrap();
        let path = format!("objects/{}", sha256_hex(&content));
        let size = fs::metadata(self.ws.repo.join(&path)).unwrap().len();
        assert!(size > 64 * 1024, "{file} should be a sizeable object");
        (path, size)
    }

    /// The GET requests for exactly `path`, in order.
    fn gets(&self, path: &str) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .collect()
    }

    /// Installs 1.0.0 cleanly and returns a snapshot of the install root.
    fn on_old_release(&self) -> Vec<SnapshotEntry> {
        self.node.ferry_ok(&["apply", "--version", "1.0.0"]);
        self.node.assert_current("1.0.0", &self.ws.input(1));
        self.server.reset_counters();
        tree_snapshot(&self.node.root)
    }

    /// After a failed update from 1.0.0: the install root is exactly as it
    /// was — still 1.0.0, no staged or partial release beside it.
    #[track_caller]
    fn assert_still_old(&self, before: &[SnapshotEntry], out: &Output) {
        self.node.assert_current("1.0.0", &self.ws.input(1));
        assert_eq!(
            self.node.releases_on_disk(),
            ["1.0.0"],
            "a failed update left something in releases/\n{out}"
        );
        assert_eq!(
            tree_snapshot(&self.node.root),
            before,
            "a failed update changed the install root\n{out}"
        );
        let status = self.node.status_json();
        assert_eq!(status["current_version"], "1.0.0", "{status:#}");
        assert_eq!(status["last_operation"]["outcome"], "failed", "{status:#}");
    }

    /// The partial download of `file` of `generation` in the state directory.
    fn part(&self, generation: u32, file: &str) -> std::path::PathBuf {
        let content = fs::read(self.ws.input(generation).join(file)).unwrap();
        self.node
            .state_dir
            .join("downloads")
            .join(format!("{}.part", sha256_hex(&content)))
    }
}

fn ranges(requests: &[Request]) -> Vec<Option<String>> {
    requests.iter().map(|r| r.range.clone()).collect()
}

#[test]
fn a_connection_dropped_mid_body_is_resumed() {
    let net = net(|_| {});
    let (object, size) = net.object(1, "bin/app");
    let cut = size / 3;
    net.server
        .set_fault_times(&object, Fault::TruncateBody(cut), 2);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    out.assert_stderr_contains("retrying");
    let gets = net.gets(&object);
    assert_eq!(
        ranges(&gets),
        [
            None,
            Some(format!("bytes={cut}-")),
            Some(format!("bytes={}-", 2 * cut))
        ],
        "each retry continues where the dropped connection stopped\n{out}"
    );
    let served: u64 = gets.iter().map(|r| r.body_bytes).sum();
    assert_eq!(served, size, "no byte of {object} was fetched twice\n{out}");
}

#[test]
fn http_500_twice_then_ok_completes() {
    let net = net(|_| {});
    let (object, _) = net.object(1, "bin/app");
    net.server.set_fault_times(&object, Fault::Status(500), 2);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    let statuses: Vec<u16> = net.gets(&object).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200], "{out}");
}

#[test]
fn a_throttling_server_is_asked_again_no_sooner_than_it_said() {
    let net = net(|_| {});
    let (object, _) = net.object(1, "bin/app");
    let throttle = |retry_after: &str| Fault::Throttle {
        status: 503,
        retry_after: retry_after.into(),
    };
    net.server.set_fault_times(&object, throttle("2"), 1);
    net.server
        .set_fault_times("manifests/", throttle("Thu, 01 Jan 1970 00:00:00 GMT"), 1);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    let gets = net.gets(&object);
    let statuses: Vec<u16> = gets.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200], "{out}");
    // The schedule alone would have asked again within 0.2 s.
    let waited = gets[1].at - gets[0].at;
    assert!(
        waited >= std::time::Duration::from_millis(1950),
        "asked again {waited:?} after a Retry-After of 2 s\n{out}"
    );
    out.assert_stderr_contains("Retry-After: 2 s");
    // A date in the past asks for no pause: the schedule's own applies.
    let manifest = net.gets("manifests/1.0.0.json");
    let statuses: Vec<u16> = manifest.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200], "{out}");
    assert!(manifest[1].at - manifest[0].at < std::time::Duration::from_millis(1500));
}

#[test]
fn index_manifest_and_signature_fetches_are_retried() {
    let net = net(|_| {});
    net.server
        .set_fault_times("index.json", Fault::Status(503), 1);
    net.server
        .set_fault_times("index.json.minisig", Fault::TruncateBody(10), 1);
    net.server
        .set_fault_times("manifests/", Fault::Status(429), 2);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    let statuses = |p: &str| -> Vec<u16> { net.gets(p).iter().map(|r| r.status).collect() };
    assert_eq!(statuses("index.json"), [503, 200], "{out}");
    let signature = net.gets("index.json.minisig");
    assert_eq!(signature.len(), 2, "{signature:#?}\n{out}");
    assert_eq!(signature[0].body_bytes, 10, "{signature:#?}");
    assert_eq!(statuses("manifests/1.0.0.json"), [429, 429, 200], "{out}");
}

#[test]
fn server_errors_that_persist_fail_cleanly_and_are_not_retried_forever() {
    let net = net(|c| c.retries = Some(2));
    let before = net.on_old_release();
    let (object, _) = net.object(2, "bin/app");
    net.server.set_fault(&object, Fault::Status(503));

    let out = net.node.ferry(&["apply"]);
    out.assert_code(1);
    out.assert_stderr_contains("503");
    out.assert_stderr_contains("after 3 attempts");
    assert_eq!(net.gets(&object).len(), 3, "1 attempt + 2 retries\n{out}");
    net.assert_still_old(&before, &out);
}

#[test]
fn a_missing_object_is_not_retried() {
    let net = net(|_| {});
    let before = net.on_old_release();
    let (object, _) = net.object(2, "bin/app");
    net.server.set_fault(&object, Fault::Status(404));

    let out = net.node.ferry(&["apply"]);
    out.assert_code(1);
    out.assert_stderr_contains("not found");
    assert_eq!(net.gets(&object).len(), 1, "a 404 is permanent\n{out}");
    net.assert_still_old(&before, &out);
}

#[test]
fn a_stall_longer_than_the_timeout_is_retried_and_resumed() {
    let net = net(|c| c.timeout_seconds = Some(1));
    let (object, size) = net.object(1, "bin/app");
    net.server
        .set_fault_times(&object, Fault::Stall(size / 2), 1);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    out.assert_stderr_contains("retrying");
    let gets = net.gets(&object);
    // Two requests, unless a loaded machine made a clean one time out too.
    assert!(gets.len() >= 2, "{gets:#?}\n{out}");
    let resumed_at: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the retry should resume with a Range: {gets:#?}\n{out}"));
    assert!(
        resumed_at > 0 && resumed_at <= size / 2,
        "resumed at {resumed_at}, the stall came after {} bytes\n{out}",
        size / 2
    );
}

#[test]
fn a_stall_that_never_clears_fails_cleanly() {
    let net = net(|c| {
        c.timeout_seconds = Some(2);
        c.retries = Some(1);
    });
    let before = net.on_old_release();
    let (object, _) = net.object(2, "bin/app");
    net.server.set_fault(&object, Fault::Stall(0));

    let out = net.node.ferry(&["apply"]);
    out.assert_code(1);
    out.assert_stderr_contains("after 2 attempts");
    assert_eq!(net.gets(&object).len(), 2, "{out}");
    net.assert_still_old(&before, &out);
}

#[test]
fn a_bit_flip_that_persists_is_rejected_and_never_installed() {
    let net = net(|_| {});
    let (object, _) = net.object(1, "bin/app");
    net.server.set_fault(&object, Fault::FlipByte(1000));

    let out = net.node.ferry(&["apply", "--version", "1.0.0"]);
    out.assert_code(3);
    out.assert_stderr_contains("corrupt");
    net.node.assert_root_untouched();
    // Fetched once more from scratch (a proxy may have mangled the first
    // copy), then given up: no endless retry of corrupt data.
    assert_eq!(ranges(&net.gets(&object)), [None, None], "{out}");
    let part = net.part(1, "bin/app");
    assert!(
        !part.exists(),
        "a corrupt download must not be kept to resume from: {}",
        part.display()
    );
    let status = net.node.status_json();
    assert!(status["current_version"].is_null(), "{status:#}");
}

#[test]
fn a_bit_flip_once_is_fetched_again_cleanly() {
    let net = net(|_| {});
    let (object, _) = net.object(1, "bin/app");
    net.server
        .set_fault_times(&object, Fault::FlipByte(1000), 1);

    let out = net.node.ferry_ok(&["apply", "--version", "1.0.0"]);
    net.node.assert_current("1.0.0", &net.ws.input(1));
    out.assert_stderr_contains("corrupt");
    assert_eq!(
        ranges(&net.gets(&object)),
        [None, None],
        "the corrupt copy is discarded, the retry starts from byte 0\n{out}"
    );
}

#[test]
fn a_server_ignoring_range_during_a_resume_still_gives_the_right_bytes() {
    let net = net(|_| {});
    let before = net.on_old_release();
    let (object, size) = net.object(2, "bin/app");
    let cut = size / 2;
    net.server
        .set_fault_times(&object, Fault::TruncateBody(cut), 1);
    net.server.set_fault(&object, Fault::IgnoreRange);

    let out = net.node.ferry_ok(&["apply"]);
    net.node.assert_current("1.1.0", &net.ws.input(2));
    assert_ne!(tree_snapshot(&net.node.root), before);
    let gets = net.gets(&object);
    assert_eq!(
        ranges(&gets),
        [None, Some(format!("bytes={cut}-"))],
        "{out}"
    );
    assert_eq!(
        gets[1].status, 200,
        "the server answered the range with the whole file"
    );
    assert!(!net.part(2, "bin/app").exists());
}

#[test]
fn a_failed_update_keeps_its_partial_download_for_the_next_run() {
    let net = net(|c| c.retries = Some(1));
    let before = net.on_old_release();
    let (object, size) = net.object(2, "bin/app");
    let cut = size / 4;
    net.server.set_fault(&object, Fault::TruncateBody(cut));

    let out = net.node.ferry(&["apply"]);
    out.assert_code(1);
    out.assert_stderr_contains("after 2 attempts");
    net.assert_still_old(&before, &out);
    let part = net.part(2, "bin/app");
    assert_eq!(
        fs::metadata(&part).map(|m| m.len()).ok(),
        Some(2 * cut),
        "the bytes of both attempts are kept in {}\n{out}",
        part.display()
    );

    net.server.clear_faults();
    net.server.reset_counters();
    let out = net.node.ferry_ok(&["apply"]);
    net.node.assert_current("1.1.0", &net.ws.input(2));
    let gets = net.gets(&object);
    assert_eq!(
        ranges(&gets),
        [Some(format!("bytes={}-", 2 * cut))],
        "{out}"
    );
    assert_eq!(gets[0].body_bytes, size - 2 * cut);
    assert!(!part.exists());
}
