//! Index and manifests that have passed verification.
//!
//! These types can only be built from signed bytes through a `verify*`
//! constructor, so code holding a `VerifiedManifest` knows without looking
//! that its signature, its pin in the index and its structure were all
//! checked — in that order: the pin and the signature are checked before a
//! single byte is parsed.
//!
//! Two kinds of signature can vouch for the bytes (docs/FORMAT.md,
//! "Signatures"): minisign, checked here against a role's keys, and a
//! detached CMS/X.509 signature (`.p7s`), which needs OpenSSL and so is
//! checked by the caller — the node's `ferry-x509` build — through a
//! closure this crate calls (see [`CmsCheck`]).

use semver::Version;

use crate::index::{Index, ManifestRef};
use crate::layout;
use crate::manifest::Manifest;
use crate::signature::{KeyId, RoleKeys};
use crate::{FormatError, Sha256Digest};

/// Which detached signature vouched for a verified file, and so which one a
/// node keeps beside its copy and checks again when it reads it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// `<file>.minisig`, checked against a role's minisign keys.
    Minisign,
    /// `<file>.p7s`, a detached DER CMS signature with an X.509 chain.
    Cms,
}

impl SignatureFormat {
    /// Where this kind of signature of `path` lives.
    pub fn file_of(self, path: &str) -> String {
        match self {
            SignatureFormat::Minisign => layout::signature_of(path),
            SignatureFormat::Cms => layout::cms_signature_of(path),
        }
    }
}

/// The check of a detached CMS signature: called with exactly the bytes
/// about to be parsed and the DER signature, it must return `Ok` only if
/// the signature verifies over those bytes and chains to the caller's
/// trust anchors.
///
/// Why a closure rather than a token the caller obtains first (say a
/// sealed `CmsAttestation`): this crate has no OpenSSL, so a token would
/// have to be constructible by the caller, and nothing would then tie it to
/// these bytes or make it come first. Taking the check as a closure, the
/// constructor itself runs it, on the very bytes it then parses, before
/// parsing, and keeps the very signature that passed: order and binding are
/// enforced here, once, rather than by every caller's discipline. What this
/// crate cannot enforce is that the closure is an honest check; there is
/// one, `ferry::x509::X509Requirement::verify`, and it is the only caller.
pub trait CmsCheck<E>: FnOnce(&[u8], &[u8]) -> Result<(), E> {}
impl<E, F: FnOnce(&[u8], &[u8]) -> Result<(), E>> CmsCheck<E> for F {}

#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    index: Index,
    signed_by: Vec<KeyId>,
}

impl VerifiedIndex {
    /// Verifies `index.json` with the keys and threshold of the index role
    /// (`root.role(Role::Index)`), then parses and validates it.
    pub fn verify(bytes: &[u8], signature: &[u8], keys: &RoleKeys) -> Result<Self, FormatError> {
        let signed_by = keys.verify("index.json", bytes, signature)?;
        Ok(VerifiedIndex {
            index: parse_index(bytes)?,
            signed_by,
        })
    }

    /// Verifies `index.json` by its detached CMS signature `der` (a node
    /// whose `[trust] require` is `["x509"]`): `check` runs first, over
    /// exactly `bytes`; only if it succeeds are they parsed and validated.
    /// See [`CmsCheck`] for why the check is a closure.
    pub fn verify_cms<E: From<FormatError>>(
        bytes: &[u8],
        der: &[u8],
        check: impl CmsCheck<E>,
    ) -> Result<Self, E> {
        check(bytes, der)?;
        Ok(VerifiedIndex {
            index: parse_index(bytes)?,
            signed_by: Vec::new(),
        })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The distinct keys of the role whose signatures were valid, sorted;
    /// empty when a CMS signature alone vouched for the index.
    pub fn signed_by(&self) -> &[KeyId] {
        &self.signed_by
    }
}

fn parse_index(bytes: &[u8]) -> Result<Index, FormatError> {
    let index: Index = serde_json::from_slice(bytes).map_err(|source| FormatError::Json {
        what: "index.json",
        source,
    })?;
    index.validate()?;
    Ok(index)
}

#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    manifest: Manifest,
    bytes: Vec<u8>,
    signature: Vec<u8>,
    signature_format: SignatureFormat,
}

impl VerifiedManifest {
    /// Verifies a manifest fetched because `pin` (from a verified index)
    /// pointed at it: size and SHA-256 against the pin, then the signature,
    /// then structure, then that it is the version that was asked for.
    /// `keys` are the manifests role's (`root.role(Role::Manifests)`).
    pub fn verify_pinned(
        bytes: Vec<u8>,
        signature: Vec<u8>,
        keys: &RoleKeys,
        pin: &ManifestRef,
        version: &Version,
    ) -> Result<Self, FormatError> {
        check_pin(&bytes, pin, version)?;
        Self::verify_unpinned(bytes, signature, keys, version)
    }

    /// Verifies a manifest without an index pin: for copies a node kept of
    /// releases it installed, re-checked each time they are read.
    pub fn verify_unpinned(
        bytes: Vec<u8>,
        signature: Vec<u8>,
        keys: &RoleKeys,
        version: &Version,
    ) -> Result<Self, FormatError> {
        keys.verify(&layout::manifest(version), &bytes, &signature)?;
        Self::parse(bytes, signature, SignatureFormat::Minisign, version)
    }

    /// [`verify_pinned`](Self::verify_pinned) with a detached CMS signature
    /// `der` instead of minisign: the pin, then `check` over exactly
    /// `bytes`, then parsing. See [`CmsCheck`] for why the check is a
    /// closure.
    pub fn verify_pinned_cms<E: From<FormatError>>(
        bytes: Vec<u8>,
        der: Vec<u8>,
        pin: &ManifestRef,
        version: &Version,
        check: impl CmsCheck<E>,
    ) -> Result<Self, E> {
        check_pin(&bytes, pin, version)?;
        Self::verify_unpinned_cms(bytes, der, version, check)
    }

    /// [`verify_unpinned`](Self::verify_unpinned) with a detached CMS
    /// signature: for the copies a node requiring X.509 alone kept.
    pub fn verify_unpinned_cms<E: From<FormatError>>(
        bytes: Vec<u8>,
        der: Vec<u8>,
        version: &Version,
        check: impl CmsCheck<E>,
    ) -> Result<Self, E> {
        check(&bytes, &der)?;
        Ok(Self::parse(bytes, der, SignatureFormat::Cms, version)?)
    }

    /// Parses bytes whose signature has just been verified.
    fn parse(
        bytes: Vec<u8>,
        signature: Vec<u8>,
        signature_format: SignatureFormat,
        version: &Version,
    ) -> Result<Self, FormatError> {
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| FormatError::Json {
                what: "release manifest",
                source,
            })?;
        manifest.validate()?;
        if manifest.version != *version {
            return Err(FormatError::Inconsistent {
                what: layout::manifest(version),
                reason: format!("it describes version {}, not {version}", manifest.version),
            });
        }
        Ok(VerifiedManifest {
            manifest,
            bytes,
            signature,
            signature_format,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact signed bytes, for keeping a copy on the node.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The detached signature that verified [`bytes`](Self::bytes): a
    /// `.minisig`'s text or a `.p7s`'s DER, as
    /// [`signature_format`](Self::signature_format) says.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub fn signature_format(&self) -> SignatureFormat {
        self.signature_format
    }
}

/// Size and SHA-256 of a fetched manifest against its pin in the index:
/// cheap, and first, so a swapped manifest is named as such.
fn check_pin(bytes: &[u8], pin: &ManifestRef, version: &Version) -> Result<(), FormatError> {
    let actual = Sha256Digest::of(bytes);
    if bytes.len() as u64 != pin.size || actual != pin.sha256 {
        return Err(FormatError::Inconsistent {
            what: format!("manifest of {version}"),
            reason: format!(
                "it is {} bytes with SHA-256 {actual}, but the signed index pins {} bytes with SHA-256 {}: the repository or a mirror serves a different manifest",
                bytes.len(),
                pin.size,
                pin.sha256
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(_: &[u8], _: &[u8]) -> Result<(), FormatError> {
        Err(FormatError::BadSignature {
            what: "test".into(),
            reason: "refused by the check".into(),
        })
    }

    #[test]
    fn a_cms_check_runs_first_over_exactly_the_bytes_and_its_signature() {
        let garbage = b"{ not json".to_vec();
        // The check's refusal wins over anything parsing would say.
        let err = VerifiedIndex::verify_cms(&garbage, b"der", refuse).unwrap_err();
        assert!(err.to_string().contains("refused by the check"), "{err}");
        let err = VerifiedManifest::verify_unpinned_cms(
            garbage.clone(),
            b"der".to_vec(),
            &Version::new(1, 0, 0),
            refuse,
        )
        .unwrap_err();
        assert!(err.to_string().contains("refused by the check"), "{err}");
        // It sees exactly the bytes and signature given, and only after it
        // passed is anything parsed.
        let mut seen = None;
        let err = VerifiedIndex::verify_cms(&garbage, b"der", |b: &[u8], d: &[u8]| {
            seen = Some((b.to_vec(), d.to_vec()));
            Ok::<(), FormatError>(())
        })
        .unwrap_err();
        assert_eq!(seen, Some((garbage.clone(), b"der".to_vec())));
        assert!(matches!(err, FormatError::Json { .. }), "{err}");
    }

    #[test]
    fn the_pin_is_checked_before_the_cms_check_is_called() {
        let pin = ManifestRef {
            path: "manifests/1.0.0.json".into(),
            sha256: Sha256Digest::of(b"the pinned manifest"),
            size: 19,
            created: "2030-01-01T00:00:00Z".parse().unwrap(),
        };
        let mut called = false;
        let err = VerifiedManifest::verify_pinned_cms(
            b"another manifest".to_vec(),
            b"der".to_vec(),
            &pin,
            &Version::new(1, 0, 0),
            |_: &[u8], _: &[u8]| {
                called = true;
                Ok::<(), FormatError>(())
            },
        )
        .unwrap_err();
        assert!(!called);
        assert!(err.to_string().contains("pins"), "{err}");
    }
}
