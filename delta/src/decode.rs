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
//! temporary file, so nobody else can truncate it under the mapping.
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

use crate::{zstd_error, MAX_WINDOW_LOG};

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
    }
    Ok(out)
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
