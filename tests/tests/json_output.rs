//! The promise: `--output json` gives machines (a fleet coordinator reading
//! over ssh, a CI job) one JSON event per line on stdout and nothing else,
//! ending with the outcome, and the exit code agrees with it.

use ferry_tests::fixtures::{flip_byte, Workspace, CHANNEL};
use serde_json::Value;

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}\n{stdout}"))
        })
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[test]
fn apply_reports_each_step_as_a_json_line() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n1");

    let out = node.ferry_ok(&["--output", "json", "apply", "--version", "1.0.0"]);
    let first = events(&out.stdout);
    assert_eq!(
        names(&first),
        ["plan", "fetched", "staged", "switched", "live", "applied"],
        "{out}"
    );
    // No [health] on this node: `live` says nothing checked it.
    assert_eq!(first[4]["health"], "none", "{out}");
    let applied = first.last().unwrap();
    assert_eq!(applied["to_version"], "1.0.0");
    assert_eq!(applied["from_version"], Value::Null);
    assert!(applied["bytes_downloaded"].as_u64().unwrap() > 0);
    assert!(first.iter().all(|e| e["timestamp"].is_string()));
    // The plan announced what the fetch then downloaded.
    assert!(first[0]["fetches"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(
        first[0]["download_bytes"], applied["bytes_downloaded"],
        "{out}"
    );

    let out = node.ferry_ok(&["--output", "json", "apply"]);
    let second = events(&out.stdout);
    assert_eq!(second.last().unwrap()["event"], "applied", "{out}");
    assert_eq!(second.last().unwrap()["from_version"], "1.0.0");
    assert_eq!(second.last().unwrap()["to_version"], "1.1.0");

    let out = node.ferry_ok(&["--output", "json", "apply"]);
    assert_eq!(names(&events(&out.stdout)), ["up_to_date"], "{out}");

    // A third release prunes the oldest (keep_releases = 2): what is said
    // about that stays off stdout too.
    ws.publish("1.2.0", CHANNEL, &ws.input(3));
    let out = node.ferry_ok(&["--output", "json", "apply"]);
    assert_eq!(
        events(&out.stdout).last().unwrap()["event"],
        "applied",
        "{out}"
    );
    assert!(
        !node.release_dir("1.0.0").exists(),
        "1.0.0 was pruned\n{out}"
    );

    let out = node.ferry_ok(&["--output", "json", "rollback"]);
    let back = events(&out.stdout);
    assert_eq!(names(&back), ["rolled_back"], "{out}");
    assert_eq!(back[0]["to_version"], "1.1.0");

    let out = node.ferry_ok(&["--output", "json", "apply", "--dry-run"]);
    assert_eq!(names(&events(&out.stdout)), ["dry_run"], "{out}");
}

#[test]
fn a_failure_ends_the_stream_with_a_failed_event_and_its_exit_code() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    // A manifest altered after signing: the update fails verification.
    flip_byte(&ws.repo.join("manifests/1.1.0.json"), 200);
    let out = node.ferry(&["--output", "json", "apply"]);
    assert_ne!(out.code, Some(0), "{out}");
    let all = events(&out.stdout);
    let last = all.last().expect("at least the failed event");
    assert_eq!(last["event"], "failed", "{out}");
    assert_eq!(last["exit_code"].as_i64(), out.code.map(i64::from), "{out}");
    assert!(last["message"].as_str().unwrap().contains("1.1.0"), "{out}");
    // Human text stays off stdout in JSON mode.
    assert!(out.stderr.contains("ferry: error:"), "{out}");
}
