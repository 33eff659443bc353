//! `cargo xtask bench rollout`: what the rollout coordinator costs at fleet
//! scale, against the ideal rollout time.
//!
//! A fleet of fake nodes (`ferry_tests::fleet`: each `apply` is a shell
//! script that sleeps `--apply-seconds`, then records the new version)
//! is updated by the release `ferry rollout start` through the `command`
//! transport, run as a child process. Measured per run:
//!
//! - the initial status query of every node, alone: `ferry rollout start
//!   --dry-run --json` (reads all versions, plans, prints);
//! - the rollout: wall time, the coordinator's own CPU (user + sys of all
//!   its threads, from `/proc/PID/stat` of the exited, not yet reaped,
//!   child), the CPU of what it ran (shells and fake nodes: the children's
//!   times), and its peak RSS (`ru_maxrss` from `wait4`: the larger of the
//!   coordinator's and its biggest child's, and the coordinator is far the
//!   bigger);
//! - the ideal: stages × apply time, with the stages the plan really has
//!   (canary, follower batches, the leader alone), so the ratio is the
//!   coordinator's overhead, not the policy's.
//!
//! The fake nodes run on the same cores as the coordinator, so on a small
//! machine their CPU slows the rollout too; both are reported.

use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use ferry_tests::fleet::FakeFleet;

use super::{median, summarize, Binaries, Scratch};
use crate::cmd;

const FROM: &str = "1.0.0";
const TO: &str = "1.1.0";

#[derive(clap::Args)]
pub struct Args {
    /// Fake nodes in the fleet (one of them the leader).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(3..=100_000))]
    nodes: u32,
    /// How long each fake node's apply takes.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    apply_seconds: f64,
    /// `max_unavailable`: nodes updated at once.
    #[arg(long, value_name = "N", default_value_t = 50)]
    max_unavailable: u32,
    /// Nodes in the canary stage.
    #[arg(long, value_name = "N", default_value_t = 10)]
    canary: u32,
    /// Rollouts measured (each on a fresh fleet); medians are reported.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Where the fleet is made (default: cargo's target directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
struct ChildCost {
    wall: f64,
    /// user + sys of the process itself (all its threads).
    own_cpu: f64,
    /// user + sys of the children it waited for.
    children_cpu: f64,
    max_rss_kib: i64,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.apply_seconds >= 0.0,
        "--apply-seconds must be 0 or more"
    );
    let bins = Binaries::build()?;
    println!("loadavg at start: {}", loadavg());
    let mut status = Vec::new();
    let mut rollouts: Vec<ChildCost> = Vec::new();
    let mut ideal = 0.0;
    let mut stages = 0;
    for run in 1..=args.runs {
        let scratch = Scratch::create(args.dir.as_deref(), "rollout", 64 * super::MIB)?;
        let fleet = FakeFleet::create(
            &scratch.path().join("fleet"),
            args.nodes as usize,
            FROM,
            args.apply_seconds,
        )
        .context("cannot create the fake fleet")?;
        let inventory = fleet.write_inventory(&format!(
            "canary = {}\nmax_unavailable = {}\nbake_seconds = 0\npromote = \"auto\"\nrollback_on_failure = \"all\"",
            args.canary, args.max_unavailable
        ))?;
        let state_dir = scratch.path().join("coordinator");
        let coordinator = |dry_run: bool| {
            let mut command = Command::new(&bins.ferry);
            command
                .args(["rollout", "start", "--inventory"])
                .arg(&inventory)
                .args(["--version", TO, "--state-dir"])
                .arg(&state_dir)
                .env_remove("FERRY_CONFIG");
            if dry_run {
                command.args(["--dry-run", "--json"]);
            }
            command
        };

        let (cost, stdout) = measure(&mut coordinator(true), scratch.path(), "status")?;
        let plan: serde_json::Value = serde_json::from_str(&stdout)
            .context("`ferry rollout start --dry-run --json` printed no JSON")?;
        stages = plan["plan"]["stages"]
            .as_array()
            .context("the dry run's plan has no stages")?
            .len();
        ideal = stages as f64 * args.apply_seconds;
        status.push(cost);

        let (cost, _) = measure(&mut coordinator(false), scratch.path(), "rollout")?;
        check_fleet(&fleet)?;
        println!(
            "run {run}: rollout {:.2} s (ideal {ideal:.2} s, {:.2}x), coordinator CPU {:.2} s, children CPU {:.2} s, peak RSS {} KiB; status query {:.3} s; loadavg {}",
            cost.wall,
            cost.wall / ideal.max(f64::MIN_POSITIVE),
            cost.own_cpu,
            cost.children_cpu,
            cost.max_rss_kib,
            status.last().map_or(0.0, |c| c.wall),
            loadavg()
        );
        rollouts.push(cost);
        scratch.remove()?;
    }

    let pick = |costs: &[ChildCost], f: fn(&ChildCost) -> f64| -> Vec<f64> {
        costs.iter().map(f).collect()
    };
    let wall = pick(&rollouts, |c| c.wall);
    let line = |name: &str, samples: &[f64], unit: &str| {
        let s = summarize(samples).expect("at least one run");
        println!(
            "{name:<34} {:>10.3} {unit}  (min {:.3}, max {:.3})",
            s.median, s.min, s.max
        );
    };
    cmd::banner(&format!(
        "bench rollout: {} fake nodes, apply {} s, max_unavailable {}, canary {}, median of {}",
        args.nodes, args.apply_seconds, args.max_unavailable, args.canary, args.runs
    ));
    line("rollout wall time", &wall, "s");
    println!(
        "{:<34} {:>10.3} s  ({stages} stages x {} s: canary, follower batches, leader)",
        "ideal", ideal, args.apply_seconds
    );
    println!(
        "{:<34} {:>10.2} x",
        "wall / ideal",
        median(&wall).unwrap_or(0.0) / ideal.max(f64::MIN_POSITIVE)
    );
    line(
        "coordinator CPU (user+sys)",
        &pick(&rollouts, |c| c.own_cpu),
        "s",
    );
    line(
        "children CPU (shells, fake nodes)",
        &pick(&rollouts, |c| c.children_cpu),
        "s",
    );
    line(
        "coordinator peak RSS",
        &pick(&rollouts, |c| c.max_rss_kib as f64 / 1024.0),
        "MiB",
    );
    line(
        "status query of every node (dry run)",
        &pick(&status, |c| c.wall),
        "s",
    );
    line("  its coordinator CPU", &pick(&status, |c| c.own_cpu), "s");
    println!("loadavg at end: {}", loadavg());
    Ok(())
}

/// Every node on `TO`, each applied exactly once: a rollout that skipped or
/// repeated nodes would make the timing meaningless.
fn check_fleet(fleet: &FakeFleet) -> Result<()> {
    for name in &fleet.names {
        let current = fleet.current(name);
        let applies = fleet.log(name).iter().filter(|op| op.op == "apply").count();
        if current.as_deref() != Some(TO) || applies != 1 {
            bail!(
                "node {name} runs {current:?} after {applies} applies: the rollout did not update every node exactly once"
            );
        }
    }
    Ok(())
}

/// Runs `command` to its end, stdout and stderr to files in `dir`, and
/// returns its cost and stdout. Fails, with its output, unless it exits 0.
fn measure(command: &mut Command, dir: &Path, name: &str) -> Result<(ChildCost, String)> {
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    command
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?);
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::display(command)))?;
    let pid = child.id() as libc::pid_t;
    // Wait for the exit without reaping, so /proc still has its times.
    // SAFETY: waitid writes only into `info`, which outlives the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let waited = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    ensure!(waited == 0, "waitid: {}", std::io::Error::last_os_error());
    let wall = started.elapsed().as_secs_f64();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let (own_cpu, children_cpu) = parse_stat_times(&stat, clock_ticks())
        .with_context(|| format!("cannot parse /proc/{pid}/stat: {stat}"))?;
    let mut raw_status = 0;
    // SAFETY: wait4 writes only into `raw_status` and `usage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
    ensure!(reaped == pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let status = std::process::ExitStatus::from_raw(raw_status);
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "`{}` failed ({status})\n--- stdout (end) ---\n{}\n--- stderr ---\n{}",
            cmd::display(command),
            tail(&stdout, 3000),
            tail(&fs::read_to_string(&stderr_path).unwrap_or_default(), 3000)
        );
    }
    Ok((
        ChildCost {
            wall,
            own_cpu,
            children_cpu,
            max_rss_kib: usage.ru_maxrss,
        },
        stdout,
    ))
}

fn tail(text: &str, bytes: usize) -> &str {
    let start = text.len().saturating_sub(bytes);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// (utime + stime, cutime + cstime) in seconds from `/proc/PID/stat`,
/// whose second field (the command name, in parentheses) may hold spaces.
fn parse_stat_times(stat: &str, ticks_per_second: f64) -> Option<(f64, f64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14..=17 of the whole line; the state (field 3) is index 0 here.
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse::<f64>().ok() };
    Some((
        (field(14)? + field(15)?) / ticks_per_second,
        (field(16)? + field(17)?) / ticks_per_second,
    ))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_past_a_name_with_spaces() {
        let stat = "4242 (my ferry) Z 1 4242 4242 0 -1 4194560 100 200 0 0 150 50 300 100 20 0 1 0";
        assert_eq!(parse_stat_times(stat, 100.0), Some((2.0, 4.0)));
        assert_eq!(parse_stat_times("4242 (x) Z 1", 100.0), None);
    }
}
