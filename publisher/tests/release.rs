//! `ferry-publish release` through the real binary: reproducibility,
//! immutability of published versions, object reuse and the input rules.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use manifests::manifest::EntryKind;

const EPOCH: i64 = 1_700_000_000;

fn sample_input(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let input = scratch.path(name);
    // Big and varied enough for zstd to use several blocks.
    let big: Vec<u8> = (0..400_000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes())
        .collect();
    write_tree(
        &input,
        &[
            ("bin/app", b"#!/bin/sh\necho app\n", 0o755),
            ("share/data.bin", &big, 0o644),
            ("share/copy.bin", &big, 0o640),
            ("etc/app.conf", b"key = value\n", 0o600),
            ("empty", b"", 0o644),
        ],
    );
    symlink("bin/app", input.join("app")).unwrap();
    input
}

#[test]
fn same_input_and_time_give_byte_identical_repositories() {
    let scratch = Scratch::new();
    let (key_a, _) = scratch.keygen("a");
    let (key_b, _) = scratch.keygen("b");
    let input = sample_input(&scratch, "input");
    let (one, two) = (scratch.path("one"), scratch.path("two"));
    // Different keys and worker counts: neither may change a content byte.
    release(
        &one,
        &key_a,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--jobs", "1"],
    )
    .assert_success();
    release(
        &two,
        &key_b,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--jobs", "2"],
    )
    .assert_success();

    let manifest_one = fs::read(one.join("manifests/1.0.0.json")).unwrap();
    assert_eq!(
        manifest_one,
        fs::read(two.join("manifests/1.0.0.json")).unwrap()
    );
    assert_eq!(
        fs::read(one.join("index.json")).unwrap(),
        fs::read(two.join("index.json")).unwrap()
    );
    let objects_one = objects(&one);
    assert_eq!(
        objects_one.len(),
        4,
        "two of five files share content: {:?}",
        objects_one.keys()
    );
    assert_eq!(objects_one, objects(&two));
    let text = String::from_utf8(manifest_one).unwrap();
    assert!(
        text.contains("\"created\": \"2023-11-14T22:13:20Z\""),
        "{text}"
    );
}

#[test]
fn manifest_records_kinds_and_modes_in_path_order() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = sample_input(&scratch, "input");
    fs::set_permissions(
        input.join("share"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let repo = scratch.path("repo");
    let out = release(&repo, &key, "1.0.0", "stable", &input, Some(EPOCH), &[]);
    out.assert_success();
    assert!(out.stdout.contains("files: 5"), "{}", out.stdout);
    assert!(out.stdout.contains("new objects: 4"), "{}", out.stdout);
    assert!(out.stdout.contains("reused objects: 0"), "{}", out.stdout);

    let manifest = manifest(&repo, "1.0.0");
    manifest.validate().unwrap();
    let summary: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| {
            let kind = match &f.kind {
                EntryKind::Directory { mode } => format!("dir {mode}"),
                EntryKind::File(c) => format!("file {}", c.mode),
                EntryKind::Executable(c) => format!("exec {}", c.mode),
                EntryKind::Symlink { target } => format!("link {target}"),
            };
            (f.path.to_string(), kind)
        })
        .collect();
    let expected = [
        ("app", "link bin/app"),
        ("bin", "dir 0755"),
        ("bin/app", "exec 0755"),
        ("empty", "file 0644"),
        ("etc", "dir 0755"),
        ("etc/app.conf", "file 0600"),
        ("share", "dir 0750"),
        ("share/copy.bin", "file 0640"),
        ("share/data.bin", "file 0644"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(summary, expected);
}

#[test]
fn identical_republish_changes_nothing_and_different_content_is_refused() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = sample_input(&scratch, "input");
    let repo = scratch.path("repo");
    release(
        &repo,
        &key,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--notes", "first"],
    )
    .assert_success();
    let before = snapshot(&repo);

    // A later time alone does not make a different release.
    let out = release(
        &repo,
        &key,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH + 3600),
        &["--notes", "first"],
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("version 1.0.0 is already published with identical content; nothing to do"),
        "{}",
        out.stdout
    );
    assert_eq!(
        snapshot(&repo),
        before,
        "an identical re-publish writes nothing"
    );

    let out = release(
        &repo,
        &key,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--notes", "second"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("already published") && out.stderr.contains("notes"),
        "{}",
        out.stderr
    );

    fs::write(input.join("etc/app.conf"), "key = other\n").unwrap();
    let out = release(
        &repo,
        &key,
        "1.0.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--notes", "first"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("different content") && out.stderr.contains("etc/app.conf changed"),
        "{}",
        out.stderr
    );
    assert_eq!(
        snapshot(&repo),
        before,
        "a refused re-publish writes nothing, not even objects"
    );
}

#[test]
fn unchanged_files_are_stored_once_across_versions() {
    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(
        &input,
        &[
            ("lib/same.so", b"unchanged library", 0o644),
            ("bin/app", b"version one", 0o755),
        ],
    );
    let repo = scratch.path("repo");
    release(&repo, &key, "1.0.0", "stable", &input, Some(EPOCH), &[]).assert_success();
    write_tree(&input, &[("bin/app", b"version two", 0o755)]);
    let out = release(
        &repo,
        &key,
        "1.1.0",
        "stable",
        &input,
        Some(EPOCH + 60),
        &[],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("new objects: 1 ") && out.stdout.contains("reused objects: 1"),
        "{}",
        out.stdout
    );

    assert_eq!(objects(&repo).len(), 3);
    let object_of = |version: &str| {
        let m = manifest(&repo, version);
        let entry = m
            .files
            .iter()
            .find(|f| f.path.as_str() == "lib/same.so")
            .unwrap();
        entry.content().unwrap().object.clone()
    };
    assert_eq!(object_of("1.0.0"), object_of("1.1.0"));

    let index: manifests::Index =
        serde_json::from_slice(&fs::read(repo.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.serial, 2);
    assert_eq!(index.channels["stable"].latest.to_string(), "1.1.0");
    assert_eq!(index.created.as_second(), EPOCH + 60);
    assert_eq!(index.expires.as_second(), EPOCH + 60 + 30 * 86_400);
    // Sound apart from the index having expired (SOURCE_DATE_EPOCH is 2023).
    let out = verify(&repo, &public);
    out.assert_failure();
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem:"))
        .collect();
    assert!(
        problems.len() == 1 && problems[0].contains("index.json expired"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_version_lives_in_one_channel_and_latest_follows_semver() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    release(&repo, &key, "1.10.0", "stable", &input, Some(EPOCH), &[]).assert_success();
    let out = release(&repo, &key, "1.10.0", "beta", &input, Some(EPOCH), &[]);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("already published on channel \"stable\""),
        "{}",
        out.stderr
    );

    // A backport published later does not become latest.
    release(&repo, &key, "1.9.3", "stable", &input, Some(EPOCH + 1), &[]).assert_success();
    let index: manifests::Index =
        serde_json::from_slice(&fs::read(repo.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.channels["stable"].latest.to_string(), "1.10.0");
    assert_eq!(index.channels["stable"].releases.len(), 2);
}

#[test]
fn a_manifest_left_by_an_interrupted_publication_is_replaced() {
    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    release(&repo, &key, "1.0.0", "stable", &input, None, &[]).assert_success();
    // As if a publication of 1.1.0 stopped before writing the index.
    fs::write(repo.join("manifests/1.1.0.json"), "half a manifest").unwrap();
    let out = release(&repo, &key, "1.1.0", "stable", &input, None, &[]);
    out.assert_success();
    assert!(
        out.stderr.contains("interrupted publication"),
        "{}",
        out.stderr
    );
    verify(&repo, &public).assert_success();
}

#[test]
fn a_repository_signed_by_another_key_is_not_extended() {
    let scratch = Scratch::new();
    let (owner, _) = scratch.keygen("owner");
    let (intruder, _) = scratch.keygen("intruder");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    release(&repo, &owner, "1.0.0", "stable", &input, None, &[]).assert_success();
    let before = snapshot(&repo);
    let out = release(&repo, &intruder, "1.1.0", "stable", &input, None, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("index.json is signed by key") && out.stderr.contains("not by key"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn a_tampered_index_is_not_extended() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    release(&repo, &key, "1.0.0", "stable", &input, None, &[]).assert_success();
    let index = fs::read_to_string(repo.join("index.json")).unwrap();
    fs::write(
        repo.join("index.json"),
        index.replace("\"serial\": 1", "\"serial\": 7"),
    )
    .unwrap();
    let out = release(&repo, &key, "1.1.0", "stable", &input, None, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("signature of index.json is not valid"),
        "{}",
        out.stderr
    );
}

#[test]
fn unsafe_input_is_refused_before_the_repository_is_touched() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");

    let escaping = scratch.path("escaping");
    write_tree(&escaping, &[("bin/app", b"x", 0o755)]);
    symlink("../../etc/passwd", escaping.join("bin/passwd")).unwrap();
    let repo = scratch.path("repo");
    let out = release(&repo, &key, "1.0.0", "stable", &escaping, None, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("bin/passwd") && out.stderr.contains("leaves the release tree"),
        "{}",
        out.stderr
    );
    assert!(!repo.exists());

    let with_fifo = scratch.path("fifo");
    write_tree(&with_fifo, &[("ok", b"x", 0o644)]);
    let status = std::process::Command::new("mkfifo")
        .arg(with_fifo.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = release(&repo, &key, "1.0.0", "stable", &with_fifo, None, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("pipe") && out.stderr.contains("fifo"),
        "{}",
        out.stderr
    );
    assert!(!repo.exists());

    // The repository may not live inside the input: it would publish itself.
    let nest = scratch.path("nest");
    write_tree(&nest, &[("f", b"x", 0o644)]);
    let out = release(
        &nest.join("repo"),
        &key,
        "1.0.0",
        "stable",
        &nest,
        None,
        &[],
    );
    out.assert_failure();
    assert!(out.stderr.contains("overlap"), "{}", out.stderr);
    assert!(!nest.join("repo/index.json").exists());
}

#[test]
fn usage_errors_exit_with_2() {
    let scratch = Scratch::new();
    let input = scratch.path("input");
    for (version, channel) in [
        ("1.0", "stable"),
        ("v1.0.0", "stable"),
        ("1.0.0", "Not Valid"),
    ] {
        let out = release(
            &scratch.path("repo"),
            &scratch.path("k.sec"),
            version,
            channel,
            &input,
            None,
            &[],
        );
        assert_eq!(out.code, 2, "{version} {channel}: {}", out.stderr);
    }
    let out = run(ferry_publish().arg("publish"));
    assert_eq!(out.code, 2);
}

#[test]
fn a_bad_source_date_epoch_is_an_error() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let out = run(ferry_publish()
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .arg("release")
        .arg("--repo")
        .arg(scratch.path("repo"))
        .arg("--key")
        .arg(&key)
        .args(["--version", "1.0.0", "--channel", "stable"])
        .arg(&input));
    out.assert_failure();
    assert!(
        out.stderr.starts_with("error: SOURCE_DATE_EPOCH"),
        "{}",
        out.stderr
    );
}
