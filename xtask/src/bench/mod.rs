//! `cargo xtask bench <what>`: performance measurements of the real release
//! binaries, each against a baseline measured in the same run.
//!
//! One file per benchmark (`apply.rs`, `deltas.rs` with its corpus in
//! `corpus.rs`, `verify.rs`, `lifecycle.rs` with `candidate_share.rs`,
//! `rollout.rs`). This file holds what they share: the release build, a
//! scratch directory on a chosen filesystem, a signed repository and a node
//! to drive, timing of child processes, the disk's own fsync'd write speed
//! (`dd conv=fsync`), the cost of small durable writes, statistics and the
//! result table.
//!
//! Nothing here appends to the docs: numbers go to stdout, and
//! docs/BENCHMARKS.md is written by hand from a real run.

pub mod apply;
mod candidate_share;
mod corpus;
pub mod deltas;
pub mod lifecycle;
pub mod rollout;
mod syscalls;
pub mod verify;

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::cmd::{self, cargo, target_dir};
use crate::demo::{toml_string, url_path};

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Atomic switch of a release holding one 200 MiB file, against the
    /// disk's own fsync'd write speed (dd conv=fsync), plus the journal's cost.
    Apply(apply::Args),
    /// ferry's binary patches against bsdiff, xdelta3 and zstd --patch-from
    /// on real releases of Rust tools and a >= 100 MiB pair, plus the
    /// publisher's --jobs 1 vs 2 speedup.
    Deltas(deltas::Args),
    /// Signature checks per update: index + manifest with 2-of-3 minisign
    /// signatures, and a CMS signature with a 2-certificate chain, against
    /// `openssl cms -verify`.
    Verify(verify::Args),
    /// What an update costs the service: stop -> switch -> start -> healthy
    /// with 1,000 idle connections held, `ferry preflight`, and requests
    /// failed under load with blue-green against restart.
    Lifecycle(lifecycle::Args),
    /// The rollout coordinator at fleet scale: 1,000 fake nodes through
    /// the `command` transport; wall time against the ideal, coordinator
    /// CPU and peak RSS, and the initial status query.
    Rollout(rollout::Args),
}

pub fn run(bench: &Bench) -> Result<()> {
    match bench {
        Bench::Apply(args) => apply::run(args),
        Bench::Deltas(args) => deltas::run(args),
        Bench::Verify(args) => verify::run(args),
        Bench::Lifecycle(args) => lifecycle::run(args),
        Bench::Rollout(args) => rollout::run(args),
    }
}

pub const MIB: u64 = 1024 * 1024;

/// The release binaries under test.
pub struct Binaries {
    pub ferry: PathBuf,
    pub publish: PathBuf,
}

impl Binaries {
    /// `cargo build --release -p ferry -p ferry-publish`: benchmarks measure
    /// what ships, never a debug build.
    pub fn build() -> Result<Binaries> {
        cmd::banner("bench: building ferry and ferry-publish (release)");
        cmd::run(cargo().args(["build", "--release", "-p", "ferry", "-p", "ferry-publish"]))
            .context("the release build failed; a benchmark needs both binaries")?;
        let dir = target_dir().join("release");
        let bins = Binaries {
            ferry: dir.join("ferry"),
            publish: dir.join("ferry-publish"),
        };
        for bin in [&bins.ferry, &bins.publish] {
            ensure!(
                bin.is_file(),
                "{} is missing after the release build",
                bin.display()
            );
        }
        Ok(bins)
    }
}

/// What `df` says about the filesystem holding a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub source: String,
    pub fstype: String,
    pub available: u64,
    pub mount: String,
}

/// Parses `df -P -T -B1 DIR`: a header, then
/// `source type size used available capacity mount`.
pub fn parse_df(text: &str) -> Option<FsInfo> {
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 7 {
        return None;
    }
    Some(FsInfo {
        source: fields[0].to_string(),
        fstype: fields[1].to_string(),
        available: fields[4].parse().ok()?,
        mount: fields[6..].join(" "),
    })
}

pub fn df(dir: &Path) -> Result<FsInfo> {
    let out = Command::new("df")
        .args(["-P", "-T", "-B1"])
        .arg(dir)
        .output()
        .context("cannot run df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "`df -P -T -B1 {}` failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_df(&text).with_context(|| format!("cannot read df's output:\n{text}"))
}

/// What kind of block device `source` (e.g. `/dev/vda`) is, as far as sysfs
/// tells: a virtio disk is a virtual machine's disk whatever it sits on.
pub fn describe_device(source: &str) -> String {
    let Some(name) = source.strip_prefix("/dev/") else {
        return format!("{source} (not a block device)");
    };
    let sys = Path::new("/sys/class/block").join(name);
    let Ok(real) = fs::canonicalize(&sys) else {
        return format!("{source} (no sysfs entry)");
    };
    let real = real.display().to_string();
    let kind = if real.contains("/virtio") {
        "virtio block device: a virtual disk"
    } else if real.contains("/nvme") {
        "NVMe"
    } else if real.contains("/loop") {
        "loop device"
    } else {
        "block device"
    };
    // A partition has its queue in its parent's directory.
    let rotational = ["queue/rotational", "../queue/rotational"]
        .iter()
        .find_map(|q| fs::read_to_string(sys.join(q)).ok())
        .map(|r| {
            if r.trim() == "1" {
                ", reports rotational"
            } else {
                ", reports non-rotational"
            }
        })
        .unwrap_or("");
    format!("{source} ({kind}{rotational})")
}

/// A scratch directory for one benchmark, removed (with everything in it)
/// when dropped, whether the benchmark succeeded or not.
pub struct Scratch {
    dir: tempfile::TempDir,
    path: PathBuf,
    pub fs: FsInfo,
}

impl Scratch {
    /// Creates `ferry-bench-NAME-*` in `base`, or in cargo's target directory
    /// (the repository's filesystem) by default, and checks that `needed`
    /// bytes are free there.
    pub fn create(base: Option<&Path>, name: &str, needed: u64) -> Result<Scratch> {
        let base = match base {
            Some(dir) => dir.to_path_buf(),
            None => target_dir(),
        };
        fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-bench-{name}-"))
            .tempdir_in(&base)
            .with_context(|| format!("cannot create a scratch directory in {}", base.display()))?;
        // Canonical, so that paths in ferry's config match what the kernel
        // reports for open files (strace -y).
        let path = dir.path().canonicalize()?;
        let fs = df(&path)?;
        ensure!(
            fs.available >= needed,
            "{} has {} free, the benchmark needs about {}: free some space or pass --dir on another filesystem",
            fs.mount,
            cmd::size_text(fs.available),
            cmd::size_text(needed)
        );
        Ok(Scratch { dir, path, fs })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now, reporting a failure instead of ignoring it.
    pub fn remove(self) -> Result<()> {
        let shown = self.path.display().to_string();
        self.dir
            .close()
            .with_context(|| format!("cannot remove the scratch directory {shown}"))?;
        println!("removed {shown}");
        Ok(())
    }
}

/// Runs `cmd` to completion with its output captured and returns the wall
/// time in seconds and its stdout. Fails with everything it printed.
pub fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::display(cmd)))?;
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "`{}` failed ({})\n--- stdout ---\n{}--- stderr ---\n{}",
            cmd::display(cmd),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((secs, stdout))
}

/// `sync -f DIR`: writes back everything dirty on DIR's filesystem, so that
/// a measurement does not pay for what an earlier step left in the cache.
pub fn flush(dir: &Path) -> Result<()> {
    timed(Command::new("sync").arg("-f").arg(dir)).map(drop)
}

/// Writes `bytes` of deterministic pseudo-random data (splitmix64 from
/// `seed`): incompressible, so zstd cannot shrink the work, and different
/// for every seed.
pub fn write_pseudo_random(path: &Path, bytes: u64, seed: u64) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut state = seed;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        fill_pseudo_random(&mut chunk, &mut state);
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn fill_pseudo_random(buf: &mut [u8], state: &mut u64) {
    for word in buf.chunks_mut(8) {
        let bytes = splitmix64(state).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A signing key pair and a repository published with the release binaries.
pub struct Repo {
    pub dir: PathBuf,
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
}

impl Repo {
    pub fn create(bins: &Binaries, work: &Path) -> Result<Repo> {
        let keys = work.join("keys");
        fs::create_dir_all(&keys)?;
        let repo = Repo {
            dir: work.join("repo"),
            secret_key: keys.join("ferry.key"),
            public_key: keys.join("ferry.pub"),
        };
        let mut keygen = Command::new(&bins.publish);
        keygen
            .args(["keygen", "--secret-key"])
            .arg(&repo.secret_key)
            .arg("--public-key")
            .arg(&repo.public_key)
            .env_remove("FERRY_KEY_PASSWORD");
        timed(&mut keygen).context("generating the signing key failed")?;
        Ok(repo)
    }

    /// Publishes `input` as `version` on channel `stable`; returns the time.
    pub fn publish(
        &self,
        bins: &Binaries,
        version: &str,
        zstd_level: u32,
        input: &Path,
    ) -> Result<f64> {
        let mut release = Command::new(&bins.publish);
        release
            .args(["release", "--repo"])
            .arg(&self.dir)
            .arg("--key")
            .arg(&self.secret_key)
            .args(["--version", version, "--channel", "stable"])
            .args(["--zstd-level", &zstd_level.to_string()])
            .arg(input)
            .env_remove("FERRY_KEY_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH");
        println!("$ {}", cmd::display(&release));
        let (secs, _) =
            timed(&mut release).with_context(|| format!("publishing {version} failed"))?;
        Ok(secs)
    }
}

/// A node: install root, state directory and config, under one directory.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    ferry: PathBuf,
}

impl Node {
    pub fn create(bins: &Binaries, dir: &Path, repo: &Repo) -> Result<Node> {
        let node = Node {
            dir: dir.to_path_buf(),
            config: dir.join("ferry.toml"),
            root: dir.join("app"),
            state: dir.join("state"),
            ferry: bins.ferry.clone(),
        };
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = format!(
            "[repository]\nurl = {}\nchannel = \"stable\"\npublic_keys = [{}]\n\n[install]\nroot = {}\nstate_dir = {}\n",
            toml_string(&format!("file://{}", url_path(&repo.dir))),
            toml_string(&repo.public_key.display().to_string()),
            toml_string(&node.root.display().to_string()),
            toml_string(&node.state.display().to_string()),
        );
        fs::write(&node.config, config)?;
        Ok(node)
    }

    /// `ferry --config CONFIG ARGS...`, unaffected by the caller's FERRY_*.
    pub fn ferry(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ferry);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("FERRY_CONFIG")
            .env_remove("FERRY_LOG")
            .env_remove("FERRY_FAULT");
        c
    }

    /// The version `current` points at, read from the symlink itself.
    pub fn current(&self) -> Result<String> {
        let link = self.root.join("current");
        let target =
            fs::read_link(&link).with_context(|| format!("cannot read {}", link.display()))?;
        Ok(target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    pub fn expect_current(&self, version: &str, after: &str) -> Result<()> {
        let current = self.current()?;
        ensure!(
            current == version,
            "after {after}, `current` points at {current:?}, expected {version}"
        );
        Ok(())
    }

    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove the node {}", self.dir.display()))
    }
}

/// The disk's own fsync'd write speed: `dd if=/dev/zero of=FILE bs=1M
/// count=MIB conv=fsync`, timed by dd itself (its clock covers the final
/// fsync). Returns seconds; the file is removed afterwards.
pub fn dd_fsync(file: &Path, mib: u64) -> Result<f64> {
    let mut dd = Command::new("dd");
    dd.arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fsync"])
        .env("LC_ALL", "C");
    let out = dd
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::display(&dd)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "`{}` failed ({}): {}",
        cmd::display(&dd),
        out.status,
        stderr.trim()
    );
    fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display()))?;
    let (bytes, secs) = parse_dd(&stderr)
        .with_context(|| format!("cannot read the time from dd's output:\n{stderr}"))?;
    ensure!(
        bytes == mib * MIB,
        "dd wrote {bytes} bytes, expected {}",
        mib * MIB
    );
    Ok(secs)
}

/// Bytes and seconds from dd's summary line (C locale), e.g.
/// `209715200 bytes (210 MB, 200 MiB) copied, 0.585 s, 358 MB/s`.
pub fn parse_dd(stderr: &str) -> Option<(u64, f64)> {
    let line = stderr.lines().find(|l| l.contains(" copied, "))?;
    let bytes = line.split_whitespace().next()?.parse().ok()?;
    let (_, after) = line.split_once(" copied, ")?;
    let secs = after.split_whitespace().next()?.parse().ok()?;
    Some((bytes, secs))
}

/// `k` durable atomic replacements of a small file in `dir`, exactly as
/// ferry's `durable::write_atomic` makes them: temp file, write, fsync,
/// rename over the target, fsync of the directory. Returns the total time in
/// seconds; the file is removed afterwards (untimed).
pub fn durable_writes(dir: &Path, name: &str, k: usize) -> Result<f64> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let started = Instant::now();
    for step in 0..k {
        let body = sample_journal(step);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(body.as_bytes())?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &target)
            .with_context(|| format!("cannot rename onto {}", target.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))?;
    }
    let secs = started.elapsed().as_secs_f64();
    fs::remove_file(&target)?;
    Ok(secs)
}

/// A journal record of the size ferry writes (pretty JSON, ~300 bytes).
fn sample_journal(step: usize) -> String {
    const STEPS: [&str; 6] = [
        "planned",
        "fetching",
        "staged",
        "switched",
        "verified",
        "committed",
    ];
    serde_json::to_string_pretty(&serde_json::json!({
        "id": format!("1754000000000000000-{}", std::process::id()),
        "operation": "apply",
        "from_version": "1.0.0",
        "to_version": "2.0.0",
        "step": STEPS[step % STEPS.len()],
        "started_at": "2025-08-01T00:00:00Z",
        "bytes_downloaded": 209_715_200u64 * (step as u64 % 2),
    }))
    .expect("a literal serialises")
}

/// Median, minimum and maximum of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The median (mean of the two middle values for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    Some(Summary {
        median: median(samples)?,
        min: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// One line of the result table: a metric and its samples in seconds.
pub struct Row {
    pub metric: String,
    pub samples: Vec<f64>,
}

impl Row {
    pub fn new(metric: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            samples: Vec::new(),
        }
    }
}

/// Milliseconds, with more digits where they matter.
pub fn ms(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The table: metric, median, min, max and the median's ratio to
/// `baseline` (the dd median). Rows without samples are left out.
pub fn format_table(rows: &[&Row], baseline: f64) -> String {
    let width = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>10}  {:>10}  {:>11}\n",
        "metric", "median", "min", "max", "ratio to dd"
    );
    out.push_str(&format!("{}\n", "-".repeat(width + 2 + 12 * 3 + 11)));
    for row in rows {
        let Some(s) = summarize(&row.samples) else {
            continue;
        };
        let ratio = if baseline > 0.0 {
            format!("{:.2}", s.median / baseline)
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>10}  {:>10}  {:>11}\n",
            row.metric,
            ms(s.median),
            ms(s.min),
            ms(s.max),
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let s = summarize(&[0.5, 0.2, 0.9, 0.4, 0.3]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 0.4,
                min: 0.2,
                max: 0.9
            }
        );
    }

    #[test]
    fn dd_summary_lines_are_parsed() {
        let coreutils_9 = "200+0 records in\n200+0 records out\n209715200 bytes (210 MB, 200 MiB) copied, 0.585123 s, 358 MB/s\n";
        assert_eq!(parse_dd(coreutils_9), Some((209_715_200, 0.585123)));
        // Older coreutils: no binary-unit size in the brackets.
        let coreutils_8 = "209715200 bytes (210 MB) copied, 1.5 s, 140 MB/s";
        assert_eq!(parse_dd(coreutils_8), Some((209_715_200, 1.5)));
        assert_eq!(
            parse_dd("1048576 bytes (1.0 MB, 1.0 MiB) copied, 2 s, 524 kB/s"),
            Some((1_048_576, 2.0))
        );
        assert_eq!(
            parse_dd("dd: error writing 'x': No space left on device"),
            None
        );
    }

    #[test]
    fn df_output_is_parsed() {
        let text = "Filesystem     Type     1-blocks        Used   Available Capacity Mounted on\n\
                    /dev/vda       ext4 270553174016 20920483840 76652265472      22% /\n";
        assert_eq!(
            parse_df(text),
            Some(FsInfo {
                source: "/dev/vda".into(),
                fstype: "ext4".into(),
                available: 76_652_265_472,
                mount: "/".into(),
            })
        );
        assert_eq!(parse_df("Filesystem Type\n"), None);
    }

    #[test]
    fn pseudo_random_data_is_deterministic_and_differs_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        write_pseudo_random(&a, 100_003, 1).unwrap();
        write_pseudo_random(&b, 100_003, 1).unwrap();
        write_pseudo_random(&c, 100_003, 2).unwrap();
        let (a, b, c) = (
            fs::read(a).unwrap(),
            fs::read(b).unwrap(),
            fs::read(c).unwrap(),
        );
        assert_eq!(a.len(), 100_003);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Every byte value appears about equally often: no structure to compress.
        let mut counts = [0usize; 256];
        a.iter().for_each(|&x| counts[x as usize] += 1);
        assert!(
            counts.iter().all(|&n| (250..=540).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn durable_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let secs = durable_writes(dir.path(), "journal-probe.json", 6).unwrap();
        assert!(secs > 0.0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(sample_journal(0).len() > 150);
    }

    #[test]
    fn table_has_ratios_to_the_baseline() {
        let mut dd = Row::new("dd");
        dd.samples = vec![0.5, 0.4, 0.6];
        let mut apply = Row::new("ferry apply");
        apply.samples = vec![1.0, 1.2, 0.8];
        let empty = Row::new("skipped");
        let table = format_table(&[&dd, &apply, &empty], 0.5);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("metric"));
        assert!(lines[2].starts_with("dd ") && lines[2].ends_with("1.00"));
        assert!(lines[3].contains("1000 ms") && lines[3].ends_with("2.00"));
        assert_eq!(ms(0.004567), "4.57 ms");
    }
}
