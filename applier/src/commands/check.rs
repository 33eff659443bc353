//! `ferry check [--json]`: is there an update, and what would it cost?
//!
//! Fetches and verifies the index and the channel's latest manifest exactly
//! as `apply` does (signatures, expiry, the serial this node already
//! trusted), but writes nothing: not even the newer serial, which only an
//! apply records. The download size comes from the signed manifest's
//! `delta_report` for the installed version: what a node on that version
//! downloads (deltas where it holds the base), against the full release.
//!
//! Exit status: 0 when the node runs the latest release, 100
//! ([`EXIT_UPDATE_AVAILABLE`]) when an update is available, so a timer or
//! fleet tool can act on it without parsing output.

use manifests::VerifiedManifest;
use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::error::{NodeError, Result, EXIT_UPDATE_AVAILABLE};
use crate::plan::{human_bytes, saved_percent};
use crate::trust::{self, TrustedState};
use crate::{installed, transport};

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub installed: Option<Version>,
    pub latest: Version,
    pub update_available: bool,
    /// Bytes a node on `installed` downloads to reach `latest` (0 when up
    /// to date; the full release when the manifest has no report for it).
    pub download_bytes: u64,
    /// Bytes of the whole release as full objects.
    pub full_bytes: u64,
    /// Whether `download_bytes` comes from the manifest's delta report.
    pub from_delta_report: bool,
}

pub fn report(config: &Config) -> Result<CheckReport> {
    let manifest = fetch_verified(config, None)?;
    report_for(config, manifest.manifest())
}

/// The verified manifest of `version` (default: the channel's latest),
/// fetched exactly as `apply` fetches it — roots walked, every mirror's
/// index verified, the highest serial chosen — with nothing written: not
/// even the newer serial, which only an apply records. `ferry preflight`
/// uses it too.
pub fn fetch_verified(config: &Config, version: Option<&Version>) -> Result<VerifiedManifest> {
    let state_dir = &config.install.state_dir;
    let channel = &config.repository.channel;
    let keys = config.trusted_keys()?;
    let transport = transport::open(&config.repository)?;
    let mut trusted = TrustedState::load(state_dir)?;
    // Walk the roots in memory only: `check` writes nothing.
    let now = trust::now()?;
    let keys = keys.update(transport.as_ref(), state_dir, &mut trusted, now, false)?;
    // Same source choice as `apply`: every mirror's index verified, the
    // highest serial wins, so `check` reports what `apply` would install.
    let index = crate::mirrors::fetch_index(transport.as_ref(), |source| {
        trust::fetch_index(source, &keys, &trusted, now)
    })?;
    let target = match version {
        Some(v) => v.clone(),
        None => index
            .index()
            .channels
            .get(channel)
            .ok_or_else(|| {
                NodeError::Other(format!(
                    "channel {channel:?} is not in the repository; check repository.channel"
                ))
            })?
            .latest
            .clone(),
    };
    crate::mirrors::fetch_manifest(
        transport.as_ref(),
        &manifests::layout::manifest(&target),
        |source| trust::fetch_manifest(source, &keys, index.index(), channel, &target, now),
    )
}

fn report_for(config: &Config, manifest: &manifests::Manifest) -> Result<CheckReport> {
    let latest = manifest.version.clone();
    let installed = installed::version(config)?;
    let update_available = installed.as_ref().is_none_or(|v| *v < latest);
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
        update_available,
        download_bytes,
        full_bytes,
        from_delta_report: update_available && item.is_some(),
    })
}

/// Runs the check and returns the exit status to end with.
pub fn run(config: &Config, json: bool) -> Result<u8> {
    super::recover_if_idle(config)?;
    let r = report(config)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("the check report serialises")
        );
    } else {
        let installed = r
            .installed
            .as_ref()
            .map_or("nothing".to_string(), |v| v.to_string());
        println!("installed: {installed}");
        println!("latest:    {}", r.latest);
        if !r.update_available {
            println!("up to date");
        } else {
            println!("update available: {installed} -> {}", r.latest);
            if r.from_delta_report {
                println!(
                    "download:  {} of {} for the full release ({} saved by deltas)",
                    human_bytes(r.download_bytes),
                    human_bytes(r.full_bytes),
                    saved_percent(r.download_bytes, r.full_bytes)
                );
            } else if r.installed.is_none() {
                println!(
                    "download:  {} (the full release)",
                    human_bytes(r.full_bytes)
                );
            } else {
                println!(
                    "download:  no delta report for {installed}: full download {}",
                    human_bytes(r.full_bytes)
                );
            }
        }
    }
    Ok(if r.update_available {
        EXIT_UPDATE_AVAILABLE
    } else {
        0
    })
}
