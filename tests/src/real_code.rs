//! Real machine code as release content, for the delta tests.
//!
//! Deltas exist for large executables that change a little between builds,
//! so the tests diff real ELF files of the system rather than synthetic
//! bytes, and derive each "next build" deterministically with the kinds of
//! edits a rebuild makes: shifted addresses, inserted code and text, a
//! deleted range.

use std::fs;
use std::path::Path;

/// A real executable of a few hundred KiB (tar is an essential package on
/// Debian, so it is on every machine the tests run on).
pub fn small_binary() -> Vec<u8> {
    first_existing(&["/usr/bin/tar", "/bin/tar"])
}

/// A real multi-MB ELF: the C library every test machine runs on.
pub fn large_binary() -> Vec<u8> {
    first_existing(&[
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/bin/gdb",
    ])
}

fn first_existing(candidates: &[&str]) -> Vec<u8> {
    candidates
        .iter()
        .find_map(|p| fs::read(Path::new(p)).ok())
        .unwrap_or_else(|| panic!("none of {candidates:?} exists on this machine"))
}

/// A plausible next build of `original`: a constant added to every 64th
/// little-endian word of the middle third (code that moved, so addresses
/// changed), inserted text and code (shifting everything after them) and a
/// deleted range. `seed` varies every edit.
pub fn next_build(original: &[u8], seed: u32) -> Vec<u8> {
    let mut out = original.to_vec();
    let n = out.len();
    for i in (n / 3..2 * n / 3).step_by(64) {
        if i + 4 <= n {
            let word = u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
            out[i..i + 4].copy_from_slice(&word.wrapping_add(0x1000 * seed).to_le_bytes());
        }
    }
    let deleted = n * 3 / 4 + seed as usize * 100;
    out.drain(deleted..deleted + 300);
    let code = original[1000 + seed as usize * 500..3000 + seed as usize * 500].to_vec();
    out.splice(n / 2..n / 2, code);
    let text = format!("ferry build {seed} of the test binary\0").repeat(8);
    out.splice(n / 5..n / 5, text.into_bytes());
    out
}

/// A configuration file of a few KiB in which one line changes per build.
pub fn config(build: u32) -> Vec<u8> {
    (0..300)
        .map(|i| format!("option_{i} = \"{}\"\n", i * 7919 % 1000))
        .chain([format!("threads = {}\n", 4 * (build + 1))])
        .collect::<String>()
        .into_bytes()
}

/// `data` with its first `build` thirds moved to the end: the same bytes in
/// another order, the case zstd's patch-from mode encodes best.
pub fn reordered(data: &[u8], build: u32) -> Vec<u8> {
    let cut = data.len() / 3 * (build as usize % 3);
    [&data[cut..], &data[..cut]].concat()
}
