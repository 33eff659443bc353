//! Named crash points for the crash-safety tests.
//!
//! A test build (cargo feature `fault-injection`) can be told to die by
//! SIGKILL at the N-th time a named point is reached, which is how the test
//! suite proves that every instant of an update is recoverable. In a normal
//! build `point` compiles to nothing and the environment is never read.
//!
//! Environment (fault-injection builds only):
//! - `FERRY_CRASH_AT=name` or `name#N`: SIGKILL this process the N-th time
//!   (default 1st) `name` is reached.
//! - `FERRY_CRASH_LOG=path`: append `name#N` for every point reached, so a
//!   test can enumerate the points an operation passes through.
//! - `FERRY_FAULT_SKIP_SPACE_CHECK=1`: skip the pre-flight space check, so a
//!   test can drive a real ENOSPC during fetching and staging.
//! - `FERRY_FAIL_WRITE=name`: the durable write named `name` (e.g.
//!   `journal:Switched`) fails with ENOSPC, as on a full `state_dir`, at an
//!   instant a real full disk cannot be timed to.

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    static HITS: Mutex<Option<HashMap<&'static str, u32>>> = Mutex::new(None);

    pub fn point(name: &'static str) {
        let n = {
            let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
            let counter = hits
                .get_or_insert_with(HashMap::new)
                .entry(name)
                .or_insert(0);
            *counter += 1;
            *counter
        };
        let label = format!("{name}#{n}");
        if let Ok(log) = std::env::var("FERRY_CRASH_LOG") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let _ = writeln!(f, "{label}");
            }
        }
        if let Ok(target) = std::env::var("FERRY_CRASH_AT") {
            let wanted = if target.contains('#') {
                target
            } else {
                format!("{target}#1")
            };
            if wanted == label {
                let _ = std::io::stderr().flush();
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                // Not reached; if the signal could not be sent, die anyway.
                std::process::abort();
            }
        }
    }

    pub fn skip_space_check() -> bool {
        std::env::var_os("FERRY_FAULT_SKIP_SPACE_CHECK").is_some()
    }

    pub fn failed_write(name: &str) -> Option<std::io::Error> {
        (std::env::var("FERRY_FAIL_WRITE").ok()? == name)
            .then(|| std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()))
    }
}

#[cfg(feature = "fault-injection")]
pub use enabled::{failed_write, point, skip_space_check};

/// A crash point: does nothing outside fault-injection builds.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &'static str) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn skip_space_check() -> bool {
    false
}

/// An injected failure of the durable write `name`: never outside
/// fault-injection builds.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn failed_write(_name: &str) -> Option<std::io::Error> {
    None
}
