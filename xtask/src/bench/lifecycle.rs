//! `cargo xtask bench lifecycle`: what an update costs the service it
//! updates, measured on the release binaries and the demo service.
//!
//! 1. Restart strategy with 1,000 idle client connections held open (the
//!    ThemisDB design target: stop → switch → start → healthy in at most
//!    5 s): from ferry's own `--output json` events, the time between
//!    `switched` and `live` (the restart command and the health gate), the
//!    whole `ferry apply`, and, from a client asking `/version` every 10 ms
//!    on fresh connections, the longest stretch without an answer.
//! 2. `ferry preflight` wall time (target: at most 2 s).
//! 3. Requests failed during an update under load (4 workers, a new
//!    connection per request): blue-green, and restart as the baseline, in
//!    the same run.
//! 4. Blue-green, `--runs` updates under the same load: the share of the
//!    requests sent while the candidate was being checked that the
//!    candidate answered (`candidate_share.rs`).
//!
//! Everything runs inside a network namespace the bench makes (loopback
//! only, `net.ipv4.tcp_migrate_req=1`, so a closing SO_REUSEPORT listener
//! hands its queue to its sibling): the bench re-executes itself there
//! with `ip netns exec`, so the idle connections and the probing client
//! live beside the services. Needs root and `ip`.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_demo_service::commands::{blue_green_commands, restart_command};
use ferry_demo_service::load::{hold_idle_connections, LoadGenerator, LoadReport};

use super::candidate_share::{self, Marks};
use super::{median, Binaries};
use crate::cmd::{self, cargo, target_dir};
use crate::demo::{toml_string, url_path};

const LATENCY_TARGET_SECS: f64 = 5.0;
const PREFLIGHT_TARGET_SECS: f64 = 2.0;

#[derive(clap::Args)]
pub struct Args {
    /// Timed updates with idle connections held, and `ferry preflight` runs.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Idle client connections held open during each timed update.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    idle_connections: usize,
    /// Internal: run the measurements inside this (already made) network
    /// namespace.
    #[arg(long, hide = true, value_name = "NAME")]
    inside_namespace: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    match &args.inside_namespace {
        Some(_) => measure(args),
        None => run_in_namespace(args),
    }
}

/// Makes the namespace, builds what is measured, runs this command again
/// inside the namespace, and deletes the namespace whatever happens.
fn run_in_namespace(args: &Args) -> Result<()> {
    Binaries::build()?;
    cmd::banner("bench lifecycle: building the demo service (release)");
    cmd::run(cargo().args(["build", "--release", "-p", "ferry-demo-service"]))?;
    let name = format!("ferry-bench-{}", std::process::id());
    cmd::run(Command::new("ip").args(["netns", "add", &name]))
        .context("bench lifecycle needs root and `ip netns` (iproute2)")?;
    let result = (|| {
        cmd::run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]))?;
        cmd::run(Command::new("ip").args([
            "netns",
            "exec",
            &name,
            "sysctl",
            "-qw",
            "net.ipv4.tcp_migrate_req=1",
        ]))?;
        let me = std::env::current_exe()?;
        cmd::run(
            Command::new("ip")
                .args(["netns", "exec", &name])
                .arg(me)
                .args(["bench", "lifecycle", "--runs"])
                .arg(args.runs.to_string())
                .arg("--idle-connections")
                .arg(args.idle_connections.to_string())
                .args(["--inside-namespace", &name]),
        )
    })();
    let deleted = cmd::run(Command::new("ip").args(["netns", "delete", &name]));
    result.and(deleted)
}

struct Setup {
    bins: Binaries,
    demo_service: PathBuf,
    work: PathBuf,
    repo: PathBuf,
    secret: PathBuf,
    public: PathBuf,
}

fn measure(args: &Args) -> Result<()> {
    let release = target_dir().join("release");
    let bins = Binaries {
        ferry: release.join("ferry"),
        publish: release.join("ferry-publish"),
    };
    let scratch = tempfile::Builder::new()
        .prefix("ferry-bench-lifecycle-")
        .tempdir()?;
    let work = scratch.path().to_path_buf();
    let setup = Setup {
        bins,
        demo_service: release.join("demo-service"),
        repo: work.join("repo"),
        secret: work.join("keys/ferry.key"),
        public: work.join("keys/ferry.pub"),
        work,
    };
    fs::create_dir_all(setup.work.join("keys"))?;
    cmd::run(
        Command::new(&setup.bins.publish)
            .args(["keygen", "--secret-key"])
            .arg(&setup.secret)
            .arg("--public-key")
            .arg(&setup.public)
            .env_remove("FERRY_KEY_PASSWORD"),
    )?;
    // 1.0.0, then one version per timed update, then one for the update
    // under load.
    let versions: Vec<String> = (0..=args.runs + 1).map(|i| format!("1.0.{i}")).collect();
    for version in &versions {
        setup.publish(version)?;
    }

    cmd::banner(&format!(
        "bench lifecycle: restart strategy, {} idle connections held",
        args.idle_connections
    ));
    let load_at_start = candidate_share::loadavg();
    let restart = Node::new(&setup, "restart", 18080, Strategy::Restart, None)?;
    restart.apply(&versions[0])?;
    let mut gate = Vec::new();
    let mut total = Vec::new();
    let mut outage = Vec::new();
    for version in &versions[1..=args.runs as usize] {
        let idle = hold_idle_connections(restart.addr, args.idle_connections)
            .with_context(|| format!("cannot hold {} idle connections", args.idle_connections))?;
        let prober = Prober::start(restart.addr);
        let started = Instant::now();
        let events = restart.apply(version)?;
        let wall = started.elapsed().as_secs_f64();
        let gap = prober.stop();
        drop(idle);
        let switch_to_live = event_gap(&events, "switched", "live")?;
        println!(
            "update to {version}: switched -> live {switch_to_live:.3} s, apply {wall:.3} s, longest gap seen by a client {gap:.3} s"
        );
        gate.push(switch_to_live);
        total.push(wall);
        outage.push(gap);
    }

    cmd::banner("bench lifecycle: ferry preflight");
    let mut preflight = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let out = restart.ferry(&["preflight"]).output()?;
        ensure!(
            out.status.success(),
            "ferry preflight failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        preflight.push(started.elapsed().as_secs_f64());
    }
    println!("ferry preflight: {preflight:.3?} s");

    cmd::banner("bench lifecycle: an update under load (4 workers), restart vs blue-green");
    let last = versions.last().expect("versions");
    let restart_load = restart.update_under_load(last)?;
    let blue_green = Node::new(&setup, "blue-green", 18081, Strategy::BlueGreen, None)?;
    blue_green.apply(&versions[0])?;
    let blue_green_load = blue_green.update_under_load(last)?;
    restart.stop_all();
    blue_green.stop_all();

    cmd::banner(&format!(
        "bench lifecycle: the blue-green candidate's share of requests while it is checked, {} updates (4 workers)",
        args.runs
    ));
    let marks = Marks::new(&setup.work.join("marks"))?;
    let checked = Node::new(
        &setup,
        "blue-green-checked",
        18082,
        Strategy::BlueGreen,
        Some(&marks),
    )?;
    checked.apply(&versions[0])?;
    let mut windows = Vec::new();
    for version in &versions[1..=args.runs as usize] {
        let window = candidate_share::measure(checked.addr, &marks, version, || {
            checked.apply(version).map(drop)
        });
        let window = match window {
            Ok(w) => w,
            Err(e) => {
                checked.stop_all();
                return Err(e);
            }
        };
        println!(
            "update to {version}: checked for {:.3} s; the candidate answered {} of {} requests sent meanwhile ({}), {} of {} once it listened ({}); {} failed",
            window.seconds,
            window.by_candidate,
            window.answered,
            percent(window.share()),
            window.by_candidate_once_listening,
            window.answered_once_listening,
            percent(window.share_once_listening()),
            window.failed,
        );
        windows.push(window);
    }
    checked.stop_all();

    cmd::banner("bench lifecycle: results");
    let (gate_m, total_m, outage_m, preflight_m) = (
        median(&gate).unwrap_or(f64::NAN),
        median(&total).unwrap_or(f64::NAN),
        median(&outage).unwrap_or(f64::NAN),
        median(&preflight).unwrap_or(f64::NAN),
    );
    println!(
        "restart with {} idle connections, median of {}: switched -> live {gate_m:.3} s, whole apply {total_m:.3} s, longest client gap {outage_m:.3} s ({} target <= {LATENCY_TARGET_SECS} s)",
        args.idle_connections,
        gate.len(),
        verdict(gate_m <= LATENCY_TARGET_SECS && outage_m <= LATENCY_TARGET_SECS),
    );
    println!(
        "ferry preflight, median of {}: {preflight_m:.3} s ({} target <= {PREFLIGHT_TARGET_SECS} s)",
        preflight.len(),
        verdict(preflight_m <= PREFLIGHT_TARGET_SECS)
    );
    for (name, report) in [("restart", &restart_load), ("blue-green", &blue_green_load)] {
        println!(
            "{name} under load: {} failed of {} requests; answered by {:?}",
            report.failed,
            report.ok + report.failed,
            report.versions
        );
    }
    println!(
        "{}: blue-green failed no request under load",
        verdict(blue_green_load.failed == 0)
    );
    let shares: Vec<f64> = windows.iter().filter_map(|w| w.share()).collect();
    let listening: Vec<f64> = windows
        .iter()
        .filter_map(|w| w.share_once_listening())
        .collect();
    let seconds: Vec<f64> = windows.iter().map(|w| w.seconds).collect();
    println!(
        "blue-green candidate while checked, median of {}: answered {} of live requests (per update {}), {} once it listened; checked for {:.3} s",
        shares.len(),
        percent(median(&shares)),
        shares.iter().map(|s| percent(Some(*s))).collect::<Vec<_>>().join(", "),
        percent(median(&listening)),
        median(&seconds).unwrap_or(f64::NAN),
    );
    // A window holds tens of requests, so one update's share is coarse;
    // all of them together say more.
    let sum = |f: fn(&candidate_share::Window) -> u64| windows.iter().map(f).sum::<u64>();
    let (by_candidate, answered) = (sum(|w| w.by_candidate), sum(|w| w.answered));
    let (by_candidate_listening, answered_listening) = (
        sum(|w| w.by_candidate_once_listening),
        sum(|w| w.answered_once_listening),
    );
    println!(
        "blue-green candidate while checked, all {} updates together: {by_candidate} of {answered} requests ({}), {by_candidate_listening} of {answered_listening} once it listened ({})",
        windows.len(),
        percent(candidate_share::ratio(by_candidate, answered)),
        percent(candidate_share::ratio(by_candidate_listening, answered_listening)),
    );
    println!(
        "machine load (1, 5, 15 min): {load_at_start} at the start, {} at the end",
        candidate_share::loadavg()
    );
    Ok(())
}

fn percent(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("{:.1} %", s * 100.0),
        None => "n/a (no request in the window)".into(),
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

impl Setup {
    fn publish(&self, version: &str) -> Result<()> {
        let tree = self.work.join("build").join(version);
        fs::create_dir_all(tree.join("bin"))?;
        fs::copy(&self.demo_service, tree.join("bin/demo-service"))
            .with_context(|| format!("cannot copy {}", self.demo_service.display()))?;
        fs::write(
            tree.join("demo.toml"),
            format!("version = \"{version}\"\nhealthy = true\n"),
        )?;
        let out = Command::new(&self.bins.publish)
            .args(["release", "--repo"])
            .arg(&self.repo)
            .arg("--key")
            .arg(&self.secret)
            .args(["--version", version, "--channel", "stable"])
            .arg(&tree)
            .env_remove("FERRY_KEY_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()?;
        ensure!(
            out.status.success(),
            "publishing {version} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Restart,
    BlueGreen,
}

/// A node whose release is the demo service on `addr`.
struct Node {
    ferry: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Node {
    /// A node of `strategy`; a blue-green one with `marks` writes the
    /// candidate's start and its gate's pass there.
    fn new(
        setup: &Setup,
        name: &str,
        port: u16,
        strategy: Strategy,
        marks: Option<&Marks>,
    ) -> Result<Node> {
        let dir = setup.work.join("nodes").join(name);
        fs::create_dir_all(dir.join("pids"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let root = dir.join("root");
        let log = dir.join("demo.log");
        let service = match strategy {
            Strategy::Restart => format!(
                "strategy = \"restart\"\nrestart_command = {}\n",
                toml_string(&restart_command(
                    &root,
                    &addr.to_string(),
                    &dir.join("pids/demo.pid"),
                    &log
                ))
            ),
            Strategy::BlueGreen => {
                let (start, stop) = blue_green_commands(&addr.to_string(), &dir.join("pids"), &log);
                let (start, stop) = match marks {
                    Some(marks) => (marks.start(&start), marks.stop(&stop)),
                    None => (start, stop),
                };
                format!(
                    "strategy = \"blue-green\"\nstart_command = {}\nstop_command = {}\n",
                    toml_string(&start),
                    toml_string(&stop)
                )
            }
        };
        let config = format!(
            "[repository]\nurl = {}\nchannel = \"stable\"\npublic_keys = [{}]\n\n[install]\nroot = {}\nstate_dir = {}\n\n\
             [service]\n{service}\n[health]\nurl = \"http://{addr}/health\"\nexpect_version = true\ninterval_ms = 20\nretries = 500\ntimeout_seconds = 20\n",
            toml_string(&format!("file://{}", url_path(&setup.repo))),
            toml_string(&setup.public.display().to_string()),
            toml_string(&root.display().to_string()),
            toml_string(&dir.join("state").display().to_string()),
        );
        let path = dir.join("ferry.toml");
        fs::write(&path, config)?;
        Ok(Node {
            ferry: setup.bins.ferry.clone(),
            config: path,
            dir,
            addr,
        })
    }

    fn ferry(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ferry);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("FERRY_CONFIG");
        c
    }

    /// `ferry --output json apply --version V`; its events.
    fn apply(&self, version: &str) -> Result<Vec<serde_json::Value>> {
        let out = self
            .ferry(&["--output", "json", "apply", "--version", version])
            .output()?;
        ensure!(
            out.status.success(),
            "ferry apply --version {version} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON event: {l}")))
            .collect()
    }

    fn update_under_load(&self, version: &str) -> Result<LoadReport> {
        let load = LoadGenerator::start(self.addr, 4);
        thread::sleep(Duration::from_millis(1000));
        let applied = self.apply(version);
        thread::sleep(Duration::from_millis(500));
        let report = load.stop();
        applied?;
        Ok(report)
    }

    /// Stops every demo service this node started.
    fn stop_all(&self) {
        if let Ok(entries) = fs::read_dir(self.dir.join("pids")) {
            for entry in entries.flatten() {
                if let Ok(pid) = fs::read_to_string(entry.path()) {
                    let _ = Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
    }
}

/// Seconds between the first `from` event and the first `to` event.
fn event_gap(events: &[serde_json::Value], from: &str, to: &str) -> Result<f64> {
    let at = |name: &str| -> Result<jiff::Timestamp> {
        let event = events
            .iter()
            .find(|e| e["event"] == name)
            .with_context(|| format!("no {name:?} event in {events:?}"))?;
        let text = event["timestamp"]
            .as_str()
            .context("an event without timestamp")?;
        text.parse()
            .with_context(|| format!("bad timestamp {text}"))
    };
    let span = at(to)?.duration_since(at(from)?);
    Ok(span.as_secs_f64())
}

/// A client asking `/version` every 10 ms on a fresh connection; the
/// longest stretch between two answers.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<f64>,
}

impl Prober {
    fn start(addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut last = Instant::now();
            let mut longest = 0f64;
            while !flag.load(Ordering::Relaxed) {
                if ask_version(addr).is_ok() {
                    longest = longest.max(last.elapsed().as_secs_f64());
                    last = Instant::now();
                }
                thread::sleep(Duration::from_millis(10));
            }
            longest.max(last.elapsed().as_secs_f64())
        });
        Prober { stop, thread }
    }

    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(f64::NAN)
    }
}

fn ask_version(addr: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    write!(
        stream,
        "GET /version HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    if !text.starts_with("HTTP/1.1 200") {
        bail!("not 200");
    }
    Ok(text)
}
