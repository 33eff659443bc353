//! Interoperability with the real `minisign` command-line tool, both ways:
//! keys made by `minisign -G` sign ferry repositories, and ferry's keys and
//! signatures check with `minisign -V` (and sign with `minisign -S`).
//!
//! Without the tool these tests have nothing to compare against: they are
//! skipped on a developer machine, and FAIL when CI=true, because CI must
//! prove interoperability rather than quietly skip it.
// A test reports to the harness; a closed stdout there is no operation to spare.
#![allow(clippy::disallowed_macros)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn minisign_cli() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("minisign"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = std::iter::once(PathBuf::from("/usr/bin/minisign"))
        .chain(candidates)
        .find(|p| p.is_file());
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        assert!(!in_ci, "the minisign CLI is not installed but CI=true: install minisign (e.g. apt-get install minisign)");
        eprintln!("skipping: the minisign CLI is not installed");
    }
    found
}

fn minisign(cli: &Path) -> Command {
    let mut command = Command::new(cli);
    command.stdin(Stdio::null());
    command
}

/// `minisign -V` of a repository file against its `.minisig`; returns the
/// trusted comment line minisign prints.
fn minisign_verifies(cli: &Path, public: &Path, file: &Path) -> Output {
    run(minisign(cli)
        .arg("-V")
        .arg("-p")
        .arg(public)
        .arg("-m")
        .arg(file))
}

#[test]
fn keys_made_by_minisign_sign_ferry_repositories() {
    let Some(cli) = minisign_cli() else { return };
    let scratch = Scratch::new();
    let (secret, public) = (scratch.path("m.sec"), scratch.path("m.pub"));
    run(minisign(&cli)
        .arg("-G")
        .arg("-W")
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret))
    .assert_success();

    let input = scratch.path("input");
    write_tree(&input, &[("bin/app", b"app", 0o755)]);
    let repo = scratch.path("repo");
    release(&repo, &secret, "1.0.0", "stable", &input, None, &[]).assert_success();
    verify(&repo, &public).assert_success();

    for file in ["index.json", "manifests/1.0.0.json"] {
        let out = minisign_verifies(&cli, &public, &repo.join(file));
        out.assert_success();
        assert!(
            out.stdout.contains(&format!("\tfile:{file}")),
            "{file}: {}",
            out.stdout
        );
    }
}

#[test]
fn ferry_keys_and_signatures_work_with_minisign() {
    let Some(cli) = minisign_cli() else { return };
    let scratch = Scratch::new();
    let (secret, public) = scratch.keygen("ferry");
    let input = scratch.path("input");
    write_tree(&input, &[("share/data", b"data", 0o644)]);
    let repo = scratch.path("repo");
    release(&repo, &secret, "2.0.0", "stable", &input, None, &[]).assert_success();

    let index = repo.join("index.json");
    minisign_verifies(&cli, &public, &index).assert_success();
    minisign_verifies(&cli, &public, &repo.join("manifests/2.0.0.json")).assert_success();
    // minisign must also say no: a changed index fails.
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replace("\"serial\": 1", "\"serial\": 2")).unwrap();
    let out = minisign_verifies(&cli, &public, &index);
    assert_ne!(
        out.code, 0,
        "minisign accepted a modified index: {}",
        out.stdout
    );

    // The other direction: minisign signs with ferry's secret key, and the
    // verifier nodes use accepts it with ferry's public key.
    let document = scratch.path("document");
    std::fs::write(&document, b"signed by the minisign CLI").unwrap();
    run(minisign(&cli)
        .arg("-S")
        .arg("-s")
        .arg(&secret)
        .arg("-m")
        .arg(&document))
    .assert_success();
    let signature = std::fs::read(scratch.path("document.minisig")).unwrap();
    let mut trusted = manifests::TrustedKeys::new();
    trusted.add_file(&public).unwrap();
    trusted
        .verify("document", b"signed by the minisign CLI", &signature)
        .unwrap();
    assert!(trusted
        .verify("document", b"something else", &signature)
        .is_err());
}
