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
//! are verified ([`signature::RoleKeys::verify`]) before they are parsed,
//! which is why [`VerifiedIndex`] and [`VerifiedManifest`] can only be built
//! from signed bytes. The keys that verify them come from a [`VerifiedRoot`]
//! (`root.json`), itself only accepted when signed by the root before it —
//! or, on a node that requires X.509 alone, a detached CMS signature checked
//! by the caller before this crate parses anything ([`CmsCheck`]).

pub mod canonical;
pub mod digest;
pub mod error;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod migration;
pub mod mode;
pub mod requirement;
pub mod root;
pub mod safe_path;
pub mod signature;
pub mod symlink_tree;
pub mod untrusted_text;
pub mod verified;
pub mod wave;
#[cfg(feature = "x509")]
pub mod x509_signer;

pub use digest::Sha256Digest;
pub use error::FormatError;
pub use index::{ChannelIndex, Index, ManifestRef};
pub use manifest::{EntryKind, FileEntry, Manifest, ObjectRef};
pub use root::{Role, Root, VerifiedRoot};
pub use safe_path::SafeRelativePath;
pub use signature::{KeyId, RoleKeys, TrustedKeys};
pub use verified::{CmsCheck, SignatureFormat, VerifiedIndex, VerifiedManifest};

/// The repository format this crate reads and writes. A reader refuses any
/// other number rather than guess at fields it does not know.
pub const FORMAT_VERSION: u32 = 1;

/// Largest `index.json` a node will read. The index is fetched before anything
/// vouches for its size, so the cap is fixed here rather than signed.
pub const MAX_INDEX_BYTES: u64 = 1024 * 1024;

/// Largest `root.json` / `roots/<N>.json` a node will read: like the index,
/// a root is fetched before anything vouches for its size.
pub const MAX_ROOT_BYTES: u64 = 1024 * 1024;

/// Largest detached signature file a node will read. A minisign signature
/// block is about 300 bytes, so this holds the
/// [`signature::MAX_SIGNATURE_BLOCKS`] blocks a multi-signed file may carry.
pub const MAX_SIGNATURE_BYTES: u64 = 16 * 1024;

/// Largest detached CMS signature (`<file>.p7s`) a node will read: a
/// signer certificate and its intermediates fit many times over. The
/// publisher refuses to bundle a larger one, since no node would read it.
pub const MAX_CMS_SIGNATURE_BYTES: u64 = 64 * 1024;
