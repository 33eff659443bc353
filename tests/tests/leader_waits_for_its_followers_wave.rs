//! The promise: in a pull-mode fleet coordinated through etcd, rollout
//! waves know roles. The leader (`[coordination] role = "leader"`) is in
//! the last wave whatever its hash draw, and once that wave is open an
//! unattended run on it whose followers are not done yet defers — exit 0,
//! a `deferred` event naming the followers, no wait for
//! `wait_timeout_seconds`, no `failed` record — and `ferry check` says
//! the same (exit 11). Once the followers report the new version the
//! leader installs.
//!
//! The leader's id is one whose draw lands in the first wave, so a leader
//! placed by its draw would have gone first, waited for its followers and
//! failed. The test computes draws with the documented formula
//! (docs/FORMAT.md, "Waves"), not with the node's code.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use ferry_tests::etcd::Etcd;
use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};
use ferry_tests::waves::{self, epoch};
use serde_json::Value;

const WAVES: &str = "50%@1h,100%@2h";
const PUBLISHED_1: &str = "2030-06-03T00:00:00Z";
const CREATED_2: &str = "2030-06-03T06:00:00Z";
const FIRST_OPENS: &str = "2030-06-03T07:00:00Z";
const SECOND_OPENS: &str = "2030-06-03T08:00:00Z";
const PREFIX: &str = "/ferry/waves";
/// Far longer than any deferral may take.
const WAIT_TIMEOUT_SECONDS: u64 = 90;

/// The first id `<stem>-N` whose draw for 2.0.0 lands in `wave`.
fn id_in_wave(stem: &str, wave: usize) -> String {
    waves::ids_in_wave(stem, "2.0.0", wave, 1).remove(0)
}

/// A node with `[node] id = id` on 1.0.0 (installed by an operator before
/// it joined the fleet), then `[coordination]` with `role`.
fn fleet_node(ws: &Workspace, etcd: &Etcd, id: &str, role: &str) -> Node {
    let node = ws.node(id);
    let append = |text: String| {
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(&node.config)
            .unwrap();
        config.write_all(text.as_bytes()).unwrap();
    };
    append(format!("\n[node]\nid = \"{id}\"\n"));
    node.ferry_at(PUBLISHED_1, &["apply", "--version", "1.0.0"])
        .assert_success();
    append(format!(
        "\n[coordination]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\nlease_seconds = 2\npoll_interval_ms = 100\nwait_timeout_seconds = {WAIT_TIMEOUT_SECONDS}\n{role}\n",
        etcd.url
    ));
    node
}

fn check(node: &Node, now: &str) -> (i32, Value) {
    let out = node.ferry_at(now, &["check", "--json"]);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e})\n{out}"));
    (out.code.expect("check exited"), report)
}

fn unattended(node: &Node, now: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = node.ferry_at(now, &["apply", "--unattended", "--output", "json"]);
    (out, started.elapsed())
}

fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The unattended run on the leader defers at once, says why, installs
/// nothing and records nothing; `check` agrees (exit 11, same reason).
#[track_caller]
fn assert_leader_defers(ws: &Workspace, leader: &Node, now: &str, why: &str) {
    let (code, report) = check(leader, now);
    assert_eq!(code, 11, "{report:#}");
    assert_eq!(report["policy_allows_now"], false, "{report:#}");
    let reason = report["policy_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{report:#}");
    assert_eq!(report["wave"]["index"], 2, "the last wave: {report:#}");
    assert_eq!(report["wave"]["leader"], true, "{report:#}");

    let history_before = leader.history_json().len();
    let (out, took) = unattended(leader, now);
    out.assert_success();
    assert!(
        took < Duration::from_secs(WAIT_TIMEOUT_SECONDS / 3),
        "a deferral does not wait for the followers ({took:?})\n{out}"
    );
    let all = events(&out);
    let deferred: Vec<&Value> = all.iter().filter(|e| e["event"] == "deferred").collect();
    assert_eq!(deferred.len(), 1, "{out}");
    assert_eq!(deferred[0]["version"], "2.0.0", "{out}");
    assert_eq!(
        deferred[0]["reason"], reason,
        "check and apply agree\n{out}"
    );
    assert!(!all.iter().any(|e| e["event"] == "failed"), "{out}");
    leader.assert_current("1.0.0", &ws.input(1));
    assert_eq!(leader.releases_on_disk(), ["1.0.0"], "nothing staged");
    assert_eq!(
        leader.history_json().len(),
        history_before,
        "a deferral records nothing, so nothing is announced as failed"
    );
    // People read the same line from check and from apply.
    let human = leader.ferry_at(now, &["check"]);
    human.assert_code(11).assert_stdout_contains(why);
}

#[test]
fn the_leader_defers_until_its_followers_are_done_then_installs() {
    let Some(etcd) =
        Etcd::start_or_skip("the_leader_defers_until_its_followers_are_done_then_installs")
    else {
        return;
    };
    let ws = Workspace::new();
    for (version, generation, at) in [("1.0.0", 1, PUBLISHED_1), ("2.0.0", 2, CREATED_2)] {
        run(ws
            .release_command(version, CHANNEL, &ws.input(generation))
            .args(["--waves", WAVES])
            .env("SOURCE_DATE_EPOCH", epoch(at)))
        .assert_success();
    }
    // By its draw the leader would be in the first wave.
    let leader_id = id_in_wave("leader", 1);
    let early_id = id_in_wave("early", 1);
    let late_id = id_in_wave("late", 2);
    let leader = fleet_node(&ws, &etcd, &leader_id, "role = \"leader\"\nfollowers = 2");
    let early = fleet_node(&ws, &etcd, &early_id, "role = \"follower\"");
    let late = fleet_node(&ws, &etcd, &late_id, "role = \"follower\"");

    // The first wave opens: the leader is not in it.
    assert_leader_defers(
        &ws,
        &leader,
        FIRST_OPENS,
        "wave 2 of 2 (100%, the leader's) of the rollout of 2.0.0, which opens at 2030-06-03T08:00:00Z",
    );
    let (code, _) = check(&early, FIRST_OPENS);
    assert_eq!(code, 10, "the early follower may install");
    let (out, _) = unattended(&early, FIRST_OPENS);
    out.assert_success();
    early.assert_current("2.0.0", &ws.input(2));
    let (out, _) = unattended(&late, FIRST_OPENS);
    out.assert_success();
    late.assert_current("1.0.0", &ws.input(1));

    // The last wave opens: the late follower has not updated yet, so the
    // leader defers again, naming it.
    assert_leader_defers(
        &ws,
        &leader,
        SECOND_OPENS,
        &format!("its followers: 1 of 2 followers report 2.0.0; behind: {late_id} (1.0.0)"),
    );

    // The late follower updates; now the leader installs.
    let (out, _) = unattended(&late, SECOND_OPENS);
    out.assert_success();
    late.assert_current("2.0.0", &ws.input(2));
    let (code, report) = check(&leader, SECOND_OPENS);
    assert_eq!(code, 10, "{report:#}");
    let (out, _) = unattended(&leader, SECOND_OPENS);
    out.assert_success();
    assert_eq!(events(&out).last().unwrap()["event"], "applied", "{out}");
    leader.assert_current("2.0.0", &ws.input(2));
    let history = leader.history_json();
    let failures: Vec<&Value> = history
        .iter()
        .filter(|op| op["outcome"] == "failed")
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
