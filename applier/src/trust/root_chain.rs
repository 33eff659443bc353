//! The node's root of trust: where it starts, how it moves forward, and
//! what it remembers.
//!
//! A node starts from its trust anchor — `[trust] root` (a signed root file
//! an operator installed) or `[repository] public_keys` (the implicit root
//! version 0: those keys, threshold 1, every role) — or from the newer root
//! it saved last time. On every run it walks `roots/<N+1>.json`,
//! `roots/<N+2>.json`, … until the repository has no next one, accepting
//! each only if a threshold of the keys it already trusts and a threshold
//! of the new root's own keys signed it, and saves each before looking at
//! the next: a node never goes back to an older root, and one bad link
//! stops the walk (fail closed) with everything before it kept.
//!
//! All of that is minisign trust. A node whose `[trust] require` is
//! `["x509"]` has no minisign keys and no root chain: its trust is anchored
//! in `[trust] x509_roots` alone (see `crate::x509`), and rotating the
//! signing certificate is the CA's business — it issues a new one under
//! the same anchor, and nodes need no new file. Such a node neither reads a
//! saved root nor walks `roots/`.

use std::fs;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use manifests::{layout, Role, RoleKeys, VerifiedRoot, MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES};

use super::{fetch_signature, TrustedState};
use crate::config::Config;
use crate::durable;
use crate::error::{NodeError, Result};
use crate::sources::Sources;
use crate::transport::{fetch_bytes, FetchError};
use crate::x509::SignatureKind;

/// Most roots one run adopts: a repository cannot keep a node walking for
/// ever by serving an endless chain.
const MAX_ROOT_STEPS: u64 = 1024;

/// The newest trusted root, persisted in the state directory.
const TRUSTED_ROOT: &str = "trusted-root.json";
/// Every root the node trusted, by version, for re-verifying the manifests
/// of releases installed under an older root.
const ROOTS_DIR: &str = "roots";

/// What this node trusts. With minisign required: the roots — the current
/// one, which verifies everything fetched, and the older ones it trusted
/// before (newest first), which only re-verify manifests the node kept of
/// releases it installed back then. With X.509 required (too, or alone):
/// the pinned anchors of `x509_roots`.
#[derive(Debug, Clone)]
pub struct NodeTrust {
    /// The minisign roots, or `None` when `[trust] require` does not
    /// include `minisign` (X.509 alone: nothing here is consulted).
    roots: Option<RootChain>,
    /// `[trust] require = [.., "x509"]`: the `.p7s` every fetched index
    /// and manifest must carry (crate::x509).
    x509: crate::x509::X509Requirement,
}

/// The minisign roots a node trusts.
#[derive(Debug, Clone)]
struct RootChain {
    current: VerifiedRoot,
    older: Vec<VerifiedRoot>,
}

impl NodeTrust {
    /// What the node trusts without asking the network: its anchor, or
    /// the newer root it saved, whichever is newer.
    pub fn load(config: &Config) -> Result<NodeTrust> {
        let x509 = crate::x509::X509Requirement::load(&config.trust)?;
        let roots = if config
            .trust
            .required_signatures()
            .contains(&SignatureKind::Minisign)
        {
            Some(load_roots(config)?)
        } else {
            // X.509 alone: a saved minisign root (from before the policy
            // changed) is left alone, neither trusted nor deleted.
            None
        };
        Ok(NodeTrust { roots, x509 })
    }

    /// The X.509 signatures required: on top of the roles' minisign ones,
    /// or instead of them when [`current`](Self::current) is `None`.
    pub fn x509(&self) -> &crate::x509::X509Requirement {
        &self.x509
    }

    /// The minisign root that verifies what is fetched now, or `None` when
    /// `[trust] require` is `["x509"]`: then the `.p7s` alone vouches.
    pub fn current(&self) -> Option<&VerifiedRoot> {
        self.roots.as_ref().map(|r| &r.current)
    }

    /// The manifests roles a kept manifest may be verified with: the
    /// current root's first, then older trusted roots', newest first. None
    /// at all when minisign is not required.
    pub fn manifests_roles(&self) -> impl Iterator<Item = &RoleKeys> {
        self.roots
            .iter()
            .flat_map(|r| std::iter::once(&r.current).chain(r.older.iter()))
            .map(|r| r.role(Role::Manifests))
    }

    /// Walks the repository's roots forward from the current one, through
    /// every source (saving each adopted root, and the new root version in
    /// `trusted`, when `persist`), then refuses an expired root or
    /// one older than a root this node already trusted. When the index
    /// role's keys changed, the remembered index serial is reset to 0: an
    /// attacker who held the old index key may have pushed it sky-high
    /// (a fast-forward attack), and rotating that key must let the node
    /// follow the publisher's real serials again.
    ///
    /// Without minisign in `[trust] require` there are no roots to walk
    /// and nothing happens: `roots/` is a minisign structure, and fetching
    /// it would only give a repository more to feed an X.509-only node.
    pub fn update(
        self,
        sources: &Sources,
        state_dir: &Path,
        trusted: &mut TrustedState,
        now: Timestamp,
        persist: bool,
    ) -> Result<NodeTrust> {
        let NodeTrust { roots, x509 } = self;
        let roots = match roots {
            Some(chain) => Some(chain.update(sources, state_dir, trusted, now, persist)?),
            None => None,
        };
        Ok(NodeTrust { roots, x509 })
    }
}

/// What the node trusts in minisign terms without asking the network: its
/// anchor, or the newer root it saved, whichever is newer.
fn load_roots(config: &Config) -> Result<RootChain> {
    let state_dir = &config.install.state_dir;
    let anchor = match &config.trust.root {
        Some(path) => read_root(path).map_err(|e| {
            NodeError::verification(format!(
                "the trust anchor {} (trust.root) is not a valid signed root: {e}; install the repository's root.json and root.json.minisig there",
                path.display()
            ))
        })?,
        None => VerifiedRoot::from_public_keys(config.public_keys()?)?,
    };
    // The archive is written before trusted-root.json, so a crash
    // between the two leaves the archive complete: trust the newest
    // root either holds.
    let mut roots = archived_roots(state_dir, u64::MAX);
    let saved_path = state_dir.join(TRUSTED_ROOT);
    match fs::symlink_metadata(&saved_path) {
        Ok(_) => match read_root(&saved_path) {
            Ok(root) => roots.push(root),
            Err(e) if roots.is_empty() => {
                return Err(NodeError::verification(format!(
                    "{} is damaged ({e}): restore it from backup, or delete it (and trusted.json) to start again from the configured trust anchor",
                    saved_path.display()
                )))
            }
            Err(e) => tracing::warn!("{} is damaged ({e}); using the archived roots", saved_path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(NodeError::io(format!("cannot read {}", saved_path.display()), e)),
    }
    // The anchor last: at equal versions the root the node saved wins.
    roots.push(anchor);
    roots.sort_by_key(|r| std::cmp::Reverse(r.version()));
    roots.dedup_by_key(|r| r.version());
    let current = roots.remove(0);
    let older = roots;
    Ok(RootChain { current, older })
}

impl RootChain {
    /// [`NodeTrust::update`] for a node that requires minisign.
    fn update(
        mut self,
        sources: &Sources,
        state_dir: &Path,
        trusted: &mut TrustedState,
        now: Timestamp,
        persist: bool,
    ) -> Result<RootChain> {
        let index_keys = |root: &VerifiedRoot| -> Vec<String> {
            root.role(Role::Index)
                .key_ids()
                .iter()
                .map(|k| k.to_string())
                .collect()
        };
        let mut changed = false;
        if trusted.index_role_keys.is_empty() {
            // A state file from before roots: the serial was accepted under
            // the keys trusted now. Saved with the next change, not on its
            // own: a refused run must leave the trusted state as it was.
            trusted.index_role_keys = index_keys(&self.current);
        }
        for _ in 0..MAX_ROOT_STEPS {
            let next = self.current.version() + 1;
            let path = layout::root_version(next);
            let current = &self.current;
            // With mirrors: the first source that serves it; the walk ends
            // when none does and one says it has no such root.
            let found = sources.first_present(&path, |source| {
                let bytes = match fetch_bytes(source, &path, MAX_ROOT_BYTES) {
                    Ok(bytes) => bytes,
                    Err(FetchError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let signature = fetch_signature(source, &path)?;
                VerifiedRoot::verify_successor(current, bytes, signature)
                    .map(Some)
                    .map_err(|e| {
                        NodeError::verification(format!(
                            "refusing root version {next}: {e}. This node stays on root version {} and installs nothing until the repository serves a root signed by a threshold of the keys of root {} and of its own",
                            current.version(),
                            current.version()
                        ))
                    })
            })?;
            let Some(root) = found else { break };
            if persist {
                save_root(state_dir, &root)?;
            }
            tracing::info!(version = next, "adopted a new root of trust");
            let previous = std::mem::replace(&mut self.current, root);
            self.older.insert(0, previous);
        }
        let version = self.current.version();
        if version < trusted.root_version {
            return Err(NodeError::verification(format!(
                "the repository's roots end at version {version}, but this node already trusted root version {}: a mirror or an attacker is hiding newer roots; nothing was installed (if the node's trust was reset on purpose, delete trusted.json too)",
                trusted.root_version
            )));
        }
        if let Some(expires) = self
            .current
            .expires()
            .filter(|_| self.current.is_expired(now))
        {
            return Err(NodeError::verification(format!(
                "root version {version} expired at {expires} (now {now}): the repository's root of trust is stale and may hide a key rotation; the publisher must publish a new root (`ferry-publish root init`, `root sign`, `root rotate`)"
            )));
        }
        let keys = index_keys(&self.current);
        if trusted.index_role_keys != keys {
            tracing::warn!(
                old = %trusted.index_role_keys.join(","),
                new = %keys.join(","),
                "the index role's keys changed with root {version}: forgetting index serial {}",
                trusted.index_serial
            );
            trusted.index_serial = 0;
            trusted.index_role_keys = keys;
            changed = true;
        }
        if trusted.root_version != version {
            trusted.root_version = version;
            changed = true;
        }
        if changed && persist {
            trusted.record(state_dir)?;
        }
        Ok(self)
    }
}

/// Why a root file on this node (the anchor, the saved or an archived
/// root) cannot be used; the caller says what to do about it.
#[derive(Debug, thiserror::Error)]
enum BadRootFile {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// Not a root, or not signed by its own keys.
    #[error(transparent)]
    Invalid(#[from] manifests::FormatError),
}

/// Reads a root file and its `.minisig`, checked against its own keys.
fn read_root(path: &Path) -> std::result::Result<VerifiedRoot, BadRootFile> {
    let read = |p: &Path, limit: u64| -> std::result::Result<Vec<u8>, BadRootFile> {
        let bytes = fs::read(p).map_err(|source| BadRootFile::Unreadable {
            path: p.to_path_buf(),
            source,
        })?;
        if bytes.len() as u64 > limit {
            return Err(BadRootFile::TooLarge {
                path: p.to_path_buf(),
                limit,
            });
        }
        Ok(bytes)
    };
    let signature = PathBuf::from(layout::signature_of(&path.to_string_lossy()));
    Ok(VerifiedRoot::verify_self_signed(
        read(path, MAX_ROOT_BYTES)?,
        read(&signature, MAX_SIGNATURE_BYTES)?,
    )?)
}

/// Saves an adopted root: first in the archive, then as the current one,
/// each file written atomically and durably.
fn save_root(state_dir: &Path, root: &VerifiedRoot) -> Result<()> {
    let (Some(bytes), Some(signature)) = (root.bytes(), root.signature()) else {
        return Ok(());
    };
    let archive = state_dir.join(ROOTS_DIR);
    durable::create_dir_all(&archive, 0o755)
        .map_err(|e| NodeError::io(format!("cannot create {}", archive.display()), e))?;
    let write = |path: PathBuf, data: &[u8]| {
        durable::write_atomic(&path, data, 0o644).map_err(|e| NodeError::writing(&path, e))
    };
    let versioned = archive.join(format!("{}.json", root.version()));
    write(
        PathBuf::from(layout::signature_of(&versioned.to_string_lossy())),
        signature,
    )?;
    write(versioned, bytes)?;
    let current = state_dir.join(TRUSTED_ROOT);
    // Signature first: a crash between the two leaves the old root with a
    // signature that does not verify, which `load` reports, rather than a
    // new root that silently lost its signature.
    write(
        PathBuf::from(layout::signature_of(&current.to_string_lossy())),
        signature,
    )?;
    write(current, bytes)
}

/// The archived roots below `below`, each checked against its own keys; a
/// damaged one is skipped (it only narrows what can be re-verified).
fn archived_roots(state_dir: &Path, below: u64) -> Vec<VerifiedRoot> {
    let Ok(entries) = fs::read_dir(state_dir.join(ROOTS_DIR)) else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_root = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|v| v < below);
        if !is_root {
            continue;
        }
        match read_root(&path) {
            Ok(root) => roots.push(root),
            Err(e) => tracing::warn!("ignoring the archived root {}: {e}", path.display()),
        }
    }
    roots
}
