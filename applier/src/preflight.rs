//! Pre-flight checks: can this node take the release at all?
//!
//! An update that fails halfway is safe (the old release keeps running) but
//! one that succeeds on a node without the kernel, glibc or tools the
//! release needs is not: the switch goes through and the application breaks
//! afterwards. So before anything is written, `ferry apply` (and `ferry
//! preflight`, which only reports) checks:
//! - `disk`: twice what the update plan writes is free on each filesystem
//!   involved ([`crate::space`]);
//! - `memory`: `MemAvailable` is at least `[preflight]
//!   min_available_memory_mb` (decompression and patching need room, and a
//!   node already swapping should not take on an update);
//! - every requirement of the target manifest (kernel, glibc, command
//!   versions; see [`requirements`]).
//!
//! Every check is run and reported, not just the first failure: an operator
//! fixing a node wants the whole list at once. All checks share one
//! deadline (`[preflight] timeout_ms`, 2 s by default) because `ferry
//! apply` runs from a timer and a probe that hangs must not hold the node's
//! lock: command checks run concurrently, each with what is left of the
//! deadline, and one that runs out of time fails saying so.

pub mod requirements;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use manifests::Manifest;
use serde::{Deserialize, Serialize};

use crate::config::{Config, InstallMode};
use crate::error::{ConfigMistake, NodeError, Result};
use crate::plan::{human_bytes, UpdatePlan};
use crate::space;

/// `[preflight] min_available_memory_mb` when not set.
pub const DEFAULT_MIN_AVAILABLE_MEMORY_MB: u64 = 64;

/// `[preflight] timeout_ms` when not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;

/// `[preflight]`: thresholds of the checks run before an update.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightConfig {
    /// Least `MemAvailable` (from /proc/meminfo) to start an update; 0
    /// turns the memory check off.
    #[serde(default = "default_min_available_memory_mb")]
    pub min_available_memory_mb: u64,
    /// Time all checks together may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_min_available_memory_mb() -> u64 {
    DEFAULT_MIN_AVAILABLE_MEMORY_MB
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl Default for PreflightConfig {
    fn default() -> Self {
        PreflightConfig {
            min_available_memory_mb: DEFAULT_MIN_AVAILABLE_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl PreflightConfig {
    /// For `Config::check`: the mistakes serde cannot see.
    pub fn check(&self) -> std::result::Result<(), ConfigMistake> {
        if self.timeout_ms == 0 {
            return Err(ConfigMistake::new(
                "preflight.timeout_ms must be at least 1 (default 2000)",
            ));
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Why one check failed, worded for the operator: what was found, and
/// what the release or `[preflight]` wants (or what kept the check from
/// looking).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// What one check concluded: `Ok` with what it found, or why it failed.
pub type Verdict = std::result::Result<String, CheckFailed>;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// `disk`, `memory`, `kernel`, `glibc` or `command:<name>`.
    pub name: String,
    pub ok: bool,
    /// What was found, and on failure what is missing.
    pub detail: String,
    /// How long the check took; milliseconds in JSON.
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
}

impl CheckOutcome {
    fn new(name: impl Into<String>, verdict: Verdict) -> Self {
        let (ok, detail) = match verdict {
            Ok(detail) => (true, detail),
            Err(CheckFailed(detail)) => (false, detail),
        };
        CheckOutcome {
            name: name.into(),
            ok,
            detail,
            duration: Duration::ZERO,
        }
    }

    /// Runs `check`, timing it.
    fn timed(name: impl Into<String>, check: impl FnOnce() -> Verdict) -> Self {
        let started = Instant::now();
        let mut outcome = CheckOutcome::new(name, check());
        outcome.duration = started.elapsed();
        outcome
    }
}

impl fmt::Display for CheckOutcome {
    /// `ok   kernel: kernel 6.18.44 (…) satisfies >=5.10 (0 ms)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {} ({} ms)",
            if self.ok { "ok" } else { "FAIL" },
            self.name,
            self.detail,
            self.duration.as_millis()
        )
    }
}

/// Every check's outcome, in a fixed order: disk, memory, then the
/// manifest's requirements in manifest order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    pub checks: Vec<CheckOutcome>,
}

impl PreflightReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn failures(&self) -> Vec<&CheckOutcome> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// `Err` listing every failure when one check failed, for `ferry apply`.
    pub fn refuse_failures(&self, target: &semver::Version) -> Result<()> {
        let failures = self.failures();
        if failures.is_empty() {
            return Ok(());
        }
        Err(NodeError::Preflight(format!(
            "{target} cannot be installed on this node, pre-flight checks failed:\n  {}\nnothing was changed; fix the node (`ferry preflight` shows every check) and run ferry again",
            failures
                .iter()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("\n  ")
        )))
    }
}

impl fmt::Display for PreflightReport {
    /// One line per check.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

/// Runs every check for installing `manifest` by `plan`; never fails as a
/// whole: a check that cannot look fails with what stopped it.
pub fn run(config: &Config, manifest: &Manifest, plan: &UpdatePlan) -> PreflightReport {
    let deadline = Instant::now() + config.preflight.timeout();
    // Commands first, so they run while the local checks do.
    let pending = requirements::start(&manifest.requirements, deadline, config.preflight.timeout());
    let mut checks = vec![
        CheckOutcome::timed("disk", || disk(config, plan)),
        CheckOutcome::timed("memory", || memory(&config.preflight)),
    ];
    checks.extend(pending.finish());
    PreflightReport { checks }
}

/// The space check of [`crate::space`], with what was found when it passes.
fn disk(config: &Config, plan: &UpdatePlan) -> Verdict {
    let state_dir = &config.install.state_dir;
    match config.install.mode {
        InstallMode::Symlink => space::check(state_dir, &config.install.root, plan),
        InstallMode::InPlace => {
            let targets: Vec<PathBuf> = config.install.targets.iter().map(PathBuf::from).collect();
            space::check_in_place(state_dir, &targets, plan)
        }
    }
    .map_err(failed)?;
    let free = space::free_bytes(state_dir).map_err(failed)?;
    Ok(format!(
        "the update writes {} to the store and {} of release files; {} free at {} (ferry wants twice what it writes)",
        human_bytes(plan.state_bytes_needed()),
        human_bytes(plan.release_bytes),
        human_bytes(free),
        state_dir.display()
    ))
}

/// A failure that kept the check from looking (an unreadable filesystem)
/// fails the check with what stopped it.
fn failed(e: NodeError) -> CheckFailed {
    CheckFailed(e.to_string())
}

const MEMINFO: &str = "/proc/meminfo";

fn memory(config: &PreflightConfig) -> Verdict {
    let wanted = config.min_available_memory_mb;
    if wanted == 0 {
        return Ok("not checked ([preflight] min_available_memory_mb = 0)".into());
    }
    let text = std::fs::read_to_string(MEMINFO).map_err(|e| {
        CheckFailed(format!("cannot read {MEMINFO} ({e}); set [preflight] min_available_memory_mb = 0 to skip this check"))
    })?;
    let kib = mem_available_kib(&text).ok_or_else(|| {
        CheckFailed(format!("{MEMINFO} has no MemAvailable line (a kernel before 3.14?); set [preflight] min_available_memory_mb = 0 to skip this check"))
    })?;
    let available = kib.saturating_mul(1024);
    let wanted_bytes = wanted.saturating_mul(1 << 20);
    if available < wanted_bytes {
        return Err(CheckFailed(format!(
            "{} available (MemAvailable), less than the {} [preflight] min_available_memory_mb asks for: free memory or lower the setting",
            human_bytes(available),
            human_bytes(wanted_bytes)
        )));
    }
    Ok(format!(
        "{} available (MemAvailable), at least {} wanted",
        human_bytes(available),
        human_bytes(wanted_bytes)
    ))
}

/// `MemAvailable:   123456 kB` from /proc/meminfo, in KiB.
fn mem_available_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let mut words = rest.split_whitespace();
        let n = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_kib() {
        let meminfo = "MemTotal:       16318480 kB\nMemFree:          462804 kB\nMemAvailable:    9270188 kB\nBuffers:          312644 kB\n";
        assert_eq!(mem_available_kib(meminfo), Some(9_270_188));
        assert_eq!(mem_available_kib("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available_kib("MemAvailable: lots\n"), None);
        assert_eq!(mem_available_kib("MemAvailable: 12 MB\n"), None);
    }

    #[test]
    fn memory_check_compares_with_the_setting() {
        // This machine's own MemAvailable, read here independently.
        let text = std::fs::read_to_string(MEMINFO).unwrap();
        let mib = mem_available_kib(&text).unwrap() / 1024;
        let config = |min| PreflightConfig {
            min_available_memory_mb: min,
            ..PreflightConfig::default()
        };
        // Memory moves between the two reads: stay well clear of the edge.
        assert!(memory(&config(mib / 2)).is_ok());
        let err = memory(&config(mib * 4 + 1024)).unwrap_err().to_string();
        assert!(err.contains("min_available_memory_mb"), "{err}");
        assert!(memory(&config(0)).unwrap().contains("not checked"));
    }

    #[test]
    fn config_defaults_and_refusals() {
        let parsed: PreflightConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, PreflightConfig::default());
        assert_eq!(parsed.min_available_memory_mb, 64);
        assert_eq!(parsed.timeout_ms, 2000);
        let set: PreflightConfig =
            toml::from_str("min_available_memory_mb = 256\ntimeout_ms = 500").unwrap();
        assert_eq!((set.min_available_memory_mb, set.timeout_ms), (256, 500));
        assert!(toml::from_str::<PreflightConfig>("timeout = 5").is_err());
        let zero: PreflightConfig = toml::from_str("timeout_ms = 0").unwrap();
        assert!(zero.check().unwrap_err().to_string().contains("timeout_ms"));
    }

    #[test]
    fn the_section_belongs_to_the_node_configuration() {
        const NODE: &str = "[repository]\nurl = \"file:///srv/repo\"\nchannel = \"stable\"\npublic_keys = [\"/etc/ferry/ferry.pub\"]\n[install]\nroot = \"/opt/app\"\nstate_dir = \"/var/lib/ferry\"\n";
        let parse =
            |extra: &str| Config::parse(&format!("{NODE}{extra}"), std::path::Path::new("t.toml"));
        assert_eq!(parse("").unwrap().preflight, PreflightConfig::default());
        let set = parse("[preflight]\nmin_available_memory_mb = 512\n").unwrap();
        assert_eq!(set.preflight.min_available_memory_mb, 512);
        assert_eq!(set.preflight.timeout_ms, DEFAULT_TIMEOUT_MS);
        let err = parse("[preflight]\ntimeout_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("preflight.timeout_ms"), "{err}");
        let err = parse("[preflight]\nmin_memory = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("min_memory"), "{err}");
    }

    #[test]
    fn report_lists_every_failure() {
        let outcome = |name: &str, ok: bool| CheckOutcome {
            name: name.into(),
            ok,
            detail: format!("{name} detail"),
            duration: Duration::from_millis(3),
        };
        let report = PreflightReport {
            checks: vec![
                outcome("disk", true),
                outcome("kernel", false),
                outcome("command:psql", false),
            ],
        };
        assert!(!report.ok());
        assert_eq!(report.failures().len(), 2);
        assert_eq!(
            report.to_string(),
            "ok   disk: disk detail (3 ms)\nFAIL kernel: kernel detail (3 ms)\nFAIL command:psql: command:psql detail (3 ms)\n"
        );
        let err = report
            .refuse_failures(&semver::Version::new(2, 0, 0))
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::Exit::Preflight.code());
        let text = err.to_string();
        assert!(
            text.contains("kernel: kernel detail")
                && text.contains("command:psql: command:psql detail"),
            "{text}"
        );
        assert!(!text.contains("disk detail"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][1]["duration"], 3);
        assert_eq!(json["checks"][1]["ok"], false);
        let passing = PreflightReport {
            checks: vec![outcome("disk", true)],
        };
        assert!(passing
            .refuse_failures(&semver::Version::new(2, 0, 0))
            .is_ok());
    }
}
