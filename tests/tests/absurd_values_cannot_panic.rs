//! The threat: a number far outside what anyone means panics the node
//! instead of being refused. `[repository] timeout_seconds =
//! 18446744073709551615` passed the old `>= 1` check and then panicked
//! ("overflow when adding duration to instant") on the first fetch; a
//! server announcing a `Content-Length` near `u64::MAX` during a resume
//! overflowed `start + len`.
//!
//! Every bounded number of `ferry.toml` is tried with an absurd value: the
//! node must refuse the file at load (the configuration-error exit code,
//! never 101) with one line naming the key, its value and the range; a
//! value its type cannot hold at all (negative, past `u32`) gets one line
//! showing the line at fault. Then a real HTTP server lies about lengths
//! and ranges: a clean error, no panic, nothing installed.

use std::fs;

use ferry_tests::fixtures::Workspace;
use ferry_tests::http_server::Fault;
use ferry_tests::threats::{served, Served, FAILED, VERIFICATION_FAILED};

/// Extra lines a section needs before the key under test is checked.
const HEALTH: &str = "[health]\ncommand = \"true\"\n";
const NOTIFY: &str = "[[notify]]\nurl = \"http://127.0.0.1:9/hook\"\n";
const COORDINATION: &str = "[coordination]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/ferry/t\"\n";
const LEADER: &str = "[coordination]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/ferry/t\"\nrole = \"leader\"\n";

/// `ferry check`'s exit code when an update is available.
const UPDATE_AVAILABLE: i32 = 10;

const U64_MAX: &str = "18446744073709551615";
const U32_MAX: &str = "4294967295";

/// (the section's lines, the key, an absurd value, the key as the error
/// names it). `[repository]` and `[install]` keys go into the node's own
/// sections.
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "[repository]",
        "timeout_seconds",
        U64_MAX,
        "[repository] timeout_seconds",
    ),
    (
        "[repository]",
        "timeout_seconds",
        "9223372036854775807",
        "[repository] timeout_seconds",
    ),
    ("[repository]", "retries", U32_MAX, "[repository] retries"),
    (
        "[repository]",
        "stall_timeout_seconds",
        U64_MAX,
        "[repository] stall_timeout_seconds",
    ),
    (
        "[repository]",
        "min_bytes_per_second",
        U64_MAX,
        "[repository] min_bytes_per_second",
    ),
    (
        "[install]",
        "keep_releases",
        U64_MAX,
        "[install] keep_releases",
    ),
    (
        "[install]",
        "keep_restore_points",
        U64_MAX,
        "[install] keep_restore_points",
    ),
    (
        "[service]\n",
        "command_timeout_seconds",
        U64_MAX,
        "[service] command_timeout_seconds",
    ),
    (
        "[service]\n",
        "hook_timeout_seconds",
        U64_MAX,
        "[service] hook_timeout_seconds",
    ),
    (
        HEALTH,
        "expected_status",
        "65535",
        "[health] expected_status",
    ),
    (HEALTH, "interval_ms", U64_MAX, "[health] interval_ms"),
    (HEALTH, "retries", U32_MAX, "[health] retries"),
    (
        HEALTH,
        "timeout_seconds",
        U64_MAX,
        "[health] timeout_seconds",
    ),
    (
        HEALTH,
        "probe_timeout_ms",
        U64_MAX,
        "[health] probe_timeout_ms",
    ),
    (
        "[migrations]\n",
        "timeout_seconds",
        U64_MAX,
        "[migrations] timeout_seconds",
    ),
    (
        "[preflight]\n",
        "min_available_memory_mb",
        U64_MAX,
        "[preflight] min_available_memory_mb",
    ),
    (
        "[preflight]\n",
        "timeout_ms",
        U64_MAX,
        "[preflight] timeout_ms",
    ),
    (
        NOTIFY,
        "timeout_seconds",
        U64_MAX,
        "[[notify]] #0 timeout_seconds",
    ),
    (NOTIFY, "retries", U32_MAX, "[[notify]] #0 retries"),
    (
        NOTIFY,
        "initial_backoff_ms",
        U64_MAX,
        "[[notify]] #0 initial_backoff_ms",
    ),
    (
        COORDINATION,
        "max_unavailable",
        U32_MAX,
        "[coordination] max_unavailable",
    ),
    (
        COORDINATION,
        "lease_seconds",
        U64_MAX,
        "[coordination] lease_seconds",
    ),
    (LEADER, "followers", U32_MAX, "[coordination] followers"),
    (
        COORDINATION,
        "wait_timeout_seconds",
        U64_MAX,
        "[coordination] wait_timeout_seconds",
    ),
    (
        COORDINATION,
        "poll_interval_ms",
        U64_MAX,
        "[coordination] poll_interval_ms",
    ),
    (
        COORDINATION,
        "request_timeout_seconds",
        U64_MAX,
        "[coordination] request_timeout_seconds",
    ),
];

#[test]
fn every_bounded_key_refuses_an_absurd_value_with_one_line() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("a");
    let good = fs::read_to_string(&node.config).unwrap();
    // The node's own configuration works (`check` says "update
    // available"): what fails below is the value.
    node.ferry(&["check"]).assert_code(UPDATE_AVAILABLE);
    for (i, (section, key, value, named)) in CASES.iter().enumerate() {
        let line = format!("{key} = {value}\n");
        let config = if section.starts_with("[repository]") || section.starts_with("[install]") {
            let header = format!("{section}\n");
            assert!(good.contains(&header), "{good}");
            good.replacen(&header, &format!("{header}{line}"), 1)
        } else {
            format!("{good}\n{section}{line}")
        };
        fs::write(&node.config, &config).unwrap();
        // Every command loads the configuration first; `apply` is where the
        // panic was, so the first case runs it too.
        let commands: &[&str] = if i == 0 {
            &["check", "apply"]
        } else {
            &["check"]
        };
        for command in commands {
            let out = node.ferry(&[command]);
            out.assert_code(FAILED);
            let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.len(), 1, "one line of error:\n{config}\n{out}");
            let expected = format!("{named} = {value} is out of range: use ");
            assert!(
                lines[0].contains(&expected),
                "expected {expected:?}:\n{out}"
            );
        }
    }
    // Values the key's type cannot hold at all are refused by the TOML
    // reader: one line too, showing the line at fault.
    for line in [
        format!("retries = {U64_MAX}"),
        "timeout_seconds = -1".to_string(),
        format!("keep_releases = {U64_MAX}0"),
    ] {
        let header = if line.starts_with("keep_releases") {
            "[install]\n"
        } else {
            "[repository]\n"
        };
        let config = good.replacen(header, &format!("{header}{line}\n"), 1);
        fs::write(&node.config, &config).unwrap();
        let out = node.ferry(&["check"]);
        out.assert_code(FAILED);
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line of error:\n{config}\n{out}");
        assert!(lines[0].contains(&format!("(`{line}`): ")), "{out}");
    }
    fs::write(&node.config, good).unwrap();
    assert_eq!(node.current_version(), None, "nothing was installed");
    node.ferry(&["check"]).assert_code(UPDATE_AVAILABLE);
}

/// The last request for `object` asked for the bytes from `cut`: the
/// lie was told to a resume, where `start + len` could wrap.
#[track_caller]
fn assert_resumed_at(net: &Served, object: &str, cut: u64) {
    let requests = net.server.requests_for(object);
    let last = requests.last().expect("the object was asked for");
    assert_eq!(last.range, Some(format!("bytes={cut}-")), "{requests:?}");
}

#[test]
fn a_content_length_near_u64_max_during_a_resume_is_refused_cleanly() {
    let net = served(|c| c.retries = Some(0));
    let before = net.on_release_1();
    let object = net.object(2, "bin/app");
    let size = fs::metadata(net.ws.repo.join(&object)).unwrap().len();
    let cut = size / 2;
    // A first attempt cut short leaves a partial download to resume.
    net.server
        .set_fault_times(&object, Fault::TruncateBody(cut), 1);
    net.node.ferry(&["apply"]).assert_code(FAILED);
    // The resume: `start + len` would wrap past u64::MAX.
    net.server
        .set_fault(&object, Fault::ContentLength(u64::MAX - cut + 1));
    let out = net.node.ferry(&["apply"]);
    assert!(!out.stderr.contains("panicked"), "{out}");
    before.assert_refused(&net.node, &out, VERIFICATION_FAILED, &["larger than"]);
    assert_resumed_at(&net, &object, cut);

    // A Content-Range whose end and total are near u64::MAX: the same.
    net.server.clear_faults();
    net.server
        .set_fault_times(&object, Fault::TruncateBody(cut), 1);
    net.node.ferry(&["apply"]).assert_code(FAILED);
    net.server.set_fault(
        &object,
        Fault::ContentRange(format!("bytes {cut}-{}/{}", u64::MAX - 1, u64::MAX)),
    );
    let out = net.node.ferry(&["apply"]);
    assert!(!out.stderr.contains("panicked"), "{out}");
    before.assert_refused(&net.node, &out, VERIFICATION_FAILED, &["larger than"]);
    assert_resumed_at(&net, &object, cut);
}
