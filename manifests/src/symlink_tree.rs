//! Where a release's symlinks lead, resolved through each other.
//!
//! Checking one link's target alone is not enough: `a/s -> ..` stays
//! inside the tree when read by itself, but `leak -> a/s/../../etc/passwd`
//! walks through `s`, and the kernel applies the `..` after `s` to where
//! `s` leads, not to `a/`. So this resolves every symlink target the way
//! the kernel will on a node, over the release's own entries: component by
//! component from the link's directory, a component that is a symlink of
//! the release replaced by where it leads before the next one applies.
//! Any resolution that climbs above the release root is an escape.
//!
//! A component the release does not hold (or a regular file in the middle
//! of a path) is taken as a plain directory: on a node the kernel would
//! stop there (ENOENT, ENOTDIR), so this reading is only ever stricter.
//! Chains are bounded like the kernel's (40 links per resolution), and so
//! is the work one resolution may do, so a loop or a crafted chain is
//! refused instead of hanging the publisher or a node.

use std::collections::HashMap;

use crate::FormatError;

/// Symlinks one resolution may follow: Linux's MAXSYMLINKS.
pub const MAX_LINKS_FOLLOWED: usize = 40;

/// Path components one resolution may walk, over all the links it
/// follows: far above any real release (a target is at most 1,024 bytes),
/// low enough that no manifest makes a node spin.
const MAX_STEPS: usize = 16 * 1024;

/// What an entry of a release is, as far as resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeEntry<'a> {
    Directory,
    File,
    Symlink(&'a str),
}

/// A release's entries by path (`a/b/c`, relative to the release root).
#[derive(Debug, Default)]
pub struct ReleaseTree<'a> {
    entries: HashMap<&'a str, TreeEntry<'a>>,
}

/// Why a resolution stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It climbed above the release root, or met an absolute target.
    Escapes,
    /// It followed more than [`MAX_LINKS_FOLLOWED`] links or walked more
    /// than [`MAX_STEPS`] components: a loop, or a chain no release needs.
    TooLong,
}

/// The directory a resolution stands in, as the path below the root and
/// where each component ends in it.
#[derive(Debug, Default)]
struct Cursor {
    path: String,
    ends: Vec<usize>,
}

impl Cursor {
    fn push(&mut self, name: &str) {
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(name);
        self.ends.push(self.path.len());
    }

    /// Up one level; false at the root.
    fn pop(&mut self) -> bool {
        if self.ends.pop().is_none() {
            return false;
        }
        self.path.truncate(self.ends.last().copied().unwrap_or(0));
        true
    }
}

/// What one resolution may still spend.
struct Budget {
    links: usize,
    steps: usize,
}

impl<'a> ReleaseTree<'a> {
    pub fn new(entries: impl IntoIterator<Item = (&'a str, TreeEntry<'a>)>) -> ReleaseTree<'a> {
        ReleaseTree {
            entries: entries.into_iter().collect(),
        }
    }

    /// Refuses the first symlink (in path order) whose target, resolved
    /// through the release's other symlinks, leaves the release root, or
    /// that takes more than [`MAX_LINKS_FOLLOWED`] links to resolve.
    pub fn check_symlinks(&self) -> Result<(), FormatError> {
        let mut links: Vec<(&str, &str)> = self
            .entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                TreeEntry::Symlink(target) => Some((*path, *target)),
                _ => None,
            })
            .collect();
        links.sort_unstable();
        for (path, target) in links {
            let mut budget = Budget {
                links: MAX_LINKS_FOLLOWED,
                steps: MAX_STEPS,
            };
            // The link's own path from the root, as open(2) resolves it:
            // the link itself is the first one followed.
            match self.walk(&mut Cursor::default(), path, &mut budget) {
                Ok(()) => {}
                Err(Stop::Escapes) => {
                    return Err(FormatError::SymlinkEscapes {
                        path: path.to_string(),
                        target: target.to_string(),
                    })
                }
                Err(Stop::TooLong) => {
                    return Err(FormatError::SymlinkLoop {
                        path: path.to_string(),
                        target: target.to_string(),
                        limit: MAX_LINKS_FOLLOWED,
                    })
                }
            }
        }
        Ok(())
    }

    /// Walks `target` from `at`, following the release's symlinks as the
    /// kernel would; `at` ends where it leads.
    fn walk(&self, at: &mut Cursor, target: &str, budget: &mut Budget) -> Result<(), Stop> {
        if target.starts_with('/') {
            return Err(Stop::Escapes);
        }
        for part in target.split('/') {
            budget.steps = budget.steps.checked_sub(1).ok_or(Stop::TooLong)?;
            match part {
                "" | "." => {}
                ".." => {
                    if !at.pop() {
                        return Err(Stop::Escapes);
                    }
                }
                name => {
                    at.push(name);
                    if let Some(TreeEntry::Symlink(next)) = self.entries.get(at.path.as_str()) {
                        budget.links = budget.links.checked_sub(1).ok_or(Stop::TooLong)?;
                        // A link's target is read from the link's directory.
                        at.pop();
                        self.walk(at, next, budget)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[(&str, TreeEntry<'_>)]) -> Result<(), FormatError> {
        ReleaseTree::new(entries.iter().copied()).check_symlinks()
    }

    fn dirs(path: &str) -> Vec<(&str, TreeEntry<'_>)> {
        let mut out = Vec::new();
        let mut end = 0;
        for part in path.split('/') {
            end += part.len();
            out.push((&path[..end], TreeEntry::Directory));
            end += 1;
        }
        out
    }

    #[test]
    fn the_reviewed_chain_is_refused() {
        // a/b/c/d/e/f/s -> the release root, leak -> through it to /etc.
        let mut tree = dirs("a/b/c/d/e/f");
        tree.push(("a/b/c/d/e/f/s", TreeEntry::Symlink("../../../../../..")));
        check(&tree).unwrap();
        tree.push((
            "leak",
            TreeEntry::Symlink("a/b/c/d/e/f/s/../../../../../../../etc/passwd"),
        ));
        let err = check(&tree).unwrap_err();
        assert!(
            matches!(&err, FormatError::SymlinkEscapes { path, .. } if path == "leak"),
            "{err}"
        );
        // A link to the root through it, then one more level: `rootdir`.
        let mut tree = dirs("a/b/c/d/e/f");
        tree.push(("a/b/c/d/e/f/s", TreeEntry::Symlink("../../../../../..")));
        tree.push(("rootdir", TreeEntry::Symlink("a/b/c/d/e/f/s/..")));
        assert!(check(&tree).is_err());
    }

    #[test]
    fn links_through_links_that_stay_inside_are_fine() {
        let mut tree = dirs("usr/lib/app");
        tree.push(("usr/lib/app/libx.so", TreeEntry::File));
        tree.push(("lib", TreeEntry::Symlink("usr/lib")));
        tree.push(("libx", TreeEntry::Symlink("lib/app/libx.so")));
        tree.push(("usr/lib/app/up", TreeEntry::Symlink("../..")));
        tree.push(("again", TreeEntry::Symlink("usr/lib/app/up/lib/app/../..")));
        check(&tree).unwrap();
        // A dangling link that stays inside lexically is harmless.
        tree.push(("dangling", TreeEntry::Symlink("missing/../usr")));
        check(&tree).unwrap();
    }

    #[test]
    fn a_link_into_a_link_that_climbs_is_resolved_from_where_it_leads() {
        // deep/x -> .. leads to the root, so `deep/x/..` is above it, where
        // a lexical reading (deep/x/.. = deep) would see `deep`.
        let mut tree = dirs("deep");
        tree.push(("deep/x", TreeEntry::Symlink("..")));
        tree.push(("up", TreeEntry::Symlink("deep/x/..")));
        check(&tree).unwrap_err();
        let mut tree = dirs("deep");
        tree.push(("deep/x", TreeEntry::Symlink("..")));
        tree.push(("up", TreeEntry::Symlink("deep/x")));
        check(&tree).unwrap();
    }

    #[test]
    fn loops_and_long_chains_are_refused() {
        let tree = [
            ("a", TreeEntry::Symlink("b")),
            ("b", TreeEntry::Symlink("a")),
        ];
        let err = check(&tree).unwrap_err();
        assert!(matches!(err, FormatError::SymlinkLoop { .. }), "{err}");
        let itself = [("me", TreeEntry::Symlink("./me"))];
        assert!(matches!(
            check(&itself).unwrap_err(),
            FormatError::SymlinkLoop { .. }
        ));
        // A chain of 40 links resolves; 41 do not.
        let names: Vec<String> = (0..=41).map(|i| format!("l{i:02}")).collect();
        let chain = |n: usize| -> Vec<(&str, TreeEntry<'_>)> {
            let mut tree: Vec<_> = (0..n)
                .map(|i| (names[i].as_str(), TreeEntry::Symlink(names[i + 1].as_str())))
                .collect();
            tree.push((names[n].as_str(), TreeEntry::File));
            tree
        };
        check(&chain(MAX_LINKS_FOLLOWED)).unwrap();
        assert!(check(&chain(MAX_LINKS_FOLLOWED + 1)).is_err());
    }

    #[test]
    fn absolute_targets_escape_wherever_they_are_met() {
        let mut tree = dirs("a");
        tree.push(("a/abs", TreeEntry::Symlink("/etc")));
        assert!(check(&tree).is_err());
    }

    #[test]
    fn a_file_or_missing_component_is_read_as_a_directory() {
        // `f/../..` never climbs on a node (ENOTDIR at `f`), and the
        // stricter reading still refuses it.
        let tree = [("f", TreeEntry::File), ("x", TreeEntry::Symlink("f/../.."))];
        assert!(check(&tree).is_err());
    }
}
