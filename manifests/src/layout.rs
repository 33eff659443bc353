//! Where things live in a repository. Readers derive these paths from
//! verified data (a version, a digest) instead of trusting a path string
//! from the network, so the layout is code, not data.

use semver::Version;

use crate::Sha256Digest;

pub const INDEX: &str = "index.json";
/// The current root of trust (a copy of the newest `roots/<N>.json`).
pub const ROOT: &str = "root.json";
/// Every version of the root, which nodes walk one by one.
pub const ROOTS_DIR: &str = "roots";
pub const MANIFESTS_DIR: &str = "manifests";
pub const OBJECTS_DIR: &str = "objects";
/// Binary deltas, keyed by base and target digests.
pub const DELTAS_DIR: &str = "deltas";

/// The detached minisign signature that sits beside `path`.
pub fn signature_of(path: &str) -> String {
    format!("{path}.minisig")
}

/// The detached CMS/PKCS#7 signature (DER, X.509 chain included) that may
/// sit beside `path`; see docs/FORMAT.md, "X.509 signatures".
pub fn cms_signature_of(path: &str) -> String {
    format!("{path}.p7s")
}

pub fn manifest(version: &Version) -> String {
    format!("{MANIFESTS_DIR}/{version}.json")
}

/// The patch turning `base` content into `target` content.
pub fn delta(base: &Sha256Digest, target: &Sha256Digest) -> String {
    format!("{DELTAS_DIR}/{base}-{target}")
}

pub fn object(content: &Sha256Digest) -> String {
    format!("{OBJECTS_DIR}/{content}")
}

/// Version `version` of the root of trust.
pub fn root_version(version: u64) -> String {
    format!("{ROOTS_DIR}/{version}.json")
}
