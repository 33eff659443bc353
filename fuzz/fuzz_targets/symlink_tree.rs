//! A release's symlinks are resolved through each other before a node
//! installs them (manifests/src/symlink_tree.rs): whatever tree a signed
//! manifest describes, an accepted one must not hold a link that the
//! kernel resolves to outside the release root. The oracle is the kernel
//! itself: the tree is built in a scratch directory and every link the
//! check accepted is resolved with realpath(3).
#![no_main]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use manifests::symlink_tree::{ReleaseTree, TreeEntry};
use manifests::SafeRelativePath;

/// One line of the input: `d PATH`, `f PATH` or `l PATH\tTARGET`.
fn parse(line: &str) -> Option<(char, &str, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    let rest = chars.as_str().strip_prefix(' ')?;
    let (path, target) = rest.split_once('\t').unwrap_or((rest, ""));
    Some((kind, path, target))
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-fuzz-symlink-tree-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("root")).unwrap();
    dir.join("root")
}

/// The tree as it ended up on disk (later lines may have failed to write).
fn read_back(root: &Path, dir: &Path, out: &mut Vec<(String, char, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.push((relative, 'l', target.to_str().unwrap().to_string()));
        } else if meta.is_dir() {
            out.push((relative, 'd', String::new()));
            read_back(root, &path, out);
        } else {
            out.push((relative, 'f', String::new()));
        }
    }
}

/// Whether writing `path` (and its missing directories) under `root`
/// touches nothing but new entries inside it: no existing entry at
/// `path`, and no directory on the way that is a symlink. Without this a
/// line `l a\t/` and then `f a/etc/x` would write outside the scratch
/// directory.
fn creates_only_inside(root: &Path, path: &str) -> bool {
    let mut at = root.to_path_buf();
    for part in path.split('/') {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    // Every component exists as a directory: `path` itself is taken.
    false
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<(char, &str, &str)> = text.lines().filter_map(parse).take(64).collect();

    // Any strings at all: no panic, no hang.
    let raw = ReleaseTree::new(lines.iter().map(|(kind, path, target)| {
        let entry = match kind {
            'l' => TreeEntry::Symlink(target),
            'd' => TreeEntry::Directory,
            _ => TreeEntry::File,
        };
        (*path, entry)
    }));
    let _ = raw.check_symlinks();

    // The same tree on disk, as a node would write it.
    let root = scratch();
    for (kind, path, target) in &lines {
        if SafeRelativePath::new(path).is_err() || target.contains('\0') {
            continue;
        }
        let at = root.join(path);
        if !creates_only_inside(&root, path) {
            continue;
        }
        if let Some(parent) = at.parent() {
            if fs::create_dir_all(parent).is_err() {
                continue;
            }
        }
        let _ = match kind {
            'd' => fs::create_dir_all(&at),
            'l' if !target.is_empty() => symlink(target, &at),
            _ => fs::write(&at, b""),
        };
    }
    let mut written = Vec::new();
    read_back(&root, &root, &mut written);
    let tree = ReleaseTree::new(written.iter().map(|(path, kind, target)| {
        let entry = match kind {
            'l' => TreeEntry::Symlink(target.as_str()),
            'd' => TreeEntry::Directory,
            _ => TreeEntry::File,
        };
        (path.as_str(), entry)
    }));
    if tree.check_symlinks().is_ok() {
        let real_root = fs::canonicalize(&root).unwrap();
        for (path, kind, target) in &written {
            if *kind != 'l' {
                continue;
            }
            if let Ok(resolved) = fs::canonicalize(root.join(path)) {
                assert!(
                    resolved.starts_with(&real_root),
                    "{path} -> {target} was accepted but resolves to {} (tree: {written:?})",
                    resolved.display()
                );
            }
        }
    }
    let _ = fs::remove_dir_all(root.parent().unwrap());
});
