//! The promise: `ferry rollout serve` drives real rollouts over HTTP. It
//! reports every node's version, plans (canary, followers, leader last)
//! without touching a node, executes a plan in the background while its
//! watch stream sends one event per state change until the end, keeps the
//! history, promotes a manual rollout after its canary, rolls a finished
//! rollout back to the old version on every node, and reports a node it
//! cannot reach as unreachable.

use std::time::Duration;

use ferry_tests::cluster::five_nodes_on_1_0_0;
use ferry_tests::rollout_api::{watch, write_inventory, ApiServer};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn states(events: &[ferry_tests::rollout_api::Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.name == "state")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

#[test]
fn plan_execute_watch_history_and_rollback() {
    let begun = std::time::Instant::now();
    let step = |what: &str| eprintln!("{:>6.1}s {what}", begun.elapsed().as_secs_f64());
    let (ws, nodes) = five_nodes_on_1_0_0();
    step("cluster ready");
    let inventory = write_inventory(&ws, &nodes, 0.3, None);
    // Heartbeats every second, so that an idle stream shows them soon.
    let server = ApiServer::start_with(&ws, &inventory, &["--heartbeat-seconds", "1"]);

    step("server started");
    let versions = server.json("GET", "/api/v1/updates/version", None, 200);
    let listed = versions["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 5, "{versions:#}");
    for node in listed {
        assert_eq!(node["version"], "1.0.0", "{versions:#}");
        assert_eq!(node["reachable"], true, "{versions:#}");
    }
    assert_eq!(listed[0]["role"], "leader", "{versions:#}");

    let plan = server.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.0", "promote": "auto"}"#),
        201,
    );
    let id = plan["id"].as_str().unwrap().to_string();
    assert_eq!(plan["state"], "planned", "{plan:#}");
    let order: Vec<&str> = plan["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(order, ["n2", "n3", "n4", "n5", "n1"], "{plan:#}");
    let stages: Vec<&str> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(stages.first(), Some(&"canary"), "{plan:#}");
    assert_eq!(stages.last(), Some(&"leader"), "{plan:#}");
    // Planning changed no node.
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
    let status = server.json("GET", &format!("/api/v1/updates/status/{id}"), None, 200);
    assert_eq!(status["state"], "planned", "{status:#}");

    let started = server.json(
        "POST",
        "/api/v1/updates/execute",
        Some(&format!(r#"{{"id": "{id}"}}"#)),
        202,
    );
    assert_eq!(started["id"], id.as_str(), "{started:#}");
    // A second execute while the first runs is refused.
    let again = server.call(
        "POST",
        "/api/v1/updates/execute",
        Some(ferry_tests::rollout_api::TOKEN),
        Some(&format!(r#"{{"id": "{id}"}}"#)),
    );
    assert_eq!(again.status, 409, "{again:?}");

    step("executing");
    let (head, events) = watch(
        &server.addr,
        &format!("/api/v1/updates/watch/{id}"),
        false,
        2 * MINUTE,
    );
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let records = states(&events);
    let last = records.last().expect("no state event");
    assert_eq!(last["state"], "succeeded", "{last:#}");
    assert_eq!(events.last().unwrap().name, "end", "{events:?}");
    // Every event is a different state: one per change, none repeated.
    for pair in records.windows(2) {
        assert_ne!(pair[0], pair[1], "an event repeated an unchanged state");
    }
    // Each node was seen updating, then updated, in separate events.
    for node in ["n1", "n2", "n3", "n4", "n5"] {
        let seen: Vec<&str> = records
            .iter()
            .map(|r| r["nodes"][node]["state"].as_str().unwrap())
            .collect();
        let updating = seen.iter().position(|s| *s == "updating");
        let updated = seen.iter().position(|s| *s == "updated");
        assert!(
            matches!((updating, updated), (Some(a), Some(b)) if a < b),
            "{node}: {seen:?}"
        );
    }
    // The leader was updating only once every follower was updated.
    let leader_starts = records
        .iter()
        .find(|r| r["nodes"]["n1"]["state"] == "updating")
        .unwrap();
    for node in ["n2", "n3", "n4", "n5"] {
        assert_eq!(
            leader_starts["nodes"][node]["state"], "updated",
            "{leader_starts:#}"
        );
    }
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
    let status = server.json("GET", &format!("/api/v1/updates/status/{id}"), None, 200);
    assert_eq!(&status, last, "status and the last event differ");

    // A manual rollout of the same version is nothing to do; go back with
    // a rollback of the finished rollout.
    step("succeeded");
    let rollback = server.json(
        "POST",
        &format!("/api/v1/updates/rollback/{id}"),
        Some(""),
        202,
    );
    assert_eq!(rollback["started"], "rollback", "{rollback:#}");
    let (_, events) = watch(
        &server.addr,
        &format!("/api/v1/updates/watch/{id}"),
        true,
        2 * MINUTE,
    );
    let last = states(&events).pop().unwrap();
    assert_eq!(last["state"], "rolled-back", "{last:#}");
    for node in &nodes {
        assert_eq!(
            node.status_json()["current_version"].as_str(),
            Some("1.0.0"),
            "{}: {:#}",
            node.name,
            node.status_json()
        );
        assert_eq!(
            last["nodes"][&node.name]["state"], "rolled-back",
            "{last:#}"
        );
    }
    let again = server.call(
        "POST",
        &format!("/api/v1/updates/rollback/{id}"),
        Some(ferry_tests::rollout_api::TOKEN),
        None,
    );
    assert_eq!(again.status, 409, "{again:?}");
    assert!(again.error().contains("already rolled back"), "{again:?}");

    step("rolled back");
    // Manual promotion: the rollout stops after its canary until promoted.
    let plan = server.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.0", "promote": "manual", "max_unavailable": 2}"#),
        201,
    );
    let second = plan["id"].as_str().unwrap().to_string();
    assert_ne!(second, id);
    server.json(
        "POST",
        "/api/v1/updates/execute",
        Some(&format!(r#"{{"id": "{second}"}}"#)),
        202,
    );
    let waiting = ferry_tests::rollout_api::wait_for(&server, &second, MINUTE, |r| {
        r["state"] == "awaiting-promotion"
    });
    assert_eq!(waiting["nodes"]["n2"]["state"], "updated", "{waiting:#}");
    for node in ["n1", "n3", "n4", "n5"] {
        assert_eq!(waiting["nodes"][node]["state"], "pending", "{waiting:#}");
    }
    // Nothing changes while it waits: the stream carries the state once,
    // then only heartbeat comments, none before a second of silence.
    let chunks = ferry_tests::rollout_api::raw_stream(
        &server.addr,
        &format!("/api/v1/updates/watch/{second}"),
        Duration::from_millis(5000),
    );
    let (first, beats) = chunks.split_first().expect("no event at all");
    assert!(
        first.1.contains("event: state") && first.1.contains("awaiting-promotion"),
        "{chunks:?}"
    );
    assert!((2..=5).contains(&beats.len()), "{chunks:?}");
    for (at, text) in beats {
        assert_eq!(text, ": heartbeat\n\n", "{chunks:?}");
        assert!(*at >= first.0 + Duration::from_millis(950), "{chunks:?}");
    }
    server.json(
        "POST",
        &format!("/api/v1/updates/promote/{second}"),
        None,
        202,
    );
    let (_, events) = watch(
        &server.addr,
        &format!("/api/v1/updates/watch/{second}"),
        false,
        2 * MINUTE,
    );
    let last = states(&events).pop().unwrap();
    assert_eq!(last["state"], "succeeded", "{last:#}");
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }

    step("promoted and succeeded");
    let history = server.json("GET", "/api/v1/updates/history", None, 200);
    let rollouts = history["rollouts"].as_array().unwrap();
    let ids: Vec<&str> = rollouts.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [second.as_str(), id.as_str()],
        "newest first: {history:#}"
    );
    assert_eq!(rollouts[0]["state"], "succeeded");
    assert_eq!(rollouts[1]["state"], "rolled-back");
    assert_eq!(rollouts[0]["updated_nodes"], 5);

    // A node that cannot be asked is reported as unreachable, not as a
    // failed request.
    let config = ws.dir.join("nodes/n5/ferry.toml");
    std::fs::rename(&config, config.with_extension("away")).unwrap();
    let versions = server.json("GET", "/api/v1/updates/version", None, 200);
    std::fs::rename(config.with_extension("away"), &config).unwrap();
    let n5 = &versions["nodes"][4];
    assert_eq!(n5["name"], "n5", "{versions:#}");
    assert_eq!(n5["reachable"], false, "{versions:#}");
    assert!(n5["error"].as_str().unwrap().contains("n5"), "{versions:#}");
    assert_eq!(versions["nodes"][0]["version"], "1.1.0", "{versions:#}");
}
