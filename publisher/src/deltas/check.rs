//! Checking a stored delta the way a node relies on it: the patch file
//! matches its reference (size, then SHA-256, reading no more than the
//! declared size), and applied to its base content — taken from the base's
//! object and checked — it rebuilds exactly the target content.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use manifests::manifest::DeltaRef;
use manifests::{layout, Sha256Digest};

use super::plan::DeltaPair;
use super::store::{self, ApplyProblem};
use crate::objects::{self, ObjectProblem};

/// What is wrong with a stored delta, as `verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaProblem {
    #[error("is missing")]
    Missing,

    #[error("cannot be read: {0}")]
    Unreadable(String),

    #[error("is {actual} bytes, but the manifest says {expected}")]
    StoredSize { actual: u64, expected: u64 },

    #[error("has SHA-256 {actual}, but the manifest says {expected}")]
    StoredDigest {
        actual: Sha256Digest,
        expected: Sha256Digest,
    },

    #[error("cannot be applied: its base object {path} {problem}")]
    Base {
        path: String,
        problem: ObjectProblem,
    },

    #[error("{0} as {1}")]
    Apply(ApplyProblem, &'static str),
}

/// Checks the patch `delta` (rebuilding `target`, `target_size` bytes)
/// under the repository `root`.
pub fn check_stored(
    root: &Path,
    delta: &DeltaRef,
    target: &Sha256Digest,
    target_size: u64,
) -> Result<(), DeltaProblem> {
    let patch = read_patch(&root.join(&delta.path), delta)?;
    let base_object = layout::object(&delta.base_sha256);
    let mut base = Vec::new();
    objects::read_content(
        &root.join(&base_object),
        &delta.base_sha256,
        delta.base_size,
        &mut base,
    )
    .map_err(|problem| DeltaProblem::Base {
        path: base_object,
        problem,
    })?;
    let pair = DeltaPair {
        base: delta.base_sha256,
        base_size: delta.base_size,
        target: *target,
        target_size,
    };
    store::rebuilds_target(delta.algorithm, &pair, &base, &patch)
        .map_err(|problem| DeltaProblem::Apply(problem, delta::name(delta.algorithm)))
}

fn read_patch(path: &Path, delta: &DeltaRef) -> Result<Vec<u8>, DeltaProblem> {
    let unreadable = |e: io::Error| DeltaProblem::Unreadable(e.to_string());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DeltaProblem::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    let actual_size = file.metadata().map_err(unreadable)?.len();
    if actual_size != delta.size {
        return Err(DeltaProblem::StoredSize {
            actual: actual_size,
            expected: delta.size,
        });
    }
    let mut patch = Vec::new();
    file.take(delta.size)
        .read_to_end(&mut patch)
        .map_err(unreadable)?;
    let actual = Sha256Digest::of(&patch);
    if actual != delta.sha256 {
        return Err(DeltaProblem::StoredDigest {
            actual,
            expected: delta.sha256,
        });
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use manifests::manifest::DeltaAlgorithm;

    use super::*;
    use crate::deltas::store::delta_ref;
    use delta::encode::{make_delta, DeltaSettings, PairBuffer};

    /// A repository holding the object of `base`, and the patch (base ->
    /// `target`) stored under `algorithm`.
    fn repo_with_patch(
        base: &[u8],
        target: &[u8],
        algorithm: DeltaAlgorithm,
    ) -> (tempfile::TempDir, DeltaPair, Vec<u8>) {
        let repo = tempfile::tempdir().unwrap();
        fs::create_dir(repo.path().join(layout::OBJECTS_DIR)).unwrap();
        let source = repo.path().join("base");
        fs::write(&source, base).unwrap();
        let base_sha = Sha256Digest::of(base);
        objects::store(repo.path(), &base_sha, base.len() as u64, &source, 3).unwrap();
        let pair = DeltaPair {
            base: base_sha,
            base_size: base.len() as u64,
            target: Sha256Digest::of(target),
            target_size: target.len() as u64,
        };
        let settings = DeltaSettings {
            level: 3,
            max_window_log: 31,
            algorithms: match algorithm {
                DeltaAlgorithm::BidiffZstd => &[DeltaAlgorithm::BidiffZstd],
                DeltaAlgorithm::ZstdPatchFrom => &[DeltaAlgorithm::ZstdPatchFrom],
                DeltaAlgorithm::BidiffSplitZstd => &[DeltaAlgorithm::BidiffSplitZstd],
            },
        };
        let buffer = PairBuffer::new([base, target].concat(), base.len());
        let patch = make_delta(&buffer, &settings).unwrap().unwrap().bytes;
        store::write(repo.path(), &pair, &patch).unwrap();
        (repo, pair, patch)
    }

    fn text(n: u32) -> Vec<u8> {
        (0..2000)
            .flat_map(|i| format!("line {i} of {n}\n").into_bytes())
            .collect()
    }

    #[test]
    fn sound_deltas_pass_and_every_mismatch_is_named() {
        let (base, target) = (text(1), text(2));
        for algorithm in DeltaSettings::ALL.iter().copied() {
            let (repo, pair, patch) = repo_with_patch(&base, &target, algorithm);
            let root = repo.path();
            let delta = delta_ref(&pair, algorithm, &patch);
            check_stored(root, &delta, &pair.target, pair.target_size).unwrap();

            // Signed for another target: size and digest match the file,
            // but it does not rebuild what the manifest says.
            let other = Sha256Digest::of(b"other target");
            let problem = check_stored(root, &delta, &other, pair.target_size).unwrap_err();
            assert!(
                matches!(problem, DeltaProblem::Apply(ApplyProblem::Digest { .. }, _)),
                "{problem}"
            );
            let problem = check_stored(root, &delta, &pair.target, 10).unwrap_err();
            assert!(
                matches!(
                    problem,
                    DeltaProblem::Apply(ApplyProblem::TooLong { .. }, _)
                ),
                "{problem}"
            );
            // Labelled with the other algorithm.
            let mislabelled = DeltaRef {
                algorithm: match algorithm {
                    DeltaAlgorithm::BidiffZstd => DeltaAlgorithm::ZstdPatchFrom,
                    DeltaAlgorithm::ZstdPatchFrom => DeltaAlgorithm::BidiffSplitZstd,
                    DeltaAlgorithm::BidiffSplitZstd => DeltaAlgorithm::BidiffZstd,
                },
                ..delta.clone()
            };
            let problem = check_stored(root, &mislabelled, &pair.target, pair.target_size);
            assert!(
                matches!(problem, Err(DeltaProblem::Apply(..))),
                "{problem:?}"
            );
            // The base object is gone.
            fs::remove_file(objects::object_path(root, &pair.base)).unwrap();
            let problem = check_stored(root, &delta, &pair.target, pair.target_size);
            assert!(
                matches!(
                    problem,
                    Err(DeltaProblem::Base {
                        problem: ObjectProblem::Missing,
                        ..
                    })
                ),
                "{problem:?}"
            );
        }
    }

    #[test]
    fn stored_patches_are_identified_or_refused() {
        let (base, target) = (text(3), text(4));
        for algorithm in DeltaSettings::ALL.iter().copied() {
            let (repo, pair, patch) = repo_with_patch(&base, &target, algorithm);
            let buffer = PairBuffer::new([&base[..], &target[..]].concat(), base.len());
            assert_eq!(
                store::existing(repo.path(), &pair, &buffer).unwrap(),
                Some((algorithm, patch.clone()))
            );
            let mut damaged = patch.clone();
            damaged[patch.len() / 2] ^= 0x10;
            store::write(repo.path(), &pair, &damaged).unwrap();
            assert!(matches!(
                store::existing(repo.path(), &pair, &buffer),
                Err(crate::deltas::DeltaError::Damaged { .. })
            ));
            fs::remove_file(store::delta_path(repo.path(), &pair)).unwrap();
            assert_eq!(store::existing(repo.path(), &pair, &buffer).unwrap(), None);
        }
    }
}
