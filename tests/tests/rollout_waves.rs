//! The promise: a release published with `--waves "50%@1h,100%@2h"`
//! reaches a pull-mode fleet in stages. Every node places itself from a
//! hash of its `[node] id` and the version (docs/FORMAT.md, "Waves"), so no
//! coordinator is needed: before the first wave opens no unattended run
//! installs, and `ferry check` says when each node's wave opens; once the
//! first wave has opened exactly its nodes install; after the last every
//! node does. An operator's plain `ferry apply` is never held by waves.
//! The schedule is signed content: re-publishing the version with another
//! schedule is refused, and a malformed one is a usage error.
//!
//! The repository is dated with `SOURCE_DATE_EPOCH` and the nodes' clocks
//! moved with `FERRY_NOW`, so the waves open on purpose. The test computes
//! each node's wave with the documented formula on its own (not with the
//! node's code), which is what a fleet tool predicting waves would do.

use std::fs;
use std::io::Write;

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};
use ferry_tests::waves::{self, epoch};
use serde_json::Value;

const WAVES: &str = "50%@1h,100%@2h";
/// 1.0.0 and 2.0.0 are both published with [`WAVES`]; 2.0.0 at 06:00.
const PUBLISHED_1: &str = "2030-06-03T00:00:00Z";
const CREATED_2: &str = "2030-06-03T06:00:00Z";
/// Half an hour after 2.0.0: no wave is open.
const BEFORE_ANY: &str = "2030-06-03T06:30:00Z";
/// 2.0.0's waves open at created + 1 h and created + 2 h.
const FIRST_OPENS: &str = "2030-06-03T07:00:00Z";
const BETWEEN: &str = "2030-06-03T07:30:00Z";
const SECOND_OPENS: &str = "2030-06-03T08:00:00Z";

/// The first `count` ids `fleet-N` that land in `wave` for 2.0.0.
fn ids_in_wave(wave: usize, count: usize) -> Vec<String> {
    waves::ids_in_wave("fleet", "2.0.0", wave, count)
}

fn repository() -> Workspace {
    let ws = Workspace::new();
    for (version, generation, at) in [("1.0.0", 1, PUBLISHED_1), ("2.0.0", 2, CREATED_2)] {
        run(ws
            .release_command(version, CHANNEL, &ws.input(generation))
            .args(["--waves", WAVES])
            .env("SOURCE_DATE_EPOCH", epoch(at)))
        .assert_success();
    }
    ws
}

/// A node with `[node] id = id`, put on 1.0.0 by an operator before 2.0.0
/// was published (1.0.0's own waves do not hold an operator back either).
fn node_on_v1(ws: &Workspace, id: &str) -> Node {
    let node = ws.node(id);
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(&node.config)
        .unwrap();
    write!(config, "\n[node]\nid = \"{id}\"\n").unwrap();
    node.ferry_at(PUBLISHED_1, &["apply", "--version", "1.0.0"])
        .assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(
        node.status_json()["node_id"],
        serde_json::json!({"id": id, "source": "config"})
    );
    node
}

/// `ferry check --json` at `now`: its exit code and report.
fn check(node: &Node, now: &str) -> (i32, Value) {
    let out = node.ferry_at(now, &["check", "--json"]);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e})\n{out}"));
    (out.code.expect("check exited"), report)
}

/// The instant `wave` (1-based) of 2.0.0 opens.
fn opens_at(wave: usize) -> &'static str {
    [FIRST_OPENS, SECOND_OPENS][wave - 1]
}

/// At `now`, before `node`'s wave opens: check exits 11 and says when,
/// and an unattended run defers with one line and installs nothing.
#[track_caller]
fn assert_held(ws: &Workspace, node: &Node, wave: usize, now: &str) {
    let (code, report) = check(node, now);
    assert_eq!(code, 11, "{}: {report:#}", node.name);
    assert_eq!(report["target"], "2.0.0", "{report:#}");
    assert_eq!(report["policy_allows_now"], false, "{report:#}");
    assert_eq!(report["next_allowed_at"], opens_at(wave), "{report:#}");
    assert_eq!(report["wave"]["index"], wave, "{report:#}");
    assert_eq!(report["wave"]["count"], 2, "{report:#}");
    assert_eq!(report["wave"]["percent"], [50, 100][wave - 1], "{report:#}");
    assert_eq!(report["wave"]["opens_at"], opens_at(wave), "{report:#}");
    assert_eq!(report["wave"]["open"], false, "{report:#}");
    let position = report["wave"]["position"].as_f64().expect("a position");
    let (low, high) = [(0.0, 50.0), (50.0, 100.0)][wave - 1];
    assert!((low..high).contains(&position), "{report:#}");
    let reason = report["policy_reason"].as_str().unwrap_or_default();
    let expected = format!(
        "this node is in wave {wave} of 2 ({}%) of the rollout of 2.0.0, which opens at {}",
        [50, 100][wave - 1],
        opens_at(wave)
    );
    assert!(reason.contains(&expected), "{report:#}");

    let out = node.ferry_at(now, &["apply", "--unattended"]);
    out.assert_success()
        .assert_stdout_contains("not installing 2.0.0 now")
        .assert_stdout_contains(&expected)
        .assert_stdout_contains(&format!("next allowed at {}", opens_at(wave)));
    assert_eq!(out.stdout.lines().count(), 1, "one line\n{out}");
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(node.releases_on_disk(), ["1.0.0"], "nothing was staged");
}

/// At `now`, once `node`'s wave has opened: check exits 10 and the
/// unattended run installs 2.0.0.
#[track_caller]
fn assert_installs(ws: &Workspace, node: &Node, wave: usize, now: &str) {
    let (code, report) = check(node, now);
    assert_eq!(code, 10, "{}: {report:#}", node.name);
    assert_eq!(report["policy_allows_now"], true, "{report:#}");
    assert_eq!(report["next_allowed_at"], Value::Null, "{report:#}");
    assert_eq!(report["wave"]["index"], wave, "{report:#}");
    assert_eq!(report["wave"]["open"], true, "{report:#}");
    node.ferry_at(now, &["apply", "--unattended"])
        .assert_success()
        .assert_stdout_contains("updated 1.0.0 -> 2.0.0");
    node.assert_current("2.0.0", &ws.input(2));
}

#[test]
fn each_wave_installs_when_it_opens_and_not_before() {
    let ws = repository();
    let first: Vec<Node> = ids_in_wave(1, 2)
        .iter()
        .map(|id| node_on_v1(&ws, id))
        .collect();
    let second: Vec<Node> = ids_in_wave(2, 2)
        .iter()
        .map(|id| node_on_v1(&ws, id))
        .collect();

    // Before any wave opens, nobody installs unattended, and each node
    // says when its own wave opens.
    for node in &first {
        assert_held(&ws, node, 1, BEFORE_ANY);
    }
    for node in &second {
        assert_held(&ws, node, 2, BEFORE_ANY);
    }
    // People read the same in check's human output.
    assert_rollout_line(
        &first[0],
        BEFORE_ANY,
        "wave 1 of 2 (50%), opens at 2030-06-03T07:00:00Z",
    );

    // A second before the first wave opens it is still closed; at its
    // opening exactly the first wave installs.
    assert_held(&ws, &first[0], 1, "2030-06-03T06:59:59Z");
    for node in &first {
        assert_installs(&ws, node, 1, FIRST_OPENS);
    }
    for node in &second {
        assert_held(&ws, node, 2, BETWEEN);
    }

    // Once the last wave opens, everyone installs.
    assert_rollout_line(
        &second[0],
        SECOND_OPENS,
        "wave 2 of 2 (100%), opened at 2030-06-03T08:00:00Z",
    );
    for node in &second {
        assert_installs(&ws, node, 2, SECOND_OPENS);
    }
    for node in first.iter().chain(&second) {
        let (code, report) = check(node, SECOND_OPENS);
        assert_eq!(code, 0, "up to date: {report:#}");
        assert_eq!(
            report["wave"],
            Value::Null,
            "no target, no wave: {report:#}"
        );
    }
}

/// `ferry check` (human output) at `now` shows `expected` on its rollout line.
#[track_caller]
fn assert_rollout_line(node: &Node, now: &str, expected: &str) {
    let out = node.ferry_at(now, &["check"]);
    out.assert_stdout_contains(&format!("rollout:   {expected}"));
}

#[test]
fn an_operator_installs_before_the_nodes_wave_opens() {
    let ws = repository();
    let id = &ids_in_wave(2, 1)[0];
    let node = node_on_v1(&ws, id);
    let (code, _) = check(&node, BEFORE_ANY);
    assert_eq!(code, 11);
    node.ferry_at(BEFORE_ANY, &["apply"])
        .assert_success()
        .assert_stdout_contains("updated 1.0.0 -> 2.0.0");
    node.assert_current("2.0.0", &ws.input(2));
}

#[test]
fn the_schedule_is_signed_content_and_checked_by_the_publisher() {
    let ws = repository();
    let manifest: Value =
        serde_json::from_slice(&fs::read(ws.repo.join("manifests/2.0.0.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["waves"],
        serde_json::json!([
            {"percent": 50, "after_seconds": 3600},
            {"percent": 100, "after_seconds": 7200}
        ])
    );

    // The repository's inventory shows it.
    let out = run(ws.publisher().args(["list", "--repo"]).arg(&ws.repo));
    out.assert_success()
        .assert_stdout_contains(", waves 50%@1h,100%@2h");

    // The same schedule again: already published, nothing to do.
    let republish = |waves: &str| -> Output {
        run(ws
            .release_command("2.0.0", CHANNEL, &ws.input(2))
            .args(["--waves", waves])
            .env("SOURCE_DATE_EPOCH", epoch(CREATED_2)))
    };
    republish(WAVES).assert_success();
    // Another schedule is other content.
    republish("100%@0s")
        .assert_code(1)
        .assert_stderr_contains("waves were 50%@1h,100%@2h, now 100%@0s");
    // Without waves, too.
    let out = run(ws
        .release_command("2.0.0", CHANNEL, &ws.input(2))
        .env("SOURCE_DATE_EPOCH", epoch(CREATED_2)));
    out.assert_code(1)
        .assert_stderr_contains("waves were 50%@1h,100%@2h, now none");

    // A schedule that would strand part of the fleet is a usage error that
    // shows the expected form, before anything is read.
    for (bad, why) in [
        ("50%@1h", "the last wave reaches 50%, not 100%"),
        ("50%@2h,100%@1h", "cannot open earlier"),
        ("50%@1week,100%@2w", "s, m, h or d"),
    ] {
        run(ws
            .release_command("3.0.0", CHANNEL, &ws.input(3))
            .args(["--waves", bad]))
        .assert_code(2)
        .assert_stderr_contains(why)
        .assert_stderr_contains("\"1%@1h,5%@4h,25%@1d,100%@3d\"");
    }
    assert!(!ws.repo.join("manifests/3.0.0.json").exists());
}
