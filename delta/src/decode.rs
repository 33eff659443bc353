//! Applying patches: in memory for the publisher's checks, and file to file
//! with bounded memory on the node.
//!
//! Memory on the node: a `bidiff-zstd` patch streams (bipatch seeks in the
//! base file; zstd keeps a window of the decompressed patch stream, which is
//! at most about the target's size). A `zstd-patch-from` frame needs the
//! whole base addressable and writes into a window as large as the target,
//! so the base is read into memory and the output is decoded in one call
//! straight into the memory-mapped output file: anonymous memory stays at
//! the base's size plus zstd's constant context, and the output lives in the
//! page cache, not in the process. The output file is ferry's own fresh
//! temporary file, so nobody else can truncate it under the mapping. A
//! `bidiff-split-zstd` patch needs the base in memory too (its copy frame's
//! prefix) and the patch, but streams its output: its four decoders keep
//! windows of at most 8 MiB (the add runs and values) and of their own small
//! content otherwise.
//!
//! Nothing here trusts the result: the caller compares the returned digest
//! with the signed one before the output counts for anything. Output is
//! capped at the signed size, so a patch that would produce more fails
//! instead of filling the disk.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};

use manifests::digest::HashingWriter;
use manifests::manifest::DeltaAlgorithm;
use manifests::Sha256Digest;
use zstd::zstd_safe::{DCtx, DParameter};

use crate::{split, zstd_error, MAX_WINDOW_LOG};

/// Applies `patch` to `base`, reading at most `max_output` bytes of result
/// (callers pass the target size plus one, to notice overlong output without
/// unbounded memory). The caller checks the result's digest.
pub fn apply(
    algorithm: DeltaAlgorithm,
    base: &[u8],
    patch: &[u8],
    max_output: u64,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match algorithm {
        DeltaAlgorithm::ZstdPatchFrom => {
            let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(patch, base)?;
            decoder.window_log_max(MAX_WINDOW_LOG)?;
            decoder.take(max_output).read_to_end(&mut out)?;
        }
        DeltaAlgorithm::BidiffZstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(patch)?;
            let reader = bipatch::Reader::new(decoder, Cursor::new(base))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            reader.take(max_output).read_to_end(&mut out)?;
        }
        DeltaAlgorithm::BidiffSplitZstd => {
            // Stops at the cap instead of failing, like the readers above:
            // the caller's size check tells overlong output.
            let mut capped = CappedVec {
                out: &mut out,
                cap: max_output,
            };
            match split_apply(base, patch, &mut capped, u64::MAX) {
                Err(_) if out.len() as u64 == max_output => {}
                result => result.map(drop)?,
            }
        }
    }
    Ok(out)
}

/// A `Vec` that takes at most `cap` bytes, then refuses more.
struct CappedVec<'a> {
    out: &'a mut Vec<u8>,
    cap: u64,
}

impl Write for CappedVec<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.out.len() as u64);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::other("output cap reached"));
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What applying a patch file produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Applies the patch read from `patch` to the file `base`, writing the
/// result into `out` (a new, empty file opened for reading and writing).
///
/// Returns the size and digest of what was written. Errors are
/// `InvalidData` when the patch is corrupt, does not fit the base, or would
/// produce more than `target_size` bytes; other kinds come from the disk.
/// A result shorter than `target_size` is returned as such: the caller's
/// size check rejects it.
pub fn apply_file(
    algorithm: DeltaAlgorithm,
    base: &mut File,
    patch: impl Read,
    out: &mut File,
    target_size: u64,
) -> io::Result<Applied> {
    match algorithm {
        DeltaAlgorithm::BidiffZstd => {
            let decoder = zstd::stream::read::Decoder::new(patch)?;
            let reader = bipatch::Reader::new(decoder, BufReader::new(base))
                .map_err(|e| invalid(format!("not a bidiff patch: {e}")))?;
            let mut writer = HashingWriter::new(&mut *out);
            copy_capped(reader, &mut writer, target_size)?;
            writer.flush()?;
            let (sha256, size) = writer.finish();
            Ok(Applied { size, sha256 })
        }
        DeltaAlgorithm::ZstdPatchFrom => patch_from_file(base, patch, out, target_size),
        DeltaAlgorithm::BidiffSplitZstd => {
            let mut patch = patch;
            // The copy frame is compressed against the base, so the base is
            // held in memory (as for zstd-patch-from); the output streams to
            // the file, so memory stays at the base's size plus the patch
            // and zstd's bounded windows.
            let mut base_bytes = Vec::new();
            base.read_to_end(&mut base_bytes)?;
            let mut frame = Vec::new();
            patch.read_to_end(&mut frame)?;
            let mut writer =
                HashingWriter::new(io::BufWriter::with_capacity(128 * 1024, &mut *out));
            split_apply(&base_bytes, &frame, &mut writer, target_size)?;
            let (mut inner, sha256, size) = writer.into_parts();
            inner.flush()?;
            Ok(Applied { size, sha256 })
        }
    }
}

/// Applies a `bidiff-split-zstd` patch (see [`crate::split`]), writing the
/// result to `out`; fails (`InvalidData`) once the output would pass `cap`
/// bytes, after writing up to one record past it.
fn split_apply(base: &[u8], patch: &[u8], out: &mut impl Write, cap: u64) -> io::Result<u64> {
    let frames = split::frames(patch)?;
    let bad = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData => e,
        _ => invalid(format!("patch does not apply: {e}")),
    };
    let open = |frame| stream_frame(frame, frames.bzip2_allowed).map_err(bad);
    let mut control = open(frames.control)?;
    // The add streams are read a varint or a byte at a time: buffered, so
    // that is not one decoder call per byte.
    let sparse = |frame| -> io::Result<_> { Ok(BufReader::with_capacity(16 * 1024, open(frame)?)) };
    let runs = match frames.runs {
        [] => None,
        runs => Some(sparse(runs)?),
    };
    let mut add = split::SparseAdd::new(runs, sparse(frames.values)?);
    let mut copy = zstd::stream::read::Decoder::with_ref_prefix(frames.copy, base).map_err(bad)?;
    copy.window_log_max(MAX_WINDOW_LOG).map_err(bad)?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut cursor: i128 = 0;
    let mut total: u64 = 0;
    while let Some(record) = split::read_record(&mut control).map_err(bad)? {
        let produced = record.add.checked_add(record.copy);
        total = match produced.and_then(|n| total.checked_add(n)) {
            Some(t) if t <= cap => t,
            _ => {
                return Err(invalid(format!(
                    "the patch produces more than the manifest's {cap} bytes"
                )))
            }
        };
        if record.add > 0 && (cursor < 0 || cursor + i128::from(record.add) > base.len() as i128) {
            return Err(invalid("the patch reads outside its base".into()));
        }
        let mut left = record.add;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            add.fill(&mut buf[..n]).map_err(bad)?;
            let start = cursor as usize;
            for (byte, old) in buf[..n].iter_mut().zip(&base[start..start + n]) {
                *byte = byte.wrapping_add(*old);
            }
            out.write_all(&buf[..n])?;
            cursor += n as i128;
            left -= n as u64;
        }
        let mut left = record.copy;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            copy.read_exact(&mut buf[..n]).map_err(bad)?;
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        cursor += i128::from(record.seek);
    }
    // Reading past the end also checks each frame's checksum.
    add.finish().map_err(bad)?;
    if copy.read(&mut buf[..1]).map_err(bad)? != 0 {
        return Err(invalid(
            "the patch's copy stream has bytes left over".into(),
        ));
    }
    Ok(total)
}

/// A control, runs or values frame of a split patch, decoded as it is
/// read: zstd, or bzip2 where the container allows it (see
/// [`split::Codec`]).
enum FrameReader<'a> {
    Zstd(zstd::stream::read::Decoder<'a, &'a [u8]>),
    Bzip2(bzip2::bufread::BzDecoder<&'a [u8]>),
}

fn stream_frame(frame: &[u8], bzip2_allowed: bool) -> io::Result<FrameReader<'_>> {
    match split::Codec::of(frame) {
        Some(split::Codec::Zstd) => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)?;
            decoder.window_log_max(MAX_WINDOW_LOG)?;
            Ok(FrameReader::Zstd(decoder))
        }
        Some(split::Codec::Bzip2) if bzip2_allowed => {
            Ok(FrameReader::Bzip2(bzip2::bufread::BzDecoder::new(frame)))
        }
        _ => Err(invalid(
            "a bidiff-split-zstd frame is neither zstd nor (in BSZ3) bzip2".into(),
        )),
    }
}

impl Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            FrameReader::Zstd(decoder) => decoder.read(buf),
            FrameReader::Bzip2(decoder) => {
                let n = decoder.read(buf)?;
                // One stream and nothing after it: the stream's own CRCs
                // cover only what it decodes.
                if n == 0 && !buf.is_empty() && !decoder.get_ref().is_empty() {
                    return Err(invalid(
                        "bytes follow the bzip2 stream of a patch frame".into(),
                    ));
                }
                Ok(n)
            }
        }
    }
}

fn patch_from_file(
    base: &mut File,
    mut patch: impl Read,
    out: &mut File,
    target_size: u64,
) -> io::Result<Applied> {
    let mut base_bytes = Vec::new();
    base.read_to_end(&mut base_bytes)?;
    let mut frame = Vec::new();
    patch.read_to_end(&mut frame)?;
    let declared = zstd::zstd_safe::get_frame_content_size(&frame)
        .map_err(|_| invalid("not a zstd frame".into()))?;
    match declared {
        Some(size) if size == target_size => {}
        Some(size) => {
            return Err(invalid(format!(
                "the patch declares {size} bytes of output, the manifest {target_size}"
            )))
        }
        None => return Err(invalid("the patch does not declare its output size".into())),
    }
    let len = usize::try_from(target_size).map_err(|_| invalid("target too large".into()))?;
    if len == 0 {
        return Ok(Applied {
            size: 0,
            sha256: Sha256Digest::of(&[]),
        });
    }
    out.set_len(target_size)?;
    // SAFETY: `out` is a file this process just created and holds open; no
    // other process writes or truncates it while the map lives.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&*out)? };
    let mut dctx = DCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(zstd_error)?;
    dctx.ref_prefix(&base_bytes).map_err(zstd_error)?;
    let written = dctx
        .decompress(&mut map[..], &frame)
        .map_err(|code| invalid(format!("patch does not apply: {}", zstd_error(code))))?;
    drop(dctx);
    drop(base_bytes);
    drop(frame);
    let sha256 = Sha256Digest::of(&map[..written]);
    map.flush()?;
    drop(map);
    if written < len {
        out.set_len(written as u64)?;
    }
    Ok(Applied {
        size: written as u64,
        sha256,
    })
}

/// Copies until `reader` ends, failing once it yields more than `cap` bytes.
fn copy_capped(mut reader: impl Read, out: &mut impl Write, cap: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::UnexpectedEof =>
            {
                return Err(invalid(format!("patch does not apply: {e}")))
            }
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > cap {
            return Err(invalid(format!(
                "the patch produces more than the manifest's {cap} bytes"
            )));
        }
        out.write_all(&buf[..n])?;
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(all(test, feature = "encode"))]
mod tests {
    use super::*;
    use crate::encode::{make_delta, DeltaSettings, PairBuffer};

    /// Something like machine code: recurring short patterns with varying
    /// 4-byte "addresses" in between.
    fn code_like(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&[0x48, 0x8b, 0x05]);
            out.extend_from_slice(&((state >> 40) as u32 & 0xffff).to_le_bytes());
            out.extend_from_slice(&[0xe8]);
            out.extend_from_slice(&((state >> 20) as u32).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// The target: the base with an insertion, a deletion and a stretch of
    /// shifted words.
    fn next_build(base: &[u8]) -> Vec<u8> {
        let mut target = base.to_vec();
        target.splice(10_000..10_000, code_like(3000, 99));
        target.drain(100_000..101_000);
        for i in (150_000..170_000).step_by(12) {
            target[i] = target[i].wrapping_add(0x40);
        }
        target
    }

    fn split_patch(base: &[u8], target: &[u8]) -> Vec<u8> {
        let settings = DeltaSettings {
            level: 3,
            algorithms: &[DeltaAlgorithm::BidiffSplitZstd],
            ..DeltaSettings::DEFAULT
        };
        let pair = PairBuffer::new([base, target].concat(), base.len());
        let patch = make_delta(&pair, &settings).unwrap().unwrap();
        assert_eq!(patch.algorithm, DeltaAlgorithm::BidiffSplitZstd);
        patch.bytes
    }

    /// `apply_file` on real files; the output's bytes with the result.
    fn apply_files(base: &[u8], patch: &[u8], size: u64) -> io::Result<(Applied, Vec<u8>)> {
        let dir = tempfile::tempdir()?;
        let (base_path, out_path) = (dir.path().join("base"), dir.path().join("out"));
        std::fs::write(&base_path, base)?;
        let mut base_file = File::open(&base_path)?;
        let mut out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&out_path)?;
        let applied = apply_file(
            DeltaAlgorithm::BidiffSplitZstd,
            &mut base_file,
            patch,
            &mut out,
            size,
        )?;
        Ok((applied, std::fs::read(&out_path)?))
    }

    fn refused(result: io::Result<(Applied, Vec<u8>)>, target: &[u8], what: &str) {
        match result {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}"),
            // Decodable garbage is caught by the caller's digest check.
            Ok((applied, bytes)) => {
                assert!(bytes != target, "{what}: rebuilt the target");
                assert_ne!(applied.sha256, Sha256Digest::of(target), "{what}");
            }
        }
    }

    #[test]
    fn split_patches_apply_file_to_file_and_in_memory() {
        let base = code_like(400_000, 1);
        let target = next_build(&base);
        let patch = split_patch(&base, &target);
        assert!(patch.len() < target.len() / 20, "{} bytes", patch.len());
        let size = target.len() as u64;
        let (applied, bytes) = apply_files(&base, &patch, size).unwrap();
        assert_eq!(bytes, target);
        assert_eq!(
            applied,
            Applied {
                size,
                sha256: Sha256Digest::of(&target)
            }
        );
        let in_memory = apply(DeltaAlgorithm::BidiffSplitZstd, &base, &patch, size + 1);
        assert_eq!(in_memory.unwrap(), target);
        // In memory, the output stops at the cap.
        let capped = apply(DeltaAlgorithm::BidiffSplitZstd, &base, &patch, 100).unwrap();
        assert_eq!(capped, target[..100]);
    }

    /// The patch with its control, runs and values frames recoded: each
    /// through `recode` (decompressed first, whichever codec it was in).
    fn recoded(patch: &[u8], bzip2_allowed: bool, recode: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let frames = split::frames(patch).unwrap();
        let plain = |frame: &[u8]| {
            let mut out = Vec::new();
            stream_frame(frame, true)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let (control, runs, values) = (
            recode(&plain(frames.control)),
            recode(&plain(frames.runs)),
            recode(&plain(frames.values)),
        );
        split::assemble(&split::Frames {
            bzip2_allowed,
            control: &control,
            runs: if frames.runs.is_empty() { &[] } else { &runs },
            values: &values,
            copy: frames.copy,
        })
    }

    fn bzip2(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        std::io::Write::write_all(&mut encoder, bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn split_frames_apply_in_either_codec_and_bzip2_only_in_bsz3() {
        let base = code_like(300_000, 4);
        let target = next_build(&base);
        let patch = split_patch(&base, &target);
        let size = target.len() as u64;
        let as_bzip2 = recoded(&patch, true, bzip2);
        let as_zstd = recoded(&patch, true, |b| zstd::bulk::compress(b, 3).unwrap());
        let zstd_in_bsz2 = recoded(&patch, false, |b| zstd::bulk::compress(b, 3).unwrap());
        for (what, patch) in [
            ("bzip2", &as_bzip2),
            ("zstd", &as_zstd),
            ("zstd in BSZ2", &zstd_in_bsz2),
        ] {
            let frames = split::frames(patch).unwrap();
            let codec = split::Codec::of(frames.values).unwrap();
            assert_eq!(codec == split::Codec::Bzip2, what == "bzip2", "{what}");
            let (_, bytes) = apply_files(&base, patch, size).unwrap();
            assert_eq!(bytes, target, "{what}");
        }
        // An old (BSZ2) container holds zstd frames only.
        let bzip2_in_bsz2 = recoded(&patch, false, bzip2);
        let error = apply_files(&base, &bzip2_in_bsz2, size).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("neither zstd"), "{error}");
        // Anything after the bzip2 stream, or a flipped byte inside it.
        let trailing = recoded(&patch, true, |b| [bzip2(b), b"junk".to_vec()].concat());
        refused(apply_files(&base, &trailing, size), &target, "after bzip2");
        let frames = split::frames(&as_bzip2).unwrap();
        let values_at = split::HEADER_LEN + frames.control.len() + frames.runs.len();
        let mut flipped = as_bzip2.clone();
        flipped[values_at + frames.values.len() / 2] ^= 0x10;
        refused(apply_files(&base, &flipped, size), &target, "bzip2 flipped");
    }

    #[test]
    fn corrupt_truncated_wrong_base_and_overlong_split_patches_are_refused() {
        let base = code_like(300_000, 2);
        let target = next_build(&base);
        let patch = split_patch(&base, &target);
        let size = target.len() as u64;
        let frames = split::frames(&patch).unwrap();
        let control_at = split::HEADER_LEN;
        let runs_at = control_at + frames.control.len();
        let values_at = runs_at + frames.runs.len();
        let copy_at = values_at + frames.values.len();

        for cut in [
            0,
            3,
            20,
            control_at + 5,
            runs_at + 5,
            values_at + 5,
            copy_at + 5,
            patch.len() - 1,
        ] {
            refused(
                apply_files(&base, &patch[..cut], size),
                &target,
                &format!("cut at {cut}"),
            );
        }
        for at in [
            2,
            6,
            control_at + frames.control.len() / 2,
            runs_at + frames.runs.len() / 2,
            values_at + frames.values.len() / 2,
            copy_at + frames.copy.len() / 2,
        ] {
            let mut bad = patch.clone();
            bad[at] ^= 0x21;
            refused(
                apply_files(&base, &bad, size),
                &target,
                &format!("byte {at} flipped"),
            );
        }
        let mut longer = patch.clone();
        longer.extend_from_slice(b"trailing");
        refused(apply_files(&base, &longer, size), &target, "trailing bytes");

        let other_base = code_like(300_000, 6);
        refused(
            apply_files(&other_base, &patch, size),
            &target,
            "another base",
        );
        refused(
            apply_files(&base[..1000], &patch, size),
            &target,
            "a short base",
        );

        let overlong = apply_files(&base, &patch, size - 1).unwrap_err();
        assert_eq!(overlong.kind(), io::ErrorKind::InvalidData);
        // A short result is returned as such, for the caller's size check.
        let (short, _) = apply_files(&base, &patch, size + 10).unwrap();
        assert_eq!(short.size, size);
    }
}
