//! `ferry-publish verify` finds every kind of damage, all in one run.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

struct Published {
    scratch: Scratch,
    repo: PathBuf,
    public: PathBuf,
}

/// Two releases on a current clock (so the index has not expired), sharing
/// `lib/shared` and differing in `bin/app`.
fn published() -> Published {
    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(
        &input,
        &[
            ("lib/shared", b"shared content", 0o644),
            ("bin/app", b"app one", 0o755),
        ],
    );
    let repo = scratch.path("repo");
    release(&repo, &key, "1.0.0", "stable", &input, None, &[]).assert_success();
    write_tree(&input, &[("bin/app", b"app two", 0o755)]);
    release(&repo, &key, "1.1.0", "stable", &input, None, &[]).assert_success();
    Published {
        scratch,
        repo,
        public,
    }
}

fn object_path(repo: &Path, version: &str, file: &str) -> PathBuf {
    let manifest = manifest(repo, version);
    let entry = manifest
        .files
        .iter()
        .find(|f| f.path.as_str() == file)
        .unwrap();
    repo.join(&entry.content().unwrap().object.path)
}

fn problems(out: &Output) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect()
}

#[test]
fn a_sound_repository_passes() {
    let p = published();
    let out = verify(&p.repo, &p.public);
    out.assert_success();
    assert!(
        out.stdout.contains("ok") && out.stdout.contains("2 release(s), 3 object(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_tampered_object_is_reported_with_its_users() {
    let p = published();
    let shared = object_path(&p.repo, "1.0.0", "lib/shared");
    let mut bytes = fs::read(&shared).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shared, bytes).unwrap();
    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    let problems = problems(&out);
    assert_eq!(problems.len(), 1, "{}", out.stdout);
    assert!(problems[0].contains("has SHA-256"), "{}", problems[0]);
    assert!(
        problems[0].contains("1.0.0:lib/shared") && problems[0].contains("1.1.0:lib/shared"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_tampered_manifest_is_reported() {
    let p = published();
    let path = p.repo.join("manifests/1.0.0.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("\"notes\": \"\"", "\"notes\": \"evil\""),
    )
    .unwrap();
    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    let problems = problems(&out);
    assert_eq!(problems.len(), 1, "{}", out.stdout);
    assert!(
        problems[0].contains("manifests/1.0.0.json") && problems[0].contains("pins"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_missing_object_is_reported() {
    let p = published();
    fs::remove_file(object_path(&p.repo, "1.1.0", "bin/app")).unwrap();
    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    let problems = problems(&out);
    assert_eq!(problems.len(), 1, "{}", out.stdout);
    assert!(
        problems[0].contains("is missing") && problems[0].contains("1.1.0:bin/app"),
        "{}",
        problems[0]
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let p = published();
    fs::write(object_path(&p.repo, "1.0.0", "lib/shared"), b"garbage").unwrap();
    fs::remove_file(object_path(&p.repo, "1.1.0", "bin/app")).unwrap();
    fs::remove_file(p.repo.join("manifests/1.0.0.json.minisig")).unwrap();
    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    let problems = problems(&out);
    assert_eq!(problems.len(), 3, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("manifests/1.0.0.json.minisig is missing"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("is 7 bytes, but the manifest says"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("is missing (used by 1.1.0:bin/app)"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("3 problem(s) found"), "{}", out.stderr);
}

#[test]
fn the_wrong_key_and_an_expired_index_are_reported() {
    let p = published();
    let (_, other) = p.scratch.keygen("other");
    let out = verify(&p.repo, &other);
    out.assert_failure();
    assert!(
        out.stdout.contains("not by the given public key") && out.stdout.contains("--public-key"),
        "{}",
        out.stdout
    );

    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    let out = release(
        &repo,
        &key,
        "1.0.0",
        "stable",
        &input,
        Some(1_000_000_000),
        &["--expires-in", "1"],
    );
    out.assert_success();
    assert!(
        out.stderr.contains("warning: the index expired"),
        "{}",
        out.stderr
    );
    let out = verify(&repo, &public);
    out.assert_failure();
    assert!(
        out.stdout
            .contains("index.json expired at 2001-09-10T01:46:40Z"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_missing_repository_or_index_is_a_problem() {
    let p = published();
    let out = verify(&p.scratch.path("nowhere"), &p.public);
    out.assert_failure();
    assert!(out.stdout.contains("does not exist"), "{}", out.stdout);
    fs::remove_file(p.repo.join("index.json")).unwrap();
    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    assert!(
        out.stdout.contains("index.json is missing"),
        "{}",
        out.stdout
    );
}
