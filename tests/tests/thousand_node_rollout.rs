//! The promise at fleet scale: `ferry rollout start` over 1,000 nodes
//! (`command` transport, fake nodes that sleep: `ferry_tests::fleet`)
//! updates every node exactly once, stage after stage (the canary before
//! any other node, the leader after every follower), never more nodes at
//! once than the batch; and when a node in the middle of the fleet fails,
//! no node of a later stage is touched and every updated node is rolled
//! back, later stages first.
//!
//! The nodes' own logs (start and end of each operation, written by the
//! fake node) are the evidence, not the coordinator's record.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ferry_tests::binaries;
use ferry_tests::cluster::stage_nodes;
use ferry_tests::fleet::{most_at_once, FakeFleet, Operation};
use ferry_tests::run::{run, Output};
use serde_json::Value;

const NODES: usize = 1000;
const APPLY_SECONDS: f64 = 0.05;
const CANARY: usize = 10;
const BATCH: usize = 100;

fn fleet(dir: &Path) -> FakeFleet {
    let fleet = FakeFleet::create(&dir.join("fleet"), NODES, "1.0.0", APPLY_SECONDS).unwrap();
    fleet
        .write_inventory(&format!(
            "canary = {CANARY}\nmax_unavailable = {BATCH}\nbake_seconds = 0\npromote = \"auto\"\nrollback_on_failure = \"all\""
        ))
        .unwrap();
    fleet
}

fn start(fleet: &FakeFleet, state_dir: &Path) -> Output {
    let started = Instant::now();
    let out = run(Command::new(binaries::ferry())
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .args(["rollout", "start", "--inventory"])
        .arg(fleet.dir.join("cluster.toml"))
        .args(["--version", "1.1.0", "--state-dir"])
        .arg(state_dir));
    eprintln!(
        "rollout of {NODES} nodes took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// The only record in `state_dir`.
fn record(state_dir: &Path) -> Value {
    let dir = state_dir.join("rollouts");
    let mut records: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    serde_json::from_slice(&std::fs::read(records.pop().unwrap()).unwrap()).unwrap()
}

/// Each stage's node names, in order.
fn stages(record: &Value) -> Vec<Vec<String>> {
    stage_nodes(&record["plan"]["stages"])
}

/// The operations named `op` of every node of `stage`.
fn operations(fleet: &FakeFleet, stage: &[String], op: &str) -> Vec<Operation> {
    stage
        .iter()
        .flat_map(|name| fleet.log(name))
        .filter(|o| o.op == op)
        .collect()
}

#[test]
fn every_node_is_updated_once_stage_after_stage_with_the_leader_last() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path());
    let state_dir = dir.path().join("coordinator");
    start(&fleet, &state_dir)
        .assert_success()
        .assert_stdout_contains("succeeded");

    let record = record(&state_dir);
    assert_eq!(record["state"], "succeeded");
    let stages = stages(&record);
    // canary, ceil(989 / 100) follower batches, the leader.
    assert_eq!(stages.len(), 1 + 10 + 1, "{stages:?}");
    assert_eq!(stages[0].len(), CANARY);
    assert_eq!(stages.last().unwrap(), &vec![fleet.leader().to_string()]);
    assert!(!stages[0].iter().any(|n| n == fleet.leader()));

    for name in &fleet.names {
        let log = fleet.log(name);
        assert_eq!(log.len(), 1, "{name} ran {log:?}");
        assert_eq!(
            (log[0].op.as_str(), log[0].version.as_str()),
            ("apply", "1.1.0")
        );
        assert_eq!(fleet.current(name).as_deref(), Some("1.1.0"), "{name}");
        assert_eq!(record["nodes"][name]["state"], "updated", "{name}");
    }
    let planned: usize = stages.iter().map(Vec::len).sum();
    assert_eq!(planned, NODES);

    // Each stage started only after the one before it had finished: the
    // canary before any other node, the leader after every follower.
    for pair in stages.windows(2) {
        let before = operations(&fleet, &pair[0], "apply");
        let after = operations(&fleet, &pair[1], "apply");
        let last_end = before.iter().map(|o| o.end_ns).max().unwrap();
        let first_start = after.iter().map(|o| o.start_ns).min().unwrap();
        assert!(
            last_end < first_start,
            "a node of {:?}… started {} ns before the stage of {:?}… had finished",
            &pair[1][..1],
            last_end - first_start,
            &pair[0][..1]
        );
    }
    let all: Vec<Operation> = fleet.names.iter().flat_map(|n| fleet.log(n)).collect();
    let at_once = most_at_once(&all.iter().collect::<Vec<_>>());
    assert!(
        at_once <= BATCH,
        "{at_once} nodes updated at once, max_unavailable is {BATCH}"
    );
    // The batches ran their nodes concurrently, not one by one.
    assert!(at_once > 1, "nodes were updated one at a time");
}

#[test]
fn a_node_failing_mid_fleet_stops_the_rollout_and_rolls_back_the_updated_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path());
    let failing = "node-0500";
    fleet.make_fail(failing, 6).unwrap();
    let state_dir = dir.path().join("coordinator");
    start(&fleet, &state_dir)
        .assert_code(1)
        .assert_stderr_contains(&format!("failed at node {failing}"));

    let record = record(&state_dir);
    assert_eq!(record["state"], "failed");
    assert_eq!(record["nodes"][failing]["state"], "failed");
    let stages = stages(&record);
    let failed_stage = stages
        .iter()
        .position(|s| s.iter().any(|n| n == failing))
        .unwrap();
    assert!(
        failed_stage > 1 && failed_stage + 2 < stages.len(),
        "{failing} should fail mid-fleet, it is in stage {failed_stage} of {}",
        stages.len()
    );

    // Nothing after the failed stage was touched.
    for name in stages[failed_stage + 1..].iter().flatten() {
        assert!(
            fleet.log(name).is_empty(),
            "{name} ran {:?}",
            fleet.log(name)
        );
        assert_eq!(fleet.current(name).as_deref(), Some("1.0.0"), "{name}");
        assert_eq!(record["nodes"][name]["state"], "pending", "{name}");
    }
    let failing_log = fleet.log(failing);
    assert_eq!(failing_log.len(), 1, "{failing_log:?}");
    assert_eq!(failing_log[0].op, "apply-failed");
    assert_eq!(fleet.current(failing).as_deref(), Some("1.0.0"));

    // Every node that was updated (the stages up to the failed one) was
    // rolled back to 1.0.0, and a later stage's nodes before any earlier
    // stage's.
    let mut later_stages_done = 0u128;
    for stage in stages[..=failed_stage].iter().rev() {
        for name in stage.iter().filter(|n| *n != failing) {
            let log = fleet.log(name);
            let ops: Vec<(&str, &str)> = log
                .iter()
                .map(|o| (o.op.as_str(), o.version.as_str()))
                .collect();
            assert_eq!(ops, [("apply", "1.1.0"), ("rollback", "1.0.0")], "{name}");
            assert_eq!(fleet.current(name).as_deref(), Some("1.0.0"), "{name}");
            assert_eq!(record["nodes"][name]["state"], "rolled-back", "{name}");
        }
        let rollbacks = operations(&fleet, stage, "rollback");
        let first_start = rollbacks.iter().map(|o| o.start_ns).min().unwrap();
        assert!(
            later_stages_done < first_start,
            "a node of the stage of {:?}… was rolled back before the later stages were",
            &stage[..1]
        );
        later_stages_done = rollbacks.iter().map(|o| o.end_ns).max().unwrap();
    }
}
