//! Planning a release before writing any of it.
//!
//! Every file is hashed (in parallel) and every content checked against the
//! objects the repository already holds, before a single byte is written.
//! This split is what lets `release` answer "already published with
//! identical content" without touching the repository, report the work it is
//! about to do, and fail on an unreadable file before it has half-written a
//! release.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use manifests::manifest::ObjectRef;
use manifests::mode::Mode;
use manifests::{SafeRelativePath, Sha256Digest};
use rayon::prelude::*;

use crate::input::{InputKind, InputTree};
use crate::objects::{self, ObjectError};

/// One entry of the release, with file contents hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub path: SafeRelativePath,
    pub kind: PlannedKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedKind {
    Directory {
        mode: Mode,
    },
    File {
        mode: Mode,
        size: u64,
        sha256: Sha256Digest,
    },
    Symlink {
        target: String,
    },
}

/// One distinct content of the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedContent {
    pub size: u64,
    /// A file holding this content, to compress from if it must be stored.
    pub source: PathBuf,
    /// The repository's existing object for this content, if any.
    pub stored: Option<ObjectRef>,
}

#[derive(Debug, Clone)]
pub struct ReleasePlan {
    /// In manifest order (path bytes, parents first).
    pub entries: Vec<PlannedEntry>,
    pub contents: BTreeMap<Sha256Digest, PlannedContent>,
}

/// The objects of a release once every missing one has been stored.
#[derive(Debug, Clone)]
pub struct StoredObjects {
    pub objects: BTreeMap<Sha256Digest, ObjectRef>,
    pub new_objects: usize,
    /// Compressed bytes written for the new objects.
    pub new_bytes: u64,
    pub reused_objects: usize,
}

impl ReleasePlan {
    /// Hashes the files of `tree` and looks up their objects in the
    /// repository at `repo_root`. Runs on the current rayon pool.
    pub fn build(tree: &InputTree, repo_root: &Path) -> Result<Self, ObjectError> {
        let hashed: Vec<Option<(Sha256Digest, u64)>> = tree
            .entries
            .par_iter()
            .map(|entry| match &entry.kind {
                InputKind::File { source, .. } => objects::hash_file(source).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;

        let mut entries = Vec::with_capacity(tree.entries.len());
        let mut contents: BTreeMap<Sha256Digest, PlannedContent> = BTreeMap::new();
        for (entry, hash) in tree.entries.iter().zip(hashed) {
            let kind = match (&entry.kind, hash) {
                (InputKind::Directory { mode }, _) => PlannedKind::Directory { mode: *mode },
                (InputKind::Symlink { target }, _) => PlannedKind::Symlink {
                    target: target.clone(),
                },
                (InputKind::File { mode, source }, Some((sha256, size))) => {
                    contents.entry(sha256).or_insert_with(|| PlannedContent {
                        size,
                        source: source.clone(),
                        stored: None,
                    });
                    PlannedKind::File {
                        mode: *mode,
                        size,
                        sha256,
                    }
                }
                (InputKind::File { .. }, None) => unreachable!("every file was hashed"),
            };
            entries.push(PlannedEntry {
                path: entry.path.clone(),
                kind,
            });
        }

        let found: Vec<(Sha256Digest, Option<ObjectRef>)> = contents
            .par_iter()
            .map(|(digest, content)| {
                objects::inspect_stored(repo_root, digest, content.size).map(|o| (*digest, o))
            })
            .collect::<Result<_, _>>()?;
        for (digest, stored) in found {
            contents
                .get_mut(&digest)
                .expect("inspected contents come from the map")
                .stored = stored;
        }
        Ok(ReleasePlan { entries, contents })
    }

    /// Regular files and executables (not distinct contents).
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, PlannedKind::File { .. }))
            .count()
    }

    /// Uncompressed bytes of all files, as nodes will have them on disk.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                PlannedKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Contents with no object in the repository yet.
    pub fn missing(&self) -> impl Iterator<Item = (&Sha256Digest, &PlannedContent)> {
        self.contents.iter().filter(|(_, c)| c.stored.is_none())
    }

    /// Compresses every missing content into a new object at zstd `level`,
    /// in parallel on the current rayon pool, then syncs the objects
    /// directory so the new names are durable before any manifest names them.
    /// (`release` runs [`ReleasePlan::store_one`] from its own queue
    /// instead, beside the deltas, then [`ReleasePlan::stored`].)
    pub fn store_missing(
        &self,
        repo_root: &Path,
        level: i32,
    ) -> Result<StoredObjects, ObjectError> {
        let written: Vec<(Sha256Digest, ObjectRef)> = self
            .missing()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(digest, _)| self.store_one(repo_root, digest, level))
            .collect::<Result<_, _>>()?;
        self.stored(repo_root, written)
    }

    /// Compresses one missing content into its new object.
    pub fn store_one(
        &self,
        repo_root: &Path,
        digest: &Sha256Digest,
        level: i32,
    ) -> Result<(Sha256Digest, ObjectRef), ObjectError> {
        let content = &self.contents[digest];
        objects::store(repo_root, digest, content.size, &content.source, level)
            .map(|object| (*digest, object))
    }

    /// Every object of the release, once the missing ones (`written`) are
    /// stored; syncs the objects directory first.
    pub fn stored(
        &self,
        repo_root: &Path,
        written: Vec<(Sha256Digest, ObjectRef)>,
    ) -> Result<StoredObjects, ObjectError> {
        if !written.is_empty() {
            objects::sync_objects_dir(repo_root)?;
        }
        let new_objects = written.len();
        let new_bytes = written.iter().map(|(_, o)| o.size).sum();
        let mut objects: BTreeMap<Sha256Digest, ObjectRef> = written.into_iter().collect();
        for (digest, content) in &self.contents {
            if let Some(stored) = &content.stored {
                objects.insert(*digest, stored.clone());
            }
        }
        Ok(StoredObjects {
            reused_objects: objects.len() - new_objects,
            objects,
            new_objects,
            new_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use manifests::layout;

    use super::*;
    use crate::input;

    #[test]
    fn duplicate_content_is_one_object_and_existing_objects_are_reused() {
        let input_dir = tempfile::tempdir().unwrap();
        fs::write(input_dir.path().join("a"), "same").unwrap();
        fs::write(input_dir.path().join("b"), "same").unwrap();
        fs::write(input_dir.path().join("c"), "different").unwrap();
        let repo = tempfile::tempdir().unwrap();
        fs::create_dir(repo.path().join(layout::OBJECTS_DIR)).unwrap();

        let tree = input::walk(input_dir.path()).unwrap();
        let plan = ReleasePlan::build(&tree, repo.path()).unwrap();
        assert_eq!(
            (plan.file_count(), plan.contents.len(), plan.content_bytes()),
            (3, 2, 17)
        );
        assert_eq!(plan.missing().count(), 2);
        let first = plan.store_missing(repo.path(), 3).unwrap();
        assert_eq!((first.new_objects, first.reused_objects), (2, 0));

        let again = ReleasePlan::build(&tree, repo.path()).unwrap();
        assert_eq!(again.missing().count(), 0);
        let second = again.store_missing(repo.path(), 3).unwrap();
        assert_eq!(
            (second.new_objects, second.reused_objects, second.new_bytes),
            (0, 2, 0)
        );
        assert_eq!(second.objects, first.objects);
    }
}
