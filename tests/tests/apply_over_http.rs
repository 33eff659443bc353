//! The promise: a node installs from a repository served over plain HTTP
//! exactly what it would install from disk, and on an update it downloads
//! only content it does not already hold.

use ferry_tests::fixtures::{sha256_hex, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;

#[test]
fn apply_over_http_installs_the_published_tree() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("http", NodeConfig::new(server.url(), &ws.public_key));

    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.assert_current("1.0.0", &ws.input(1));
    let status = node.status_json();
    assert_eq!(status["current_version"], "1.0.0", "{status:#}");
    assert!(
        !server.requests_for("index.json").is_empty()
            && !server.requests_for("objects/").is_empty(),
        "the node did not fetch from the server: {:#?}",
        server.requests()
    );

    // The update fetches the changed and added content, never what the node
    // already stores (README.md and plugin.so are the same in both).
    server.reset_counters();
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    for unchanged in ["share/doc/README.md", "lib/plugins/x/plugin.so"] {
        let digest = sha256_hex(&std::fs::read(ws.input(1).join(unchanged)).unwrap());
        let fetched = server.requests_for(&format!("objects/{digest}"));
        assert!(
            fetched.iter().all(|r| r.method == "HEAD"),
            "updating to 1.1.0 downloaded {unchanged} again although the node stores it: {fetched:#?}"
        );
    }
    let new_app = sha256_hex(&std::fs::read(ws.input(2).join("bin/app")).unwrap());
    assert!(
        server
            .requests_for(&format!("objects/{new_app}"))
            .iter()
            .any(|r| r.method == "GET"),
        "the new bin/app was not fetched over HTTP: {:#?}",
        server.requests()
    );
}
