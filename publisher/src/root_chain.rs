//! The repository's chain of roots (`roots/1.json`, `roots/2.json`, …) and
//! how the publisher trusts what it reads from its own repository.
//!
//! The chain is walked exactly as a node walks it — each root accepted only
//! when a threshold of the previous root's keys and of its own signed it —
//! so a chain `ferry-publish` accepts is a chain nodes accept.

use anyhow::{bail, Context};
use manifests::index::ManifestRef;
use manifests::{
    layout, FormatError, Role, RoleKeys, VerifiedIndex, VerifiedManifest, VerifiedRoot,
    MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES,
};
use semver::Version;

use crate::keys::SigningKeys;
use crate::repository::Repository;

/// Every root of a repository, oldest first; never empty.
#[derive(Debug, Clone)]
pub struct RootChain {
    roots: Vec<VerifiedRoot>,
}

impl RootChain {
    /// Walks the repository's roots from `anchor` (a root the caller
    /// trusts; `None`: `roots/1.json`, checked against its own keys — the
    /// publisher's own repository, trusted as it was first set up). `None`
    /// when the repository has no root at all.
    pub fn load(repo: &Repository, anchor: Option<VerifiedRoot>) -> anyhow::Result<Option<Self>> {
        let has_root = repo.exists(layout::ROOT) || repo.exists(&layout::root_version(1));
        if !has_root {
            return Ok(None);
        }
        let first = match anchor {
            Some(anchor) => anchor,
            None => {
                let (bytes, signature) = read_signed(repo, &layout::root_version(1))?
                    .context("root.json exists but roots/1.json does not: the chain of roots is incomplete; restore roots/1.json")?;
                VerifiedRoot::verify_self_signed(bytes, signature)
                    .context("roots/1.json is not a valid root signed by its own root keys")?
            }
        };
        let mut roots = vec![first];
        loop {
            let next = roots.last().expect("never empty").version() + 1;
            let path = layout::root_version(next);
            let Some((bytes, signature)) = read_signed(repo, &path)? else {
                break;
            };
            let root = VerifiedRoot::verify_successor(
                roots.last().expect("never empty"),
                bytes,
                signature,
            )
            .with_context(|| {
                format!(
                    "{path} does not follow root {} in the chain: nodes will refuse it",
                    next - 1
                )
            })?;
            roots.push(root);
        }
        let chain = RootChain { roots };
        let newest = chain.current();
        let Some(served) = repo.read(layout::ROOT, MAX_ROOT_BYTES)? else {
            bail!(
                "roots/ holds root version {} but root.json is missing: copy roots/{}.json and its signature to root.json",
                newest.version(),
                newest.version()
            );
        };
        if newest.version() == 0 {
            bail!("root.json exists but roots/1.json does not: the chain of roots is incomplete; restore roots/1.json");
        }
        if newest.bytes() != Some(served.as_slice()) {
            bail!(
                "root.json is not the newest root of the chain (roots/{}.json): copy that file and its signature to root.json",
                newest.version()
            );
        }
        Ok(Some(chain))
    }

    /// The newest root: the one that decides who signs now.
    pub fn current(&self) -> &VerifiedRoot {
        self.roots.last().expect("never empty")
    }

    pub fn roots(&self) -> &[VerifiedRoot] {
        &self.roots
    }
}

/// Reads `path` and its signature; `None` when `path` does not exist.
pub fn read_signed(repo: &Repository, path: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let Some(bytes) = repo.read(path, MAX_ROOT_BYTES)? else {
        return Ok(None);
    };
    let signature = repo
        .read(&layout::signature_of(path), MAX_SIGNATURE_BYTES)?
        .with_context(|| format!("{path} exists but its signature is missing"))?;
    Ok(Some((bytes, signature)))
}

/// What the publisher checks its own repository with, and who may sign.
#[derive(Debug, Clone)]
pub enum RepoTrust {
    /// No `root.json`: the repository is signed by the `--key` keys, any
    /// one of them being enough (what nodes' `public_keys` accept).
    Keys(RoleKeys),
    /// The repository's verified chain of roots, and the `--key` keys for
    /// files signed before the first root.
    Chain(RootChain, RoleKeys),
}

impl RepoTrust {
    /// The trust for publishing into `repo` with `keys`.
    pub fn load(repo: &Repository, keys: &SigningKeys) -> anyhow::Result<Self> {
        Ok(match RootChain::load(repo, None)? {
            Some(chain) => RepoTrust::Chain(chain, keys.any_of()),
            None => RepoTrust::Keys(keys.any_of()),
        })
    }

    /// The roles able to verify existing `role` documents, newest first.
    /// After a rotation the files still carry the previous keys' signatures
    /// until they are re-signed, so the publisher accepts a signature by
    /// any root of its own verified chain — or, for files from before the
    /// first root, by one of the keys it signs with, as without a root;
    /// what it writes is always signed for the current root
    /// ([`RepoTrust::sign`]).
    fn verifiers(&self, role: Role) -> Vec<&RoleKeys> {
        match self {
            RepoTrust::Keys(keys) => vec![keys],
            RepoTrust::Chain(chain, keys) => chain
                .roots
                .iter()
                .rev()
                .map(|r| r.role(role))
                .chain(std::iter::once(keys))
                .collect(),
        }
    }

    /// The existing `index.json`, verified.
    pub fn verify_index(
        &self,
        bytes: &[u8],
        signature: &[u8],
    ) -> Result<VerifiedIndex, FormatError> {
        first_ok(self.verifiers(Role::Index), |keys| {
            VerifiedIndex::verify(bytes, signature, keys)
        })
    }

    /// An existing manifest, verified against its pin.
    pub fn verify_manifest(
        &self,
        bytes: Vec<u8>,
        signature: Vec<u8>,
        pin: &ManifestRef,
        version: &Version,
    ) -> Result<VerifiedManifest, FormatError> {
        first_ok(self.verifiers(Role::Manifests), |keys| {
            VerifiedManifest::verify_pinned(bytes.clone(), signature.clone(), keys, pin, version)
        })
    }

    /// Refuses, before any work, when `keys` cannot sign `role` documents
    /// that nodes will accept: too few of them belong to the role.
    pub fn check_can_sign(&self, role: Role, keys: &SigningKeys) -> anyhow::Result<()> {
        let RepoTrust::Chain(chain, _) = self else {
            return Ok(());
        };
        let root = chain.current();
        let role_keys = root.role(role);
        let members: Vec<String> = keys
            .iter()
            .filter(|k| role_keys.keys().contains(k.id()))
            .map(|k| k.id().to_string())
            .collect();
        if members.len() < role_keys.threshold() {
            let wanted: Vec<String> = role_keys.key_ids().iter().map(|k| k.to_string()).collect();
            bail!(
                "the {role} role of root version {} needs signatures by {} of its keys ({}), but the keys given with --key ({}) include {} of them: pass more --key options with keys of that role",
                root.version(),
                role_keys.threshold(),
                wanted.join(", "),
                keys.describe(),
                members.len()
            );
        }
        Ok(())
    }

    /// Signs `data` (served at `file`) for `role`: with no root, by every
    /// key; with a root, by the given keys that belong to the role (blocks
    /// by other keys would only be ignored). The result is verified with
    /// the role's keys and threshold, as a node will.
    pub fn sign(
        &self,
        role: Role,
        keys: &SigningKeys,
        data: &[u8],
        file: &str,
        timestamp: i64,
    ) -> anyhow::Result<Vec<u8>> {
        self.check_can_sign(role, keys)?;
        let (signature, verifier) = match self {
            RepoTrust::Keys(any) => (keys.sign(data, file, timestamp)?, any),
            RepoTrust::Chain(chain, _) => {
                let role_keys = chain.current().role(role);
                let signature =
                    keys.sign_with(data, file, timestamp, |id| role_keys.keys().contains(id))?;
                (signature, role_keys)
            }
        };
        verifier.verify(file, data, &signature).with_context(|| {
            format!("internal error: the new signature of {file} does not verify")
        })?;
        Ok(signature)
    }
}

/// The first success of `verify` over `verifiers`, or the first error
/// (the newest root's, which is the one that matters to nodes).
fn first_ok<T>(
    verifiers: Vec<&RoleKeys>,
    verify: impl Fn(&RoleKeys) -> Result<T, FormatError>,
) -> Result<T, FormatError> {
    let mut first_error = None;
    for keys in verifiers {
        match verify(keys) {
            Ok(value) => return Ok(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("there is always at least one verifier"))
}
