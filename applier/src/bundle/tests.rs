use std::io::Write;

use tar::{EntryType, Header};

use super::*;

const OBJECT: &str = "objects/9516c1cee7d030f66598cb4f9a924cdca2bb5148d7f8a8b2bfc6de5f2eae9cac";
const DELTA: &str = "deltas/821cf820abc7e55628407f1a4f737414fa52d386498aaa62464fa18e765068a6-9516c1cee7d030f66598cb4f9a924cdca2bb5148d7f8a8b2bfc6de5f2eae9cac";

/// A GNU header with `name` written as is (no normalisation, unlike
/// `Header::set_path`, which refuses the paths these tests need).
fn raw_header(name: &[u8], kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// A tar of raw members, each (header, data).
fn tar_of(members: Vec<(Header, Vec<u8>)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, data) in members {
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn file(name: &str, data: &[u8]) -> (Header, Vec<u8>) {
    (
        raw_header(name.as_bytes(), EntryType::Regular, data.len() as u64),
        data.to_vec(),
    )
}

fn dir(name: &str) -> (Header, Vec<u8>) {
    (
        raw_header(name.as_bytes(), EntryType::Directory, 0),
        Vec::new(),
    )
}

fn long_name(name: &[u8]) -> (Header, Vec<u8>) {
    let mut data = name.to_vec();
    data.push(0);
    (
        raw_header(b"././@LongLink", EntryType::GNULongName, data.len() as u64),
        data,
    )
}

fn pax(records: &[(&str, &[u8])]) -> (Header, Vec<u8>) {
    let mut data = Vec::new();
    for (key, value) in records {
        // "<len> <key>=<value>\n", where len counts the whole record.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    (
        raw_header(b"PaxHeaders/x", EntryType::XHeader, data.len() as u64),
        data,
    )
}

fn good_members() -> Vec<(Header, Vec<u8>)> {
    vec![
        file("index.json", b"{}"),
        file("index.json.minisig", b"sig"),
        dir("manifests/"),
        file("manifests/1.0.0.json", b"manifest"),
        file("manifests/1.0.0.json.minisig", b"sig"),
        dir("objects/"),
        file(OBJECT, b"object bytes"),
    ]
}

fn rejected(members: Vec<(Header, Vec<u8>)>) -> BundleError {
    validate_entries(tar_of(members).as_slice()).expect_err("the bundle must be refused")
}

/// Refused with `reason` in the message and the entry named.
#[track_caller]
fn assert_rejected(extra: Vec<(Header, Vec<u8>)>, entry: &str, reason: &str) {
    let mut members = good_members();
    members.extend(extra);
    let e = rejected(members);
    let text = e.to_string();
    assert!(text.contains(entry), "{text:?} does not name {entry:?}");
    assert!(text.contains(reason), "{text:?} does not say {reason:?}");
}

#[test]
fn a_good_bundle_is_read_with_the_byte_range_of_every_file() {
    let mut members = good_members();
    members.push(dir("deltas/"));
    members.push(long_name(DELTA.as_bytes()));
    members.push(file("deltas/truncated-in-header", b"patch"));
    let bytes = tar_of(members);
    let contents = validate_entries(bytes.as_slice()).unwrap();
    let at = |path: &str| {
        let span = contents.file(path).unwrap();
        &bytes[span.offset as usize..(span.offset + span.size) as usize]
    };
    assert_eq!(at("index.json"), b"{}");
    assert_eq!(at(OBJECT), b"object bytes");
    // The long name, not the truncated one in the header, names the member.
    assert_eq!(at(DELTA), b"patch");
    assert!(contents.file("deltas/truncated-in-header").is_none());
    let dirs: Vec<&str> = contents.directories().map(|d| d.as_str()).collect();
    assert_eq!(dirs, ["deltas", "manifests", "objects"]);
}

#[test]
fn the_tar_crates_own_long_names_are_read() {
    // What `ferry-publish bundle` writes: the tar crate's Builder, which
    // emits a GNU long name for the 136-byte delta paths.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, DELTA, &b"abc"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let contents = validate_entries(bytes.as_slice()).unwrap();
    assert_eq!(contents.file(DELTA).unwrap().size, 3);
}

#[test]
fn unsafe_paths_are_refused() {
    for (name, reason) in [
        ("/etc/passwd", "absolute"),
        ("../escape", "`..`"),
        ("objects/../../x", "`..`"),
        ("objects//x", "empty component"),
        ("./index.json", "`.`"),
        ("objects\\x", "backslash"),
    ] {
        // Names are quoted, control characters escaped (a backslash stays).
        let shown = format!("\"{name}\"");
        assert_rejected(vec![file(name, b"x")], &shown, reason);
    }
    assert_rejected(
        vec![file("objects/\u{1b}[2J", b"x")],
        "objects/\\x1b[2J",
        "not a file of the repository layout",
    );
    let mut h = raw_header(b"objects/\xff", EntryType::Regular, 0);
    h.set_cksum();
    assert_rejected(vec![(h, vec![])], "objects/", "not UTF-8");
}

#[test]
fn links_devices_and_other_types_are_refused() {
    for (kind, what) in [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
        (EntryType::Continuous, "contiguous file"),
        (EntryType::GNUSparse, "GNU sparse"),
        (EntryType::XGlobalHeader, "pax global header"),
        (EntryType::GNULongLink, "GNU long link"),
        (EntryType::new(b'V'), "type 'V'"),
    ] {
        let mut h = raw_header(b"objects/link", kind, 0);
        h.set_link_name("../../etc/shadow").unwrap_or(());
        h.set_cksum();
        assert_rejected(vec![(h, vec![])], "objects/link", what);
    }
}

#[test]
fn duplicates_and_paths_outside_the_layout_are_refused() {
    assert_rejected(vec![file(OBJECT, b"other")], OBJECT, "appears twice");
    assert_rejected(vec![dir("objects/")], "objects", "appears twice");
    for name in [
        "etc/passwd",
        "index.json.p7s.minisig",
        "objects/ABCDEF",
        "objects/sub/9516c1cee7d030f66598cb4f9a924cdca2bb5148d7f8a8b2bfc6de5f2eae9cac",
        "manifests/1.0.json",
        "manifests/01.0.0.json",
        "roots/0.json",
        "roots/01.json",
        "deltas/abc-def",
        "current",
    ] {
        assert_rejected(
            vec![file(name, b"x")],
            name,
            "not a file of the repository layout",
        );
    }
    assert_rejected(vec![dir("releases/")], "releases", "not a directory");
    // Every name the layout does have is accepted.
    for name in [
        "index.json.p7s",
        "root.json",
        "root.json.minisig",
        "roots/12.json",
        "roots/12.json.minisig",
        "roots/12.json.p7s",
        "manifests/2.0.0-rc.1.json.p7s",
        DELTA,
    ] {
        assert!(file_cap(name).is_some(), "{name}");
    }
}

#[test]
fn sizes_are_capped_by_kind() {
    let e = rejected(vec![(
        raw_header(b"index.json", EntryType::Regular, MAX_INDEX_BYTES + 1),
        vec![0; MAX_INDEX_BYTES as usize + 1],
    )]);
    assert!(e.to_string().contains("more than the 1048576"), "{e}");
    let e = rejected(vec![file(
        "index.json.minisig",
        &vec![b'x'; MAX_SIGNATURE_BYTES as usize + 1],
    )]);
    assert!(e.to_string().contains("index.json.minisig"), "{e}");
    // A header claiming an absurd size is refused from the header alone.
    let h = raw_header(OBJECT.as_bytes(), EntryType::Regular, MAX_OBJECT_BYTES + 1);
    let e = rejected(vec![(h, vec![])]);
    assert!(e.to_string().contains("more than the"), "{e}");
}

#[test]
fn long_names_are_checked_like_any_path() {
    assert_rejected(
        vec![
            long_name(b"../../../../etc/cron.d/evil"),
            file("objects/x", b"x"),
        ],
        "../../../../etc/cron.d/evil",
        "`..` components are not allowed (name from a GNU long name)",
    );
    let mut inner_nul = b"objects/abc".to_vec();
    inner_nul.extend_from_slice(b"\0/../x");
    assert_rejected(
        vec![long_name(&inner_nul), file("objects/x", b"x")],
        "objects/abc",
        "NUL",
    );
    // A long name longer than any path ferry accepts is not even read.
    let e = rejected(vec![long_name(&vec![b'a'; 5000]), file("objects/x", b"x")]);
    assert!(e.to_string().contains("GNU long name of 5001 bytes"), "{e}");
    // One name per member.
    let e = rejected(vec![
        long_name(OBJECT.as_bytes()),
        long_name(b"index.json"),
        file("x", b"x"),
    ]);
    assert!(e.to_string().contains("another extension header"), "{e}");
    // A long name with nothing after it.
    let e = rejected(vec![long_name(OBJECT.as_bytes())]);
    assert!(e.to_string().contains("describes no entry"), "{e}");
}

#[test]
fn pax_headers_are_checked_like_any_path() {
    assert_rejected(
        vec![pax(&[("path", b"/etc/shadow")]), file("objects/x", b"x")],
        "/etc/shadow",
        "absolute paths are not allowed (name from a pax path)",
    );
    // Times alone name nothing; the member keeps its header name.
    let mut members = good_members();
    members.push(pax(&[("mtime", b"1")]));
    members.push(file("index.json.p7s", b"cms"));
    assert!(validate_entries(tar_of(members).as_slice())
        .unwrap()
        .file("index.json.p7s")
        .is_some());
    for (key, value) in [
        ("size", &b"1"[..]),
        ("linkpath", b"/etc"),
        ("GNU.sparse.map", b"0,1"),
    ] {
        let e = rejected(vec![pax(&[(key, value)]), file("objects/x", b"x")]);
        assert!(e.to_string().contains("is not allowed in a bundle"), "{e}");
    }
    let e = rejected(vec![
        pax(&[("path", b"index.json"), ("path", b"root.json")]),
        file("x", b""),
    ]);
    assert!(e.to_string().contains("twice"), "{e}");
    // Headers that name nothing still count: one per member, so a stream
    // of them cannot bypass the entry cap.
    let e = rejected(vec![
        pax(&[("mtime", b"1")]),
        pax(&[("atime", b"1")]),
        file("index.json.p7s", b""),
    ]);
    assert!(e.to_string().contains("another extension header"), "{e}");
}

#[test]
fn broken_tars_are_refused_whole() {
    let mut bytes = tar_of(good_members());
    // A bad checksum.
    let mut broken = bytes.clone();
    broken[0] ^= 1;
    let e = validate_entries(broken.as_slice()).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    // Cut short inside the object's data.
    let cut = bytes.len() - 1024 - 512 + 4;
    bytes.truncate(cut);
    assert!(validate_entries(bytes.as_slice()).is_err());
    // Not a tar at all, and a pre-POSIX header.
    assert!(validate_entries(&b"hello"[..]).is_err());
    let mut old = Header::new_old();
    old.set_path("index.json").unwrap();
    old.set_size(0);
    old.set_cksum();
    let e = rejected(vec![(old, vec![])]);
    assert!(e.to_string().contains("not a ustar or GNU"), "{e}");
    // Empty input is an empty bundle (the apply then finds no index).
    assert_eq!(
        validate_entries(&b""[..]).unwrap(),
        BundleContents::default()
    );
}

#[test]
fn too_many_entries_are_refused() {
    // The real cap needs a 128 MiB tar; the counting is the same at 7.
    let bytes = tar_of(good_members());
    let mut archive = Archive::new(bytes.as_slice());
    assert!(scan(archive.entries().unwrap(), 7).is_ok());
    let mut archive = Archive::new(bytes.as_slice());
    let e = scan(archive.entries().unwrap(), 6).unwrap_err();
    assert!(e.to_string().contains("more than 6 entries"), "{e}");
    assert!(e.to_string().contains(OBJECT), "{e}");
}

fn bundle_file(members: Vec<(Header, Vec<u8>)>) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&tar_of(members)).unwrap();
    f.flush().unwrap();
    f
}

#[test]
fn the_transport_serves_entries_within_their_caps() {
    let f = bundle_file(good_members());
    let t = BundleTransport::open(f.path()).unwrap();
    let mut out = Vec::new();
    assert_eq!(t.fetch(OBJECT, 0, 100, &mut out).unwrap(), 12);
    assert_eq!(out, b"object bytes");
    out.clear();
    assert_eq!(t.fetch(OBJECT, 7, 100, &mut out).unwrap(), 5);
    assert_eq!(out, b"bytes");
    let err = t.fetch(OBJECT, 0, 11, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    let err = t.fetch(OBJECT, 13, 100, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, FetchError::RangeMismatch { .. }), "{err}");
    let err = t
        .fetch("roots/1.json", 0, 100, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("bundle entry roots/1.json"),
        "{err}"
    );
    let err = t
        .fetch("manifests/2.0.0.json", 0, 100, &mut Vec::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("holds the manifests of 1.0.0; pick one with --version"),
        "{err}"
    );
    // Directories are not files.
    let err = t.fetch("objects", 0, 100, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err}");
}

#[test]
fn opening_refuses_bad_and_truncated_bundles() {
    let mut members = good_members();
    members.push(file("../x", b"x"));
    let f = bundle_file(members);
    let err = BundleTransport::open(f.path()).err().unwrap();
    assert_eq!(err.exit_code(), crate::exit::Exit::Verification.code());
    let text = err.to_string();
    assert!(
        text.contains("\"../x\"") && text.contains("nothing was written"),
        "{text}"
    );

    // Cut inside the last entry's data: a seek over it does not notice.
    let f = bundle_file(good_members());
    let len = f.as_file().metadata().unwrap().len();
    f.as_file().set_len(len - 1024 - 510).unwrap();
    let err = BundleTransport::open(f.path()).err().unwrap();
    assert!(err.to_string().contains("cut short"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = BundleTransport::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn tars_from_other_tools_are_accepted() {
    // The fuzz seeds: one from `ferry-publish bundle`, one GNU-format and
    // one pax-format tar written by Python's tarfile (GNU long name and pax
    // `path` for names over 100 bytes). GNU tar's `--format=gnu` and
    // `--format=posix` output is read the same way.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/bundle_reader");
    for (name, expect) in [
        ("small.tar", "index.json".to_string()),
        (
            "long-names.tar",
            format!("deltas/{}-{}", "a".repeat(64), "b".repeat(64)),
        ),
        (
            "pax.tar",
            format!("manifests/1.0.0-{}.json", "x".repeat(120)),
        ),
    ] {
        let bytes = std::fs::read(seeds.join(name)).unwrap();
        let contents = validate_entries(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(contents.file(&expect).is_some(), "{name}: no {expect}");
    }
}
