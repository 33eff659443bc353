//! The threat: some of the places a node downloads from — the primary
//! repository or any of `[repository] mirrors` — are stale, tampered with,
//! incomplete or down. A bad source must cost the node nothing but time:
//! it is skipped with a warning naming it, and the update completes from a
//! source that serves the signed data. If no source does, the node refuses
//! with every source's reason and changes nothing.

use std::process::Command;

use ferry_tests::fixtures::{Node, NodeConfig, Workspace, CHANNEL};
use ferry_tests::http_server::{Fault, TestServer};
use ferry_tests::run::run;
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};

/// A repository with 1.0.0 and 1.1.0, a stale copy of it taken before 1.1.0
/// was published, and four servers: the primary serving the stale copy,
/// mirror 1 flipping the first byte of every object, mirror 2 missing every
/// object, mirror 3 serving the repository as published.
struct Mirrored {
    ws: Workspace,
    servers: Vec<TestServer>,
    node: Node,
}

fn mirrored() -> Mirrored {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let stale = ws.dir.join("stale-repo");
    run(Command::new("cp").arg("-a").arg(&ws.repo).arg(&stale)).assert_success();
    ws.publish("1.1.0", CHANNEL, &ws.input(2));

    let primary = TestServer::serve(&stale);
    let tampered = TestServer::serve(&ws.repo);
    tampered.set_fault("objects/", Fault::FlipByte(0));
    let incomplete = TestServer::serve(&ws.repo);
    incomplete.set_fault("objects/", Fault::Status(404));
    let good = TestServer::serve(&ws.repo);

    let mut config = NodeConfig::new(primary.url(), &ws.public_key);
    config.retries = Some(1);
    config.mirrors = vec![tampered.url(), incomplete.url(), good.url()];
    let node = ws.node_with("node", config);
    Mirrored {
        ws,
        servers: vec![primary, tampered, incomplete, good],
        node,
    }
}

impl Mirrored {
    /// Object GETs each server answered with 200, in server order.
    fn objects_served(&self) -> Vec<usize> {
        self.servers
            .iter()
            .map(|s| {
                s.requests_for("objects/")
                    .iter()
                    .filter(|r| r.status == 200)
                    .count()
            })
            .collect()
    }
}

#[test]
fn an_update_completes_from_the_one_good_mirror() {
    let m = mirrored();
    let out = m.node.ferry_ok(&["apply"]);
    m.node.assert_current("1.1.0", &m.ws.input(2));

    let primary = m.servers[0].url();
    // Each bad source is named with what was wrong with it.
    out.assert_stderr_contains(&format!("primary {primary}"));
    out.assert_stderr_contains("older than serial");
    out.assert_stderr_contains(&format!("mirror 1 {}", m.servers[1].url()));
    out.assert_stderr_contains("corrupt");
    out.assert_stderr_contains(&format!("mirror 2 {}", m.servers[2].url()));
    out.assert_stderr_contains("not found");

    // The stale primary's index lost to the newer one: nothing of 1.1.0
    // was asked of it but objects (which it does not have).
    assert!(
        m.servers[0].requests_for("manifests/1.1.0.json").len() <= 1,
        "{out}"
    );
    let served = m.objects_served();
    assert_eq!(served[2], 0, "mirror 2 has no objects\n{out}");
    assert!(
        served[3] > 0,
        "every object came from mirror 3: {served:?}\n{out}"
    );
    let trusted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.node.state_dir.join("trusted.json")).unwrap())
            .unwrap();
    assert_eq!(trusted["index_serial"], 2, "the newest index was trusted");

    // The node's next run needs nothing from any source but the index.
    m.node
        .ferry_ok(&["apply"])
        .assert_stdout_contains("already at 1.1.0");
}

#[test]
fn when_every_source_is_bad_the_node_refuses_with_every_reason() {
    let m = mirrored();
    // Mirror 3 now sends no byte of any object.
    m.servers[3].set_fault("objects/", Fault::TruncateBody(0));
    let before = Unchanged::of(&m.node);
    let out = m.node.ferry(&["apply"]);
    // Mirror 1 served data that failed verification: an alarm, exit 3. The
    // stale primary did serve the objects 1.1.0 shares with 1.0.0, verified:
    // they may stay in the store; and the index (genuine and newest) is
    // rightly trusted.
    before
        .except("store")
        .except("trusted.json")
        .assert_refused(
            &m.node,
            &out,
            VERIFICATION_FAILED,
            &["no source could provide objects/", "tried all 4"],
        );
    let last_error = out
        .stderr
        .lines()
        .skip_while(|l| !l.contains("no source could provide"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, (label, reason)) in [
        ("primary", "not found"),
        ("mirror 1", "corrupt"),
        ("mirror 2", "not found"),
        ("mirror 3", "gave up after 2 attempts"),
    ]
    .into_iter()
    .enumerate()
    {
        let line = last_error
            .lines()
            .find(|l| l.contains(&format!("{label} {}", m.servers[i].url())))
            .unwrap_or_else(|| panic!("no line for {label} in the error\n{out}"));
        assert!(line.contains(reason), "{label}: {line:?}\n{out}");
    }
    m.node.assert_root_untouched();
}

#[test]
fn a_mirror_replaying_an_old_index_is_skipped() {
    // The mirror replays index.json from before 1.1.0, which this node has
    // already seen superseded; the primary is fine.
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let primary = TestServer::serve(&ws.repo);
    let mirror = TestServer::serve(&ws.repo);
    mirror.snapshot("index.json");
    mirror.snapshot("index.json.minisig");
    ws.publish("1.1.0", CHANNEL, &ws.input(2));
    let mut config = NodeConfig::new(primary.url(), &ws.public_key);
    config.mirrors = vec![mirror.url()];
    let node = ws.node_with("node", config);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);

    mirror.replay("index.json");
    mirror.replay("index.json.minisig");
    let out = node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    out.assert_stderr_contains(&format!("mirror 1 {}", mirror.url()));
    out.assert_stderr_contains("older than serial 2");
    assert!(
        mirror.requests_for("manifests/").is_empty() && mirror.requests_for("objects/").is_empty(),
        "nothing but the index is asked of a stale mirror while the primary serves: {:#?}",
        mirror.requests()
    );
}
