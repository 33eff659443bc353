//! Signed manifests of the releases on disk, kept under
//! `state_dir/manifests/`. They are stored with their signatures and
//! re-verified on every read: a rollback trusts a release tree only as far
//! as a signed manifest vouches for it.
//!
//! Which keys re-verify them: the current root's manifests role, or the
//! manifests role of an older root this node trusted (`NodeTrust` keeps
//! them). A manifest kept here was verified at install time under the root
//! trusted then; rotating that root's keys later says nothing against the
//! release, and refusing it would leave a node unable to roll back after
//! every key rotation. Its signature is still checked, against the keys of
//! a root the node itself walked to, so damage or a swapped file is caught.
//!
//! A node requiring X.509 alone keeps `<v>.json.p7s` instead of the
//! `.minisig`, and beside it `<v>.json.verified-at`: the time at which this
//! node verified the manifest. The chain is re-verified at that time, not
//! now (see [`load`] for why that is safe), so a signing certificate that
//! expires after an install does not strand the rollback to that release.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use manifests::{layout, SignatureFormat, VerifiedManifest};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{NodeError, Result};
use crate::state::kept_manifest_path;
use crate::trust::NodeTrust;

/// `<v>.json.verified-at`: when this node verified a kept manifest's CMS
/// signature.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifiedAt {
    verified_at: Timestamp,
}

/// Largest `.verified-at` read back (it is one short line).
const MAX_VERIFIED_AT_BYTES: u64 = 4096;

fn verified_at_path(manifest_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.verified-at", manifest_path.display()))
}

/// Keeps `manifest`, verified at `verified_at`, with the signature that
/// verified it. The manifest itself is written last: `versions` lists what
/// is kept by it, so a crash before leaves no half-kept release.
pub fn save(state_dir: &Path, manifest: &VerifiedManifest, verified_at: Timestamp) -> Result<()> {
    let path = kept_manifest_path(state_dir, &manifest.manifest().version);
    let dir = path.parent().expect("kept manifests live in a directory");
    durable::create_dir_all(dir, 0o755)
        .map_err(|e| NodeError::io(format!("cannot create {}", dir.display()), e))?;
    let format = manifest.signature_format();
    let sig = PathBuf::from(format.file_of(&path.to_string_lossy()));
    let write = |p: &Path, data: &[u8]| {
        durable::write_atomic(p, data, 0o644).map_err(|e| NodeError::writing(p, e))
    };
    if format == SignatureFormat::Cms {
        let record =
            serde_json::to_vec(&VerifiedAt { verified_at }).expect("a timestamp serialises");
        write(&verified_at_path(&path), &record)?;
    }
    write(&sig, manifest.signature())?;
    write(&path, manifest.bytes())
}

/// Reads the kept manifest of `version` and verifies it again.
///
/// With minisign: against the manifests role of any root this node
/// trusted (module docs). With X.509 alone: the `.p7s` over the exact kept
/// bytes, chaining to today's `x509_roots`, with validity dates judged at
/// the recorded `verified_at` rather than now. That is safe because:
/// - this node verified exactly that signature over exactly those bytes at
///   that time, under the anchors it pins, so nothing is accepted that was
///   not accepted then;
/// - the anchors are still the pinned ones: a CA removed from `x509_roots`
///   (the way to revoke it) stops vouching for its old releases too;
/// - tampering with the bytes or the `.p7s` still breaks the signature,
///   and a recorded time later than now is refused, so the file cannot be
///   used to move a not-yet-valid certificate into its validity;
/// - it only serves releases this node installed: it never admits new
///   software, which is always verified at the current time.
///
/// Without the record (it is written before the `.p7s`, so only its
/// deletion leaves a `.p7s` without one) the chain is judged now, which is
/// stricter.
pub fn load(state_dir: &Path, version: &Version, keys: &NodeTrust) -> Result<VerifiedManifest> {
    let path = kept_manifest_path(state_dir, version);
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
    if keys.current().is_none() {
        return load_cms(state_dir, version, keys);
    }
    let sig = PathBuf::from(layout::signature_of(&path.to_string_lossy()));
    let (bytes, signature) = (read(&path)?, read(&sig)?);
    let mut first_error = None;
    for role in keys.manifests_roles() {
        match VerifiedManifest::verify_unpinned(bytes.clone(), signature.clone(), role, version) {
            Ok(manifest) => return Ok(manifest),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .expect("a node requiring minisign trusts at least one root")
        .into())
}

/// [`load`] on a node requiring X.509 alone.
fn load_cms(state_dir: &Path, version: &Version, keys: &NodeTrust) -> Result<VerifiedManifest> {
    let path = kept_manifest_path(state_dir, version);
    let p7s = PathBuf::from(layout::cms_signature_of(&path.to_string_lossy()));
    let bytes = std::fs::read(&path).map_err(|e| {
        NodeError::io(
            format!(
                "cannot read the kept manifest {} (needed to verify release {version})",
                path.display()
            ),
            e,
        )
    })?;
    let der = match std::fs::read(&p7s) {
        Ok(der) => der,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::verification(format!(
                "the kept manifest of {version} has no X.509 signature ({} is missing): it was installed while trust.require included \"minisign\", and this node now requires X.509 alone; install {version} again (`ferry apply --version {version} --allow-downgrade`) so it is kept with its .p7s",
                p7s.display()
            )))
        }
        Err(e) => {
            return Err(NodeError::io(
                format!("cannot read {} (needed to verify release {version})", p7s.display()),
                e,
            ))
        }
    };
    let now = crate::trust::now()?;
    let at = match read_verified_at(&path)? {
        Some(at) if at > now => {
            return Err(NodeError::verification(format!(
                "{} records that the manifest of {version} was verified at {at}, later than now ({now}): the clock went back or the file was altered; correct the clock, or install {version} again",
                verified_at_path(&path).display()
            )))
        }
        Some(at) => at,
        None => now,
    };
    let what = layout::manifest(version);
    VerifiedManifest::verify_unpinned_cms(bytes, der, version, |bytes: &[u8], der: &[u8]| {
        keys.x509()
            .verify(&what, bytes, der, at)
            .map_err(|e| match e {
                NodeError::Verification(reason) => NodeError::verification(format!(
                    "the kept manifest of {version}, re-verified as of {at} when this node verified it: {reason}"
                )),
                other => other,
            })
    })
}

/// The recorded verification time of the kept manifest at `path`, if any.
fn read_verified_at(path: &Path) -> Result<Option<Timestamp>> {
    use std::io::Read;
    let record = verified_at_path(path);
    let file = match std::fs::File::open(&record) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(NodeError::io(
                format!("cannot read {}", record.display()),
                e,
            ))
        }
    };
    let mut text = Vec::new();
    file.take(MAX_VERIFIED_AT_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| NodeError::io(format!("cannot read {}", record.display()), e))?;
    let parsed: VerifiedAt = serde_json::from_slice(&text).map_err(|e| {
        NodeError::verification(format!(
            "{} is damaged ({e}): delete it to re-verify that manifest at the current time",
            record.display()
        ))
    })?;
    Ok(Some(parsed.verified_at))
}

pub fn remove(state_dir: &Path, version: &Version) {
    let path = kept_manifest_path(state_dir, version);
    // The manifest first: once it is gone the release is no longer kept,
    // whatever a crash leaves of the rest.
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(layout::signature_of(&path.to_string_lossy()));
    let _ = std::fs::remove_file(layout::cms_signature_of(&path.to_string_lossy()));
    let _ = std::fs::remove_file(verified_at_path(&path));
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
