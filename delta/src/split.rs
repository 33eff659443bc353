//! The `bidiff-split-zstd` container: a bsdiff-style patch whose three
//! streams are compressed apart, as classic bsdiff stores them.
//!
//! bidiff's own encoding interleaves each record's control numbers, its
//! "add" bytes (target minus base over a match: mostly zeros and small
//! numbers) and its "copy" bytes (new content); one zstd frame over that mix
//! codes three very different kinds of data with one set of statistics.
//! Apart, each gets its own: the add stream collapses to almost nothing, and
//! the copy stream is compressed with the base as a zstd prefix, so new code
//! that merely moved, or resembles old code, is still found in the base.
//!
//! ```text
//! magic          4 bytes "BSZ3" (or "BSZ2", read but no longer written)
//! control_len    u64 little-endian: bytes of the control frame
//! runs_len       u64 little-endian: bytes of the add-runs frame
//! values_len     u64 little-endian: bytes of the add-values frame
//! copy_len       u64 little-endian: bytes of the copy frame
//! control frame  records (add, copy, seek), each three varints:
//!                add and copy as unsigned LEB128, seek zigzag-encoded
//! runs frame     for each non-zero byte of the add stream (every
//!                record's add bytes, concatenated), the number of zero
//!                bytes before it since the previous non-zero byte, as an
//!                unsigned LEB128 varint; or nothing (runs_len 0): the add
//!                stream is coded densely
//! values frame   the add stream's non-zero bytes, in order; when
//!                coded densely, every add byte
//! copy frame     zstd frame, compressed with the base as a raw-content
//!                prefix: every record's copy bytes, concatenated
//! ```
//!
//! In "BSZ3" the control, runs and values frames are each one zstd frame or
//! one bzip2 stream, told apart by their own magic ([`Codec::of`]); in
//! "BSZ2" every frame is zstd. On the sparse streams of shifted code (small
//! varints and byte values with little repetition) bzip2's block sorting
//! codes 4-6 % smaller than zstd-19 does; elsewhere zstd wins, so the
//! encoder codes those frames both ways and keeps the smaller (zstd on a
//! tie). The copy frame stays zstd: only zstd can use the base as a prefix.
//!
//! The add stream is mostly zeros with sparse small differences (code whose
//! addresses shifted); coded as zero-run lengths and the non-zero values
//! apart, the compressor sees two small dense streams instead of long zero runs
//! broken by isolated bytes, and the add frames shrink by 4-23 % on the
//! bench pairs (see docs/FORMAT.md). Zeros after the last non-zero byte are
//! not coded: once the runs frame ends, the rest of the add stream is
//! zeros. A zero in a sparse values frame is invalid (the coding is
//! canonical). Where the
//! add stream is dense (debug sections of unstripped binaries), the plain
//! stream can compress smaller; the encoder codes both ways and keeps the
//! smaller, an empty runs frame (never a valid frame) marking the
//! dense coding.
//!
//! Nothing may follow the copy frame. Applying: a base cursor starts at 0;
//! for each record, `add` bytes are each the next add-stream byte plus
//! (wrapping) the base byte at the cursor, the cursor advancing; then `copy`
//! bytes come from the copy stream; then `seek` moves the cursor. A record
//! that reads outside the base, or streams that end early or have bytes
//! left over, make the patch invalid.

use std::io::{self, Read};

/// The container ferry writes.
pub const MAGIC: [u8; 4] = *b"BSZ3";
/// The first container: every frame zstd.
pub const MAGIC_ZSTD_ONLY: [u8; 4] = *b"BSZ2";
/// Frames of a patch, in order: control, add runs, add values, copy.
const FRAME_COUNT: usize = 4;
pub const HEADER_LEN: usize = 4 + FRAME_COUNT * 8;

/// One record of the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub add: u64,
    pub copy: u64,
    pub seek: i64,
}

/// How a control, runs or values frame is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Bzip2,
}

impl Codec {
    /// The codec whose magic starts `frame`: zstd's frame magic
    /// (0xFD2FB528, little-endian) or bzip2's "BZh" and a block size digit.
    pub fn of(frame: &[u8]) -> Option<Codec> {
        match frame {
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Codec::Zstd),
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(Codec::Bzip2),
            _ => None,
        }
    }
}

/// The four frames of a patch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames<'a> {
    /// Whether the control, runs and values frames may be bzip2 ("BSZ3").
    pub bzip2_allowed: bool,
    pub control: &'a [u8],
    pub runs: &'a [u8],
    pub values: &'a [u8],
    pub copy: &'a [u8],
}

/// Header and frames, in order.
pub fn assemble(frames: &Frames<'_>) -> Vec<u8> {
    let all = [frames.control, frames.runs, frames.values, frames.copy];
    let body: usize = all.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(if frames.bzip2_allowed {
        &MAGIC
    } else {
        &MAGIC_ZSTD_ONLY
    });
    for frame in all {
        out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    }
    for frame in all {
        out.extend_from_slice(frame);
    }
    out
}

/// Splits a patch into its frames, checking the header and that the
/// lengths add up to exactly the patch.
pub fn frames(patch: &[u8]) -> io::Result<Frames<'_>> {
    if patch.len() < HEADER_LEN || (patch[..4] != MAGIC && patch[..4] != MAGIC_ZSTD_ONLY) {
        return Err(invalid("not a bidiff-split-zstd patch (bad magic)"));
    }
    let mut lens = [0u64; FRAME_COUNT];
    for (i, len) in lens.iter_mut().enumerate() {
        let bytes: [u8; 8] = patch[4 + 8 * i..12 + 8 * i].try_into().expect("8 bytes");
        *len = u64::from_le_bytes(bytes);
    }
    let body = (patch.len() - HEADER_LEN) as u64;
    let total = lens.iter().try_fold(0u64, |sum, len| sum.checked_add(*len));
    if total != Some(body) {
        return Err(invalid(
            "bidiff-split-zstd frame lengths do not match the patch size",
        ));
    }
    let mut rest = &patch[HEADER_LEN..];
    let mut next = |len: u64| {
        let (frame, tail) = rest.split_at(len as usize);
        rest = tail;
        frame
    };
    Ok(Frames {
        bzip2_allowed: patch[..4] == MAGIC,
        control: next(lens[0]),
        runs: next(lens[1]),
        values: next(lens[2]),
        copy: next(lens[3]),
    })
}

/// The add stream coded sparsely: the runs stream (zero-run lengths, one
/// varint before each non-zero byte) and the values stream (the non-zero
/// bytes). Zeros after the last non-zero byte are left out.
pub fn sparse_add(add: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut runs, mut values) = (Vec::new(), Vec::new());
    let mut zeros = 0u64;
    for &byte in add {
        if byte == 0 {
            zeros += 1;
        } else {
            write_varint(&mut runs, zeros);
            values.push(byte);
            zeros = 0;
        }
    }
    (runs, values)
}

/// Reads the add stream back from its runs and values streams (see
/// [`sparse_add`]), a buffer at a time, holding nothing but its position;
/// without a runs stream, the values stream is the add stream itself.
pub struct SparseAdd<R, V> {
    runs: Option<R>,
    values: V,
    /// Zeros still to come before the pending non-zero byte.
    zeros: u64,
    /// Whether a run has been read whose non-zero byte is still to come.
    pending: bool,
    /// Whether the runs stream has ended: only zeros are left.
    ended: bool,
}

impl<R: Read, V: Read> SparseAdd<R, V> {
    pub fn new(runs: Option<R>, values: V) -> Self {
        SparseAdd {
            runs,
            values,
            zeros: 0,
            pending: false,
            ended: false,
        }
    }

    /// Fills `buf` with the next add-stream bytes.
    pub fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let Some(runs) = &mut self.runs else {
            return self.values.read_exact(buf).map_err(values_ended);
        };
        let mut i = 0;
        while i < buf.len() {
            if !self.pending {
                if self.ended {
                    buf[i..].fill(0);
                    return Ok(());
                }
                match read_varint(runs, true, "add runs")? {
                    Some(zeros) => (self.zeros, self.pending) = (zeros, true),
                    None => {
                        self.ended = true;
                        continue;
                    }
                }
            }
            let n = self.zeros.min((buf.len() - i) as u64) as usize;
            buf[i..i + n].fill(0);
            (i, self.zeros) = (i + n, self.zeros - n as u64);
            if i < buf.len() {
                let mut value = [0u8];
                self.values.read_exact(&mut value).map_err(values_ended)?;
                if value[0] == 0 {
                    return Err(invalid("add values stream holds a zero"));
                }
                (buf[i], i, self.pending) = (value[0], i + 1, false);
            }
        }
        Ok(())
    }

    /// Checks that both streams were used up (reading to their ends, which
    /// also checks zstd's frame checksums).
    pub fn finish(mut self) -> io::Result<()> {
        let left_over = match &mut self.runs {
            Some(runs) => {
                self.pending || (!self.ended && read_varint(runs, true, "add runs")?.is_some())
            }
            None => false,
        };
        if left_over {
            return Err(invalid("the patch's add runs stream has bytes left over"));
        }
        if self.values.read(&mut [0u8])? != 0 {
            return Err(invalid("the patch's add values stream has bytes left over"));
        }
        Ok(())
    }
}

fn values_ended(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => invalid("add values stream ends early"),
        _ => e,
    }
}

pub fn write_record(out: &mut Vec<u8>, record: &Record) {
    write_varint(out, record.add);
    write_varint(out, record.copy);
    write_varint(out, zigzag(record.seek));
}

/// The next record, or `None` at a clean end of the stream.
pub fn read_record(control: &mut impl Read) -> io::Result<Option<Record>> {
    let Some(add) = read_varint(control, true, "control")? else {
        return Ok(None);
    };
    let copy = read_varint(control, false, "control")?.expect("required");
    let seek = unzigzag(read_varint(control, false, "control")?.expect("required"));
    Ok(Some(Record { add, copy, seek }))
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An unsigned LEB128 varint; `None` only when `end_ok` and the stream
/// ends before its first byte. `stream` names the stream in errors.
fn read_varint(input: &mut impl Read, end_ok: bool, stream: &str) -> io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        if let Err(e) = input.read_exact(&mut byte) {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof if i == 0 && end_ok => Ok(None),
                io::ErrorKind::UnexpectedEof => {
                    Err(invalid(&format!("{stream} stream ends inside a varint")))
                }
                _ => Err(e),
            };
        }
        let bits = u64::from(byte[0] & 0x7f);
        if i == 9 && byte[0] > 1 {
            return Err(invalid(&format!(
                "{stream} stream varint overflows 64 bits"
            )));
        }
        value |= bits << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(invalid(&format!(
        "{stream} stream varint overflows 64 bits"
    )))
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

pub fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_varints() {
        let records = [
            Record {
                add: 0,
                copy: 0,
                seek: 0,
            },
            Record {
                add: 127,
                copy: 128,
                seek: -1,
            },
            Record {
                add: u64::MAX,
                copy: 1 << 40,
                seek: i64::MIN,
            },
            Record {
                add: 300,
                copy: 5,
                seek: i64::MAX,
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            write_record(&mut bytes, r);
        }
        let mut input = &bytes[..];
        for r in &records {
            assert_eq!(read_record(&mut input).unwrap(), Some(*r));
        }
        assert_eq!(read_record(&mut input).unwrap(), None);
        // Cut inside a record: an error, not a clean end.
        let mut cut = &bytes[..bytes.len() - 1];
        let all: Vec<_> = std::iter::from_fn(|| read_record(&mut cut).transpose()).collect();
        assert!(all.last().unwrap().is_err());
        // Eleven continuation bytes overflow.
        assert!(read_varint(&mut &[0xffu8; 11][..], false, "test").is_err());
    }

    #[test]
    fn frames_must_fill_the_patch_exactly() {
        let four = Frames {
            bzip2_allowed: true,
            control: b"ctl",
            runs: b"ru",
            values: b"v",
            copy: b"copy",
        };
        let patch = assemble(&four);
        assert_eq!(frames(&patch).unwrap(), four);
        assert!(frames(&patch[..patch.len() - 1]).is_err());
        let mut longer = patch.clone();
        longer.push(0);
        assert!(frames(&longer).is_err());
        let mut bad_magic = patch.clone();
        bad_magic[0] = b'X';
        assert!(frames(&bad_magic).is_err());
        let mut zstd_only = patch.clone();
        zstd_only[..4].copy_from_slice(b"BSZ2");
        let read = frames(&zstd_only).unwrap();
        assert!(!read.bzip2_allowed);
        assert_eq!(read.copy, four.copy);
        let mut old_magic = patch.clone();
        old_magic[..4].copy_from_slice(b"BSZ1");
        assert!(frames(&old_magic).is_err());
        let mut huge = patch;
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(frames(&huge).is_err());
        assert!(frames(b"BSZ2").is_err());
    }

    /// The add stream read back through `SparseAdd` in pieces of `step`.
    fn read_back(runs: &[u8], values: &[u8], len: usize, step: usize) -> io::Result<Vec<u8>> {
        let mut reader = SparseAdd::new(Some(runs), values);
        let mut out = vec![0u8; len];
        for chunk in out.chunks_mut(step) {
            reader.fill(chunk)?;
        }
        reader.finish()?;
        Ok(out)
    }

    #[test]
    fn sparse_add_round_trips_in_any_pieces() {
        let mut long_run = vec![0u8; 70_000];
        long_run[0] = 9;
        long_run[69_998] = 0xff;
        let cases: [&[u8]; 7] = [
            b"",
            b"\0\0\0",
            b"\x01",
            b"\x01\x02\x03",
            b"\0\0\x05\0\x06\x07\0\0\0",
            b"\x80\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01",
            &long_run,
        ];
        for add in cases {
            let (runs, values) = sparse_add(add);
            assert_eq!(values.len(), add.iter().filter(|b| **b != 0).count());
            for step in [1, 2, 3, 7, 1 << 16, add.len().max(1)] {
                let back = read_back(&runs, &values, add.len(), step).unwrap();
                assert_eq!(back, add, "step {step}");
            }
        }
        // Trailing zeros cost nothing.
        assert_eq!(sparse_add(&[0, 4, 0, 0, 0, 0]), (vec![1], vec![4]));
        assert_eq!(sparse_add(&long_run).0, [0, 0xed, 0xa2, 0x04]);
    }

    #[test]
    fn sparse_add_refuses_short_long_and_non_canonical_streams() {
        let add = b"\0\0\x05\0\x06\x07\0";
        let (runs, values) = sparse_add(add);
        let len = add.len();
        // Streams that end early.
        assert!(read_back(&runs, &values[..2], len, 1).is_err());
        assert!(read_back(&runs[..2], &values, len, 1).is_err());
        // Bytes left over: a run or a value the records never reach.
        assert!(read_back(&runs, &values, len - 3, 2).is_err());
        assert!(read_back(&[&runs[..], &[0]].concat(), &values, len, 2).is_err());
        assert!(read_back(&runs, &[&values[..], &[1]].concat(), len, 2).is_err());
        // A zero value, and a runs varint cut short.
        assert!(read_back(&runs, b"\x05\0\x07", len, 1).is_err());
        assert!(read_back(&[2, 0x81], &[5, 6], 10, 10).is_err());
        let mut reader = SparseAdd::new(Some(&[0xffu8; 11][..]), &[1u8][..]);
        assert!(reader.fill(&mut [0u8; 4]).is_err());
    }

    #[test]
    fn without_runs_the_values_are_the_add_stream() {
        let add = b"\0\x03\0\0\x09";
        let mut reader = SparseAdd::new(None::<&[u8]>, &add[..]);
        let mut out = [0u8; 5];
        reader.fill(&mut out[..2]).unwrap();
        reader.fill(&mut out[2..]).unwrap();
        assert_eq!(&out, add);
        reader.finish().unwrap();
        // Short and long.
        let mut short = SparseAdd::new(None::<&[u8]>, &add[..3]);
        assert!(short.fill(&mut out).is_err());
        let mut long = SparseAdd::new(None::<&[u8]>, &add[..]);
        long.fill(&mut out[..4]).unwrap();
        assert!(long.finish().is_err());
    }
}
