//! Errors in the repository format. Each names the offending item so that a
//! node's log says exactly what was rejected.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("invalid path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },

    #[error("symlink {path:?} points to {target:?}, which leaves the release tree")]
    SymlinkEscapes { path: String, target: String },

    #[error("symlink {path:?} points to {target:?}, which does not resolve within {limit} links: a loop, or a chain of links through links; point it at its final target")]
    SymlinkLoop {
        path: String,
        target: String,
        limit: usize,
    },

    #[error("invalid SHA-256 digest {0:?}: expected 64 lowercase hex characters")]
    BadDigest(String),

    #[error("invalid file mode {0:?}: expected an octal string such as \"0644\"")]
    BadMode(String),

    #[error("invalid channel name {0:?}: use 1-64 characters from a-z, 0-9, '.', '_' and '-'")]
    BadChannel(String),

    #[error("{what} has format {found}, this ferry understands format {expected}: upgrade ferry")]
    UnsupportedFormat {
        what: &'static str,
        found: u32,
        expected: u32,
    },

    #[error("{what} is not valid JSON for this format: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what} is inconsistent: {reason}")]
    Inconsistent { what: String, reason: String },

    #[error("signature of {what} is not valid: {reason}")]
    BadSignature { what: String, reason: String },

    #[error("{what} is not signed by any trusted key (signed by key {key_id}); check `public_keys` or the trusted root in the configuration")]
    UntrustedKey { what: String, key_id: String },

    #[error("{what} has {valid} valid signature(s) by distinct keys of the {role} role, fewer than its threshold of {threshold} (signatures: {seen}); it must be signed by {threshold} different {role} keys")]
    ThresholdNotMet {
        what: String,
        role: String,
        threshold: usize,
        valid: usize,
        seen: String,
    },

    #[error("public key {origin}: {reason}")]
    BadPublicKey { origin: String, reason: String },
}
