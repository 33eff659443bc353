//! `cargo xtask bench deltas`: ferry's patches against the usual binary
//! diff tools, on the same files in the same run, and the publisher's
//! parallel speedup.
//!
//! For every pair of the corpus ([`corpus`]), each tool makes a patch and
//! applies it; every output is compared with the new file byte for byte.
//! Peers are the stock command-line tools: `bsdiff`/`bspatch`, `xdelta3 -9`,
//! `zstd --patch-from` at -19 and at --ultra -22 (with `--long=31`), and
//! plain `zstd -19 --long=31` of the new file (what shipping no delta costs).
//! ferry runs as `ferry-delta` (the delta crate's own small binary, release
//! build), which makes patches with the publisher's default settings and
//! applies them with the node's file-to-file path, so every tool's peak RSS
//! (GNU time's `%M`) is its own process's. Times are wall clock of the child
//! process; files are in the page cache for every tool alike.
//!
//! Then a multi-file release — both versions of every tool, stripped and
//! not — is published with deltas by `ferry-publish release` with
//! `--jobs 1` and `--jobs 2` into copies of the same repository, timed, and
//! the two repositories are compared file by file (the output must not
//! depend on --jobs).
//!
//! Generation on pairs of [`BIG`] or more runs once per tool (bsdiff and
//! zstd -22 take minutes there); everything else runs `--runs` times and
//! the median is reported. Nothing is written to the docs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use super::corpus::{self, Corpus, Pair};
use super::{median, timed, Scratch, MIB};
use crate::cmd::{self, cargo, command_v, target_dir};

/// Pairs this large get one generation run per tool (bsdiff takes minutes
/// on the unstripped executables already).
const BIG: u64 = 8 * MIB;
/// The targets of issue 4.
const APPLY_RATIO_TARGET: f64 = 1.2;
const APPLY_SECS_TARGET: f64 = 10.0;
const SPEEDUP_TARGET: f64 = 1.7;
const AIM_RATIO: f64 = 0.90;
/// Publication time of the multi-file release, fixed so that the
/// repositories published with different --jobs can be compared byte for
/// byte.
const SOURCE_DATE_EPOCH: &str = "1767225600";

#[derive(clap::Args)]
pub struct Args {
    /// Timed runs of each apply and of each generation on pairs under 8 MiB.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Timed runs of each multi-file publication (per --jobs value); each
    /// one computes every delta of the release.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    release_runs: u32,
    /// Leave out the synthetic >= 100 MiB pair.
    #[arg(long)]
    no_synthetic: bool,
    /// Only pairs whose name contains TEXT (e.g. `stripped`, `rg`).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Leave out the multi-file publication (--jobs 1 vs 2).
    #[arg(long)]
    no_release: bool,
}

/// The tools compared, in table order; ferry last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Bsdiff,
    Xdelta3,
    ZstdPatchFrom19,
    ZstdPatchFrom22,
    ZstdPlain19,
    Ferry,
}

const TOOLS: [Tool; 6] = [
    Tool::Bsdiff,
    Tool::Xdelta3,
    Tool::ZstdPatchFrom19,
    Tool::ZstdPatchFrom22,
    Tool::ZstdPlain19,
    Tool::Ferry,
];

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Bsdiff => "bsdiff",
            Tool::Xdelta3 => "xdelta3 -9",
            Tool::ZstdPatchFrom19 => "zstd --patch-from -19",
            Tool::ZstdPatchFrom22 => "zstd --patch-from --ultra -22",
            Tool::ZstdPlain19 => "zstd -19 (no delta)",
            Tool::Ferry => "ferry",
        }
    }

    fn make(self, ferry_delta: &Path, pair: &Pair, patch: &Path) -> Command {
        let patch_from = |level: &[&str]| {
            let mut c = Command::new("zstd");
            c.arg("-q")
                .arg("-f")
                .arg(format!("--patch-from={}", pair.old.display()))
                .args(level)
                .arg("--long=31")
                .arg(&pair.new)
                .arg("-o")
                .arg(patch);
            c
        };
        match self {
            Tool::Bsdiff => {
                let mut c = Command::new("bsdiff");
                c.arg(&pair.old).arg(&pair.new).arg(patch);
                c
            }
            Tool::Xdelta3 => {
                let mut c = Command::new("xdelta3");
                c.args(["-9", "-e", "-f", "-s"])
                    .arg(&pair.old)
                    .arg(&pair.new)
                    .arg(patch);
                c
            }
            Tool::ZstdPatchFrom19 => patch_from(&["-19"]),
            Tool::ZstdPatchFrom22 => patch_from(&["--ultra", "-22"]),
            Tool::ZstdPlain19 => {
                let mut c = Command::new("zstd");
                c.args(["-q", "-f", "-19", "--long=31"])
                    .arg(&pair.new)
                    .arg("-o")
                    .arg(patch);
                c
            }
            Tool::Ferry => {
                let mut c = Command::new(ferry_delta);
                c.arg("make").arg(&pair.old).arg(&pair.new).arg(patch);
                c
            }
        }
    }

    fn apply(self, ferry: &FerryApply, pair: &Pair, patch: &Path, out: &Path) -> Command {
        match self {
            Tool::Bsdiff => {
                let mut c = Command::new("bspatch");
                c.arg(&pair.old).arg(out).arg(patch);
                c
            }
            Tool::Xdelta3 => {
                let mut c = Command::new("xdelta3");
                c.args(["-d", "-f", "-s"])
                    .arg(&pair.old)
                    .arg(patch)
                    .arg(out);
                c
            }
            Tool::ZstdPatchFrom19 | Tool::ZstdPatchFrom22 => {
                let mut c = Command::new("zstd");
                c.args(["-q", "-f", "-d"])
                    .arg(format!("--patch-from={}", pair.old.display()))
                    .arg("--long=31")
                    .arg(patch)
                    .arg("-o")
                    .arg(out);
                c
            }
            Tool::ZstdPlain19 => {
                let mut c = Command::new("zstd");
                c.args(["-q", "-f", "-d", "--long=31"])
                    .arg(patch)
                    .arg("-o")
                    .arg(out);
                c
            }
            Tool::Ferry => {
                let mut c = Command::new(&ferry.bin);
                c.arg("apply")
                    .arg(&ferry.algorithm)
                    .arg(&pair.old)
                    .arg(patch)
                    .arg(out)
                    .arg("--size")
                    .arg(pair.new_size().to_string());
                c
            }
        }
    }
}

/// What `ferry-delta apply` needs besides the files: the algorithm that
/// `make` chose.
struct FerryApply {
    bin: PathBuf,
    algorithm: String,
}

/// One tool on one pair.
struct Outcome {
    tool: Tool,
    patch_bytes: u64,
    gen: Vec<f64>,
    gen_rss_kib: Option<u64>,
    apply: Vec<f64>,
    apply_rss_kib: Option<u64>,
    /// ferry only: the chosen algorithm and every candidate's size.
    chosen: Option<String>,
    candidates: Vec<(String, u64)>,
}

struct PairResult {
    pair: Pair,
    old_bytes: u64,
    new_bytes: u64,
    outcomes: Vec<Outcome>,
    loadavg: String,
}

impl PairResult {
    fn outcome(&self, tool: Tool) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.tool == tool)
    }

    /// The smallest patch of the peers (the no-delta baseline included).
    fn best_peer(&self) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.tool != Tool::Ferry)
            .min_by_key(|o| o.patch_bytes)
    }

    fn ferry_ratio(&self) -> Option<f64> {
        let ferry = self.outcome(Tool::Ferry)?;
        let best = self.best_peer()?;
        Some(ferry.patch_bytes as f64 / best.patch_bytes as f64)
    }
}

struct ReleaseResult {
    files: usize,
    bytes: u64,
    jobs1: Vec<f64>,
    jobs2: Vec<f64>,
    identical: Result<usize, String>,
    summary: String,
}

pub fn run(args: &Args) -> Result<()> {
    let time = Path::new("/usr/bin/time");
    ensure!(
        time.is_file(),
        "/usr/bin/time (GNU time) is needed for peak RSS: `cargo xtask deps` installs it (Debian package time)"
    );
    for tool in ["bsdiff", "bspatch", "xdelta3", "zstd", "strip"] {
        ensure!(
            command_v(tool).is_some(),
            "{tool} is not installed: run `cargo xtask deps` (as root it installs the peers)"
        );
    }
    let bins = build()?;
    let load_start = loadavg();

    cmd::banner("bench deltas: corpus (target/bench-corpus)");
    let corpus = corpus::ensure(!args.no_synthetic)?;
    let built = if corpus.build_secs > 0.0 {
        format!("built what was missing in {:.0} s", corpus.build_secs)
    } else {
        "all cached, nothing built".into()
    };
    println!("corpus: {} pairs, {built}", corpus.pairs.len());

    let scratch = Scratch::create(None, "deltas", 4096 * MIB)?;
    let result = measure_all(&bins, &corpus, scratch.path(), args);
    cmd::banner("bench deltas: cleaning up");
    let removed = scratch.remove();
    let (pairs, release) = result.context("bench deltas failed (scratch directory removed)")?;
    removed?;
    report(&pairs, release.as_ref(), &corpus, args, &load_start);
    Ok(())
}

struct Bins {
    ferry_delta: PathBuf,
    publish: PathBuf,
}

/// `ferry-delta` and `ferry-publish`, release builds: what ships, never a
/// debug build. The node binary is not needed here.
fn build() -> Result<Bins> {
    cmd::banner("bench deltas: building ferry-delta and ferry-publish (release)");
    cmd::run(cargo().args([
        "build",
        "--release",
        "-p",
        "ferry-publish",
        "-p",
        "ferry-delta",
        "--features",
        "ferry-delta/encode",
        "--bin",
        "ferry-publish",
        "--bin",
        "ferry-delta",
    ]))
    .context("the release build failed")?;
    let dir = target_dir().join("release");
    let bins = Bins {
        ferry_delta: dir.join("ferry-delta"),
        publish: dir.join("ferry-publish"),
    };
    for bin in [&bins.ferry_delta, &bins.publish] {
        ensure!(
            bin.is_file(),
            "{} is missing after the build",
            bin.display()
        );
    }
    Ok(bins)
}

fn measure_all(
    bins: &Bins,
    corpus: &Corpus,
    work: &Path,
    args: &Args,
) -> Result<(Vec<PairResult>, Option<ReleaseResult>)> {
    let mut results = Vec::new();
    let selected: Vec<&Pair> = corpus
        .pairs
        .iter()
        .filter(|p| {
            args.only
                .as_ref()
                .is_none_or(|o| p.name.contains(o.as_str()))
        })
        .collect();
    for pair in selected {
        let result = measure_pair(bins, pair, work, args.runs)
            .with_context(|| format!("pair {}", pair.name))?;
        print_pair(&result);
        results.push(result);
    }
    let release = if args.no_release {
        None
    } else {
        Some(measure_release(bins, corpus, work, args.release_runs)?)
    };
    Ok((results, release))
}

fn measure_pair(bins: &Bins, pair: &Pair, work: &Path, runs: u32) -> Result<PairResult> {
    let old_bytes = fs::metadata(&pair.old)?.len();
    let new_bytes = pair.new_size();
    cmd::banner(&format!(
        "bench deltas: {} ({old_bytes} -> {new_bytes} bytes)",
        pair.name
    ));
    let loadavg = loadavg();
    let gen_runs = if new_bytes >= BIG { 1 } else { runs };
    let patch = work.join("patch");
    let out = work.join("out");
    let rss = work.join("rss");
    let mut outcomes = Vec::new();
    for tool in TOOLS {
        let mut outcome = Outcome {
            tool,
            patch_bytes: 0,
            gen: Vec::new(),
            gen_rss_kib: None,
            apply: Vec::new(),
            apply_rss_kib: None,
            chosen: None,
            candidates: Vec::new(),
        };
        for _ in 0..gen_runs {
            remove_if_present(&patch)?;
            let make = tool.make(&bins.ferry_delta, pair, &patch);
            let (secs, kib, stdout) = measured(make, &rss)?;
            outcome.gen.push(secs);
            outcome.gen_rss_kib = outcome.gen_rss_kib.max(kib);
            if tool == Tool::Ferry {
                parse_ferry_make(&stdout, &mut outcome)?;
            }
        }
        outcome.patch_bytes = fs::metadata(&patch)
            .with_context(|| format!("{} wrote no patch", tool.label()))?
            .len();
        let ferry = FerryApply {
            bin: bins.ferry_delta.clone(),
            algorithm: outcome.chosen.clone().unwrap_or_default(),
        };
        for run in 0..runs {
            remove_if_present(&out)?;
            let (secs, kib, _) = measured(tool.apply(&ferry, pair, &patch, &out), &rss)?;
            if run == 0 && !same_bytes(&out, &pair.new)? {
                bail!(
                    "{}: applying its patch did not give the new file back",
                    tool.label()
                );
            }
            outcome.apply.push(secs);
            outcome.apply_rss_kib = outcome.apply_rss_kib.max(kib);
        }
        remove_if_present(&out)?;
        println!(
            "{:<30} {:>11} bytes  gen {:>9}  apply {:>9}",
            tool.label(),
            outcome.patch_bytes,
            secs_text(median(&outcome.gen)),
            secs_text(median(&outcome.apply))
        );
        outcomes.push(outcome);
    }
    remove_if_present(&patch)?;
    Ok(PairResult {
        pair: pair.clone(),
        old_bytes,
        new_bytes,
        outcomes,
        loadavg,
    })
}

/// `candidate LABEL BYTES` lines and one `chosen ALGORITHM BYTES`.
fn parse_ferry_make(stdout: &str, outcome: &mut Outcome) -> Result<()> {
    outcome.candidates.clear();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["candidate", label, bytes] => {
                outcome.candidates.push((label.to_string(), bytes.parse()?))
            }
            ["chosen", algorithm, _] => outcome.chosen = Some(algorithm.to_string()),
            _ => {}
        }
    }
    ensure!(
        outcome.chosen.is_some(),
        "ferry-delta make printed no `chosen` line:\n{stdout}"
    );
    Ok(())
}

/// Runs `inner` under GNU time; returns wall seconds, peak RSS in KiB and
/// stdout.
fn measured(inner: Command, rss: &Path) -> Result<(f64, Option<u64>, String)> {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "%M", "-o"])
        .arg(rss)
        .arg(inner.get_program())
        .args(inner.get_args());
    let (secs, stdout) = timed(&mut c)?;
    let kib = fs::read_to_string(rss)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()));
    Ok((secs, kib, stdout))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The multi-file release: every tool's binaries (stripped and not) as
/// 1.0.0, then as 2.0.0 with deltas from 1.0.0, published with --jobs 1
/// and --jobs 2 into copies of the same 1.0.0 repository.
fn measure_release(bins: &Bins, corpus: &Corpus, work: &Path, runs: u32) -> Result<ReleaseResult> {
    cmd::banner("bench deltas: multi-file release, --jobs 1 vs --jobs 2");
    let dir = work.join("release");
    let (input_old, input_new) = (dir.join("input-1.0.0"), dir.join("input-2.0.0"));
    let mut files = 0;
    let mut bytes = 0;
    for pair in corpus.pairs.iter().filter(|p| p.tool.is_some()) {
        let sub = if pair.name.ends_with("unstripped") {
            "bin"
        } else {
            "stripped"
        };
        let name = pair.tool.unwrap_or_default();
        for (input, from) in [(&input_old, &pair.old), (&input_new, &pair.new)] {
            fs::create_dir_all(input.join(sub))?;
            fs::copy(from, input.join(sub).join(name))?;
        }
        files += 1;
        bytes += pair.new_size();
    }
    let keys = dir.join("keys");
    fs::create_dir_all(&keys)?;
    let (secret, public) = (keys.join("ferry.key"), keys.join("ferry.pub"));
    let mut keygen = Command::new(&bins.publish);
    keygen
        .args(["keygen", "--secret-key"])
        .arg(&secret)
        .arg("--public-key")
        .arg(&public)
        .env_remove("FERRY_KEY_PASSWORD");
    timed(&mut keygen).context("ferry-publish keygen failed")?;
    let publish = |repo: &Path, version: &str, input: &Path, extra: &[&str]| {
        let mut c = Command::new(&bins.publish);
        c.args(["release", "--repo"])
            .arg(repo)
            .arg("--key")
            .arg(&secret)
            .args(["--version", version, "--channel", "stable"])
            .args(extra)
            .arg(input)
            .env_remove("FERRY_KEY_PASSWORD")
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH);
        c
    };
    let base_repo = dir.join("repo-1.0.0");
    let mut first = publish(&base_repo, "1.0.0", &input_old, &["--delta-from", "none"]);
    println!("$ {}", cmd::display(&first));
    timed(&mut first).context("publishing 1.0.0 failed")?;

    let mut result = ReleaseResult {
        files,
        bytes,
        jobs1: Vec::new(),
        jobs2: Vec::new(),
        identical: Err("not compared".into()),
        summary: String::new(),
    };
    for run in 1..=runs {
        // Alternate the order so that a drift in machine load does not
        // always favour the same side.
        let order = if run % 2 == 1 { [1, 2] } else { [2, 1] };
        for jobs in order {
            let repo = dir.join(format!("repo-{run}-jobs{jobs}"));
            cmd::run(Command::new("cp").arg("-a").arg(&base_repo).arg(&repo))?;
            let jobs_text = jobs.to_string();
            let mut second = publish(
                &repo,
                "2.0.0",
                &input_new,
                &["--delta-from", "1.0.0", "--jobs", &jobs_text],
            );
            if run == 1 && jobs == 1 {
                println!("$ {}", cmd::display(&second));
            }
            let (secs, stdout) = timed(&mut second).context("publishing 2.0.0 failed")?;
            println!("run {run}, --jobs {jobs}: {}", secs_text(Some(secs)));
            if run == 1 && jobs == 1 {
                result.summary = stdout.trim().to_string();
            }
            match jobs {
                1 => result.jobs1.push(secs),
                _ => result.jobs2.push(secs),
            }
        }
        let (a, b) = (
            dir.join(format!("repo-{run}-jobs1")),
            dir.join(format!("repo-{run}-jobs2")),
        );
        if run == 1 {
            result.identical = compare_trees(&a, &b)?;
        }
        fs::remove_dir_all(&a)?;
        fs::remove_dir_all(&b)?;
    }
    fs::remove_dir_all(&dir)?;
    Ok(result)
}

/// `Ok(files)` when both trees hold the same files with the same bytes,
/// else which differ. Left out: the publisher's lock file, and the
/// `.minisig` signatures, whose trusted comment carries the signing time
/// (what they sign, manifests and index, is compared).
fn compare_trees(a: &Path, b: &Path) -> Result<Result<usize, String>> {
    let (la, lb) = (list_files(a, a)?, list_files(b, b)?);
    if la != lb {
        return Ok(Err("the two repositories hold different file names".into()));
    }
    let mut differ = Vec::new();
    for rel in &la {
        if !same_bytes(&a.join(rel), &b.join(rel))? {
            differ.push(rel.display().to_string());
        }
    }
    if differ.is_empty() {
        Ok(Ok(la.len()))
    } else {
        Ok(Err(format!("files differ: {}", differ.join(", "))))
    }
}

fn list_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            out.extend(list_files(root, &path)?);
        } else if entry.file_name() != ".ferry-publish.lock"
            && path.extension().is_none_or(|e| e != "minisig")
        {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn secs_text(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 10.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.1} s"),
    }
}

fn mib_text(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn print_pair(result: &PairResult) {
    println!(
        "\n{} (old {} bytes, new {} bytes; loadavg {})",
        result.pair.name, result.old_bytes, result.new_bytes, result.loadavg
    );
    let runs = |v: &[f64]| v.len().to_string();
    println!(
        "  {:<30} {:>11} {:>9} {:>10} {:>8} {:>10} {:>8}  runs gen/apply",
        "tool", "bytes", "vs ferry", "gen", "gen RSS", "apply", "apply RSS"
    );
    let ferry = result.outcome(Tool::Ferry).map_or(0, |o| o.patch_bytes);
    for o in &result.outcomes {
        let label = match (&o.chosen, o.tool) {
            (Some(chosen), Tool::Ferry) => format!("ferry ({chosen})"),
            _ => o.tool.label().to_string(),
        };
        println!(
            "  {:<30} {:>11} {:>9} {:>10} {:>8} {:>10} {:>8}  {}/{}",
            label,
            o.patch_bytes,
            format!("{:.3}", o.patch_bytes as f64 / ferry.max(1) as f64),
            secs_text(median(&o.gen)),
            mib_text(o.gen_rss_kib),
            secs_text(median(&o.apply)),
            mib_text(o.apply_rss_kib),
            runs(&o.gen),
            runs(&o.apply)
        );
    }
    if let Some(ferry) = result.outcome(Tool::Ferry) {
        let list: Vec<String> = ferry
            .candidates
            .iter()
            .map(|(label, bytes)| format!("{label} {bytes}"))
            .collect();
        println!("  ferry's candidates: {}", list.join(", "));
    }
    if let (Some(best), Some(ratio)) = (result.best_peer(), result.ferry_ratio()) {
        println!(
            "  ferry / best peer ({}, {} bytes) = {ratio:.3}",
            best.tool.label(),
            best.patch_bytes
        );
    }
}

fn report(
    pairs: &[PairResult],
    release: Option<&ReleaseResult>,
    corpus: &Corpus,
    args: &Args,
    load_start: &str,
) {
    cmd::banner("bench deltas: results");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date =
        cmd::probe(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    println!("date:    {date}");
    println!("nproc:   {cpus}");
    println!(
        "loadavg: {load_start} at the start, {} at the end",
        loadavg()
    );
    let mut command = format!(
        "cargo xtask bench deltas --runs {} --release-runs {}",
        args.runs, args.release_runs
    );
    if args.no_synthetic {
        command.push_str(" --no-synthetic");
    }
    if let Some(only) = &args.only {
        command.push_str(&format!(" --only {only:?}"));
    }
    if args.no_release {
        command.push_str(" --no-release");
    }
    println!("command: {command}");
    println!(
        "corpus:  {}",
        if corpus.build_secs > 0.0 {
            format!("built in {:.0} s this run", corpus.build_secs)
        } else {
            "cached in target/bench-corpus".into()
        }
    );
    if !corpus.synthetic_sources.is_empty() {
        let list: Vec<String> = corpus
            .synthetic_sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        println!("synthetic pair made from: {}", list.join(", "));
    }
    println!(
        "times: medians; generation on pairs >= {} MiB ran once per tool, everything else {} times\n",
        BIG / MIB,
        args.runs
    );

    println!(
        "| pair | new bytes | ferry bytes (algorithm) | best peer | peer bytes | ferry / best | never larger | >=10% smaller |"
    );
    println!("|---|---:|---:|---|---:|---:|---|---|");
    let mut never_larger = true;
    let mut aim = true;
    for r in pairs {
        let (Some(ferry), Some(best), Some(ratio)) =
            (r.outcome(Tool::Ferry), r.best_peer(), r.ferry_ratio())
        else {
            continue;
        };
        never_larger &= ratio <= 1.0;
        aim &= ratio <= AIM_RATIO;
        println!(
            "| {} | {} | {} ({}) | {} | {} | {ratio:.3} | {} | {} |",
            r.pair.name,
            r.new_bytes,
            ferry.patch_bytes,
            ferry.chosen.as_deref().unwrap_or("?"),
            best.tool.label(),
            best.patch_bytes,
            pass(ratio <= 1.0),
            pass(ratio <= AIM_RATIO)
        );
    }
    println!();
    println!(
        "{}: ferry's patch is never larger than the smallest peer's",
        pass(never_larger)
    );
    println!(
        "{}: ferry's patch is >= 10% smaller than the best peer's on every pair (aim)",
        pass(aim)
    );

    match pairs.iter().find(|r| r.pair.tool.is_none()) {
        Some(r) => {
            let ferry = r.outcome(Tool::Ferry).and_then(|o| median(&o.apply));
            let zstd = r
                .outcome(Tool::ZstdPatchFrom19)
                .and_then(|o| median(&o.apply));
            if let (Some(ferry), Some(zstd)) = (ferry, zstd) {
                let ratio = ferry / zstd;
                println!(
                    "{}: applying the {} MiB pair: ferry {} = {ratio:.2}x `zstd -d --patch-from` ({}), target <= {APPLY_RATIO_TARGET}x and < {APPLY_SECS_TARGET} s",
                    pass(ratio <= APPLY_RATIO_TARGET && ferry < APPLY_SECS_TARGET),
                    r.new_bytes / MIB,
                    secs_text(Some(ferry)),
                    secs_text(Some(zstd))
                );
            }
        }
        None => println!("(apply target not measured: no synthetic pair in this run)"),
    }

    if let Some(rel) = release {
        let (Some(one), Some(two)) = (median(&rel.jobs1), median(&rel.jobs2)) else {
            return;
        };
        let speedup = one / two;
        println!(
            "{}: multi-file release ({} files, {} bytes new): --jobs 1 {}, --jobs 2 {}, speedup {speedup:.2}x (target >= {SPEEDUP_TARGET}x; {} runs each)",
            pass(speedup >= SPEEDUP_TARGET),
            rel.files,
            rel.bytes,
            secs_text(Some(one)),
            secs_text(Some(two)),
            rel.jobs1.len()
        );
        match &rel.identical {
            Ok(n) => {
                println!("PASS: --jobs 1 and --jobs 2 published identical repositories ({n} files)")
            }
            Err(why) => println!("MISS: --jobs 1 and --jobs 2 repositories differ: {why}"),
        }
        for line in rel.summary.lines().filter(|l| l.contains("from 1.0.0")) {
            println!("  publisher: {}", line.trim());
        }
    }
}
