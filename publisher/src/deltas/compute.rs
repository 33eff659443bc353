//! Computing the planned pairs: in parallel, largest first, within a memory
//! budget.
//!
//! One worker per rayon thread (`--jobs`) takes the next pair from a shared
//! counter, so pairs start strictly in plan order (largest target first: a
//! big executable started last would leave one core idle at the end). rayon's
//! own splitting of a parallel iterator would hand each thread a contiguous
//! half instead. Within a pair, zstd-patch-from and bidiff are the two
//! halves of a `rayon::join`, so a thread that has run out of pairs helps
//! with the last, largest one instead of idling. Before loading anything a worker reserves the pair's
//! estimated peak memory from the [`MemoryBudget`].
//!
//! For each pair: the base comes from the repository's object (decompressed,
//! its digest checked), the target from the input file (its digest checked
//! again, in case it changed since planning); a patch already stored for the
//! pair is reused once it proves to rebuild the target; otherwise both
//! algorithms run and the smaller patch is kept — if it passes the
//! threshold ([`worth_keeping`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use manifests::manifest::DeltaRef;
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
    /// Stored size of each target's full object, for the threshold.
    pub object_sizes: &'a BTreeMap<Sha256Digest, u64>,
    pub settings: &'a DeltaSettings,
    pub budget: &'a MemoryBudget,
}

/// What happened to one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairOutcome {
    Written(DeltaRef),
    Reused(DeltaRef),
    /// No patch clearly smaller than the object; `best` is the smallest
    /// patch size found, if any algorithm applied.
    Dropped {
        best: Option<u64>,
    },
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

/// Computes every pair on the current rayon pool.
pub fn compute(inputs: &DeltaInputs<'_>) -> Result<ComputedDeltas, DeltaError> {
    let outcomes = run_workers(inputs)?;
    let mut computed = ComputedDeltas::default();
    for (pair, outcome) in inputs.pairs.iter().zip(outcomes) {
        let delta = match outcome {
            PairOutcome::Written(delta) => {
                computed.written += 1;
                computed.written_bytes += delta.size;
                delta
            }
            PairOutcome::Reused(delta) => {
                computed.reused += 1;
                delta
            }
            PairOutcome::Dropped { .. } => {
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
        store::sync_deltas_dir(inputs.repo_root)?;
    }
    Ok(computed)
}

/// One outcome per pair, in plan order; the first error stops the workers
/// (a pair already started finishes).
fn run_workers(inputs: &DeltaInputs<'_>) -> Result<Vec<PairOutcome>, DeltaError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<PairOutcome, DeltaError>>>> =
        Mutex::new((0..inputs.pairs.len()).map(|_| None).collect());
    // One worker loop per thread of the pool, each pinned to its thread by
    // `broadcast` rather than spawned: a spawned loop could be stolen by a
    // thread waiting inside a pair's `rayon::join` (delta::encode), and then
    // wait for memory that thread holds. Only the join halves, which never
    // wait on the budget, can move between threads.
    if !inputs.pairs.is_empty() {
        rayon::broadcast(|_| loop {
            if failed.load(Ordering::SeqCst) {
                return;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(pair) = inputs.pairs.get(i) else {
                return;
            };
            let result = compute_pair(inputs, pair);
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
        });
    }
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results
        .into_iter()
        .flatten()
        .collect::<Result<Vec<_>, _>>()
        .inspect(|outcomes| assert_eq!(outcomes.len(), inputs.pairs.len(), "every pair ran"))
}

fn compute_pair(inputs: &DeltaInputs<'_>, pair: &DeltaPair) -> Result<PairOutcome, DeltaError> {
    let _memory = inputs
        .budget
        .reserve(budget::estimated_peak(pair.base_size, pair.target_size));
    let contents = load_pair(inputs, pair)?;
    let object_size = inputs.object_sizes[&pair.target];
    if let Some((algorithm, bytes)) = store::existing(inputs.repo_root, pair, &contents)? {
        let delta = store::delta_ref(pair, algorithm, &bytes);
        if worth_keeping(delta.size, object_size) {
            return Ok(PairOutcome::Reused(delta));
        }
        return Ok(PairOutcome::Dropped {
            best: Some(delta.size),
        });
    }
    let patch = algorithms::make_delta(&contents, inputs.settings).map_err(|error| {
        DeltaError::Compute {
            base: pair.base,
            target: pair.target,
            error,
        }
    })?;
    drop(contents);
    match patch {
        Some(patch) if worth_keeping(patch.bytes.len() as u64, object_size) => {
            store::write(inputs.repo_root, pair, &patch.bytes)?;
            Ok(PairOutcome::Written(store::delta_ref(
                pair,
                patch.algorithm,
                &patch.bytes,
            )))
        }
        patch => Ok(PairOutcome::Dropped {
            best: patch.map(|p| p.bytes.len() as u64),
        }),
    }
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
