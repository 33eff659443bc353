//! The threat: `leader_command` was asked once, at plan time. After a
//! leadership change between the canary and `promote`, the real leader was
//! updated in a follower batch (forcing an election with followers still
//! on the old version) and the old leader went "last".
//!
//! The promise: the coordinator asks `leader_command` again before every
//! stage; the current leader is never in a follower stage and is updated
//! alone, after every other node; the change is in the timeline.

use ferry_tests::cluster::{
    command_inventory, coordinator, five_nodes_on_1_0_0, printed_rollout_id, rollout_record,
    start_version_command,
};
use ferry_tests::fixtures::Node;
use ferry_tests::run::run;
use jiff::Timestamp;

/// When `node`'s rollout apply (its second operation) finished.
fn applied_at(node: &Node) -> Timestamp {
    let ops = node.history_json();
    assert_eq!(ops.len(), 2, "{}: {ops:#?}", node.name);
    assert_eq!(ops[1]["to_version"], "1.1.0", "{}", node.name);
    ops[1]["finished_at"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_leader_elected_after_the_canary_is_updated_last_and_alone() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = command_inventory(&ws, &nodes, None, "canary = 1\nmax_unavailable = 2");
    let leader_file = ws.dir.join("leader");
    std::fs::write(&leader_file, "n1\n").unwrap();
    let text = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &inventory,
        format!("leader_command = \"cat {}\"\n{text}", leader_file.display()),
    )
    .unwrap();

    let out = run(&mut start_version_command(
        &ws,
        &inventory,
        "1.1.0",
        &["--promote", "manual"],
    ));
    out.assert_success();
    let id = printed_rollout_id(&out.stdout).unwrap();
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "awaiting-promotion", "{r}");
    let stages = r["plan"]["stages"].as_array().unwrap().clone();
    assert_eq!(stages.last().unwrap()["nodes"][0], "n1", "{r}");
    // Leadership moves to a follower the plan put in the next batch.
    let new_leader = stages[1]["nodes"][0].as_str().unwrap().to_string();
    std::fs::write(&leader_file, format!("{new_leader}\n")).unwrap();

    coordinator(&ws, &["rollout", "promote", &id]).assert_success();
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "succeeded", "{r}");
    let stages = r["plan"]["stages"].as_array().unwrap();
    assert_eq!(
        stages.last().unwrap()["nodes"],
        serde_json::json!([new_leader]),
        "{r}"
    );
    assert_eq!(stages.last().unwrap()["kind"], "leader", "{r}");
    assert!(
        stages[1]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "n1"),
        "the old leader takes the new one's follower slot: {r}"
    );
    let timeline = r["timeline"].to_string();
    assert!(
        timeline.contains(&format!("leadership moved from n1 to {new_leader}")),
        "{timeline}"
    );
    // On the nodes themselves: the new leader's apply ended after every
    // other node's.
    let leader = nodes.iter().find(|n| n.name == new_leader).unwrap();
    let last = applied_at(leader);
    for node in nodes.iter().filter(|n| n.name != new_leader) {
        assert!(applied_at(node) < last, "{} after the leader", node.name);
    }
}
