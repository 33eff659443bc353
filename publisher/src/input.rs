//! Walking INPUT_DIR into the entries of a release.
//!
//! Everything a node will later write comes from here, so the rules nodes
//! enforce are enforced here first, with a message naming the file: a
//! publisher that refuses a bad tree early is kinder than a fleet of nodes
//! refusing a signed release. Symlinks are recorded, never followed (a
//! followed link would publish whatever it points at, possibly outside the
//! tree), and must point inside the tree. Only directories, regular files and
//! symlinks exist in a release; fifos, sockets and devices are refused.

use std::fs::{self, FileType};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use manifests::mode::Mode;
use manifests::safe_path::check_symlink_target;
use manifests::symlink_tree::{ReleaseTree, TreeEntry};
use manifests::{FormatError, SafeRelativePath};
use thiserror::Error;
use walkdir::WalkDir;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("input directory {}: {error}", path.display())]
    Root { path: PathBuf, error: io::Error },

    #[error("input {} is not a directory: give the directory whose contents are the release", path.display())]
    NotADirectory { path: PathBuf },

    #[error("input directory {} is empty: there is nothing to publish", path.display())]
    Empty { path: PathBuf },

    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },

    #[error("{}: the name is not valid UTF-8; rename it (manifests are JSON text)", path.display())]
    NotUtf8 { path: PathBuf },

    #[error(
        "{} is a {kind}; a release holds only directories, regular files and symlinks: \
         remove it from the input directory",
        path.display()
    )]
    Unsupported { path: PathBuf, kind: &'static str },

    #[error("{}: {error}; fix or remove it in the input directory", path.display())]
    Unsafe { path: PathBuf, error: FormatError },
}

/// One entry of the release tree as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEntry {
    pub path: SafeRelativePath,
    pub kind: InputKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    Directory {
        mode: Mode,
    },
    /// A regular file; it is an executable when `mode` has an execute bit.
    File {
        mode: Mode,
        source: PathBuf,
    },
    Symlink {
        target: String,
    },
}

/// The walked tree: entries sorted by path bytes, so parents come before
/// children (a parent's path is a prefix of its children's) as manifests
/// require.
#[derive(Debug, Clone)]
pub struct InputTree {
    pub root: PathBuf,
    pub entries: Vec<InputEntry>,
}

impl InputTree {
    pub fn files(&self) -> impl Iterator<Item = (&SafeRelativePath, Mode, &Path)> {
        self.entries.iter().filter_map(|e| match &e.kind {
            InputKind::File { mode, source } => Some((&e.path, *mode, source.as_path())),
            _ => None,
        })
    }
}

/// Walks `root` (itself excluded: it becomes the release directory on nodes).
pub fn walk(root: &Path) -> Result<InputTree, InputError> {
    let meta = fs::metadata(root).map_err(|error| InputError::Root {
        path: root.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(InputError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut entries = Vec::new();
    for item in WalkDir::new(root).min_depth(1).follow_links(false) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            let error = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("filesystem loop"));
            InputError::Read { path, error }
        })?;
        entries.push(entry(root, item.path(), item.file_type())?);
    }
    if entries.is_empty() {
        return Err(InputError::Empty {
            path: root.to_path_buf(),
        });
    }
    // walkdir orders siblings, not whole paths ("a/b" would come before
    // "a-b"); manifests want plain byte order of the full path.
    entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
    // Refused here, naming the input file, before anything is stored: a
    // symlink that escapes only through another one.
    let tree = ReleaseTree::new(entries.iter().map(|e| {
        let kind = match &e.kind {
            InputKind::Directory { .. } => TreeEntry::Directory,
            InputKind::File { .. } => TreeEntry::File,
            InputKind::Symlink { target } => TreeEntry::Symlink(target.as_str()),
        };
        (e.path.as_str(), kind)
    }));
    if let Err(error) = tree.check_symlinks() {
        let path = match &error {
            FormatError::SymlinkEscapes { path, .. } | FormatError::SymlinkLoop { path, .. } => {
                root.join(path)
            }
            _ => root.to_path_buf(),
        };
        return Err(InputError::Unsafe { path, error });
    }
    Ok(InputTree {
        root: root.to_path_buf(),
        entries,
    })
}

fn entry(root: &Path, full: &Path, file_type: FileType) -> Result<InputEntry, InputError> {
    let relative = full
        .strip_prefix(root)
        .expect("walkdir yields paths below its root");
    let text = relative.to_str().ok_or_else(|| InputError::NotUtf8 {
        path: full.to_path_buf(),
    })?;
    let unsafe_path = |error| InputError::Unsafe {
        path: full.to_path_buf(),
        error,
    };
    let path = SafeRelativePath::new(text).map_err(unsafe_path)?;
    let read_error = |error| InputError::Read {
        path: full.to_path_buf(),
        error,
    };
    let kind = if file_type.is_symlink() {
        let target = fs::read_link(full).map_err(read_error)?;
        let target = target
            .to_str()
            .ok_or_else(|| InputError::NotUtf8 {
                path: full.to_path_buf(),
            })?
            .to_string();
        check_symlink_target(&path, &target).map_err(unsafe_path)?;
        InputKind::Symlink { target }
    } else if file_type.is_dir() || file_type.is_file() {
        // lstat: the entry is not a symlink, so this is its own metadata.
        let mode = Mode::from_st_mode(fs::symlink_metadata(full).map_err(read_error)?.mode());
        if file_type.is_dir() {
            InputKind::Directory { mode }
        } else {
            InputKind::File {
                mode,
                source: full.to_path_buf(),
            }
        }
    } else {
        return Err(InputError::Unsupported {
            path: full.to_path_buf(),
            kind: describe(file_type),
        });
    };
    Ok(InputEntry { path, kind })
}

fn describe(file_type: FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo (named pipe)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn kinds_modes_and_order_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a-b"), "x").unwrap();
        fs::write(root.join("a/b/tool"), "#!/bin/sh\n").unwrap();
        fs::write(root.join("a/secret"), "s").unwrap();
        symlink("b/tool", root.join("a/link")).unwrap();
        set_mode(&root.join("a/b/tool"), 0o750);
        set_mode(&root.join("a/secret"), 0o600);
        set_mode(&root.join("a-b"), 0o644);
        set_mode(&root.join("a/b"), 0o710);

        let tree = walk(root).unwrap();
        let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a-b", "a/b", "a/b/tool", "a/link", "a/secret"]);
        let kind = |p: &str| {
            tree.entries
                .iter()
                .find(|e| e.path.as_str() == p)
                .unwrap()
                .kind
                .clone()
        };
        assert_eq!(
            kind("a/b"),
            InputKind::Directory {
                mode: Mode::new(0o710).unwrap()
            }
        );
        assert_eq!(
            kind("a/b/tool"),
            InputKind::File {
                mode: Mode::new(0o750).unwrap(),
                source: root.join("a/b/tool")
            }
        );
        assert_eq!(
            kind("a/secret"),
            InputKind::File {
                mode: Mode::new(0o600).unwrap(),
                source: root.join("a/secret")
            }
        );
        assert_eq!(
            kind("a/link"),
            InputKind::Symlink {
                target: "b/tool".into()
            }
        );
        assert_eq!(tree.files().count(), 3);
    }

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        for target in ["/etc/passwd", "../outside", "a/../../x"] {
            let dir = tempfile::tempdir().unwrap();
            symlink(target, dir.path().join("link")).unwrap();
            let err = walk(dir.path()).unwrap_err();
            assert!(matches!(err, InputError::Unsafe { .. }), "{target}: {err}");
            assert!(err.to_string().contains("link"), "names the file: {err}");
        }
    }

    #[test]
    fn symlinked_directories_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        // Points at the tree itself, lexically fine, and would loop if followed.
        symlink("..", dir.path().join("sub/up")).unwrap();
        let tree = walk(dir.path()).unwrap();
        let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["sub", "sub/up"]);
    }

    #[test]
    fn fifos_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ok"), "x").unwrap();
        let fifo = dir.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = walk(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::Unsupported {
                    kind: "fifo (named pipe)",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("pipe"), "{err}");
    }

    #[test]
    fn empty_and_missing_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(walk(dir.path()), Err(InputError::Empty { .. })));
        assert!(matches!(
            walk(&dir.path().join("nope")),
            Err(InputError::Root { .. })
        ));
        fs::write(dir.path().join("f"), "x").unwrap();
        assert!(matches!(
            walk(&dir.path().join("f")),
            Err(InputError::NotADirectory { .. })
        ));
    }
}
