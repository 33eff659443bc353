//! The promise: a canary whose health check fails on the new version
//! stops the rollout there. Over real ssh, the canary's own `ferry apply`
//! rolls it back (exit 6, `rolled_back`), no other node is touched, the
//! rollout is recorded `failed`, and `ferry rollout start` exits non-zero
//! naming the node.

use ferry_tests::ssh_cluster::{rollout_id, SshCluster};

#[test]
fn an_unhealthy_canary_rolls_itself_back_and_no_other_node_is_touched() {
    let Some(c) = SshCluster::start_or_skip("failing_canary_stops_the_rollout") else {
        return;
    };
    c.break_target_health("n2");
    let inventory = c.inventory("canary = 1\nmax_unavailable = 2\npromote = \"auto\"\n");
    let out = c.start(&inventory, &[]);
    out.assert_code(1)
        .assert_stderr_contains("failed at node n2")
        .assert_stderr_contains("rolled itself back");
    let id = rollout_id(&out);
    let r = c.record(&id);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["stage_index"], 0, "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "failed", "{r}");
    for name in ["n1", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    // The canary applied, failed its gate and went back by itself: its
    // history says so, and it runs 1.0.0 again.
    let ops = c.node("n2").history_json();
    let last = ops.last().unwrap();
    assert_eq!(last["operation"], "apply", "{last}");
    assert_eq!(last["to_version"], "1.1.0", "{last}");
    assert_eq!(last["outcome"], "rolled-back", "{last}");
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(c.node("n2").current_version().as_deref(), Some("1.0.0"));
    c.assert_untouched(&["n1", "n3", "n4", "n5"]);
}
