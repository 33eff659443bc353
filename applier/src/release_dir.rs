//! Release trees under `install.root/releases/<version>/`.
//!
//! A release is built in a hidden staging directory, made durable (every file
//! and directory fsynced), and only then renamed to its version's name, so a
//! directory named after a version is always complete. It is checked against
//! its signed manifest before ferry switches to it, because anything on disk
//! may have changed since ferry wrote it.
//!
//! Release files are installed read-only (the manifest's mode without its
//! write bits, [`sharing::read_only`]) and share the store's bytes by
//! reflink or hard link; [`repair`] replaces a damaged file with a fresh
//! inode, never by writing through a link that other releases share.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifests::manifest::EntryKind;
use manifests::mode::Mode;
use manifests::{Manifest, Sha256Digest};
use semver::Version;

use crate::durable;
use crate::error::{NodeError, Result};
use crate::sharing;
use crate::store::ContentStore;

pub fn releases_dir(root: &Path) -> PathBuf {
    root.join("releases")
}

pub fn release_path(root: &Path, version: &Version) -> PathBuf {
    releases_dir(root).join(version.to_string())
}

/// Versions with a complete release directory, sorted ascending.
/// A failed listing of `root/releases`, naming it.
pub fn listing_failed(root: &Path, e: io::Error) -> NodeError {
    let releases = root.join("releases");
    NodeError::io(format!("cannot list {}", releases.display()), e)
}

pub fn releases_on_disk(root: &Path) -> io::Result<Vec<Version>> {
    let mut versions = Vec::new();
    match fs::read_dir(releases_dir(root)) {
        Ok(entries) => {
            for entry in entries {
                let name = entry?.file_name();
                if let Some(v) = name.to_str().and_then(|n| n.parse::<Version>().ok()) {
                    versions.push(v);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    versions.sort();
    Ok(versions)
}

/// Removes leftovers of interrupted runs: hidden staging and removal dirs.
pub fn clean_leftovers(root: &Path) -> io::Result<()> {
    let dir = releases_dir(root);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Builds `releases/<version>` from the store. The store must hold every
/// content of the manifest.
pub fn stage(manifest: &Manifest, store: &ContentStore, root: &Path) -> Result<PathBuf> {
    let releases = releases_dir(root);
    durable::create_dir_all(&releases, 0o755)
        .map_err(|e| NodeError::io(format!("cannot create {}", releases.display()), e))?;
    let staging = releases.join(format!(
        ".staging-{}-{}",
        manifest.version,
        std::process::id()
    ));
    remove_tree(&staging)
        .map_err(|e| NodeError::io(format!("cannot clear {}", staging.display()), e))?;
    let result = build_tree(manifest, store, &staging);
    if let Err(e) = result {
        let _ = remove_tree(&staging);
        return Err(e);
    }
    let dest = release_path(root, &manifest.version);
    crate::faults::point("stage:before-rename");
    fs::rename(&staging, &dest).map_err(|e| {
        let _ = remove_tree(&staging);
        NodeError::io(
            format!("cannot move the staged release to {}", dest.display()),
            e,
        )
    })?;
    durable::sync_dir(&releases)
        .map_err(|e| NodeError::io(format!("cannot fsync {}", releases.display()), e))?;
    Ok(dest)
}

fn build_tree(manifest: &Manifest, store: &ContentStore, staging: &Path) -> Result<()> {
    let io_err = |path: &Path, what: &str, e: std::io::Error| {
        let hint = crate::space::write_failure_hint(path, &e);
        NodeError::io(format!("cannot {what} {}{hint}", path.display()), e)
    };
    fs::DirBuilder::new()
        .mode(0o755)
        .create(staging)
        .map_err(|e| io_err(staging, "create", e))?;
    let mut directories = vec![(staging.to_path_buf(), Mode::new(0o755).expect("valid mode"))];
    let progress = crate::events::progress("staging", manifest.files.len() as u64, false);
    for entry in &manifest.files {
        progress.advance(1);
        let dest = entry.path.under(staging);
        match &entry.kind {
            // Writable while children are added; the real mode is set last.
            EntryKind::Directory { mode } => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dest)
                    .map_err(|e| io_err(&dest, "create", e))?;
                directories.push((dest, *mode));
            }
            EntryKind::File(c) | EntryKind::Executable(c) => {
                crate::faults::point("stage:between-files");
                store
                    .materialize(&c.sha256, c.mode, &dest)
                    .map_err(|e| io_err(&dest, "write", e))?;
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(|e| io_err(&dest, "create symlink", e))?;
            }
        }
    }
    // Deepest first: a directory is synced after everything inside it.
    directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (dir, mode) in &directories {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode.bits()))
            .map_err(|e| io_err(dir, "set mode on", e))?;
        durable::sync_dir(dir).map_err(|e| io_err(dir, "fsync", e))?;
    }
    Ok(())
}

/// How far [`verify`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Types, modes, sizes, symlink targets, missing and extra entries: for a
    /// tree ferry has just built from verified content.
    Metadata,
    /// Everything, including each file's SHA-256: for a tree that has sat on
    /// disk, where anything may have changed it.
    Content,
}

/// Compares a release tree with its manifest. Returns one line per problem.
pub fn verify(manifest: &Manifest, dir: &Path, depth: Depth) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    for entry in &manifest.files {
        let path = entry.path.under(dir);
        expected.insert(path.clone());
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                problems.push(format!("{}: missing", entry.path));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mode = Mode::from_st_mode(meta.mode());
        match &entry.kind {
            EntryKind::Directory { mode: want } => {
                if !meta.is_dir() {
                    problems.push(format!("{}: expected a directory", entry.path));
                } else if mode != *want {
                    problems.push(format!("{}: mode {mode}, expected {want}", entry.path));
                }
            }
            EntryKind::Symlink { target } => {
                if !meta.file_type().is_symlink() {
                    problems.push(format!("{}: expected a symlink", entry.path));
                } else if fs::read_link(&path)? != Path::new(target) {
                    problems.push(format!(
                        "{}: symlink target changed, expected {target}",
                        entry.path
                    ));
                }
            }
            EntryKind::File(c) | EntryKind::Executable(c) => {
                if !meta.is_file() {
                    problems.push(format!("{}: expected a regular file", entry.path));
                    continue;
                }
                if !sharing::mode_matches(mode, c.mode) {
                    problems.push(format!(
                        "{}: mode {mode}, expected {} (or {} read-only)",
                        entry.path,
                        c.mode,
                        sharing::read_only(c.mode)
                    ));
                }
                if depth == Depth::Metadata {
                    if meta.len() != c.size {
                        problems.push(format!(
                            "{}: {} bytes, expected {}",
                            entry.path,
                            meta.len(),
                            c.size
                        ));
                    }
                    continue;
                }
                let (digest, size) = Sha256Digest::of_reader(fs::File::open(&path)?)?;
                if size != c.size || digest != c.sha256 {
                    problems.push(format!(
                        "{}: content differs ({size} bytes, SHA-256 {digest}; expected {} bytes, SHA-256 {})",
                        entry.path, c.size, c.sha256
                    ));
                }
            }
        }
    }
    let mut extra = Vec::new();
    collect_extra(dir, dir, &expected, &mut extra)?;
    problems.extend(
        extra
            .into_iter()
            .map(|p| format!("{}: not part of release {}", shown(&p), manifest.version)),
    );
    Ok(problems)
}

/// Makes a release tree match its manifest again, entry by entry: a damaged
/// or missing file is placed afresh from the store beside its path and
/// renamed over it (a new inode: the damaged one may be shared, by hard
/// link, with the store or another release, and writing through it would
/// spread the damage), wrong directory modes are set, wrong symlinks
/// replaced, entries not in the manifest removed. The store must hold every
/// content of the manifest, verified. Returns one line per repair.
///
/// Directories are opened for their owner (`u+wx`, nothing taken from
/// anyone: the release may be live) while entries are replaced inside
/// them, and get their manifest modes last, deepest first, as
/// [`stage`] does. A repair killed half-way leaves only what the next
/// `verify` reports and the next repair mends: wrong directory modes and
/// hidden `.ferry-repair-*` names, which are not part of the release.
pub fn repair(manifest: &Manifest, store: &ContentStore, dir: &Path) -> io::Result<Vec<String>> {
    let mut repaired = Vec::new();
    let mut directories = vec![(dir.to_path_buf(), None)];
    open_for_owner(dir)?;
    for entry in &manifest.files {
        let path = entry.path.under(dir);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let fixed = match &entry.kind {
            EntryKind::Directory { mode } => {
                let fixed = match meta {
                    Some(m) if m.is_dir() => Mode::from_st_mode(m.mode()) != *mode,
                    other => {
                        if other.is_some() {
                            remove_tree(&path)?;
                        }
                        fs::DirBuilder::new().mode(0o700).create(&path)?;
                        true
                    }
                };
                open_for_owner(&path)?;
                directories.push((path, Some(*mode)));
                fixed
            }
            EntryKind::Symlink { target } => {
                let intact = meta.as_ref().is_some_and(|m| m.file_type().is_symlink())
                    && fs::read_link(&path)? == Path::new(target);
                if !intact {
                    let tmp = beside(&path, "link");
                    let _ = fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(target, &tmp)?;
                    replace(&tmp, &path, meta.as_ref())?;
                }
                !intact
            }
            EntryKind::File(c) | EntryKind::Executable(c) => {
                let intact = match &meta {
                    Some(m) if m.is_file() => {
                        sharing::mode_matches(Mode::from_st_mode(m.mode()), c.mode)
                            && m.len() == c.size
                            && Sha256Digest::of_reader(fs::File::open(&path)?)?
                                == (c.sha256, c.size)
                    }
                    _ => false,
                };
                if !intact {
                    let tmp = beside(&path, "file");
                    let _ = fs::remove_file(&tmp);
                    store.materialize(&c.sha256, c.mode, &tmp)?;
                    replace(&tmp, &path, meta.as_ref())?;
                }
                !intact
            }
        };
        if fixed {
            repaired.push(entry.path.to_string());
        }
    }
    let expected: BTreeSet<PathBuf> = manifest.files.iter().map(|e| e.path.under(dir)).collect();
    let mut extra = Vec::new();
    collect_extra(dir, dir, &expected, &mut extra)?;
    for path in extra {
        remove_tree(&dir.join(&path))?;
        repaired.push(format!(
            "{} (removed: not part of release {})",
            shown(&path),
            manifest.version
        ));
    }
    // Deepest first, each directory durable after what was renamed into it
    // and before the switch that relies on it. The release root keeps the
    // mode it has (the manifest does not name one).
    directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (path, mode) in &directories {
        if let Some(mode) = mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode.bits()))?;
        }
        if !repaired.is_empty() {
            durable::sync_dir(path)?;
        }
    }
    Ok(repaired)
}

/// Adds owner write and search to a directory's mode (if missing) so
/// entries can be replaced inside it without taking access from anyone.
fn open_for_owner(dir: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(dir)?.mode() & 0o7777;
    if mode & 0o300 != 0o300 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o300))?;
    }
    Ok(())
}

/// A temporary name beside `path`, hidden and marked as ferry's. Short and
/// independent of the file's own name, which may already be as long as a
/// name can be.
fn beside(path: &Path, what: &str) -> PathBuf {
    path.with_file_name(format!(".ferry-repair-{what}-{}", std::process::id()))
}

/// A path found on disk, for a message: escaped, since any local user
/// with write access may have chosen its bytes.
fn shown(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    manifests::untrusted_text::escape_bytes(path.as_os_str().as_bytes())
}

/// Renames `tmp` over `path`; a directory in the way is removed first
/// (rename cannot replace a directory with a file).
fn replace(tmp: &Path, path: &Path, existing: Option<&fs::Metadata>) -> io::Result<()> {
    if existing.is_some_and(|m| m.is_dir()) {
        remove_tree(path)?;
    }
    fs::rename(tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(tmp);
    })
}

/// Entries under `dir` that are not in `expected`, relative to `base`, as
/// found on disk: names need not be UTF-8 and are removed by their bytes.
fn collect_extra(
    base: &Path,
    dir: &Path,
    expected: &BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if !expected.contains(&path) {
            out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
        } else if entry.file_type()?.is_dir() {
            collect_extra(base, &path, expected, out)?;
        }
    }
    Ok(())
}

/// Removes a tree, restoring write permission on directories first (a
/// release may contain read-only directories).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use manifests::manifest::{Compression, FileContent, ObjectRef};
    use manifests::{FileEntry, SafeRelativePath};

    fn entry(path: &str, kind: EntryKind) -> FileEntry {
        FileEntry {
            path: SafeRelativePath::new(path).unwrap(),
            kind,
        }
    }

    fn content(data: &[u8], mode: u32) -> FileContent {
        let sha256 = Sha256Digest::of(data);
        FileContent {
            mode: Mode::new(mode).unwrap(),
            size: data.len() as u64,
            sha256,
            object: ObjectRef {
                path: manifests::layout::object(&sha256),
                compression: Compression::Zstd,
                size: 1,
                sha256,
            },
            deltas: vec![],
        }
    }

    /// A store holding `contents`, written directly (the store's own fetch
    /// path is covered end to end).
    fn store_with(state: &Path, contents: &[(&[u8], u32)]) -> ContentStore {
        let store = ContentStore::open(state).unwrap();
        for (data, mode) in contents {
            let path = store.path_of(&Sha256Digest::of(data));
            let mut f = fs::File::create(&path).unwrap();
            f.write_all(data).unwrap();
            let mode = sharing::read_only(Mode::new(*mode).unwrap()).bits();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        store
    }

    fn sample() -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": 1, "version": "1.2.3", "channel": "stable",
            "created": "2026-01-01T00:00:00Z", "files": []
        }))
        .unwrap();
        m.files = vec![
            entry(
                "bin",
                EntryKind::Directory {
                    mode: Mode::new(0o755).unwrap(),
                },
            ),
            entry(
                "bin/app",
                EntryKind::Executable(content(b"#!/bin/sh\necho hi\n", 0o755)),
            ),
            entry(
                "bin/link",
                EntryKind::Symlink {
                    target: "app".into(),
                },
            ),
            entry(
                "etc",
                EntryKind::Directory {
                    mode: Mode::new(0o550).unwrap(),
                },
            ),
            entry("etc/a.conf", EntryKind::File(content(b"same", 0o640))),
            entry("etc/b.conf", EntryKind::File(content(b"same", 0o644))),
        ];
        m.validate().unwrap();
        m
    }

    #[test]
    fn a_staged_release_matches_its_manifest_and_shares_store_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let store = store_with(
            &state,
            &[(b"#!/bin/sh\necho hi\n", 0o755), (b"same", 0o640)],
        );
        let m = sample();
        let release = stage(&m, &store, &root).unwrap();
        assert_eq!(release, release_path(&root, &m.version));
        assert_eq!(
            verify(&m, &release, Depth::Content).unwrap(),
            Vec::<String>::new()
        );
        let app = fs::metadata(release.join("bin/app")).unwrap();
        assert_eq!(
            app.ino(),
            fs::metadata(store.path_of(&Sha256Digest::of(b"#!/bin/sh\necho hi\n")))
                .unwrap()
                .ino()
        );
        // Same content, different mode: a copy, so neither mode is disturbed.
        let a = fs::metadata(release.join("etc/a.conf")).unwrap();
        let b = fs::metadata(release.join("etc/b.conf")).unwrap();
        assert_ne!(a.ino(), b.ino());
        assert_eq!(releases_on_disk(&root).unwrap(), vec![m.version.clone()]);
        // Read-only directories do not stop removal.
        remove_tree(&release).unwrap();
        assert!(!release.exists());
    }

    #[test]
    fn verification_names_every_difference() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let store = store_with(
            &state,
            &[(b"#!/bin/sh\necho hi\n", 0o755), (b"same", 0o640)],
        );
        let m = sample();
        let release = stage(&m, &store, &root).unwrap();
        fs::set_permissions(release.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_file(release.join("etc/a.conf")).unwrap();
        fs::write(release.join("etc/extra"), b"x").unwrap();
        fs::set_permissions(release.join("bin/app"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::remove_file(release.join("bin/link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", release.join("bin/link")).unwrap();
        let problems = verify(&m, &release, Depth::Content).unwrap().join("\n");
        for needle in [
            "etc: mode 0755",
            "etc/a.conf: missing",
            "etc/extra: not part",
            "bin/app: mode 0700",
            "bin/link: symlink target",
        ] {
            assert!(
                problems.contains(needle),
                "missing {needle:?} in:\n{problems}"
            );
        }
    }

    #[test]
    fn repair_puts_a_fresh_inode_where_a_shared_one_was_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let store = store_with(
            &state,
            &[(b"#!/bin/sh\necho hi\n", 0o755), (b"same", 0o640)],
        );
        let m = sample();
        let release = stage(&m, &store, &root).unwrap();
        let app = release.join("bin/app");
        let shared = fs::metadata(&app).unwrap().ino();
        // Forced through the shared inode: the store's copy is damaged too.
        fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&app)
            .unwrap()
            .write_all(b"edit")
            .unwrap();
        fs::write(release.join("etc/extra"), b"x").unwrap();
        assert_eq!(
            store.remove_damaged().unwrap(),
            vec![Sha256Digest::of(b"#!/bin/sh\necho hi\n")]
        );
        // Verified content back in the store (what a refetch does).
        let store = store_with(&state, &[(b"#!/bin/sh\necho hi\n", 0o755)]);
        let repaired = repair(&m, &store, &release).unwrap();
        assert_eq!(repaired.len(), 2, "{repaired:?}");
        assert!(repaired[0].starts_with("bin/app"), "{repaired:?}");
        assert!(
            repaired[1].starts_with("etc/extra (removed"),
            "{repaired:?}"
        );
        let meta = fs::metadata(&app).unwrap();
        assert_ne!(meta.ino(), shared, "repaired through the shared inode");
        assert_eq!(meta.mode() & 0o7777, 0o555);
        assert_eq!(
            verify(&m, &release, Depth::Content).unwrap(),
            Vec::<String>::new()
        );
        assert!(repair(&m, &store, &release).unwrap().is_empty());
    }

    #[test]
    fn repair_handles_long_names_odd_names_and_read_only_directories() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let store = store_with(&state, &[(b"long", 0o644), (b"same", 0o640)]);
        let long = "n".repeat(255);
        let mut m = sample();
        m.files.retain(|e| e.path.as_str().starts_with("etc"));
        m.files.push(entry(
            &format!("etc/{long}"),
            EntryKind::File(content(b"long", 0o644)),
        ));
        m.files.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        m.validate().unwrap();
        let release = stage(&m, &store, &root).unwrap();
        let etc = release.join("etc");
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_file(etc.join(&long)).unwrap();
        fs::write(etc.join(OsStr::from_bytes(b"bad\xff\x1bname")), b"x").unwrap();
        // What a repair killed half-way leaves behind.
        fs::write(etc.join(".ferry-repair-file-1"), b"partial").unwrap();
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o550)).unwrap();

        let problems = verify(&m, &release, Depth::Content).unwrap().join("\n");
        assert!(
            problems.contains("bad\\xff\\x1bname: not part"),
            "{problems}"
        );
        assert!(
            problems.contains(".ferry-repair-file-1: not part"),
            "{problems}"
        );
        let repaired = repair(&m, &store, &release).unwrap();
        assert_eq!(repaired.len(), 3, "{repaired:?}");
        assert_eq!(repaired[0], format!("etc/{long}"));
        assert_eq!(fs::read(etc.join(&long)).unwrap(), b"long");
        assert_eq!(fs::metadata(&etc).unwrap().mode() & 0o7777, 0o550);
        assert_eq!(
            verify(&m, &release, Depth::Content).unwrap(),
            Vec::<String>::new()
        );
    }
}
