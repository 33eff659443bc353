//! Paths that come out of a manifest and end up on a node's disk.
//!
//! A signed manifest is still input: a compromised or buggy publisher must not
//! be able to make a node write outside its release directory. Every path is
//! therefore a [`SafeRelativePath`] — checked once, at parse time — and never a
//! bare string. Symlink targets are checked against the tree they live in.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FormatError;

/// Longest path ferry accepts (Linux PATH_MAX is 4096 including the root).
const MAX_PATH_LEN: usize = 1024;
/// Longest single component (NAME_MAX on Linux filesystems).
const MAX_COMPONENT_LEN: usize = 255;

/// A relative path of one or more normal components joined by `/`: not
/// absolute, no `.` or `..`, no empty component, no NUL, no backslash, within
/// Linux's length limits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeRelativePath(String);

impl SafeRelativePath {
    pub fn new(path: &str) -> Result<Self, FormatError> {
        let bad = |reason| FormatError::UnsafePath {
            path: path.chars().take(200).collect(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("the path is empty"));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(bad("the path is longer than 1024 bytes"));
        }
        if path.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if path.contains('\0') {
            return Err(bad("the path contains a NUL byte"));
        }
        if path.contains('\\') {
            // Not a separator on Linux, but a path that means one thing here and
            // another on a mirror or in a tar tool is an invitation to confusion.
            return Err(bad("backslashes are not allowed"));
        }
        for component in path.split('/') {
            match component {
                "" => {
                    return Err(bad(
                        "the path has an empty component (`//` or a trailing `/`)",
                    ))
                }
                "." => return Err(bad("`.` components are not allowed")),
                ".." => return Err(bad("`..` components are not allowed")),
                c if c.len() > MAX_COMPONENT_LEN => {
                    return Err(bad("a component is longer than 255 bytes"))
                }
                _ => {}
            }
        }
        Ok(SafeRelativePath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `root`. Safe by construction: no component can climb.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The parent directory's path, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<SafeRelativePath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| SafeRelativePath(parent.to_string()))
    }

    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }
}

impl fmt::Display for SafeRelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafeRelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for SafeRelativePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SafeRelativePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SafeRelativePath::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks that a symlink at `link` with target `target` resolves inside the
/// release tree, judged lexically (the tree is written by ferry from the same
/// manifest, so the lexical answer is the real one as long as every symlink
/// is checked this way — which is why intermediate symlinks cannot be used to
/// climb: each of them is itself confined).
pub fn check_symlink_target(link: &SafeRelativePath, target: &str) -> Result<(), FormatError> {
    let escapes = || FormatError::SymlinkEscapes {
        path: link.to_string(),
        target: target.to_string(),
    };
    if target.is_empty() || target.contains('\0') || target.len() > MAX_PATH_LEN {
        return Err(FormatError::UnsafePath {
            path: link.to_string(),
            reason: "the symlink target is empty, too long or contains a NUL byte",
        });
    }
    if target.starts_with('/') {
        return Err(escapes());
    }
    // Start from the link's directory and walk the target's components.
    let mut depth: usize = link.depth() - 1;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or_else(escapes)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_accepted() {
        for p in [
            "a",
            "bin/app",
            "share/doc/README.md",
            ".hidden",
            "a..b",
            "...x",
        ] {
            assert_eq!(SafeRelativePath::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\..\\b",
        ] {
            assert!(SafeRelativePath::new(p).is_err(), "{p:?} must be refused");
        }
        assert!(SafeRelativePath::new(&"a".repeat(256)).is_err());
        assert!(SafeRelativePath::new(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn symlinks_stay_inside_the_tree() {
        let link = SafeRelativePath::new("bin/tool").unwrap();
        for ok in ["app", "../lib/libx.so", "./app", "../bin/../lib"] {
            check_symlink_target(&link, ok).unwrap();
        }
        for bad in [
            "/usr/bin/env",
            "../../etc/passwd",
            "../..",
            "../lib/../../x",
            "",
        ] {
            assert!(
                check_symlink_target(&link, bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        let top = SafeRelativePath::new("link").unwrap();
        assert!(check_symlink_target(&top, "..").is_err());
        check_symlink_target(&top, "bin/app").unwrap();
    }

    #[test]
    fn serde_rejects_unsafe_paths() {
        assert!(serde_json::from_str::<SafeRelativePath>("\"../etc\"").is_err());
        assert!(serde_json::from_str::<SafeRelativePath>("\"etc/ok\"").is_ok());
    }
}
