//! Patches on disk: `deltas/<base sha256>-<target sha256>`.
//!
//! Written like objects (temporary file in the same directory, synced, then
//! renamed, the directory synced once per batch), so a reader or a crash
//! sees a whole patch or none. A patch already on disk is reused rather than
//! recomputed, but only after it has been applied to the base and rebuilt
//! the target: the file does not say which algorithm made it (that is in
//! the manifest that first named it, which may be any release, or none if
//! its publication was interrupted), so each algorithm is tried and the one
//! that rebuilds the target is the one recorded.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use manifests::manifest::{DeltaAlgorithm, DeltaRef};
use manifests::{layout, Sha256Digest};

use super::plan::DeltaPair;
use super::DeltaError;
use delta::encode::{DeltaSettings, PairBuffer};

/// Patches are served by plain web servers running as another user.
const DELTA_MODE: u32 = 0o644;

pub fn delta_path(root: &Path, pair: &DeltaPair) -> PathBuf {
    root.join(layout::delta(&pair.base, &pair.target))
}

/// The manifest's reference to `bytes`, the patch for `pair`.
pub fn delta_ref(pair: &DeltaPair, algorithm: DeltaAlgorithm, bytes: &[u8]) -> DeltaRef {
    DeltaRef {
        base_sha256: pair.base,
        base_size: pair.base_size,
        algorithm,
        path: layout::delta(&pair.base, &pair.target),
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
    }
}

/// Writes the patch for `pair` atomically; the caller syncs the directory
/// once after the batch ([`sync_deltas_dir`]).
pub fn write(root: &Path, pair: &DeltaPair, bytes: &[u8]) -> Result<(), DeltaError> {
    let path = delta_path(root, pair);
    let dir = path.parent().expect("delta paths have a directory");
    let write_error = |error| DeltaError::Write {
        path: path.clone(),
        error,
    };
    fs::create_dir_all(dir).map_err(write_error)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-delta-")
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(DELTA_MODE))
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(&path).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// Makes the renames of freshly written patches durable, and the `deltas`
/// directory itself, which the first of them may have created.
pub fn sync_deltas_dir(root: &Path) -> Result<(), DeltaError> {
    for dir in [root.join(layout::DELTAS_DIR), root.to_path_buf()] {
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|error| DeltaError::Write { path: dir, error })?;
    }
    Ok(())
}

/// The patch already stored for `pair`, if any, with the algorithm that
/// rebuilds the target from it. A stored patch that rebuilds nothing is an
/// error: like a damaged object, it is for the operator to look at.
pub fn existing(
    root: &Path,
    pair: &DeltaPair,
    contents: &PairBuffer,
) -> Result<Option<(DeltaAlgorithm, Vec<u8>)>, DeltaError> {
    let path = delta_path(root, pair);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(DeltaError::Read { path, error }),
    };
    // A patch is never kept unless smaller than the target's object, and a
    // zstd frame is never much larger than its content.
    let limit = pair.target_size.saturating_mul(2).saturating_add(4096);
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|error| DeltaError::Read {
            path: path.clone(),
            error,
        })?;
    match identify(pair, contents, &bytes) {
        Some(algorithm) => Ok(Some((algorithm, bytes))),
        None => Err(DeltaError::Damaged { path }),
    }
}

/// The algorithm under which `patch` turns the base into the target.
pub fn identify(pair: &DeltaPair, contents: &PairBuffer, patch: &[u8]) -> Option<DeltaAlgorithm> {
    DeltaSettings::ALL
        .iter()
        .copied()
        .find(|algorithm| rebuilds_target(*algorithm, pair, contents.base(), patch).is_ok())
}

/// Why applying a patch did not give the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyProblem {
    #[error("does not apply ({0})")]
    Undecodable(String),

    #[error("rebuilds more than the {expected} bytes of its target")]
    TooLong { expected: u64 },

    #[error("rebuilds {actual} bytes, but the target is {expected} bytes")]
    Size { actual: u64, expected: u64 },

    #[error("rebuilds content with SHA-256 {actual}, but the target is {expected}")]
    Digest {
        actual: Sha256Digest,
        expected: Sha256Digest,
    },
}

/// Applies `patch` to `base` and checks the result against the pair's
/// target size and digest.
pub fn rebuilds_target(
    algorithm: DeltaAlgorithm,
    pair: &DeltaPair,
    base: &[u8],
    patch: &[u8],
) -> Result<(), ApplyProblem> {
    let rebuilt = delta::decode::apply(algorithm, base, patch, pair.target_size.saturating_add(1))
        .map_err(|e| ApplyProblem::Undecodable(e.to_string()))?;
    let actual_size = rebuilt.len() as u64;
    if actual_size > pair.target_size {
        return Err(ApplyProblem::TooLong {
            expected: pair.target_size,
        });
    }
    if actual_size != pair.target_size {
        return Err(ApplyProblem::Size {
            actual: actual_size,
            expected: pair.target_size,
        });
    }
    let actual = Sha256Digest::of(&rebuilt);
    if actual != pair.target {
        return Err(ApplyProblem::Digest {
            actual,
            expected: pair.target,
        });
    }
    Ok(())
}
