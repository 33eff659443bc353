//! `cargo xtask test`: the one command that runs every check ferry has.
//!
//! Dependencies come first (installed when root) because the interop tests
//! need minisign and zstd and a test suite that skips what it cannot run
//! proves nothing. After that every step runs even if an earlier one failed,
//! so one CI run shows all problems at once; any failure fails the task.
//! The environment (notably CI) is passed through untouched to the tests.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::{self, cargo};
use crate::{deps, fuzz, lint_workflows};

/// One check; each runs whether or not the previous one passed.
type Step = fn() -> Result<()>;

pub fn run() -> Result<()> {
    let started = Instant::now();
    deps::run(deps::Mode::Ensure)?;
    println!(
        "CI={}",
        std::env::var("CI").unwrap_or_else(|_| "(unset)".into())
    );

    let steps: [(&str, Step); 5] = [
        ("rustfmt", rustfmt),
        ("clippy", clippy),
        ("workflow lint", lint_workflows::run),
        ("cargo test", cargo_test),
        ("fuzz (short)", short_fuzz),
    ];
    let mut results: Vec<(&str, Duration, Result<()>)> = Vec::new();
    for (name, step) in &steps {
        cmd::banner(&format!("test: {name}"));
        let t = Instant::now();
        let result = step();
        if let Err(e) = &result {
            eprintln!("FAILED: {name}: {e:#}");
        }
        results.push((name, t.elapsed(), result));
    }

    cmd::banner("test: summary");
    for (name, took, result) in &results {
        let verdict = if result.is_ok() { "ok    " } else { "FAILED" };
        println!("{verdict} {name:<14} {:>7.1}s", took.as_secs_f64());
    }
    println!("total {:.1}s", started.elapsed().as_secs_f64());
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.2.is_err())
        .map(|r| r.0)
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} step(s) failed: {}; scroll up to the FAILED lines (`cargo fmt --all` fixes formatting)",
            failed.len(),
            failed.join(", ")
        );
    }
    println!("all checks passed");
    Ok(())
}

fn rustfmt() -> Result<()> {
    cmd::run(cargo().args(["fmt", "--all", "--", "--check"]))
}

fn clippy() -> Result<()> {
    cmd::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn cargo_test() -> Result<()> {
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    // pip may have put Schemathesis where PATH does not look (~/.local/bin):
    // the API conformance test is told where it is.
    if let Some(st) = crate::deps::find_pip_tool(crate::deps::SCHEMATHESIS) {
        test.env("FERRY_SCHEMATHESIS", st);
    }
    cmd::run(&mut test)
}

/// Every fuzz target for a few seconds: long enough to catch a parser that
/// panics on the first mutations of the seeds, short enough for every run.
/// Longer runs: `cargo xtask fuzz --seconds 600`.
fn short_fuzz() -> Result<()> {
    fuzz::run(SHORT_FUZZ_SECONDS, None)
}

const SHORT_FUZZ_SECONDS: u64 = 15;
