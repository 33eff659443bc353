//! `cargo xtask dist [--target musl|gnu]`: the binaries ferry ships.
//!
//! `ferry` runs on every node, whatever its libc, so it is linked statically
//! (musl by default) with the size-first `dist` profile; its size is reported
//! because it is downloaded by every machine of a fleet. It is built three
//! times: `ferry-node` without the default `coordinator` feature (what a
//! node that is only ever updated needs: no `ferry rollout`, no HTTP API or
//! dashboard), `ferry` with it, and `ferry-x509` with the `x509` feature too
//! (CMS signatures with X.509 chains, which links a vendored OpenSSL: fleets
//! that do not use X.509 should not download it). Each has its own size
//! budget. `ferry-publish` runs on one build machine and is a normal
//! release build for the host.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::{self, cargo, command_v, size_text, target_dir};
use crate::deps::MUSL_TARGET;

const GNU_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Above this the node-only applier is getting heavy for a fleet-wide
/// download.
const NODE_ONLY_SIZE_BUDGET: u64 = 3 * 1024 * 1024;
/// The same for `ferry` with the coordinator.
const SIZE_BUDGET: u64 = 4 * 1024 * 1024;
/// The same for `ferry-x509`, which carries OpenSSL's libcrypto.
const X509_SIZE_BUDGET: u64 = 8 * 1024 * 1024;

/// Link flags of the musl builds. A static-pie binary relocates itself at
/// start; packed relative relocations (DT_RELR, which the musl 1.2.5 Rust
/// links understands) say the same as the usual 24 bytes per pointer in a
/// bitmap: 114 KiB of relocations became 1.4 KiB in `ferry-node`, and
/// 681 KiB became 9 KiB in `ferry-x509` (OpenSSL's tables of pointers).
/// The binary stays position-independent, so ASLR is unchanged. A GNU ld
/// older than 2.38 ignores the option with a warning.
const MUSL_RUSTFLAGS: &str = "-C link-arg=-Wl,-z,pack-relative-relocs";
/// C flags of the musl builds (OpenSSL in `ferry-x509`, zstd, ring's C): no
/// unwind tables for C code. With `panic = "abort"` nothing unwinds through
/// a C frame, so the tables only cost space (434 KiB of `ferry-x509`, most
/// of it OpenSSL's). The code itself is compiled the same.
const MUSL_CFLAGS: &str = "-fno-asynchronous-unwind-tables";

/// One build of the `ferry` binary: its file name in target/dist/, how it
/// is built, and its size budget.
struct Variant {
    name: &'static str,
    features: Features,
    budget: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Features {
    /// `--no-default-features`: the node alone.
    NodeOnly,
    /// The default features: node and coordinator.
    Default,
    /// `--features x509` on top of the defaults.
    X509,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "ferry-node",
        features: Features::NodeOnly,
        budget: NODE_ONLY_SIZE_BUDGET,
    },
    Variant {
        name: "ferry",
        features: Features::Default,
        budget: SIZE_BUDGET,
    },
    Variant {
        name: "ferry-x509",
        features: Features::X509,
        budget: X509_SIZE_BUDGET,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Libc {
    Musl,
    Gnu,
}

pub struct Dist {
    /// `ferry` without the coordinator.
    pub ferry_node: PathBuf,
    pub ferry: PathBuf,
    /// `ferry` with the `x509` feature.
    pub ferry_x509: PathBuf,
    pub ferry_publish: PathBuf,
}

pub fn run(requested: Option<Libc>) -> Result<Dist> {
    cmd::banner("dist: building release binaries");
    let libc = match (requested, musl_unusable_reason()) {
        (Some(Libc::Gnu), _) => Libc::Gnu,
        (_, None) => Libc::Musl,
        (Some(Libc::Musl), Some(reason)) => {
            bail!("{reason}: run `cargo xtask deps`, or build with `--target gnu`")
        }
        (None, Some(reason)) => {
            eprintln!("WARNING: {reason}; falling back to a static glibc build");
            eprintln!("WARNING: run `cargo xtask deps` to get the musl build ferry normally ships");
            Libc::Gnu
        }
    };

    let triple = match libc {
        Libc::Musl => MUSL_TARGET,
        Libc::Gnu => GNU_TARGET,
    };
    let out = target_dir().join("dist");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // The variants build into the same target directory, one after the
    // other, so each is copied out before the next replaces it.
    let mut built = Vec::new();
    for variant in &VARIANTS {
        build_ferry(libc, triple, variant.features)?;
        built.push(install(
            &target_dir().join(triple).join("dist/ferry"),
            &out.join(variant.name),
        )?);
    }
    cmd::run(cargo().args(["build", "-p", "ferry-publish", "--release"]))?;

    let ferry_publish = install(
        &target_dir().join("release/ferry-publish"),
        &out.join("ferry-publish"),
    )?;

    cmd::banner("dist: result");
    let mut problems = Vec::new();
    for (variant, binary) in VARIANTS.iter().zip(&built) {
        let (name, budget) = (variant.name, variant.budget);
        let size = std::fs::metadata(binary)?.len();
        let linkage = linkage(&std::fs::read(binary)?);
        println!("{name:<15}{}", binary.display());
        println!(
            "  size         {} (budget {})",
            size_text(size),
            size_text(budget)
        );
        println!("  target       {triple}");
        println!("  linkage      {linkage}");
        if !linkage.starts_with("static") {
            problems.push(format!(
                "{} is not statically linked ({linkage}); it would not run on nodes with another libc",
                binary.display()
            ));
        }
        if size >= budget {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!(
                "!! WARNING: {name} is {} — at or above its {} budget.",
                size_text(size),
                size_text(budget)
            );
            eprintln!(
                "!! Every node downloads it: look for new dependencies or features (cargo bloat)."
            );
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
        }
    }
    println!("ferry-publish  {}", ferry_publish.display());
    if libc == Libc::Gnu {
        println!(
            "note: a static glibc binary still loads NSS modules at run time for host name lookups"
        );
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let [ferry_node, ferry, ferry_x509] =
        <[PathBuf; 3]>::try_from(built).map_err(|_| anyhow::anyhow!("one binary per variant"))?;
    Ok(Dist {
        ferry_node,
        ferry,
        ferry_x509,
        ferry_publish,
    })
}

/// `cargo build -p ferry --profile dist --target TRIPLE` with `features`.
fn build_ferry(libc: Libc, triple: &str, features: Features) -> Result<()> {
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "ferry",
        "--profile",
        "dist",
        "--target",
        triple,
    ]);
    match features {
        Features::NodeOnly => {
            build.arg("--no-default-features");
        }
        Features::Default => {}
        Features::X509 => {
            build.args(["--features", "x509"]);
        }
    }
    if features == Features::X509 {
        // openssl-src configures OpenSSL with perl and builds it with make.
        for tool in ["perl", "make"] {
            if command_v(tool).is_none() {
                bail!("{tool} is missing and the vendored OpenSSL of ferry-x509 needs it: run `cargo xtask deps`");
            }
        }
        // OpenSSL's C must be compiled for the target's libc: musl-gcc for
        // musl (the cc crate's fallback too, made explicit here so a
        // cross-compiler on PATH cannot be picked instead).
        let cc_var = format!("CC_{}", triple.replace('-', "_"));
        if libc == Libc::Musl && std::env::var_os(&cc_var).is_none() {
            build.env(&cc_var, "musl-gcc");
        }
    }
    // An explicit --target keeps these flags away from build scripts and
    // proc macros, which run on the build machine.
    let existing = std::env::var("RUSTFLAGS").unwrap_or_default();
    let flags = match libc {
        // Static glibc: build scripts and proc macros must stay dynamically
        // linked to the host libc, hence only here.
        Libc::Gnu => "-C target-feature=+crt-static",
        Libc::Musl => MUSL_RUSTFLAGS,
    };
    build.env("RUSTFLAGS", format!("{existing} {flags}").trim_start());
    if libc == Libc::Musl {
        let cflags_var = format!("CFLAGS_{}", triple.replace('-', "_"));
        let existing = std::env::var(&cflags_var).unwrap_or_default();
        build.env(
            &cflags_var,
            format!("{existing} {MUSL_CFLAGS}").trim_start(),
        );
    }
    let what = match features {
        Features::NodeOnly => "ferry with --no-default-features",
        Features::Default => "ferry",
        Features::X509 => "ferry with --features x509",
    };
    cmd::run(&mut build).with_context(|| match libc {
        Libc::Musl => format!("the musl build of {what} failed; if it is a linker or C compiler error, try `cargo xtask dist --target gnu`"),
        Libc::Gnu => format!("the static glibc build of {what} failed"),
    })
}

/// Why the musl build cannot work on this machine, if it cannot.
fn musl_unusable_reason() -> Option<String> {
    let Some(sysroot) = cmd::probe(rustc().args(["--print", "sysroot"])) else {
        return Some("`rustc --print sysroot` failed, so the installed targets are unknown".into());
    };
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(MUSL_TARGET)
        .is_dir()
    {
        return Some(format!("the Rust target {MUSL_TARGET} is not installed"));
    }
    if command_v("musl-gcc").is_none() {
        return Some(
            "musl-gcc (Debian package musl-tools) is missing, and zstd/ring need it to compile C"
                .into(),
        );
    }
    None
}

fn rustc() -> std::process::Command {
    std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

/// Copies a built binary into target/dist/, replacing (not overwriting in
/// place) an older copy so a running binary never sees its file change.
fn install(from: &Path, to: &Path) -> Result<PathBuf> {
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(to.to_path_buf())
}

/// "static" or "dynamic (...)" from the ELF program headers: a binary is
/// dynamically linked exactly when it names a loader in a PT_INTERP header.
/// Reading that is a few lines, and does not depend on `file` being there.
pub fn linkage(elf: &[u8]) -> String {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    // ELF magic, 64-bit class, little-endian: what x86_64 Linux produces.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return "unknown (not a 64-bit little-endian ELF file)".into();
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return "unknown (truncated ELF header)".into();
    };
    for i in 0..phnum {
        let header = phoff + i * phentsize;
        if u32_at(header) == Some(PT_INTERP) {
            let interp = match (u64_at(header + 8), u64_at(header + 32)) {
                (Some(off), Some(len)) => elf.get(off..off + len).map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_end_matches('\0')
                        .to_string()
                }),
                _ => None,
            };
            return format!("dynamic (loader {})", interp.unwrap_or_else(|| "?".into()));
        }
    }
    "static (no PT_INTERP program header)".into()
}

#[cfg(test)]
mod tests {
    use super::linkage;

    /// A minimal ELF64 header with `headers` program headers of the given types.
    fn elf(headers: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * headers.len() + 16];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        let tail = (64 + 56 * headers.len()) as u64;
        for (i, &t) in headers.iter().enumerate() {
            let h = 64 + 56 * i;
            b[h..h + 4].copy_from_slice(&t.to_le_bytes());
            b[h + 8..h + 16].copy_from_slice(&tail.to_le_bytes());
            b[h + 32..h + 40].copy_from_slice(&8u64.to_le_bytes());
        }
        let t = tail as usize;
        b[t..t + 8].copy_from_slice(b"/ld.so\0\0");
        b
    }

    #[test]
    fn pt_interp_means_dynamic() {
        assert_eq!(linkage(&elf(&[6, 3, 1])), "dynamic (loader /ld.so)");
        assert!(linkage(&elf(&[1, 1, 2])).starts_with("static"));
        assert!(linkage(b"#!/bin/sh\n").starts_with("unknown"));
    }

    #[test]
    fn this_test_binary_is_classified() {
        // Whatever the host links like, the answer must be a definite one.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let l = linkage(&me);
        assert!(l.starts_with("static") || l.starts_with("dynamic"), "{l}");
    }
}
