//! The threat: a release whose symlinks each stay inside the release tree
//! when read alone, but leave it when one is resolved through another. The
//! outside review's case: directories `a/b/c/d/e/f`, `a/b/c/d/e/f/s ->
//! ../../../../../..` (the release root: inside), and `leak ->
//! a/b/c/d/e/f/s/../../../../../../../etc/passwd`, which a lexical check
//! reads as `etc/passwd` below the root but the kernel resolves through `s`
//! to the real /etc/passwd. It installed, and `current/leak` read
//! /etc/passwd.
//!
//! Every side refuses it now: the node before writing anything (exit 3),
//! `ferry-publish verify` on a repository that serves it, and
//! `ferry-publish release` on a build tree that holds it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use ferry_tests::fixtures::Workspace;
use ferry_tests::run::run;
use ferry_tests::tamper::{files_mut, resign_manifest, sort_files, Signer};
use serde_json::{json, Value};

const DEEP: [&str; 6] = ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f"];
const ROOT_LINK: &str = "../../../../../..";
const LEAK: &str = "a/b/c/d/e/f/s/../../../../../../../etc/passwd";

/// The chain, with `extra` links beside it, into a manifest's `files`.
fn add_chain(files: &mut Vec<Value>, extra: &[(&str, &str)]) {
    for dir in DEEP {
        files.push(json!({"path": dir, "kind": "directory", "mode": "0755"}));
    }
    files.push(json!({"path": "a/b/c/d/e/f/s", "kind": "symlink", "target": ROOT_LINK}));
    for (path, target) in extra {
        files.push(json!({"path": path, "kind": "symlink", "target": target}));
    }
}

/// 1.0.0 published, then its manifest re-signed by the trusted key with
/// the chain and `extra` added.
fn crafted(extra: &[(&str, &str)]) -> Workspace {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    resign_manifest(
        &ws.repo,
        "1.0.0",
        &Signer::from_file(&ws.secret_key),
        |manifest| {
            add_chain(files_mut(manifest), extra);
            sort_files(manifest);
        },
    );
    ws
}

fn publisher_verify(ws: &Workspace) -> ferry_tests::run::Output {
    run(ws
        .publisher()
        .arg("verify")
        .arg("--repo")
        .arg(&ws.repo)
        .arg("--public-key")
        .arg(&ws.public_key))
}

/// The control: the link to the root alone is harmless (it stays inside),
/// and a link through it that stays inside installs and resolves.
#[test]
fn a_link_through_a_link_that_stays_inside_installs() {
    let ws = crafted(&[("app-again", "a/b/c/d/e/f/s/bin/app")]);
    publisher_verify(&ws).assert_success();
    let node = ws.node("control");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    assert_eq!(
        fs::read(node.current().join("app-again")).unwrap(),
        fs::read(ws.input(1).join("bin/app")).unwrap()
    );
}

#[test]
fn the_node_refuses_a_chain_that_leaves_the_release() {
    for (link, target) in [("leak", LEAK), ("rootdir", "a/b/c/d/e/f/s/..")] {
        let ws = crafted(&[(link, target)]);
        let node = ws.node("victim");
        let out = node.ferry(&["apply", "--version", "1.0.0"]);
        out.assert_code(3);
        out.assert_stderr_contains(&format!("symlink \"{link}\""));
        out.assert_stderr_contains("leaves the release tree");
        node.assert_root_untouched();
        ws.assert_nothing_beside_workspace();
        // `check` reads the same manifest: it refuses too, never "allows
        // installing now".
        node.ferry(&["check"]).assert_code(3);
    }
}

#[test]
fn the_node_refuses_a_symlink_loop() {
    let ws = crafted(&[("loop-a", "loop-b"), ("loop-b", "loop-a")]);
    let node = ws.node("victim");
    let out = node.ferry(&["apply", "--version", "1.0.0"]);
    out.assert_code(3);
    out.assert_stderr_contains("symlink \"loop-a\"");
    out.assert_stderr_contains("does not resolve within 40 links");
    node.assert_root_untouched();
}

#[test]
fn publisher_verify_reports_the_chain() {
    let ws = crafted(&[("leak", LEAK)]);
    let out = publisher_verify(&ws);
    assert!(!out.success(), "verify accepted the chain:\n{out}");
    out.assert_stdout_or_stderr_contains("symlink \"leak\"");
}

#[test]
fn the_publisher_refuses_to_publish_a_build_tree_with_the_chain() {
    let ws = Workspace::new();
    let input = ws.dir.join("inputs/chain");
    fs::create_dir_all(input.join(DEEP[DEEP.len() - 1])).unwrap();
    fs::write(input.join("README"), "a release\n").unwrap();
    symlink(ROOT_LINK, input.join("a/b/c/d/e/f/s")).unwrap();
    symlink(LEAK, input.join("leak")).unwrap();

    let out = run(&mut ws.release_command("1.0.0", "stable", &input));
    assert!(!out.success(), "the chain was published:\n{out}");
    out.assert_stderr_contains(&input.join("leak").display().to_string());
    out.assert_stderr_contains("leaves the release tree");
    assert!(
        !ws.repo.join("manifests").exists()
            || fs::read_dir(ws.repo.join("manifests"))
                .unwrap()
                .next()
                .is_none(),
        "a manifest was written"
    );
    assert!(
        !Path::new(&ws.repo.join("index.json")).exists(),
        "an index was written"
    );

    // Without the leak the same tree publishes: the refusal is the chain's.
    fs::remove_file(input.join("leak")).unwrap();
    ws.publish("1.0.0", "stable", &input);
}
