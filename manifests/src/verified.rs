//! Index and manifests that have passed verification.
//!
//! These types can only be built from signed bytes through `verify`, so code
//! holding a `VerifiedManifest` knows without looking that its signature,
//! its pin in the index and its structure were all checked — in that order:
//! the pin and the signature are checked before a single byte is parsed.

use semver::Version;

use crate::index::{Index, ManifestRef};
use crate::manifest::Manifest;
use crate::signature::{KeyId, TrustedKeys};
use crate::{FormatError, Sha256Digest};

#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    index: Index,
    signed_by: KeyId,
}

impl VerifiedIndex {
    pub fn verify(bytes: &[u8], signature: &[u8], keys: &TrustedKeys) -> Result<Self, FormatError> {
        let signed_by = keys.verify("index.json", bytes, signature)?;
        let index: Index = serde_json::from_slice(bytes).map_err(|source| FormatError::Json {
            what: "index.json",
            source,
        })?;
        index.validate()?;
        Ok(VerifiedIndex { index, signed_by })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn signed_by(&self) -> KeyId {
        self.signed_by
    }
}

#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    manifest: Manifest,
    bytes: Vec<u8>,
    signature: Vec<u8>,
}

impl VerifiedManifest {
    /// Verifies a manifest fetched because `pin` (from a verified index)
    /// pointed at it: size and SHA-256 against the pin, then the signature,
    /// then structure, then that it is the version that was asked for.
    pub fn verify_pinned(
        bytes: Vec<u8>,
        signature: Vec<u8>,
        keys: &TrustedKeys,
        pin: &ManifestRef,
        version: &Version,
    ) -> Result<Self, FormatError> {
        let what = format!("manifest of {version}");
        let actual = Sha256Digest::of(&bytes);
        if bytes.len() as u64 != pin.size || actual != pin.sha256 {
            return Err(FormatError::Inconsistent {
                what,
                reason: format!(
                    "it is {} bytes with SHA-256 {actual}, but the signed index pins {} bytes with SHA-256 {}: the repository or a mirror serves a different manifest",
                    bytes.len(),
                    pin.size,
                    pin.sha256
                ),
            });
        }
        Self::verify_unpinned(bytes, signature, keys, version)
    }

    /// Verifies a manifest without an index pin: for copies a node kept of
    /// releases it installed, re-checked each time they are read.
    pub fn verify_unpinned(
        bytes: Vec<u8>,
        signature: Vec<u8>,
        keys: &TrustedKeys,
        version: &Version,
    ) -> Result<Self, FormatError> {
        let what = format!("manifests/{version}.json");
        keys.verify(&what, &bytes, &signature)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| FormatError::Json {
                what: "release manifest",
                source,
            })?;
        manifest.validate()?;
        if manifest.version != *version {
            return Err(FormatError::Inconsistent {
                what,
                reason: format!("it describes version {}, not {version}", manifest.version),
            });
        }
        Ok(VerifiedManifest {
            manifest,
            bytes,
            signature,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact signed bytes, for keeping a copy on the node.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}
