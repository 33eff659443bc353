//! Making a set of paths match a desired state, one atomic rename per file.
//!
//! In-place installs cannot switch a whole tree with one rename, so they
//! converge: every file is written beside its target, fsynced, renamed over
//! it, and its directory fsynced. Converging is idempotent — entries that
//! already match are left alone — which is what lets recovery finish an
//! interrupted in-place update (or restore) by simply running it again.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifests::manifest::EntryKind;
use manifests::mode::Mode;
use manifests::{FileEntry, SafeRelativePath, Sha256Digest};
use serde::{Deserialize, Serialize};

use crate::store::ContentStore;
use crate::{durable, faults};

/// What one path should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Desired {
    /// A directory ferry manages, with this mode.
    Directory {
        mode: Mode,
    },
    /// A directory that must exist (created 0755 if missing) but whose mode
    /// belongs to the system, like `/usr/local/bin` above a target.
    DirectoryExists,
    File {
        sha256: Sha256Digest,
        size: u64,
        mode: Mode,
    },
    Symlink {
        target: String,
    },
    /// Nothing may be there (a file the new release dropped). Directories
    /// are only removed when empty: they may hold data that is not ours.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredEntry {
    pub path: SafeRelativePath,
    #[serde(flatten)]
    pub desired: Desired,
}

impl DesiredEntry {
    pub fn from_manifest(entry: &FileEntry) -> DesiredEntry {
        let desired = match &entry.kind {
            EntryKind::Directory { mode } => Desired::Directory { mode: *mode },
            EntryKind::File(c) | EntryKind::Executable(c) => Desired::File {
                sha256: c.sha256,
                size: c.size,
                mode: c.mode,
            },
            EntryKind::Symlink { target } => Desired::Symlink {
                target: target.clone(),
            },
        };
        DesiredEntry {
            path: entry.path.clone(),
            desired,
        }
    }
}

/// Marks ferry's temporaries beside targets; recovery removes them.
pub const TEMP_MARK: &str = ".ferry-tmp-";

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}{TEMP_MARK}{}", std::process::id()))
}

fn parent(dest: &Path) -> &Path {
    dest.parent().unwrap_or(Path::new("/"))
}

/// Makes `root/<path>` match `entries`. Present entries are handled in the
/// given order (parents first), then absent ones deepest first. Content
/// comes from `store`, which must hold every file's SHA-256.
pub fn converge(root: &Path, entries: &[DesiredEntry], store: &ContentStore) -> io::Result<()> {
    for entry in entries.iter().filter(|e| e.desired != Desired::Absent) {
        faults::point("converge:between-entries");
        converge_one(root, entry, store).map_err(|e| at(&entry.path.under(root), e))?;
    }
    let mut absent: Vec<&DesiredEntry> = entries
        .iter()
        .filter(|e| e.desired == Desired::Absent)
        .collect();
    absent.sort_by_key(|e| std::cmp::Reverse(e.path.depth()));
    for entry in absent {
        faults::point("converge:between-entries");
        let path = entry.path.under(root);
        remove_if_present(&path).map_err(|e| at(&path, e))?;
    }
    Ok(())
}

/// `e` naming the path it concerns (an I/O error alone says "No such file
/// or directory", not which), and for a full filesystem which one; its
/// kind is kept for the callers that look at it.
fn at(path: &Path, e: io::Error) -> io::Error {
    let text = e.to_string();
    if text.contains(&*path.to_string_lossy()) {
        return e;
    }
    let hint = crate::space::write_failure_hint(path, &e);
    io::Error::new(e.kind(), format!("{}: {text}{hint}", path.display()))
}

fn converge_one(root: &Path, entry: &DesiredEntry, store: &ContentStore) -> io::Result<()> {
    let dest = entry.path.under(root);
    let existing = match fs::symlink_metadata(&dest) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match &entry.desired {
        Desired::Directory { .. } | Desired::DirectoryExists => {
            let mode = match entry.desired {
                Desired::Directory { mode } => Some(mode),
                _ => None,
            };
            match existing {
                Some(m) if m.is_dir() => {
                    if let Some(mode) = mode.filter(|want| Mode::from_st_mode(m.mode()) != *want) {
                        fs::set_permissions(&dest, fs::Permissions::from_mode(mode.bits()))?;
                        // The mode lives in the directory's own inode: fsync
                        // it, or a crash can bring the old mode back after
                        // the update was recorded as done.
                        durable::sync_dir(&dest)?;
                    }
                    Ok(())
                }
                Some(_) => Err(io::Error::other(format!(
                    "{} should be a directory but is a file or symlink; move it away and run ferry again",
                    dest.display()
                ))),
                None => {
                    let bits = mode.map_or(0o755, Mode::bits);
                    fs::DirBuilder::new().mode(bits).create(&dest)?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(bits))?;
                    durable::sync_dir(parent(&dest))
                }
            }
        }
        Desired::File { sha256, size, mode } => {
            if let Some(m) = &existing {
                if m.is_file()
                    && m.len() == *size
                    && Mode::from_st_mode(m.mode()) == *mode
                    && Sha256Digest::of_reader(File::open(&dest)?)?.0 == *sha256
                {
                    return Ok(());
                }
                if m.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} should be a file but is a directory; move it away and run ferry again",
                        dest.display()
                    )));
                }
            }
            // In place, files keep the manifest's mode exactly (not the
            // read-only form releases get): they sit at fixed paths the
            // service or its operator may own and rewrite, and each is a
            // copy of its own, so a write cannot spread to the store or a
            // restore point.
            let tmp = temp_beside(&dest);
            let _ = fs::remove_file(&tmp);
            let mut from = File::open(store.path_of(sha256))?;
            let mut to = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(mode.bits())
                .open(&tmp)?;
            io::copy(&mut from, &mut to)?;
            to.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
            to.sync_all()?;
            replace(&tmp, &dest)
        }
        Desired::Symlink { target } => {
            if let Some(m) = &existing {
                if m.file_type().is_symlink() && fs::read_link(&dest)? == Path::new(target) {
                    return Ok(());
                }
            }
            let tmp = temp_beside(&dest);
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp)?;
            replace(&tmp, &dest)
        }
        Desired::Absent => Ok(()),
    }
}

/// rename(2) `tmp` over `dest` and make it durable.
fn replace(tmp: &Path, dest: &Path) -> io::Result<()> {
    faults::point("converge:before-rename");
    if let Err(e) = fs::rename(tmp, dest) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    faults::point("converge:after-rename");
    durable::sync_dir(parent(dest))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        match fs::remove_dir(path) {
            Ok(()) => {}
            // Not empty: it holds files that are not ours; leave it.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    } else {
        fs::remove_file(path)?;
    }
    durable::sync_dir(parent(path))
}

/// Compares `root` with `entries`; one line per difference.
pub fn check(root: &Path, entries: &[DesiredEntry], with_content: bool) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    for entry in entries {
        let dest = entry.path.under(root);
        let meta = match fs::symlink_metadata(&dest) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let path = &entry.path;
        match (&entry.desired, meta) {
            (Desired::Absent, None) => {}
            (Desired::Absent, Some(m)) if m.is_dir() => {}
            (Desired::Absent, Some(_)) => problems.push(format!("{path}: should not exist")),
            (_, None) => problems.push(format!("{path}: missing")),
            (Desired::DirectoryExists, Some(m)) if m.is_dir() => {}
            (Desired::Directory { mode }, Some(m)) if m.is_dir() => {
                let actual = Mode::from_st_mode(m.mode());
                if actual != *mode {
                    problems.push(format!("{path}: mode {actual}, expected {mode}"));
                }
            }
            (Desired::Directory { .. } | Desired::DirectoryExists, Some(_)) => {
                problems.push(format!("{path}: expected a directory"))
            }
            (Desired::Symlink { target }, Some(m)) => {
                if !m.file_type().is_symlink() || fs::read_link(&dest)? != Path::new(target) {
                    problems.push(format!("{path}: expected a symlink to {target}"));
                }
            }
            (Desired::File { sha256, size, mode }, Some(m)) => {
                if !m.is_file() {
                    problems.push(format!("{path}: expected a regular file"));
                    continue;
                }
                let actual = Mode::from_st_mode(m.mode());
                // The read-only form is how releases install their files.
                if !crate::sharing::mode_matches(actual, *mode) {
                    problems.push(format!("{path}: mode {actual}, expected {mode}"));
                }
                if m.len() != *size {
                    problems.push(format!("{path}: {} bytes, expected {size}", m.len()));
                } else if with_content {
                    let (digest, _) = Sha256Digest::of_reader(File::open(&dest)?)?;
                    if digest != *sha256 {
                        problems.push(format!(
                            "{path}: content differs (SHA-256 {digest}, expected {sha256})"
                        ));
                    }
                }
            }
        }
    }
    Ok(problems)
}

/// Removes ferry's temporaries beside the given entries (after a crash).
pub fn remove_temporaries(root: &Path, entries: &[DesiredEntry]) -> io::Result<()> {
    let mut dirs: Vec<PathBuf> = entries
        .iter()
        .map(|e| parent(&e.path.under(root)).to_path_buf())
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for item in listing {
            let item = item?;
            if item.file_name().to_string_lossy().contains(TEMP_MARK) {
                fs::remove_file(item.path())?;
            }
        }
    }
    Ok(())
}
