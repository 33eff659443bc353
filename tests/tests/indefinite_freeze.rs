//! The threat: a freeze. Someone who can answer a node's requests — a
//! mirror, a proxy, an attacker on the path — keeps serving an old but
//! validly signed index (or root), so the node never learns of newer
//! releases or key rotations. Signed expiry bounds that: an expired index
//! or root is refused, with the expiry in the message, and a scheduled
//! `ferry-publish refresh` keeps an unchanged repository from expiring.
//!
//! The node's clock is moved with `FERRY_NOW`, which only the
//! fault-injection build reads.

use ferry_tests::fixtures::{Node, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::roots::{days_from_now, epoch_days_from_now, refresh, rotate_to};
use ferry_tests::tamper::read_json;
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

fn served(ws: &Workspace) -> (TestServer, Node) {
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("node", NodeConfig::new(server.url(), &ws.public_key));
    (server, node)
}

#[test]
fn an_expired_index_is_refused_until_the_publisher_refreshes_it() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let (_server, node) = served(&ws);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let unchanged = Unchanged::of(&node);
    let expires = read_json(&ws.repo, "index.json")["expires"]
        .as_str()
        .unwrap()
        .to_string();

    // 40 days on, the 30-day index is stale.
    let later = days_from_now(40);
    let out = node.ferry_at(&later, &["apply"]);
    unchanged.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["index.json expired at", &expires, "ferry-publish refresh"],
    );

    // The publisher's scheduled job re-signs it (as if run 35 days on).
    let serial = read_json(&ws.repo, "index.json")["serial"]
        .as_u64()
        .unwrap();
    refresh(
        &ws,
        &[&ws.secret_key],
        &[],
        &[("SOURCE_DATE_EPOCH", &epoch_days_from_now(35))],
    )
    .assert_success();
    let index = read_json(&ws.repo, "index.json");
    assert_eq!(index["serial"].as_u64().unwrap(), serial + 1);
    node.ferry_at(&later, &["apply"]).assert_success();
    node.assert_current("1.1.0", &ws.input(2));
}

#[test]
fn an_expired_root_is_refused() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    rotate_to(
        &ws,
        &[&ws.public_key],
        &["--expires-in", "10"],
        &[&ws.secret_key],
    );
    let (_server, node) = served(&ws);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let unchanged = Unchanged::of(&node);
    let expires = read_json(&ws.repo, "root.json")["expires"]
        .as_str()
        .unwrap()
        .to_string();

    // 20 days on: the index (30 days) is fresh, the root (10 days) is not.
    let out = node.ferry_at(&days_from_now(20), &["apply"]);
    unchanged.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["root version 1 expired at", &expires, "new root"],
    );

    // Today the same node updates normally.
    node.ferry_at(&days_from_now(0), &["apply"])
        .assert_success();
    node.assert_current("1.1.0", &ws.input(2));
}
