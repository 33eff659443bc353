//! The promise: an error names the thing the operator must look at, not
//! only what ferry was doing. A repository that cannot be reached is named
//! as such, with what to check; a failed write names the local file (a
//! full disk is covered by enospc_during_staging.rs, which also checks the
//! filesystem is named); an in-place target that cannot be written names
//! its path instead of a bare "No such file or directory".

use std::fs;
use std::net::TcpListener;

use ferry_tests::fixtures::{NodeConfig, Workspace};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_repository_is_named_with_what_to_check() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut config = NodeConfig::new(url.clone(), &ws.public_key);
    config.retries = Some(0);
    let node = ws.node_with("offline", config);
    for args in [&["check"][..], &["apply"][..]] {
        let out = node.ferry(args);
        assert!(!out.success(), "{out}");
        out.assert_stderr_contains(&format!("the repository at {url}/ cannot be reached"));
        out.assert_stderr_contains("Connection refused");
        out.assert_stderr_contains("check the address in [repository] url or mirrors");
        assert!(
            !out.stderr.contains(": io: "),
            "the transport's wording leaked through:\n{out}"
        );
    }
    node.assert_root_untouched();
}

#[test]
fn an_in_place_target_that_cannot_be_written_is_named() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let node = ws.in_place_node("missing-target", "");
    // The target directories' parent is gone: nothing can be written
    // below it.
    fs::remove_dir_all(&node.root).unwrap();
    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    assert!(!out.success(), "{out}");
    out.assert_stderr_contains("No such file or directory");
    out.assert_stderr_contains(&format!("{}/", node.root.display()));
}
