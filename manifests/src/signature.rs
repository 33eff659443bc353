//! Detached minisign signatures over exact served bytes, one or several per
//! file.
//!
//! Key and signature files are minisign's own text formats, so keys from
//! `minisign -G` work with `ferry-publish` and every ferry signature checks
//! with `minisign -V`. Only prehashed (BLAKE2b, minisign ≥ 0.8) signatures are
//! accepted: legacy ones are refused rather than supported twice.
//!
//! A `.minisig` may hold several signature blocks, concatenated, so that a
//! role can require k of its n keys ([`RoleKeys`]). Each block is exactly what
//! `minisign -S` writes, so the stock `minisign -V` still checks the first
//! one. A key counts once however many blocks it made: otherwise one stolen
//! key could meet any threshold by signing twice.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use minisign_verify::{PublicKey, Signature};

use crate::FormatError;

/// Most signature blocks a `.minisig` may hold: far more than any real role
/// needs, few enough that a hostile file cannot make a node verify for long.
pub const MAX_SIGNATURE_BLOCKS: usize = 32;

/// A minisign key id, shown as minisign shows it (16 uppercase hex digits),
/// so that an operator can match it with `minisign -V` output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl FromStr for KeyId {
    type Err = FormatError;

    /// Parses the spelling [`Display`](fmt::Display) writes, and only it, so
    /// a key id in `root.json` has one form.
    fn from_str(text: &str) -> Result<Self, FormatError> {
        let ok = text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        let value = u64::from_str_radix(text, 16).ok().filter(|_| ok);
        value
            .map(|v| KeyId(v.to_le_bytes()))
            .ok_or_else(|| FormatError::BadPublicKey {
                origin: format!("key id {text:?}"),
                reason: "expected 16 uppercase hex digits, as minisign shows key ids".into(),
            })
    }
}

#[derive(Clone)]
struct TrustedKey {
    id: KeyId,
    key: PublicKey,
    /// The bare base64 key line, for writing the key into `root.json`.
    base64: String,
}

/// A set of public keys. On its own ([`TrustedKeys::verify`]) a signature
/// from any one of them is accepted; [`RoleKeys`] adds a threshold.
#[derive(Default, Clone)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
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
        let id = KeyId(
            raw.get(2..10)
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| bad("too short"))?,
        );
        if !self.keys.iter().any(|k| k.id == id) {
            self.keys.push(TrustedKey {
                id,
                key,
                base64: line.to_string(),
            });
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

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// The bare base64 line of key `id`, as `root.json` stores it.
    pub fn base64_of(&self, id: KeyId) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.base64.as_str())
    }

    /// Verifies `signature_text` (a `.minisig` file, one or more blocks)
    /// over exactly `data`, accepting a valid signature by any one of these
    /// keys. `what` names the signed file in errors. Returns the first
    /// signer's id.
    pub fn verify(
        &self,
        what: &str,
        data: &[u8],
        signature_text: &[u8],
    ) -> Result<KeyId, FormatError> {
        let signers = verify_threshold(self, 1, "trusted", what, data, signature_text)?;
        Ok(signers[0])
    }
}

/// The keys of one role and how many of them must sign: `threshold` of the
/// role's keys, each counted once.
#[derive(Clone)]
pub struct RoleKeys {
    role: String,
    keys: TrustedKeys,
    threshold: usize,
}

impl fmt::Debug for RoleKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} role: {} of {:?}",
            self.role, self.threshold, self.keys
        )
    }
}

impl RoleKeys {
    /// `threshold` of `keys` must sign; `role` names the role in messages.
    pub fn new(role: &str, keys: TrustedKeys, threshold: u32) -> Result<Self, FormatError> {
        let threshold = threshold as usize;
        if threshold == 0 || threshold > keys.len() {
            return Err(FormatError::Inconsistent {
                what: format!("the {role} role"),
                reason: format!(
                    "its threshold is {threshold} but it has {} key(s): a threshold must be between 1 and the number of keys",
                    keys.len()
                ),
            });
        }
        Ok(RoleKeys {
            role: role.to_string(),
            keys,
            threshold,
        })
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The role's key ids, for comparing two roles' key sets.
    pub fn key_ids(&self) -> BTreeSet<KeyId> {
        self.keys.ids().collect()
    }

    /// Verifies `signature_text` over exactly `data`: at least `threshold`
    /// blocks must be valid signatures by distinct keys of the role. Blocks
    /// by other keys are ignored. Returns the distinct valid signers, sorted.
    pub fn verify(
        &self,
        what: &str,
        data: &[u8],
        signature_text: &[u8],
    ) -> Result<Vec<KeyId>, FormatError> {
        verify_threshold(
            &self.keys,
            self.threshold,
            &self.role,
            what,
            data,
            signature_text,
        )
    }
}

/// One block of a `.minisig` file: its text (4 lines) and signer key id.
#[derive(Debug, Clone)]
pub struct SignatureBlock {
    pub key_id: KeyId,
    pub text: String,
}

/// Splits a `.minisig` file into its signature blocks. Blank lines between
/// blocks are allowed; anything else that is not a well-formed block
/// rejects the whole file — a publisher never writes one, so it is damage
/// or an attack, and a verifier that skips what it cannot read invites
/// parser confusion.
pub fn split_signature_blocks(
    what: &str,
    signature_text: &[u8],
) -> Result<Vec<SignatureBlock>, FormatError> {
    let bad = |reason: String| FormatError::BadSignature {
        what: what.to_string(),
        reason,
    };
    let text = std::str::from_utf8(signature_text)
        .map_err(|_| bad("the signature file is not text".into()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut blocks = Vec::new();
    while let Some(first) = lines.next() {
        let number = blocks.len() + 1;
        if blocks.len() == MAX_SIGNATURE_BLOCKS {
            return Err(bad(format!(
                "it holds more than {MAX_SIGNATURE_BLOCKS} signature blocks"
            )));
        }
        let block: Vec<&str> = std::iter::once(first)
            .chain(lines.by_ref().take(3))
            .collect();
        if block.len() != 4
            || !block[0].starts_with("untrusted comment:")
            || !block[2].starts_with("trusted comment:")
        {
            return Err(bad(format!(
                "signature block {number} is not 4 minisign lines (untrusted comment, signature, trusted comment, global signature)"
            )));
        }
        let block_text = format!("{}\n", block.join("\n"));
        let key_id = signature_key_id(&block_text)
            .ok_or_else(|| bad(format!("signature block {number} has no signature line")))?;
        blocks.push(SignatureBlock {
            key_id,
            text: block_text,
        });
    }
    if blocks.is_empty() {
        return Err(bad("the signature file holds no signature".into()));
    }
    Ok(blocks)
}

enum BlockOutcome {
    Valid,
    Duplicate,
    Invalid(String),
    Foreign,
}

fn verify_threshold(
    keys: &TrustedKeys,
    threshold: usize,
    role: &str,
    what: &str,
    data: &[u8],
    signature_text: &[u8],
) -> Result<Vec<KeyId>, FormatError> {
    let blocks = split_signature_blocks(what, signature_text)?;
    let mut valid: Vec<KeyId> = Vec::new();
    let mut outcomes = Vec::with_capacity(blocks.len());
    for block in &blocks {
        let outcome = match keys.keys.iter().find(|k| k.id == block.key_id) {
            None => BlockOutcome::Foreign,
            Some(_) if valid.contains(&block.key_id) => BlockOutcome::Duplicate,
            Some(key) => match Signature::decode(&block.text) {
                Err(e) => BlockOutcome::Invalid(format!("cannot be decoded ({e})")),
                Ok(signature) => match key.key.verify(data, &signature, false) {
                    Ok(()) => {
                        valid.push(key.id);
                        BlockOutcome::Valid
                    }
                    Err(e) => BlockOutcome::Invalid(e.to_string()),
                },
            },
        };
        outcomes.push((block.key_id, outcome));
    }
    if valid.len() >= threshold {
        valid.sort();
        return Ok(valid);
    }
    // Single-key trust keeps the plain messages an operator of a one-key
    // repository knows: "signed by another key" and "modified after signing".
    if threshold == 1 {
        if let Some((id, BlockOutcome::Invalid(e))) = outcomes
            .iter()
            .find(|(_, o)| matches!(o, BlockOutcome::Invalid(_)))
        {
            return Err(FormatError::BadSignature {
                what: what.to_string(),
                reason: format!(
                    "{e} with trusted key {id}: the file was modified after signing or the signature belongs to other content"
                ),
            });
        }
        let seen: Vec<String> = outcomes.iter().map(|(id, _)| id.to_string()).collect();
        return Err(FormatError::UntrustedKey {
            what: what.to_string(),
            key_id: seen.join(", "),
        });
    }
    let details: Vec<String> = outcomes
        .iter()
        .map(|(id, outcome)| match outcome {
            BlockOutcome::Valid => format!("{id} valid"),
            BlockOutcome::Duplicate => format!("{id} again (counted once)"),
            BlockOutcome::Invalid(e) => format!("{id} INVALID ({e})"),
            BlockOutcome::Foreign => format!("{id} not a key of this role"),
        })
        .collect();
    Err(FormatError::ThresholdNotMet {
        what: what.to_string(),
        role: role.to_string(),
        threshold,
        valid: valid.len(),
        seen: details.join("; "),
    })
}

/// The key id inside a minisign signature block (second line, bytes 2..10).
fn signature_key_id(text: &str) -> Option<KeyId> {
    let line = text.lines().nth(1)?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    Some(KeyId(raw.get(2..10)?.try_into().ok()?))
}
