//! `root.json`: the repository's root of trust (after TUF's root role).
//!
//! A root lists public keys and, per role, which of them may sign and how
//! many must: `root` signs the next root, `index` signs `index.json`,
//! `manifests` signs release manifests. Every version is kept at
//! `roots/<N>.json`, so a node that trusts version N can walk N+1, N+2, …
//! and accept each only if a threshold of the keys it already trusts *and*
//! a threshold of the new root's own keys signed it: a stolen key can be
//! rotated out, and no single party can rewrite who is trusted.
//!
//! [`VerifiedRoot`] is the only way a root's keys reach a verifier, and it
//! can only be made by verification (or, for nodes configured with plain
//! `public_keys`, as the implicit version 0 those keys stand for).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::signature::{KeyId, RoleKeys, TrustedKeys};
use crate::{FormatError, FORMAT_VERSION};

/// The `type` field of every root document.
pub const ROOT_TYPE: &str = "root";

/// A role a root assigns keys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Signs the next version of the root.
    Root,
    /// Signs `index.json`.
    Index,
    /// Signs `manifests/<version>.json`.
    Manifests,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Root, Role::Index, Role::Manifests];

    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Index => "index",
            Role::Manifests => "manifests",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The JSON document `root.json` / `roots/<N>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// Always `"root"`, so a root can never be mistaken for another
    /// signed document (or the other way round).
    #[serde(rename = "type")]
    pub kind: String,
    /// 1, 2, 3, …: root N+1 is only accepted by a node that trusts root N.
    pub version: u64,
    /// After this instant nodes refuse the root (and so the repository)
    /// until a newer root is published.
    pub expires: Timestamp,
    /// Key id (16 uppercase hex digits, as minisign shows it) -> the bare
    /// base64 line of the minisign public key.
    pub keys: BTreeMap<String, String>,
    pub roles: Roles,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    pub root: RoleSpec,
    pub index: RoleSpec,
    pub manifests: RoleSpec,
}

/// The key ids of a role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub keys: Vec<String>,
    pub threshold: u32,
}

impl Roles {
    pub fn get(&self, role: Role) -> &RoleSpec {
        match role {
            Role::Root => &self.root,
            Role::Index => &self.index,
            Role::Manifests => &self.manifests,
        }
    }

    pub fn get_mut(&mut self, role: Role) -> &mut RoleSpec {
        match role {
            Role::Root => &mut self.root,
            Role::Index => &mut self.index,
            Role::Manifests => &mut self.manifests,
        }
    }
}

impl Root {
    /// Structural checks: run on every root right after parsing.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.format != FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormat {
                what: "root.json",
                found: self.format,
                expected: FORMAT_VERSION,
            });
        }
        let inconsistent = |reason: String| FormatError::Inconsistent {
            what: format!("root version {}", self.version),
            reason,
        };
        if self.kind != ROOT_TYPE {
            return Err(inconsistent(format!(
                "its type is {:?}, not {ROOT_TYPE:?}",
                self.kind
            )));
        }
        if self.version == 0 {
            return Err(inconsistent(
                "version 0 is reserved for the implicit root of `public_keys`; roots start at 1"
                    .into(),
            ));
        }
        self.all_keys()?;
        for role in Role::ALL {
            let spec = self.roles.get(role);
            let mut seen = BTreeSet::new();
            for id in &spec.keys {
                if !self.keys.contains_key(id) {
                    return Err(inconsistent(format!(
                        "the {role} role names key {id}, which is not listed under keys"
                    )));
                }
                if !seen.insert(id) {
                    return Err(inconsistent(format!(
                        "the {role} role names key {id} twice"
                    )));
                }
            }
            if spec.threshold == 0 || spec.threshold as usize > spec.keys.len() {
                return Err(inconsistent(format!(
                    "the {role} role has threshold {} and {} key(s): the threshold must be between 1 and the number of keys",
                    spec.threshold,
                    spec.keys.len()
                )));
            }
        }
        Ok(())
    }

    /// Every listed key, each checked: its base64 must be a minisign
    /// Ed25519 key and its id the id inside those bytes (a mismatched id
    /// would make messages name the wrong key).
    pub fn all_keys(&self) -> Result<TrustedKeys, FormatError> {
        let mut keys = TrustedKeys::new();
        for (id, base64) in &self.keys {
            let declared: KeyId = id.parse()?;
            let actual = keys.add_text(base64, &format!("root.json key {id}"))?;
            if actual != declared {
                return Err(FormatError::Inconsistent {
                    what: format!("root version {}", self.version),
                    reason: format!("key {id} holds the public key with id {actual}"),
                });
            }
        }
        Ok(keys)
    }

    /// The keys and threshold of `role`.
    pub fn role_keys(&self, role: Role) -> Result<RoleKeys, FormatError> {
        let spec = self.roles.get(role);
        let mut keys = TrustedKeys::new();
        for id in &spec.keys {
            let base64 = self.keys.get(id).ok_or_else(|| FormatError::Inconsistent {
                what: format!("root version {}", self.version),
                reason: format!("the {role} role names key {id}, which is not listed"),
            })?;
            keys.add_text(base64, &format!("root.json key {id}"))?;
        }
        RoleKeys::new(role.name(), keys, spec.threshold)
    }
}

/// A root whose signatures were checked, with the keys of its roles ready
/// to verify the documents they sign.
#[derive(Debug, Clone)]
pub struct VerifiedRoot {
    version: u64,
    expires: Option<Timestamp>,
    root_role: RoleKeys,
    index_role: RoleKeys,
    manifests_role: RoleKeys,
    /// The signed document; `None` for the implicit root 0.
    document: Option<SignedRoot>,
}

#[derive(Debug, Clone)]
struct SignedRoot {
    root: Root,
    bytes: Vec<u8>,
    signature: Vec<u8>,
}

impl VerifiedRoot {
    /// The implicit root version 0 that a node configured with plain
    /// `public_keys` trusts: every role is those keys with threshold 1, and
    /// it never expires. It is what lets such a node adopt `roots/1.json`
    /// when its publisher introduces one (signed by one of those keys).
    pub fn from_public_keys(keys: TrustedKeys) -> Result<Self, FormatError> {
        let role = |r: Role| RoleKeys::new(r.name(), keys.clone(), 1);
        Ok(VerifiedRoot {
            version: 0,
            expires: None,
            root_role: role(Role::Root)?,
            index_role: role(Role::Index)?,
            manifests_role: role(Role::Manifests)?,
            document: None,
        })
    }

    /// A root trusted because of where it came from — the trust anchor an
    /// operator installed, or the copy a node saved after verifying it —
    /// checked against its own root role. This cannot vouch for the root
    /// (whoever wrote it chose its keys); it catches a damaged or
    /// mis-copied file and a root that was never properly signed.
    pub fn verify_self_signed(bytes: Vec<u8>, signature: Vec<u8>) -> Result<Self, FormatError> {
        let root = parse_root(&bytes)?;
        let what = format!("root version {}", root.version);
        root.role_keys(Role::Root)?
            .verify(&what, &bytes, &signature)?;
        Self::from_document(root, bytes, signature)
    }

    /// Root `previous.version() + 1`, accepted only if a threshold of
    /// `previous`'s root keys signed it — checked before a byte of it is
    /// parsed — and a threshold of its own root keys did too.
    pub fn verify_successor(
        previous: &VerifiedRoot,
        bytes: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<Self, FormatError> {
        let expected = previous.version + 1;
        let what = format!("roots/{expected}.json");
        previous.root_role.verify(
            &format!(
                "{what} (checked with the keys of trusted root {})",
                previous.version
            ),
            &bytes,
            &signature,
        )?;
        let root = parse_root(&bytes)?;
        if root.version != expected {
            return Err(FormatError::Inconsistent {
                what,
                reason: format!(
                    "it holds root version {}, not {expected}: the repository or a mirror serves the wrong file",
                    root.version
                ),
            });
        }
        root.role_keys(Role::Root)?.verify(
            &format!("{what} (checked with its own root keys)"),
            &bytes,
            &signature,
        )?;
        Self::from_document(root, bytes, signature)
    }

    fn from_document(root: Root, bytes: Vec<u8>, signature: Vec<u8>) -> Result<Self, FormatError> {
        Ok(VerifiedRoot {
            version: root.version,
            expires: Some(root.expires),
            root_role: root.role_keys(Role::Root)?,
            index_role: root.role_keys(Role::Index)?,
            manifests_role: root.role_keys(Role::Manifests)?,
            document: Some(SignedRoot {
                root,
                bytes,
                signature,
            }),
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// `None` for the implicit root 0, which never expires.
    pub fn expires(&self) -> Option<Timestamp> {
        self.expires
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    pub fn role(&self, role: Role) -> &RoleKeys {
        match role {
            Role::Root => &self.root_role,
            Role::Index => &self.index_role,
            Role::Manifests => &self.manifests_role,
        }
    }

    /// The document, `None` for the implicit root 0.
    pub fn root(&self) -> Option<&Root> {
        self.document.as_ref().map(|d| &d.root)
    }

    /// The exact signed bytes, for a node to keep; `None` for root 0.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.document.as_ref().map(|d| d.bytes.as_slice())
    }

    pub fn signature(&self) -> Option<&[u8]> {
        self.document.as_ref().map(|d| d.signature.as_slice())
    }
}

fn parse_root(bytes: &[u8]) -> Result<Root, FormatError> {
    let root: Root = serde_json::from_slice(bytes).map_err(|source| FormatError::Json {
        what: "root.json",
        source,
    })?;
    root.validate()?;
    Ok(root)
}

#[cfg(test)]
mod tests;
