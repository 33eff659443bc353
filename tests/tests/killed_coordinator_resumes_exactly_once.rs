//! The promise: a coordinator killed mid-rollout (SIGKILL, while a node's
//! `ferry apply` is running over ssh) leaves a record that `ferry rollout
//! resume ID` finishes: every node ends on the new version, applied
//! exactly once, and the rollout is recorded `succeeded`.
//!
//! n3 (the first batch after the canary) has a `pre_apply` hook that
//! marks that its apply started and then sleeps, so the kill lands while
//! the node is mid-apply and the record shows it `updating`. That apply
//! outlives the coordinator (the ssh session goes on), so `resume` finds
//! the node still busy and must wait for it instead of applying again.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use ferry_tests::ssh_cluster::{wait_until, SshCluster};

fn slow_pre_apply(c: &SshCluster, name: &str, seconds: u32) -> PathBuf {
    let marker = c.node(name).dir.join("pre_apply-started");
    c.configure(
        name,
        &format!(
            "[service]\npre_apply = \"touch {}; sleep {seconds}\"\n",
            marker.display()
        ),
    );
    marker
}

#[test]
fn resume_after_sigkill_finishes_with_every_node_applied_once() {
    let Some(c) = SshCluster::start_or_skip("killed_coordinator_resumes_exactly_once") else {
        return;
    };
    let marker = slow_pre_apply(&c, "n3", 2);
    let inventory = c.inventory("canary = 1\nmax_unavailable = 1\npromote = \"auto\"\n");
    let mut coordinator = c.spawn_start(&inventory, &[]);
    wait_until("n3's apply to start", Duration::from_secs(60), || {
        marker.exists()
    });
    let ids = c.rollout_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    let r = c.record(&id);
    assert_eq!(r["nodes"]["n3"]["state"], "updating", "{r}");
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();

    // Dead mid-stage: the record still says so.
    let r = c.record(&id);
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "updated", "{r}");
    assert_eq!(r["nodes"]["n3"]["state"], "updating", "{r}");
    for name in ["n4", "n5", "n1"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }

    // ssh carries on without the coordinator: n3's apply is still
    // running, so resume must wait for it rather than apply again.
    let n3 = c.node("n3").status_json();
    assert!(!n3["operation_in_progress"].is_null(), "{n3}");
    // Its output file is left in the rollout's capture directory, where
    // the orphaned ssh still writes; the next coordinator clears it.
    let captures = c.ws.dir.join(format!("coordinator/rollouts/{id}.out"));
    assert_eq!(fs::read_dir(&captures).unwrap().count(), 1);

    let out = c.rollout(&["resume", &id]);
    out.assert_success().assert_stdout_contains("succeeded");
    let r = c.record(&id);
    assert_eq!(r["state"], "succeeded", "{r}");
    for name in ["n1", "n2", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "updated", "{r}");
    }
    c.assert_applied_once(&["n1", "n2", "n3", "n4", "n5"]);
    assert!(!captures.exists(), "the capture directory is left behind");
    let finished = |name: &str| c.operations(name)[0].finished_at;
    for name in ["n2", "n3", "n4", "n5"] {
        assert!(finished(name) < finished("n1"), "{name} after the leader");
    }
}
