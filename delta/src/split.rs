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
//! magic          4 bytes "BSZ1"
//! control_len    u64 little-endian: bytes of the control frame
//! add_len        u64 little-endian: bytes of the add frame
//! copy_len       u64 little-endian: bytes of the copy frame
//! control frame  zstd frame: records (add, copy, seek), each three varints:
//!                add and copy as unsigned LEB128, seek zigzag-encoded
//! add frame      zstd frame: every record's add bytes, concatenated
//! copy frame     zstd frame, compressed with the base as a raw-content
//!                prefix: every record's copy bytes, concatenated
//! ```
//!
//! Nothing may follow the copy frame. Applying: a base cursor starts at 0;
//! for each record, `add` bytes are each the next add-stream byte plus
//! (wrapping) the base byte at the cursor, the cursor advancing; then `copy`
//! bytes come from the copy stream; then `seek` moves the cursor. A record
//! that reads outside the base, or streams that end early or have bytes
//! left over, make the patch invalid.

use std::io::{self, Read};

pub const MAGIC: [u8; 4] = *b"BSZ1";
pub const HEADER_LEN: usize = 4 + 3 * 8;

/// One record of the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub add: u64,
    pub copy: u64,
    pub seek: i64,
}

/// The three frames of a patch, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct Frames<'a> {
    pub control: &'a [u8],
    pub add: &'a [u8],
    pub copy: &'a [u8],
}

/// Header and frames, in order.
pub fn assemble(control: &[u8], add: &[u8], copy: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + control.len() + add.len() + copy.len());
    out.extend_from_slice(&MAGIC);
    for frame in [control, add, copy] {
        out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    }
    for frame in [control, add, copy] {
        out.extend_from_slice(frame);
    }
    out
}

/// Splits a patch into its frames, checking the header and that the
/// lengths add up to exactly the patch.
pub fn frames(patch: &[u8]) -> io::Result<Frames<'_>> {
    if patch.len() < HEADER_LEN || patch[..4] != MAGIC {
        return Err(invalid("not a bidiff-split-zstd patch (bad magic)"));
    }
    let len = |i: usize| {
        let bytes: [u8; 8] = patch[4 + 8 * i..12 + 8 * i].try_into().expect("8 bytes");
        u64::from_le_bytes(bytes)
    };
    let (control, add, copy) = (len(0), len(1), len(2));
    let body = (patch.len() - HEADER_LEN) as u64;
    let total = control.checked_add(add).and_then(|n| n.checked_add(copy));
    if total != Some(body) {
        return Err(invalid(
            "bidiff-split-zstd frame lengths do not match the patch size",
        ));
    }
    let (control, add) = (control as usize, add as usize);
    let rest = &patch[HEADER_LEN..];
    Ok(Frames {
        control: &rest[..control],
        add: &rest[control..control + add],
        copy: &rest[control + add..],
    })
}

pub fn write_record(out: &mut Vec<u8>, record: &Record) {
    write_varint(out, record.add);
    write_varint(out, record.copy);
    write_varint(out, zigzag(record.seek));
}

/// The next record, or `None` at a clean end of the stream.
pub fn read_record(control: &mut impl Read) -> io::Result<Option<Record>> {
    let Some(add) = read_varint(control, true)? else {
        return Ok(None);
    };
    let copy = read_varint(control, false)?.expect("required");
    let seek = unzigzag(read_varint(control, false)?.expect("required"));
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
/// ends before its first byte.
fn read_varint(input: &mut impl Read, end_ok: bool) -> io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        if let Err(e) = input.read_exact(&mut byte) {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof if i == 0 && end_ok => Ok(None),
                io::ErrorKind::UnexpectedEof => Err(invalid("control stream ends inside a record")),
                _ => Err(e),
            };
        }
        let bits = u64::from(byte[0] & 0x7f);
        if i == 9 && byte[0] > 1 {
            return Err(invalid("control stream varint overflows 64 bits"));
        }
        value |= bits << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(invalid("control stream varint overflows 64 bits"))
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
        assert!(read_varint(&mut &[0xffu8; 11][..], false).is_err());
    }

    #[test]
    fn frames_must_fill_the_patch_exactly() {
        let patch = assemble(b"ctl", b"ad", b"copy");
        let f = frames(&patch).unwrap();
        assert_eq!(
            (f.control, f.add, f.copy),
            (&b"ctl"[..], &b"ad"[..], &b"copy"[..])
        );
        assert!(frames(&patch[..patch.len() - 1]).is_err());
        let mut longer = patch.clone();
        longer.push(0);
        assert!(frames(&longer).is_err());
        let mut bad_magic = patch.clone();
        bad_magic[0] = b'X';
        assert!(frames(&bad_magic).is_err());
        let mut huge = patch;
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(frames(&huge).is_err());
        assert!(frames(b"BSZ1").is_err());
    }
}
