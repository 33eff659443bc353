//! Where things live in a repository. Readers derive these paths from
//! verified data (a version, a digest) instead of trusting a path string
//! from the network, so the layout is code, not data.

use semver::Version;

use crate::Sha256Digest;

pub const INDEX: &str = "index.json";
pub const MANIFESTS_DIR: &str = "manifests";
pub const OBJECTS_DIR: &str = "objects";
/// Reserved for binary deltas (issue: deltas), keyed by base and target digests.
pub const DELTAS_DIR: &str = "deltas";

/// The detached minisign signature that sits beside `path`.
pub fn signature_of(path: &str) -> String {
    format!("{path}.minisig")
}

pub fn manifest(version: &Version) -> String {
    format!("{MANIFESTS_DIR}/{version}.json")
}

pub fn object(content: &Sha256Digest) -> String {
    format!("{OBJECTS_DIR}/{content}")
}
