//! The threat: an offline bundle (`ferry apply --bundle FILE.tar`) is a tar
//! from an untrusted place — a USB stick, a ticket attachment — crafted so
//! that unpacking it writes outside where it should: absolute paths, `..`
//! escapes (plain, inside a component chain, or hidden in a GNU long name
//! or a pax header), symlinks and hard links pointing out, device files and
//! fifos, duplicate names, oversized entries, files that are not part of a
//! repository at all.
//!
//! Every crafted bundle below is a real `ferry-publish bundle` output with
//! one bad entry added *last*, so a reader that wrote while reading would
//! already have written the good entries. The node must refuse the whole
//! bundle (exit 3), name the entry and the reason, and change nothing at
//! all: its install root and its entire state directory (not even the lock
//! file or the history) are compared before and after, and nothing may
//! appear beside the workspace.
//!
//! A well-formed bundle is then only a repository from another place: it
//! installs with no server at all (the node's `repository.url` points at a
//! closed port), and one whose object was tampered with is refused by the
//! same verification as over the network.
//!
//! The other threat tests serve bad data over a real HTTP server; a bundle
//! is a local file by definition, so these hand the node files instead.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{
    render, sha256_hex, tree_snapshot, Node, NodeConfig, SnapshotEntry, Workspace,
};
use ferry_tests::run::{run, Output};
use ferry_tests::threats::{Unchanged, VERIFICATION_FAILED};
use tar::{EntryType, Header};

/// A node whose repository is unreachable: any network use would fail.
fn offline_node(ws: &Workspace, name: &str) -> Node {
    ws.node_with(
        name,
        NodeConfig::new("http://127.0.0.1:1/ferry".into(), &ws.public_key),
    )
}

/// `ferry-publish bundle --repo <repo> --out <out> ARGS…`, asserted to succeed.
fn bundle(ws: &Workspace, out: &Path, args: &[&str]) -> Output {
    let out = run(ws
        .publisher()
        .arg("bundle")
        .arg("--repo")
        .arg(&ws.repo)
        .arg("--out")
        .arg(out)
        .args(args));
    out.assert_success();
    out
}

/// 1.0.0 and 1.1.0 published; a node without network on 1.0.0, installed
/// from a bundle; the bundle of 1.1.0 (with deltas from 1.0.0).
struct Setup {
    ws: Workspace,
    node: Node,
    good: PathBuf,
}

fn setup() -> Setup {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = offline_node(&ws, "offline");
    let first = ws.dir.join("v1.tar");
    bundle(&ws, &first, &["--version", "1.0.0"]);
    node.ferry_ok(&[
        "apply",
        "--bundle",
        first.to_str().unwrap(),
        "--version",
        "1.0.0",
    ]);
    node.assert_current("1.0.0", &ws.input(1));
    let good = ws.dir.join("v2.tar");
    bundle(&ws, &good, &["--version", "1.1.0", "--from", "1.0.0"]);
    Setup { ws, node, good }
}

/// Everything of a node that a refused bundle must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Everything {
    root: Vec<SnapshotEntry>,
    state: Vec<SnapshotEntry>,
    node_dir: Vec<String>,
}

impl Everything {
    fn of(node: &Node) -> Everything {
        Everything {
            root: tree_snapshot(&node.root),
            state: tree_snapshot(&node.state_dir),
            node_dir: tree_snapshot(&node.dir)
                .into_iter()
                .map(|e| e.path)
                .collect(),
        }
    }
}

/// One tar member: a header written as is, and its data.
type Member = (Header, Vec<u8>);

/// A GNU header with `name` copied byte for byte (`Header::set_path`
/// refuses the names these tests need).
fn raw_header(name: &[u8], kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn file(name: &str, data: &[u8]) -> Vec<Member> {
    vec![(
        raw_header(name.as_bytes(), EntryType::Regular, data.len() as u64),
        data.to_vec(),
    )]
}

/// A member of type `kind` (link, device, fifo) named `name`, with link
/// target `link`.
fn special(name: &str, kind: EntryType, link: &str) -> Vec<Member> {
    let mut h = raw_header(name.as_bytes(), kind, 0);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    vec![(h, Vec::new())]
}

/// A GNU long name record naming the regular file that follows it.
fn gnu_long_name(name: &str, data: &[u8]) -> Vec<Member> {
    let mut record = name.as_bytes().to_vec();
    record.push(0);
    let mut members = vec![(
        raw_header(
            b"././@LongLink",
            EntryType::GNULongName,
            record.len() as u64,
        ),
        record,
    )];
    members.extend(file("objects/harmless-looking", data));
    members
}

/// A pax extended header setting `path` for the regular file that follows.
fn pax_path(path: &str, data: &[u8]) -> Vec<Member> {
    let body = format!("path={path}\n");
    let mut len = body.len() + 3;
    while format!("{len} {body}").len() != len {
        len += 1;
    }
    let record = format!("{len} {body}").into_bytes();
    let mut members = vec![(
        raw_header(b"PaxHeaders/x", EntryType::XHeader, record.len() as u64),
        record,
    )];
    members.extend(file("objects/harmless-looking", data));
    members
}

/// The members of `bundle` re-appended in order, then `extra`, as a new
/// bundle next to it.
fn with_extra(bundle: &Path, name: &str, extra: Vec<Member>) -> PathBuf {
    let mut archive = tar::Archive::new(fs::File::open(bundle).unwrap());
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        builder
            .append_data(&mut header, path, data.as_slice())
            .unwrap();
    }
    for (header, data) in extra {
        builder.append(&header, data.as_slice()).unwrap();
    }
    let out = bundle.with_file_name(format!("{name}.tar"));
    fs::write(&out, builder.into_inner().unwrap()).unwrap();
    out
}

/// Applies each crafted bundle to the node of `s` and asserts that it is
/// refused with exit 3, naming `entry` and `reason`, and that nothing
/// changed anywhere.
#[track_caller]
fn assert_each_refused(s: &Setup, cases: Vec<(&str, Vec<Member>, &str, &str)>) {
    for (name, extra, entry, reason) in cases {
        let crafted = with_extra(&s.good, name, extra);
        let before = Everything::of(&s.node);
        let out = s
            .node
            .ferry(&["apply", "--bundle", crafted.to_str().unwrap()]);
        out.assert_code(VERIFICATION_FAILED);
        out.assert_stderr_contains(entry);
        out.assert_stderr_contains(reason);
        out.assert_stderr_contains("nothing was written");
        let after = Everything::of(&s.node);
        assert_eq!(
            after,
            before,
            "{name}: a refused bundle changed the node\nstate now:\n{}\n{out}",
            render(&after.state)
        );
        s.ws.assert_nothing_beside_workspace();
        s.node.assert_current("1.0.0", &s.ws.input(1));
    }
}

#[test]
fn entries_escaping_the_bundle_are_refused() {
    let s = setup();
    let absolute = s.ws.sandbox().join("escape");
    let absolute = absolute.to_str().unwrap();
    assert_each_refused(
        &s,
        vec![
            (
                "absolute",
                file(absolute, b"x"),
                absolute,
                "absolute paths are not allowed",
            ),
            (
                "dotdot",
                file("../escape", b"x"),
                "../escape",
                "`..` components are not allowed",
            ),
            (
                "dotdot-inside",
                file("objects/../../escape", b"x"),
                "objects/../../escape",
                "`..` components are not allowed",
            ),
            (
                "gnu-long-name",
                gnu_long_name(
                    &format!("objects/{}/../../../../escape", "a".repeat(120)),
                    b"x",
                ),
                "../../../../escape",
                "`..` components are not allowed (name from a GNU long name)",
            ),
            (
                "pax-path",
                pax_path(absolute, b"x"),
                absolute,
                "absolute paths are not allowed (name from a pax path)",
            ),
        ],
    );
}

#[test]
fn links_devices_and_fifos_are_refused() {
    let s = setup();
    let outside = s.ws.sandbox().join("escape");
    let outside = outside.to_str().unwrap();
    let object =
        s.ws.repo_objects()
            .into_iter()
            .next()
            .map(|o| format!("objects/{o}"))
            .unwrap();
    assert_each_refused(
        &s,
        vec![
            (
                "symlink",
                special("objects/link", EntryType::Symlink, "/etc/passwd"),
                "objects/link",
                "symbolic link entries are not allowed",
            ),
            (
                // Shadows a real object: a naive extractor would replace it
                // by a link to a file outside.
                "hardlink",
                special(&object, EntryType::Link, outside),
                &object,
                "hard link entries are not allowed",
            ),
            (
                "char-device",
                special("objects/null", EntryType::Char, ""),
                "objects/null",
                "character device entries are not allowed",
            ),
            (
                "block-device",
                special("objects/sda", EntryType::Block, ""),
                "objects/sda",
                "block device entries are not allowed",
            ),
            (
                "fifo",
                special("objects/fifo", EntryType::Fifo, ""),
                "objects/fifo",
                "fifo entries are not allowed",
            ),
            (
                "sparse",
                special("objects/sparse", EntryType::GNUSparse, ""),
                "objects/sparse",
                "GNU sparse file entries are not allowed",
            ),
        ],
    );
}

#[test]
fn duplicate_oversized_and_foreign_entries_are_refused() {
    let s = setup();
    assert_each_refused(
        &s,
        vec![
            (
                // A second index after the real one: which one would a
                // reader believe?
                "duplicate",
                file("index.json", b"{}"),
                "index.json",
                "the path appears twice in the bundle",
            ),
            (
                "oversized",
                file("index.json.p7s", &vec![0x30; 64 * 1024 + 1]),
                "index.json.p7s",
                "more than the 65536 a file of its kind may have",
            ),
            (
                "outside-layout",
                file("releases/1.1.0/bin/app", b"#!/bin/sh\n"),
                "releases/1.1.0/bin/app",
                "not a file of the repository layout",
            ),
            (
                "node-state",
                file("trusted.json", b"{\"index_serial\":0}"),
                "trusted.json",
                "not a file of the repository layout",
            ),
        ],
    );
}

#[test]
fn a_good_bundle_installs_offline_and_matches_the_release() {
    let s = setup();
    let out = s
        .node
        .ferry(&["apply", "--bundle", s.good.to_str().unwrap(), "--dry-run"]);
    out.assert_success();
    out.assert_stdout_contains("dry run: nothing changed");
    s.node.assert_current("1.0.0", &s.ws.input(1));

    let out = s
        .node
        .ferry_ok(&["apply", "--bundle", s.good.to_str().unwrap()]);
    out.assert_stdout_contains("updated 1.0.0 -> 1.1.0");
    s.node.assert_current("1.1.0", &s.ws.input(2));
    // Nothing from the bundle is left behind in the state directory: no
    // extraction directory, only the node's own files.
    let leftovers: Vec<String> = tree_snapshot(&s.node.state_dir)
        .into_iter()
        .map(|e| e.path)
        .filter(|p| p.contains("bundle") || p.ends_with(".tar"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.ws.assert_nothing_beside_workspace();
}

#[test]
fn a_bundle_with_a_tampered_object_is_refused_by_verification() {
    let s = setup();
    // Rewrite the bundle with one byte of the new app's object flipped:
    // same size, same structure, wrong content.
    let app = fs::read(s.ws.input(2).join("bin/app")).unwrap();
    let target = format!("objects/{}", sha256_hex(&app));
    let mut archive = tar::Archive::new(fs::File::open(&s.good).unwrap());
    let mut builder = tar::Builder::new(Vec::new());
    let mut flipped = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        // The deltas from 1.0.0 too, or the node would rebuild the app
        // from a good patch and never read the tampered object.
        if !data.is_empty() && (path == target || path.starts_with("deltas/")) {
            let middle = data.len() / 2;
            data[middle] ^= 0x01;
            flipped |= path == target;
        }
        builder
            .append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    assert!(flipped, "the bundle holds no {target}");
    let tampered = s.ws.dir.join("tampered.tar");
    fs::write(&tampered, builder.into_inner().unwrap()).unwrap();

    let unchanged = Unchanged::of(&s.node);
    let out = s
        .node
        .ferry(&["apply", "--bundle", tampered.to_str().unwrap()]);
    unchanged.assert_refused(
        &s.node,
        &out,
        VERIFICATION_FAILED,
        &["verification failed", &target[8..]],
    );
    s.node.assert_current("1.0.0", &s.ws.input(1));
}

#[test]
fn bundling_is_deterministic_and_holds_exactly_what_a_node_needs() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let a = ws.dir.join("a.tar");
    let b = ws.dir.join("b.tar");
    bundle(&ws, &a, &["--version", "1.1.0", "--from", "1.0.0"]);
    // File times in the repository must not matter.
    for object in ws.repo_objects() {
        let f = fs::File::options()
            .write(true)
            .open(ws.repo.join("objects").join(object))
            .unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
    bundle(&ws, &b, &["--from", "1.0.0", "--version", "1.1.0"]);
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "bundles differ"
    );

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(ws.repo.join("index.json")).unwrap()).unwrap();
    let created: jiff::Timestamp = index["created"].as_str().unwrap().parse().unwrap();
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&a).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let dir = h.entry_type() == EntryType::Directory;
        assert!(dir || h.entry_type() == EntryType::Regular, "{name}");
        assert_eq!(h.mode().unwrap(), if dir { 0o755 } else { 0o644 }, "{name}");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.mtime().unwrap() as i64, created.as_second(), "{name}");
        if !dir {
            let on_disk = fs::read(ws.repo.join(&name)).unwrap();
            assert_eq!(on_disk.len() as u64, entry.size(), "{name}");
            names.push(name);
        }
    }
    // The index, the 1.1.0 manifest, the objects 1.1.0 lists, the deltas
    // from 1.0.0's contents — and nothing of 1.0.0 itself.
    assert!(names.contains(&"index.json".to_string()));
    assert!(names.contains(&"index.json.minisig".to_string()));
    assert!(names.contains(&"manifests/1.1.0.json".to_string()));
    assert!(names.contains(&"manifests/1.1.0.json.minisig".to_string()));
    assert!(
        !names.iter().any(|n| n.starts_with("manifests/1.0.0")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("deltas/")), "{names:?}");
    let app = fs::read(ws.input(2).join("bin/app")).unwrap();
    assert!(names.contains(&format!("objects/{}", sha256_hex(&app))));
    let legacy = fs::read(ws.input(1).join("etc/legacy.conf")).unwrap();
    assert!(
        !names.contains(&format!("objects/{}", sha256_hex(&legacy))),
        "1.0.0-only object bundled"
    );

    // Without --from: full objects only.
    let c = ws.dir.join("c.tar");
    bundle(&ws, &c, &[]);
    let mut archive = tar::Archive::new(fs::File::open(&c).unwrap());
    let none: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("deltas"))
        .collect();
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn bundling_an_unpublished_version_is_refused() {
    let ws = Workspace::new();
    ws.publish("1.0.0", "stable", &ws.input(1));
    let out_file = ws.dir.join("x.tar");
    for args in [
        &["--version", "9.9.9"][..],
        &["--version", "1.0.0", "--from", "0.9.0"],
    ] {
        let out = run(ws
            .publisher()
            .arg("bundle")
            .arg("--repo")
            .arg(&ws.repo)
            .arg("--out")
            .arg(&out_file)
            .args(args));
        out.assert_code(1);
        out.assert_stderr_contains("is not published");
        out.assert_stderr_contains("1.0.0 (stable)");
        assert!(!out_file.exists(), "a refused bundle must not be written");
    }
    let out = run(ws
        .publisher()
        .arg("bundle")
        .arg("--repo")
        .arg(&ws.repo)
        .arg("--out")
        .arg(&out_file)
        .args(["--channel", "beta"]));
    out.assert_code(1);
    out.assert_stderr_contains("channel \"beta\" is not in");
}
