//! `ferry-publish verify`: check a repository the way a node would, but
//! everything at once and without stopping at the first problem.
//!
//! A node stops at the first bad byte; an operator repairing a repository
//! wants the whole list, so every problem is collected, one line each, and
//! the command fails only at the end. The checks follow the node's order —
//! index signature, manifest pins and signatures, then each object's stored
//! size and digest before its decompressed content, then each delta's size
//! and digest before it is applied to its base — so that `verify` passing
//! means a node would accept every release in the repository, and every
//! delta in it rebuilds its target.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use jiff::Timestamp;
use manifests::manifest::{DeltaAlgorithm, DeltaRef, ObjectRef};
use manifests::FormatError;
use manifests::{
    layout, Role, RoleKeys, Sha256Digest, TrustedKeys, VerifiedIndex, VerifiedManifest,
    VerifiedRoot, MAX_INDEX_BYTES, MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES,
};
use rayon::prelude::*;
use semver::Version;

use crate::byte_size::ByteSize;
use crate::cli::VerifyArgs;
use crate::deltas::budget::{self, MemoryBudget};
use crate::deltas::check;
use crate::objects;
use crate::repository::{Repository, RepositoryError};
use crate::root_chain::RootChain;

/// The result of checking a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every problem found, one sentence each; empty when the repository is
    /// sound.
    pub problems: Vec<String>,
    pub serial: Option<u64>,
    /// The version of the root the repository was checked with (0: the
    /// given public keys, no root).
    pub root_version: u64,
    pub expires: Option<Timestamp>,
    pub channels: usize,
    pub releases: usize,
    pub objects: usize,
    /// Compressed bytes of the objects checked.
    pub object_bytes: u64,
    pub deltas: usize,
    /// Bytes of the delta patches checked.
    pub delta_bytes: u64,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let anchor = match &args.root {
        Some(path) => {
            let read = |p: &Path, limit: u64| -> anyhow::Result<Vec<u8>> {
                let bytes = std::fs::read(p)
                    .with_context(|| format!("cannot read the trusted root {}", p.display()))?;
                if bytes.len() as u64 > limit {
                    bail!("{} is larger than {limit} bytes", p.display());
                }
                Ok(bytes)
            };
            let signature = Path::new(&layout::signature_of(&path.to_string_lossy())).to_path_buf();
            VerifiedRoot::verify_self_signed(
                read(path, MAX_ROOT_BYTES)?,
                read(&signature, MAX_SIGNATURE_BYTES)?,
            )
            .with_context(|| format!("{} is not a valid signed root", path.display()))?
        }
        None => {
            let mut keys = TrustedKeys::new();
            for key in &args.public_key {
                keys.add_file(key)?;
            }
            VerifiedRoot::from_public_keys(keys)?
        }
    };
    let report = verify_repository(&args.repo, &anchor, Timestamp::now());
    if report.problems.is_empty() {
        outln!(
            "{}: ok — root version {}, index serial {}, expires {}; {} channel(s), {} release(s), \
             {} object(s) ({}), {} delta(s) ({}) checked",
            args.repo.display(),
            report.root_version,
            report.serial.unwrap_or_default(),
            report.expires.map(|t| t.to_string()).unwrap_or_default(),
            report.channels,
            report.releases,
            report.objects,
            ByteSize(report.object_bytes),
            report.deltas,
            ByteSize(report.delta_bytes)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        outln!("problem: {problem}");
    }
    errln!(
        "error: {} problem(s) found in {}",
        report.problems.len(),
        args.repo.display()
    );
    Ok(ExitCode::FAILURE)
}

/// One stored object as manifests reference it, and who references it.
struct ObjectUse {
    object: ObjectRef,
    content: Sha256Digest,
    size: u64,
    used_by: Vec<String>,
}

/// One stored delta as manifests reference it, and who references it.
struct DeltaUse {
    delta: DeltaRef,
    target: Sha256Digest,
    target_size: u64,
    used_by: Vec<String>,
}

/// Checks the repository at `root` as a node trusting `anchor` would: its
/// roots walked from the anchor (each signed by a threshold of the previous
/// root's keys and of its own), then everything else with the roles of the
/// newest root; `now` decides what has expired.
pub fn verify_repository(root: &Path, anchor: &VerifiedRoot, now: Timestamp) -> VerifyReport {
    let mut report = VerifyReport::default();
    let repo = match Repository::open(root) {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let trusted = match RootChain::load(&repo, Some(anchor.clone())) {
        Ok(Some(chain)) => chain.current().clone(),
        Ok(None) => anchor.clone(),
        Err(e) => {
            // Without the chain nothing else can be trusted.
            report.problems.push(format!("{e:#}"));
            return report;
        }
    };
    report.root_version = trusted.version();
    if let Some(expires) = trusted.expires().filter(|_| trusted.is_expired(now)) {
        report.problems.push(format!(
            "root version {} expired at {expires} (now {now}): nodes refuse the repository; publish a new root with `ferry-publish root init`, `root sign` and `root rotate`",
            trusted.version()
        ));
    }
    let keys = trusted.role(Role::Index);
    let manifest_keys = trusted.role(Role::Manifests);
    let index = match verified_index(&repo, keys) {
        Ok(index) => index,
        Err(problem) => {
            // Nothing else can be trusted without the index.
            report.problems.push(problem);
            return report;
        }
    };
    let index = index.index();
    report.serial = Some(index.serial);
    report.expires = Some(index.expires);
    report.channels = index.channels.len();
    if index.expires <= now {
        report.problems.push(format!(
            "index.json expired at {} (now {now}): nodes refuse it; publish a release to re-sign it",
            index.expires
        ));
    }

    // Keyed by (content, stored digest, stored size): two manifests may name
    // the same object with different references, and each is checked.
    let mut uses: BTreeMap<(Sha256Digest, Sha256Digest, u64), ObjectUse> = BTreeMap::new();
    // Keyed by every field that could differ between two references to the
    // same patch file, for the same reason.
    type DeltaKey = (
        String,
        Sha256Digest,
        u64,
        DeltaAlgorithm,
        u64,
        Sha256Digest,
        u64,
    );
    let mut delta_uses: BTreeMap<DeltaKey, DeltaUse> = BTreeMap::new();
    for (channel, releases) in &index.channels {
        for (version_text, pin) in &releases.releases {
            report.releases += 1;
            let version: Version = version_text
                .parse()
                .expect("a validated index holds valid versions");
            let manifest = match verified_manifest(&repo, manifest_keys, pin, &version) {
                Ok(m) => m,
                Err(problem) => {
                    report.problems.push(problem);
                    continue;
                }
            };
            let manifest = manifest.manifest();
            if manifest.channel != *channel {
                report.problems.push(format!(
                    "{} says channel {:?} but index.json lists it on {channel:?}",
                    pin.path, manifest.channel
                ));
            }
            for entry in &manifest.files {
                let Some(content) = entry.content() else {
                    continue;
                };
                let key = (content.sha256, content.object.sha256, content.object.size);
                uses.entry(key)
                    .or_insert_with(|| ObjectUse {
                        object: content.object.clone(),
                        content: content.sha256,
                        size: content.size,
                        used_by: Vec::new(),
                    })
                    .used_by
                    .push(format!("{version}:{}", entry.path));
                for delta in &content.deltas {
                    let key = (
                        delta.path.clone(),
                        delta.sha256,
                        delta.size,
                        delta.algorithm,
                        delta.base_size,
                        content.sha256,
                        content.size,
                    );
                    delta_uses
                        .entry(key)
                        .or_insert_with(|| DeltaUse {
                            delta: delta.clone(),
                            target: content.sha256,
                            target_size: content.size,
                            used_by: Vec::new(),
                        })
                        .used_by
                        .push(format!("{version}:{}", entry.path));
                }
            }
        }
    }

    let uses: Vec<ObjectUse> = uses.into_values().collect();
    report.objects = uses.len();
    report.object_bytes = uses.iter().map(|u| u.object.size).sum();
    let object_problems: Vec<Option<String>> = uses
        .par_iter()
        .map(|u| {
            let path = objects::object_path(repo.root(), &u.content);
            objects::check_stored(&path, &u.object, &u.content, u.size)
                .err()
                .map(|problem| {
                    format!(
                        "{} {problem} (used by {})",
                        u.object.path,
                        users(&u.used_by)
                    )
                })
        })
        .collect();
    report
        .problems
        .extend(object_problems.into_iter().flatten());

    let delta_uses: Vec<DeltaUse> = delta_uses.into_values().collect();
    report.deltas = delta_uses.len();
    report.delta_bytes = delta_uses.iter().map(|u| u.delta.size).sum();
    report
        .problems
        .extend(check_deltas(repo.root(), &delta_uses));
    report
}

/// Applies every delta to its base, in parallel within the default memory
/// budget (each check holds a base, a target and a patch).
fn check_deltas(root: &Path, uses: &[DeltaUse]) -> Vec<String> {
    let budget = MemoryBudget::new(budget::default_budget());
    let problems: Vec<Option<String>> = uses
        .par_iter()
        .map(|u| {
            let _memory = budget.reserve(budget::check_peak(
                u.delta.base_size,
                u.target_size,
                u.delta.size,
            ));
            check::check_stored(root, &u.delta, &u.target, u.target_size)
                .err()
                .map(|problem| {
                    format!("{} {problem} (used by {})", u.delta.path, users(&u.used_by))
                })
        })
        .collect();
    problems.into_iter().flatten().collect()
}

fn verified_index(repo: &Repository, keys: &RoleKeys) -> Result<VerifiedIndex, String> {
    let bytes = read_required(repo, layout::INDEX, MAX_INDEX_BYTES)?;
    let signature = read_required(
        repo,
        &layout::signature_of(layout::INDEX),
        MAX_SIGNATURE_BYTES,
    )?;
    VerifiedIndex::verify(&bytes, &signature, keys).map_err(|e| match e {
        // The node-side wording points at a configuration file; here the
        // key came from the command line.
        FormatError::UntrustedKey { key_id, .. } => {
            let given: Vec<String> = keys.key_ids().iter().map(|id| id.to_string()).collect();
            format!(
                "index.json is signed by key {key_id}, not by the given public key {}: \
                 check --public-key",
                given.join(", ")
            )
        }
        e => e.to_string(),
    })
}

fn verified_manifest(
    repo: &Repository,
    keys: &RoleKeys,
    pin: &manifests::ManifestRef,
    version: &Version,
) -> Result<VerifiedManifest, String> {
    let relative = layout::manifest(version);
    let bytes = match repo.read(&relative, pin.size) {
        Err(RepositoryError::TooLarge { .. }) => {
            return Err(format!(
            "{relative} is larger than the {} bytes index.json pins: it was modified or replaced",
            pin.size
        ))
        }
        other => other
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{relative} is missing"))?,
    };
    let signature = read_required(repo, &layout::signature_of(&relative), MAX_SIGNATURE_BYTES)?;
    VerifiedManifest::verify_pinned(bytes, signature, keys, pin, version)
        .map_err(|e| format!("{relative}: {e}"))
}

fn read_required(repo: &Repository, relative: &str, limit: u64) -> Result<Vec<u8>, String> {
    repo.read(relative, limit)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{relative} is missing"))
}

fn users(used_by: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = used_by
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if used_by.len() > SHOWN {
        text.push_str(&format!(" and {} more", used_by.len() - SHOWN));
    }
    text
}
