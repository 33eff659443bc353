//! Releases this node put live, saw fail and rolled back by itself.
//!
//! Without this memory a timer retries a bad release every hour: it
//! restarts the service onto it, rolls back, exits 6 and pages again, for
//! as long as the release is the newest. So an unattended run skips a
//! release that was rolled back here (the policy gate defers it, see
//! [`crate::policy::Policy::gate`]) until a newer release is published —
//! which the policy then chooses instead — or an operator names it
//! (`ferry apply --version V`) and it goes live for good.
//!
//! The memory is derived from `history.jsonl`, not kept beside it: the
//! history already records every automatic rollback with when and why,
//! and a second file could disagree with it. A tampered history can only
//! hold a release back, never install one.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::state::{self, Operation, OperationKind, Outcome};

/// One release rolled back here, as the history last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBackRelease {
    pub version: Version,
    /// When the rollback finished.
    pub at: Timestamp,
    /// What failed (the first line of the rollback's record).
    pub reason: String,
}

impl RolledBackRelease {
    /// Why an unattended run skips it, for `check`, `status` and the
    /// deferral line.
    pub fn describe(&self) -> String {
        format!(
            "{} was rolled back on this node at {} ({}); unattended runs skip it until a newer \
             release is published, `ferry apply --version {}` retries it",
            self.version, self.at, self.reason, self.version
        )
    }
}

/// Every release rolled back here and not installed successfully since.
#[derive(Debug, Clone, Default)]
pub struct RolledBackHere {
    releases: BTreeMap<Version, RolledBackRelease>,
}

impl RolledBackHere {
    /// Reads the history (a node without one has rolled nothing back).
    pub fn load(state_dir: &Path) -> Result<RolledBackHere> {
        Ok(Self::from_history(&state::history(state_dir)?))
    }

    /// Replays `history`, oldest first: an apply rolled back (by the
    /// update itself, or by recovery after a crash) marks its target; a
    /// later successful apply of the same version clears it.
    pub fn from_history(history: &[Operation]) -> RolledBackHere {
        let mut releases = BTreeMap::new();
        for op in history
            .iter()
            .filter(|op| op.operation == OperationKind::Apply)
        {
            let Some(version) = &op.to_version else {
                continue;
            };
            match op.outcome {
                Outcome::RolledBack => {
                    let reason = op.message.lines().next().unwrap_or("").to_string();
                    releases.insert(
                        version.clone(),
                        RolledBackRelease {
                            version: version.clone(),
                            at: op.finished_at,
                            reason,
                        },
                    );
                }
                Outcome::Success => {
                    releases.remove(version);
                }
                _ => {}
            }
        }
        RolledBackHere { releases }
    }

    pub fn get(&self, version: &Version) -> Option<&RolledBackRelease> {
        self.releases.get(version)
    }

    /// Oldest version first.
    pub fn releases(&self) -> impl Iterator<Item = &RolledBackRelease> {
        self.releases.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OperationKind, to: &str, outcome: Outcome, at: i64) -> Operation {
        Operation {
            id: None,
            operation: kind,
            from_version: Some("1.0.0".parse().unwrap()),
            to_version: Some(to.parse().unwrap()),
            outcome,
            started_at: Timestamp::from_second(at).unwrap(),
            finished_at: Timestamp::from_second(at).unwrap(),
            message: format!("{outcome:?}\nsecond line"),
            bytes_downloaded: 0,
            transfer: Default::default(),
        }
    }

    #[test]
    fn a_rollback_is_remembered_until_the_release_is_installed() {
        use OperationKind::*;
        use Outcome::*;
        let v2: Version = "2.0.0".parse().unwrap();
        let mut history = vec![op(Apply, "2.0.0", RolledBack, 10)];
        let here = RolledBackHere::from_history(&history);
        let found = here.get(&v2).expect("2.0.0 is remembered");
        assert_eq!(found.at, Timestamp::from_second(10).unwrap());
        assert_eq!(found.reason, "RolledBack", "only the first line");

        // A failure before the switch, an operator's rollback or a repair
        // says nothing new about the release.
        history.push(op(Apply, "2.0.0", Failed, 20));
        history.push(op(Rollback, "2.0.0", Success, 30));
        history.push(op(Repair, "2.0.0", Success, 40));
        assert!(RolledBackHere::from_history(&history).get(&v2).is_some());

        // Rolled back again: the newest record speaks.
        history.push(op(Apply, "2.0.0", RolledBack, 50));
        let again = RolledBackHere::from_history(&history);
        assert_eq!(
            again.get(&v2).unwrap().at,
            Timestamp::from_second(50).unwrap()
        );

        // Installed for good (an operator named it): forgotten.
        history.push(op(Apply, "2.0.0", Success, 60));
        assert!(RolledBackHere::from_history(&history).get(&v2).is_none());
    }

    #[test]
    fn other_versions_are_not_affected() {
        let history = vec![op(OperationKind::Apply, "2.0.0", Outcome::RolledBack, 1)];
        let here = RolledBackHere::from_history(&history);
        assert!(here.get(&"2.0.1".parse().unwrap()).is_none());
        assert_eq!(here.releases().count(), 1);
    }
}
