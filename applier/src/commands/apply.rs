//! `ferry apply`: verify, plan, then — journaled — fetch, stage, switch,
//! check, record, prune.

use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use manifests::VerifiedManifest;
use semver::Version;
use serde_json::json;

use crate::config::{Config, InstallMode};
use crate::coordination::{Fleet, Turn};
use crate::error::{NodeError, Refusal, Result};
use crate::events;
use crate::journal::{Journal, Step};
use crate::lifecycle::{GoLiveFailure, Transition};
use crate::lock::StateLock;
use crate::patching::{self, Arrival};
use crate::plan::{human_bytes, UpdatePlan};
use crate::policy::{Gate, Policy, PolicyError};
use crate::release_dir::Depth;
use crate::sources::Sources;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome, Transfer};
use crate::store::ContentStore;
use crate::trust::{self, TrustedState};
use crate::{
    bases, converge, faults, in_place, installed, kept_manifests, migrations, recovery,
    release_dir, retention, switch,
};

pub struct ApplyArgs {
    pub version: Option<Version>,
    pub dry_run: bool,
    pub allow_downgrade: bool,
    /// Apply from this offline bundle (a tar) instead of `repository.url`.
    pub bundle: Option<std::path::PathBuf>,
    /// Run by the timer, not an operator: `[policy]` windows, blackout
    /// dates, soak and `auto` decide whether to install now.
    pub unattended: bool,
    /// Install `version` (or the channel's latest) whatever `[policy]`
    /// pin, max_version and exclude_versions say.
    pub ignore_policy: bool,
}

pub fn run(config: &Config, args: &ApplyArgs) -> Result<()> {
    // A bundle is checked whole before anything is written — not even the
    // lock file or a failed operation in the history — so a rejected bundle
    // leaves the node exactly as it was.
    let bundle = match &args.bundle {
        Some(path) => Some(crate::bundle::BundleTransport::open(path)?),
        None => None,
    };
    // A dry run is read-only: no lock (a concurrent apply must not see it
    // as busy), no recovery, nothing created.
    let _lock = if args.dry_run {
        None
    } else {
        let lock = StateLock::acquire(&config.install.state_dir)?;
        super::announce_recovery(recovery::recover(config, &lock)?);
        Some(lock)
    };
    let started = Timestamp::now();
    let from = installed::version(config)?;
    let mut target = args.version.clone();
    let fleet = crate::coordination::Fleet::from_config(config)?;
    match prepare(config, args, bundle, from.clone(), &mut target) {
        Ok(Prepared::Update(update)) => {
            let mut turn = None;
            let result = execute(config, from, *update, fleet.as_ref(), &mut turn);
            // Still held: the update failed during its turn.
            if let (Some(turn), Err(e)) = (turn, &result) {
                turn.finish(Err(e));
            }
            result
        }
        Ok(Prepared::AlreadyCurrent) => {
            // So that a leader waiting on this follower sees it is done.
            if let Some(fleet) = &fleet {
                if let Err(e) = fleet.report_version(from.as_ref()) {
                    errln!("ferry: warning: {e}");
                }
            }
            Ok(())
        }
        // A deferral is the policy working, not a failure: nothing is
        // recorded and the timer's run ends with 0.
        Ok(Prepared::DryRun | Prepared::Deferred) => Ok(()),
        Err(e) => {
            // Stopped before the journal began: nothing changed, but the
            // operator should see why in `status` and `history`. A refused
            // request is told apart from a failure there, and announces no
            // `failed` (see `crate::announce`).
            let outcome = match e {
                NodeError::Refused(_) => Outcome::Refused,
                _ => Outcome::Failed,
            };
            let mut node = NodeState::load(&config.install.state_dir).unwrap_or_default();
            let operation = Operation {
                id: None,
                operation: OperationKind::Apply,
                from_version: from,
                to_version: target,
                outcome,
                started_at: started,
                finished_at: Timestamp::now(),
                message: e.to_string(),
                bytes_downloaded: 0,
                transfer: Default::default(),
            };
            let _ = state::record(&config.install.state_dir, &mut node, operation.clone());
            crate::announce::operation_finished(config, &operation);
            Err(e)
        }
    }
}

enum Prepared {
    Update(Box<Update>),
    AlreadyCurrent,
    DryRun,
    /// An unattended run the policy holds back for now.
    Deferred,
}

/// Everything verified and decided, nothing written yet.
struct Update {
    sources: Sources,
    manifest: VerifiedManifest,
    /// When `manifest` was verified (the node's clock): kept with it, so a
    /// node requiring X.509 alone can re-verify it at that time later.
    verified_at: Timestamp,
    plan: UpdatePlan,
    store: ContentStore,
    /// In-place mode: the writes to make.
    changeset: Option<Vec<converge::DesiredEntry>>,
}

fn prepare(
    config: &Config,
    args: &ApplyArgs,
    bundle: Option<crate::bundle::BundleTransport>,
    from: Option<Version>,
    target_out: &mut Option<Version>,
) -> Result<Prepared> {
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
    let keys = keys.update(&sources, state_dir, &mut trusted, now, !args.dry_run)?;

    // With mirrors: every source's index is verified, the highest serial wins.
    let index = sources.fetch_index(|source| trust::fetch_index(source, &keys, &trusted, now))?;
    // Recorded before anything can return (deferral, nothing to do, a
    // refusal): a run that stops here must still refuse this index's
    // predecessors later. A dry run records nothing, and neither does a
    // node that has trusted nothing yet until its update goes ahead (below),
    // so a refused first run leaves no trust state behind.
    if !args.dry_run && TrustedState::recorded(state_dir) {
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
    let Some(target) = choose_target(&policy, args, channel, channel_index, from.as_ref())? else {
        return Ok(Prepared::AlreadyCurrent);
    };
    *target_out = Some(target.clone());
    if let Some(current) = &from {
        if target < *current && !args.allow_downgrade {
            return Err(Refusal::Downgrade {
                target,
                installed: current.clone(),
            }
            .into());
        }
    }
    let manifest = sources.fetch_manifest(&manifests::layout::manifest(&target), |source| {
        trust::fetch_manifest(source, &keys, index.index(), channel, &target, now)
    })?;
    trust::check_supported(manifest.manifest())?;
    // An applied migration edited since is refused now, before anything
    // is fetched or staged (apply_pending checks again before running).
    crate::migrations::pending(state_dir, manifest.manifest())?;
    if args.unattended && from.as_ref() != Some(&target) {
        let created = index
            .index()
            .release(channel, &target)
            .map(|pin| pin.created)
            .ok_or_else(|| {
                NodeError::verification(format!("{target} is not pinned in the index"))
            })?;
        let mut facts = super::release_facts(config, manifest.manifest(), created)?;
        if args.version.is_some() {
            // The operator named it: a release rolled back here is tried again.
            facts.rolled_back_here = None;
        }
        if let Gate::Deferred {
            reason,
            next_allowed_at,
        } = policy.gate(&facts, now)
        {
            events::say(policy.describe_deferral(&target, &reason, next_allowed_at));
            events::emit(
                events::Event::Deferred,
                json!({
                    "version": target.to_string(),
                    "reason": reason,
                    "next_allowed_at": next_allowed_at.map(|t| t.to_string()),
                }),
            );
            return Ok(Prepared::Deferred);
        }
    }
    if let (Some(min), Some(current)) = (&manifest.manifest().min_upgrade_from, &from) {
        if current < min {
            return Err(Refusal::TooOldToUpgrade {
                target,
                min: min.clone(),
                installed: current.clone(),
            }
            .into());
        }
    }
    // In-place: the exact writes, refused now if any falls outside targets.
    let changeset = match config.install.mode {
        InstallMode::Symlink => None,
        InstallMode::InPlace => {
            // Migration scripts run from a complete staged release tree
            // before it goes live; in place there is no such tree.
            if !manifest.manifest().migrations.is_empty() {
                return Err(NodeError::Other(format!(
                    "release {target} ships data migrations, which ferry runs only in symlink \
                     mode (install.mode = \"symlink\"): in-place mode has no staged release to \
                     run them from before the files change; install it on a node in symlink \
                     mode, or run its migrations/ scripts by hand"
                )));
            }
            let keys = config.trusted_keys()?;
            let old = match &from {
                Some(v) => Some(kept_manifests::load(state_dir, v, &keys)?),
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
    let target_missing = changeset.is_none() && !release.exists();
    if target_missing && from.as_ref() == Some(&target) {
        events::say(format!(
            "{} is missing: rebuilding {target} from verified content",
            release.display()
        ));
    }
    if from.as_ref() == Some(&target) && !target_missing {
        let (checked, problems) = match &changeset {
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
        if problems.is_empty() {
            if !args.dry_run {
                trusted.accept_index(&index, state_dir)?;
            }
            events::say(format!("already at {target}: nothing to do"));
            events::emit(
                events::Event::UpToDate,
                json!({ "version": target.to_string() }),
            );
            return Ok(Prepared::AlreadyCurrent);
        }
        return Err(NodeError::Other(format!(
            "the running release {target} differs from its signed manifest:\n  {}\nrestore it from its package or remove the changes; ferry will not overwrite the running tree",
            problems.join("\n  ")
        )));
    }

    // Looked at, not created, until the pre-flight checks pass: a refused
    // update leaves no store or downloads behind.
    let store = ContentStore::at(state_dir);
    let held = held_contents(&store, manifest.manifest())?;
    let bases = bases::locate(config, &store, manifest.manifest(), &held, from.as_ref())?;
    let plan = UpdatePlan::compute(manifest.manifest(), from.clone(), &held, &bases);
    if args.dry_run {
        events::say(&plan);
        events::say("dry run: nothing changed");
        events::emit(events::Event::DryRun, plan_fields(&plan));
        return Ok(Prepared::DryRun);
    }
    // Disk space, memory and the release's requirements, every failure
    // listed; nothing has been written to the install root yet.
    crate::preflight::run(config, manifest.manifest(), &plan).refuse_failures(&target)?;
    trusted.accept_index(&index, state_dir)?;
    let store = ContentStore::open(state_dir)?;
    Ok(Prepared::Update(Box::new(Update {
        sources,
        manifest,
        verified_at: now,
        plan,
        store,
        changeset,
    })))
}

/// With `fleet`, the node waits for its turn after staging and before
/// `pre_apply`; the turn is left in `turn` until it is finished.
fn execute<'a>(
    config: &Config,
    from: Option<Version>,
    update: Update,
    fleet: Option<&'a Fleet>,
    turn: &mut Option<Turn<'a>>,
) -> Result<()> {
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let Update {
        sources,
        manifest,
        verified_at,
        plan,
        store,
        changeset,
    } = update;
    let target = plan.to.clone();
    let release = release_dir::release_path(root, &target);
    let mut journal = Journal::begin(
        state_dir,
        OperationKind::Apply,
        from.clone(),
        target.clone(),
    )?;

    let versions = events::versions(from.as_ref(), &target);
    events::emit(
        events::Event::Plan,
        events::with(versions.clone(), plan_fields(&plan)),
    );
    let staged = (|| -> Result<()> {
        journal.advance(state_dir, Step::Fetching)?;
        let progress = events::progress(
            "fetching",
            plan.fetches.iter().map(|f| f.planned_bytes()).sum(),
            true,
        );
        if changeset.is_none() {
            release_dir::clean_leftovers(root)
                .map_err(|e| NodeError::io("cannot clean leftovers of an earlier run", e))?;
        }
        journal.transfer.bytes_full_equivalent = plan.full_download_bytes();
        for fetch in &plan.fetches {
            let before = journal.bytes_downloaded;
            // With mirrors: the next source when one fails to deliver it.
            let arrival = sources.first_good(&fetch.content.object.path, |source| {
                patching::fetch(&store, source, fetch, &mut journal.bytes_downloaded)
            })?;
            progress.advance(fetch.planned_bytes());
            let t = &mut journal.transfer;
            t.count_fetched(arrival == Arrival::Delta, journal.bytes_downloaded - before);
            match arrival {
                Arrival::Delta => t.deltas_used += 1,
                Arrival::Full => t.full_objects += 1,
                Arrival::FullAfterFailedDelta => {
                    t.full_objects += 1;
                    t.delta_fallbacks += 1;
                }
            }
        }
        drop(progress);
        events::emit(
            events::Event::Fetched,
            json!({ "bytes_downloaded": journal.bytes_downloaded, "deltas_used": journal.transfer.deltas_used, "full_objects": journal.transfer.full_objects }),
        );
        if changeset.is_none() {
            stage_or_reuse(&manifest, &store, root, &release)?;
        }
        kept_manifests::save(state_dir, &manifest, verified_at)?;
        if changeset.is_none() {
            journal.advance(state_dir, Step::Staged)?;
        }
        events::emit(events::Event::Staged, versions.clone());
        Ok(())
    })();
    if let Err(e) = staged {
        // `current` was not touched: record the failure, keep the old release.
        return Err(recovery::fail(config, &mut journal, e));
    }
    if let Some(fleet) = fleet {
        match fleet.take_turn(from.as_ref(), &target) {
            Ok(taken) => *turn = Some(taken),
            Err(e) => return Err(recovery::fail(config, &mut journal, e)),
        }
    }
    let transition = Transition::new(config, from.as_ref(), &target);
    if let Err(e) = transition.pre_apply() {
        let e = NodeError::Other(format!(
            "{e}; the update was stopped before the switch, {} still runs",
            from.as_ref()
                .map_or("nothing".to_string(), |v| v.to_string())
        ));
        return Err(recovery::fail(config, &mut journal, e));
    }
    // The last moment at which stopping changes nothing: make sure the
    // turn taken before `pre_apply` is still this node's.
    if let Some(Err(e)) = turn.as_ref().map(Turn::confirm) {
        if let Some(lost) = turn.take() {
            lost.give_up();
        }
        let e = NodeError::Other(format!(
            "{e}; {} still runs",
            from.as_ref()
                .map_or("nothing".to_string(), |v| v.to_string())
        ));
        return Err(recovery::fail(config, &mut journal, e));
    }

    if let Some(entries) = changeset {
        in_place::switch(config, &mut journal, &store, entries)?;
        let transfer = describe_transfer(journal.bytes_downloaded, &journal.transfer);
        recovery::conclude(
            config,
            &mut journal,
            Outcome::Success,
            format!("updated to {target}"),
        )?;
        events::say(format!(
            "updated {} -> {target} in place ({transfer})",
            from.map_or("nothing".to_string(), |v| v.to_string()),
        ));
        events::emit(events::Event::Applied, applied_fields(versions, &journal));
        if let Some(turn) = turn.take() {
            turn.finish(Ok(()));
        }
        return in_place::finish(config);
    }
    // --- Migrations (issue 6; the lead refines this with the lifecycle) ---
    // The staged release's pending ups run before `current` moves, so the
    // new code never starts on unmigrated data. A failed up has already had
    // the ups of this run undone by their downs: the old release stays live
    // on the data it knows.
    let migration_env = migrations::operation_env(from.as_ref(), &target);
    let migrated = match migrations::apply_pending(
        state_dir,
        manifest.manifest(),
        &release,
        &migration_env,
        config.migrations.timeout(),
    ) {
        Ok(ids) => ids,
        Err(failure) => {
            let e = NodeError::Other(format!("{target} was not installed: {failure}"));
            return Err(recovery::fail(config, &mut journal, e));
        }
    };
    let revert_migrated = |cause: String| -> String {
        if migrated.is_empty() {
            return cause;
        }
        match migrations::revert(
            state_dir,
            manifest.manifest(),
            &release,
            &migrated,
            &migration_env,
            config.migrations.timeout(),
        ) {
            Ok(()) => format!("{cause}; migrations reverted: {}", migrated.join(", ")),
            Err(e) => format!("{cause}; its migrations could NOT be reverted: {e}"),
        }
    };
    // --- end of migrations ---
    if let Err(e) = switch::switch_to(root, &target) {
        let cause = revert_migrated(format!("cannot switch {} to {target}: {e}", root.display()));
        return Err(recovery::fail(
            config,
            &mut journal,
            NodeError::Other(cause),
        ));
    }
    if let Err(e) = journal.advance(state_dir, Step::Switched) {
        return Err(undo_unrecorded_switch(
            config,
            &mut journal,
            from.as_ref(),
            e,
            &revert_migrated,
        ));
    }
    events::emit(events::Event::Switched, versions.clone());
    let problems = release_dir::verify(manifest.manifest(), &release, Depth::Metadata)
        .map_err(|e| NodeError::io(format!("cannot check {}", release.display()), e))?;
    if !problems.is_empty() {
        journal.advance(state_dir, Step::RollingBack)?;
        let message = recovery::switch_back(
            config,
            &mut journal,
            Outcome::RolledBack,
            &revert_migrated(format!(
                "the live tree does not match its manifest: {}",
                problems.join("; ")
            )),
        )?;
        return Err(NodeError::RolledBack(message));
    }
    journal.advance(state_dir, Step::Verified)?;
    if let Err(failure) = transition.go_live() {
        return Err(roll_back_after_switch(
            config,
            &mut journal,
            &transition,
            &failure,
            &revert_migrated,
        ));
    }
    events::emit(events::Event::Live, versions.clone());
    let transfer = describe_transfer(journal.bytes_downloaded, &journal.transfer);
    recovery::conclude(
        config,
        &mut journal,
        Outcome::Success,
        format!("updated to {target}"),
    )?;
    events::say(format!(
        "updated {} -> {target} ({transfer}; {} reused)",
        from.map_or("nothing".to_string(), |v| v.to_string()),
        human_bytes(plan.reused_bytes)
    ));
    events::emit(events::Event::Applied, applied_fields(versions, &journal));
    if let Some(turn) = turn.take() {
        turn.finish(Ok(()));
    }
    let node = NodeState::load(state_dir)?;
    let current = switch::current_version(root)
        .map_err(|e| NodeError::io("cannot read the current release", e))?;
    retention::prune(config, current.as_ref(), node.previous_version.as_ref())
}

/// The new release is live but failed to go into service: `pre_rollback`,
/// the switch back, the `down`s of the migrations this update ran (newest
/// first, through `revert_migrations`, which returns the cause with what it
/// did), the old release back into service and checked, `post_rollback`,
/// and the outcome recorded as rolled back. The error returned says what
/// failed and in what state the old release is.
fn roll_back_after_switch(
    config: &Config,
    journal: &mut Journal,
    transition: &Transition<'_>,
    failure: &GoLiveFailure,
    revert_migrations: &dyn Fn(String) -> String,
) -> NodeError {
    let state_dir = &config.install.state_dir;
    let root = &config.install.root;
    let mut notes = Vec::new();
    let result = (|| -> Result<String> {
        journal.advance(state_dir, Step::RollingBack)?;
        if let Err(e) = transition.pre_rollback() {
            // The way back matters more than the hook: note it and go on.
            notes.push(e);
        }
        match transition.from {
            Some(from) => switch::switch_to(root, from),
            None => switch::unset(root),
        }
        .map_err(|e| NodeError::io("cannot switch back", e))?;
        faults::point("apply:switched-back");
        // Before the old release starts again: it expects its own schema.
        let cause = revert_migrations(failure.message.clone());
        let restored = transition.restore(failure);
        if !restored.ok {
            tracing::error!(summary = %restored.summary, "the old release did not come back cleanly");
        }
        if let Err(e) = transition.post_rollback() {
            notes.push(e);
        }
        let mut message = format!(
            "update {} -> {} rolled back: {}; {}",
            transition
                .from
                .map_or("nothing".to_string(), |v| v.to_string()),
            transition.to,
            cause,
            restored.summary
        );
        for note in &notes {
            message.push_str(&format!("; {note}"));
        }
        recovery::conclude(config, journal, Outcome::RolledBack, message.clone())?;
        Ok(message)
    })();
    match result {
        Ok(message) => NodeError::RolledBack(message),
        Err(e) => e,
    }
}

/// The switch happened, but the journal could not say so (a full
/// `state_dir`). No service has picked the new release up yet, so the
/// switch is undone at once and this update's migrations reverted, rather
/// than leaving `current` on a release nothing runs. If even the switch
/// back fails, the journal stays open: the next ferry run finds `current`
/// on the target and puts it into service.
fn undo_unrecorded_switch(
    config: &Config,
    journal: &mut Journal,
    from: Option<&Version>,
    error: NodeError,
    revert_migrations: &dyn Fn(String) -> String,
) -> NodeError {
    let root = &config.install.root;
    let target = journal.to_version.clone();
    let back = match from {
        Some(from) => switch::switch_to(root, from),
        None => switch::unset(root),
    };
    let runs = from.map_or("nothing".to_string(), |v| v.to_string());
    match back {
        Ok(()) => {
            let undone = revert_migrations(format!(
                "switched back: {target} was not installed, {runs} still runs"
            ));
            let error = NodeError::SwitchNotRecorded {
                cause: Box::new(error),
                undone,
            };
            recovery::fail(config, journal, error)
        }
        Err(e) => NodeError::SwitchNotRecorded {
            cause: Box::new(error),
            undone: format!(
                "could NOT switch back to {runs} ({e}): `current` names {target}; the next ferry run finishes or undoes the update"
            ),
        },
    }
}

/// The plan, for the `plan` and `dry_run` events.
fn plan_fields(plan: &UpdatePlan) -> serde_json::Value {
    json!({
        "fetches": plan.fetches.len(),
        "deltas": plan.fetches.iter().filter(|f| f.delta().is_some()).count(),
        "download_bytes": plan.download_bytes(),
        "full_download_bytes": plan.full_download_bytes(),
        "reused_bytes": plan.reused_bytes,
    })
}

fn applied_fields(versions: serde_json::Value, journal: &Journal) -> serde_json::Value {
    events::with(
        versions,
        json!({
            "bytes_downloaded": journal.bytes_downloaded,
            "deltas_used": journal.transfer.deltas_used,
            "delta_fallbacks": journal.transfer.delta_fallbacks,
            "full_objects": journal.transfer.full_objects,
        }),
    )
}

/// The release to install: `--version` or the highest the policy's version
/// rules allow (both unchecked with `--ignore-policy`). `None`: nothing
/// newer is allowed, said on stdout. A `--version` the channel does not
/// publish, or the policy does not allow, is refused.
fn choose_target(
    policy: &Policy,
    args: &ApplyArgs,
    channel: &str,
    channel_index: &manifests::index::ChannelIndex,
    from: Option<&Version>,
) -> Result<Option<Version>> {
    if let Some(version) = &args.version {
        if !channel_index.releases.contains_key(&version.to_string()) {
            return Err(Refusal::UnknownVersion {
                version: version.clone(),
                channel: channel.to_string(),
                published: channel_index.releases.keys().cloned().collect(),
            }
            .into());
        }
    }
    if args.ignore_policy {
        return Ok(Some(
            args.version
                .clone()
                .unwrap_or_else(|| channel_index.latest.clone()),
        ));
    }
    let target = policy
        .choose_target(channel_index, from, args.version.as_ref())
        .map_err(|e| match e {
            PolicyError::VersionRefused { version, reason } => {
                Refusal::Policy { version, reason }.into()
            }
            PolicyError::Config(message) => NodeError::Other(message),
        })?;
    if target.is_none() {
        let from = from.map_or("nothing".to_string(), |v| v.to_string());
        let latest = &channel_index.latest;
        if policy.has_version_rules() {
            events::say(format!(
                "nothing to install: no release newer than {from} satisfies {} (the channel's latest is {latest})",
                policy.describe_version_rules(),
            ));
        } else {
            events::say(format!("nothing to install: the installed {from} is newer than the channel's latest {latest}"));
        }
    }
    if target.is_none() {
        events::emit(
            events::Event::UpToDate,
            json!({ "version": from.map(|v| v.to_string()) }),
        );
    }
    Ok(target)
}

/// "812.0 KiB downloaded: 3 deltas, 1 full; 41.2 MiB without deltas".
fn describe_transfer(downloaded: u64, t: &Transfer) -> String {
    let mut text = format!(
        "{} downloaded: {} deltas, {} full",
        human_bytes(downloaded),
        t.deltas_used,
        t.full_objects
    );
    if t.delta_fallbacks > 0 {
        text.push_str(&format!(" ({} after a failed delta)", t.delta_fallbacks));
    }
    text.push_str(&format!(
        "; {} without deltas",
        human_bytes(t.bytes_full_equivalent)
    ));
    text
}

/// Contents of `manifest` that the store already holds, verified.
pub(crate) fn held_contents(
    store: &ContentStore,
    manifest: &manifests::Manifest,
) -> Result<BTreeSet<manifests::Sha256Digest>> {
    let mut held = BTreeSet::new();
    for content in manifest.files.iter().filter_map(|f| f.content()) {
        if !held.contains(&content.sha256) && store.holds(&content.sha256, content.size)? {
            held.insert(content.sha256);
        }
    }
    Ok(held)
}

/// A release directory left from earlier (say, before a rollback) is reused
/// only if it still matches its manifest; otherwise it is rebuilt.
fn stage_or_reuse(
    manifest: &VerifiedManifest,
    store: &ContentStore,
    root: &Path,
    release: &Path,
) -> Result<()> {
    if release.exists() {
        let problems = release_dir::verify(manifest.manifest(), release, Depth::Content)
            .map_err(|e| NodeError::io(format!("cannot check {}", release.display()), e))?;
        if problems.is_empty() {
            return Ok(());
        }
        tracing::warn!(release = %release.display(), problems = problems.len(), "release on disk differs from its manifest; rebuilding it");
        release_dir::remove_tree(release)
            .map_err(|e| NodeError::io(format!("cannot remove {}", release.display()), e))?;
    }
    release_dir::stage(manifest.manifest(), store, root)?;
    Ok(())
}
