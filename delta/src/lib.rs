//! ferry's binary patch encodings, both ways.
//!
//! One crate for both sides because the bytes of a patch are a contract:
//! the publisher makes patches ([`encode`], behind the `encode` feature so
//! the node binary does not carry bidiff's suffix sorter) and checks them by
//! applying them; the node only applies them ([`decode`]). Keeping the two
//! halves beside each other means a change to one is tested against the
//! other in the same `cargo test`.
//!
//! - `bidiff-zstd`: a bsdiff-style patch from the `bidiff` crate (its `enc`
//!   format, read back by `bipatch`) in one zstd frame.
//! - `zstd-patch-from`: the target compressed with the base as a raw-content
//!   prefix and long-distance matching, as `zstd --patch-from=BASE --long`
//!   writes it and `zstd -d --patch-from=BASE --long=31` reads it.

pub mod decode;
#[cfg(feature = "encode")]
pub mod encode;
pub mod split;

use manifests::manifest::DeltaAlgorithm;
use zstd::zstd_safe;

/// zstd's smallest and (64-bit) largest window logs.
pub const MIN_WINDOW_LOG: u32 = 10;
pub const MAX_WINDOW_LOG: u32 = 31;

/// The algorithm's name as the manifest spells it.
pub fn name(algorithm: DeltaAlgorithm) -> &'static str {
    match algorithm {
        DeltaAlgorithm::BidiffZstd => "bidiff-zstd",
        DeltaAlgorithm::ZstdPatchFrom => "zstd-patch-from",
        DeltaAlgorithm::BidiffSplitZstd => "bidiff-split-zstd",
    }
}

/// The algorithm a manifest spelling names.
pub fn from_name(name: &str) -> Option<DeltaAlgorithm> {
    ALL.iter().copied().find(|a| self::name(*a) == name)
}

/// Every algorithm this crate reads.
pub const ALL: &[DeltaAlgorithm] = &[
    DeltaAlgorithm::ZstdPatchFrom,
    DeltaAlgorithm::BidiffZstd,
    DeltaAlgorithm::BidiffSplitZstd,
];

pub(crate) fn zstd_error(code: zstd_safe::ErrorCode) -> std::io::Error {
    std::io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}
