//! Which deltas a release needs: the base versions, then every (base
//! content, target content) pair, before any of them is computed.
//!
//! A pair is planned where a node on a base version would otherwise fetch a
//! whole object: the new release has content T at a path where the base
//! version had other content B. Nothing is planned for a base version that
//! already had T somewhere (the node copies it), nor for empty contents
//! (nothing to gain). Pairs are keyed by (B, T) alone, so a pair that
//! several base versions or paths need is computed once, and its patch,
//! stored at `deltas/<B>-<T>`, serves every later release too.

use std::collections::{BTreeMap, BTreeSet};

use manifests::index::Index;
use manifests::{Manifest, Sha256Digest};
use semver::Version;
use thiserror::Error;

use crate::plan::{PlannedKind, ReleasePlan};

/// How many earlier versions `--delta-from auto` diffs against.
pub const AUTO_BASES: usize = 3;

/// `--delta-from`: which earlier versions get deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaFrom {
    /// The [`AUTO_BASES`] highest versions of the channel below the new one.
    Auto,
    /// No deltas at all.
    None,
    /// These versions, from any channel of the repository.
    Versions(Vec<Version>),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BaseError {
    #[error(
        "--delta-from names {0}, which this repository has not published: name published \
         versions (`ferry-publish list`), or use auto"
    )]
    NotPublished(Version),

    #[error(
        "--delta-from names {0}, the version being published: a release is no base for itself"
    )]
    Itself(Version),
}

/// The base versions for publishing `version` on `channel`, sorted.
pub fn base_versions(
    index: Option<&Index>,
    channel: &str,
    version: &Version,
    from: &DeltaFrom,
) -> Result<Vec<Version>, BaseError> {
    let published = |v: &Version| index.and_then(|i| i.channel_of(v)).is_some();
    let mut bases: Vec<Version> = match from {
        DeltaFrom::None => Vec::new(),
        DeltaFrom::Auto => {
            let mut older: Vec<Version> = index
                .and_then(|i| i.channels.get(channel))
                .map(|c| {
                    c.releases
                        .keys()
                        .filter_map(|v| v.parse::<Version>().ok())
                        .filter(|v| v < version)
                        .collect()
                })
                .unwrap_or_default();
            older.sort();
            older.split_off(older.len().saturating_sub(AUTO_BASES))
        }
        DeltaFrom::Versions(list) => {
            for base in list {
                if base == version {
                    return Err(BaseError::Itself(base.clone()));
                }
                if !published(base) {
                    return Err(BaseError::NotPublished(base.clone()));
                }
            }
            list.clone()
        }
    };
    bases.sort();
    bases.dedup();
    Ok(bases)
}

/// A base version's regular files: path -> (content, size), and the set of
/// all its contents.
#[derive(Debug, Clone)]
pub struct BaseRelease {
    pub version: Version,
    pub files: BTreeMap<String, (Sha256Digest, u64)>,
    pub contents: BTreeSet<Sha256Digest>,
}

impl BaseRelease {
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let files: BTreeMap<String, (Sha256Digest, u64)> = manifest
            .files
            .iter()
            .filter_map(|f| {
                f.content()
                    .map(|c| (f.path.as_str().to_string(), (c.sha256, c.size)))
            })
            .collect();
        let contents = files.values().map(|(sha, _)| *sha).collect();
        BaseRelease {
            version: manifest.version.clone(),
            files,
            contents,
        }
    }
}

/// One patch to have: from `base` content to `target` content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeltaPair {
    pub base: Sha256Digest,
    pub base_size: u64,
    pub target: Sha256Digest,
    pub target_size: u64,
}

/// Every distinct pair the release needs from `bases`, largest target first
/// (the longest jobs start first, so two workers finish close together),
/// ties broken by digests so the order is fixed.
pub fn plan_pairs(plan: &ReleasePlan, bases: &[BaseRelease]) -> Vec<DeltaPair> {
    let mut pairs: BTreeSet<DeltaPair> = BTreeSet::new();
    for entry in &plan.entries {
        let PlannedKind::File { size, sha256, .. } = entry.kind else {
            continue;
        };
        for base in bases {
            if size == 0 || base.contents.contains(&sha256) {
                continue;
            }
            if let Some(&(old, old_size)) = base.files.get(entry.path.as_str()) {
                if old_size > 0 {
                    pairs.insert(DeltaPair {
                        base: old,
                        base_size: old_size,
                        target: sha256,
                        target_size: size,
                    });
                }
            }
        }
    }
    let mut pairs: Vec<DeltaPair> = pairs.into_iter().collect();
    pairs.sort_by(|a, b| {
        b.target_size
            .cmp(&a.target_size)
            .then_with(|| (a.target, a.base).cmp(&(b.target, b.base)))
    });
    pairs
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use jiff::Timestamp;
    use manifests::index::{ChannelIndex, ManifestRef};
    use manifests::layout;
    use manifests::mode::Mode;
    use manifests::SafeRelativePath;

    use super::*;
    use crate::plan::{PlannedContent, PlannedEntry};

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    fn index(channels: &[(&str, &[&str])]) -> Index {
        let t = Timestamp::UNIX_EPOCH;
        let mut index = Index::new(1, t, t);
        for (name, versions) in channels {
            let releases = versions
                .iter()
                .map(|text| {
                    let pin = ManifestRef {
                        path: layout::manifest(&v(text)),
                        sha256: Sha256Digest::of(text.as_bytes()),
                        size: 1,
                        created: t,
                    };
                    (text.to_string(), pin)
                })
                .collect();
            index.channels.insert(
                name.to_string(),
                ChannelIndex {
                    latest: versions.iter().map(|t| v(t)).max().unwrap(),
                    releases,
                },
            );
        }
        index
    }

    #[test]
    fn auto_takes_the_three_highest_older_versions_of_the_channel() {
        let index = index(&[
            ("stable", &["1.0.0", "1.1.0", "1.2.0", "1.10.0", "2.0.0"]),
            ("beta", &["1.11.0-rc.1"]),
        ]);
        let bases = |version: &str, from: &DeltaFrom| {
            base_versions(Some(&index), "stable", &v(version), from)
        };
        assert_eq!(
            bases("1.11.0", &DeltaFrom::Auto).unwrap(),
            [v("1.1.0"), v("1.2.0"), v("1.10.0")]
        );
        assert_eq!(
            bases("1.1.5", &DeltaFrom::Auto).unwrap(),
            [v("1.0.0"), v("1.1.0")]
        );
        assert_eq!(bases("1.11.0", &DeltaFrom::None).unwrap(), []);
        assert_eq!(
            base_versions(None, "stable", &v("1.0.0"), &DeltaFrom::Auto).unwrap(),
            []
        );
        let listed = DeltaFrom::Versions(vec![v("1.11.0-rc.1"), v("1.0.0"), v("1.0.0")]);
        assert_eq!(
            bases("1.11.0", &listed).unwrap(),
            [v("1.0.0"), v("1.11.0-rc.1")]
        );
        let unknown = DeltaFrom::Versions(vec![v("1.5.0")]);
        assert_eq!(
            bases("1.11.0", &unknown),
            Err(BaseError::NotPublished(v("1.5.0")))
        );
        let itself = DeltaFrom::Versions(vec![v("2.0.0")]);
        assert_eq!(bases("2.0.0", &itself), Err(BaseError::Itself(v("2.0.0"))));
    }

    fn digest(name: &str) -> Sha256Digest {
        Sha256Digest::of(name.as_bytes())
    }

    fn release_plan(files: &[(&str, &str, u64)]) -> ReleasePlan {
        let mut contents = BTreeMap::new();
        let entries = files
            .iter()
            .map(|(path, content, size)| {
                contents.insert(
                    digest(content),
                    PlannedContent {
                        size: *size,
                        source: PathBuf::from(path),
                        stored: None,
                    },
                );
                PlannedEntry {
                    path: SafeRelativePath::new(path).unwrap(),
                    kind: PlannedKind::File {
                        mode: Mode::new(0o644).unwrap(),
                        size: *size,
                        sha256: digest(content),
                    },
                }
            })
            .collect();
        ReleasePlan { entries, contents }
    }

    fn base(version: &str, files: &[(&str, &str, u64)]) -> BaseRelease {
        let files: BTreeMap<String, (Sha256Digest, u64)> = files
            .iter()
            .map(|(p, c, s)| (p.to_string(), (digest(c), *s)))
            .collect();
        BaseRelease {
            version: v(version),
            contents: files.values().map(|(d, _)| *d).collect(),
            files,
        }
    }

    #[test]
    fn pairs_follow_paths_skip_held_content_and_are_deduplicated() {
        let plan = release_plan(&[
            ("app", "app-3", 300),
            ("lib", "lib-3", 500),
            ("moved", "data-1", 10),
            ("new", "new-3", 50),
            ("zero", "", 0),
        ]);
        let bases = [
            base(
                "1.0.0",
                &[
                    ("app", "app-1", 280),
                    ("lib", "lib-1", 490),
                    ("data", "data-1", 10),
                ],
            ),
            // The same lib as 1.0.0: one pair serves both.
            base(
                "2.0.0",
                &[
                    ("app", "app-2", 290),
                    ("lib", "lib-1", 490),
                    ("zero", "z", 1),
                ],
            ),
            // Already holds lib-3 (elsewhere): nothing to plan for it.
            base("2.1.0", &[("lib", "lib-2", 1), ("other", "lib-3", 500)]),
        ];
        let pairs = plan_pairs(&plan, &bases);
        let names: Vec<(Sha256Digest, Sha256Digest)> =
            pairs.iter().map(|p| (p.base, p.target)).collect();
        let mut app = [
            (digest("app-1"), digest("app-3")),
            (digest("app-2"), digest("app-3")),
        ];
        app.sort();
        assert_eq!(
            names,
            [(digest("lib-1"), digest("lib-3")), app[0], app[1]],
            "largest target first, lib-1 once, nothing for moved/new/zero"
        );
        assert_eq!((pairs[0].base_size, pairs[0].target_size), (490, 500));
    }
}
