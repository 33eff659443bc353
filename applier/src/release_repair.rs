//! Repairing a kept release (one of `releases/<version>/` that is not
//! live) from verified content, before a switch relies on it and in
//! `ferry repair`.
//!
//! Releases share bytes with the store and with each other (hard links
//! where reflinks are missing), so an edit forced through the live
//! release's file can damage a kept one too. Before a rollback switches,
//! its target is re-hashed against its kept, verified manifest; a damaged
//! file is replaced by a fresh inode placed from the store when the stored
//! object still hashes to its name, else fetched from the repository and
//! verified first. A release that cannot be made whole is never switched to.

use manifests::VerifiedManifest;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::release_dir::{self, Depth};
use crate::sources::Sources;
use crate::store::ContentStore;

/// What repairing one release did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// One line per entry put back (empty: the release was intact).
    pub entries: Vec<String>,
    /// Bytes fetched from the repository for it.
    pub downloaded: u64,
}

/// Makes sure the store holds every content of `manifest`, verified:
/// re-hashes what it has and fetches (verifying) the rest. `sources` is
/// opened only when something must be fetched, so a node whose store is
/// whole needs no repository. Returns the bytes downloaded.
pub fn ensure_contents(
    config: &Config,
    store: &ContentStore,
    sources: &mut Option<Sources>,
    manifest: &VerifiedManifest,
) -> Result<u64> {
    let mut downloaded = 0;
    for entry in &manifest.manifest().files {
        let Some(content) = entry.content() else {
            continue;
        };
        if store.holds(&content.sha256, content.size)? {
            continue;
        }
        if sources.is_none() {
            *sources = Some(Sources::open(&config.repository)?);
        }
        let sources = sources.as_ref().expect("opened above");
        downloaded += sources.fetch_object(store, content, content.mode, entry.path.as_str())?;
    }
    Ok(downloaded)
}

/// Checks `releases/<version>/` by content against its kept manifest and,
/// if it differs, repairs it from verified content. Fails if anything still
/// differs afterwards, listing it.
pub fn check_and_repair(
    config: &Config,
    store: &ContentStore,
    sources: &mut Option<Sources>,
    manifest: &VerifiedManifest,
) -> Result<Repaired> {
    let m = manifest.manifest();
    let dir = release_dir::release_path(&config.install.root, &m.version);
    let read_err = |e| NodeError::io(format!("cannot check {}", dir.display()), e);
    let problems = release_dir::verify(m, &dir, Depth::Content).map_err(read_err)?;
    if problems.is_empty() {
        return Ok(Repaired::default());
    }
    tracing::warn!(release = %dir.display(), problems = problems.len(), "kept release differs from its signed manifest; repairing it");
    let downloaded = ensure_contents(config, store, sources, manifest)?;
    let entries = release_dir::repair(m, store, &dir)
        .map_err(|e| NodeError::io(format!("cannot repair {}", dir.display()), e))?;
    let left = release_dir::verify(m, &dir, Depth::Content).map_err(read_err)?;
    if !left.is_empty() {
        return Err(NodeError::RepairIncomplete { differences: left });
    }
    Ok(Repaired {
        entries,
        downloaded,
    })
}
