//! The crash-point walk the crash tests share.
//!
//! The fault-injection build of `ferry` (applier/src/faults.rs) names every
//! instant an operation can be cut at: with `FERRY_CRASH_LOG` it appends
//! `name#N` for each crash point it passes, with `FERRY_CRASH_AT=name#N` it
//! kills itself by SIGKILL there. A walk is one uninterrupted discovery run
//! that lists the points, then one fresh node per point killed exactly
//! there. This module is the walk's plumbing, so that every crash test
//! discovers and kills the same way; what each case checks afterwards is
//! the test's.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use crate::binaries;

/// The variables that steer the fault-injection build. A test sets the one
/// it means; one inherited from the environment the tests run in would
/// crash or fail a run nobody asked to.
pub const FAULT_VARIABLES: [&str; 4] = [
    "FERRY_CRASH_AT",
    "FERRY_CRASH_LOG",
    "FERRY_FAIL_WRITE",
    "FERRY_FAULT_SKIP_SPACE_CHECK",
];

/// `command` without `FERRY_CONFIG` and the fault variables.
pub fn clean(command: &mut Command) -> &mut Command {
    command.env_remove("FERRY_CONFIG");
    for variable in FAULT_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The fault-injection build of `ferry --config CONFIG ARGS…`, with a
/// clean environment.
pub fn fault_command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binaries::ferry_with_fault_injection());
    clean(&mut command).arg("--config").arg(config).args(args);
    command
}

/// Runs `command` (the fault-injection build, ready to run one operation)
/// once, uninterrupted, and returns every crash point it passed, in order.
/// Anything that appends to `FERRY_CRASH_LOG` meanwhile (a service command
/// noting itself) is in the list too. `log` must not exist yet. Panics,
/// naming `what`, if the run fails.
#[track_caller]
pub fn discover(command: &mut Command, log: &Path, what: &str) -> Vec<String> {
    discover_exiting(command, log, what, 0)
}

/// [`discover`] for a run that ends with exit code `code`: an operation
/// that fails on purpose (a release that never becomes healthy exits 6)
/// has its crash points too.
#[track_caller]
pub fn discover_exiting(command: &mut Command, log: &Path, what: &str, code: i32) -> Vec<String> {
    let out = command.env("FERRY_CRASH_LOG", log).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "the discovery run of {what} did not exit {code}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("the discovery run of {what} logged no crash point: {e}"))
        .lines()
        .map(String::from)
        .collect()
}

/// Where the first point starting with `prefix` is in `points`.
#[track_caller]
pub fn position(points: &[String], prefix: &str) -> usize {
    points
        .iter()
        .position(|p| p.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {points:?}"))
}

/// The points from the switch of `current` on (`switch:after-rename`
/// first).
#[track_caller]
pub fn from_the_switch_on(points: &[String]) -> &[String] {
    &points[position(points, "switch:after-rename")..]
}

/// Runs `command` with `FERRY_CRASH_AT=point` and asserts that it died by
/// SIGKILL (there: a point it did not reach lets it finish); `context`
/// names the case in the message. Returns its output.
#[track_caller]
pub fn kill_at(command: &mut Command, point: &str, context: &str) -> std::process::Output {
    let out = command.env("FERRY_CRASH_AT", point).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{context}: the process was not killed at {point} (status {:?}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
