//! The table itself: the moves of an operation, which move follows which
//! journal step going forward, and which one recovery takes after a crash
//! left the journal at a step. Pure: tested over every combination.

use semver::Version;

use crate::config::InstallMode;
use crate::journal::{Journal, Step};
use crate::state::OperationKind;

/// One cell of the table: what the node does next. Each move writes its
/// journal step before its effects begin and hands back the next move, so
/// the first run and a run resumed after a crash walk the same moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// `fetching`: download into the store, stage the release tree, keep
    /// its manifest; then `staged` (an update only).
    Fetch,
    /// From `staged`: the turn (pull mode), the `pre_` hook, migrations,
    /// the switch of `current` (in place: a restore point, then the new
    /// files one rename each); then `switched`.
    Switch,
    /// From `switched`: the live tree against its signed manifest (by
    /// metadata right after the switch, by content after a crash; in place
    /// after a crash: converge the planned writes again); then `verified`.
    CheckLive,
    /// From `verified`: the service strategy (restart, reload,
    /// blue-green), the health gate, `post_apply`/`post_rollback`.
    GoLive,
    /// `rolling-back`: the switch back, the migrations' downs, the old
    /// release back into service, `post_rollback`; recorded `rolled-back`.
    WayBack(WayBack),
    /// Before the switch, after a crash: nothing outside `state_dir`
    /// changed; undo what ran, record `interrupted`.
    Abandon,
    /// The outcome is already recorded: close the journal.
    Close,
}

/// How a way back begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WayBack {
    pub cause: String,
    /// Whether `pre_rollback` still has to run: the operation decides to go
    /// back now, rather than resuming a way back a crash interrupted.
    pub begins: bool,
    pub service: ServiceBack,
}

/// What the way back does about the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceBack {
    /// No service command ran since the switch: only the files go back.
    Untouched,
    /// Going live failed in this run; `old_stopped` says whether the old
    /// release's service was stopped or restarted onto the new files.
    Known { old_stopped: bool },
    /// After a crash nobody knows how far going live got: ask (blue-green:
    /// does the old instance still answer as itself?), else restart it.
    Ask,
}

/// What comes after `step` has been written, going forward. `None`: the
/// step ends the operation.
pub fn forward(step: Step, kind: OperationKind) -> Option<Move> {
    match (step, kind) {
        // A rollback's target is on disk and verified already: nothing to
        // fetch, it starts at `staged`.
        (Step::Planned, OperationKind::Apply) => Some(Move::Fetch),
        (Step::Planned | Step::Fetching | Step::Staged, _) => Some(Move::Switch),
        (Step::Switched, _) => Some(Move::CheckLive),
        (Step::Verified, _) => Some(Move::GoLive),
        (Step::Committed, _) => None,
        (Step::RollingBack, _) => None,
    }
}

/// What recovery does about an interrupted operation, named as
/// `ferry status --json` shows it (`next_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The outcome is recorded: remove the journal.
    Close,
    /// `current` names the target: verify it and record success.
    Commit,
    /// `current` does not name the target: record the interruption, the
    /// node stays where it is.
    Abandon,
    /// Point `current` back at the origin, then record the rollback.
    SwitchBack,
}

impl Action {
    /// The action's name in `ferry status --json` (`next_action`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Commit => "commit",
            Action::Abandon => "abandon",
            Action::SwitchBack => "switch-back",
        }
    }

    /// What the next mutating command will do about `journal`, for an
    /// operator reading `ferry status`.
    pub fn describe(self, journal: &Journal) -> String {
        let from = show(journal.from_version.as_ref());
        let to = &journal.to_version;
        match self {
            Action::Close => "close the journal: its outcome is already recorded".into(),
            Action::Commit => {
                format!("finish it: check {to} against its signed manifest and keep it (or switch back to {from} if it does not match)")
            }
            Action::Abandon => format!("undo it: the node stays on {from}"),
            Action::SwitchBack => format!("switch back to {from} and record the rollback"),
        }
    }

    /// The move recovery starts from: a commit resumes the forward path at
    /// the live-tree check, so recovery and the first run share every move
    /// from there on.
    pub fn entry(self) -> Move {
        match self {
            Action::Close => Move::Close,
            Action::Commit => Move::CheckLive,
            Action::Abandon => Move::Abandon,
            Action::SwitchBack => Move::WayBack(WayBack {
                cause: "interrupted while switching back".into(),
                begins: false,
                service: ServiceBack::Ask,
            }),
        }
    }
}

/// `current` is where the `current` symlink points (symlink mode); in-place
/// mode decides from the journal alone, because from `staged` on its files
/// may be any mix of old and new until converged.
pub fn decide(journal: &Journal, mode: InstallMode, current: Option<&Version>) -> Action {
    match (journal.step, mode) {
        (Step::Committed, _) => Action::Close,
        (Step::RollingBack, _) => Action::SwitchBack,
        (Step::Planned | Step::Fetching, InstallMode::InPlace) => Action::Abandon,
        (_, InstallMode::InPlace) => Action::Commit,
        _ if current == Some(&journal.to_version) => Action::Commit,
        _ => Action::Abandon,
    }
}

pub(crate) fn show(v: Option<&Version>) -> String {
    v.map_or("nothing".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn journal(operation: OperationKind, from: Option<Version>, step: Step) -> Journal {
        Journal {
            id: "t".into(),
            operation,
            from_version: from,
            to_version: v("2.0.0"),
            step,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            bytes_downloaded: 0,
            transfer: Default::default(),
        }
    }

    /// Where `current` points after the action runs, in a model of the node.
    fn after(action: Action, journal: &Journal, current: Option<Version>) -> Option<Version> {
        match action {
            Action::Close | Action::Abandon => current,
            // Commit keeps the target when it verifies; otherwise it switches back.
            Action::Commit => current,
            Action::SwitchBack => journal.from_version.clone(),
        }
    }

    /// Every operation × step × origin × where `current` points.
    #[test]
    fn every_interruption_ends_on_the_old_or_the_new_release() {
        let origins = [None, Some(v("1.0.0"))];
        let target = v("2.0.0");
        let foreign = v("9.9.9");
        for operation in [OperationKind::Apply, OperationKind::Rollback] {
            for from in &origins {
                for step in Step::ALL {
                    let currents = [
                        None,
                        from.clone(),
                        Some(target.clone()),
                        Some(foreign.clone()),
                    ];
                    for current in currents {
                        let journal = journal(operation, from.clone(), step);
                        let action = decide(&journal, InstallMode::Symlink, current.as_ref());
                        let end = after(action, &journal, current.clone());
                        let case = format!("{operation:?} from {from:?} at {step:?} with current {current:?}: {action:?}");
                        // Never record success unless the target is live.
                        if action == Action::Commit {
                            assert_eq!(current.as_ref(), Some(&target), "{case}");
                        }
                        // Never claim the node stayed put while it runs the target.
                        if action == Action::Abandon {
                            assert_ne!(current.as_ref(), Some(&target), "{case}");
                        }
                        // A node that was on the old or the new release stays on one of them.
                        if current == *from || current.as_ref() == Some(&target) {
                            assert!(
                                end == *from || end.as_ref() == Some(&target),
                                "{case} ends at {end:?}"
                            );
                        }
                        // Recovery never moves a node that ferry did not move.
                        if current.as_ref() == Some(&foreign) && step != Step::RollingBack {
                            assert_eq!(end, current, "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_table_reads_as_documented() {
        let mut j = journal(OperationKind::Apply, Some(v("1.0.0")), Step::Fetching);
        let old = Some(v("1.0.0"));
        let new = Some(v("2.0.0"));
        let symlink =
            |j: &Journal, c: &Option<Version>| decide(j, InstallMode::Symlink, c.as_ref());
        assert_eq!(symlink(&j, &old), Action::Abandon);
        j.step = Step::Staged;
        assert_eq!(symlink(&j, &old), Action::Abandon);
        assert_eq!(symlink(&j, &new), Action::Commit);
        j.step = Step::Verified;
        assert_eq!(symlink(&j, &new), Action::Commit);
        j.step = Step::Committed;
        assert_eq!(symlink(&j, &new), Action::Close);
        j.step = Step::RollingBack;
        assert_eq!(symlink(&j, &new), Action::SwitchBack);
    }

    /// Recovery's commit re-enters the forward path where the first run
    /// went after the switch, so both run the same moves from there.
    #[test]
    fn a_commit_resumes_the_forward_path_after_the_switch() {
        for kind in [OperationKind::Apply, OperationKind::Rollback] {
            assert_eq!(forward(Step::Switched, kind), Some(Action::Commit.entry()));
            assert_eq!(forward(Step::Verified, kind), Some(Move::GoLive));
            assert_eq!(forward(Step::Committed, kind), None);
        }
        assert_eq!(
            forward(Step::Planned, OperationKind::Apply),
            Some(Move::Fetch)
        );
        assert_eq!(
            forward(Step::Planned, OperationKind::Rollback),
            Some(Move::Switch)
        );
        assert!(matches!(
            Action::SwitchBack.entry(),
            Move::WayBack(WayBack {
                begins: false,
                service: ServiceBack::Ask,
                ..
            })
        ));
    }
}
