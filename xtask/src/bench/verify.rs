//! `cargo xtask bench verify`: what trust costs per update on a node.
//!
//! Builds a small real repository with the release `ferry-publish`: three
//! minisign keys, index and manifest signed by two of them, and a detached
//! CMS signature by a leaf (codeSigning) certificate issued through an
//! intermediate by a root CA, all made with the real `openssl` CLI. Then the
//! applier's own code (the `verify_timing` example, built with the `x509`
//! feature) times, in process:
//!
//! - index + manifest with a 2-of-3 minisign threshold (goal ≤ 1 ms), and
//! - the CMS signature over index.json, chain to the pinned root (goal
//!   ≤ 50 ms),
//!
//! and `openssl cms -verify` checks the same signature as a peer. The peer
//! is a whole process (startup, loading the CA file), so the ratio overstates
//! ferry's advantage on the verification itself; both figures are printed
//! so the reader can see that. Nothing is written to the docs.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Args as ClapArgs;

use super::{Binaries, Scratch};
use crate::cmd::{self, cargo, target_dir};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Timed calls per measurement (the median is reported).
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// `openssl cms -verify` processes to time.
    #[arg(long, default_value_t = 30)]
    pub peer_runs: usize,
}

const MINISIGN_GOAL_US: f64 = 1_000.0;
const CMS_GOAL_US: f64 = 50_000.0;

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.runs > 0 && args.peer_runs > 0,
        "--runs and --peer-runs must be at least 1"
    );
    let bins = Binaries::build()?;
    let scratch = Scratch::create(None, "bench-verify", 64 << 20)?;
    let work = scratch.path();
    let pki = make_pki(work)?;

    cmd::banner("bench verify: a repository signed 2-of-3 and by X.509");
    let input = work.join("input");
    fs::create_dir_all(input.join("bin"))?;
    fs::copy("/usr/bin/true", input.join("bin/app")).context("cannot copy /usr/bin/true")?;
    fs::write(input.join("config.toml"), "port = 8080\n")?;
    let mut keys = Vec::new();
    for n in 1..=3 {
        let secret = work.join(format!("k{n}.key"));
        let public = work.join(format!("k{n}.pub"));
        cmd::run(
            Command::new(&bins.publish)
                .arg("keygen")
                .arg("--secret-key")
                .arg(&secret)
                .arg("--public-key")
                .arg(&public),
        )?;
        keys.push((secret, public));
    }
    let repo = work.join("repo");
    cmd::run(
        Command::new(&bins.publish)
            .args(["release", "--repo"])
            .arg(&repo)
            .arg("--key")
            .arg(&keys[0].0)
            .arg("--key")
            .arg(&keys[1].0)
            .args(["--version", "1.0.0", "--channel", "stable"])
            .arg("--x509-cert")
            .arg(work.join("leaf.pem"))
            .arg("--x509-key")
            .arg(work.join("leaf.key"))
            .arg("--x509-chain")
            .arg(work.join("intermediate.pem"))
            .arg(&input),
    )?;

    cmd::banner("bench verify: ferry (in process, x509 build)");
    let mut timing = cargo();
    timing
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "ferry-node",
            "--features",
            "x509",
            "--example",
            "verify_timing",
            "--target-dir",
        ])
        .arg(target_dir().join("x509"))
        .arg("--")
        .arg(&repo)
        .arg("1.0.0")
        .arg(&pki)
        .arg(args.runs.to_string());
    for (_, public) in &keys {
        timing.arg(public);
    }
    println!("$ {}", cmd::display(&timing));
    let output = timing
        .output()
        .context("cannot run the verify_timing example")?;
    ensure!(
        output.status.success(),
        "verify_timing failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "verify_timing printed {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);

    cmd::banner("bench verify: openssl cms -verify (peer, whole process)");
    let mut peer = Vec::new();
    for _ in 0..args.peer_runs {
        let mut verify = Command::new("openssl");
        verify
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(repo.join("index.json.p7s"))
            .arg("-content")
            .arg(repo.join("index.json"))
            .arg("-CAfile")
            .arg(&pki)
            .args(["-purpose", "any", "-out", "/dev/null"]);
        let started = Instant::now();
        let out = verify.output().context("cannot run openssl")?;
        peer.push(started.elapsed().as_secs_f64() * 1e6);
        ensure!(
            out.status.success(),
            "openssl cms -verify rejected ferry's signature: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    peer.sort_by(f64::total_cmp);
    let peer_median = peer[peer.len() / 2];
    // What an openssl process costs doing nothing: subtracting it from the
    // peer's figure approximates the verification itself.
    let mut startup = Vec::new();
    for _ in 0..args.peer_runs {
        let started = Instant::now();
        Command::new("openssl")
            .arg("version")
            .output()
            .context("cannot run openssl")?;
        startup.push(started.elapsed().as_secs_f64() * 1e6);
    }
    startup.sort_by(f64::total_cmp);
    let startup_median = startup[startup.len() / 2];
    let peer_work = (peer_median - startup_median).max(1.0);

    let minisign = number("minisign_2of3_median_us");
    let cms = number("cms_median_us");
    cmd::banner("bench verify: results (medians)");
    println!(
        "runs: {} in process, {} openssl processes; loadavg {}",
        args.runs,
        args.peer_runs,
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{:<44} {:>10}  {:>10}  goal", "check", "median", "min");
    println!(
        "{:<44} {:>8.1}µs  {:>8.1}µs  ≤ 1 ms: {}",
        "index + manifest, minisign 2-of-3",
        minisign,
        number("minisign_2of3_min_us"),
        verdict(minisign <= MINISIGN_GOAL_US)
    );
    println!(
        "{:<44} {:>8.1}µs  {:>8.1}µs  ≤ 50 ms: {}",
        "index.json CMS, leaf + intermediate -> root",
        cms,
        number("cms_min_us"),
        verdict(cms <= CMS_GOAL_US)
    );
    println!(
        "{:<44} {:>8.1}µs  {:>8.1}µs",
        "openssl cms -verify (process)", peer_median, peer[0]
    );
    println!(
        "{:<44} {:>8.1}µs  {:>8.1}µs",
        "openssl version (process start only)", startup_median, startup[0]
    );
    println!(
        "ferry CMS / openssl cms -verify: {:.3} whole process, {:.3} with openssl's process start ({:.1}µs) subtracted",
        cms / peer_median,
        cms / peer_work,
        startup_median
    );
    scratch.remove()
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// Root CA → intermediate → codeSigning leaf, P-256, with the real openssl
/// CLI. Returns the root's PEM (the pinned anchor).
fn make_pki(dir: &Path) -> Result<std::path::PathBuf> {
    cmd::banner("bench verify: a PKI from openssl");
    let ext = dir.join("ext.cnf");
    fs::write(
        &ext,
        "[ca]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n\
         [leaf]\nbasicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )?;
    let openssl = |args: &[&str]| cmd::run(Command::new("openssl").current_dir(dir).args(args));
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-subj",
        "/CN=Bench Root CA",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    for (name, cn, issuer, section) in [
        ("intermediate", "Bench Release CA", "root", "ca"),
        ("leaf", "release.bench.invalid", "intermediate", "leaf"),
    ] {
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-extensions",
            section,
            "-out",
            &format!("{name}.pem"),
        ])?;
    }
    Ok(dir.join("root.pem"))
}
