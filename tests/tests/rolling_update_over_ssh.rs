//! The promise: over the real `ssh` transport (OpenSSH client against a
//! real sshd), `ferry rollout start` updates every node of a five-node
//! cluster exactly once: the canary first, then the followers in batches,
//! the leader last, after every follower's apply had finished.

use ferry_tests::cluster::stage_nodes;
use ferry_tests::ssh_cluster::{rollout_id, SshCluster, TARGET};

#[test]
fn every_node_is_updated_once_canary_first_and_leader_last() {
    let Some(c) = SshCluster::start_or_skip("rolling_update_over_ssh") else {
        return;
    };
    let inventory = c.inventory("canary = 1\nmax_unavailable = 2\npromote = \"auto\"\n");
    let out = c.start(&inventory, &[]);
    out.assert_success().assert_stdout_contains("succeeded");
    let id = rollout_id(&out);
    let r = c.record(&id);
    assert_eq!(r["state"], "succeeded", "{r}");
    // Canary n2, then [n3, n4] and [n5] (two down at most keeps a majority
    // of five), then the leader.
    let stages = stage_nodes(&r["plan"]["stages"]);
    assert_eq!(
        stages,
        [vec!["n2"], vec!["n3", "n4"], vec!["n5"], vec!["n1"]],
        "{r}"
    );
    for name in ["n1", "n2", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "updated", "{r}");
    }
    assert_eq!(r["nodes"]["n2"]["update_order"], 1, "{r}");
    assert_eq!(r["nodes"]["n1"]["update_order"], 5, "{r}");

    c.assert_applied_once(&["n1", "n2", "n3", "n4", "n5"]);
    // From the nodes' own clocks: the canary finished before any other
    // node, and every follower before the leader.
    let finished = |name: &str| c.operations(name)[0].finished_at;
    for name in ["n3", "n4", "n5", "n1"] {
        assert!(finished("n2") < finished(name), "{name} before the canary");
    }
    for name in ["n2", "n3", "n4", "n5"] {
        assert!(finished(name) < finished("n1"), "{name} after the leader");
    }
    let status = c.rollout(&["status", &id, "--json"]);
    status.assert_success();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["version"], TARGET, "{status}");
}
