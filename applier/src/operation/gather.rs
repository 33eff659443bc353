//! An update's I/O in: the repository's roots, index and the target's
//! manifest, each verified; the node's installed release, store and
//! pre-flight facts. Each rule of [`super::decide`] is asked as soon as its
//! facts are in, so a refused or deferred run fetches no more than it must
//! and writes nothing but the trust state it verified.

use semver::Version;
use serde_json::json;

use crate::config::{Config, InstallMode};
use crate::converge;
use crate::error::{NodeError, Refusal, Result};
use crate::events;
use crate::plan::UpdatePlan;
use crate::policy::Gate;
use crate::release_dir::{self, Depth};
use crate::sources::Sources;
use crate::store::ContentStore;
use crate::trust::{self, TrustedState};
use crate::{bases, in_place, kept_manifests};

use super::decide::{self, Request, Target};
use super::run::Staging;

/// What gathering found.
pub enum Gathered {
    /// Verified, decided and pre-flighted: nothing written yet but trust
    /// state. `entries`: in place, the writes to make.
    Update(Box<(Staging, Option<Vec<converge::DesiredEntry>>)>),
    /// The installed release is the one to have, and it is intact.
    AlreadyCurrent,
    /// `--dry-run`: the plan was printed.
    DryRun,
    /// An unattended run the policy holds back for now.
    Deferred,
}

/// Whether an unattended run may install the release `facts` describe
/// now: the policy's gate, then for a fleet's leader whether its followers
/// are done (read from etcd; any doubt is an error, as in the turn
/// itself). `ferry check` asks exactly this, so it says what `apply
/// --unattended` will do.
pub fn unattended_gate(
    config: &Config,
    policy: &crate::policy::Policy,
    request: &Request,
    facts: crate::policy::ReleaseFacts,
    now: jiff::Timestamp,
) -> Result<Gate> {
    let version = facts.version.clone();
    let gate = decide::gate(policy, request, facts, now);
    if gate != Gate::Open || !request.unattended {
        return Ok(gate);
    }
    let behind = match crate::coordination::Fleet::from_config(config)? {
        Some(fleet) => fleet.followers_keeping_the_leader(&version)?,
        None => None,
    };
    Ok(decide::leader_gate(gate, behind))
}

/// Everything before the journal. `target_out` is set as soon as the
/// target is known, so a refusal after that can name it in history.
pub fn gather(
    config: &Config,
    request: &Request,
    dry_run: bool,
    bundle: Option<crate::bundle::BundleTransport>,
    from: Option<&Version>,
    target_out: &mut Option<Version>,
) -> Result<Gathered> {
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let channel = &config.repository.channel;
    let keys = config.trusted_keys()?;
    // A bundle is one more source, the only one: verified exactly like a
    // repository.
    let sources = match bundle {
        Some(bundle) => Sources::bundle(bundle),
        None => Sources::open(&config.repository)?,
    };
    let mut trusted = TrustedState::load(state_dir)?;
    // Follow the repository's roots first: they decide which keys sign the
    // index and manifests. A dry run walks them without saving anything.
    let now = trust::now()?;
    let keys = keys.update(&sources, state_dir, &mut trusted, now, !dry_run)?;

    // With mirrors: every source's index is verified, the highest serial wins.
    let index = sources.fetch_index(|source| trust::fetch_index(source, &keys, &trusted, now))?;
    // Recorded before anything can return (deferral, nothing to do, a
    // refusal): a run that stops here must still refuse this index's
    // predecessors later. A dry run records nothing, and neither does a
    // node that has trusted nothing yet until its update goes ahead (below),
    // so a refused first run leaves no trust state behind.
    if !dry_run && TrustedState::recorded(state_dir) {
        trusted.accept_index(&index, state_dir)?;
    }
    let channel_index =
        index
            .index()
            .channels
            .get(channel)
            .ok_or_else(|| Refusal::UnknownChannel {
                channel: channel.clone(),
                known: index.index().channels.keys().cloned().collect(),
            })?;
    let policy = config.policy()?;
    let target = match decide::target(&policy, request, channel, channel_index, from)? {
        Target::Install(target) => target,
        Target::Nothing(why) => {
            events::say(why);
            events::emit(
                events::Event::UpToDate,
                json!({ "version": from.map(|v| v.to_string()) }),
            );
            return Ok(Gathered::AlreadyCurrent);
        }
    };
    *target_out = Some(target.clone());
    decide::downgrade(&target, from, request.allow_downgrade)?;
    let manifest = sources.fetch_manifest(&manifests::layout::manifest(&target), |source| {
        trust::fetch_manifest(source, &keys, index.index(), channel, &target, now)
    })?;
    trust::check_supported(manifest.manifest())?;
    decide::special_modes(manifest.manifest(), config.install.allow_special_modes)?;
    // An applied migration edited since is refused now, before anything
    // is fetched or staged (apply_pending checks again before running).
    crate::migrations::pending(state_dir, manifest.manifest())?;
    if request.unattended && from != Some(&target) {
        let created = index
            .index()
            .release(channel, &target)
            .map(|pin| pin.created)
            .ok_or_else(|| {
                NodeError::verification(format!("{target} is not pinned in the index"))
            })?;
        let facts = crate::commands::release_facts(config, manifest.manifest(), created)?;
        let gate = unattended_gate(config, &policy, request, facts, now)?;
        if let Some(line) = policy.describe_deferral(&target, &gate) {
            events::say(line);
            events::emit(
                events::Event::Deferred,
                json!({
                    "version": target.to_string(),
                    "reason": gate.reason(),
                    "next_allowed_at": gate.next_allowed_at().map(|t| t.to_string()),
                }),
            );
            return Ok(Gathered::Deferred);
        }
    }
    decide::reachable(manifest.manifest(), from)?;
    // In-place: the exact writes, refused now if any falls outside targets.
    let entries = match config.install.mode {
        InstallMode::Symlink => None,
        InstallMode::InPlace => {
            decide::installable_in_place(manifest.manifest())?;
            let old = match from {
                Some(v) => Some(kept_manifests::load(state_dir, v, &config.trusted_keys()?)?),
                None => None,
            };
            let old = old.as_ref().map(|m| m.manifest());
            Some(in_place::changeset(config, manifest.manifest(), old)?)
        }
    };
    let release = release_dir::release_path(root, &target);
    // Symlink mode: the target's directory is not on disk. For the
    // installed version that means it was deleted from under `current`: it
    // is rebuilt like any update (store, else repository, all verified).
    let target_missing = entries.is_none() && !release.exists();
    if target_missing && from == Some(&target) {
        events::say(format!(
            "{} is missing: rebuilding {target} from verified content",
            release.display()
        ));
    }
    if from == Some(&target) && !target_missing {
        let (checked, problems) = match &entries {
            None => (
                release.clone(),
                release_dir::verify(manifest.manifest(), &release, Depth::Content),
            ),
            Some(entries) => (root.clone(), converge::check(root, entries, true)),
        };
        let problems = problems.map_err(|e| {
            NodeError::io(
                format!(
                    "cannot check the installed {target} in {}",
                    checked.display()
                ),
                e,
            )
        })?;
        decide::installed_tree(&target, &problems)?;
        if !dry_run {
            trusted.accept_index(&index, state_dir)?;
        }
        events::say(format!("already at {target}: nothing to do"));
        events::emit(
            events::Event::UpToDate,
            json!({ "version": target.to_string() }),
        );
        return Ok(Gathered::AlreadyCurrent);
    }

    // Looked at, not created, until the pre-flight checks pass: a refused
    // update leaves no store or downloads behind.
    let store = ContentStore::at(state_dir);
    let held = super::held_contents(&store, manifest.manifest())?;
    let bases = bases::locate(config, &store, manifest.manifest(), &held, from)?;
    let plan = UpdatePlan::compute(manifest.manifest(), from.cloned(), &held, &bases);
    if dry_run {
        events::say(&plan);
        events::say("dry run: nothing changed");
        events::emit(events::Event::DryRun, plan_fields(&plan));
        return Ok(Gathered::DryRun);
    }
    // Disk space, memory and the release's requirements, every failure
    // listed; nothing has been written to the install root yet.
    crate::preflight::run(config, manifest.manifest(), &plan).refuse_failures(&target)?;
    trusted.accept_index(&index, state_dir)?;
    let store = ContentStore::open(state_dir)?;
    Ok(Gathered::Update(Box::new((
        Staging {
            sources,
            manifest,
            verified_at: now,
            plan,
            store,
        },
        entries,
    ))))
}

/// The plan, for the `plan` and `dry_run` events.
pub fn plan_fields(plan: &UpdatePlan) -> serde_json::Value {
    json!({
        "fetches": plan.fetches.len(),
        "deltas": plan.fetches.iter().filter(|f| f.delta().is_some()).count(),
        "download_bytes": plan.download_bytes(),
        "full_download_bytes": plan.full_download_bytes(),
        "reused_bytes": plan.reused_bytes,
    })
}
