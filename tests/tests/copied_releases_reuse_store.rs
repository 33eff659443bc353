//! The promise: small downloads even when release files cannot be hard
//! links (install.root on another filesystem than state_dir, so every
//! release file is a copy and no store content has a second link). The
//! store keeps the contents of releases the node can still switch to, so an
//! update fetches only what changed.

use ferry_tests::fixtures::{sha256_hex, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::small_fs::{relocate, SmallFilesystem};

#[test]
fn unchanged_files_are_not_downloaded_again_when_releases_are_copies() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let server = TestServer::serve(&ws.repo);
    let mut node = ws.node_with("copies", NodeConfig::new(server.url(), &ws.public_key));
    let mount_dir = ws.dir.join("other-fs");
    std::fs::create_dir_all(&mount_dir).unwrap();
    let Some(fs) = SmallFilesystem::mount_or_skip(&mount_dir, 64 * 1024, "copied releases") else {
        return;
    };
    let state_dir = node.state_dir.clone();
    relocate(&mut node, &fs.path().join("root"), &state_dir);

    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.assert_current("1.0.0", &ws.input(1));
    server.reset_counters();
    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    for unchanged in ["share/doc/README.md", "lib/plugins/x/plugin.so"] {
        let digest = sha256_hex(&std::fs::read(ws.input(1).join(unchanged)).unwrap());
        let fetched = server.requests_for(&format!("objects/{digest}"));
        assert!(
            fetched.iter().all(|r| r.method != "GET"),
            "the update downloaded the unchanged {unchanged} again: {fetched:#?}"
        );
    }
    // And a rollback still works without the network.
    drop(server);
    node.ferry_ok(&["rollback"]);
    node.assert_current("1.0.0", &ws.input(1));
}
