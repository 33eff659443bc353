//! X.509 trust: detached CMS/PKCS#7 signatures (`<file>.p7s`) beside the
//! minisign ones, for fleets whose software must be signed under a company
//! PKI (RAUC and SWUpdate work the same way).
//!
//! With `[trust] require = ["minisign", "x509"]` the `.p7s` is checked on
//! top of the minisign signatures; with `["x509"]` it is the only signature
//! a node checks (no minisign keys, no `roots/` walk): its trust is anchored
//! in `x509_roots`, and rotating a signing certificate is done by the CA.
//!
//! This half is always compiled: the `[trust]` keys (`require`,
//! `x509_roots`, `x509_signer`), their checks, and the hooks that fetch and
//! verify a `.p7s`. The cryptography (`cms`) needs OpenSSL and exists only in
//! builds with the `x509` cargo feature (`ferry-x509` from `cargo xtask
//! dist`); a build without it refuses, at startup, any configuration that
//! requires X.509 rather than silently installing on minisign alone.

use std::fmt;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Deserialize;

use crate::config::TrustConfig;
use crate::error::{ConfigError, ConfigMistake, NodeError, Result};
use crate::transport::Transport;
#[cfg(feature = "x509")]
use crate::transport::{fetch_bytes, FetchError};

#[cfg(feature = "x509")]
mod cms;
#[cfg(feature = "x509")]
pub use cms::{verify_detached, SignerIdentity, X509Error, X509Policy};

/// Largest `.p7s` a node reads: a signature with a few certificates is 2 to
/// 8 KiB; the cap keeps a hostile server from streaming without end before
/// anything vouches for the size. The format's rule, defined once.
pub use manifests::MAX_CMS_SIGNATURE_BYTES;

/// A kind of signature `[trust] require` can demand on every index and
/// manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureKind {
    /// `<file>.minisig`, checked against the node's minisign keys.
    Minisign,
    /// `<file>.p7s`, a detached DER CMS signature chaining to `x509_roots`.
    X509,
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureKind::Minisign => "minisign",
            SignatureKind::X509 => "x509",
        })
    }
}

/// `[trust] require` when not set: what every ferry before X.509 checked.
pub fn default_require() -> Vec<SignatureKind> {
    vec![SignatureKind::Minisign]
}

/// Whether this binary was built with the `x509` feature.
pub const SUPPORTED: bool = cfg!(feature = "x509");

/// The allowed signer (`[trust] x509_signer`): `ATTR=VALUE` pairs separated
/// by commas, e.g. `CN=release.example.com` or `CN=release.example.com,
/// O=Example Corp`. Each named attribute must occur exactly once in the
/// signer certificate's subject, with exactly that value; attributes not
/// named are not constrained. Exactly once, because a CA that put two CNs in
/// one subject has vouched for neither alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerName {
    /// (OpenSSL short name, value), in the order written.
    attributes: Vec<(&'static str, String)>,
    text: String,
}

/// Subject attributes `x509_signer` may name, as written in the
/// configuration (any case) and as OpenSSL's short names.
const SIGNER_ATTRIBUTES: [&str; 9] = [
    "CN",
    "O",
    "OU",
    "C",
    "L",
    "ST",
    "DC",
    "serialNumber",
    "emailAddress",
];

/// Why `x509_signer` is not a signer name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSignerName {
    #[error("{0:?} is not ATTR=VALUE (write e.g. \"CN=release.example.com\")")]
    NotAttrValue(String),
    #[error("unknown subject attribute {attr:?} (use one of {})", SIGNER_ATTRIBUTES.join(", "))]
    UnknownAttribute { attr: String },
    #[error("{0}= has an empty value")]
    EmptyValue(String),
    #[error("{0} is named twice")]
    NamedTwice(&'static str),
}

impl SignerName {
    pub fn parse(text: &str) -> std::result::Result<SignerName, BadSignerName> {
        let mut attributes = Vec::new();
        for part in text.split(',') {
            let Some((attr, value)) = part.split_once('=') else {
                return Err(BadSignerName::NotAttrValue(part.to_string()));
            };
            let (attr, value) = (attr.trim(), value.trim());
            let Some(known) = SIGNER_ATTRIBUTES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(attr))
            else {
                return Err(BadSignerName::UnknownAttribute {
                    attr: attr.to_string(),
                });
            };
            if value.is_empty() {
                return Err(BadSignerName::EmptyValue(attr.to_string()));
            }
            if attributes.iter().any(|(a, _)| a == known) {
                return Err(BadSignerName::NamedTwice(known));
            }
            attributes.push((*known, value.to_string()));
        }
        Ok(SignerName {
            attributes,
            text: text.trim().to_string(),
        })
    }

    /// The (short name, value) pairs a subject must carry.
    pub fn attributes(&self) -> &[(&'static str, String)] {
        &self.attributes
    }

    /// Whether a subject, as (short name, value) entries, matches.
    pub fn matches<'a>(&self, subject: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> bool {
        self.attributes.iter().all(|(attr, wanted)| {
            let mut found = subject.clone().filter(|(a, _)| a == attr);
            matches!((found.next(), found.next()), (Some((_, v)), None) if v == wanted)
        })
    }
}

impl fmt::Display for SignerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TrustConfig {
    /// `[trust] require`, or its default.
    pub fn required_signatures(&self) -> Vec<SignatureKind> {
        self.require.clone().unwrap_or_else(default_require)
    }
}

/// [`check_config`] on the `[trust]` table (from `Config::check`).
pub fn check_trust_config(trust: &TrustConfig) -> std::result::Result<(), ConfigMistake> {
    check_config(
        &trust.required_signatures(),
        &trust.x509_roots,
        trust.x509_signer.as_deref(),
    )
}

/// Checks the `[trust]` X.509 keys together; `Err` is a message naming the
/// key and what to do. Run at startup, so a node that cannot honour its
/// policy refuses before it fetches anything.
pub fn check_config(
    require: &[SignatureKind],
    x509_roots: &[PathBuf],
    x509_signer: Option<&str>,
) -> std::result::Result<(), ConfigMistake> {
    let bad = |message: String| Err(ConfigMistake::new(message));
    if require.is_empty() {
        return bad(
            "trust.require is empty: ferry installs nothing it cannot verify; use [\"minisign\"], [\"x509\"] or both"
                .into(),
        );
    }
    if let Some((_, kind)) = require
        .iter()
        .enumerate()
        .find(|(i, kind)| require[..*i].contains(kind))
    {
        return bad(format!(
            "trust.require names \"{kind}\" twice: list each signature kind once"
        ));
    }
    let wants_x509 = require.contains(&SignatureKind::X509);
    if !wants_x509 {
        if !x509_roots.is_empty() || x509_signer.is_some() {
            return bad(
                "trust.x509_roots or trust.x509_signer is set, but trust.require does not include \"x509\", so no X.509 signature would be checked: add \"x509\" to trust.require, or remove those keys"
                    .into(),
            );
        }
        return Ok(());
    }
    if !SUPPORTED {
        return Err(unsupported());
    }
    if x509_roots.is_empty() {
        return bad(
            "trust.require includes \"x509\" but trust.x509_roots is empty: list the PEM files of the CA certificates that signatures must chain to (the system store is never used)"
                .into(),
        );
    }
    if let Some(path) = x509_roots.iter().find(|p| !p.is_absolute()) {
        return bad(format!(
            "trust.x509_roots entry {} must be an absolute path",
            path.display()
        ));
    }
    if let Some(signer) = x509_signer {
        if let Err(e) = SignerName::parse(signer) {
            return bad(format!("trust.x509_signer {signer:?}: {e}"));
        }
    }
    Ok(())
}

fn unsupported() -> ConfigMistake {
    ConfigMistake::new(format!(
        "trust.require includes \"x509\", but this ferry {} build lacks X.509 support (it was built without the `x509` feature): install the ferry-x509 build (`cargo xtask dist` makes target/dist/ferry-x509), or remove \"x509\" from trust.require",
        env!("CARGO_PKG_VERSION")
    ))
}

/// The node's X.509 requirement for one run, loaded from `[trust]` once.
/// With minisign required too, `check` is called on every index and
/// manifest over the bytes minisign verified; with X.509 alone, `fetch`
/// and `verify` are the check `manifests::Verified*::verify_*_cms` run
/// before parsing.
#[derive(Clone)]
pub struct X509Requirement {
    #[cfg(feature = "x509")]
    policy: Option<X509Policy>,
}

impl X509Requirement {
    /// No `.p7s` is required (the default policy).
    pub fn none() -> X509Requirement {
        X509Requirement {
            #[cfg(feature = "x509")]
            policy: None,
        }
    }

    /// Loads the trust anchors when `[trust] require` includes `x509`.
    pub fn load(trust: &TrustConfig) -> Result<X509Requirement> {
        let require = trust.required_signatures();
        let (x509_roots, x509_signer) = (&trust.x509_roots, trust.x509_signer.as_deref());
        check_config(&require, x509_roots, x509_signer).map_err(ConfigError::Trust)?;
        if !require.contains(&SignatureKind::X509) {
            return Ok(X509Requirement::none());
        }
        #[cfg(feature = "x509")]
        {
            let signer = x509_signer
                .map(SignerName::parse)
                .transpose()
                .map_err(|e| ConfigError::Trust(ConfigMistake::new(e.to_string())))?;
            let policy = X509Policy::from_pem_files(x509_roots, signer)?;
            Ok(X509Requirement {
                policy: Some(policy),
            })
        }
        // `check_config` refuses x509 in a build without the feature, so
        // this is not reached; were it, nothing unverified gets through.
        #[cfg(not(feature = "x509"))]
        Err(ConfigError::Trust(unsupported()).into())
    }

    /// Whether `.p7s` signatures are checked.
    pub fn is_required(&self) -> bool {
        #[cfg(feature = "x509")]
        {
            self.policy.is_some()
        }
        #[cfg(not(feature = "x509"))]
        {
            false
        }
    }

    /// Fetches `<path>.p7s` and checks it against exactly `bytes`, when the
    /// policy requires X.509 (on top of minisign); a missing `.p7s` is then
    /// a rejection (the file is unsigned for this node), not a network
    /// error. Without the requirement, does nothing.
    pub fn check(
        &self,
        transport: &dyn Transport,
        path: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<()> {
        if !self.is_required() {
            return Ok(());
        }
        let der = self.fetch(transport, path)?;
        self.verify(path, bytes, &der, now)
    }

    /// Fetches `<path>.p7s`, capped; a missing one is a rejection.
    #[cfg_attr(not(feature = "x509"), allow(unused_variables))]
    pub fn fetch(&self, transport: &dyn Transport, path: &str) -> Result<Vec<u8>> {
        #[cfg(feature = "x509")]
        if self.policy.is_some() {
            let p7s = manifests::layout::cms_signature_of(path);
            return match fetch_bytes(transport, &p7s, MAX_CMS_SIGNATURE_BYTES) {
                Ok(der) => Ok(der),
                Err(FetchError::NotFound { url }) => Err(NodeError::verification(format!(
                    "{path} has no X.509 signature: {url} is missing, and trust.require includes \"x509\" (publish with `ferry-publish release --x509-cert ... --x509-key ...`)"
                ))),
                Err(e) => Err(e.into()),
            };
        }
        Err(Self::no_policy(path))
    }

    /// Verifies `der`, the `.p7s` of `path`, over exactly `bytes` with the
    /// validity dates judged at `at`. Fails closed: without a loaded policy
    /// (X.509 not required, or a build without the feature) nothing is
    /// ever accepted, so this can be handed to `manifests::Verified*::
    /// verify_*_cms` as their check.
    #[cfg_attr(not(feature = "x509"), allow(unused_variables))]
    pub fn verify(&self, path: &str, bytes: &[u8], der: &[u8], at: Timestamp) -> Result<()> {
        #[cfg(feature = "x509")]
        if let Some(policy) = &self.policy {
            let p7s = manifests::layout::cms_signature_of(path);
            let signer = verify_detached(bytes, der, policy, at).map_err(|e| {
                NodeError::verification(format!("{path}: X.509 signature {p7s} rejected: {e}"))
            })?;
            tracing::debug!(file = path, signer = %signer.subject, "X.509 signature verified");
            return Ok(());
        }
        Err(Self::no_policy(path))
    }

    fn no_policy(path: &str) -> NodeError {
        NodeError::verification(format!(
            "{path}: no X.509 policy is loaded (trust.require does not include \"x509\", or this build lacks X.509 support), so no X.509 signature can be accepted"
        ))
    }
}

impl fmt::Debug for X509Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Requirement")
            .field("required", &self.is_required())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_names_parse_and_match_exactly_once() {
        let name = SignerName::parse("cn=release.example.com, O=Example Corp").unwrap();
        assert_eq!(
            name.attributes(),
            &[
                ("CN", "release.example.com".to_string()),
                ("O", "Example Corp".to_string())
            ]
        );
        let subject = [
            ("C", "DE"),
            ("O", "Example Corp"),
            ("CN", "release.example.com"),
        ];
        assert!(name.matches(subject.iter().copied()));
        let other = [("O", "Example Corp"), ("CN", "evil.example.com")];
        assert!(!name.matches(other.iter().copied()));
        // Two CNs: the CA vouched for neither alone.
        let doubled = [
            ("O", "Example Corp"),
            ("CN", "evil.example.com"),
            ("CN", "release.example.com"),
        ];
        assert!(!name.matches(doubled.iter().copied()));
        let missing = [("CN", "release.example.com")];
        assert!(!name.matches(missing.iter().copied()));
        for bad in ["", "CN", "XX=a", "CN=", "CN=a,CN=b", "CN=a,"] {
            assert!(SignerName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn x509_keys_are_checked_together() {
        use SignatureKind::*;
        let roots = [PathBuf::from("/etc/ferry/ca.pem")];
        assert!(check_config(&[Minisign], &[], None).is_ok());
        assert!(check_config(&[], &[], None)
            .unwrap_err()
            .to_string()
            .contains("trust.require is empty"));
        assert!(check_config(&[Minisign, Minisign], &[], None)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(check_config(&[Minisign], &roots, None)
            .unwrap_err()
            .to_string()
            .contains("does not include \"x509\""));
        let err = check_config(&[Minisign, X509], &roots, Some("CN=a")).err();
        if SUPPORTED {
            assert_eq!(err, None);
            // X.509 alone is a policy of its own (no minisign keys at all).
            assert_eq!(check_config(&[X509], &roots, Some("CN=a")), Ok(()));
            assert!(check_config(&[X509], &[], None)
                .unwrap_err()
                .to_string()
                .contains("x509_roots is empty"));
            assert!(check_config(&[Minisign, X509], &[], None)
                .unwrap_err()
                .to_string()
                .contains("x509_roots is empty"));
            assert!(
                check_config(&[Minisign, X509], &[PathBuf::from("ca.pem")], None)
                    .unwrap_err()
                    .to_string()
                    .contains("absolute")
            );
            assert!(check_config(&[Minisign, X509], &roots, Some("QQ=x"))
                .unwrap_err()
                .to_string()
                .contains("trust.x509_signer"));
        } else {
            assert!(err.unwrap().to_string().contains("lacks X.509 support"));
            assert!(check_config(&[X509], &roots, None)
                .unwrap_err()
                .to_string()
                .contains("lacks X.509 support"));
        }
    }
}
