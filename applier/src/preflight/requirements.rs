//! Measuring a release's requirements on this node: kernel, glibc and tool
//! versions (docs/FORMAT.md, "Requirements").
//!
//! Each requirement is checked on its own thread, because command checks
//! run shell lines that may be slow or hang; all of them share the pre-flight
//! deadline. [`Pending::finish`] waits for them until that deadline (plus a
//! moment for a killed command to be reaped) and fails the ones that have
//! not answered, so a probe that ignores SIGTERM cannot stretch the wait.
//!
//! glibc cannot be asked from inside ferry: the node binary is static musl.
//! It is read from `getconf GNU_LIBC_VERSION`, else from the first line of
//! `ldd --version`; a node with neither saying "glibc" has no glibc.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use manifests::manifest::Requirement;
use manifests::requirement::Need;
use semver::{Version, VersionReq};

use super::{CheckFailed, CheckOutcome, Verdict};
use crate::shell::{Finished, ShellCommand};

/// How long after the deadline a check may still report: a command killed
/// on the deadline needs a moment to be reaped and its output collected.
const REAP_GRACE: Duration = Duration::from_millis(200);

/// Requirement checks running on their threads.
pub struct Pending {
    labels: Vec<String>,
    results: mpsc::Receiver<(usize, CheckOutcome)>,
    started: Instant,
    deadline: Instant,
    budget: Duration,
}

/// Starts one thread per requirement; each gets what is left until
/// `deadline` (the whole pre-flight `budget`, for messages).
pub fn start(requirements: &[Requirement], deadline: Instant, budget: Duration) -> Pending {
    let (sender, results) = mpsc::channel();
    let labels: Vec<String> = requirements.iter().map(Requirement::label).collect();
    for (i, requirement) in requirements.iter().enumerate() {
        let to_report = sender.clone();
        let requirement = requirement.clone();
        let label = labels[i].clone();
        let spawned = thread::Builder::new()
            .name(format!("preflight {label}"))
            .spawn(move || {
                let outcome = CheckOutcome::timed(label, || check(&requirement, deadline, budget));
                // The receiver is gone when the deadline passed: nobody waits.
                let _ = to_report.send((i, outcome));
            });
        if let Err(e) = spawned {
            let _ = sender.send((
                i,
                CheckOutcome::new(
                    labels[i].clone(),
                    Err(CheckFailed(format!("cannot start the check: {e}"))),
                ),
            ));
        }
    }
    Pending {
        labels,
        results,
        started: Instant::now(),
        deadline,
        budget,
    }
}

impl Pending {
    /// Every requirement's outcome, in manifest order; those still running
    /// at the deadline fail as timed out.
    pub fn finish(self) -> Vec<CheckOutcome> {
        let mut outcomes: Vec<Option<CheckOutcome>> = vec![None; self.labels.len()];
        let give_up = self.deadline + REAP_GRACE;
        while outcomes.iter().any(Option::is_none) {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok((i, outcome)) => outcomes[i] = Some(outcome),
                Err(_) => break,
            }
        }
        outcomes
            .into_iter()
            .zip(&self.labels)
            .map(|(outcome, label)| {
                outcome.unwrap_or_else(|| CheckOutcome {
                    name: label.clone(),
                    ok: false,
                    detail: format!(
                        "timed out: no answer within the {} ms all pre-flight checks share ([preflight] timeout_ms)",
                        self.budget.as_millis()
                    ),
                    duration: self.started.elapsed(),
                })
            })
            .collect()
    }
}

/// One requirement, measured. `Ok` and `Err` both carry the detail.
fn check(requirement: &Requirement, deadline: Instant, budget: Duration) -> Verdict {
    // A verified manifest was validated; this only guards a future caller.
    let need = requirement
        .need()
        .map_err(|e| CheckFailed(format!("cannot be checked: {e}")))?;
    match need {
        Need::Kernel(constraint) => kernel(&constraint),
        Need::Glibc(constraint) => glibc(&constraint, deadline, budget),
        Need::Command {
            name,
            command,
            constraint,
        } => tool(&name, &command, &constraint, deadline, budget),
    }
}

fn kernel(constraint: &VersionReq) -> Verdict {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let found = first_version(&release).ok_or_else(|| {
        CheckFailed(format!("cannot read a version from the kernel release {release:?} (uname -r); the release requires kernel {constraint}"))
    })?;
    compare(
        &format!("kernel {found} (uname -r: {release})"),
        &found,
        constraint,
    )
}

fn glibc(constraint: &VersionReq, deadline: Instant, budget: Duration) -> Verdict {
    let getconf = probe("getconf GNU_LIBC_VERSION", deadline, budget)?;
    if let Some(found) = getconf.succeeded().and_then(glibc_from) {
        return compare(
            &format!("glibc {found} (getconf GNU_LIBC_VERSION)"),
            &found,
            constraint,
        );
    }
    // `ldd --version` exits 1 on musl, so its output matters even then.
    let ldd = probe("ldd --version", deadline, budget)?;
    let ldd_line = ldd.said().lines().next().unwrap_or("").trim().to_string();
    if let Some(found) = glibc_from(&ldd_line) {
        return compare(
            &format!("glibc {found} (ldd --version: {ldd_line})"),
            &found,
            constraint,
        );
    }
    let getconf_said = getconf
        .said()
        .lines()
        .next()
        .unwrap_or("no output")
        .trim()
        .to_string();
    Err(CheckFailed(format!(
        "no glibc found on this node, the release requires glibc {constraint}: `getconf GNU_LIBC_VERSION` said {getconf_said:?}, `ldd --version` said {:?}",
        if ldd_line.is_empty() { "nothing" } else { &ldd_line }
    )))
}

/// What a system probe said: a probe that fails still says something worth
/// reading (`ldd --version` exits 1 on musl, naming musl).
enum ProbeAnswer {
    /// It exited 0, with this output.
    Succeeded(String),
    /// It failed, with this output (or why it could not start).
    Failed(String),
}

impl ProbeAnswer {
    fn succeeded(&self) -> Option<&str> {
        match self {
            ProbeAnswer::Succeeded(out) => Some(out),
            ProbeAnswer::Failed(_) => None,
        }
    }

    fn said(&self) -> &str {
        match self {
            ProbeAnswer::Succeeded(out) | ProbeAnswer::Failed(out) => out,
        }
    }
}

/// Runs a system probe within what is left of the deadline; `Err` (a
/// failed check) when it timed out.
fn probe(line: &str, deadline: Instant, budget: Duration) -> Result<ProbeAnswer, CheckFailed> {
    let finished = run_before(line, line, deadline);
    match finished {
        Err(e) => Ok(ProbeAnswer::Failed(format!("could not be started: {e}"))),
        Ok(f) if f.timed_out => Err(timed_out(line, budget)),
        Ok(f) if f.success() => Ok(ProbeAnswer::Succeeded(f.output)),
        Ok(f) => Ok(ProbeAnswer::Failed(f.output)),
    }
}

fn tool(
    name: &str,
    command: &str,
    constraint: &VersionReq,
    deadline: Instant,
    budget: Duration,
) -> Verdict {
    let what = format!("version probe of {name}");
    let finished = run_before(&what, command, deadline).map_err(|e| {
        CheckFailed(format!(
            "`{command}` could not be started ({e}); the release requires {name} {constraint}"
        ))
    })?;
    if finished.timed_out {
        return Err(timed_out(command, budget));
    }
    if !finished.success() {
        return Err(CheckFailed(format!(
            "`{command}` {}; the release requires {name} {constraint}",
            finished.describe(budget)
        )));
    }
    let found = first_version(&finished.output).ok_or_else(|| {
        CheckFailed(format!(
            "`{command}` printed no version (x.y or x.y.z): {:?}; the release requires {name} {constraint}",
            tail(&finished.output)
        ))
    })?;
    compare(&format!("{name} {found} (`{command}`)"), &found, constraint)
}

fn run_before(what: &str, line: &str, deadline: Instant) -> std::io::Result<Finished> {
    ShellCommand {
        what,
        line,
        env: Vec::new(),
        cwd: None,
        timeout: deadline.saturating_duration_since(Instant::now()),
    }
    .run()
}

fn timed_out(line: &str, budget: Duration) -> CheckFailed {
    CheckFailed(format!(
        "`{line}` timed out: no answer within the {} ms all pre-flight checks share ([preflight] timeout_ms)",
        budget.as_millis()
    ))
}

fn compare(found: &str, version: &Version, constraint: &VersionReq) -> Verdict {
    if constraint.matches(version) {
        Ok(format!("{found} satisfies {constraint}"))
    } else {
        Err(CheckFailed(format!(
            "{found} does not satisfy {constraint}, which the release requires"
        )))
    }
}

/// The last line of some output, shortened, for a message.
fn tail(output: &str) -> String {
    let line = output.trim().lines().last().unwrap_or("");
    line.chars().take(200).collect()
}

/// The version in a glibc probe's answer, if it names glibc at all:
/// `glibc 2.36` (getconf), `ldd (Debian GLIBC 2.36-9+deb12u14) 2.36`,
/// `ldd (GNU libc) 2.31`. musl's `musl libc (x86_64)` is not glibc.
fn glibc_from(text: &str) -> Option<Version> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("glibc") || lower.contains("gnu libc") {
        first_version(text)
    } else {
        None
    }
}

/// The first `x.y[.z]` in `text`, as a version (`x.y` is `x.y.0`); a
/// number is only taken from its first digit, so `x86_64 1.2` is 1.2.0.
/// Lenient on purpose: `6.18.44-fc-v669` is 6.18.44, `psql (PostgreSQL)
/// 14.10` is 14.10.0. Pre-release and build parts are dropped.
pub fn first_version(text: &str) -> Option<Version> {
    let bytes = text.as_bytes();
    let digits_at = |from: usize| -> usize {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let number = |from: usize, len: usize| -> Option<u64> { text[from..from + len].parse().ok() };
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if !starts_number {
            i += 1;
            continue;
        }
        let major_len = digits_at(i);
        let after_major = i + major_len;
        if bytes.get(after_major) == Some(&b'.') {
            let minor_len = digits_at(after_major + 1);
            if minor_len > 0 {
                let after_minor = after_major + 1 + minor_len;
                let patch_len = match bytes.get(after_minor) {
                    Some(b'.') => digits_at(after_minor + 1),
                    _ => 0,
                };
                let major = number(i, major_len);
                let minor = number(after_major + 1, minor_len);
                let patch = if patch_len > 0 {
                    number(after_minor + 1, patch_len)
                } else {
                    Some(0)
                };
                if let (Some(major), Some(minor), Some(patch)) = (major, minor, patch) {
                    return Some(Version::new(major, minor, patch));
                }
            }
        }
        i = after_major;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn the_first_dotted_number_is_the_version() {
        for (text, expected) in [
            ("6.18.44-fc-v669", "6.18.44"),
            ("5.10", "5.10.0"),
            ("5.15.0-91-generic", "5.15.0"),
            ("4.19.0+", "4.19.0"),
            ("tool 1.2.3", "1.2.3"),
            (
                "psql (PostgreSQL) 14.10 (Debian 14.10-1.pgdg120+1)",
                "14.10.0",
            ),
            (
                "redis-server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64",
                "7.2.4",
            ),
            ("x86_64 build, version 1.2", "1.2.0"),
            ("1.2.3.4", "1.2.3"),
            ("glibc 2.36", "2.36.0"),
            ("ldd (Debian GLIBC 2.36-9+deb12u14) 2.36", "2.36.0"),
            ("v3.011.007", "3.11.7"),
        ] {
            assert_eq!(first_version(text), Some(v(expected)), "{text:?}");
        }
        for text in [
            "",
            "no version here",
            "build 42",
            "1.",
            ".5",
            "x86_64",
            "99999999999999999999.1",
        ] {
            assert_eq!(first_version(text), None, "{text:?}");
        }
    }

    #[test]
    fn glibc_is_recognised_by_name_only() {
        assert_eq!(glibc_from("glibc 2.36\n"), Some(v("2.36.0")));
        assert_eq!(glibc_from("ldd (GNU libc) 2.31"), Some(v("2.31.0")));
        assert_eq!(
            glibc_from("ldd (Ubuntu GLIBC 2.35-0ubuntu3.8) 2.35"),
            Some(v("2.35.0"))
        );
        assert_eq!(glibc_from("musl libc (x86_64)"), None);
        assert_eq!(glibc_from("Version 1.2.4"), None);
    }

    #[test]
    fn constraints_decide_and_messages_say_both_sides() {
        let req = VersionReq::parse(">=2").unwrap();
        let err = compare("tool 1.2.3 (`tool -V`)", &v("1.2.3"), &req).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool 1.2.3 (`tool -V`) does not satisfy >=2, which the release requires"
        );
        let ok = compare(
            "tool 1.2.3",
            &v("1.2.3"),
            &VersionReq::parse(">=1.2").unwrap(),
        );
        assert_eq!(ok.unwrap(), "tool 1.2.3 satisfies >=1.2");
    }

    /// Real shell commands, one deadline.
    #[test]
    fn commands_are_measured_concurrently_within_one_deadline() {
        let requirements = [
            Requirement::command("old", ">=2", "echo tool 1.2.3"),
            Requirement::command("new", ">=1.2", "echo tool 1.2.3 >&2"),
            Requirement::command("slow", ">=1", "sleep 10"),
            Requirement::command("also-slow", ">=1", "sleep 10"),
            Requirement::command("broken", ">=1", "echo oops; exit 3"),
            Requirement::command("silent", ">=1", "true"),
        ];
        let budget = Duration::from_millis(700);
        let started = Instant::now();
        let outcomes = start(&requirements, started + budget, budget).finish();
        let elapsed = started.elapsed();
        // Two sleeps in sequence would take twice the budget.
        assert!(elapsed < budget + Duration::from_millis(600), "{elapsed:?}");
        let by_name = |name: &str| {
            outcomes
                .iter()
                .find(|o| o.name == format!("command:{name}"))
                .unwrap()
        };
        let old = by_name("old");
        assert!(
            !old.ok && old.detail.contains("1.2.3") && old.detail.contains(">=2"),
            "{old:?}"
        );
        assert!(by_name("new").ok, "{:?}", by_name("new"));
        for slow in ["slow", "also-slow"] {
            let o = by_name(slow);
            assert!(!o.ok && o.detail.contains("timed out"), "{o:?}");
        }
        let broken = by_name("broken");
        assert!(
            !broken.ok && broken.detail.contains("status 3"),
            "{broken:?}"
        );
        let silent = by_name("silent");
        assert!(
            !silent.ok && silent.detail.contains("no version"),
            "{silent:?}"
        );
        assert_eq!(
            outcomes.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            requirements.iter().map(|r| r.label()).collect::<Vec<_>>(),
            "manifest order"
        );
    }

    #[test]
    fn the_kernel_is_read_from_uname() {
        // Independently of uname(2): the kernel's own file.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let found = first_version(release.trim()).unwrap();
        let met = format!(">={}.{}", found.major, found.minor);
        let ok = kernel(&VersionReq::parse(&met).unwrap()).unwrap();
        assert!(ok.contains(release.trim()), "{ok}");
        let unmet = format!(">={}", found.major + 1);
        let err = kernel(&VersionReq::parse(&unmet).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&found.to_string()) && err.contains(&unmet),
            "{err}"
        );
    }
}
