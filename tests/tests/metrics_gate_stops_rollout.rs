//! The promise: a rollout goes on only while its metrics gate holds. A
//! reading above `max` right after a stage, or at any reading during the
//! bake that follows, stops the rollout and rolls back what it updated;
//! automatic promotion past the canary happens only when the gate held for
//! the whole bake time.

use ferry_tests::cluster::{
    command_inventory, five_nodes_on_1_0_0 as cluster, printed_rollout_id, rollout_record,
    start_rollout,
};
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::metrics_endpoint::MetricsEndpoint;

fn gated_inventory(
    ws: &Workspace,
    nodes: &[Node],
    gate: &MetricsEndpoint,
    bake: u64,
) -> std::path::PathBuf {
    command_inventory(
        ws,
        nodes,
        None,
        &format!(
            "canary = 1\nmax_unavailable = 2\nbake_seconds = {bake}\npromote = \"auto\"\n\
             metrics_gate = {{ url = \"{}\", max = 0.05, interval_seconds = 1, timeout_seconds = 2 }}",
            gate.url
        ),
    )
}

fn versions(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.current_version().unwrap_or_default())
        .collect()
}

#[test]
fn a_reading_above_the_maximum_after_the_canary_rolls_the_canary_back() {
    let (ws, nodes) = cluster();
    let gate = MetricsEndpoint::start("0.30");
    let inventory = gated_inventory(&ws, &nodes, &gate, 0);
    let out = start_rollout(&ws, &inventory);
    out.assert_code(1)
        .assert_stderr_contains("metrics gate")
        .assert_stderr_contains("above the maximum 0.05");
    let id = printed_rollout_id(&out.stdout).unwrap();
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "failed", "{r}");
    // The canary (n2) was updated, then rolled back; nobody else moved.
    assert_eq!(r["nodes"]["n2"]["state"], "rolled-back", "{r}");
    for name in ["n1", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    assert_eq!(versions(&nodes), vec!["1.0.0"; 5]);
    let n2: Vec<String> = nodes[1]
        .history_json()
        .iter()
        .skip(1)
        .map(|op| op["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(n2, ["apply", "rollback"]);
}

#[test]
fn a_gate_that_breaks_during_the_bake_stops_promotion() {
    let (ws, nodes) = cluster();
    let gate = MetricsEndpoint::start("0.0");
    let inventory = gated_inventory(&ws, &nodes, &gate, 30);
    let id = std::thread::scope(|scope| {
        let run = scope.spawn(|| start_rollout(&ws, &inventory));
        // Once the canary is updated the coordinator bakes for 30 s; the
        // error rate climbs during the bake.
        let dir = ws.dir.join("coordinator/rollouts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the canary never finished"
            );
            let baking = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let path = e.path();
                    path.extension().is_some_and(|x| x == "json")
                        && std::fs::read(&path)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .is_some_and(|r| r["stage_index"] == 1)
                });
            if baking {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        gate.set("0.25");
        let started = std::time::Instant::now();
        let out = run.join().unwrap();
        // Stopped by a reading (every second), not at the end of the bake.
        assert!(started.elapsed().as_secs() < 25, "{out}");
        out.assert_code(1).assert_stderr_contains("0.25");
        printed_rollout_id(&out.stdout).unwrap()
    });
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "rolled-back", "{r}");
    assert_eq!(versions(&nodes), vec!["1.0.0"; 5]);
}

#[test]
fn auto_promotion_waits_for_the_gate_to_hold_through_each_bake() {
    let (ws, nodes) = cluster();
    let gate = MetricsEndpoint::start("0.01");
    let inventory = gated_inventory(&ws, &nodes, &gate, 2);
    let out = start_rollout(&ws, &inventory);
    out.assert_success().assert_stdout_contains("succeeded");
    assert_eq!(versions(&nodes), vec!["1.1.0"; 5]);
    let id = printed_rollout_id(&out.stdout).unwrap();
    let r = rollout_record(&ws, &id);
    // Stages: canary, two batches of 2 (max_unavailable 2), leader: a bake
    // after each of the first three, each read every second and at its end,
    // plus one reading after each of the four stages.
    let bakes = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().starts_with("baking 2s"))
        .count();
    assert_eq!(bakes, 3, "{r}");
    let held = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"] == "metrics gate holds: 0.01 (max 0.05)")
        .count();
    assert_eq!(held, 4, "one reading noted after each stage: {r}");
    assert!(gate.readings() >= 4 + 3 * 2, "{} readings", gate.readings());
    // Each node went live; none has a [health] check, so none is called
    // healthy.
    for node in &nodes {
        assert_eq!(r["nodes"][&node.name]["health"], "unchecked", "{r}");
        assert_eq!(r["nodes"][&node.name]["phase"], "live", "{r}");
    }
}
