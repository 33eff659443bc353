//! Deltas through the real `ferry-publish` binary: what a release stores
//! under `deltas/`, what its manifest records and reports, and what
//! `verify` finds.
// A test reports to the harness; a closed stdout there is no operation to spare.
#![allow(clippy::disallowed_macros)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use delta::decode::apply;
use manifests::manifest::{DeltaRef, FileContent};
use manifests::{Manifest, Sha256Digest};

const EPOCH: i64 = 1_700_000_000;

/// The content of `path` in a published manifest.
fn content<'a>(manifest: &'a Manifest, path: &str) -> &'a FileContent {
    manifest
        .files
        .iter()
        .find(|f| f.path.as_str() == path)
        .and_then(|f| f.content())
        .unwrap_or_else(|| panic!("{path} is not a file of {}", manifest.version))
}

/// Three builds of a real executable, a config file that changes once, a
/// data file that never changes, and (from the second build on) a file
/// unrelated to anything before it.
fn build_input(dir: &Path, build: u32) {
    let binary = real_binary();
    let app = if build == 0 {
        binary.clone()
    } else {
        next_build(&binary, build)
    };
    // Large enough that a patch beats its compressed object clearly.
    let threads = if build < 2 { 4 } else { 8 };
    let config: Vec<u8> = (0..300)
        .map(|i| format!("option_{i} = \"{}\"\n", i * 7919 % 1000))
        .chain([format!("threads = {threads}\n")])
        .collect::<String>()
        .into_bytes();
    write_tree(
        dir,
        &[
            ("bin/app", &app, 0o755),
            ("etc/app.conf", &config, 0o644),
            ("share/data", &noise(20_000, 1), 0o644),
        ],
    );
    if build > 0 {
        write_tree(
            dir,
            &[("share/new", &noise(30_000, 10 + build as u64), 0o644)],
        );
    }
}

struct Published {
    scratch: Scratch,
    repo: PathBuf,
    public: PathBuf,
    /// Input directory of each version, kept to check against.
    inputs: BTreeMap<&'static str, PathBuf>,
    outputs: BTreeMap<&'static str, Output>,
}

/// 1.0.0, 1.1.0 and 1.2.0 from builds 0, 1 and 2, with `extra` flags, at
/// `epoch` (`None`: now, for an index `verify` accepts).
fn publish_three(epoch: Option<i64>, extra: &[&str]) -> Published {
    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let repo = scratch.path("repo");
    let mut inputs = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    for (build, version) in ["1.0.0", "1.1.0", "1.2.0"].into_iter().enumerate() {
        let input = scratch.path(&format!("in-{version}"));
        build_input(&input, build as u32);
        let out = release(&repo, &key, version, "stable", &input, epoch, extra);
        out.assert_success();
        inputs.insert(version, input);
        outputs.insert(version, out);
    }
    Published {
        scratch,
        repo,
        public,
        inputs,
        outputs,
    }
}

fn digest_of(path: &Path) -> Sha256Digest {
    Sha256Digest::of(&fs::read(path).unwrap())
}

/// Every regular file below `root`: relative path -> content digest.
fn tree_digests(root: &Path) -> BTreeMap<String, Sha256Digest> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(root).unwrap().to_str().unwrap();
            (relative.to_string(), digest_of(e.path()))
        })
        .collect()
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Applies `delta` to its base (read from the old input) and checks that it
/// gives `target`.
fn assert_rebuilds(repo: &Path, delta: &DeltaRef, base: &Path, target: &Path) {
    let patch = fs::read(repo.join(&delta.path)).unwrap();
    assert_eq!(Sha256Digest::of(&patch), delta.sha256);
    assert_eq!(patch.len() as u64, delta.size);
    let target = fs::read(target).unwrap();
    let rebuilt = apply(
        delta.algorithm,
        &fs::read(base).unwrap(),
        &patch,
        target.len() as u64 + 1,
    )
    .unwrap();
    assert!(
        rebuilt == target,
        "{} does not rebuild its target",
        delta.path
    );
}

#[test]
fn one_target_gets_deltas_from_two_old_versions() {
    let p = publish_three(None, &[]);
    let latest = manifest(&p.repo, "1.2.0");
    latest.validate().unwrap();
    let app = content(&latest, "bin/app");
    let bases: Vec<Sha256Digest> = ["1.0.0", "1.1.0"]
        .iter()
        .map(|v| digest_of(&p.inputs[v].join("bin/app")))
        .collect();
    let mut expected = bases.clone();
    expected.sort();
    let recorded: Vec<Sha256Digest> = app.deltas.iter().map(|d| d.base_sha256).collect();
    assert_eq!(
        recorded, expected,
        "one delta per old build, sorted by base"
    );
    for (version, base) in ["1.0.0", "1.1.0"].iter().zip(&bases) {
        let delta = app.deltas.iter().find(|d| d.base_sha256 == *base).unwrap();
        assert_eq!(delta.path, format!("deltas/{base}-{}", app.sha256));
        assert_eq!(
            delta.base_size,
            file_size(&p.inputs[version].join("bin/app"))
        );
        assert!(
            delta.size * 20 < app.object.size,
            "{version}: delta {} vs object {}",
            delta.size,
            app.object.size
        );
        assert_rebuilds(
            &p.repo,
            delta,
            &p.inputs[version].join("bin/app"),
            &p.inputs["1.2.0"].join("bin/app"),
        );
        eprintln!(
            "bin/app from {version}: {} ({:?}) of {} bytes",
            delta.size, delta.algorithm, app.object.size
        );
    }
    // The unchanged data file needs none; the new file has no base.
    assert!(content(&latest, "share/data").deltas.is_empty());
    verify(&p.repo, &p.public).assert_success();
}

#[test]
fn the_bandwidth_report_matches_the_files_on_disk() {
    let p = publish_three(None, &[]);
    let full_release = tree_digests(&p.inputs["1.2.0"]);
    let object = |sha: &Sha256Digest| file_size(&p.repo.join(format!("objects/{sha}")));
    let distinct: BTreeMap<Sha256Digest, Vec<&String>> =
        full_release
            .iter()
            .fold(BTreeMap::new(), |mut m, (path, sha)| {
                m.entry(*sha).or_default().push(path);
                m
            });
    let full_bytes: u64 = distinct.keys().map(object).sum();
    let latest = manifest(&p.repo, "1.2.0");
    let mut rows = Vec::new();
    for version in ["1.0.0", "1.1.0"] {
        let old = tree_digests(&p.inputs[version]);
        let download: u64 = distinct
            .iter()
            .map(|(sha, paths)| {
                if old.values().any(|s| s == sha) {
                    return 0;
                }
                paths
                    .iter()
                    .filter_map(|path| old.get(*path))
                    .map(|base| p.repo.join(format!("deltas/{base}-{sha}")))
                    .filter(|delta| delta.exists())
                    .map(|delta| file_size(&delta))
                    .min()
                    .unwrap_or_else(|| object(sha))
            })
            .sum();
        rows.push((version.to_string(), download, full_bytes));
        let line = format!("; {download} of {full_bytes} bytes)");
        let stdout = &p.outputs["1.2.0"].stdout;
        assert!(
            stdout.contains(&format!("from {version}: ")) && stdout.contains(&line),
            "{stdout}"
        );
        assert!(
            download * 2 < full_bytes,
            "{version}: {download} of {full_bytes}"
        );
    }
    let reported: Vec<(String, u64, u64)> = latest
        .delta_report
        .iter()
        .map(|r| (r.from_version.to_string(), r.download_bytes, r.full_bytes))
        .collect();
    assert_eq!(reported, rows);
    eprintln!("{}", p.outputs["1.2.0"].stdout);
}

#[test]
fn a_pair_two_releases_need_is_stored_once() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let repo = scratch.path("repo");
    let input = scratch.path("input");
    build_input(&input, 0);
    release(&repo, &key, "1.0.0", "stable", &input, Some(EPOCH), &[]).assert_success();
    build_input(&input, 1);
    let first = release(&repo, &key, "1.1.0", "stable", &input, Some(EPOCH), &[]);
    first.assert_success();
    let stored = files_in(&repo.join("deltas"));
    let modified = |name: &String| {
        fs::metadata(repo.join("deltas").join(name))
            .unwrap()
            .modified()
            .unwrap()
    };
    let times: Vec<_> = stored.keys().map(modified).collect();

    // 1.1.1 changes only the config; against 1.0.0 its bin/app needs the
    // same (1.0.0 app -> 1.1.0 app) pair that 1.1.0 stored.
    let mut config = fs::read(input.join("etc/app.conf")).unwrap();
    config.extend_from_slice(b"log = \"debug\"\n");
    write_tree(&input, &[("etc/app.conf", &config, 0o644)]);
    let second = release(&repo, &key, "1.1.1", "stable", &input, Some(EPOCH), &[]);
    second.assert_success();
    assert!(second.stdout.contains("1 reused"), "{}", second.stdout);
    let after = files_in(&repo.join("deltas"));
    for (name, bytes) in &stored {
        assert_eq!(after.get(name), Some(bytes), "{name} was rewritten");
    }
    assert_eq!(stored.keys().map(modified).collect::<Vec<_>>(), times);
    let app_before = content(&manifest(&repo, "1.1.0"), "bin/app").deltas.clone();
    let app_after = content(&manifest(&repo, "1.1.1"), "bin/app").deltas.clone();
    assert_eq!(app_before.len(), 1);
    assert!(app_after.contains(&app_before[0]), "{app_after:?}");
}

#[test]
fn unrelated_incompressible_files_get_no_delta() {
    let scratch = Scratch::new();
    let (key, public) = scratch.keygen("k");
    let repo = scratch.path("repo");
    let input = scratch.path("input");
    write_tree(&input, &[("blob", &noise(200_000, 1), 0o644)]);
    release(&repo, &key, "1.0.0", "stable", &input, None, &[]).assert_success();
    write_tree(&input, &[("blob", &noise(200_000, 2), 0o644)]);
    let out = release(&repo, &key, "2.0.0", "stable", &input, None, &[]);
    out.assert_success();
    assert!(out.stdout.contains("deltas: 0 new"), "{}", out.stdout);
    assert!(out.stdout.contains("1 dropped"), "{}", out.stdout);
    assert!(files_in(&repo.join("deltas")).is_empty());
    let latest = manifest(&repo, "2.0.0");
    let blob = content(&latest, "blob");
    assert!(blob.deltas.is_empty());
    assert_eq!(latest.delta_report[0].download_bytes, blob.object.size);
    verify(&repo, &public).assert_success();
}

#[test]
fn same_input_and_time_give_identical_deltas_and_manifests() {
    let one = publish_three(Some(EPOCH), &["--jobs", "1"]);
    let two = publish_three(Some(EPOCH), &["--jobs", "2"]);
    let deltas = files_in(&one.repo.join("deltas"));
    assert_eq!(deltas.len(), 4, "{:?}", deltas.keys());
    assert_eq!(deltas, files_in(&two.repo.join("deltas")));
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        let name = format!("manifests/{version}.json");
        assert_eq!(
            fs::read(one.repo.join(&name)).unwrap(),
            fs::read(two.repo.join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn delta_from_chooses_the_bases() {
    let scratch = Scratch::new();
    let (key, _) = scratch.keygen("k");
    let repo = scratch.path("repo");
    let input = scratch.path("input");
    build_input(&input, 0);
    release(&repo, &key, "1.0.0", "stable", &input, Some(EPOCH), &[]).assert_success();
    build_input(&input, 1);
    release(&repo, &key, "1.1.0", "stable", &input, Some(EPOCH), &[]).assert_success();
    build_input(&input, 2);

    let before = snapshot(&repo);
    let out = release(
        &repo,
        &key,
        "1.2.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--delta-from", "0.9.0"],
    );
    out.assert_failure();
    assert!(out.stderr.contains("0.9.0"), "{}", out.stderr);
    assert_eq!(snapshot(&repo), before, "a refused release writes nothing");

    let out = release(
        &repo,
        &key,
        "1.2.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--delta-from", "1.0.0"],
    );
    out.assert_success();
    let latest = manifest(&repo, "1.2.0");
    let froms: Vec<String> = latest
        .delta_report
        .iter()
        .map(|r| r.from_version.to_string())
        .collect();
    assert_eq!(froms, ["1.0.0"]);
    assert_eq!(content(&latest, "bin/app").deltas.len(), 1);

    // Deltas do not make a release: republishing with none is the same one.
    let again = release(
        &repo,
        &key,
        "1.2.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--delta-from", "none"],
    );
    again.assert_success();
    assert!(
        again.stdout.contains("already published"),
        "{}",
        again.stdout
    );

    build_input(&input, 3);
    let none = release(
        &repo,
        &key,
        "1.3.0",
        "stable",
        &input,
        Some(EPOCH),
        &["--delta-from", "none"],
    );
    none.assert_success();
    let plain = manifest(&repo, "1.3.0");
    assert!(plain.delta_report.is_empty());
    assert!(plain
        .files
        .iter()
        .filter_map(|f| f.content())
        .all(|c| c.deltas.is_empty()));
}

#[test]
fn verify_finds_damaged_deltas() {
    let p = publish_three(None, &[]);
    let latest = manifest(&p.repo, "1.2.0");
    let deltas = &content(&latest, "bin/app").deltas;
    let (flipped, truncated) = (&deltas[0].path, &deltas[1].path);
    let config = &content(&latest, "etc/app.conf").deltas;
    let missing = &config.first().expect("the config changed in 1.2.0").path;

    let mut bytes = fs::read(p.repo.join(flipped)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(p.repo.join(flipped), &bytes).unwrap();
    let bytes = fs::read(p.repo.join(truncated)).unwrap();
    fs::write(p.repo.join(truncated), &bytes[..bytes.len() - 1]).unwrap();
    fs::remove_file(p.repo.join(missing)).unwrap();

    let out = verify(&p.repo, &p.public);
    out.assert_failure();
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert_eq!(problems.len(), 3, "{}", out.stdout);
    let find = |path: &str| {
        problems
            .iter()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("no problem names {path}: {}", out.stdout))
    };
    assert!(find(flipped).contains("has SHA-256"));
    assert!(find(truncated).contains("bytes, but the manifest says"));
    assert!(find(missing).contains("is missing") && find(missing).contains("1.2.0:etc/app.conf"));
    drop(p.scratch);
}
