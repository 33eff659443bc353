//! The corpus of `cargo xtask bench deltas`: pairs of (old, new) files.
//!
//! - Consecutive crates.io releases of real Rust command-line tools, built
//!   with `cargo install --locked --version X`, each pair as built
//!   (unstripped: symbols and debug info) and stripped. Real "next
//!   versions" are what ferry ships, and the two variants stress different
//!   things: stripped files are almost all code and data whose embedded
//!   addresses shift, unstripped ones are mostly debug sections.
//! - One synthetic pair of at least 100 MiB made from real machine code (the
//!   largest shared libraries on this machine, concatenated) and a seeded,
//!   deterministic "next build" of it: scattered insertions and deletions,
//!   and regions whose 4-byte displacement-like words shifted. It is the
//!   pair for the apply-time target, which real tools this size would take
//!   too long to build.
//!
//! Everything lives under `target/bench-corpus` and is built only when
//! missing (the `cargo install` builds share one CARGO_TARGET_DIR there, so
//! dependency builds are reused between versions). Nothing is committed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::MIB;
use crate::cmd;

/// A crates.io tool and two consecutive releases of it.
pub struct Tool {
    pub krate: &'static str,
    pub bin: &'static str,
    pub old: &'static str,
    pub new: &'static str,
}

/// Chosen to build in a few minutes each on 2 cores and to be real,
/// consecutive releases with ordinary amounts of change.
pub const TOOLS: [Tool; 3] = [
    Tool {
        krate: "ripgrep",
        bin: "rg",
        old: "14.1.0",
        new: "14.1.1",
    },
    Tool {
        krate: "fd-find",
        bin: "fd",
        old: "10.1.0",
        new: "10.2.0",
    },
    Tool {
        krate: "hyperfine",
        bin: "hyperfine",
        old: "1.18.0",
        new: "1.19.0",
    },
];

/// The synthetic pair is at least this large.
pub const SYNTHETIC_MIN: u64 = 100 * MIB;
/// Seed of the synthetic pair's edits: changing it changes the corpus.
const SYNTHETIC_SEED: u64 = 0x00fe_44de_17a5;

/// One (old, new) pair of files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub name: String,
    pub old: PathBuf,
    pub new: PathBuf,
    /// Whether this pair is one of the tool's executables (for the
    /// multi-file release).
    pub tool: Option<&'static str>,
}

impl Pair {
    pub fn new_size(&self) -> u64 {
        fs::metadata(&self.new).map_or(0, |m| m.len())
    }
}

pub struct Corpus {
    pub pairs: Vec<Pair>,
    /// Seconds spent building what was missing (0 when all was cached).
    pub build_secs: f64,
    /// Where the synthetic pair's bytes came from.
    pub synthetic_sources: Vec<PathBuf>,
}

pub fn dir() -> PathBuf {
    crate::cmd::target_dir().join("bench-corpus")
}

/// Builds whatever is missing and returns every pair, tools first.
pub fn ensure(with_synthetic: bool) -> Result<Corpus> {
    let root = dir();
    fs::create_dir_all(&root)?;
    let started = Instant::now();
    let mut built_anything = false;
    let mut pairs = Vec::new();
    for tool in &TOOLS {
        let old = install(&root, tool, tool.old, &mut built_anything)?;
        let new = install(&root, tool, tool.new, &mut built_anything)?;
        let name = format!("{} {}->{}", tool.bin, tool.old, tool.new);
        let pair_dir = root
            .join("pairs")
            .join(format!("{}-{}-{}", tool.bin, tool.old, tool.new));
        for stripped in [false, true] {
            let dir = pair_dir.join(if stripped { "stripped" } else { "unstripped" });
            let pair = Pair {
                name: format!(
                    "{name} {}",
                    if stripped { "stripped" } else { "unstripped" }
                ),
                old: dir.join("old"),
                new: dir.join("new"),
                tool: Some(tool.bin),
            };
            if !(pair.old.is_file() && pair.new.is_file()) {
                built_anything = true;
                fs::create_dir_all(&dir)?;
                for (from, to) in [(&old, &pair.old), (&new, &pair.new)] {
                    if stripped {
                        cmd::run(Command::new("strip").arg("-o").arg(to).arg(from))
                            .context("strip failed (Debian package binutils)")?;
                    } else {
                        fs::copy(from, to)?;
                    }
                }
            }
            pairs.push(pair);
        }
    }
    let mut synthetic_sources = Vec::new();
    if with_synthetic {
        let dir = root.join("pairs").join("synthetic");
        let pair = Pair {
            name: "synthetic >=100 MiB (real .so code, seeded edits)".into(),
            old: dir.join("old"),
            new: dir.join("new"),
            tool: None,
        };
        let sources_file = dir.join("sources.txt");
        if !(pair.old.is_file() && pair.new.is_file() && sources_file.is_file()) {
            built_anything = true;
            fs::create_dir_all(&dir)?;
            let sources = machine_code_sources(SYNTHETIC_MIN)?;
            cmd::banner("bench deltas: building the synthetic pair");
            let mut old = Vec::new();
            while (old.len() as u64) < SYNTHETIC_MIN {
                for source in &sources {
                    old.extend_from_slice(
                        &fs::read(source)
                            .with_context(|| format!("cannot read {}", source.display()))?,
                    );
                }
            }
            let new = next_build(&old, SYNTHETIC_SEED);
            fs::write(&pair.old, &old)?;
            fs::write(&pair.new, &new)?;
            let listed: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
            fs::write(&sources_file, listed.join("\n") + "\n")?;
        }
        synthetic_sources = fs::read_to_string(&sources_file)?
            .lines()
            .map(PathBuf::from)
            .collect();
        pairs.push(pair);
    }
    let build_secs = if built_anything {
        started.elapsed().as_secs_f64()
    } else {
        0.0
    };
    Ok(Corpus {
        pairs,
        build_secs,
        synthetic_sources,
    })
}

/// `cargo install --locked --version V --root DIR CRATE`, unless DIR already
/// holds the binary; returns the binary's path.
fn install(root: &Path, tool: &Tool, version: &str, built: &mut bool) -> Result<PathBuf> {
    let dest = root
        .join("install")
        .join(format!("{}-{version}", tool.krate));
    let bin = dest.join("bin").join(tool.bin);
    if bin.is_file() {
        return Ok(bin);
    }
    *built = true;
    // Installed into a side directory and renamed, so an interrupted build
    // is never mistaken for a finished one.
    let part = root
        .join("install")
        .join(format!("{}-{version}.part", tool.krate));
    cmd::banner(&format!(
        "bench deltas: cargo install {} {version}",
        tool.krate
    ));
    let mut install = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    install
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("cargo-target"))
        .args(["install", "--locked", "--version", version, "--root"])
        .arg(&part)
        .arg(tool.krate);
    cmd::run(&mut install).with_context(|| {
        format!(
            "building {} {version} from crates.io failed (network? a yanked version?)",
            tool.krate
        )
    })?;
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&part, &dest)?;
    ensure!(
        bin.is_file(),
        "{} is missing after cargo install",
        bin.display()
    );
    Ok(bin)
}

/// The largest ELF shared libraries on this machine, largest first, until
/// they add up to `min` bytes (or all of them, repeated by the caller).
fn machine_code_sources(min: u64) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Regular files only: the versioned symlinks name the same bytes.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() && name.contains(".so") && is_elf(&path) {
                found.push((meta.len(), path));
            }
        }
    }
    ensure!(
        !found.is_empty(),
        "no shared libraries found under /usr/lib to build the synthetic pair from"
    );
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut total = 0;
    let mut sources = Vec::new();
    for (size, path) in found {
        if total >= min {
            break;
        }
        total += size;
        sources.push(path);
    }
    Ok(sources)
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// A deterministic "next build" of `old`: every 256 KiB-1 MiB, one edit —
/// an insertion of 16 B-4 KiB of code taken from elsewhere in the file, a
/// deletion of 16 B-4 KiB, or a 4-64 KiB region whose displacement-like
/// 4-byte words (aligned, non-zero, |value| < 2^24) all moved by the same
/// amount, as a relinked call/jump table or relocation block does.
pub fn next_build(old: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = seed;
    let mut next = move |bound: u64| super::splitmix64(&mut rng) % bound.max(1);
    let mut new = Vec::with_capacity(old.len() + old.len() / 64);
    let mut pos = 0usize;
    while pos < old.len() {
        let gap = (256 * 1024 + next(768 * 1024)) as usize;
        let end = (pos + gap).min(old.len());
        new.extend_from_slice(&old[pos..end]);
        pos = end;
        if pos >= old.len() {
            break;
        }
        let len = 16 + next(4080) as usize;
        match next(3) {
            0 => {
                let from = next((old.len() - len) as u64) as usize;
                new.extend_from_slice(&old[from..from + len]);
            }
            1 => pos = (pos + len).min(old.len()),
            _ => {
                let region = (4096 + next(60 * 1024)) as usize;
                let end = (pos + region).min(old.len());
                let shift = 16 + next(4080) as i32;
                let start = new.len();
                new.extend_from_slice(&old[pos..end]);
                let aligned = start + (4 - start % 4) % 4;
                for word in new[aligned..].chunks_exact_mut(4) {
                    let value = i32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    if value != 0 && value.unsigned_abs() < 1 << 24 {
                        word.copy_from_slice(&value.wrapping_add(shift).to_le_bytes());
                    }
                }
                pos = end;
            }
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_build_is_deterministic_and_mostly_the_old_bytes() {
        let old: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let a = next_build(&old, 1);
        assert_eq!(a, next_build(&old, 1));
        assert_ne!(a, next_build(&old, 2));
        assert_ne!(a, old);
        let diff = a.len().abs_diff(old.len());
        assert!(diff < old.len() / 100, "{} vs {}", a.len(), old.len());
        // The first 256 KiB are never edited.
        assert_eq!(a[..256 * 1024], old[..256 * 1024]);
    }
}
