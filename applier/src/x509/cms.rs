//! Verifying a detached DER CMS signature and its X.509 chain (OpenSSL).
//!
//! OpenSSL's `CMS_verify` would check the chain too, but with the
//! `smime_sign` purpose, which rejects a leaf whose extended key usage is
//! codeSigning only — exactly the certificate a software publisher gets. So
//! the work is split, each step deliberate:
//!
//! 1. `CMS_verify` with `CMS_NO_SIGNER_CERT_VERIFY`: the signature and the
//!    content digest over exactly the bytes fetched (a tampered payload
//!    fails here), nothing about trust;
//! 2. the chain, with an `X509StoreContext` over a store holding only the
//!    pinned anchors (never the system store), purpose ANY (set on purpose:
//!    the purpose table differs between OpenSSL versions, and the leaf's
//!    usage is checked below with messages of our own), and the validity
//!    dates checked at the node's clock, which tests inject;
//! 3. the leaf: keyUsage digitalSignature, extended key usage codeSigning,
//!    and the allowed signer name when `x509_signer` is set.

use std::fmt;
use std::path::{Path, PathBuf};

use foreign_types::{ForeignType, ForeignTypeRef};
use jiff::Timestamp;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::stack::{Stack, StackRef};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509NameRef, X509PurposeId, X509Ref, X509StoreContext, X509};
use thiserror::Error;

use super::{SignerName, MAX_CMS_SIGNATURE_BYTES};

// Two stable libcrypto functions (OpenSSL 1.0.0 and later) that openssl-sys
// does not declare. The vendored libcrypto the `openssl` crate links
// provides them.
extern "C" {
    /// The signer certificates `CMS_verify` found, in a new stack whose
    /// elements are borrowed from `cms` (free the stack, not the elements).
    fn CMS_get0_signers(cms: *mut openssl_sys::CMS_ContentInfo) -> *mut openssl_sys::stack_st_X509;
    /// Every certificate the signature carries, each with a new reference
    /// (free the stack and the elements), or NULL when there are none.
    fn CMS_get1_certs(cms: *mut openssl_sys::CMS_ContentInfo) -> *mut openssl_sys::stack_st_X509;
}

/// Largest PEM file of trust anchors read from `x509_roots`.
const MAX_ANCHOR_FILE_BYTES: u64 = 1024 * 1024;

/// Why an X.509 signature was refused (or a policy could not be loaded).
/// Each message names the reason and, where it helps, the certificate.
#[derive(Debug, Error)]
pub enum X509Error {
    #[error("it is not a DER CMS/PKCS#7 signature ({0})")]
    Malformed(String),

    #[error("it carries {0} signers; ferry accepts exactly one")]
    SignerCount(usize),

    #[error("the signature does not match the signed bytes: the file was tampered with, or the signature belongs to another file ({0})")]
    Tampered(String),

    #[error("unknown CA: the signer certificate \"{subject}\" does not chain to a trust anchor pinned in trust.x509_roots (its chain ends at issuer \"{issuer}\")")]
    UnknownCa { subject: String, issuer: String },

    #[error("{role} \"{subject}\" expired at {not_after} (checked at {now})")]
    Expired {
        role: CertRole,
        subject: String,
        not_after: String,
        now: Timestamp,
    },

    #[error("{role} \"{subject}\" is not yet valid: its validity starts at {not_before} (checked at {now})")]
    NotYetValid {
        role: CertRole,
        subject: String,
        not_before: String,
        now: Timestamp,
    },

    #[error("the certificate chain is invalid at {role} \"{subject}\": {reason}")]
    Chain {
        role: CertRole,
        subject: String,
        reason: String,
    },

    #[error("wrong key usage: the signer certificate \"{subject}\" {found}; ferry requires keyUsage digitalSignature")]
    KeyUsage { subject: String, found: String },

    #[error("wrong extended key usage: the signer certificate \"{subject}\" allows {found}, not codeSigning, which ferry requires of a release signer")]
    ExtendedKeyUsage { subject: String, found: String },

    #[error(
        "the signer \"{found}\" is not the allowed signer (trust.x509_signer = \"{expected}\")"
    )]
    SignerName { expected: String, found: String },

    #[error("trust anchors: {0}")]
    Anchors(String),

    #[error("OpenSSL failed while verifying: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// Which certificate of the chain a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    Signer,
    Ca,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertRole::Signer => "the signer certificate",
            CertRole::Ca => "the CA certificate",
        })
    }
}

/// What an X.509 signature must chain to, and who may have made it.
#[derive(Clone)]
pub struct X509Policy {
    anchors: Vec<X509>,
    signer: Option<SignerName>,
}

impl X509Policy {
    /// A policy trusting exactly `anchors` (root or intermediate CA
    /// certificates: each is a trust anchor, whether self-signed or not).
    pub fn new(anchors: Vec<X509>, signer: Option<SignerName>) -> Result<X509Policy, X509Error> {
        if anchors.is_empty() {
            return Err(X509Error::Anchors(
                "no trust anchor given: a signature could chain to nothing".into(),
            ));
        }
        Ok(X509Policy { anchors, signer })
    }

    /// A policy trusting every certificate in `pem` (for tools and
    /// benchmarks that hold the anchors in memory).
    pub fn from_pem(pem: &[u8], signer: Option<SignerName>) -> Result<X509Policy, X509Error> {
        let anchors = X509::stack_from_pem(pem)
            .map_err(|e| X509Error::Anchors(format!("not PEM certificates ({e})")))?;
        X509Policy::new(anchors, signer)
    }

    /// Reads every certificate of each PEM file (`[trust] x509_roots`).
    pub fn from_pem_files(
        paths: &[PathBuf],
        signer: Option<SignerName>,
    ) -> Result<X509Policy, X509Error> {
        let mut anchors = Vec::new();
        for path in paths {
            anchors.extend(read_pem_certificates(path)?);
        }
        X509Policy::new(anchors, signer)
    }

    /// The store for one verification: the anchors and nothing else, with
    /// the clock pinned to `now`. Built per call because the time belongs
    /// to the store's parameters; a handful of certificates costs
    /// microseconds.
    fn store_at(&self, now: Timestamp) -> Result<X509Store, ErrorStack> {
        let mut param = X509VerifyParam::new()?;
        // Sets X509_V_FLAG_USE_CHECK_TIME: validity is judged at the node's
        // (injectable) clock, not at OpenSSL's own reading of the time.
        param.set_time(now.as_second() as _);
        // Any certificate in x509_roots is an anchor, so an operator can pin
        // an intermediate CA to trust less than its whole root.
        param.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
        param.set_purpose(X509PurposeId::ANY)?;
        let mut builder = X509StoreBuilder::new()?;
        builder.set_param(&param)?;
        for anchor in &self.anchors {
            builder.add_cert(anchor.clone())?;
        }
        Ok(builder.build())
    }
}

fn read_pem_certificates(path: &Path) -> Result<Vec<X509>, X509Error> {
    use std::io::Read;
    let anchors_error = |what: String| X509Error::Anchors(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path)
        .map_err(|e| anchors_error(format!("cannot read it ({e}); check trust.x509_roots")))?;
    let mut pem = Vec::new();
    file.take(MAX_ANCHOR_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| anchors_error(format!("cannot read it ({e})")))?;
    if pem.len() as u64 > MAX_ANCHOR_FILE_BYTES {
        return Err(anchors_error(format!(
            "larger than {MAX_ANCHOR_FILE_BYTES} bytes: not a file of CA certificates"
        )));
    }
    let certificates = X509::stack_from_pem(&pem)
        .map_err(|e| anchors_error(format!("not a PEM file of certificates ({e})")))?;
    if certificates.is_empty() {
        return Err(anchors_error(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// Who signed: the leaf of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerIdentity {
    /// e.g. `CN=release.example.com, O=Example Corp`
    pub subject: String,
    pub issuer: String,
    /// SHA-256 of the signer certificate's DER, lowercase hex.
    pub sha256: String,
}

/// Verifies `der`, a detached DER CMS signature, over exactly `data`: the
/// signature, the chain to one of `policy`'s anchors at time `now`, the
/// leaf's key usages and, if the policy names one, the signer.
pub fn verify_detached(
    data: &[u8],
    der: &[u8],
    policy: &X509Policy,
    now: Timestamp,
) -> Result<SignerIdentity, X509Error> {
    if der.len() as u64 > MAX_CMS_SIGNATURE_BYTES {
        return Err(X509Error::Malformed(format!(
            "{} bytes, more than the {MAX_CMS_SIGNATURE_BYTES} a signature may have",
            der.len()
        )));
    }
    let mut cms = CmsContentInfo::from_der(der).map_err(|e| X509Error::Malformed(reason(&e)))?;

    // 1. The signature over exactly these bytes; trust comes next.
    cms.verify(
        None,
        None,
        Some(data),
        None,
        CMSOptions::BINARY | CMSOptions::NO_SIGNER_CERT_VERIFY,
    )
    .map_err(|e| X509Error::Tampered(reason(&e)))?;
    let leaf = single_signer(&cms)?;
    let carried = carried_certificates(&cms)?;

    // 2. The chain, to a pinned anchor, at `now`.
    check_chain(&leaf, &carried, policy, now)?;

    // 3. What the leaf may be used for, and who it is.
    let subject = name_text(leaf.subject_name());
    check_leaf_usage(&leaf, &subject)?;
    if let Some(expected) = &policy.signer {
        let entries = name_entries(leaf.subject_name());
        if !expected.matches(entries.iter().map(|(a, v)| (a.as_str(), v.as_str()))) {
            return Err(X509Error::SignerName {
                expected: expected.to_string(),
                found: subject,
            });
        }
    }
    Ok(SignerIdentity {
        subject,
        issuer: name_text(leaf.issuer_name()),
        sha256: hex_lower(&leaf.digest(MessageDigest::sha256())?),
    })
}

/// The one signer certificate `CMS_verify` matched to the signature.
fn single_signer(cms: &CmsContentInfo) -> Result<X509, X509Error> {
    // SAFETY: `cms` is a valid CMS_ContentInfo for the whole call.
    // CMS_get0_signers returns a new stack (or NULL on error) whose elements
    // belong to `cms`: each is up-referenced by `to_owned` before the stack
    // alone is freed, and nothing borrowed outlives this block.
    unsafe {
        let signers = CMS_get0_signers(cms.as_ptr());
        if signers.is_null() {
            return Err(X509Error::OpenSsl(ErrorStack::get()));
        }
        let owned: Vec<X509> = StackRef::<X509>::from_ptr(signers)
            .iter()
            .map(X509Ref::to_owned)
            .collect();
        openssl_sys::OPENSSL_sk_free(signers.cast());
        match <[X509; 1]>::try_from(owned) {
            Ok([leaf]) => Ok(leaf),
            Err(others) => Err(X509Error::SignerCount(others.len())),
        }
    }
}

/// The certificates the signature carries (the leaf and its
/// intermediates): untrusted, they only help build the chain.
fn carried_certificates(cms: &CmsContentInfo) -> Result<Stack<X509>, X509Error> {
    // SAFETY: `cms` is valid; CMS_get1_certs returns a stack the caller owns
    // along with a reference to each element, which `Stack`'s drop releases.
    unsafe {
        let certs = CMS_get1_certs(cms.as_ptr());
        if certs.is_null() {
            // No certificates at all (the signer had to come from somewhere,
            // so this is unusual but not ours to reject here).
            return Ok(Stack::new()?);
        }
        Ok(Stack::from_ptr(certs))
    }
}

fn check_chain(
    leaf: &X509Ref,
    carried: &StackRef<X509>,
    policy: &X509Policy,
    now: Timestamp,
) -> Result<(), X509Error> {
    let store = policy.store_at(now)?;
    let mut context = X509StoreContext::new()?;
    context.init(&store, leaf, carried, |ctx| {
        if ctx.verify_cert()? {
            return Ok(Ok(()));
        }
        let error = ctx.error();
        let depth = ctx.error_depth();
        let current = ctx.current_cert().unwrap_or(leaf);
        let role = if depth == 0 {
            CertRole::Signer
        } else {
            CertRole::Ca
        };
        let subject = name_text(current.subject_name());
        let code = error.as_raw();
        Ok(Err(match code {
            openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
            | openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | openssl_sys::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
            | openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
            | openssl_sys::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => X509Error::UnknownCa {
                subject: name_text(leaf.subject_name()),
                issuer: name_text(current.issuer_name()),
            },
            openssl_sys::X509_V_ERR_CERT_HAS_EXPIRED => X509Error::Expired {
                role,
                subject,
                not_after: current.not_after().to_string(),
                now,
            },
            openssl_sys::X509_V_ERR_CERT_NOT_YET_VALID => X509Error::NotYetValid {
                role,
                subject,
                not_before: current.not_before().to_string(),
                now,
            },
            _ => X509Error::Chain {
                role,
                subject,
                reason: error.error_string().to_string(),
            },
        }))
    })?
}

fn check_leaf_usage(leaf: &X509Ref, subject: &str) -> Result<(), X509Error> {
    use manifests::x509_signer::{check_signer_usage, SignerUsageError};
    check_signer_usage(leaf).map_err(|e| match e {
        SignerUsageError::KeyUsage { found } => X509Error::KeyUsage {
            subject: subject.into(),
            found,
        },
        SignerUsageError::ExtendedKeyUsage { found } => X509Error::ExtendedKeyUsage {
            subject: subject.into(),
            found,
        },
    })
}

/// (short name, value) for each entry of `name`, in order.
fn name_entries(name: &X509NameRef) -> Vec<(String, String)> {
    name.entries()
        .map(|entry| {
            let attr = entry
                .object()
                .nid()
                .short_name()
                .map(str::to_string)
                .unwrap_or_else(|_| entry.object().to_string());
            let value = entry
                .data()
                .to_string()
                .unwrap_or_else(|_| "<undecodable>".into());
            (attr, value)
        })
        .collect()
}

/// `CN=release.example.com, O=Example Corp`
fn name_text(name: &X509NameRef) -> String {
    name_entries(name)
        .iter()
        .map(|(a, v)| format!("{a}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn reason(errors: &ErrorStack) -> String {
    let reasons: Vec<String> = errors
        .errors()
        .iter()
        .map(|e| {
            let mut text = e.reason().unwrap_or("unknown error").to_string();
            if let Some(data) = e.data() {
                text.push_str(": ");
                text.push_str(data);
            }
            text
        })
        .collect();
    if reasons.is_empty() {
        "no detail from OpenSSL".into()
    } else {
        reasons.join("; ")
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
