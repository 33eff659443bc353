//! `delta::decode::apply_file`, the node's way of applying a patch: file to
//! file, output capped at the signed size, and never trusted — every damaged
//! input either fails or yields a digest that is not the target's, so the
//! node's hash check catches it. Run on a real executable and a plausible
//! next build of it, for both algorithms.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor};
use std::path::Path;

use delta::decode::{apply_file, Applied};
use delta::encode::{make_delta, DeltaSettings, PairBuffer};
use manifests::manifest::DeltaAlgorithm;
use manifests::Sha256Digest;

const ALGORITHMS: [DeltaAlgorithm; 2] = [DeltaAlgorithm::BidiffZstd, DeltaAlgorithm::ZstdPatchFrom];

/// A real executable of every Debian system (tar is essential).
fn real_binary() -> Vec<u8> {
    fs::read("/usr/bin/tar").expect("/usr/bin/tar exists on every Debian system")
}

/// Shifted words in the middle third, inserted code and text, a deleted
/// range: what a rebuild does to an executable.
fn next_build(original: &[u8], seed: u32) -> Vec<u8> {
    let mut out = original.to_vec();
    let n = out.len();
    for i in (n / 3..2 * n / 3).step_by(64) {
        let word = u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
        out[i..i + 4].copy_from_slice(&word.wrapping_add(0x1000 * seed).to_le_bytes());
    }
    let deleted = n * 3 / 4 + seed as usize * 100;
    out.drain(deleted..deleted + 300);
    let code = original[1000 + seed as usize * 500..3000 + seed as usize * 500].to_vec();
    out.splice(n / 2..n / 2, code);
    out.splice(
        n / 5..n / 5,
        format!("build {seed}\0").repeat(8).into_bytes(),
    );
    out
}

fn patch(algorithm: DeltaAlgorithm, base: &[u8], target: &[u8]) -> Vec<u8> {
    let settings = DeltaSettings {
        level: 19,
        max_window_log: delta::MAX_WINDOW_LOG,
        algorithms: match algorithm {
            DeltaAlgorithm::BidiffZstd => &[DeltaAlgorithm::BidiffZstd],
            _ => &[DeltaAlgorithm::ZstdPatchFrom],
        },
    };
    let pair = PairBuffer::new([base, target].concat(), base.len());
    let made = make_delta(&pair, &settings).unwrap().expect("a patch");
    assert_eq!(made.algorithm, algorithm);
    made.bytes
}

/// Applies `patch` to a file holding `base` into a fresh output file, as
/// the node does; returns the result and the output file's bytes.
fn apply_to_files(
    algorithm: DeltaAlgorithm,
    base: &[u8],
    patch: &[u8],
    target_size: u64,
) -> (io::Result<Applied>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join("base");
    fs::write(&base_path, base).unwrap();
    let out_path = dir.path().join("out");
    let mut out = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&out_path)
        .unwrap();
    let mut base_file = File::open(&base_path).unwrap();
    let result = apply_file(
        algorithm,
        &mut base_file,
        Cursor::new(patch),
        &mut out,
        target_size,
    );
    drop(out);
    (result, read(&out_path))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

/// The caller's rule: only a result with the target's size and digest counts.
fn accepted(result: &io::Result<Applied>, target: &[u8]) -> bool {
    matches!(result, Ok(a) if a.size == target.len() as u64 && a.sha256 == Sha256Digest::of(target))
}

struct Case {
    algorithm: DeltaAlgorithm,
    base: Vec<u8>,
    target: Vec<u8>,
    patch: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let base = real_binary();
    let target = next_build(&base, 1);
    ALGORITHMS
        .iter()
        .map(|&algorithm| Case {
            algorithm,
            patch: patch(algorithm, &base, &target),
            base: base.clone(),
            target: target.clone(),
        })
        .collect()
}

#[test]
fn both_algorithms_rebuild_the_target_file_to_file() {
    for c in cases() {
        let (result, written) =
            apply_to_files(c.algorithm, &c.base, &c.patch, c.target.len() as u64);
        let applied = result.unwrap_or_else(|e| panic!("{:?}: {e}", c.algorithm));
        assert_eq!(applied.size, c.target.len() as u64, "{:?}", c.algorithm);
        assert_eq!(
            applied.sha256,
            Sha256Digest::of(&c.target),
            "{:?}",
            c.algorithm
        );
        assert!(
            written == c.target,
            "{:?}: the output file differs",
            c.algorithm
        );
    }
}

#[test]
fn a_corrupt_patch_is_never_accepted() {
    for c in cases() {
        for at in [c.patch.len() / 3, c.patch.len() / 2, c.patch.len() - 5] {
            let mut bad = c.patch.clone();
            bad[at] ^= 0x5a;
            let (result, _) = apply_to_files(c.algorithm, &c.base, &bad, c.target.len() as u64);
            assert!(
                !accepted(&result, &c.target),
                "{:?}: a byte flipped at {at} still rebuilt the target",
                c.algorithm
            );
        }
    }
}

#[test]
fn a_truncated_patch_fails_or_is_caught_by_the_hash() {
    for c in cases() {
        let (result, _) = apply_to_files(
            c.algorithm,
            &c.base,
            &c.patch[..c.patch.len() / 2],
            c.target.len() as u64,
        );
        assert!(result.is_err(), "{:?}: half a patch applied", c.algorithm);
        assert_eq!(
            result.unwrap_err().kind(),
            io::ErrorKind::InvalidData,
            "{:?}: a bad patch is InvalidData, not a disk error",
            c.algorithm
        );
        // Cut in the trailing checksum only: if it applies at all, only the
        // exact target may come out — which the node's hash check accepts,
        // because those are the signed bytes.
        let (result, written) = apply_to_files(
            c.algorithm,
            &c.base,
            &c.patch[..c.patch.len() - 2],
            c.target.len() as u64,
        );
        // Whatever comes out, the digest returned is that of the bytes on
        // disk, so the node's comparison with the signed digest is sound.
        if let Ok(applied) = result {
            assert_eq!(applied.size, written.len() as u64, "{:?}", c.algorithm);
            assert_eq!(
                applied.sha256,
                Sha256Digest::of(&written),
                "{:?}",
                c.algorithm
            );
        }
    }
}

#[test]
fn a_patch_for_another_base_is_never_accepted() {
    for c in cases() {
        // Another build of the same program: close, but not the base.
        let other = next_build(&c.base, 2);
        let (result, _) = apply_to_files(c.algorithm, &other, &c.patch, c.target.len() as u64);
        assert!(
            !accepted(&result, &c.target),
            "{:?}: the target came out of the wrong base",
            c.algorithm
        );
    }
}

#[test]
fn output_beyond_the_signed_size_is_refused_and_not_written() {
    for c in cases() {
        let short = c.target.len() as u64 - 1000;
        let (result, written) = apply_to_files(c.algorithm, &c.base, &c.patch, short);
        let err = result.expect_err("overlong output must fail");
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidData,
            "{:?}: {err}",
            c.algorithm
        );
        assert!(
            written.len() as u64 <= short,
            "{:?}: {} bytes written for a cap of {short}",
            c.algorithm,
            written.len()
        );
    }
}
