//! The update plan: everything an apply will do, computed before it does any
//! of it. Pure: built from a verified manifest and a list of contents the
//! node already holds, so it is cheap to test and `--dry-run` prints exactly
//! what a real run would execute.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use manifests::manifest::FileContent;
use manifests::mode::Mode;
use manifests::{Manifest, SafeRelativePath, Sha256Digest};
use semver::Version;

#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub from: Option<Version>,
    pub to: Version,
    /// Objects to download, one per distinct content, largest first.
    pub fetches: Vec<ObjectFetch>,
    /// Distinct contents the node already holds.
    pub reused_contents: usize,
    pub reused_bytes: u64,
    pub entries: usize,
    /// Uncompressed bytes of every file in the release.
    pub release_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ObjectFetch {
    pub content: FileContent,
    /// Mode of the first file using it: the stored copy gets this mode.
    pub mode: Mode,
    pub files: Vec<SafeRelativePath>,
}

impl UpdatePlan {
    /// `held` tells whether the node's store already has a content.
    pub fn compute(
        manifest: &Manifest,
        from: Option<Version>,
        held: &BTreeSet<Sha256Digest>,
    ) -> UpdatePlan {
        let mut needed: BTreeMap<Sha256Digest, ObjectFetch> = BTreeMap::new();
        let mut reused: BTreeMap<Sha256Digest, u64> = BTreeMap::new();
        for entry in &manifest.files {
            let Some(content) = entry.content() else {
                continue;
            };
            if held.contains(&content.sha256) {
                reused.insert(content.sha256, content.size);
                continue;
            }
            needed
                .entry(content.sha256)
                .or_insert_with(|| ObjectFetch {
                    content: content.clone(),
                    mode: content.mode,
                    files: Vec::new(),
                })
                .files
                .push(entry.path.clone());
        }
        let mut fetches: Vec<ObjectFetch> = needed.into_values().collect();
        fetches.sort_by(|a, b| {
            b.content
                .object
                .size
                .cmp(&a.content.object.size)
                .then(a.files.cmp(&b.files))
        });
        UpdatePlan {
            from,
            to: manifest.version.clone(),
            fetches,
            reused_contents: reused.len(),
            reused_bytes: reused.values().sum(),
            entries: manifest.files.len(),
            release_bytes: manifest.content_bytes(),
        }
    }

    /// Compressed bytes to download.
    pub fn download_bytes(&self) -> u64 {
        self.fetches.iter().map(|f| f.content.object.size).sum()
    }

    /// Uncompressed bytes the new contents add to the store.
    pub fn new_content_bytes(&self) -> u64 {
        self.fetches.iter().map(|f| f.content.size).sum()
    }

    /// Bytes needed on the state_dir filesystem at the peak of an apply: the
    /// download and its decompressed content coexist until it is admitted.
    pub fn state_bytes_needed(&self) -> u64 {
        self.download_bytes() + self.new_content_bytes()
    }
}

impl fmt::Display for UpdatePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self
            .from
            .as_ref()
            .map_or("nothing installed".to_string(), |v| v.to_string());
        writeln!(f, "plan: {from} -> {}", self.to)?;
        writeln!(
            f,
            "  release: {} entries, {} in files",
            self.entries,
            human_bytes(self.release_bytes)
        )?;
        writeln!(
            f,
            "  reuse:   {} contents already on this node ({})",
            self.reused_contents,
            human_bytes(self.reused_bytes)
        )?;
        writeln!(
            f,
            "  fetch:   {} objects, {} to download ({} uncompressed)",
            self.fetches.len(),
            human_bytes(self.download_bytes()),
            human_bytes(self.new_content_bytes())
        )?;
        for fetch in &self.fetches {
            let extra = if fetch.files.len() > 1 {
                format!(" (+{} more)", fetch.files.len() - 1)
            } else {
                String::new()
            };
            writeln!(
                f,
                "    {:>10}  {}{extra}",
                human_bytes(fetch.content.object.size),
                fetch.files[0]
            )?;
        }
        write!(
            f,
            "  disk:    {} needed in state_dir",
            human_bytes(self.state_bytes_needed())
        )
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifests::manifest::{Compression, EntryKind, ObjectRef};
    use manifests::FileEntry;

    fn file(path: &str, data: &[u8], compressed: u64) -> FileEntry {
        let sha256 = Sha256Digest::of(data);
        FileEntry {
            path: SafeRelativePath::new(path).unwrap(),
            kind: EntryKind::File(FileContent {
                mode: Mode::new(0o644).unwrap(),
                size: data.len() as u64,
                sha256,
                object: ObjectRef {
                    path: manifests::layout::object(&sha256),
                    compression: Compression::Zstd,
                    size: compressed,
                    sha256: Sha256Digest::of(b"z"),
                },
                deltas: vec![],
            }),
        }
    }

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 1, "version": "1.0.0", "channel": "stable",
            "created": "2026-01-01T00:00:00Z", "files": []
        }))
        .map(|mut m: Manifest| {
            m.files = files;
            m
        })
        .unwrap()
    }

    #[test]
    fn held_contents_are_reused_and_duplicates_fetched_once() {
        let m = manifest(vec![
            file("a", b"same", 10),
            file("b", b"same", 10),
            file("c", b"new", 7),
            file("d", b"old", 5),
        ]);
        let held = BTreeSet::from([Sha256Digest::of(b"old")]);
        let plan = UpdatePlan::compute(&m, None, &held);
        assert_eq!(plan.fetches.len(), 2);
        assert_eq!(
            plan.fetches[0].files.len(),
            2,
            "both users of one content share one fetch"
        );
        assert_eq!(plan.download_bytes(), 17);
        assert_eq!(plan.new_content_bytes(), 7);
        assert_eq!((plan.reused_contents, plan.reused_bytes), (1, 3));
        assert_eq!(plan.release_bytes, 14);
    }

    #[test]
    fn nothing_to_fetch_when_everything_is_held() {
        let m = manifest(vec![file("a", b"x", 3)]);
        let plan = UpdatePlan::compute(&m, None, &BTreeSet::from([Sha256Digest::of(b"x")]));
        assert!(plan.fetches.is_empty());
        assert_eq!(plan.state_bytes_needed(), 0);
    }
}
