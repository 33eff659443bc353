//! The promise: a node ssh cannot reach counts as failed. Before the
//! rollout, `ferry rollout start` refuses to begin, naming the node and
//! ssh's reason, and changes nothing; during the rollout, the node's
//! apply fails, the rollout halts there and the nodes it updated are
//! rolled back.
//!
//! The inventory reaches nodes by ssh host alias; pointing `n4`'s alias
//! at 127.0.0.2 (where nothing listens) makes that node unreachable.

use ferry_tests::ssh_cluster::{rollout_id, SshCluster};

const N4_UNREACHABLE: &str = "Host n4\n  HostName 127.0.0.2\n";

#[test]
fn start_refuses_a_cluster_with_an_unreachable_node() {
    let Some(c) = SshCluster::start_or_skip("unreachable_node_counts_as_failed") else {
        return;
    };
    c.sshd.write_client_config(N4_UNREACHABLE).unwrap();
    let inventory = c.inventory("canary = 1\nmax_unavailable = 1\npromote = \"auto\"\n");
    let out = c.start(&inventory, &[]);
    out.assert_code(1)
        .assert_stderr_contains("unreachable nodes: n4")
        .assert_stderr_contains("status of node n4")
        .assert_stderr_contains("connection refused");
    assert!(
        c.rollout_ids().is_empty(),
        "no rollout may be recorded: {:?}",
        c.rollout_ids()
    );
    c.assert_untouched(&["n1", "n2", "n3", "n4", "n5"]);
}

#[test]
fn a_node_lost_mid_rollout_fails_it_and_the_updated_nodes_roll_back() {
    let Some(c) = SshCluster::start_or_skip("unreachable_node_counts_as_failed") else {
        return;
    };
    let inventory = c.inventory(
        "canary = 1\nmax_unavailable = 1\npromote = \"manual\"\nrollback_on_failure = \"all\"\n",
    );
    let out = c.start(&inventory, &[]);
    out.assert_success();
    let id = rollout_id(&out);
    assert_eq!(c.record(&id)["state"], "awaiting-promotion");

    // n4 drops off the network between the canary and the batches.
    c.sshd.write_client_config(N4_UNREACHABLE).unwrap();
    let out = c.rollout(&["promote", &id]);
    out.assert_code(1)
        .assert_stderr_contains("failed at node n4")
        .assert_stderr_contains("connection refused");
    let r = c.record(&id);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["nodes"]["n4"]["state"], "failed", "{r}");
    let why = r["nodes"]["n4"]["message"].as_str().unwrap();
    assert!(why.contains("unreachable"), "{why}");
    for name in ["n2", "n3"] {
        assert_eq!(r["nodes"][name]["state"], "rolled-back", "{r}");
        assert_eq!(
            c.kinds(name),
            [
                ("apply".to_string(), "1.1.0".to_string()),
                ("rollback".to_string(), "1.0.0".to_string())
            ],
            "{name}'s history"
        );
        assert_eq!(c.node(name).current_version().as_deref(), Some("1.0.0"));
    }
    for name in ["n5", "n1"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    c.assert_untouched(&["n4", "n5", "n1"]);
}
