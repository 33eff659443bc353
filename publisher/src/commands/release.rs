//! `ferry-publish release`: publish the files of INPUT_DIR as one version.
//!
//! Planning comes first (walk, hash, look up existing objects, check the
//! version against the verified index, read the delta bases' manifests and
//! plan the delta pairs), so every refusal — a bad tree, a foreign
//! repository, a version already taken, an unknown `--delta-from` version —
//! happens before anything is written. Then the writes, in the order that
//! keeps every state a reader can see usable:
//!
//! 1. new objects, then new deltas, synced: nothing names them yet;
//! 2. the manifest and its signatures: no index pins them yet;
//! 3. `index.json.p7s` (with `--x509-cert`), `index.json.minisig`, then
//!    `index.json`.
//!
//! Step 3 has a short window (two renames) in which a reader can pair the
//! new signature with the old index and fail verification; nodes treat that
//! like any failed fetch and retry on their next run, and the window cannot
//! expose unsigned content. Writing the index first would have the same
//! window the other way round.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use jiff::Timestamp;
use manifests::canonical::to_canonical_json;
use manifests::index::{Index, ManifestRef};
use manifests::manifest::DeltaReport;
use manifests::manifest::ObjectRef;
use manifests::{layout, Role, Sha256Digest, VerifiedIndex, MAX_INDEX_BYTES};
use semver::Version;

use crate::byte_size::ByteSize;
use crate::cli::ReleaseArgs;
use crate::deltas::budget::{self, MemoryBudget};
use crate::deltas::DeltaSettings;
use crate::deltas::{
    self, BaseRelease, ComputedDeltas, DeltaFrom, DeltaInputs, DeltaPair, FoundPatch,
};
use crate::keys::SigningKeys;
use crate::plan::{ReleasePlan, StoredObjects};
use crate::publication::{self, ReleaseMetadata};
use crate::repository::Repository;
use crate::root_chain::RepoTrust;
use crate::schedule::{self, Task};
use crate::x509;
use crate::{input, migrations};

/// What a successful `release` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Published(ReleaseSummary),
    /// The version was already published with the same content: nothing
    /// was written.
    AlreadyPublished {
        version: Version,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSummary {
    pub version: Version,
    pub channel: String,
    pub files: usize,
    pub content_bytes: u64,
    pub new_objects: usize,
    /// Compressed bytes of the new objects.
    pub new_object_bytes: u64,
    pub reused_objects: usize,
    /// Patches written by this publication.
    pub new_deltas: usize,
    pub new_delta_bytes: u64,
    /// Patches earlier publications had stored, recorded again.
    pub reused_deltas: usize,
    /// Pairs whose best patch was not clearly smaller than the object.
    pub dropped_deltas: usize,
    pub delta_report: Vec<DeltaReport>,
    pub serial: u64,
    pub expires: Timestamp,
}

pub fn run(args: &ReleaseArgs) -> anyhow::Result<ExitCode> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = args.jobs {
        pool = pool.num_threads(jobs.get());
    }
    let pool = pool.build().context("cannot start worker threads")?;
    match pool.install(|| publish(args))? {
        ReleaseOutcome::AlreadyPublished { version } => {
            outln!("version {version} is already published with identical content; nothing to do");
        }
        ReleaseOutcome::Published(s) => {
            outln!("published {} on channel {}", s.version, s.channel);
            outln!(
                "  files: {} ({} bytes, {})",
                s.files,
                s.content_bytes,
                ByteSize(s.content_bytes)
            );
            outln!(
                "  new objects: {} ({} bytes compressed, {})",
                s.new_objects,
                s.new_object_bytes,
                ByteSize(s.new_object_bytes)
            );
            outln!("  reused objects: {}", s.reused_objects);
            outln!(
                "  deltas: {} new ({} bytes, {}), {} reused, {} dropped (not {}% smaller than \
                 the full object)",
                s.new_deltas,
                s.new_delta_bytes,
                ByteSize(s.new_delta_bytes),
                s.reused_deltas,
                s.dropped_deltas,
                100 - 10 * deltas::compute::KEEP_AT_MOST_TENTHS
            );
            if !s.delta_report.is_empty() {
                outln!("  download for a node already on:");
                for report in &s.delta_report {
                    outln!("    {}", deltas::describe(report));
                }
            }
            outln!("  index: serial {}, expires {}", s.serial, s.expires);
            if s.expires <= Timestamp::now() {
                errln!(
                    "warning: the index expired at {} ({} is in the past): nodes will refuse it \
                     until a publication with a current time re-signs it",
                    s.expires,
                    publication::SOURCE_DATE_EPOCH
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes one release as `args` describe, on the current rayon pool.
pub fn publish(args: &ReleaseArgs) -> anyhow::Result<ReleaseOutcome> {
    let created = publication::publication_time()?;
    let mut metadata = ReleaseMetadata {
        version: args.version.clone(),
        channel: args.channel.clone(),
        created,
        notes: args.notes.clone(),
        critical: args.critical,
        min_upgrade_from: args.min_upgrade_from.clone(),
        migrations: Vec::new(),
        requirements: args
            .require
            .iter()
            .chain(&args.require_command)
            .cloned()
            .collect(),
        waves: args.waves.clone().map(|w| w.0).unwrap_or_default(),
    };
    metadata.check()?;
    let expires = publication::expiry(created, args.expires_in)?;
    let keys = SigningKeys::load(&args.key, args.password_file.as_deref())?;
    let x509 = x509::load_optional(
        args.x509.x509_cert.as_ref(),
        args.x509.x509_key.as_ref(),
        args.x509.x509_chain.as_ref(),
    )?;
    let mut tree = input::walk(&args.input_dir)?;
    if let Some(dir) = &args.migrations {
        let scripts = migrations::read(dir)?;
        migrations::add_to_tree(&mut tree, &scripts)?;
        metadata.migrations = migrations::declare(&scripts)?;
    }

    let repo = Repository::create(&args.repo)?;
    refuse_overlap(&args.input_dir, repo.root())?;
    let _lock = repo.lock()?;
    // With a root, refuse keys nodes would not accept before any work.
    let trust = RepoTrust::load(&repo, &keys)?;
    trust.check_can_sign(Role::Index, &keys)?;
    trust.check_can_sign(Role::Manifests, &keys)?;
    let previous = repo.read_index(&trust)?;
    let previous = previous.as_ref().map(VerifiedIndex::index);
    let version = &metadata.version;
    let channel = &metadata.channel;
    if let Some(other) = previous.and_then(|i| i.channel_of(version)) {
        if other != channel {
            bail!(
                "version {version} is already published on channel {other:?}; a version \
                 belongs to one channel: publish a new version on {channel:?}"
            );
        }
    }

    tracing::info!(entries = tree.entries.len(), "hashing the input");
    let plan = ReleasePlan::build(&tree, repo.root())?;
    let manifest_path = layout::manifest(version);
    if let Some(pin) = previous.and_then(|i| i.release(channel, version)) {
        let published = repo.read_manifest(pin, version, &trust)?;
        let candidate = publication::build_manifest(&plan, &metadata, |digest| {
            plan.contents[digest]
                .stored
                .clone()
                .unwrap_or_else(|| publication::placeholder_object(digest))
        });
        if publication::same_release(published.manifest(), &candidate) {
            return Ok(ReleaseOutcome::AlreadyPublished {
                version: version.clone(),
            });
        }
        let mut differences = publication::release_differences(published.manifest(), &candidate);
        if differences.is_empty() {
            differences.push("reserved manifest sections differ".into());
        }
        bail!(
            "version {version} is already published on channel {channel:?} with different \
             content ({}); published versions never change: publish a new version",
            differences.join(", ")
        );
    }
    if repo.exists(&manifest_path) {
        // No signed index pins it, so no node can have used it.
        errln!(
            "note: replacing {}, left by an interrupted publication (index.json does not list it)",
            repo.path(&manifest_path).display()
        );
    }

    let bases = read_bases(&repo, &trust, previous, channel, version, &args.delta_from)?;
    let pairs = deltas::plan_pairs(&plan, &bases);

    tracing::info!(
        missing = plan.missing().count(),
        pairs = pairs.len(),
        "storing objects and computing deltas"
    );
    let (stored, computed) = store_and_compute(args, &repo, &plan, &pairs)?;
    let mut manifest =
        publication::build_manifest(&plan, &metadata, |digest| stored.objects[digest].clone());
    publication::attach_deltas(&mut manifest, &computed.by_target);
    manifest.delta_report = deltas::delta_report(&manifest, &bases);
    manifest
        .validate()
        .context("internal error: the new manifest does not validate")?;
    let manifest_bytes = to_canonical_json(&manifest).context("cannot serialise the manifest")?;
    let manifest_signature = trust.sign(
        Role::Manifests,
        &keys,
        &manifest_bytes,
        &manifest_path,
        created.as_second(),
    )?;
    let pin = ManifestRef {
        path: manifest_path.clone(),
        sha256: Sha256Digest::of(&manifest_bytes),
        size: manifest_bytes.len() as u64,
        created,
    };

    let index = publication::next_index(previous, channel, version, pin, created, expires)?;
    index
        .validate()
        .context("internal error: the new index does not validate")?;
    let index_bytes = to_canonical_json(&index).context("cannot serialise the index")?;
    if index_bytes.len() as u64 > MAX_INDEX_BYTES {
        bail!(
            "the new index.json would be {} bytes, more than the {MAX_INDEX_BYTES} nodes accept: \
             nothing was published (new objects were stored and will be reused)",
            index_bytes.len()
        );
    }
    let index_signature = trust.sign(
        Role::Index,
        &keys,
        &index_bytes,
        layout::INDEX,
        created.as_second(),
    )?;

    repo.write_atomic(&manifest_path, &manifest_bytes)?;
    repo.write_atomic(&layout::signature_of(&manifest_path), &manifest_signature)?;
    x509::write_signature(&repo, &manifest_path, &manifest_bytes, x509.as_ref())?;
    x509::write_signature(&repo, layout::INDEX, &index_bytes, x509.as_ref())?;
    repo.write_atomic(&layout::signature_of(layout::INDEX), &index_signature)?;
    repo.write_atomic(layout::INDEX, &index_bytes)?;

    Ok(ReleaseOutcome::Published(ReleaseSummary {
        version: version.clone(),
        channel: channel.clone(),
        files: plan.file_count(),
        content_bytes: plan.content_bytes(),
        new_objects: stored.new_objects,
        new_object_bytes: stored.new_bytes,
        reused_objects: stored.reused_objects,
        new_deltas: computed.written,
        new_delta_bytes: computed.written_bytes,
        reused_deltas: computed.reused,
        dropped_deltas: computed.dropped,
        delta_report: manifest.delta_report.clone(),
        serial: index.serial,
        expires,
    }))
}

/// The verified manifests of the base versions `--delta-from` selects.
fn read_bases(
    repo: &Repository,
    trust: &RepoTrust,
    index: Option<&Index>,
    channel: &str,
    version: &Version,
    from: &DeltaFrom,
) -> anyhow::Result<Vec<BaseRelease>> {
    let versions = deltas::base_versions(index, channel, version, from)?;
    let Some(index) = index else {
        return Ok(Vec::new());
    };
    versions
        .iter()
        .map(|base| {
            let pin = index
                .channel_of(base)
                .and_then(|c| index.release(c, base))
                .expect("base versions are published");
            let manifest = repo.read_manifest(pin, base, trust)?;
            Ok(BaseRelease::from_manifest(manifest.manifest()))
        })
        .collect()
}

/// Stores the new objects and computes (or reuses) the deltas of `pairs`,
/// as one queue on the current rayon pool ([`schedule`]); then keeps the
/// deltas worth it.
fn store_and_compute(
    args: &ReleaseArgs,
    repo: &Repository,
    plan: &ReleasePlan,
    pairs: &[DeltaPair],
) -> anyhow::Result<(StoredObjects, ComputedDeltas)> {
    let sources: BTreeMap<Sha256Digest, PathBuf> = plan
        .contents
        .iter()
        .map(|(digest, content)| (*digest, content.source.clone()))
        .collect();
    let budget = MemoryBudget::new(
        args.delta_memory
            .map_or_else(budget::default_budget, |mib| mib << 20),
    );
    let settings = DeltaSettings {
        level: args.delta_level,
        max_window_log: args.delta_window_log,
        algorithms: DeltaSettings::DEFAULT.algorithms,
    };
    let inputs = DeltaInputs {
        repo_root: repo.root(),
        pairs,
        sources: &sources,
        settings: &settings,
        budget: &budget,
    };
    // Each result carries what it belongs to, so sorting them needs no
    // pairing with the task list.
    enum Done {
        Object((Sha256Digest, ObjectRef)),
        Pair(usize, Option<FoundPatch>),
    }
    let tasks = schedule::tasks(plan, pairs);
    let done = schedule::run_in_order(&tasks, |task| -> anyhow::Result<Done> {
        Ok(match *task {
            Task::Object(digest) => {
                Done::Object(plan.store_one(repo.root(), &digest, args.zstd_level)?)
            }
            Task::Pair(i) => Done::Pair(i, deltas::compute_pair(&inputs, &pairs[i])?),
        })
    })?;
    let mut written = Vec::new();
    let mut found: Vec<Option<FoundPatch>> = vec![None; pairs.len()];
    for done in done {
        match done {
            Done::Object(object) => written.push(object),
            Done::Pair(i, patch) => found[i] = patch,
        }
    }
    let stored = plan.stored(repo.root(), written)?;
    let object_sizes: BTreeMap<Sha256Digest, u64> = stored
        .objects
        .iter()
        .map(|(digest, object)| (*digest, object.size))
        .collect();
    let computed = deltas::keep(repo.root(), pairs, found, &object_sizes)?;
    Ok((stored, computed))
}

/// A repository inside the input would publish itself, and an input inside
/// the repository would be served as repository content.
fn refuse_overlap(input_dir: &Path, repo: &Path) -> anyhow::Result<()> {
    let canonical =
        |p: &Path| fs::canonicalize(p).with_context(|| format!("cannot resolve {}", p.display()));
    let (input_dir, repo) = (canonical(input_dir)?, canonical(repo)?);
    if repo.starts_with(&input_dir) || input_dir.starts_with(&repo) {
        bail!(
            "the input directory {} and the repository {} overlap: keep them apart",
            input_dir.display(),
            repo.display()
        );
    }
    Ok(())
}
