//! The promise: the dashboard at `/` shows a rollout as it happens. Opened
//! in a real browser (headless Chromium) during a rollout, it shows one
//! element per node with its role, state and version, the stages and a
//! timeline; then, without a reload, it follows the watch stream to the
//! end of the rollout. Screenshots are kept under target/test-artifacts/.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_tests::binaries::workspace_root;
use ferry_tests::browser::{chromium_or_skip, Browser};
use ferry_tests::cluster::five_nodes_on_1_0_0;
use ferry_tests::rollout_api::{hold_file, wait_for, write_inventory, ApiServer};

/// A token as `base64` writes it, with `+`, `/` and `=`: pasted into the
/// dashboard's URL as it is, it must work.
const PASTED_TOKEN: &str = "kq+7/Zx3Wm9=Tb+Rf/2Ln0Yh4s8Vd+Q==";

/// The attributes of the dashboard's element for `node`.
fn node_element<'a>(dom: &'a str, node: &str) -> &'a str {
    let start = dom
        .find(&format!("data-node=\"{node}\""))
        .unwrap_or_else(|| panic!("no element for node {node} in the dashboard:\n{dom}"));
    let open = dom[..start].rfind('<').unwrap();
    let end = start + dom[start..].find('>').unwrap();
    &dom[open..end]
}

fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let at = element
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {element}"))
        + name.len()
        + 2;
    &element[at..at + element[at..].find('"').unwrap()]
}

/// Waits until the page's `expression` is true.
fn wait_in_page(browser: &mut Browser, expression: &str, deadline: Duration) {
    let started = Instant::now();
    while browser.eval(expression) != serde_json::Value::Bool(true) {
        assert!(
            started.elapsed() < deadline,
            "`{expression}` still false after {deadline:?}:\n{}",
            browser.dom()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dashboard_shows_a_rollout_live_in_a_browser() {
    let Some(chromium) = chromium_or_skip("rollout_dashboard") else {
        return;
    };
    let (ws, nodes) = five_nodes_on_1_0_0();
    // The canary has a health check (it passes); the others have none,
    // and the page must not call them healthy.
    let mut config = std::fs::read_to_string(&nodes[1].config).unwrap();
    config.push_str("\n[health]\ncommand = \"true\"\n");
    std::fs::write(&nodes[1].config, config).unwrap();
    // Slow applies, so the browser sees the rollout in progress.
    let inventory = write_inventory(&ws, &nodes, 2.0, None);
    let server = ApiServer::start_with_token(&ws, &inventory, PASTED_TOKEN, &[]);
    let plan = server.json(
        "POST",
        "/api/v1/updates/plan",
        Some(r#"{"version":"1.1.0","promote":"auto"}"#),
        201,
    );
    let id = plan["id"].as_str().unwrap().to_string();
    // The leader waits until the browser has seen the rollout mid-way.
    let hold = hold_file(&ws, "n1");
    std::fs::write(&hold, "").unwrap();
    server.json(
        "POST",
        "/api/v1/updates/execute",
        Some(&format!(r#"{{"id":"{id}"}}"#)),
        202,
    );
    // The canary done, the first batch on its way.
    let during = wait_for(&server, &id, Duration::from_secs(120), |r| {
        r["nodes"]["n2"]["state"] == "updated" && r["nodes"]["n3"]["state"] == "updating"
    });
    assert_eq!(during["state"], "running", "{during:#}");

    // The token in the URL fragment, which the browser never sends: the
    // page sends it as a header, its watch stream's too.
    let mut browser = Browser::open(
        chromium,
        &format!("http://{}/#token={PASTED_TOKEN}", server.addr),
    );
    wait_in_page(
        &mut browser,
        "document.querySelectorAll('[data-node]').length === 5",
        Duration::from_secs(60),
    );
    let dom = browser.dom();
    for node in ["n1", "n2", "n3", "n4", "n5"] {
        let element = node_element(&dom, node);
        assert!(
            ["pending", "updating", "updated"].contains(&attribute(element, "data-state")),
            "{element}"
        );
    }
    let canary = node_element(&dom, "n2");
    assert_eq!(attribute(canary, "data-state"), "updated", "{canary}");
    assert_eq!(attribute(canary, "data-version"), "1.1.0", "{canary}");
    let leader = node_element(&dom, "n1");
    assert_eq!(attribute(leader, "data-role"), "leader", "{leader}");
    // Held by its hold file: not yet started on a quick machine, already
    // applying (and waiting on the hold) on a slow one, never updated.
    assert!(
        ["pending", "updating"].contains(&attribute(leader, "data-state")),
        "{leader}"
    );
    assert!(
        attribute(leader, "data-version").starts_with("1.0.0"),
        "{leader}"
    );
    assert!(dom.contains("data-rollout-state=\"running\""), "{dom}");
    for stage in ["canary", "batch 1", "leader"] {
        assert!(
            dom.contains(&format!("data-stage=\"{stage}\"")),
            "no stage {stage}: {dom}"
        );
    }
    // The coordinator's timeline, and the canary's own health gate.
    assert!(
        dom.contains("coordinator running from stage 1") && dom.contains("n2: updated to 1.1.0"),
        "no timeline: {dom}"
    );
    assert_eq!(
        attribute(node_element(&dom, "n2"), "data-health"),
        "healthy"
    );

    let artifacts: PathBuf = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("rollout-dashboard.png");
    browser.screenshot(&screenshot);
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "not a real screenshot"
    );
    eprintln!(
        "dashboard screenshot (during the rollout): {}",
        screenshot.display()
    );

    // The same page, never reloaded, follows the rollout to its end.
    std::fs::remove_file(&hold).unwrap();
    wait_in_page(
        &mut browser,
        "document.body.dataset.rolloutState === 'succeeded'",
        Duration::from_secs(180),
    );
    let dom = browser.dom();
    for node in ["n1", "n2", "n3", "n4", "n5"] {
        let element = node_element(&dom, node);
        assert_eq!(attribute(element, "data-state"), "updated", "{element}");
        assert_eq!(attribute(element, "data-version"), "1.1.0", "{element}");
        let health = if node == "n2" { "healthy" } else { "unchecked" };
        assert_eq!(attribute(element, "data-health"), health, "{element}");
    }
    // The timeline has what happened after the page was opened.
    for line in [
        "n1: updating to 1.1.0",
        "n1: live",
        "n1: updated to 1.1.0",
        "succeeded: every node runs 1.1.0",
    ] {
        assert!(dom.contains(line), "no {line:?} in the timeline:\n{dom}");
    }
    wait_in_page(
        &mut browser,
        "document.getElementById('live').textContent === 'finished'",
        Duration::from_secs(10),
    );
    let done = artifacts.join("rollout-dashboard-succeeded.png");
    browser.screenshot(&done);
    eprintln!("dashboard screenshot (succeeded): {}", done.display());

    // The page is static; without the token its data is not served.
    assert_eq!(server.call("GET", "/", None, None).status, 200);
    for path in [
        "/api/v1/updates/history".to_string(),
        format!("/api/v1/updates/status/{id}"),
        format!("/api/v1/updates/watch/{id}"),
    ] {
        assert_eq!(server.call("GET", &path, None, None).status, 401, "{path}");
    }
}
