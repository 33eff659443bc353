//! The promise: ferry's keys and signatures are plain minisign. A publisher
//! can sign with a key made by the `minisign` tool, and anyone can audit a
//! ferry repository with `minisign -V`, without trusting ferry's own code.
//!
//! Needs /usr/bin/minisign: absent, the test fails under CI (CI=true) and
//! otherwise says loudly that it checked nothing.

use std::path::Path;
use std::process::Command;

use ferry_tests::fixtures::{NodeConfig, Workspace};
use ferry_tests::run::run;

const MINISIGN: &str = "/usr/bin/minisign";

/// Whether the minisign tool is here; panics under CI if it is not.
fn minisign_available(test: &str) -> bool {
    if Path::new(MINISIGN).is_file() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{MINISIGN} is missing and CI=true: install minisign (Debian package `minisign`)");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {test}: {MINISIGN} not found, minisign interop NOT CHECKED\n\
         !!! (install the `minisign` package; under CI=true this fails)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// `minisign -V -p PUB -m FILE` (the signature is FILE.minisig).
fn minisign_verify(public_key: &Path, file: &Path) -> ferry_tests::run::Output {
    run(Command::new(MINISIGN)
        .arg("-V")
        .arg("-p")
        .arg(public_key)
        .arg("-m")
        .arg(file))
}

#[test]
fn key_made_by_minisign_signs_a_release_a_node_applies() {
    if !minisign_available("key_made_by_minisign_signs_a_release_a_node_applies") {
        return;
    }
    let ws = Workspace::new();
    let keys = ws.dir.join("minisign-keys");
    std::fs::create_dir(&keys).unwrap();
    let (secret, public) = (keys.join("mini.key"), keys.join("mini.pub"));
    run(Command::new(MINISIGN)
        .arg("-G")
        .arg("-W")
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret))
    .assert_success();

    let mut release = ws.publisher();
    release
        .arg("release")
        .arg("--repo")
        .arg(&ws.repo)
        .arg("--key")
        .arg(&secret)
        .args(["--version", "1.0.0", "--channel", "stable"])
        .arg(ws.input(1));
    run(&mut release).assert_success();

    // The tool that made the key agrees with the signatures...
    minisign_verify(&public, &ws.repo.join("index.json"))
        .assert_success()
        .assert_stdout_or_stderr_contains("file:index.json");
    minisign_verify(&public, &ws.repo.join("manifests/1.0.0.json"))
        .assert_success()
        .assert_stdout_or_stderr_contains("file:manifests/1.0.0.json");

    // ...and a node trusting the minisign public key installs the release.
    let node = ws.node_with("n", NodeConfig::new(ws.repo_url(), &public));
    node.ferry_ok(&["apply"]);
    node.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn ferry_signatures_verify_with_minisign() {
    if !minisign_available("ferry_signatures_verify_with_minisign") {
        return;
    }
    let ws = Workspace::new();
    ws.publish_v1_v2();
    for file in ["index.json", "manifests/1.0.0.json", "manifests/1.1.0.json"] {
        let out = minisign_verify(&ws.public_key, &ws.repo.join(file));
        out.assert_success();
        // Trusted comment as the contract writes it: timestamp, then the file.
        out.assert_stdout_or_stderr_contains(&format!("\tfile:{file}"));
        out.assert_stdout_or_stderr_contains("timestamp:");
    }
    // And minisign is not a rubber stamp: a changed index fails with it too.
    let index = ws.repo.join("index.json");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.push(b'\n');
    std::fs::write(&index, bytes).unwrap();
    let out = minisign_verify(&ws.public_key, &index);
    assert!(
        !out.success(),
        "minisign accepted a modified index.json\n{out}"
    );
}

#[test]
fn first_block_of_a_multi_signature_verifies_with_minisign() {
    if !minisign_available("first_block_of_a_multi_signature_verifies_with_minisign") {
        return;
    }
    let ws = Workspace::new();
    let (second_secret, second_public) = ws.keygen("second");
    ferry_tests::roots::release_with(
        &ws,
        "1.0.0",
        &ws.input(1),
        &[&ws.secret_key, &second_secret],
    )
    .assert_success();
    for file in ["index.json", "manifests/1.0.0.json"] {
        let signature = ws.repo.join(format!("{file}.minisig"));
        let blocks = ferry_tests::roots::blocks(&signature);
        assert_eq!(blocks.len(), 2, "{file} carries one block per key");
        // The stock tool reads the first block; it is whichever key sorts
        // first, the same on every run.
        let first = ferry_tests::roots::block_key_id(&blocks[0]);
        let public = if first == ferry_tests::fixtures::key_id(&ws.public_key) {
            &ws.public_key
        } else {
            assert_eq!(first, ferry_tests::fixtures::key_id(&second_public));
            &second_public
        };
        minisign_verify(public, &ws.repo.join(file))
            .assert_success()
            .assert_stdout_or_stderr_contains(&format!("file:{file}"));
    }
    // And a node trusting either key alone accepts the release.
    let node = ws.node_with("n", NodeConfig::new(ws.repo_url(), &second_public));
    node.ferry_ok(&["apply"]);
    node.assert_current("1.0.0", &ws.input(1));
}
