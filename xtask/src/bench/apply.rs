//! `cargo xtask bench apply`: the atomic switch of a release holding one
//! 200 MiB file, against the disk's own fsync'd write speed measured in the
//! same run, and the journal's cost per update.
//!
//! Setup (untimed): publish 1.0.0 and 2.0.0, each one 200 MiB file of
//! incompressible pseudo-random data (different per version) plus two small
//! files, with `--zstd-level 1` (zstd stores incompressible blocks nearly
//! raw, so a higher level would only slow publishing down).
//!
//! Each run uses a fresh node, so that every timed apply really fetches:
//! 1. install 1.0.0 (untimed; under `strace -T` when available, which splits
//!    its fsync/rename time by what was made durable);
//! 2. `ferry apply` 1.0.0 → 2.0.0: fetch, decompress, verify, stage, fsync,
//!    switch — the whole update as an operator sees it;
//! 3. `ferry rollback --to 1.0.0`: re-hash the kept release, journaled switch;
//! 4. `ferry apply --version 2.0.0` with 2.0.0 still on disk: re-hash and
//!    switch, nothing fetched or written;
//! 5. `dd if=/dev/zero bs=1M count=200 conv=fsync` in the same directory;
//! 6. 6 durable small-file replacements in the node's state directory: the
//!    journal mechanism's cost, measured directly;
//! 7. on a second fresh node with `FERRY_RELEASE_FILES=copy`, the same
//!    apply 1.0.0 → 2.0.0 with every release file a copy of its own: the
//!    cost of not sharing the store's bytes, against step 2's reflinks or
//!    hard links (which of the two the filesystem gave is reported).
//!
//! `sync -f` runs (untimed) before each timed step so that none pays for
//! writeback left by the one before.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::syscalls::{self, Breakdown};
use super::{
    dd_fsync, describe_device, durable_writes, flush, format_table, median, ms, summarize, timed,
    write_pseudo_random, Binaries, Node, Repo, Row, Scratch, MIB,
};
use crate::cmd::{self, command_v};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
const ZSTD_LEVEL: u32 = 1;
/// Journal writes of one apply: planned, fetching, staged, switched,
/// verified, committed.
const JOURNAL_STEPS: usize = 6;
/// ThemisDB's design target for the same switch on NVMe.
const TARGET_SECS: f64 = 0.5;

#[derive(clap::Args)]
pub struct Args {
    /// Timed runs (each on a fresh node).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Benchmark on DIR's filesystem instead of the target directory's.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Size of the release's big file, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    size_mib: u64,
    /// Do not trace the untimed installs with strace.
    #[arg(long)]
    no_strace: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let bins = Binaries::build()?;
    let size = args.size_mib * MIB;
    // Repository (2 versions) + node store (2) + a download part + dd's file,
    // with room to spare.
    let scratch = Scratch::create(args.dir.as_deref(), "apply", 9 * size + 256 * MIB)?;
    let machine = Machine::describe(&scratch);
    cmd::banner("bench apply: machine");
    println!("{machine}");
    let result = measure(&bins, scratch.path(), args);
    cmd::banner("bench apply: cleaning up");
    let removed = scratch.remove();
    let rows = result.context("bench apply failed (scratch directory removed)")?;
    removed?;
    report(&rows, args, &machine);
    Ok(())
}

struct Machine {
    text: String,
}

impl Machine {
    fn describe(scratch: &Scratch) -> Machine {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let date = cmd::probe(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .unwrap_or_else(|| "(unknown)".into());
        let kernel = cmd::probe(Command::new("uname").arg("-r")).unwrap_or_default();
        let fs = &scratch.fs;
        Machine {
            text: format!(
                "date:       {date}\nnproc:      {cpus}\nkernel:     {kernel}\nbench dir:  {}\nfilesystem: {} on {} (mounted at {})",
                scratch.path().display(),
                fs.fstype,
                describe_device(&fs.source),
                fs.mount
            ),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The result rows, in table order.
struct Rows {
    dd: Row,
    apply: Row,
    apply_copies: Row,
    rollback: Row,
    reapply: Row,
    objects: Row,
    stage: Row,
    switch: Row,
    durable_release: Row,
    journal_in_ferry: Row,
    all_durable: Row,
    journal: Row,
    journal_writes_seen: Vec<usize>,
    strace_note: String,
    /// How the default apply's big release file shared the store's bytes.
    sharing_seen: Vec<&'static str>,
}

impl Rows {
    fn new(mib: u64) -> Rows {
        Rows {
            dd: Row::new(format!("dd {mib} MiB conv=fsync (disk baseline)")),
            apply: Row::new(format!(
                "ferry apply {V1}->{V2} (fetch+decompress+verify+stage+fsync+switch)"
            )),
            apply_copies: Row::new(format!(
                "ferry apply {V1}->{V2}, FERRY_RELEASE_FILES=copy (release files copied)"
            )),
            rollback: Row::new(format!(
                "ferry rollback --to {V1} (re-hash {mib} MiB + journaled switch)"
            )),
            reapply: Row::new(format!(
                "ferry apply {V2} already on disk (re-hash + switch, no fetch)"
            )),
            objects: Row::new("  strace: fsync+rename of store objects (the big file)"),
            stage: Row::new("  strace: stage release dir (dir fsyncs + rename)"),
            switch: Row::new("  strace: switch `current` (rename + fsync root)"),
            durable_release: Row::new("  strace: = stage + fsync + switch of the release"),
            journal_in_ferry: Row::new("  strace: ferry's journal (writes + close)"),
            all_durable: Row::new("  strace: all fsync/rename syscalls of the apply"),
            journal: Row::new(format!("journal overhead ({JOURNAL_STEPS} durable writes)")),
            journal_writes_seen: Vec::new(),
            strace_note: String::new(),
            sharing_seen: Vec::new(),
        }
    }

    fn table(&self) -> Vec<&Row> {
        vec![
            &self.dd,
            &self.apply,
            &self.apply_copies,
            &self.rollback,
            &self.reapply,
            &self.objects,
            &self.stage,
            &self.switch,
            &self.durable_release,
            &self.journal_in_ferry,
            &self.all_durable,
            &self.journal,
        ]
    }

    fn record_trace(&mut self, b: &Breakdown) {
        self.objects.samples.push(b.objects);
        self.stage.samples.push(b.stage);
        self.switch.samples.push(b.switch);
        self.durable_release
            .samples
            .push(b.objects + b.stage + b.switch);
        self.journal_in_ferry.samples.push(b.journal);
        self.all_durable.samples.push(b.total());
        self.journal_writes_seen.push(b.journal_writes);
    }
}

fn measure(bins: &Binaries, work: &Path, args: &Args) -> Result<Rows> {
    let mib = args.size_mib;
    cmd::banner(&format!(
        "bench apply: publishing {V1} and {V2} ({mib} MiB file each, --zstd-level {ZSTD_LEVEL})"
    ));
    let repo = Repo::create(bins, work)?;
    for (version, seed) in [(V1, 1), (V2, 2)] {
        let input = work.join(format!("input-{version}"));
        release_tree(&input, version, mib * MIB, seed)
            .with_context(|| format!("cannot write the {version} release tree"))?;
        let secs = repo.publish(bins, version, ZSTD_LEVEL, &input)?;
        println!("published {version} in {secs:.1}s");
        fs::remove_dir_all(&input)?;
    }

    let mut rows = Rows::new(mib);
    let strace = if args.no_strace {
        rows.strace_note = "strace rows skipped (--no-strace)".into();
        None
    } else {
        match usable_strace() {
            Ok(path) => Some(path),
            Err(why) => {
                rows.strace_note = format!("strace rows skipped: {why}");
                println!("NOTE: {}", rows.strace_note);
                None
            }
        }
    };

    for run in 1..=args.runs {
        cmd::banner(&format!("bench apply: run {run}/{}", args.runs));
        let node = Node::create(bins, &work.join(format!("node-{run}")), &repo)?;
        let verbose = run == 1;

        // 1. Install 1.0.0, untimed, traced.
        flush(work)?;
        let install = node.ferry(&["apply", "--version", V1]);
        match &strace {
            Some(strace) => {
                let trace = node.dir.join("strace.txt");
                let mut traced = under_strace(strace, &trace, &install);
                step(&mut traced, verbose).context("installing 1.0.0 (untimed) failed")?;
                let text = fs::read_to_string(&trace)?;
                let b = syscalls::breakdown(
                    &syscalls::parse(&text),
                    &node.root.display().to_string(),
                    &node.state.display().to_string(),
                );
                ensure!(
                    b.objects > 0.0,
                    "strace saw no fsync of a store object in {}: the trace format may have changed",
                    trace.display()
                );
                rows.record_trace(&b);
                fs::remove_file(&trace)?;
            }
            None => {
                step(&mut { install }, verbose).context("installing 1.0.0 (untimed) failed")?;
            }
        }
        node.expect_current(V1, "installing 1.0.0")?;

        // 2-4. The timed ferry commands.
        flush(work)?;
        let apply = step(&mut node.ferry(&["apply"]), verbose).context("`ferry apply` failed")?;
        node.expect_current(V2, "`ferry apply`")?;
        flush(work)?;
        let rollback = step(&mut node.ferry(&["rollback", "--to", V1]), verbose)
            .context("`ferry rollback` failed")?;
        node.expect_current(V1, "`ferry rollback --to 1.0.0`")?;
        flush(work)?;
        let reapply = step(&mut node.ferry(&["apply", "--version", V2]), verbose)
            .context("re-applying 2.0.0 failed")?;
        node.expect_current(V2, "re-applying 2.0.0")?;

        let big = node.root.join("releases").join(V2).join("data/blob.bin");
        rows.sharing_seen.push(if fs::metadata(&big)?.nlink() > 1 {
            "hard link"
        } else {
            "reflink (or copy: own inode)"
        });

        // 5. The disk's own speed, 6. the journal mechanism.
        flush(work)?;
        let dd = dd_fsync(&work.join("dd.bin"), mib).context("the dd baseline failed")?;
        let journal = durable_writes(&node.state, "bench-journal.json", JOURNAL_STEPS)
            .context("the journal write measurement failed")?;
        node.remove()?;

        // 7. The same apply with every release file a copy.
        let copies = Node::create(bins, &work.join(format!("node-{run}-copies")), &repo)?;
        let copy = |c: &mut Command| {
            c.env("FERRY_RELEASE_FILES", "copy");
        };
        let mut install = copies.ferry(&["apply", "--version", V1]);
        copy(&mut install);
        step(&mut install, false).context("installing 1.0.0 with copies failed")?;
        flush(work)?;
        let mut apply_with_copies = copies.ferry(&["apply"]);
        copy(&mut apply_with_copies);
        let apply_copies =
            step(&mut apply_with_copies, verbose).context("`ferry apply` with copies failed")?;
        copies.expect_current(V2, "`ferry apply` with copies")?;
        let big = copies.root.join("releases").join(V2).join("data/blob.bin");
        ensure!(
            fs::metadata(&big)?.nlink() == 1,
            "FERRY_RELEASE_FILES=copy still hard-linked {}",
            big.display()
        );
        copies.remove()?;

        println!(
            "run {run}: apply {}, apply with copies {}, rollback {}, re-apply {}, dd {}, journal {}",
            ms(apply),
            ms(apply_copies),
            ms(rollback),
            ms(reapply),
            ms(dd),
            ms(journal)
        );
        rows.apply.samples.push(apply);
        rows.apply_copies.samples.push(apply_copies);
        rows.rollback.samples.push(rollback);
        rows.reapply.samples.push(reapply);
        rows.dd.samples.push(dd);
        rows.journal.samples.push(journal);
    }
    Ok(rows)
}

/// Runs one ferry command, timed; on the first run its output is shown.
fn step(command: &mut Command, verbose: bool) -> Result<f64> {
    let (secs, stdout) = timed(command)?;
    if verbose {
        println!("$ {}", cmd::display(command));
        for line in stdout.lines() {
            println!("  {line}");
        }
    }
    Ok(secs)
}

/// The release: one big file of pseudo-random data and two small ones.
fn release_tree(dir: &Path, version: &str, bytes: u64, seed: u64) -> Result<()> {
    for sub in ["data", "etc", "bin"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    write_pseudo_random(&dir.join("data/blob.bin"), bytes, seed)?;
    fs::write(
        dir.join("etc/app.toml"),
        format!("# bench app\nversion = \"{version}\"\n"),
    )?;
    let bin = dir.join("bin/app");
    fs::write(&bin, format!("#!/bin/sh\necho \"bench app {version}\"\n"))?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// strace, if it is installed and allowed to trace here (containers may
/// forbid ptrace).
fn usable_strace() -> Result<PathBuf, String> {
    let strace = command_v("strace").ok_or("strace is not installed (apt-get install strace)")?;
    let ok = Command::new(&strace)
        .args(["-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e"])
        .arg(syscalls::TRACE)
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(strace)
    } else {
        Err(format!(
            "`{} -f --seccomp-bpf true` fails here (ptrace not permitted?)",
            strace.display()
        ))
    }
}

/// `strace ... -o TRACE -- <inner command>`, keeping the inner command's
/// environment changes.
fn under_strace(strace: &Path, trace: &Path, inner: &Command) -> Command {
    let mut c = Command::new(strace);
    c.args([
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-T",
        "-y",
        "-s",
        "4096",
        "-e",
        syscalls::TRACE,
        "-o",
    ])
    .arg(trace)
    .arg("--")
    .arg(inner.get_program())
    .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => c.env(key, value),
            None => c.env_remove(key),
        };
    }
    c
}

fn report(rows: &Rows, args: &Args, machine: &Machine) {
    let mib = args.size_mib;
    let dd = median(&rows.dd.samples).unwrap_or(0.0);
    let apply = median(&rows.apply.samples).unwrap_or(0.0);
    let durable = median(&rows.durable_release.samples);
    let mb = |secs: f64| (mib * MIB) as f64 / 1e6 / secs;

    cmd::banner("bench apply: results");
    println!("{machine}");
    println!(
        "command:    cargo xtask bench apply --runs {}{}{}{}",
        args.runs,
        args.dir
            .as_ref()
            .map(|d| format!(" --dir {}", d.display()))
            .unwrap_or_default(),
        if mib == 200 {
            String::new()
        } else {
            format!(" --size-mib {mib}")
        },
        if args.no_strace { " --no-strace" } else { "" }
    );
    println!(
        "release:    one {mib} MiB pseudo-random file + 2 small files, published with --zstd-level {ZSTD_LEVEL}; {} run(s), a fresh node each\n",
        args.runs
    );
    print!("{}", format_table(&rows.table(), dd));
    println!();
    println!(
        "disk: dd writes {mib} MiB durably in {} ({:.0} MB/s); ferry apply {} ({:.0} MB/s effective), {:.2}x dd",
        ms(dd),
        mb(dd),
        ms(apply),
        mb(apply),
        apply / dd
    );
    let copies = median(&rows.apply_copies.samples).unwrap_or(0.0);
    let mut seen = rows.sharing_seen.clone();
    seen.dedup();
    println!(
        "release files: the default apply shared the store's bytes by {} ({}); with FERRY_RELEASE_FILES=copy\n  the apply takes {} ({:.2}x)",
        seen.join(", "),
        ms(apply),
        ms(copies),
        copies / apply
    );
    if let Some(s) = summarize(&rows.dd.samples) {
        if s.max > 2.0 * s.min {
            println!(
                "WARNING: dd's own time varies {:.1}x between runs ({} to {}): this disk's write speed is not\n  stable (shared or virtual disk?), so ratios to dd are rough; more --runs help",
                s.max / s.min,
                ms(s.min),
                ms(s.max)
            );
        }
    }
    if rows.strace_note.is_empty() {
        let seen: Vec<String> = rows
            .journal_writes_seen
            .iter()
            .map(|n| n.to_string())
            .collect();
        println!(
            "strace rows: kernel time of fsync/rename syscalls (strace -T), from each run's untimed {V1} install,\n  which does the same fetch/stage/fsync/switch work; the timed rows are never traced.\n  journal writes seen per install: {}",
            seen.join(", ")
        );
    } else {
        println!("{}", rows.strace_note);
    }
    println!(
        "journal overhead ({JOURNAL_STEPS} durable writes): the mechanism's cost measured directly — {JOURNAL_STEPS} x (temp file,\n  write ~300 B, fsync, rename, fsync dir) in the node's state dir by xtask itself, not ferry's code;\n  {:.1}% of the apply median",
        median(&rows.journal.samples).unwrap_or(0.0) / apply * 100.0
    );
    println!(
        "target: ThemisDB's design goal is <= {} for 200 MB on NVMe. This disk's own fsync'd write of {mib} MiB takes {};{}",
        ms(TARGET_SECS),
        ms(dd),
        match durable {
            Some(d) => format!(
                " ferry's stage+fsync+switch takes {} (strace), the whole apply {}.",
                ms(d),
                ms(apply)
            ),
            None => format!(" the whole apply takes {}.", ms(apply)),
        }
    );
    println!("  Compare the ratio to dd, not the absolute time, unless the disk is an NVMe drive.");
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn strace_wraps_the_command_and_keeps_its_environment() {
        let mut inner = Command::new("/bin/ferry");
        inner
            .args(["--config", "/n/ferry.toml", "apply"])
            .env_remove("FERRY_LOG")
            .env("A", "1");
        let c = under_strace(Path::new("/usr/bin/strace"), Path::new("/t.txt"), &inner);
        let args: Vec<OsString> = c.get_args().map(|a| a.to_os_string()).collect();
        let tail: Vec<OsString> = [
            "/t.txt",
            "--",
            "/bin/ferry",
            "--config",
            "/n/ferry.toml",
            "apply",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert!(args.ends_with(&tail), "{args:?}");
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs.contains(&("FERRY_LOG".as_ref(), None)));
        assert!(envs.contains(&("A".as_ref(), Some("1".as_ref()))));
    }

    #[test]
    fn release_tree_has_the_big_file_and_two_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        release_tree(dir.path(), "1.0.0", 4096, 1).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("data/blob.bin"))
                .unwrap()
                .len(),
            4096
        );
        let mode = fs::metadata(dir.path().join("bin/app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(fs::read_to_string(dir.path().join("etc/app.toml"))
            .unwrap()
            .contains("1.0.0"));
    }
}
