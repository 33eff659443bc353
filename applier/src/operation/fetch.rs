//! The table's first move of an update: download what the plan names into
//! the content store (deltas or whole objects, each verified before use,
//! resumable), stage the release tree from the store and keep its signed
//! manifest. Nothing outside `state_dir` and the new release's own
//! directory changes, so a failure here leaves the node as it was.

use std::collections::BTreeSet;
use std::path::Path;

use manifests::VerifiedManifest;
use serde_json::json;

use crate::error::{NodeError, Result};
use crate::events;
use crate::journal::Step;
use crate::kept_manifests;
use crate::patching::{self, Arrival};
use crate::plan::human_bytes;
use crate::release_dir::{self, Depth};
use crate::state::Transfer;
use crate::store::ContentStore;

use super::error::OperationError;
use super::record::fail;
use super::run::{Next, Run};

impl Run<'_> {
    /// `fetching`, then `staged` (symlink mode; in place the switch writes
    /// `staged` once its restore point exists).
    pub(super) fn fetch(&mut self) -> Result<Next> {
        match self.fetch_and_stage() {
            Ok(()) => Ok(Next::Table),
            // `current` was not touched: record the failure, keep the old release.
            Err(e) => Err(fail(self.config, &mut self.journal, e)),
        }
    }

    fn fetch_and_stage(&mut self) -> Result<()> {
        let config = self.config;
        let root = &config.install.root;
        let state_dir = &config.install.state_dir;
        let symlink = self.entries.is_none();
        let Some(staging) = &self.staging else {
            return Err(OperationError::NoPlan.into());
        };
        let journal = &mut self.journal;
        journal.advance(state_dir, Step::Fetching)?;
        let plan = &staging.plan;
        let progress = events::progress(
            "fetching",
            plan.fetches.iter().map(|f| f.planned_bytes()).sum(),
            true,
        );
        if symlink {
            release_dir::clean_leftovers(root).map_err(|e| {
                let releases = root.join("releases");
                let context = format!(
                    "cannot clean leftovers of an earlier run in {}",
                    releases.display()
                );
                NodeError::io(context, e)
            })?;
        }
        journal.transfer.bytes_full_equivalent = plan.full_download_bytes();
        for fetch in &plan.fetches {
            let before = journal.bytes_downloaded;
            // With mirrors: the next source when one fails to deliver it.
            let arrival = staging
                .sources
                .first_good(&fetch.content.object.path, |source| {
                    patching::fetch(&staging.store, source, fetch, &mut journal.bytes_downloaded)
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
        let target = journal.to_version.clone();
        if symlink {
            let release = release_dir::release_path(root, &target);
            stage_or_reuse(&staging.manifest, &staging.store, root, &release)?;
        }
        kept_manifests::save(state_dir, &staging.manifest, staging.verified_at)?;
        if symlink {
            journal.advance(state_dir, Step::Staged)?;
        }
        events::emit(
            events::Event::Staged,
            events::versions(journal.from_version.as_ref(), &target),
        );
        Ok(())
    }

    /// "812.0 KiB downloaded: 3 deltas, 1 full; 41.2 MiB without deltas;
    /// 2.1 MiB reused".
    pub fn describe_transfer(&self) -> String {
        let t: &Transfer = &self.journal.transfer;
        let mut text = format!(
            "{} downloaded: {} deltas, {} full",
            human_bytes(self.journal.bytes_downloaded),
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
        if let (Some(staging), true) = (&self.staging, self.entries.is_none()) {
            text.push_str(&format!(
                "; {} reused",
                human_bytes(staging.plan.reused_bytes)
            ));
        }
        text
    }
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
