//! The update plan: everything an apply will do, computed before it does any
//! of it. Pure: built from a verified manifest, the contents the node
//! already holds and the delta bases it can read, so it is cheap to test and
//! `--dry-run` prints exactly what a real run would execute.
//!
//! Per content to fetch the plan chooses its source: the smallest signed
//! delta whose base the node holds (verified while locating bases, see
//! [`crate::bases`]), as long as it is smaller than the full object;
//! otherwise the full object. A delta that fails when it is applied falls
//! back to the full object ([`crate::patching`]), so the plan also knows the
//! worst case, which is what the disk-space check budgets for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use manifests::manifest::{DeltaRef, FileContent};
use manifests::mode::Mode;
use manifests::{Manifest, SafeRelativePath, Sha256Digest};
use semver::Version;

#[derive(Debug, Clone)]
pub struct UpdatePlan {
    pub from: Option<Version>,
    pub to: Version,
    /// Contents to download, one per distinct content, largest object first.
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
    pub source: Source,
}

/// How one content reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Download the compressed object.
    Full,
    /// Download a patch and apply it to a base the node holds; the full
    /// object is the fallback.
    Delta { delta: DeltaRef, base: HeldBase },
}

/// Where a delta's base content can be read, found (and its SHA-256
/// checked) while locating bases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseLocation {
    /// The content store's copy, named by the base's digest.
    Store,
    /// Another copy on this node: a file of an in-place tree, of a release
    /// directory, or of a restore point, whose content had the base's
    /// digest when it was hashed.
    File(PathBuf),
}

/// A delta base this node can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBase {
    pub location: BaseLocation,
    /// Where the content comes from, for people: "1.0.0 bin/app".
    pub described: String,
}

/// The delta bases a node can read, by content digest.
pub type HeldBases = BTreeMap<Sha256Digest, HeldBase>;

impl ObjectFetch {
    /// Bytes this fetch downloads as planned.
    pub fn planned_bytes(&self) -> u64 {
        match &self.source {
            Source::Full => self.content.object.size,
            Source::Delta { delta, .. } => delta.size,
        }
    }

    pub fn delta(&self) -> Option<&DeltaRef> {
        match &self.source {
            Source::Full => None,
            Source::Delta { delta, .. } => Some(delta),
        }
    }
}

/// The delta to use for `content` given the bases the node holds: the
/// smallest usable one, if it is smaller than the full object (a signed
/// manifest should never list a larger one, but fetching more to save
/// nothing would be absurd either way).
pub fn choose_source(content: &FileContent, bases: &HeldBases) -> Source {
    content
        .deltas
        .iter()
        .filter(|d| d.base_sha256 != content.sha256 && d.size < content.object.size)
        .filter_map(|d| bases.get(&d.base_sha256).map(|base| (d, base)))
        // Ties go to the lower base digest: the manifest's order, stable.
        .min_by_key(|(d, _)| (d.size, d.base_sha256))
        .map_or(Source::Full, |(delta, base)| Source::Delta {
            delta: delta.clone(),
            base: base.clone(),
        })
}

impl UpdatePlan {
    /// `held` tells whether the node's store already has a content; `bases`
    /// which delta bases it can read.
    pub fn compute(
        manifest: &Manifest,
        from: Option<Version>,
        held: &BTreeSet<Sha256Digest>,
        bases: &HeldBases,
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
                    source: choose_source(content, bases),
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

    /// Bytes to download as planned: patches where a delta is used, full
    /// objects for the rest.
    pub fn download_bytes(&self) -> u64 {
        self.fetches.iter().map(ObjectFetch::planned_bytes).sum()
    }

    /// Bytes the same contents would cost as full objects only.
    pub fn full_download_bytes(&self) -> u64 {
        self.fetches.iter().map(|f| f.content.object.size).sum()
    }

    /// Contents planned as deltas.
    pub fn delta_count(&self) -> usize {
        self.fetches.iter().filter(|f| f.delta().is_some()).count()
    }

    /// Uncompressed bytes the new contents add to the store.
    pub fn new_content_bytes(&self) -> u64 {
        self.fetches.iter().map(|f| f.content.size).sum()
    }

    /// Bytes needed on the state_dir filesystem at the peak of an apply: the
    /// downloads and the contents they make coexist until each is admitted.
    ///
    /// Budgeted for the worst case, every delta failing: a patch that
    /// failed to apply is deleted before its full object is fetched, but
    /// one whose download ran out of retries is kept (for the next run to
    /// resume) while the object downloads, so a delta's share is its patch
    /// plus its object. The output of a patch is the content itself
    /// (written once, renamed into the store), and a base is read where it
    /// lies, so neither adds more.
    pub fn state_bytes_needed(&self) -> u64 {
        let worst_downloads: u64 = self
            .fetches
            .iter()
            .map(|f| match f.delta() {
                Some(delta) => delta.size.saturating_add(f.content.object.size),
                None => f.content.object.size,
            })
            .sum();
        worst_downloads + self.new_content_bytes()
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
        let (planned, full) = (self.download_bytes(), self.full_download_bytes());
        writeln!(
            f,
            "  fetch:   {} objects, {} to download ({} without deltas, {} saved)",
            self.fetches.len(),
            human_bytes(planned),
            human_bytes(full),
            saved_percent(planned, full),
        )?;
        writeln!(
            f,
            "           {} as deltas, {} as full objects; {} uncompressed",
            self.delta_count(),
            self.fetches.len() - self.delta_count(),
            human_bytes(self.new_content_bytes())
        )?;
        for fetch in &self.fetches {
            let extra = if fetch.files.len() > 1 {
                format!(" (+{} more)", fetch.files.len() - 1)
            } else {
                String::new()
            };
            let how = match &fetch.source {
                Source::Full => "full object".to_string(),
                Source::Delta { delta, base } => format!(
                    "delta {} from {} (full object {})",
                    delta_algorithm_name(delta),
                    base.described,
                    human_bytes(fetch.content.object.size)
                ),
            };
            writeln!(
                f,
                "    {:>10}  {}{extra}  {how}",
                human_bytes(fetch.planned_bytes()),
                fetch.files[0]
            )?;
        }
        write!(
            f,
            "  disk:    {} needed in state_dir (enough for every delta to fall back to its full object)",
            human_bytes(self.state_bytes_needed())
        )
    }
}

/// The algorithm's name as the manifest spells it (serde's own spelling,
/// so a variant added later prints correctly too).
pub fn delta_algorithm_name(delta: &DeltaRef) -> String {
    serde_json::to_value(delta.algorithm)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{:?}", delta.algorithm))
}

/// "41.2%": how much of `full` the planned bytes save.
pub fn saved_percent(planned: u64, full: u64) -> String {
    if full == 0 {
        return "0.0%".into();
    }
    let saved = full.saturating_sub(planned) as f64 * 100.0 / full as f64;
    format!("{saved:.1}%")
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
        let plan = UpdatePlan::compute(&m, None, &held, &HeldBases::new());
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
        let held = BTreeSet::from([Sha256Digest::of(b"x")]);
        let plan = UpdatePlan::compute(&m, None, &held, &HeldBases::new());
        assert!(plan.fetches.is_empty());
        assert_eq!(plan.state_bytes_needed(), 0);
    }

    /// A delta to the content of `entry` from `base`, `size` bytes.
    fn delta(entry: &FileEntry, base: &[u8], size: u64) -> DeltaRef {
        let target = entry.content().unwrap().sha256;
        let base_sha256 = Sha256Digest::of(base);
        DeltaRef {
            base_sha256,
            base_size: base.len() as u64,
            algorithm: manifests::manifest::DeltaAlgorithm::BidiffZstd,
            path: manifests::layout::delta(&base_sha256, &target),
            size,
            sha256: Sha256Digest::of(&size.to_le_bytes()),
        }
    }

    fn with_deltas(mut entry: FileEntry, deltas: Vec<DeltaRef>) -> FileEntry {
        match &mut entry.kind {
            EntryKind::File(c) | EntryKind::Executable(c) => c.deltas = deltas,
            _ => unreachable!("a test file"),
        }
        entry
    }

    fn held_base(data: &[u8]) -> (Sha256Digest, HeldBase) {
        (
            Sha256Digest::of(data),
            HeldBase {
                location: BaseLocation::Store,
                described: String::from_utf8_lossy(data).into_owned(),
            },
        )
    }

    /// `app` v3 has deltas from v1 (30 bytes) and v2 (20 bytes).
    fn app_with_two_deltas() -> FileEntry {
        let app = file("bin/app", b"v3", 100);
        let deltas = vec![delta(&app, b"v1", 30), delta(&app, b"v2", 20)];
        with_deltas(app, deltas)
    }

    #[test]
    fn the_smallest_delta_whose_base_is_held_is_chosen() {
        let m = manifest(vec![app_with_two_deltas()]);
        let both = HeldBases::from([held_base(b"v1"), held_base(b"v2")]);
        let plan = UpdatePlan::compute(&m, None, &BTreeSet::new(), &both);
        let chosen = plan.fetches[0].delta().expect("a delta");
        assert_eq!(chosen.base_sha256, Sha256Digest::of(b"v2"));
        assert_eq!(plan.download_bytes(), 20);
        assert_eq!(plan.full_download_bytes(), 100);
        assert_eq!(plan.delta_count(), 1);
        // The worst case: a patch kept half-downloaded beside the object.
        assert_eq!(plan.state_bytes_needed(), 20 + 100 + 2);

        // Only v1 held: its larger delta is still better than the object.
        let v1 = HeldBases::from([held_base(b"v1")]);
        let plan = UpdatePlan::compute(&m, None, &BTreeSet::new(), &v1);
        let chosen = plan.fetches[0].delta().expect("a delta");
        assert_eq!(chosen.base_sha256, Sha256Digest::of(b"v1"));
        assert_eq!(plan.download_bytes(), 30);
        let text = plan.to_string();
        assert!(text.contains("delta bidiff-zstd from v1"), "{text}");
        assert!(
            text.contains("1 objects, 30 B to download (100 B without deltas, 70.0% saved)"),
            "{text}"
        );
    }

    #[test]
    fn no_held_base_means_the_full_object() {
        let m = manifest(vec![app_with_two_deltas()]);
        let other = HeldBases::from([held_base(b"v0")]);
        let plan = UpdatePlan::compute(&m, None, &BTreeSet::new(), &other);
        assert_eq!(plan.fetches[0].source, Source::Full);
        assert_eq!(plan.download_bytes(), 100);
        assert_eq!(plan.full_download_bytes(), 100);
        assert!(plan.to_string().contains("0.0% saved"), "{plan}");
    }

    #[test]
    fn a_delta_not_smaller_than_the_object_is_not_used() {
        let app = file("bin/app", b"v3", 100);
        let deltas = vec![delta(&app, b"v1", 100)];
        let m = manifest(vec![with_deltas(app, deltas)]);
        let v1 = HeldBases::from([held_base(b"v1")]);
        let plan = UpdatePlan::compute(&m, None, &BTreeSet::new(), &v1);
        assert_eq!(plan.fetches[0].source, Source::Full);
    }

    #[test]
    fn held_contents_need_no_delta_and_files_sharing_content_share_one() {
        let app = app_with_two_deltas();
        let mut copy = app.clone();
        copy.path = SafeRelativePath::new("bin/app-copy").unwrap();
        let m = manifest(vec![app, copy, file("doc", b"same", 9)]);
        let held = BTreeSet::from([Sha256Digest::of(b"same")]);
        let bases = HeldBases::from([held_base(b"v1")]);
        let plan = UpdatePlan::compute(&m, None, &held, &bases);
        assert_eq!(plan.fetches.len(), 1);
        assert_eq!(plan.fetches[0].files.len(), 2);
        assert_eq!(plan.download_bytes(), 30);
        assert_eq!(plan.reused_contents, 1);
    }
}
