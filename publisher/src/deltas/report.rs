//! The bandwidth report: per base version, what a node on it downloads.
//!
//! For each distinct content of the new release, a node on base version B
//! downloads nothing if B already had that content (at any path: the node
//! copies it), else the smallest delta whose base is the content B had at a
//! path where the new release puts this content, else the full object.
//! `full_bytes` is every object of the release: what a node without any
//! earlier version downloads. Written into the manifest so `ferry check` can
//! tell an operator, and printed by `release`.

use std::collections::{BTreeMap, BTreeSet};

use manifests::manifest::{DeltaReport, FileContent};
use manifests::{Manifest, Sha256Digest};

use super::plan::BaseRelease;
use crate::byte_size::ByteSize;

/// The report for `manifest` (with its deltas attached) against each base,
/// sorted by base version.
pub fn delta_report(manifest: &Manifest, bases: &[BaseRelease]) -> Vec<DeltaReport> {
    let mut contents: BTreeMap<Sha256Digest, (&FileContent, BTreeSet<&str>)> = BTreeMap::new();
    for entry in &manifest.files {
        if let Some(content) = entry.content() {
            contents
                .entry(content.sha256)
                .or_insert_with(|| (content, BTreeSet::new()))
                .1
                .insert(entry.path.as_str());
        }
    }
    let full_bytes = contents.values().map(|(c, _)| c.object.size).sum();
    let mut reports: Vec<DeltaReport> = bases
        .iter()
        .map(|base| {
            let download_bytes = contents
                .values()
                .map(|(content, paths)| download_for(base, content, paths))
                .sum();
            DeltaReport {
                from_version: base.version.clone(),
                download_bytes,
                full_bytes,
            }
        })
        .collect();
    reports.sort_by(|a, b| a.from_version.cmp(&b.from_version));
    reports
}

fn download_for(base: &BaseRelease, content: &FileContent, paths: &BTreeSet<&str>) -> u64 {
    if base.contents.contains(&content.sha256) {
        return 0;
    }
    let held: BTreeSet<Sha256Digest> = paths
        .iter()
        .filter_map(|path| base.files.get(*path).map(|(sha, _)| *sha))
        .collect();
    content
        .deltas
        .iter()
        .filter(|d| held.contains(&d.base_sha256))
        .map(|d| d.size)
        .min()
        .unwrap_or(content.object.size)
}

/// One line of `release`'s summary, e.g.
/// `from 1.0.0: 1.2 MiB of 40.1 MiB (3.0%; 1258291 of 42048307 bytes)`.
pub fn describe(report: &DeltaReport) -> String {
    let percent = if report.full_bytes == 0 {
        0.0
    } else {
        report.download_bytes as f64 * 100.0 / report.full_bytes as f64
    };
    format!(
        "from {}: {} of {} ({percent:.1}%; {} of {} bytes)",
        report.from_version,
        ByteSize(report.download_bytes),
        ByteSize(report.full_bytes),
        report.download_bytes,
        report.full_bytes
    )
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use manifests::manifest::{
        Compression, DeltaAlgorithm, DeltaRef, EntryKind, FileEntry, Hooks, ObjectRef,
    };
    use manifests::mode::Mode;
    use manifests::{layout, SafeRelativePath, FORMAT_VERSION};

    use super::*;

    fn digest(name: &str) -> Sha256Digest {
        Sha256Digest::of(name.as_bytes())
    }

    fn file(path: &str, content: &str, object: u64, deltas: &[(&str, u64)]) -> FileEntry {
        let sha256 = digest(content);
        FileEntry {
            path: SafeRelativePath::new(path).unwrap(),
            kind: EntryKind::File(FileContent {
                mode: Mode::new(0o644).unwrap(),
                size: 1000,
                sha256,
                object: ObjectRef {
                    path: layout::object(&sha256),
                    compression: Compression::Zstd,
                    size: object,
                    sha256: digest("stored"),
                },
                deltas: deltas
                    .iter()
                    .map(|(base, size)| DeltaRef {
                        base_sha256: digest(base),
                        base_size: 900,
                        algorithm: DeltaAlgorithm::BidiffZstd,
                        path: layout::delta(&digest(base), &sha256),
                        size: *size,
                        sha256: digest("patch"),
                    })
                    .collect(),
            }),
        }
    }

    fn base(version: &str, files: &[(&str, &str)]) -> BaseRelease {
        let files: BTreeMap<String, (Sha256Digest, u64)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), (digest(c), 900)))
            .collect();
        BaseRelease {
            version: version.parse().unwrap(),
            contents: files.values().map(|(d, _)| *d).collect(),
            files,
        }
    }

    #[test]
    fn held_content_is_free_deltas_follow_paths_and_the_rest_is_full() {
        let manifest = Manifest {
            format: FORMAT_VERSION,
            version: "3.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: Timestamp::UNIX_EPOCH,
            notes: String::new(),
            critical: false,
            min_upgrade_from: None,
            files: vec![
                file("a", "a3", 500, &[("a1", 40), ("a2", 30)]),
                file("b", "b3", 300, &[("b1", 20)]),
                file("c", "shared", 100, &[]),
                file("d", "shared", 100, &[]),
            ],
            migrations: Vec::new(),
            hooks: Hooks::default(),
            requirements: Vec::new(),
            waves: Vec::new(),
            delta_report: Vec::new(),
        };
        let bases = [
            // a1 at a; b1 only at another path (no delta applies); shared held.
            base("2.0.0", &[("a", "a1"), ("x", "b1"), ("y", "shared")]),
            base("1.0.0", &[("a", "a2"), ("b", "b1")]),
        ];
        let report = delta_report(&manifest, &bases);
        let rows: Vec<(String, u64, u64)> = report
            .iter()
            .map(|r| (r.from_version.to_string(), r.download_bytes, r.full_bytes))
            .collect();
        assert_eq!(
            rows,
            [
                ("1.0.0".to_string(), 30 + 20 + 100, 900),
                ("2.0.0".to_string(), 40 + 300, 900)
            ]
        );
        assert_eq!(
            describe(&report[0]),
            "from 1.0.0: 150 B of 900 B (16.7%; 150 of 900 bytes)"
        );
    }
}
