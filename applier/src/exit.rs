//! Every exit status `ferry` ends with, in one table.
//!
//! Operators script around ferry (timers, fleet tools, monitoring), so the
//! class of an outcome is part of the interface: a rejected signature (3)
//! is an alarm, a held lock (75, EX_TEMPFAIL) means "try again later", a
//! rolled-back update (6) means the node is on its old release and the new
//! one needs a look, a refused request (8) means the operator asked for
//! something the repository or the policy does not offer, anything else
//! (1) needs a look at the message.
//!
//! No status is 101 (what Rust exits with when it panics: a panic must
//! never look like an outcome) nor 128 or above (what shells report for a
//! process killed by a signal). README.md's "Exit codes" table is tested
//! against [`Exit::ALL`].

/// One exit status and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success (`ferry check`: up to date; `ferry apply --unattended`:
    /// installed, or deferred by `[policy]`, which is the policy working).
    Success,
    /// Anything else: read the message.
    Error,
    /// The command line did not parse (clap exits with it).
    Usage,
    /// Data from the repository failed verification.
    Verification,
    /// `ferry verify`: installed files differ from their signed manifest.
    Drift,
    /// A pre-flight check failed; nothing was changed.
    Preflight,
    /// `ferry apply`: the new release went live, failed and was rolled back.
    RolledBack,
    /// `ferry apply` with `[coordination]`: the fleet is halted.
    Halted,
    /// `ferry apply`: the request was refused before anything started.
    Refused,
    /// `ferry rollout …`: another rollout is active on the same cluster.
    ClusterBusy,
    /// `ferry check`: an update is available and `[policy]` allows it now.
    UpdateAvailable,
    /// `ferry check`: an update is available but `[policy]` defers it.
    UpdateDeferred,
    /// Another ferry operation holds the lock.
    Locked,
}

impl Exit {
    /// Every status, in the order README.md lists them.
    pub const ALL: [Exit; 13] = [
        Exit::Success,
        Exit::Error,
        Exit::Usage,
        Exit::Verification,
        Exit::Drift,
        Exit::Preflight,
        Exit::RolledBack,
        Exit::Halted,
        Exit::Refused,
        Exit::ClusterBusy,
        Exit::UpdateAvailable,
        Exit::UpdateDeferred,
        Exit::Locked,
    ];

    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::Verification => 3,
            Exit::Drift => 4,
            Exit::Preflight => 5,
            Exit::RolledBack => 6,
            Exit::Halted => 7,
            Exit::Refused => 8,
            Exit::ClusterBusy => 9,
            Exit::UpdateAvailable => 10,
            Exit::UpdateDeferred => 11,
            Exit::Locked => 75,
        }
    }

    /// A phrase README.md's row for this status contains (the test
    /// compares them, ignoring case).
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Error => "error (read the message)",
            Exit::Usage => "usage error",
            Exit::Verification => "verification failed",
            Exit::Drift => "the installed files differ from their signed manifest",
            Exit::Preflight => "a pre-flight check failed",
            Exit::RolledBack => "rolled back automatically",
            Exit::Halted => "the fleet is halted",
            Exit::Refused => "the request was refused",
            Exit::ClusterBusy => "another rollout is active on the same cluster",
            Exit::UpdateAvailable => "an update is available and `[policy]` allows",
            Exit::UpdateDeferred => "an update is available but `[policy]` defers it",
            Exit::Locked => "another ferry operation holds the lock",
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `| code | meaning |` rows of README.md's `## Exit codes` table.
    fn readme_table() -> BTreeMap<u8, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md is readable");
        let section = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .expect("README.md has an `## Exit codes` section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut rows = BTreeMap::new();
        for line in section.lines().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').splitn(2, '|').collect();
            let [code, meaning] = cells[..] else { continue };
            if let Ok(code) = code.trim().parse::<u8>() {
                let old = rows.insert(code, meaning.trim().to_lowercase());
                assert!(old.is_none(), "README.md lists exit code {code} twice");
            }
        }
        rows
    }

    #[test]
    fn the_readme_exit_code_table_is_the_codes_table() {
        let readme = readme_table();
        for exit in Exit::ALL {
            let row = readme.get(&exit.code()).unwrap_or_else(|| {
                panic!(
                    "README.md's Exit codes table lacks {} ({exit:?})",
                    exit.code()
                )
            });
            assert!(
                row.contains(&exit.meaning().to_lowercase()),
                "README.md says {} is {row:?}; the code says {:?}",
                exit.code(),
                exit.meaning()
            );
        }
        for code in readme.keys() {
            assert!(
                Exit::ALL.iter().any(|e| e.code() == *code),
                "README.md documents exit code {code}, which ferry never exits with"
            );
        }
    }

    #[test]
    fn no_exit_code_looks_like_a_panic_or_a_signal() {
        let mut seen = std::collections::BTreeSet::new();
        for exit in Exit::ALL {
            let code = exit.code();
            assert!(code != 101 && code < 128, "{exit:?} exits {code}");
            assert!(seen.insert(code), "{code} means two things");
        }
    }
}
