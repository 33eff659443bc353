//! The threat: anyone who can reach the rollout API could start, promote
//! or roll back a cluster-wide rollout. So every endpoint but the static
//! dashboard page answers 401 without the exact bearer token, the token in
//! a URL is accepted only where older dashboard links put it (the page and
//! its watch stream), and wrong requests get a JSON error saying what was
//! wrong: 400 bad JSON or fields, 404 unknown ids and paths, 405 wrong
//! methods, 409 a rollout not in a state for the action. A token file
//! others can read, or a token too short, keeps the server from starting.

use ferry_tests::cluster::{coordinator, five_nodes_on_1_0_0};
use ferry_tests::rollout_api::{watch, write_inventory, ApiServer, TOKEN};
use std::time::Duration;

/// Every route, with an id where it takes one.
fn routes(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GET", "/".into()),
        ("GET", "/api/v1/updates/version".into()),
        ("POST", "/api/v1/updates/plan".into()),
        ("POST", "/api/v1/updates/execute".into()),
        ("GET", format!("/api/v1/updates/status/{id}")),
        ("GET", "/api/v1/updates/history".into()),
        ("POST", format!("/api/v1/updates/promote/{id}")),
        ("POST", format!("/api/v1/updates/rollback/{id}")),
        ("GET", format!("/api/v1/updates/watch/{id}")),
    ]
}

#[test]
fn every_endpoint_needs_the_token_and_bad_requests_say_why() {
    let begun = std::time::Instant::now();
    let step = |what: &str| eprintln!("{:>6.1}s {what}", begun.elapsed().as_secs_f64());
    let (ws, nodes) = five_nodes_on_1_0_0();
    step("cluster ready");
    let inventory = write_inventory(&ws, &nodes, 0.0, None);
    let server = ApiServer::start(&ws, &inventory);
    // Planned from the command line; the API sees the same records.
    let inventory_arg = inventory.to_string_lossy();
    let planned = coordinator(
        &ws,
        &[
            "rollout",
            "plan",
            "--inventory",
            &inventory_arg,
            "--version",
            "1.1.0",
            "--promote",
            "auto",
        ],
    );
    planned
        .assert_success()
        .assert_stdout_contains("planned: start it with");
    let id = planned.stdout.lines().next().unwrap().trim().to_string();
    let body = format!(r#"{{"id":"{id}"}}"#);

    let wrong = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    for (method, path) in routes(&id) {
        let body = (method == "POST").then_some(body.as_str());
        if path == "/" {
            // The dashboard page is static and loads without the token
            // (its script sends the token from the URL fragment); it holds
            // no rollout data, which every other route guards.
            let page = server.call(method, &path, None, body);
            assert_eq!(page.status, 200, "{page:?}");
            assert!(!page.body.contains(&id), "rollout data in the page");
            continue;
        }
        for token in [
            None,
            Some(wrong.as_str()),
            Some(""),
            Some(&TOKEN[..TOKEN.len() - 1]),
        ] {
            let reply = server.call(method, &path, token, body);
            assert_eq!(
                reply.status, 401,
                "{method} {path} with {token:?}: {reply:?}"
            );
            assert!(reply.error().contains("Authorization: Bearer"), "{reply:?}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
        // A token in the URL is no token for the API's other endpoints.
        if path.contains("/watch/") {
            // A stream that goes on while the rollout waits: read its start.
            let (head, events) = watch(&server.addr, &path, true, Duration::from_secs(2));
            assert_eq!(head.status, 200, "{head:?}");
            assert_eq!(events[0].name, "state", "{events:?}");
        } else {
            let reply = server.call(method, &format!("{path}?token={TOKEN}"), None, body);
            assert_eq!(
                reply.status == 401,
                path != "/",
                "{method} {path}?token=: {reply:?}"
            );
        }
        let reply = server.call(method, &format!("{path}?token={wrong}"), None, body);
        assert_eq!(
            reply.status, 401,
            "{method} {path}?token=<wrong>: {reply:?}"
        );
    }
    step("401s checked");
    // Nothing was started by all that.
    let status = server.json("GET", &format!("/api/v1/updates/status/{id}"), None, 200);
    assert_eq!(status["state"], "planned", "{status:#}");

    // The dashboard with the token in its URL.
    let page = server.call("GET", &format!("/?token={TOKEN}"), None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        page.body.contains("/api/v1/updates/watch/"),
        "not the dashboard"
    );

    step("dashboard checked");
    // Bad JSON and bad fields: 400 with a message.
    for (path, body, says) in [
        ("/api/v1/updates/plan", "{\"version\":", "EOF while parsing"),
        ("/api/v1/updates/plan", "not json", "expected"),
        ("/api/v1/updates/plan", "{}", "missing field `version`"),
        ("/api/v1/updates/plan", r#"{"version":"one"}"#, "version"),
        (
            "/api/v1/updates/plan",
            r#"{"version":"1.1.0","canary":0}"#,
            "at least 1 node",
        ),
        (
            "/api/v1/updates/plan",
            r#"{"version":"1.1.0","max_unavailable":0}"#,
            // The body's key, not the CLI's flag.
            "max_unavailable = 0",
        ),
        (
            "/api/v1/updates/plan",
            r#"{"version":"1.1.0","promote":"later"}"#,
            "unknown variant",
        ),
        (
            "/api/v1/updates/plan",
            r#"{"version":"1.1.0","surprise":1}"#,
            "unknown field `surprise`",
        ),
        ("/api/v1/updates/execute", "", "EOF while parsing"),
        (
            "/api/v1/updates/execute",
            r#"{"rollout":"x"}"#,
            "unknown field `rollout`",
        ),
    ] {
        let reply = server.call("POST", path, Some(TOKEN), Some(body));
        assert_eq!(reply.status, 400, "{path} {body}: {reply:?}");
        let error = reply.error();
        assert!(error.contains(says), "{path} {body}: {error}");
        assert!(
            error.contains("send JSON like") || error.contains("send 1 or more"),
            "{error}"
        );
    }
    // A plan the cluster cannot take (skew over one minor version): 422.
    let reply = server.call(
        "POST",
        "/api/v1/updates/plan",
        Some(TOKEN),
        Some(r#"{"version":"1.5.0"}"#),
    );
    assert_eq!(reply.status, 422, "{reply:?}");
    assert!(
        reply.error().contains("cannot plan the rollout"),
        "{reply:?}"
    );
    // A body over the limit: 413.
    let huge = format!(r#"{{"version":"1.1.0","x":"{}"}}"#, "a".repeat(70_000));
    let reply = server.call("POST", "/api/v1/updates/plan", Some(TOKEN), Some(&huge));
    assert_eq!(reply.status, 413, "{reply:?}");

    step("400s checked");
    // Unknown ids and paths: 404; wrong methods: 405.
    for (method, path) in routes("20991231T000000Z-9.9.9") {
        if path == "/" || !path.contains("9.9.9") {
            continue;
        }
        let reply = server.call(method, &path, Some(TOKEN), None);
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
        assert!(
            reply.error().contains("history lists the rollouts"),
            "{reply:?}"
        );
    }
    for id in ["..%2Fx", ".hidden", "a%00b"] {
        let reply = server.call(
            "GET",
            &format!("/api/v1/updates/status/{id}"),
            Some(TOKEN),
            None,
        );
        assert_eq!(reply.status, 404, "{id}: {reply:?}");
    }
    let reply = server.call(
        "POST",
        "/api/v1/updates/execute",
        Some(TOKEN),
        Some(r#"{"id":"nope"}"#),
    );
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = server.call("GET", "/api/v1/updates/nothing", Some(TOKEN), None);
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.error().contains("rollout-api.yaml"), "{reply:?}");
    let reply = server.call("GET", "/api/v1/updates/plan", Some(TOKEN), None);
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = server.call("POST", "/api/v1/updates/version", Some(TOKEN), Some("{}"));
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("GET"));

    step("404s and 405s checked");
    // A rollout not in the state an action needs: 409, nothing started.
    for path in [
        format!("/api/v1/updates/promote/{id}"),
        format!("/api/v1/updates/rollback/{id}"),
    ] {
        let reply = server.call("POST", &path, Some(TOKEN), None);
        assert_eq!(reply.status, 409, "{path}: {reply:?}");
        assert!(reply.error().contains("is planned"), "{reply:?}");
    }
    // The watch stream with the token in its URL, on a planned rollout:
    // its current state first, then heartbeats until something changes.
    let (head, events) = {
        let addr = server.addr.clone();
        let path = format!("/api/v1/updates/watch/{id}");
        let watcher =
            std::thread::spawn(move || watch(&addr, &path, true, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_secs(1));
        server.json("POST", "/api/v1/updates/execute", Some(&body), 202);
        watcher.join().unwrap()
    };
    assert_eq!(head.status, 200, "{head:?}");
    let first: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(first["state"], "planned", "{events:?}");
    assert_eq!(events.last().unwrap().name, "end", "{events:?}");
    let reply = server.call("POST", "/api/v1/updates/execute", Some(TOKEN), Some(&body));
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().contains("is succeeded"), "{reply:?}");
    for node in &nodes {
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
}

/// A token others can read, or one short enough to guess, is no guard:
/// the server refuses to start on it, says how to fix it, and listens on
/// nothing.
#[test]
fn the_server_refuses_a_weak_or_exposed_token_file() {
    use std::os::unix::fs::PermissionsExt;

    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = write_inventory(&ws, &nodes, 0.0, None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let token_file = ws.dir.join("token");
    let serve = || {
        ferry_tests::run::run_with_deadline(
            std::process::Command::new(ferry_tests::binaries::ferry())
                .env_remove("FERRY_CONFIG")
                .args(["rollout", "serve", "--listen", &addr, "--token-file"])
                .arg(&token_file)
                .arg("--inventory")
                .arg(&inventory)
                .arg("--state-dir")
                .arg(ws.dir.join("coordinator")),
            Duration::from_secs(30),
        )
    };
    let cases = [
        (None, 0o600, "cannot read the token file"),
        (Some(format!("{TOKEN}\n")), 0o644, "chmod 600"),
        (Some(format!("{TOKEN}\n")), 0o606, "open to every user"),
        (Some("short-token\n".to_string()), 0o600, "shorter than 16"),
        (Some("\n".to_string()), 0o600, "empty or shorter"),
    ];
    for (content, mode, says) in cases {
        let _ = std::fs::remove_file(&token_file);
        if let Some(content) = &content {
            std::fs::write(&token_file, content).unwrap();
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let out = serve();
        out.assert_code(1).assert_stderr_contains(says);
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "something listens on {addr} after a refusal"
        );
    }
}
