//! `ferry check [--json]`: is there an update, may it install now, and what
//! would it cost?
//!
//! The update is the release `[policy]` chooses (the highest the pin,
//! max_version and exclude_versions allow: `target`, which may be below
//! the channel's `latest`), and "now" is what an unattended run (`ferry
//! apply --unattended`, the timer) would decide: windows, blackout dates,
//! soak, the node's rollout wave and `auto` (see `crate::policy`,
//! `crate::waves`).
//!
//! Fetches and verifies the index and the target's manifest exactly
//! as `apply` does (signatures, expiry, the serial this node already
//! trusted), and writes nothing but what it learnt to trust: on a node
//! that has a state directory, the roots it adopted and the newer index
//! serial (`trusted.json`), recorded without the lock and never lowered
//! (`TrustedState::record`), so an older index replayed to the next run is
//! refused whichever command saw the newer one. (With `[[notify]]`
//! receivers of `update_available`, it also remembers the version it
//! announced, in `notified.json`; see `crate::announce`.) The download size comes from the signed manifest's
//! `delta_report` for the installed version: what a node on that version
//! downloads (deltas where it holds the base), against the full release.
//!
//! Exit status, so a timer or fleet tool can act without parsing output:
//! - 0: up to date, or nothing newer that the policy's version rules allow;
//! - 10 ([`Exit::UpdateAvailable`]): an update is available and the policy
//!   allows installing it now;
//! - 11 ([`Exit::UpdateDeferred`]): an update is available but the policy
//!   defers it (`policy_reason`, `next_allowed_at`), or this node is its
//!   fleet's leader and followers are behind (read from etcd, the same
//!   gate as `apply --unattended`: `crate::operation::gather::unattended_gate`);
//! - 8 ([`Exit::Refused`]): `repository.channel` is not in the repository
//!   (the configuration asks for something not on offer, as `ferry apply`
//!   is refused for it).
//!
//! (Not 100 and 101: 101 is what a panicking Rust program exits with, and
//! a deferral must not look like a crash.)

use jiff::Timestamp;
use manifests::VerifiedManifest;
use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Exit, NodeError, Refusal, Result};
use crate::installed;
use crate::operation::decide::Request;
use crate::operation::gather;
use crate::plan::{human_bytes, saved_percent};
use crate::policy::{Gate, ReleaseFacts};
use crate::sources::Sources;
use crate::trust::{self, TrustedState};
use crate::waves::WaveReport;

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub installed: Option<Version>,
    pub latest: Version,
    /// The release `[policy]` chooses; null when none it allows is at or
    /// above `installed`.
    pub target: Option<Version>,
    /// `target` is newer than `installed`.
    pub update_available: bool,
    /// Whether an unattended run may install `target` now.
    pub policy_allows_now: bool,
    /// Why not, when it may not.
    pub policy_reason: Option<String>,
    /// When it may (null when allowed now, or never on its own).
    pub next_allowed_at: Option<Timestamp>,
    /// This node's place in `target`'s rollout waves: `index` (1-based),
    /// `count`, `percent`, `opens_at`, `position` (0-100), `open`; null
    /// when the release has no waves or there is no update.
    pub wave: Option<WaveReport>,
    /// `target` was rolled back on this node by itself (`version`, `at`,
    /// `reason`): unattended runs skip it; null otherwise.
    pub rolled_back_here: Option<crate::rolled_back_here::RolledBackRelease>,
    /// Bytes a node on `installed` downloads to reach `target` (0 when up
    /// to date; the full release when the manifest has no report for it).
    pub download_bytes: u64,
    /// Bytes of the whole release (`target`, else `latest`) as full objects.
    pub full_bytes: u64,
    /// Whether `download_bytes` comes from the manifest's delta report.
    pub from_delta_report: bool,
    /// The gate itself, for the human line.
    #[serde(skip)]
    pub gate: Gate,
}

pub fn report(config: &Config) -> Result<CheckReport> {
    let channel = &config.repository.channel;
    let view = RepositoryView::open(config)?;
    let (index, now) = (&view.index, view.now);
    let channel_index = view.channel(channel)?;
    let latest = channel_index.latest.clone();
    let installed = installed::version(config)?;
    let policy = config.policy()?;
    let target = policy.choose_target(channel_index, installed.as_ref(), None)?;
    let described = target.as_ref().unwrap_or(&latest);
    let manifest = view.manifest(channel, described)?;
    let manifest = manifest.manifest();
    let update_available = target
        .as_ref()
        .is_some_and(|t| installed.as_ref().is_none_or(|v| v < t));
    let mut wave = None;
    let mut rolled_back_here = None;
    let gate = match &target {
        Some(t) => {
            let created = index
                .index()
                .release(channel, t)
                .map(|pin| pin.created)
                .ok_or_else(|| {
                    NodeError::verification(format!("{t} is not pinned in the index"))
                })?;
            // Up to date, a node needs no place in the waves (nor an id).
            let facts = if update_available {
                super::release_facts(config, manifest, created)?
            } else {
                ReleaseFacts {
                    version: t.clone(),
                    created,
                    critical: manifest.critical,
                    wave: None,
                    rolled_back_here: None,
                }
            };
            wave = facts.wave;
            rolled_back_here = facts.rolled_back_here.clone();
            match update_available {
                // Exactly what `apply --unattended` decides.
                true => {
                    let unattended = Request {
                        unattended: true,
                        ..Request::default()
                    };
                    gather::unattended_gate(config, &policy, &unattended, facts, now)?
                }
                false => policy.gate(&facts, now),
            }
        }
        None => Gate::Deferred {
            reason: format!(
                "no release newer than the installed one satisfies {}",
                policy.describe_version_rules()
            ),
            next_allowed_at: None,
        },
    };
    let (policy_allows_now, policy_reason, next_allowed_at) =
        (gate == Gate::Open, gate.reason(), gate.next_allowed_at());
    // Compressed bytes of every distinct content: a node with nothing.
    let mut objects = std::collections::BTreeMap::new();
    for content in manifest.files.iter().filter_map(|f| f.content()) {
        objects.insert(content.sha256, content.object.size);
    }
    let full_from_objects: u64 = objects.values().sum();
    let item = installed
        .as_ref()
        .and_then(|v| manifest.delta_report.iter().find(|r| r.from_version == *v));
    let (download_bytes, full_bytes) = match (update_available, item) {
        (false, _) => (0, full_from_objects),
        (true, Some(r)) => (r.download_bytes, r.full_bytes),
        (true, None) => (full_from_objects, full_from_objects),
    };
    Ok(CheckReport {
        installed,
        latest,
        target,
        update_available,
        policy_allows_now,
        policy_reason,
        next_allowed_at,
        wave: wave.map(|w| w.report(now)),
        rolled_back_here,
        download_bytes,
        full_bytes,
        from_delta_report: update_available && item.is_some(),
        gate,
    })
}

/// The verified manifest of `version` (default: the channel's latest),
/// fetched exactly as `apply` fetches it — roots walked, every mirror's
/// index verified, the highest serial chosen — with nothing written but
/// the trust state (see the module docs). `ferry preflight` uses it too.
///
/// A channel the repository lacks, or a `version` the channel does not
/// publish, is refused (exit 8) before any manifest is fetched, exactly as
/// `ferry apply` refuses them: the request was wrong, not the node.
pub fn fetch_verified(config: &Config, version: Option<&Version>) -> Result<VerifiedManifest> {
    let channel = &config.repository.channel;
    let view = RepositoryView::open(config)?;
    let channel_index = view.channel(channel)?;
    let target = match version {
        Some(v) if !channel_index.releases.contains_key(&v.to_string()) => {
            return Err(Refusal::UnknownVersion {
                version: v.clone(),
                channel: channel.clone(),
                published: channel_index.releases.keys().cloned().collect(),
            }
            .into())
        }
        Some(v) => v.clone(),
        None => channel_index.latest.clone(),
    };
    view.manifest(channel, &target)
}

/// The repository as this node verifies it: the roots walked, every
/// mirror's index verified and the highest serial chosen (the same source
/// choice as `apply`, so `check` reports what `apply` would install). What
/// was verified is recorded only on a node that already has a state
/// directory: a read-only command never creates one.
struct RepositoryView {
    sources: Sources,
    keys: crate::trust::NodeTrust,
    index: manifests::VerifiedIndex,
    now: Timestamp,
}

impl RepositoryView {
    fn open(config: &Config) -> Result<RepositoryView> {
        let state_dir = &config.install.state_dir;
        let sources = Sources::open(&config.repository)?;
        let mut trusted = TrustedState::load(state_dir)?;
        let now = trust::now()?;
        let record = state_dir.is_dir();
        let keys = config
            .trusted_keys()?
            .update(&sources, state_dir, &mut trusted, now, record)?;
        let index =
            sources.fetch_index(|source| trust::fetch_index(source, &keys, &trusted, now))?;
        if record {
            trusted.accept_index(&index, state_dir)?;
        }
        Ok(RepositoryView {
            sources,
            keys,
            index,
            now,
        })
    }

    /// The configured channel; a refusal when the repository lacks it.
    fn channel(&self, channel: &str) -> Result<&manifests::index::ChannelIndex> {
        let channels = &self.index.index().channels;
        channels.get(channel).ok_or_else(|| {
            Refusal::UnknownChannel {
                channel: channel.to_string(),
                known: channels.keys().cloned().collect(),
            }
            .into()
        })
    }

    fn manifest(&self, channel: &str, version: &Version) -> Result<VerifiedManifest> {
        self.sources
            .fetch_manifest(&manifests::layout::manifest(version), |source| {
                trust::fetch_manifest(
                    source,
                    &self.keys,
                    self.index.index(),
                    channel,
                    version,
                    self.now,
                )
            })
    }
}

/// Runs the check and returns the exit status to end with.
pub fn run(config: &Config, json: bool) -> Result<Exit> {
    let r = report(config)?;
    let policy = config.policy()?;
    crate::announce::update_available(config, &r);
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&r).expect("the check report serialises")
        );
    } else {
        let installed = r
            .installed
            .as_ref()
            .map_or("nothing".to_string(), |v| v.to_string());
        outln!("installed: {installed}");
        outln!("latest:    {}", r.latest);
        match &r.target {
            Some(target) if *target != r.latest => outln!(
                "target:    {target} (the newest allowed by {})",
                policy.describe_version_rules()
            ),
            Some(_) => {}
            None if !policy.has_version_rules() => {}
            None => outln!(
                "target:    none (nothing newer satisfies {})",
                policy.describe_version_rules()
            ),
        }
        if !r.update_available {
            outln!("up to date");
        } else {
            let target = r.target.as_ref().expect("an update has a target");
            outln!("update available: {installed} -> {target}");
            if let Some(wave) = &r.wave {
                outln!(
                    "rollout:   wave {} of {} ({}%), {} at {} ({} {}); this node's position: {:.2} of 100",
                    wave.index,
                    wave.count,
                    wave.percent,
                    if wave.open { "opened" } else { "opens" },
                    wave.opens_at,
                    policy.local(wave.opens_at).strftime("%Y-%m-%d %H:%M"),
                    policy.timezone_name,
                    wave.position
                );
            }
            match policy.describe_deferral(target, &r.gate) {
                None => outln!("policy:    allows installing now"),
                Some(line) => outln!("policy:    {line}"),
            }
            if r.from_delta_report {
                outln!(
                    "download:  {} of {} for the full release ({} saved by deltas)",
                    human_bytes(r.download_bytes),
                    human_bytes(r.full_bytes),
                    saved_percent(r.download_bytes, r.full_bytes)
                );
            } else if r.installed.is_none() {
                outln!(
                    "download:  {} (the full release)",
                    human_bytes(r.full_bytes)
                );
            } else {
                outln!(
                    "download:  no delta report for {installed}: full download {}",
                    human_bytes(r.full_bytes)
                );
            }
        }
    }
    Ok(match (r.update_available, r.policy_allows_now) {
        (true, true) => Exit::UpdateAvailable,
        (true, false) => Exit::UpdateDeferred,
        (false, _) => Exit::Success,
    })
}
