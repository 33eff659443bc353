//! The promise: a follower that fails in a later batch halts the rollout
//! there, over real ssh. It rolls itself back (its health gate failed),
//! no later node is touched, and the nodes updated before it are rolled
//! back newest first with `rollback_on_failure = "all"`, or stay on the
//! new version with `"node"`.
//!
//! One node per batch (`max_unavailable = 1`): canary n2, then n3, n4
//! (which fails), n5, and the leader n1.

use ferry_tests::ssh_cluster::{rollout_id, SshCluster};
use serde_json::Value;

fn fail_at_n4(scope: &str) -> Option<(SshCluster, Value)> {
    let c = SshCluster::start_or_skip("failing_follower_halts_the_rollout")?;
    c.break_target_health("n4");
    let inventory = c.inventory(&format!(
        "canary = 1\nmax_unavailable = 1\npromote = \"auto\"\nrollback_on_failure = \"{scope}\"\n"
    ));
    let out = c.start(&inventory, &[]);
    out.assert_code(1)
        .assert_stderr_contains("failed at node n4");
    let r = c.record(&rollout_id(&out));
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["stage_index"], 2, "{r}");
    assert_eq!(r["nodes"]["n4"]["state"], "failed", "{r}");
    // n4 applied, failed its gate and went back by itself.
    assert_eq!(
        c.kinds("n4"),
        [("apply".to_string(), "1.1.0".to_string())],
        "n4's history"
    );
    assert_eq!(c.node("n4").history_json()[1]["outcome"], "rolled-back");
    assert_eq!(c.node("n4").current_version().as_deref(), Some("1.0.0"));
    // The rollout halted: nothing after n4.
    for name in ["n5", "n1"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    c.assert_untouched(&["n5", "n1"]);
    Some((c, r))
}

#[test]
fn with_scope_all_the_updated_nodes_are_rolled_back_newest_first() {
    let Some((c, r)) = fail_at_n4("all") else {
        return;
    };
    let applied_then_rolled_back = [
        ("apply".to_string(), "1.1.0".to_string()),
        ("rollback".to_string(), "1.0.0".to_string()),
    ];
    for name in ["n2", "n3"] {
        assert_eq!(r["nodes"][name]["state"], "rolled-back", "{r}");
        assert_eq!(c.kinds(name), applied_then_rolled_back, "{name}'s history");
        assert_eq!(c.node(name).current_version().as_deref(), Some("1.0.0"));
    }
    // n3 was updated after n2, so it goes back first.
    let rolled_back_at = |name: &str| c.operations(name)[1].finished_at;
    assert!(
        rolled_back_at("n3") < rolled_back_at("n2"),
        "n3 must be rolled back before n2"
    );
}

#[test]
fn with_scope_node_the_updated_nodes_stay_on_the_new_version() {
    let Some((c, r)) = fail_at_n4("node") else {
        return;
    };
    for name in ["n2", "n3"] {
        assert_eq!(r["nodes"][name]["state"], "updated", "{r}");
    }
    c.assert_applied_once(&["n2", "n3"]);
}
