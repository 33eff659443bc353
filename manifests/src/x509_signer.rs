//! What a release signer's X.509 certificate must allow, written once for
//! both sides: the publisher refuses to sign with a certificate nodes
//! would reject, and the node rejects signatures whose signer lacks it.
//!
//! The rule: keyUsage with digitalSignature, and an extendedKeyUsage that
//! names codeSigning. An absent extendedKeyUsage means "any" in RFC 5280;
//! ferry asks for codeSigning by name, so a TLS or e-mail certificate from
//! the same CA can never sign a release.

use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509Ref};

/// How a certificate falls short of a release signer's usages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerUsageError {
    /// `found` says what the keyUsage is ("has no keyUsage extension").
    KeyUsage { found: String },
    /// `found` lists what the extendedKeyUsage allows instead.
    ExtendedKeyUsage { found: String },
}

impl std::fmt::Display for SignerUsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignerUsageError::KeyUsage { found } => {
                write!(f, "{found}; ferry requires keyUsage digitalSignature")
            }
            SignerUsageError::ExtendedKeyUsage { found } => write!(
                f,
                "allows {found}, not codeSigning, which ferry requires of a release signer"
            ),
        }
    }
}

/// Checks `leaf` against the rule in the module docs.
pub fn check_signer_usage(leaf: &X509Ref) -> Result<(), SignerUsageError> {
    match leaf.key_usage() {
        Some(usage) if usage.contains(X509KeyUsage::DIGITAL_SIGNATURE) => {}
        Some(_) => {
            return Err(SignerUsageError::KeyUsage {
                found: "has a keyUsage without digitalSignature".into(),
            })
        }
        None => {
            return Err(SignerUsageError::KeyUsage {
                found: "has no keyUsage extension".into(),
            })
        }
    }
    match leaf.extended_key_usage() {
        Some(usage) if usage.contains(X509ExtendedKeyUsage::CODE_SIGN) => Ok(()),
        found => Err(SignerUsageError::ExtendedKeyUsage {
            found: describe_eku(found),
        }),
    }
}

fn describe_eku(usage: Option<X509ExtendedKeyUsage>) -> String {
    let Some(usage) = usage else {
        return "any usage (it has no extendedKeyUsage extension)".into();
    };
    let names: Vec<&str> = [
        (X509ExtendedKeyUsage::SSL_SERVER, "serverAuth"),
        (X509ExtendedKeyUsage::SSL_CLIENT, "clientAuth"),
        (X509ExtendedKeyUsage::SMIME, "emailProtection"),
        (X509ExtendedKeyUsage::OCSP_SIGN, "OCSPSigning"),
        (X509ExtendedKeyUsage::TIMESTAMP, "timeStamping"),
        (X509ExtendedKeyUsage::ANYEKU, "anyExtendedKeyUsage"),
    ]
    .into_iter()
    .filter(|(flag, _)| usage.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "only usages ferry does not know".into()
    } else {
        format!("{} only", names.join(", "))
    }
}
