//! Signed manifests of the releases on disk, kept under
//! `state_dir/manifests/`. They are stored with their signatures and
//! re-verified on every read: a rollback trusts a release tree only as far
//! as a signed manifest vouches for it.

use std::path::Path;

use manifests::{layout, TrustedKeys, VerifiedManifest};
use semver::Version;

use crate::durable;
use crate::error::{NodeError, Result};
use crate::state::kept_manifest_path;

pub fn save(state_dir: &Path, manifest: &VerifiedManifest) -> Result<()> {
    let path = kept_manifest_path(state_dir, &manifest.manifest().version);
    let dir = path.parent().expect("kept manifests live in a directory");
    durable::create_dir_all(dir, 0o755)
        .map_err(|e| NodeError::io(format!("cannot create {}", dir.display()), e))?;
    let sig = std::path::PathBuf::from(layout::signature_of(&path.to_string_lossy()));
    let write = |p: &Path, data: &[u8]| {
        durable::write_atomic(p, data, 0o644)
            .map_err(|e| NodeError::io(format!("cannot write {}", p.display()), e))
    };
    write(&sig, manifest.signature())?;
    write(&path, manifest.bytes())
}

pub fn load(state_dir: &Path, version: &Version, keys: &TrustedKeys) -> Result<VerifiedManifest> {
    let path = kept_manifest_path(state_dir, version);
    let sig = std::path::PathBuf::from(layout::signature_of(&path.to_string_lossy()));
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            NodeError::io(
                format!(
                    "cannot read the kept manifest {} (needed to verify release {version})",
                    p.display()
                ),
                e,
            )
        })
    };
    Ok(VerifiedManifest::verify_unpinned(
        read(&path)?,
        read(&sig)?,
        keys,
        version,
    )?)
}

pub fn remove(state_dir: &Path, version: &Version) {
    let path = kept_manifest_path(state_dir, version);
    let _ = std::fs::remove_file(layout::signature_of(&path.to_string_lossy()));
    let _ = std::fs::remove_file(&path);
}

/// Every content the kept manifests reference: what the store keeps for
/// releases this node can still switch back to. Parsed without signature
/// checks — it only decides what not to delete.
pub fn referenced_contents(
    state_dir: &Path,
) -> std::collections::BTreeSet<manifests::Sha256Digest> {
    let mut contents = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join("manifests")) else {
        return contents;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<manifests::Manifest>(&b).ok());
            if let Some(manifest) = parsed {
                contents.extend(
                    manifest
                        .files
                        .iter()
                        .filter_map(|f| f.content())
                        .map(|c| c.sha256),
                );
            }
        }
    }
    contents
}

/// Versions whose manifests are kept.
pub fn versions(state_dir: &Path) -> Vec<Version> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("manifests")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")?.parse().ok()
        })
        .collect()
}
