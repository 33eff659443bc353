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
