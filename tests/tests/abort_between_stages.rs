//! The promise: `ferry rollout abort ID` stops a rollout a coordinator is
//! driving right now. The coordinator finishes the nodes it is updating,
//! updates no further node, rolls nothing back, and exits non-zero saying
//! so; the record says `aborted`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ferry_tests::cluster::{
    command_inventory, coordinator, five_nodes_on_1_0_0 as cluster, rollout_record,
    start_rollout_command,
};

#[test]
fn an_abort_during_the_bake_stops_the_rollout_before_the_next_stage() {
    let (ws, nodes) = cluster();
    let inventory = command_inventory(
        &ws,
        &nodes,
        None,
        "canary = 1\nmax_unavailable = 2\nbake_seconds = 60\npromote = \"auto\"",
    );
    let child = start_rollout_command(&ws, &inventory)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the canary to be done: the coordinator is then baking.
    let dir = ws.dir.join("coordinator/rollouts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        assert!(Instant::now() < deadline, "the canary never finished");
        let found = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_string)
            })
            .find(|id| rollout_record(&ws, id)["stage_index"] == 1);
        if let Some(id) = found {
            break id;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let asked = Instant::now();
    coordinator(&ws, &["rollout", "abort", &id])
        .assert_success()
        .assert_stdout_contains("abort requested");
    let out = child.wait_with_output().unwrap();
    // The bake looks for the request twice a second, so the coordinator
    // stops long before its 60 s bake ends.
    assert!(asked.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("aborted on request"), "{stderr}");

    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "aborted", "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "updated", "{r}");
    for name in ["n1", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    // Nothing rolled back: the canary stays on the new version.
    for node in &nodes {
        let expected = if node.name == "n2" { "1.1.0" } else { "1.0.0" };
        assert_eq!(
            node.current_version().as_deref(),
            Some(expected),
            "{}",
            node.name
        );
    }
    // The request was consumed, and an aborted rollout stays aborted.
    assert!(!dir.join(format!("{id}.abort")).exists());
    coordinator(&ws, &["rollout", "resume", &id])
        .assert_code(1)
        .assert_stderr_contains("aborted");
}
