//! Computing the planned pairs within a memory budget, then keeping the
//! ones worth it.
//!
//! [`compute_pair`] is one task of the publication's queue
//! ([`crate::schedule`]), which runs pairs and new objects together, largest
//! first. Before loading anything a pair reserves its estimated peak memory
//! from the [`MemoryBudget`]. The base comes from the repository's object
//! (decompressed, its digest checked), the target from the input file (its
//! digest checked again, in case it changed since planning); a patch
//! already stored for the pair is reused once it proves to rebuild the
//! target; otherwise every encoding runs and the smallest patch is found.
//! Whether it is kept ([`keep`], [`worth_keeping`]) needs the size of the
//! target's full object, so it is decided once the queue has drained: only
//! then are new patches written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use manifests::manifest::{DeltaAlgorithm, DeltaRef};
use manifests::Sha256Digest;

use super::budget::{self, MemoryBudget};
use super::plan::DeltaPair;
use super::{store, DeltaError};
use crate::objects;
use delta::encode::{self as algorithms, DeltaSettings, PairBuffer};

/// A delta is kept only if it is at most this many tenths of the target's
/// full object (see docs/FORMAT.md, "Deltas": a patch costs a node more
/// work and one more thing that can fail, so it must save clearly).
pub const KEEP_AT_MOST_TENTHS: u64 = 9;

/// Whether a `delta`-byte patch is worth shipping next to an `object`-byte
/// object.
pub fn worth_keeping(delta: u64, object: u64) -> bool {
    u128::from(delta) * 10 <= u128::from(object) * u128::from(KEEP_AT_MOST_TENTHS)
}

/// What computing the deltas of a release needs to know.
#[derive(Debug)]
pub struct DeltaInputs<'a> {
    pub repo_root: &'a Path,
    /// In plan order.
    pub pairs: &'a [DeltaPair],
    /// An input file holding each target content.
    pub sources: &'a BTreeMap<Sha256Digest, PathBuf>,
    pub settings: &'a DeltaSettings,
    pub budget: &'a MemoryBudget,
}

/// The deltas of a release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComputedDeltas {
    /// By target content, each list sorted by base content.
    pub by_target: BTreeMap<Sha256Digest, Vec<DeltaRef>>,
    pub written: usize,
    /// Bytes of the patches written.
    pub written_bytes: u64,
    pub reused: usize,
    pub dropped: usize,
}

/// The smallest patch found for a pair, before the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPatch {
    pub algorithm: DeltaAlgorithm,
    pub bytes: Vec<u8>,
    /// Already in the repository (verified to rebuild the target).
    pub stored: bool,
}

/// The patch of one pair: the one already stored for it, else the smallest
/// of every encoding; `None` when no encoding applies.
pub fn compute_pair(
    inputs: &DeltaInputs<'_>,
    pair: &DeltaPair,
) -> Result<Option<FoundPatch>, DeltaError> {
    let _memory = inputs
        .budget
        .reserve(budget::estimated_peak(pair.base_size, pair.target_size));
    let contents = load_pair(inputs, pair)?;
    if let Some((algorithm, bytes)) = store::existing(inputs.repo_root, pair, &contents)? {
        return Ok(Some(FoundPatch {
            algorithm,
            bytes,
            stored: true,
        }));
    }
    let patch = algorithms::make_delta(&contents, inputs.settings).map_err(|error| {
        DeltaError::Compute {
            base: pair.base,
            target: pair.target,
            error,
        }
    })?;
    Ok(patch.map(|patch| FoundPatch {
        algorithm: patch.algorithm,
        bytes: patch.bytes,
        stored: false,
    }))
}

/// Keeps the patches clearly smaller than their target's full object
/// (`object_sizes`), writing the new ones, and drops the rest. `found` is
/// in `pairs` order.
pub fn keep(
    repo_root: &Path,
    pairs: &[DeltaPair],
    found: Vec<Option<FoundPatch>>,
    object_sizes: &BTreeMap<Sha256Digest, u64>,
) -> Result<ComputedDeltas, DeltaError> {
    assert_eq!(pairs.len(), found.len(), "one result per pair");
    let mut computed = ComputedDeltas::default();
    for (pair, patch) in pairs.iter().zip(found) {
        let object_size = object_sizes[&pair.target];
        let delta = match patch {
            Some(patch) if worth_keeping(patch.bytes.len() as u64, object_size) => {
                let delta = store::delta_ref(pair, patch.algorithm, &patch.bytes);
                if patch.stored {
                    computed.reused += 1;
                } else {
                    store::write(repo_root, pair, &patch.bytes)?;
                    computed.written += 1;
                    computed.written_bytes += delta.size;
                }
                delta
            }
            _ => {
                computed.dropped += 1;
                continue;
            }
        };
        computed
            .by_target
            .entry(pair.target)
            .or_default()
            .push(delta);
    }
    for deltas in computed.by_target.values_mut() {
        deltas.sort_by_key(|d| d.base_sha256);
    }
    if computed.written > 0 {
        store::sync_deltas_dir(repo_root)?;
    }
    Ok(computed)
}

/// Base (from its object) and target (from the input) in one buffer.
fn load_pair(inputs: &DeltaInputs<'_>, pair: &DeltaPair) -> Result<PairBuffer, DeltaError> {
    let total = pair.base_size.saturating_add(pair.target_size);
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(usize::MAX));
    let base_object = objects::object_path(inputs.repo_root, &pair.base);
    objects::read_content(&base_object, &pair.base, pair.base_size, &mut bytes).map_err(
        |problem| DeltaError::Base {
            path: base_object.clone(),
            problem,
        },
    )?;
    let source = &inputs.sources[&pair.target];
    let read_error = |error| DeltaError::Read {
        path: source.clone(),
        error,
    };
    let file = File::open(source).map_err(read_error)?;
    let base_len = bytes.len();
    file.take(pair.target_size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let target = &bytes[base_len..];
    if target.len() as u64 != pair.target_size || Sha256Digest::of(target) != pair.target {
        return Err(DeltaError::Changed {
            path: source.clone(),
        });
    }
    Ok(PairBuffer::new(bytes, base_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_nine_tenths_of_the_object() {
        assert!(worth_keeping(90, 100));
        assert!(!worth_keeping(91, 100));
        assert!(worth_keeping(0, 0));
        assert!(!worth_keeping(1, 1));
        assert!(worth_keeping(u64::MAX / 2, u64::MAX));
    }
}
