//! Making patches: every encoding of a (base, target) pair, the smallest kept.
//!
//! - `bidiff-zstd`: a bsdiff-style patch from the `bidiff` crate (its `enc`
//!   format, read back by `bipatch`) in one zstd frame. bsdiff's "add"
//!   stream (target minus base, byte by byte, over matched regions) turns
//!   code whose addresses shifted into runs of small numbers that compress
//!   well, which plain LZ matching against the base cannot do.
//! - `zstd-patch-from`: one zstd frame of the target compressed with the base
//!   as a raw-content prefix and long-distance matching, the window wide
//!   enough to reach back over the whole base: what `zstd --patch-from=BASE
//!   --long` writes, and decodable by `zstd -d --patch-from=BASE --long=31`.
//! - `bidiff-split-zstd` ([`crate::split`]): the same bidiff matches as
//!   `bidiff-zstd`, its control, add and copy streams in separate zstd
//!   frames (the add stream coded sparsely, as zero-run lengths and non-zero
//!   values in two frames), the copy frame compressed against the base (up
//!   to 64 MiB). Apart, the
//!   streams compress 6-10 % better than interleaved on real executables (see
//!   docs/BENCHMARKS.md); `bidiff-zstd` stays for patches already stored.
//!
//! All are computed and the smallest kept ([`make_delta`]): no one wins on
//! every pair. Every frame carries its content size and a checksum.
//!
//! Determinism: zstd runs single-threaded with fixed parameters, and base
//! and target sit in one buffer, base first, so the prefix is always
//! directly adjacent to the data compressed against it. zstd takes a
//! different (equally valid) path when a prefix happens to be adjacent in
//! memory, so two separate allocations could give different bytes from run
//! to run; one buffer makes the layout, and so the output, fixed. bidiff runs
//! with one suffix-array partition and no chunked scan, which is
//! deterministic; the only rayon work is the `join` in [`candidates`], whose
//! halves never wait on anything (see the publisher's `compute`).

use std::io;

use manifests::manifest::DeltaAlgorithm;
use rayon::prelude::*;
use zstd::zstd_safe::{self, CCtx, CParameter};

use crate::split::{self, Record};
#[cfg(test)]
use crate::MAX_WINDOW_LOG;
use crate::{zstd_error, MIN_WINDOW_LOG};

/// Largest base bidiff can index: its suffix array holds `i32` positions.
const BIDIFF_MAX_BASE: usize = i32::MAX as usize - 1;

/// Window of a `bidiff-split-zstd` add runs and add values frame (log2
/// bytes): the decoder holds this much of each stream, whatever the file's
/// size.
const SPLIT_ADD_WINDOW_LOG: u32 = 23;

/// Largest base a `bidiff-split-zstd` copy frame is compressed against.
/// Indexing the base as a prefix costs about as much as compressing it, and
/// bought 1-4 % of the copy frame on the real tools; above this size the
/// frame is compressed alone (decoders supply the base either way, and a
/// frame that never refers to it decodes the same).
const SPLIT_PREFIX_MAX_BASE: usize = 64 << 20;

/// How patches are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaSettings {
    /// zstd level of both encodings (1-22).
    pub level: i32,
    /// Upper bound on the zstd window (log2 bytes). The window is otherwise
    /// sized to reach from the end of the target back to the start of the
    /// base; decoders need `--long=N`/`--memory` above 27 (128 MiB).
    pub max_window_log: u32,
    /// Which encodings to try; the smaller result wins.
    pub algorithms: &'static [DeltaAlgorithm],
}

impl DeltaSettings {
    /// Every encoding, in the order ties are broken.
    pub const ALL: &'static [DeltaAlgorithm] = crate::ALL;

    /// What `ferry-publish release` uses unless told otherwise (chosen from
    /// `cargo xtask bench deltas`, see docs/BENCHMARKS.md).
    pub const DEFAULT: DeltaSettings = DeltaSettings {
        level: 19,
        max_window_log: crate::MAX_WINDOW_LOG,
        algorithms: DeltaSettings::ALL,
    };
}

/// A base and a target content in one buffer, base first (see the module
/// documentation for why one buffer).
#[derive(Debug)]
pub struct PairBuffer {
    bytes: Vec<u8>,
    base_len: usize,
}

impl PairBuffer {
    pub fn new(bytes: Vec<u8>, base_len: usize) -> Self {
        assert!(base_len <= bytes.len(), "the base is inside the buffer");
        PairBuffer { bytes, base_len }
    }

    pub fn base(&self) -> &[u8] {
        &self.bytes[..self.base_len]
    }

    pub fn target(&self) -> &[u8] {
        &self.bytes[self.base_len..]
    }
}

/// One encoded patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub algorithm: DeltaAlgorithm,
    pub bytes: Vec<u8>,
}

/// One encoding's patch, with a label naming the encoding and the
/// parameters that made it (for benchmarks and logs; not in any format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub label: String,
    pub patch: Patch,
}

/// The `bidiff-zstd` and `bidiff-split-zstd` patches of a pair, each if
/// asked for and bidiff applies.
type BsdiffPatches = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every encoding in `settings.algorithms` that applies to the pair, in the
/// order of [`DeltaSettings::ALL`]. The two bsdiff-style encodings share one
/// suffix sort and scan (the expensive part). zstd-patch-from and the
/// bsdiff side run as the two halves of a `rayon::join`: on a pool with a
/// free thread (the last, largest pairs of a release, when the other workers
/// have run out of pairs) they overlap; on a one-thread pool they run one
/// after the other. Each half is deterministic, so the output does not
/// depend on which.
pub fn candidates(pair: &PairBuffer, settings: &DeltaSettings) -> io::Result<Vec<Candidate>> {
    let wants = |a: DeltaAlgorithm| settings.algorithms.contains(&a);
    let (patch_from, bsdiff_side) = rayon::join(
        || {
            wants(DeltaAlgorithm::ZstdPatchFrom)
                .then(|| zstd_patch_from(pair, settings))
                .transpose()
        },
        || -> io::Result<BsdiffPatches> {
            let (bidiff, split) = (
                wants(DeltaAlgorithm::BidiffZstd),
                wants(DeltaAlgorithm::BidiffSplitZstd),
            );
            if !(bidiff || split) {
                return Ok((None, None));
            }
            let Some(streams) = bsdiff_streams(pair)? else {
                return Ok((None, None));
            };
            let (interleaved, split) = rayon::join(
                || {
                    bidiff
                        .then(|| bidiff_interleaved(&streams, settings))
                        .transpose()
                },
                || {
                    split
                        .then(|| bidiff_split(pair, &streams, settings))
                        .transpose()
                },
            );
            Ok((interleaved?, split?))
        },
    );
    let (interleaved, split) = bsdiff_side?;
    let mut out = Vec::new();
    for (algorithm, bytes) in [
        (DeltaAlgorithm::ZstdPatchFrom, patch_from?),
        (DeltaAlgorithm::BidiffZstd, interleaved),
        (DeltaAlgorithm::BidiffSplitZstd, split),
    ] {
        if let Some(bytes) = bytes {
            out.push(Candidate {
                label: format!("{}/{}", crate::name(algorithm), settings.level),
                patch: Patch { algorithm, bytes },
            });
        }
    }
    Ok(out)
}

/// The smallest patch; on equal sizes the earliest candidate.
pub fn smallest(candidates: Vec<Candidate>) -> Option<Patch> {
    let mut best: Option<Patch> = None;
    for c in candidates {
        if best
            .as_ref()
            .is_none_or(|b| c.patch.bytes.len() < b.bytes.len())
        {
            best = Some(c.patch);
        }
    }
    best
}

/// Every encoding in `settings.algorithms` that applies to the pair, the
/// smallest kept; on equal sizes the one listed first in
/// [`DeltaSettings::ALL`] (zstd-patch-from: one pass to apply, and the
/// stock zstd CLI can do it). `None` when no encoding applies.
pub fn make_delta(pair: &PairBuffer, settings: &DeltaSettings) -> io::Result<Option<Patch>> {
    Ok(smallest(candidates(pair, settings)?))
}

/// The smallest window log (clamped to zstd's range and `max`) whose window
/// covers `bytes`.
pub fn window_log_for(bytes: u64, max: u32) -> u32 {
    let needed = 64 - bytes.saturating_sub(1).leading_zeros();
    needed.clamp(MIN_WINDOW_LOG, max.max(MIN_WINDOW_LOG))
}

/// `zstd --patch-from=BASE --long`: the target compressed against the base.
pub fn zstd_patch_from(pair: &PairBuffer, settings: &DeltaSettings) -> io::Result<Vec<u8>> {
    let span = pair.bytes.len() as u64;
    let mut cctx = compressor(
        settings.level,
        window_log_for(span, settings.max_window_log),
    )?;
    cctx.ref_prefix(pair.base()).map_err(zstd_error)?;
    compress(&mut cctx, pair.target())
}

/// bidiff's matches of target against base, as the three streams of a
/// bsdiff patch. `None` when the pair is outside what bidiff handles (an
/// empty base, or one too large for its 32-bit suffix array).
#[derive(Debug)]
pub struct BsdiffStreams {
    pub records: Vec<Record>,
    pub add: Vec<u8>,
    pub copy: Vec<u8>,
}

pub fn bsdiff_streams(pair: &PairBuffer) -> io::Result<Option<BsdiffStreams>> {
    let (base, target) = (pair.base(), pair.target());
    if base.is_empty() || base.len() > BIDIFF_MAX_BASE {
        return Ok(None);
    }
    let mut streams = BsdiffStreams {
        records: Vec::new(),
        add: Vec::new(),
        copy: Vec::new(),
    };
    let params = bidiff::DiffParams::new(1, None).map_err(io::Error::other)?;
    let mut translator = bidiff::Translator::new(base, target, |c: &bidiff::Control| {
        streams.records.push(Record {
            add: c.add.len() as u64,
            copy: c.copy.len() as u64,
            seek: c.seek,
        });
        streams.add.extend_from_slice(c.add);
        streams.copy.extend_from_slice(c.copy);
        Ok::<(), io::Error>(())
    });
    bidiff::diff(base, target, &params, |m| translator.translate(m))?;
    translator.close()?;
    Ok(Some(streams))
}

/// `bidiff-zstd`: bidiff's own interleaved encoding (`bidiff::enc`) in one
/// zstd frame.
pub fn bidiff_zstd(pair: &PairBuffer, settings: &DeltaSettings) -> io::Result<Option<Vec<u8>>> {
    match bsdiff_streams(pair)? {
        Some(streams) => bidiff_interleaved(&streams, settings).map(Some),
        None => Ok(None),
    }
}

fn bidiff_interleaved(streams: &BsdiffStreams, settings: &DeltaSettings) -> io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(streams.add.len() + streams.copy.len() + 64);
    let mut writer = bidiff::enc::Writer::new(&mut raw)?;
    let (mut add, mut copy) = (0usize, 0usize);
    for record in &streams.records {
        let (add_end, copy_end) = (add + record.add as usize, copy + record.copy as usize);
        writer.write(&bidiff::Control {
            add: &streams.add[add..add_end],
            copy: &streams.copy[copy..copy_end],
            seek: record.seek,
        })?;
        (add, copy) = (add_end, copy_end);
    }
    let window_log = window_log_for(raw.len() as u64, settings.max_window_log);
    let mut cctx = compressor(settings.level, window_log)?;
    compress(&mut cctx, &raw)
}

/// `bidiff-split-zstd` (see [`crate::split`]): the streams compressed
/// apart, the copy stream against the base.
fn bidiff_split(
    pair: &PairBuffer,
    streams: &BsdiffStreams,
    settings: &DeltaSettings,
) -> io::Result<Vec<u8>> {
    let mut control = Vec::with_capacity(streams.records.len() * 4);
    for record in &streams.records {
        split::write_record(&mut control, record);
    }
    let frame = |bytes: &[u8], max_window_log: u32| {
        let window_log = window_log_for(bytes.len() as u64, max_window_log);
        compress(&mut compressor(settings.level, window_log)?, bytes)
    };
    // Five independent frames, each its own rayon task, so a thread with
    // nothing else to do takes one (see `candidates`).
    let (runs, values) = split::sparse_add(&streams.add);
    let add_window_log = settings.max_window_log.min(SPLIT_ADD_WINDOW_LOG);
    // bzip2 is tried on the small sparse streams only: on a dense add
    // stream (tens of MB in unstripped binaries) it costs seconds and zstd
    // wins anyway.
    let inputs = [
        (&control[..], settings.max_window_log, true),
        (&runs[..], add_window_log, true),
        (&values[..], add_window_log, true),
        (&streams.add[..], add_window_log, false),
    ];
    let (copy, frames) = rayon::join(
        || copy_frame(pair, streams, settings),
        || {
            inputs
                .par_iter()
                .map(|(bytes, max_window_log, try_bzip2)| {
                    let zstd = frame(bytes, *max_window_log)?;
                    if !try_bzip2 {
                        return Ok(zstd);
                    }
                    let bzip2 = bzip2_stream(bytes)?;
                    Ok(if bzip2.len() < zstd.len() {
                        bzip2
                    } else {
                        zstd
                    })
                })
                .collect::<io::Result<Vec<_>>>()
        },
    );
    let copy = copy?;
    let [control, runs, values, dense]: [Vec<u8>; 4] =
        frames?.try_into().expect("one frame per input");
    // The add stream coded sparsely, or densely (no runs frame) where that
    // is smaller; on equal sizes, sparsely.
    let (runs, values) = if dense.len() < runs.len() + values.len() {
        (Vec::new(), dense)
    } else {
        (runs, values)
    };
    Ok(split::assemble(&split::Frames {
        bzip2_allowed: true,
        control: &control,
        runs: &runs,
        values: &values,
        copy: &copy,
    }))
}

/// The copy stream's frame: compressed against the base when the base is
/// small enough to index (see [`SPLIT_PREFIX_MAX_BASE`]).
fn copy_frame(
    pair: &PairBuffer,
    streams: &BsdiffStreams,
    settings: &DeltaSettings,
) -> io::Result<Vec<u8>> {
    if pair.base().len() <= SPLIT_PREFIX_MAX_BASE {
        // Base and copy stream in one buffer, for the same reason as
        // PairBuffer.
        let mut joined = Vec::with_capacity(pair.base().len() + streams.copy.len());
        joined.extend_from_slice(pair.base());
        joined.extend_from_slice(&streams.copy);
        zstd_patch_from(&PairBuffer::new(joined, pair.base().len()), settings)
    } else {
        let window_log = window_log_for(streams.copy.len() as u64, settings.max_window_log);
        compress(&mut compressor(settings.level, window_log)?, &streams.copy)
    }
}

/// One bzip2 stream of `bytes`, 900 kB blocks (`bzip2 -9`).
fn bzip2_stream(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    io::Write::write_all(&mut encoder, bytes)?;
    encoder.finish()
}

fn compressor(level: i32, window_log: u32) -> io::Result<CCtx<'static>> {
    let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
    for parameter in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(true),
    ] {
        cctx.set_parameter(parameter).map_err(zstd_error)?;
    }
    Ok(cctx)
}

fn compress(cctx: &mut CCtx<'_>, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(input.len()));
    cctx.compress2(&mut out, input).map_err(zstd_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::apply;
    use crate::name;

    fn settings(algorithms: &'static [DeltaAlgorithm]) -> DeltaSettings {
        DeltaSettings {
            level: 3,
            max_window_log: MAX_WINDOW_LOG,
            algorithms,
        }
    }

    fn pair(base: &[u8], target: &[u8]) -> PairBuffer {
        PairBuffer::new([base, target].concat(), base.len())
    }

    /// Pseudo-random bytes: nothing for zstd to find inside one file.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn names_are_the_manifest_spellings() {
        for algorithm in DeltaSettings::ALL {
            assert_eq!(
                serde_json::to_value(algorithm).unwrap(),
                serde_json::Value::from(name(*algorithm))
            );
        }
    }

    #[test]
    fn window_covers_the_bytes_within_zstd_limits() {
        assert_eq!(window_log_for(0, 31), 10);
        assert_eq!(window_log_for(1024, 31), 10);
        assert_eq!(window_log_for(1025, 31), 11);
        assert_eq!(window_log_for(3 << 20, 31), 22);
        assert_eq!(window_log_for(1 << 40, 31), 31);
        assert_eq!(window_log_for(1 << 40, 27), 27);
    }

    #[test]
    fn both_encodings_round_trip_and_beat_plain_compression() {
        let base = noise(300_000, 7);
        let mut target = base.clone();
        target.splice(1000..1000, noise(500, 9));
        target.drain(200_000..200_300);
        for i in (50_000..60_000).step_by(97) {
            target[i] = target[i].wrapping_add(3);
        }
        let pair = pair(&base, &target);
        let plain = zstd::bulk::compress(&target, 3).unwrap().len();
        for algorithm in DeltaSettings::ALL {
            let patch = make_delta(&pair, &settings(std::slice::from_ref(algorithm)))
                .unwrap()
                .unwrap();
            assert_eq!(patch.algorithm, *algorithm);
            assert!(
                patch.bytes.len() * 20 < plain,
                "{algorithm:?}: {} vs {plain}",
                patch.bytes.len()
            );
            let applied = apply(*algorithm, &base, &patch.bytes, target.len() as u64 + 1);
            assert_eq!(applied.unwrap(), target, "{algorithm:?}");
        }
    }

    #[test]
    fn the_smaller_encoding_wins_and_output_is_reproducible() {
        let base = noise(100_000, 1);
        let mut target = base.clone();
        target.splice(5_000..5_000, b"inserted".repeat(40));
        let pair = pair(&base, &target);
        let both = make_delta(&pair, &settings(DeltaSettings::ALL))
            .unwrap()
            .unwrap();
        let sizes: Vec<usize> = DeltaSettings::ALL
            .iter()
            .map(|a| {
                make_delta(&pair, &settings(std::slice::from_ref(a)))
                    .unwrap()
                    .unwrap()
                    .bytes
                    .len()
            })
            .collect();
        assert_eq!(both.bytes.len(), *sizes.iter().min().unwrap());
        let again = make_delta(&pair, &settings(DeltaSettings::ALL))
            .unwrap()
            .unwrap();
        assert_eq!(both, again);
    }

    #[test]
    fn bidiff_skips_an_empty_base_and_bad_patches_fail_or_differ() {
        let target = noise(1000, 3);
        let empty_base = pair(b"", &target);
        assert_eq!(
            bidiff_zstd(&empty_base, &settings(DeltaSettings::ALL)).unwrap(),
            None
        );
        let base = noise(1000, 4);
        let pair = pair(&base, &target);
        for algorithm in DeltaSettings::ALL {
            let patch = make_delta(&pair, &settings(std::slice::from_ref(algorithm)))
                .unwrap()
                .unwrap();
            let truncated = &patch.bytes[..patch.bytes.len() / 2];
            assert!(apply(*algorithm, &base, truncated, 1001).is_err());
            let mut flipped = patch.bytes.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0x40;
            // The frame checksum catches what the decoder does not.
            assert!(
                apply(*algorithm, &base, &flipped, 1001).is_err(),
                "{algorithm:?}"
            );
            // The cap holds however long the output would be.
            assert_eq!(
                apply(*algorithm, &base, &patch.bytes, 10).unwrap().len(),
                10
            );
        }
    }
}
