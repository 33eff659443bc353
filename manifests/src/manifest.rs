//! `manifests/<version>.json`: one release, file by file.
//!
//! The manifest pins every file's content by SHA-256 and names the object
//! that carries it, and lists the data migrations the release ships
//! ([`crate::migration`]) and what a node must have to install it
//! ([`crate::requirement`]), and when which part of a pull-mode fleet may
//! install it ([`crate::wave`]). Hooks, which later work will fill, are
//! typed here already and empty in format 1 publications, so that adding
//! them does not change what existing fields mean. A node that meets a
//! non-empty section it cannot honour refuses the release rather than
//! install it half-understood.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

pub use crate::migration::Migration;
use crate::mode::Mode;
use crate::safe_path::{check_symlink_target, SafeRelativePath};
use crate::symlink_tree::{ReleaseTree, TreeEntry};
use crate::{index::validate_channel_name, layout, FormatError, Sha256Digest, FORMAT_VERSION};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: Version,
    pub channel: String,
    pub created: Timestamp,
    #[serde(default)]
    pub notes: String,
    /// A security or data-loss fix: later policy may let it bypass windows.
    #[serde(default)]
    pub critical: bool,
    /// Nodes on an older version must first update to at least this one.
    #[serde(default)]
    pub min_upgrade_from: Option<Version>,
    /// Every entry of the release tree, sorted by path, parents before children.
    pub files: Vec<FileEntry>,
    /// Data migrations shipped with the release, in ascending id order
    /// (see [`crate::migration`]).
    #[serde(default)]
    pub migrations: Vec<Migration>,
    /// Reserved: lifecycle hooks declared by the release (empty in format 1).
    #[serde(default)]
    pub hooks: Hooks,
    /// What a node must have (kernel, glibc, command versions) before it
    /// installs this release; see [`crate::requirement`].
    #[serde(default)]
    pub requirements: Vec<Requirement>,
    /// Staged rollout for pull-mode fleets, in order; empty: every node
    /// may install at once. See [`crate::wave`].
    #[serde(default)]
    pub waves: Vec<Wave>,
    /// Bytes a node on each earlier version downloads, thanks to deltas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delta_report: Vec<DeltaReport>,
}

/// One entry of the release tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: SafeRelativePath,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Directory {
        mode: Mode,
    },
    File(FileContent),
    /// A regular file with at least one execute bit.
    Executable(FileContent),
    /// A symlink whose target stays inside the release tree, read alone
    /// and through the release's other symlinks ([`crate::symlink_tree`]).
    Symlink {
        target: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub mode: Mode,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub object: ObjectRef,
    /// Reserved: binary deltas that rebuild this content from older content.
    #[serde(default)]
    pub deltas: Vec<DeltaRef>,
}

/// The stored, compressed form of a file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Always `objects/<sha256 of the uncompressed content>`.
    pub path: String,
    pub compression: Compression,
    /// Size of the stored (compressed) bytes: the cap on what a node reads.
    pub size: u64,
    /// SHA-256 of the stored bytes, checked before decompression so that the
    /// decompressor only ever sees bytes the publisher signed for.
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
}

/// A patch that rebuilds this file's content from older content a node may
/// hold (`base_sha256`). Stored once per (base, target) pair at
/// `deltas/<base sha256>-<target sha256>` ([`crate::layout::delta`]), so one
/// patch serves every release that shipped that base. The result is always
/// checked against the file's own SHA-256; a patch that fails is replaced by
/// the full object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaRef {
    pub base_sha256: Sha256Digest,
    /// Size of the base content, so a node can bound its memory before it
    /// starts patching.
    #[serde(default)]
    pub base_size: u64,
    pub algorithm: DeltaAlgorithm,
    /// Always `deltas/<base_sha256>-<target sha256>`.
    pub path: String,
    /// Size of the stored patch: the cap on what a node reads.
    pub size: u64,
    /// SHA-256 of the stored patch, checked before it is applied.
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaAlgorithm {
    /// A bsdiff-style patch from the `bidiff` crate, compressed with zstd.
    BidiffZstd,
    /// A zstd frame compressed with the base as a raw-content prefix
    /// (zstd's `--patch-from`): `zstd -d --patch-from=BASE` decodes it.
    ZstdPatchFrom,
    /// A bsdiff-style patch from the `bidiff` crate with its control, add
    /// and copy streams in three zstd frames, the copy frame compressed
    /// against the base (docs/FORMAT.md, "Deltas").
    BidiffSplitZstd,
}

/// What a node already on `from_version` downloads for this release:
/// deltas where it holds the base, full objects for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaReport {
    pub from_version: Version,
    pub download_bytes: u64,
    /// Compressed bytes of every object: what a node without any base downloads.
    pub full_bytes: u64,
}

/// Reserved for lifecycle hooks declared by a release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_apply: Option<SafeRelativePath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_apply: Option<SafeRelativePath>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre_apply.is_none() && self.post_apply.is_none()
    }
}

pub use crate::requirement::Requirement;

pub use crate::wave::Wave;

impl FileEntry {
    /// The content of a regular file or executable.
    pub fn content(&self) -> Option<&FileContent> {
        match &self.kind {
            EntryKind::File(c) | EntryKind::Executable(c) => Some(c),
            _ => None,
        }
    }
}

impl Manifest {
    /// Every check that does not need the network: format, channel, paths,
    /// symlink targets, modes against kinds, object names, uniqueness and
    /// order, migrations (ids, order, scripts in the release), requirements
    /// and waves (see [`crate::wave::validate`]). A
    /// manifest failing any of them is rejected whole, before a node writes
    /// anything.
    pub fn validate(&self) -> Result<(), FormatError> {
        let what = format!("manifest of {}", self.version);
        let inconsistent = |reason: String| FormatError::Inconsistent {
            what: what.clone(),
            reason,
        };
        if self.format != FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormat {
                what: "release manifest",
                found: self.format,
                expected: FORMAT_VERSION,
            });
        }
        validate_channel_name(&self.channel)?;
        let mut seen: BTreeSet<&SafeRelativePath> = BTreeSet::new();
        let mut directories: BTreeSet<&SafeRelativePath> = BTreeSet::new();
        let mut previous: Option<&SafeRelativePath> = None;
        for entry in &self.files {
            let path = &entry.path;
            if previous.is_some_and(|p| p >= path) {
                return Err(inconsistent(format!(
                    "entries are not sorted by path at {path}"
                )));
            }
            previous = Some(path);
            if !seen.insert(path) {
                return Err(inconsistent(format!("{path} appears twice")));
            }
            if let Some(parent) = path.parent() {
                if !directories.contains(&parent) {
                    return Err(inconsistent(format!(
                        "{path} is listed before (or without) its directory {parent}"
                    )));
                }
            }
            match &entry.kind {
                EntryKind::Directory { .. } => {
                    directories.insert(path);
                }
                EntryKind::Symlink { target } => check_symlink_target(path, target)?,
                EntryKind::File(c) | EntryKind::Executable(c) => {
                    let executable = matches!(entry.kind, EntryKind::Executable(_));
                    if c.mode.is_executable() != executable {
                        return Err(inconsistent(format!(
                            "{path} has mode {} but kind {}",
                            c.mode,
                            if executable { "executable" } else { "file" }
                        )));
                    }
                    for delta in &c.deltas {
                        if delta.path != layout::delta(&delta.base_sha256, &c.sha256) {
                            return Err(inconsistent(format!(
                                "{path} names delta {:?}, expected {:?}",
                                delta.path,
                                layout::delta(&delta.base_sha256, &c.sha256)
                            )));
                        }
                    }
                    if c.object.path != layout::object(&c.sha256) {
                        return Err(inconsistent(format!(
                            "{path} names object {:?}, expected {:?}",
                            c.object.path,
                            layout::object(&c.sha256)
                        )));
                    }
                }
            }
        }
        // Each target alone stays inside (checked above); through each
        // other they must too.
        self.tree().check_symlinks()?;
        if !self.migrations.is_empty() {
            let kinds: BTreeMap<&SafeRelativePath, &EntryKind> =
                self.files.iter().map(|f| (&f.path, &f.kind)).collect();
            crate::migration::validate_all(&self.migrations, &kinds).map_err(inconsistent)?;
        }
        crate::requirement::validate(&self.requirements).map_err(inconsistent)?;
        crate::wave::validate(&self.waves).map_err(|e| inconsistent(format!("waves: {e}")))?;
        Ok(())
    }

    /// The release's entries, for resolving its symlinks through each other.
    pub fn tree(&self) -> ReleaseTree<'_> {
        ReleaseTree::new(self.files.iter().map(|f| {
            let entry = match &f.kind {
                EntryKind::Directory { .. } => TreeEntry::Directory,
                EntryKind::File(_) | EntryKind::Executable(_) => TreeEntry::File,
                EntryKind::Symlink { target } => TreeEntry::Symlink(target),
            };
            (f.path.as_str(), entry)
        }))
    }

    /// The migration with this id, if the release ships it.
    pub fn migration(&self, id: &str) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.id == id)
    }

    /// Sum of the uncompressed sizes of all regular files.
    pub fn content_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| f.content())
            .map(|c| c.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal signed-manifest JSON with `waves` as given.
    fn with_waves(waves: &str) -> Manifest {
        serde_json::from_str(&format!(
            r#"{{"format": 1, "version": "2.0.0", "channel": "stable",
                "created": "2030-06-03T00:00:00Z", "files": [], "waves": {waves}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_manifest_carries_its_waves_and_validates_them() {
        let m = with_waves(
            r#"[{"percent": 50, "after_seconds": 3600}, {"percent": 100, "after_seconds": 7200}]"#,
        );
        assert_eq!(
            m.waves,
            [
                Wave {
                    percent: 50,
                    after_seconds: 3600
                },
                Wave {
                    percent: 100,
                    after_seconds: 7200
                }
            ]
        );
        m.validate().unwrap();
        with_waves("[]").validate().unwrap();
        // Written by an older publisher: no key at all means no waves.
        let old: Manifest = serde_json::from_str(
            r#"{"format": 1, "version": "1.0.0", "channel": "stable",
                "created": "2030-06-03T00:00:00Z", "files": []}"#,
        )
        .unwrap();
        assert!(old.waves.is_empty());
    }

    #[test]
    fn a_manifest_with_a_bad_schedule_is_refused_whole() {
        for (waves, expected) in [
            (
                r#"[{"percent": 50, "after_seconds": 3600}]"#,
                "waves: the last wave reaches 50%, not 100%",
            ),
            (
                r#"[{"percent": 50, "after_seconds": 7200}, {"percent": 100, "after_seconds": 3600}]"#,
                "waves: wave 2 opens after 1h, before wave 1",
            ),
            (
                r#"[{"percent": 0, "after_seconds": 0}, {"percent": 100, "after_seconds": 0}]"#,
                "waves: wave 1 has percent 0",
            ),
        ] {
            let err = with_waves(waves).validate().expect_err(waves).to_string();
            assert!(
                err.contains("manifest of 2.0.0") && err.contains(expected),
                "{waves}: {err}"
            );
        }
        // A percent beyond a byte does not even parse.
        assert!(serde_json::from_str::<Manifest>(
            r#"{"format": 1, "version": "2.0.0", "channel": "stable",
                "created": "2030-06-03T00:00:00Z", "files": [],
                "waves": [{"percent": 300, "after_seconds": 0}]}"#
        )
        .is_err());
    }
}
