//! Building the documents of a publication — the release manifest and the
//! next index — from a plan. No I/O happens here, so the rules (serial,
//! latest, expiry, what counts as "the same release") are plain functions
//! that tests can pin down.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use manifests::index::{ChannelIndex, Index, ManifestRef};
use manifests::manifest::{
    Compression, DeltaRef, EntryKind, FileContent, FileEntry, Hooks, Manifest, Migration,
    ObjectRef, Requirement, Wave,
};
use manifests::{layout, Sha256Digest, FORMAT_VERSION};
use semver::Version;
use thiserror::Error;

use crate::plan::{PlannedKind, ReleasePlan};

/// The reproducible-builds variable: when set, it is the publication time,
/// so the same input gives byte-identical manifests.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

#[derive(Debug, Error)]
pub enum PublicationError {
    #[error("{SOURCE_DATE_EPOCH}={0:?} is not a Unix time in seconds: fix or unset it")]
    BadSourceDateEpoch(String),

    #[error(
        "--min-upgrade-from {min} is not below --version {version}: it names the oldest \
         version nodes must already run, so it must be an earlier version"
    )]
    MinUpgradeNotBelow { min: Version, version: Version },

    #[error("an index expiring {days} days after {created} is beyond the supported time range")]
    ExpiryOutOfRange { created: Timestamp, days: u32 },

    #[error("index.json serial {0} cannot be incremented")]
    SerialExhausted(u64),

    #[error("{0}; each --require and --require-command names its kind or tool once")]
    BadRequirements(String),

    #[error("--waves: {0}")]
    BadWaves(String),
}

/// What the release says about itself besides its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMetadata {
    pub version: Version,
    pub channel: String,
    pub created: Timestamp,
    pub notes: String,
    pub critical: bool,
    pub min_upgrade_from: Option<Version>,
    /// Data migrations, in id order (`--migrations`).
    pub migrations: Vec<Migration>,
    /// What nodes must have before they install the release, in any order:
    /// the manifest lists them sorted by label.
    pub requirements: Vec<Requirement>,
    /// The rollout schedule (`--waves`); empty: every node at once.
    pub waves: Vec<Wave>,
}

impl ReleaseMetadata {
    pub fn check(&self) -> Result<(), PublicationError> {
        manifests::requirement::validate(&self.requirements)
            .map_err(PublicationError::BadRequirements)?;
        manifests::wave::validate(&self.waves).map_err(PublicationError::BadWaves)?;
        match &self.min_upgrade_from {
            Some(min) if *min >= self.version => Err(PublicationError::MinUpgradeNotBelow {
                min: min.clone(),
                version: self.version.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// The publication time: `SOURCE_DATE_EPOCH` if set, else now, in whole
/// seconds (sub-second digits would make the JSON vary for no reader).
pub fn publication_time() -> Result<Timestamp, PublicationError> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|secs| Timestamp::from_second(secs).ok())
            .ok_or(PublicationError::BadSourceDateEpoch(text)),
        Err(_) => Ok(Timestamp::from_second(Timestamp::now().as_second())
            .expect("the current time is in range")),
    }
}

/// When an index created at `created` expires.
pub fn expiry(created: Timestamp, days: u32) -> Result<Timestamp, PublicationError> {
    created
        .checked_add(SignedDuration::from_secs(i64::from(days) * 86_400))
        .map_err(|_| PublicationError::ExpiryOutOfRange { created, days })
}

/// The object reference used before objects are stored: right path, zero
/// size and digest. Only for comparing with [`same_release`], which ignores
/// how content is stored.
pub fn placeholder_object(content: &Sha256Digest) -> ObjectRef {
    ObjectRef {
        path: layout::object(content),
        compression: Compression::Zstd,
        size: 0,
        sha256: Sha256Digest::from_bytes([0; 32]),
    }
}

/// The manifest for `plan`, with each content's object from `object_of`.
pub fn build_manifest(
    plan: &ReleasePlan,
    metadata: &ReleaseMetadata,
    object_of: impl Fn(&Sha256Digest) -> ObjectRef,
) -> Manifest {
    let files = plan
        .entries
        .iter()
        .map(|entry| {
            let kind = match &entry.kind {
                PlannedKind::Directory { mode } => EntryKind::Directory { mode: *mode },
                PlannedKind::Symlink { target } => EntryKind::Symlink {
                    target: target.clone(),
                },
                PlannedKind::File { mode, size, sha256 } => {
                    let content = FileContent {
                        mode: *mode,
                        size: *size,
                        sha256: *sha256,
                        object: object_of(sha256),
                        deltas: Vec::new(),
                    };
                    if mode.is_executable() {
                        EntryKind::Executable(content)
                    } else {
                        EntryKind::File(content)
                    }
                }
            };
            FileEntry {
                path: entry.path.clone(),
                kind,
            }
        })
        .collect();
    Manifest {
        format: FORMAT_VERSION,
        version: metadata.version.clone(),
        channel: metadata.channel.clone(),
        created: metadata.created,
        notes: metadata.notes.clone(),
        critical: metadata.critical,
        min_upgrade_from: metadata.min_upgrade_from.clone(),
        files,
        migrations: metadata.migrations.clone(),
        hooks: Hooks::default(),
        requirements: sorted_requirements(&metadata.requirements),
        waves: metadata.waves.clone(),
        delta_report: Vec::new(),
    }
}

/// Sorted by label, so the order of flags on the command line changes
/// neither the signed bytes nor what counts as the same release.
fn sorted_requirements(requirements: &[Requirement]) -> Vec<Requirement> {
    let mut sorted = requirements.to_vec();
    sorted.sort_by_key(Requirement::label);
    sorted
}

/// Whether two manifests describe the same release: everything equal except
/// the creation time and how each content is stored (compressed size and
/// digest depend on the zstd level, not on the release).
pub fn same_release(a: &Manifest, b: &Manifest) -> bool {
    comparable(a) == comparable(b)
}

/// What differs between a published manifest and a new one, for the error
/// that refuses to replace it. Best effort: an empty list with
/// `!same_release` means only reserved sections differ.
pub fn release_differences(published: &Manifest, new: &Manifest) -> Vec<String> {
    let (old, new) = (comparable(published), comparable(new));
    let mut out = Vec::new();
    if old.notes != new.notes {
        out.push("the notes differ".to_string());
    }
    if old.critical != new.critical {
        out.push(format!(
            "critical was {}, now {}",
            old.critical, new.critical
        ));
    }
    if old.min_upgrade_from != new.min_upgrade_from {
        let show = |v: &Option<Version>| v.as_ref().map_or("unset".to_string(), Version::to_string);
        out.push(format!(
            "min-upgrade-from was {}, now {}",
            show(&old.min_upgrade_from),
            show(&new.min_upgrade_from)
        ));
    }
    if old.migrations != new.migrations {
        let ids = |m: &Manifest| {
            let ids: Vec<&str> = m.migrations.iter().map(|m| m.id.as_str()).collect();
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        };
        out.push(format!(
            "the migrations differ (were {}, now {})",
            ids(&old),
            ids(&new)
        ));
    }
    if old.requirements != new.requirements {
        let show = |r: &[Requirement]| {
            if r.is_empty() {
                "none".to_string()
            } else {
                r.iter()
                    .map(Requirement::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        out.push(format!(
            "requirements were [{}], now [{}]",
            show(&old.requirements),
            show(&new.requirements)
        ));
    }
    if old.waves != new.waves {
        let show = |w: &[Wave]| {
            if w.is_empty() {
                "none".to_string()
            } else {
                manifests::wave::describe(w)
            }
        };
        out.push(format!(
            "waves were {}, now {}",
            show(&old.waves),
            show(&new.waves)
        ));
    }
    let old_files: BTreeMap<&str, &EntryKind> = old
        .files
        .iter()
        .map(|f| (f.path.as_str(), &f.kind))
        .collect();
    let new_files: BTreeMap<&str, &EntryKind> = new
        .files
        .iter()
        .map(|f| (f.path.as_str(), &f.kind))
        .collect();
    let mut changed = Vec::new();
    for (path, kind) in &old_files {
        match new_files.get(path) {
            None => changed.push(format!("{path} removed")),
            Some(k) if k != kind => changed.push(format!("{path} changed")),
            Some(_) => {}
        }
    }
    changed.extend(
        new_files
            .keys()
            .filter(|p| !old_files.contains_key(*p))
            .map(|p| format!("{p} added")),
    );
    const SHOWN: usize = 5;
    if changed.len() > SHOWN {
        let more = changed.len() - SHOWN;
        changed.truncate(SHOWN);
        changed.push(format!("{more} more"));
    }
    out.extend(changed);
    out
}

/// The parts of a manifest that make it this release. Deltas and the delta
/// report are left out: they depend on the repository's history and the
/// delta settings, not on the release (re-publishing with other bases is
/// still the same release).
fn comparable(manifest: &Manifest) -> Manifest {
    let mut m = manifest.clone();
    m.created = Timestamp::UNIX_EPOCH;
    m.delta_report.clear();
    for entry in &mut m.files {
        if let EntryKind::File(c) | EntryKind::Executable(c) = &mut entry.kind {
            c.object = placeholder_object(&c.sha256);
            c.deltas.clear();
        }
    }
    m
}

/// Records each content's deltas (sorted by base) on every file holding it.
pub fn attach_deltas(manifest: &mut Manifest, deltas: &BTreeMap<Sha256Digest, Vec<DeltaRef>>) {
    for entry in &mut manifest.files {
        if let EntryKind::File(c) | EntryKind::Executable(c) = &mut entry.kind {
            c.deltas = deltas.get(&c.sha256).cloned().unwrap_or_default();
        }
    }
}

/// The index after publishing `version` on `channel`: serial one above the
/// previous (1 for a new repository), new times, the release pinned, and the
/// channel's latest recomputed as its highest version.
pub fn next_index(
    previous: Option<&Index>,
    channel: &str,
    version: &Version,
    pin: ManifestRef,
    created: Timestamp,
    expires: Timestamp,
) -> Result<Index, PublicationError> {
    let mut index = match previous {
        None => Index::new(1, created, expires),
        Some(old) => {
            let serial = old
                .serial
                .checked_add(1)
                .ok_or(PublicationError::SerialExhausted(old.serial))?;
            Index {
                serial,
                created,
                expires,
                ..old.clone()
            }
        }
    };
    let entry = index
        .channels
        .entry(channel.to_string())
        .or_insert_with(|| ChannelIndex {
            latest: version.clone(),
            releases: BTreeMap::new(),
        });
    entry.releases.insert(version.to_string(), pin);
    entry.latest = entry
        .releases
        .keys()
        .filter_map(|v| v.parse::<Version>().ok())
        .max()
        .expect("the channel holds at least the new release");
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(version: &str, created: Timestamp) -> ManifestRef {
        let v: Version = version.parse().unwrap();
        ManifestRef {
            path: layout::manifest(&v),
            sha256: Sha256Digest::of(version.as_bytes()),
            size: 10,
            created,
        }
    }

    #[test]
    fn serial_grows_and_latest_is_the_highest_version() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let v = |s: &str| s.parse::<Version>().unwrap();
        let first = next_index(
            None,
            "stable",
            &v("1.2.0"),
            pin("1.2.0", t0),
            t0,
            expiry(t0, 30).unwrap(),
        )
        .unwrap();
        assert_eq!(first.serial, 1);
        first.validate().unwrap();

        // An older (backport) release does not become latest.
        let second = next_index(
            Some(&first),
            "stable",
            &v("1.1.5"),
            pin("1.1.5", t1),
            t1,
            expiry(t1, 1).unwrap(),
        )
        .unwrap();
        assert_eq!((second.serial, second.created), (2, t1));
        assert_eq!(second.channels["stable"].latest, v("1.2.0"));
        assert_eq!(second.channels["stable"].releases.len(), 2);
        second.validate().unwrap();

        let third = next_index(
            Some(&second),
            "beta",
            &v("2.0.0-rc.1"),
            pin("2.0.0-rc.1", t1),
            t1,
            expiry(t1, 1).unwrap(),
        )
        .unwrap();
        assert_eq!(third.channels["beta"].latest, v("2.0.0-rc.1"));
        assert_eq!(third.channels["stable"], second.channels["stable"]);
        assert_eq!(expiry(t0, 30).unwrap().as_second(), 1_000 + 30 * 86_400);
    }

    #[test]
    fn same_release_ignores_time_and_storage_only() {
        let digest = Sha256Digest::of(b"x");
        let content = |object| FileContent {
            mode: manifests::mode::Mode::new(0o644).unwrap(),
            size: 1,
            sha256: digest,
            object,
            deltas: Vec::new(),
        };
        let base = Manifest {
            format: FORMAT_VERSION,
            version: "1.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: Timestamp::from_second(5).unwrap(),
            notes: String::new(),
            critical: false,
            min_upgrade_from: None,
            files: vec![FileEntry {
                path: manifests::SafeRelativePath::new("f").unwrap(),
                kind: EntryKind::File(content(placeholder_object(&digest))),
            }],
            migrations: Vec::new(),
            hooks: Hooks::default(),
            requirements: Vec::new(),
            waves: Vec::new(),
            delta_report: Vec::new(),
        };
        let mut later = base.clone();
        later.created = Timestamp::from_second(99).unwrap();
        later.files[0].kind = EntryKind::File(content(ObjectRef {
            size: 42,
            sha256: Sha256Digest::of(b"z"),
            ..placeholder_object(&digest)
        }));
        assert!(same_release(&base, &later));

        // Deltas and their report depend on history, not on the release.
        let mut with_deltas = later.clone();
        let delta = DeltaRef {
            base_sha256: Sha256Digest::of(b"old"),
            base_size: 3,
            algorithm: manifests::manifest::DeltaAlgorithm::BidiffZstd,
            path: layout::delta(&Sha256Digest::of(b"old"), &digest),
            size: 1,
            sha256: Sha256Digest::of(b"patch"),
        };
        attach_deltas(&mut with_deltas, &BTreeMap::from([(digest, vec![delta])]));
        assert_eq!(with_deltas.files[0].content().unwrap().deltas.len(), 1);
        with_deltas
            .delta_report
            .push(manifests::manifest::DeltaReport {
                from_version: "0.9.0".parse().unwrap(),
                download_bytes: 1,
                full_bytes: 2,
            });
        assert!(same_release(&base, &with_deltas));

        let mut noted = base.clone();
        noted.notes = "changed".into();
        assert!(!same_release(&base, &noted));
        let mut moded = base.clone();
        moded.files[0].kind = EntryKind::Executable(FileContent {
            mode: manifests::mode::Mode::new(0o755).unwrap(),
            ..content(placeholder_object(&digest))
        });
        assert!(!same_release(&base, &moded));

        // Requirements are part of the release.
        let mut required = base.clone();
        required.requirements = vec![Requirement::kernel(">=5.10")];
        assert!(!same_release(&base, &required));
        assert_eq!(
            release_differences(&base, &required),
            ["requirements were [none], now [kernel >=5.10]"]
        );
        let mut stricter = required.clone();
        stricter.requirements = vec![Requirement::kernel(">=6.1")];
        assert!(!same_release(&required, &stricter));

        // So are the waves: the schedule is a promise to the fleet.
        let wave = |percent, after_seconds| Wave {
            percent,
            after_seconds,
        };
        let mut staged = base.clone();
        staged.waves = vec![wave(50, 3600), wave(100, 7200)];
        assert!(!same_release(&base, &staged));
        assert_eq!(
            release_differences(&base, &staged),
            ["waves were none, now 50%@1h,100%@2h"]
        );
        let mut slower = staged.clone();
        slower.waves = vec![wave(50, 3600), wave(100, 86_400)];
        assert_eq!(
            release_differences(&staged, &slower),
            ["waves were 50%@1h,100%@2h, now 50%@1h,100%@1d"]
        );
        assert!(same_release(&staged, &staged.clone()));
    }

    #[test]
    fn waves_are_checked_and_written_in_order() {
        let meta = |waves: Vec<Wave>| ReleaseMetadata {
            version: "2.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: Timestamp::UNIX_EPOCH,
            notes: String::new(),
            critical: false,
            min_upgrade_from: None,
            migrations: Vec::new(),
            requirements: Vec::new(),
            waves,
        };
        let waves = manifests::wave::parse_list("1%@1h,5%@4h,25%@1d,100%@3d").unwrap();
        meta(waves.clone()).check().unwrap();
        let plan = ReleasePlan {
            entries: Vec::new(),
            contents: BTreeMap::new(),
        };
        let built = build_manifest(&plan, &meta(waves.clone()), placeholder_object);
        assert_eq!(built.waves, waves);
        built.validate().unwrap();
        let err = meta(waves[..3].to_vec()).check().unwrap_err().to_string();
        assert!(
            err.starts_with("--waves: the last wave reaches 25%, not 100%"),
            "{err}"
        );
    }

    #[test]
    fn requirements_are_checked_and_sorted_by_label() {
        let meta = |requirements: Vec<Requirement>| ReleaseMetadata {
            version: "2.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: Timestamp::UNIX_EPOCH,
            notes: String::new(),
            critical: false,
            min_upgrade_from: None,
            migrations: Vec::new(),
            requirements,
            waves: Vec::new(),
        };
        let psql = Requirement::command("psql", ">=14", "psql --version");
        let given = vec![
            psql.clone(),
            Requirement::kernel(">=5.10"),
            Requirement::glibc(">=2.31"),
        ];
        let plan = ReleasePlan {
            entries: Vec::new(),
            contents: BTreeMap::new(),
        };
        let built = build_manifest(&plan, &meta(given.clone()), placeholder_object);
        assert_eq!(
            built.requirements,
            [
                psql.clone(),
                Requirement::glibc(">=2.31"),
                Requirement::kernel(">=5.10")
            ]
        );
        meta(given).check().unwrap();
        let err = meta(vec![psql.clone(), psql])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("command:psql appears twice"), "{err}");
    }

    #[test]
    fn min_upgrade_from_must_be_older() {
        let meta = |min: &str| ReleaseMetadata {
            version: "2.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: Timestamp::UNIX_EPOCH,
            notes: String::new(),
            critical: false,
            min_upgrade_from: Some(min.parse().unwrap()),
            migrations: Vec::new(),
            requirements: Vec::new(),
            waves: Vec::new(),
        };
        meta("1.5.0").check().unwrap();
        assert!(meta("2.0.0").check().is_err());
        assert!(meta("2.1.0").check().is_err());
    }
}
