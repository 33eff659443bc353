//! ferry's repository format: the contract between `ferry-publish` and the
//! node applier `ferry`.
//!
//! This crate knows what a repository *is* — its file layout, the JSON of the
//! index and the release manifests, content hashes, minisign signatures and
//! the rules a path must follow — and nothing about how it is fetched or what
//! a node decides to do with it. Both binaries depend on it; it depends on
//! neither. docs/FORMAT.md is the prose version of this crate.
//!
//! The one rule every reader of this crate must keep: bytes from the network
//! are verified ([`signature::TrustedKeys::verify`]) before they are parsed,
//! which is why [`VerifiedIndex`] and [`VerifiedManifest`] can only be built
//! from signed bytes.

pub mod canonical;
pub mod digest;
pub mod error;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod mode;
pub mod safe_path;
pub mod signature;
pub mod verified;

pub use digest::Sha256Digest;
pub use error::FormatError;
pub use index::{ChannelIndex, Index, ManifestRef};
pub use manifest::{EntryKind, FileEntry, Manifest, ObjectRef};
pub use safe_path::SafeRelativePath;
pub use signature::{KeyId, TrustedKeys};
pub use verified::{VerifiedIndex, VerifiedManifest};

/// The repository format this crate reads and writes. A reader refuses any
/// other number rather than guess at fields it does not know.
pub const FORMAT_VERSION: u32 = 1;

/// Largest `index.json` a node will read. The index is fetched before anything
/// vouches for its size, so the cap is fixed here rather than signed.
pub const MAX_INDEX_BYTES: u64 = 1024 * 1024;

/// Largest detached signature file a node will read (a minisign signature is
/// about 300 bytes; room is left for several signatures later).
pub const MAX_SIGNATURE_BYTES: u64 = 16 * 1024;
