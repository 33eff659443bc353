//! The threat: the dashboard was a picture, not a tool. Opened before a
//! rollout it never showed one (14 screenshots over 28 s), its empty
//! panels showed anyway (`main{display:grid}` beat `hidden`), it stopped
//! at `failed` while the automatic rollback was still running, and it had
//! no controls: an operator watching a canary had to go to a terminal to
//! promote it.
//!
//! The promise, driven in headless Chromium through the DevTools protocol
//! (clicks, not only screenshots): with no rollout the page shows the
//! fleet (every node's version and role) and no empty panels; a rollout
//! started through the API appears without a reload; its promote button
//! asks for confirmation, then promotes it (the stages advance); and when
//! a node fails after the promotion the page follows the automatic
//! rollback to its end, showing the rolled-back nodes as such.

use std::time::{Duration, Instant};

use ferry_tests::browser::{chromium_or_skip, Browser};
use ferry_tests::cluster::five_nodes_on_1_0_0;
use ferry_tests::rollout_api::{wait_for, write_inventory, ApiServer};
use serde_json::Value;

/// Waits until the page's `expression` is true.
fn wait_in_page(browser: &mut Browser, expression: &str, deadline: Duration) {
    let started = Instant::now();
    while browser.eval(expression) != Value::Bool(true) {
        assert!(
            started.elapsed() < deadline,
            "`{expression}` still false after {deadline:?}:\n{}",
            browser.dom()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node_state(browser: &mut Browser, node: &str) -> Value {
    browser.eval(&format!(
        "document.querySelector('[data-node=\"{node}\"]').dataset.state"
    ))
}

#[test]
fn the_dashboard_shows_the_fleet_picks_up_a_rollout_promotes_it_and_follows_its_rollback() {
    let Some(chromium) = chromium_or_skip("dashboard_drives_a_rollout") else {
        return;
    };
    let (ws, nodes) = five_nodes_on_1_0_0();
    // n4's apply fails: it is in the batch after the canary.
    let inventory = write_inventory(&ws, &nodes, 0.0, Some("n4"));
    let server = ApiServer::start(&ws, &inventory);
    let mut browser = Browser::open(
        chromium,
        &format!("http://{}/#token={}", server.addr, server.token),
    );

    // No rollout yet: the fleet, and no empty rollout panels.
    wait_in_page(
        &mut browser,
        "document.querySelectorAll('[data-fleet-node]').length === 5",
        Duration::from_secs(60),
    );
    for node in ["n1", "n2", "n3", "n4", "n5"] {
        let version = browser.eval(&format!(
            "document.querySelector('[data-fleet-node=\"{node}\"]').dataset.version"
        ));
        assert_eq!(version, "1.0.0", "{node}");
    }
    assert_eq!(
        browser.eval("document.querySelector('[data-fleet-node=\"n1\"]').dataset.role"),
        "leader"
    );
    assert_eq!(
        browser.eval("getComputedStyle(document.getElementById('main')).display"),
        "none",
        "the empty rollout panels show"
    );

    // A rollout started elsewhere appears without a reload, and waits for
    // promotion after its canary.
    let plan = server.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version": "1.1.0", "promote": "manual"}"#),
        201,
    );
    let id = plan["id"].as_str().unwrap().to_string();
    server.json(
        "POST",
        "/api/v1/updates/execute",
        Some(&format!(r#"{{"id": "{id}"}}"#)),
        202,
    );
    wait_in_page(
        &mut browser,
        "document.body.dataset.rolloutState === 'awaiting-promotion'",
        Duration::from_secs(120),
    );
    assert_eq!(node_state(&mut browser, "n2"), "updated");
    assert_eq!(node_state(&mut browser, "n3"), "pending");

    // Promote: the button asks first; cancelling changes nothing.
    browser.eval("document.querySelector('[data-action=\"promote\"]').click()");
    wait_in_page(
        &mut browser,
        "!document.getElementById('confirm').hidden",
        Duration::from_secs(10),
    );
    browser.eval("document.querySelector('[data-confirm=\"no\"]').click()");
    std::thread::sleep(Duration::from_secs(1));
    let record = server.json("GET", &format!("/api/v1/updates/status/{id}"), None, 200);
    assert_eq!(record["state"], "awaiting-promotion", "{record:#}");
    browser.eval("document.querySelector('[data-action=\"promote\"]').click()");
    wait_in_page(
        &mut browser,
        "!document.getElementById('confirm').hidden",
        Duration::from_secs(10),
    );
    browser.eval("document.querySelector('[data-confirm=\"yes\"]').click()");

    // The next stage runs, n4 fails, and the page follows the automatic
    // rollback to its end: the rollout failed, the nodes it had updated
    // shown rolled back, never left green on the new version.
    let end = wait_for(&server, &id, Duration::from_secs(180), |r| {
        r["state"] == "failed"
    });
    wait_in_page(
        &mut browser,
        "document.body.dataset.rolloutState === 'failed'",
        Duration::from_secs(60),
    );
    assert_eq!(
        browser.eval("document.getElementById('result').dataset.result"),
        "ok"
    );
    for (name, progress) in end["nodes"].as_object().unwrap() {
        let state = progress["state"].as_str().unwrap();
        assert_eq!(node_state(&mut browser, name), state, "{name}: {end:#}");
    }
    assert_eq!(end["nodes"]["n2"]["state"], "rolled-back", "{end:#}");
    assert_eq!(node_state(&mut browser, "n4"), "failed");
    for node in &nodes {
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.0.0"),
            "{}",
            node.name
        );
    }
    // What is left to do for a failed rollout: roll it back, nothing else.
    assert_eq!(
        browser.eval(
            "[...document.querySelectorAll('[data-action]')].map(b => b.dataset.action).join(',')"
        ),
        "rollback"
    );
}
