//! The promise: a node busy with an operation of its own when the
//! coordinator reaches it (its timer's apply, an operator's repair) is
//! waited for, not failed: ferry's lock answers the coordinator's apply
//! with exit 75, the coordinator waits until the node's status shows no
//! operation in progress, and applies again. Nothing is rolled back for a
//! node that was merely busy.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::cluster::{
    command_inventory, five_nodes_on_1_0_0 as cluster, printed_rollout_id, rollout_record,
    start_rollout,
};

#[test]
fn a_node_busy_with_its_own_apply_is_waited_for_and_the_rollout_succeeds() {
    let (ws, nodes) = cluster();
    // n2 (the canary) starts an apply of its own that holds its lock for
    // 3 s in a pre_apply hook, just before the coordinator arrives.
    let n2 = &nodes[1];
    let marker = n2.dir.join("pre_apply-started");
    let mut text = fs::read_to_string(&n2.config).unwrap();
    text.push_str(&format!(
        "\n[service]\npre_apply = \"touch {}; sleep 3\"\n",
        marker.display()
    ));
    fs::write(&n2.config, text).unwrap();
    let mut own: Command = n2.command(&["apply", "--version", "1.1.0"]);
    let own = own
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "n2's own apply never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let inventory = command_inventory(
        &ws,
        &nodes,
        None,
        "canary = 1\nmax_unavailable = 2\nbake_seconds = 0\npromote = \"auto\"",
    );
    let out = start_rollout(&ws, &inventory);
    let own = own.wait_with_output().unwrap();
    assert!(own.status.success(), "n2's own apply failed");
    out.assert_success().assert_stdout_contains("succeeded");
    let r = rollout_record(&ws, &printed_rollout_id(&out.stdout).unwrap());
    assert_eq!(r["state"], "succeeded", "{r}");
    for node in &nodes {
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.1.0"),
            "{}",
            node.name
        );
        // Applied once each; nothing rolled back. n2's one apply is its
        // own: the coordinator's second try found it up to date.
        let ops: Vec<String> = node
            .history_json()
            .iter()
            .skip(1)
            .map(|op| {
                format!(
                    "{} {}",
                    op["operation"].as_str().unwrap(),
                    op["to_version"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(ops, ["apply 1.1.0"], "{}", node.name);
    }
}
