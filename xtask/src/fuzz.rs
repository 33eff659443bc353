//! `cargo xtask fuzz [--seconds N] [--target NAME]`: runs every cargo-fuzz
//! target in fuzz/ for N seconds each and reports the executions.
//!
//! cargo-fuzz needs nightly compiler flags (sanitizers); on a stable
//! toolchain `RUSTC_BOOTSTRAP=1` unlocks them, so no second toolchain is
//! needed. The corpus grows under target/fuzz-corpus (not committed), seeded
//! from fuzz/seeds/ (small real files: a manifest, an index, signatures), so
//! short CI runs start from valid inputs instead of rediscovering JSON. A
//! crash fails the task and leaves the reproducer in fuzz/artifacts/.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, cargo, command_v, repo_root, target_dir};

/// Every target in fuzz/Cargo.toml, in the order they run.
pub const TARGETS: [&str; 7] = [
    "manifest_json",
    "index_json",
    "root_json",
    "minisign_signature",
    "safe_path",
    "bundle_reader",
    "symlink_tree",
];

pub fn run(seconds: u64, only: Option<&str>) -> Result<()> {
    ensure_cargo_fuzz()?;
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!(
            "no fuzz target {name:?}: the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    let root = repo_root();
    let mut report = Vec::new();
    for target in targets {
        let corpus = target_dir().join("fuzz-corpus").join(target);
        fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let seeds = root.join("fuzz/seeds").join(target);
        let mut command = cargo();
        command
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(root.join("fuzz"))
            .arg(target)
            .arg(&corpus);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.arg("--").args([
            format!("-max_total_time={seconds}"),
            "-max_len=65536".to_string(),
            "-print_final_stats=1".to_string(),
        ]);
        cmd::banner(&format!("fuzz: {target} for {seconds}s"));
        let started = Instant::now();
        let output = run_capturing(&mut command)?;
        let runs = executions(&output).unwrap_or(0);
        report.push((target, runs, started.elapsed().as_secs_f64()));
    }
    cmd::banner("fuzz: summary");
    for (target, runs, took) in &report {
        println!("{target:<20} {runs:>12} executions in {took:>6.1}s, no crash");
    }
    Ok(())
}

/// Runs the fuzzer with its output shown live and kept (libFuzzer writes its
/// statistics to stderr), failing with the reproducer's location on a crash.
fn run_capturing(command: &mut Command) -> Result<String> {
    println!("$ {}", cmd::display(command));
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", cmd::display(command)))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let tail: Vec<&str> = stderr.lines().rev().take(25).collect();
    for line in tail.iter().rev() {
        println!("  {line}");
    }
    if !output.status.success() {
        // The tail is libFuzzer's and cargo-fuzz's report; the panic message
        // that says what broke is further up.
        let lines: Vec<&str> = stderr.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("panicked at") {
                for context in &lines[i..(i + 2).min(lines.len())] {
                    eprintln!("  {context}");
                }
            }
        }
        bail!(
            "the fuzzer failed ({}): see the output above; a crashing input is kept in fuzz/artifacts/ and `cargo fuzz run <target> <file>` replays it",
            output.status
        );
    }
    Ok(stderr)
}

/// libFuzzer's `Done N runs in S second(s)` line.
fn executions(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let rest = line.strip_prefix("Done ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// cargo-fuzz comes from crates.io; as root it is installed on demand, like
/// every other test dependency (`cargo xtask deps`).
fn ensure_cargo_fuzz() -> Result<()> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(|h| Path::new(&h).join("bin/cargo-fuzz"))
        .filter(|p| p.exists());
    if command_v("cargo-fuzz").is_some() || cargo_bin.is_some() {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!("cargo-fuzz is missing: cargo install --locked cargo-fuzz");
    }
    cmd::run(cargo().args(["install", "--locked", "cargo-fuzz"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_run_counts() {
        let log = "#1024 pulse\nDone 123456 runs in 10 second(s)\nstat::number_of_executed_units: 123456\n";
        assert_eq!(executions(log), Some(123456));
        assert_eq!(executions("crashed"), None);
    }

    #[test]
    fn every_target_is_declared_in_the_fuzz_crate() {
        let manifest = fs::read_to_string(repo_root().join("fuzz/Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} missing from fuzz/Cargo.toml"
            );
            assert!(repo_root()
                .join(format!("fuzz/fuzz_targets/{target}.rs"))
                .exists());
        }
    }
}
