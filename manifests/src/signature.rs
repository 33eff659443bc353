//! Detached minisign signatures over exact served bytes.
//!
//! Key and signature files are minisign's own text formats, so keys from
//! `minisign -G` work with `ferry-publish` and every ferry signature checks
//! with `minisign -V`. Only prehashed (BLAKE2b, minisign ≥ 0.8) signatures are
//! accepted: legacy ones are refused rather than supported twice.

use std::fmt;
use std::path::Path;

use base64::Engine;
use minisign_verify::{PublicKey, Signature};

use crate::FormatError;

/// A minisign key id, shown as minisign shows it (16 uppercase hex digits),
/// so that an operator can match it with `minisign -V` output.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct TrustedKey {
    id: KeyId,
    key: PublicKey,
}

/// The public keys a node trusts. Format 1 trusts a signature from any one of
/// them (a threshold of one).
#[derive(Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        TrustedKeys::default()
    }

    /// Adds a key from the text of a minisign public key file (two lines,
    /// `untrusted comment:` then base64) or from a bare base64 key.
    /// `origin` names where it came from, for error messages.
    pub fn add_text(&mut self, text: &str, origin: &str) -> Result<KeyId, FormatError> {
        let bad = |reason: &str| FormatError::BadPublicKey {
            origin: origin.to_string(),
            reason: reason.to_string(),
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| bad("no key found (expected a minisign public key file)"))?;
        let key = PublicKey::from_base64(line)
            .map_err(|e| bad(&format!("not a minisign Ed25519 public key ({e})")))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|_| bad("not valid base64"))?;
        let id = KeyId(raw[2..10].try_into().map_err(|_| bad("too short"))?);
        if !self.keys.iter().any(|k| k.id == id) {
            self.keys.push(TrustedKey { id, key });
        }
        Ok(id)
    }

    pub fn add_file(&mut self, path: &Path) -> Result<KeyId, FormatError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::BadPublicKey {
            origin: origin.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        self.add_text(&text, &origin)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    /// Verifies `signature_text` (a `.minisig` file) over exactly `data`.
    /// `what` names the signed file in errors. Returns the signing key's id.
    pub fn verify(
        &self,
        what: &str,
        data: &[u8],
        signature_text: &[u8],
    ) -> Result<KeyId, FormatError> {
        let bad = |reason: String| FormatError::BadSignature {
            what: what.to_string(),
            reason,
        };
        let text = std::str::from_utf8(signature_text)
            .map_err(|_| bad("the signature file is not text".into()))?;
        let signature = Signature::decode(text)
            .map_err(|e| bad(format!("the signature file cannot be decoded ({e})")))?;
        let signer = signature_key_id(text).ok_or_else(|| bad("no signature line".into()))?;
        let Some(key) = self.keys.iter().find(|k| k.id == signer) else {
            return Err(FormatError::UntrustedKey {
                what: what.to_string(),
                key_id: signer.to_string(),
            });
        };
        key.key.verify(data, &signature, false).map_err(|e| {
            bad(format!(
                "{e} with trusted key {}: the file was modified after signing or the signature belongs to other content",
                key.id
            ))
        })?;
        Ok(key.id)
    }
}

/// The key id inside a minisign signature file (second line, bytes 2..10).
fn signature_key_id(text: &str) -> Option<KeyId> {
    let line = text.lines().nth(1)?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    Some(KeyId(raw.get(2..10)?.try_into().ok()?))
}
