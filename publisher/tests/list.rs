//! `ferry-publish list`, for people and for scripts.

mod common;

use common::*;

#[test]
fn list_shows_channels_with_versions_in_semver_order() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let input = scratch.path("input");
    write_tree(&input, &[("a", b"12345", 0o644), ("b/c", b"678", 0o755)]);
    let repo = scratch.path("repo");
    for (version, channel) in [
        ("1.10.0", "stable"),
        ("1.2.0", "stable"),
        ("1.9.0", "stable"),
        ("2.0.0-rc.1", "beta"),
    ] {
        release(&repo, &key, version, channel, &input, None, &[]).assert_success();
    }

    let out = run(ferry_publish()
        .arg("list")
        .arg("--repo")
        .arg(&repo)
        .arg("--json"));
    out.assert_success();
    let listing: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listing["serial"], 4);
    let stable = &listing["channels"]["stable"];
    assert_eq!(stable["latest"], "1.10.0");
    let versions: Vec<&str> = stable["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.2.0", "1.9.0", "1.10.0"]);
    let latest: Vec<bool> = stable["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["latest"].as_bool().unwrap())
        .collect();
    assert_eq!(latest, [false, false, true]);
    assert_eq!(stable["releases"][0]["files"], 2);
    assert_eq!(stable["releases"][0]["content_bytes"], 8);
    assert_eq!(listing["channels"]["beta"]["latest"], "2.0.0-rc.1");

    let out = run(ferry_publish().arg("list").arg("--repo").arg(&repo));
    out.assert_success();
    let latest_line = out
        .stdout
        .lines()
        .find(|l| l.contains("* latest") && l.contains("1.10.0"));
    assert!(latest_line.is_some(), "{}", out.stdout);
    assert!(
        out.stdout.contains("channel beta (latest 2.0.0-rc.1)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 files"), "{}", out.stdout);
}

#[test]
fn list_of_a_directory_without_an_index_fails() {
    let scratch = Scratch::new();
    let out = run(ferry_publish()
        .arg("list")
        .arg("--repo")
        .arg(scratch.path(".")));
    out.assert_failure();
    assert!(
        out.stderr.contains("index.json does not exist"),
        "{}",
        out.stderr
    );
}
