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
//! refused instead of hanging the publisher or a node. Where each link
//! leads is remembered once resolved, so a manifest of many links through
//! the same long chain costs each link's target once, not the chain once
//! per link.

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
    fn at(path: &str) -> Cursor {
        let mut cursor = Cursor::default();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cursor.push(part);
        }
        cursor
    }

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

/// Where each link resolved so far leads, and how many links its
/// resolution followed (itself included), so that jumping to the end
/// charges the same link budget as walking there would.
type Resolved = HashMap<String, (String, usize)>;

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
        self.check_counting_steps().map(|_| ())
    }

    /// [`Self::check_symlinks`], returning the path components walked in
    /// all (what the memory of resolved links keeps small).
    fn check_counting_steps(&self) -> Result<usize, FormatError> {
        let mut walked = 0;
        let mut links: Vec<(&str, &str)> = self
            .entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                TreeEntry::Symlink(target) => Some((*path, *target)),
                _ => None,
            })
            .collect();
        links.sort_unstable();
        let mut resolved = Resolved::new();
        for (path, target) in links {
            let mut budget = Budget {
                links: MAX_LINKS_FOLLOWED,
                steps: MAX_STEPS,
            };
            // The link's own path from the root, as open(2) resolves it:
            // the link itself is the first one followed.
            let outcome = self.walk(&mut Cursor::default(), path, &mut budget, &mut resolved);
            walked += MAX_STEPS - budget.steps;
            match outcome {
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
        Ok(walked)
    }

    /// Walks `target` from `at`, following the release's symlinks as the
    /// kernel would; `at` ends where it leads.
    fn walk(
        &self,
        at: &mut Cursor,
        target: &str,
        budget: &mut Budget,
        resolved: &mut Resolved,
    ) -> Result<(), Stop> {
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
                        if let Some((end, links)) = resolved.get(at.path.as_str()) {
                            budget.links = budget.links.checked_sub(*links).ok_or(Stop::TooLong)?;
                            *at = Cursor::at(end);
                            continue;
                        }
                        let link = at.path.clone();
                        let before = budget.links;
                        budget.links = budget.links.checked_sub(1).ok_or(Stop::TooLong)?;
                        // A link's target is read from the link's directory.
                        at.pop();
                        self.walk(at, next, budget, resolved)?;
                        resolved.insert(link, (at.path.clone(), before - budget.links));
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

    #[test]
    fn many_links_through_one_long_chain_cost_each_link_once() {
        // 39 links chained, each target long, and 20,000 links into the end
        // of the chain: without memory each would walk the whole chain
        // again (20,000 × 39 links); with it, each costs its own target.
        let names: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
        let padding = "./".repeat(200);
        let targets: Vec<String> = (0..39)
            .map(|i| format!("{padding}{}", names[i + 1]))
            .collect();
        let mut tree: Vec<(&str, TreeEntry<'_>)> = (0..39)
            .map(|i| (names[i].as_str(), TreeEntry::Symlink(targets[i].as_str())))
            .collect();
        tree.push((names[39].as_str(), TreeEntry::Directory));
        let users: Vec<String> = (0..20_000).map(|i| format!("u{i:05}")).collect();
        tree.extend(
            users
                .iter()
                .map(|u| (u.as_str(), TreeEntry::Symlink("c00"))),
        );
        let tree = ReleaseTree::new(tree);
        let walked = tree.check_counting_steps().unwrap();
        // Each link: its own path and a jump; the chain's targets once
        // (39 × 201). Without the memory: 20,000 × 7,839 steps.
        let chain_once = 39 * 201;
        assert!(
            walked <= chain_once + 2 * (20_000 + 39),
            "walked {walked} steps"
        );
        // The budget is still charged in full through remembered links: one
        // more link in front of the 40-link chain is refused.
        let mut over: Vec<(&str, TreeEntry<'_>)> = (0..39)
            .map(|i| (names[i].as_str(), TreeEntry::Symlink(targets[i].as_str())))
            .collect();
        over.push((names[39].as_str(), TreeEntry::Directory));
        over.push(("zz1", TreeEntry::Symlink("c00")));
        ReleaseTree::new(over.iter().copied())
            .check_symlinks()
            .unwrap();
        over.push(("zz2", TreeEntry::Symlink("zz1")));
        let err = ReleaseTree::new(over).check_symlinks().unwrap_err();
        assert!(
            matches!(&err, FormatError::SymlinkLoop { path, .. } if path == "zz2"),
            "{err}"
        );
    }
}
