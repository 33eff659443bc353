//! The threat: an operator who sees something wrong mid-rollout had only
//! `abort` on the command line, nothing in the API, and no way to stop
//! for a while and go on; the API also answered some requests outside its
//! own document (an `end` event's data JSON-quoted, a JSON array taken as
//! a plan, an error naming a CLI flag the caller never used).
//!
//! The promise: `ferry rollout pause ID` and `POST …/pause/{id}` stop a
//! running rollout before its next stage (nodes updating finish) and leave
//! it `paused`, holding its cluster; `resume` (CLI and `POST
//! …/resume/{id}`) goes on from there to the end; `abort` works from the
//! API too (202 when a coordinator is asked, 200 when done at once, 409
//! once ended). The `end` event carries the bare state.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::cluster::{
    coordinator, five_nodes_on_1_0_0, rollout_record, start_version_command,
};
use ferry_tests::fixtures::Workspace;
use ferry_tests::rollout_api::{hold_file, watch, write_inventory, ApiServer};
use ferry_tests::run::run;

/// Waits until rollout `id`'s record satisfies `done`.
fn wait_for(ws: &Workspace, id: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let path = ws.dir.join(format!("coordinator/rollouts/{id}.json"));
        if path.exists() && done(&rollout_record(ws, id)) {
            return;
        }
        assert!(Instant::now() < deadline, "rollout {id} never {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hold(ws: &Workspace, node: &str) -> std::path::PathBuf {
    let file = hold_file(ws, node);
    std::fs::write(&file, b"").unwrap();
    file
}

#[test]
fn the_cli_pauses_a_running_rollout_between_stages_and_resumes_it() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = write_inventory(&ws, &nodes, 0.0, None);
    // The canary (n2) waits on its hold file: the rollout is running.
    let canary = hold(&ws, "n2");
    let mut start = start_version_command(&ws, &inventory, "1.1.0", &["--promote", "auto"]);
    let runner = std::thread::spawn(move || run(&mut start));
    let id = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = coordinator(&ws, &["rollout", "list", "--json"]);
            let list: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap_or_default();
            if let Some(id) = list
                .as_array()
                .and_then(|l| l.first())
                .and_then(|r| r["id"].as_str())
            {
                break id.to_string();
            }
            assert!(Instant::now() < deadline, "no rollout was recorded");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&ws, &id, "started its canary", |r| {
        r["nodes"]["n2"]["state"] == "updating"
    });
    coordinator(&ws, &["rollout", "pause", &id])
        .assert_success()
        .assert_stdout_contains("pause requested");
    std::fs::remove_file(&canary).unwrap();
    let out = runner.join().unwrap();
    out.assert_success()
        .assert_stdout_contains(&format!("ferry rollout resume {id}"));
    let r = rollout_record(&ws, &id);
    assert_eq!(r["state"], "paused", "{r}");
    assert_eq!(r["nodes"]["n2"]["state"], "updated", "{r}");
    for name in ["n1", "n3", "n4", "n5"] {
        assert_eq!(r["nodes"][name]["state"], "pending", "{r}");
    }
    // Paused holds the cluster, and cannot be paused again.
    run(&mut start_version_command(&ws, &inventory, "1.1.0", &[])).assert_code(9);
    coordinator(&ws, &["rollout", "pause", &id])
        .assert_code(1)
        .assert_stderr_contains("is paused");
    coordinator(&ws, &["rollout", "resume", &id]).assert_success();
    assert_eq!(rollout_record(&ws, &id)["state"], "succeeded");
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
}

fn plan(server: &ApiServer, body: &str) -> String {
    server.json("POST", "/api/v1/updates/plan", Some(body), 201)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_api_pauses_resumes_and_aborts_and_speaks_as_documented() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = write_inventory(&ws, &nodes, 0.0, None);
    let server = ApiServer::start(&ws, &inventory);
    let call = |method: &str, path: &str, body: Option<&str>| {
        server.call(method, path, Some(&server.token), body)
    };

    // Bodies are objects, as documented; errors name the API's own keys.
    let array = call("POST", "/api/v1/updates/plan", Some(r#"["1.1.0"]"#));
    assert_eq!(array.status, 400, "{array:?}");
    assert!(array.error().contains("not a JSON object"), "{array:?}");
    let zero = call(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.0", "max_unavailable": 0}"#),
    );
    assert_eq!(zero.status, 400, "{zero:?}");
    assert!(zero.error().starts_with("max_unavailable = 0"), "{zero:?}");

    // Abort of a rollout nobody drives: at once.
    let planned = plan(&server, r#"{"version": "1.1.0"}"#);
    let aborted = server.json(
        "POST",
        &format!("/api/v1/updates/abort/{planned}"),
        None,
        200,
    );
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let again = call("POST", &format!("/api/v1/updates/abort/{planned}"), None);
    assert_eq!(again.status, 409, "{again:?}");

    // Pause a running one while its canary is held, then resume it.
    let canary = hold(&ws, "n2");
    let id = plan(&server, r#"{"version": "1.1.0", "promote": "auto"}"#);
    server.json(
        "POST",
        "/api/v1/updates/execute",
        Some(&format!(r#"{{"id": "{id}"}}"#)),
        202,
    );
    wait_for(&ws, &id, "started its canary", |r| {
        r["nodes"]["n2"]["state"] == "updating"
    });
    let asked = server.json("POST", &format!("/api/v1/updates/pause/{id}"), None, 202);
    assert_eq!(asked["requested"], "paused", "{asked}");
    std::fs::remove_file(&canary).unwrap();
    wait_for(&ws, &id, "paused", |r| r["state"] == "paused");
    for node in &nodes[2..] {
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.0.0"),
            "{}",
            node.name
        );
    }
    let resumed = server.json("POST", &format!("/api/v1/updates/resume/{id}"), None, 202);
    assert_eq!(resumed["started"], "resume", "{resumed}");
    let (_, events) = watch(
        &server.addr,
        &format!("/api/v1/updates/watch/{id}"),
        false,
        Duration::from_secs(180),
    );
    let end = events.last().unwrap();
    assert_eq!(
        (end.name.as_str(), end.data.as_str()),
        ("end", "succeeded"),
        "{events:?}"
    );
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
    // Ended: nothing to pause or resume.
    for verb in ["pause", "resume"] {
        let reply = call("POST", &format!("/api/v1/updates/{verb}/{id}"), None);
        assert_eq!(reply.status, 409, "{verb}: {reply:?}");
    }
    assert!(!Path::new(&ws.dir.join(format!("coordinator/rollouts/{id}.pause"))).exists());
}
