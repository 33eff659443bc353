//! Fetching the root, the index and manifests and deciding whether to
//! believe them.
//!
//! The order is fixed: walk the root of trust forward ([`root_chain`]),
//! then for each file fetch capped bytes, verify the signatures over exactly
//! those bytes with the keys and threshold of the role that signs it (or,
//! on a node requiring X.509 alone, its `.p7s` against `x509_roots`), then
//! parse (inside `manifests::Verified*`), then apply node policy: expiry,
//! and the serial a node has already seen, so a mirror cannot replay an
//! older signed index to hold a node back.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use manifests::{layout, Index, Role, VerifiedIndex, VerifiedManifest};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{NodeError, Result};
use crate::transport::{fetch_bytes, FetchError, Transport};

pub mod clock;
pub mod root_chain;

pub use clock::now;
pub use root_chain::NodeTrust;

/// What this node has trusted before; persisted in `state_dir/trusted.json`.
/// Fields added later default, so older files still load.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedState {
    /// Highest index serial this node accepted.
    pub index_serial: u64,
    /// Highest root version this node trusted (0: the implicit root of
    /// `public_keys`); a repository whose roots end below it is refused.
    #[serde(default)]
    pub root_version: u64,
    /// The index role's key ids `index_serial` was accepted under; when
    /// they change the serial starts again from 0 (fast-forward recovery).
    #[serde(default)]
    pub index_role_keys: Vec<String>,
}

impl TrustedState {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("trusted.json")
    }

    /// Whether this node has recorded any trust yet. A node that has not
    /// has nothing a replay could take back; its first run that goes ahead
    /// records what it verified.
    pub fn recorded(state_dir: &Path) -> bool {
        Self::path(state_dir).is_file()
    }

    pub fn load(state_dir: &Path) -> Result<TrustedState> {
        durable::load_json(
            &Self::path(state_dir),
            "it records the newest index this node trusted: restore it from backup, or delete it to trust the repository's current index again",
        )
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        durable::save_json(&Self::path(state_dir), self)
    }

    /// Raises the trusted index serial to that of `index`, just verified,
    /// and records it at once (see [`record`](Self::record)) when it is
    /// new: before any decision about the releases in it, so a run that
    /// then defers, finds nothing to do or refuses still remembers it, and
    /// an older index replayed afterwards is refused.
    pub fn accept_index(&mut self, index: &VerifiedIndex, state_dir: &Path) -> Result<()> {
        let serial = index.index().serial;
        if serial <= self.index_serial {
            return Ok(());
        }
        self.index_serial = serial;
        self.record(state_dir)
    }

    /// Saves this state, merged with what is on disk now: a `ferry check`
    /// records what it verified without taking the lock, so another run
    /// may have recorded a newer serial or root since this one loaded; the
    /// merge never lowers either (see [`merged`]). The write is atomic, and
    /// skipped when nothing changes. `self` becomes the merged state.
    pub fn record(&mut self, state_dir: &Path) -> Result<()> {
        let on_disk = TrustedState::load(state_dir)?;
        let merged = merged(&on_disk, self);
        if merged != on_disk {
            merged.save(state_dir)?;
        }
        *self = merged;
        Ok(())
    }
}

/// `ours` recorded over `on_disk`: the newer root's state wins whole (its
/// index keys, and its serial, which a key change may have reset on
/// purpose); under the same root, the higher serial.
fn merged(on_disk: &TrustedState, ours: &TrustedState) -> TrustedState {
    use std::cmp::Ordering;
    match on_disk.root_version.cmp(&ours.root_version) {
        Ordering::Greater => on_disk.clone(),
        Ordering::Less => ours.clone(),
        Ordering::Equal
            if on_disk.index_role_keys == ours.index_role_keys
                || on_disk.index_role_keys.is_empty() =>
        {
            TrustedState {
                index_serial: on_disk.index_serial.max(ours.index_serial),
                ..ours.clone()
            }
        }
        // The same root version with other index keys: the node's anchor
        // (`public_keys`) changed; what it trusts now decides.
        Ordering::Equal => ours.clone(),
    }
}

/// Fetches a detached signature; a missing one is a verification failure
/// (the file is unsigned), not a network error.
pub(crate) fn fetch_signature(transport: &dyn Transport, path: &str) -> Result<Vec<u8>> {
    let sig_path = layout::signature_of(path);
    match fetch_bytes(transport, &sig_path, manifests::MAX_SIGNATURE_BYTES) {
        Ok(bytes) => Ok(bytes),
        Err(FetchError::NotFound { url }) => Err(NodeError::verification(format!(
            "{path} is not signed: its signature {url} is missing"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Fetches and verifies `index.json` with the index role of `trust`'s
/// current root (walk it first: [`NodeTrust::update`]), and its `.p7s` on
/// top if required; or by its `.p7s` alone when `[trust] require` is
/// `["x509"]`. Expiry and the serial are checked either way.
pub fn fetch_index(
    transport: &dyn Transport,
    trust: &NodeTrust,
    trusted: &TrustedState,
    now: Timestamp,
) -> Result<VerifiedIndex> {
    let bytes =
        fetch_bytes(transport, layout::INDEX, manifests::MAX_INDEX_BYTES).map_err(|e| match e {
            FetchError::NotFound { url } => NodeError::NoIndex { url },
            other => other.into(),
        })?;
    let verified = match trust.current() {
        Some(root) => {
            let signature = fetch_signature(transport, layout::INDEX)?;
            let verified = VerifiedIndex::verify(&bytes, &signature, root.role(Role::Index))?;
            // X.509 on top of minisign when `[trust] require` asks for it,
            // over the same exact bytes, before anything in them is used.
            trust.x509().check(transport, layout::INDEX, &bytes, now)?;
            verified
        }
        // X.509 alone: the `.p7s` is checked over exactly these bytes
        // before they are parsed; a `.minisig` is not even fetched.
        None => {
            let der = trust.x509().fetch(transport, layout::INDEX)?;
            VerifiedIndex::verify_cms(&bytes, &der, |bytes: &[u8], der: &[u8]| {
                trust.x509().verify(layout::INDEX, bytes, der, now)
            })?
        }
    };
    let index = verified.index();
    if index.expires <= now {
        return Err(NodeError::verification(format!(
            "index.json expired at {} (serial {}, now {now}); the publisher must re-sign it (`ferry-publish refresh`) — a stale index may be hiding newer releases",
            index.expires, index.serial
        )));
    }
    if index.serial < trusted.index_serial {
        return Err(NodeError::verification(format!(
            "index.json has serial {}, older than serial {} this node already trusted: the repository or a mirror is replaying an old index; nothing was installed",
            index.serial, trusted.index_serial
        )));
    }
    Ok(verified)
}

/// Fetches and verifies the manifest of `version` on `channel`, pinned by `index`.
/// The manifest is verified with the manifests role of `trust`'s current
/// root (and its `.p7s` on top, if required), or by its `.p7s` alone when
/// `[trust] require` is `["x509"]`, with certificates judged at `now`.
pub fn fetch_manifest(
    transport: &dyn Transport,
    trust: &NodeTrust,
    index: &Index,
    channel: &str,
    version: &Version,
    now: Timestamp,
) -> Result<VerifiedManifest> {
    let pin = index.release(channel, version).ok_or_else(|| {
        let published: Vec<String> = index
            .channels
            .get(channel)
            .map(|c| c.releases.keys().cloned().collect())
            .unwrap_or_default();
        NodeError::NotPublished {
            version: Box::new(version.clone()),
            channel: channel.to_string(),
            published,
        }
    })?;
    let path = layout::manifest(version);
    let bytes = fetch_bytes(transport, &path, pin.size).map_err(|e| match e {
        FetchError::NotFound { url } => NodeError::verification(format!(
            "the index lists {version} but its manifest {url} is missing"
        )),
        other => other.into(),
    })?;
    let verified = match trust.current() {
        Some(root) => {
            let signature = fetch_signature(transport, &path)?;
            let verified = VerifiedManifest::verify_pinned(
                bytes,
                signature,
                root.role(Role::Manifests),
                pin,
                version,
            )?;
            trust
                .x509()
                .check(transport, &path, verified.bytes(), now)?;
            verified
        }
        None => {
            let der = trust.x509().fetch(transport, &path)?;
            VerifiedManifest::verify_pinned_cms(
                bytes,
                der,
                pin,
                version,
                |bytes: &[u8], der: &[u8]| trust.x509().verify(&path, bytes, der, now),
            )?
        }
    };
    if verified.manifest().channel != channel {
        return Err(NodeError::verification(format!(
            "manifest of {version} belongs to channel {:?}, but the index lists it under {channel:?}",
            verified.manifest().channel
        )));
    }
    Ok(verified)
}

/// Refuses releases that declare things this applier cannot honour yet:
/// installing them without their hooks would be worse than not installing
/// them. (Migrations, requirements and rollout waves are honoured:
/// `crate::migrations`, `crate::preflight`, `crate::waves`.)
pub fn check_supported(manifest: &manifests::Manifest) -> Result<()> {
    let mut unsupported = Vec::new();
    if !manifest.hooks.is_empty() {
        unsupported.push("hooks");
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(NodeError::Unsupported {
            version: Box::new(manifest.version.clone()),
            features: unsupported,
        })
    }
}

#[cfg(test)]
mod tests;
