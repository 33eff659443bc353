//! Executing the table: [`Run::drive`] performs a move, and the journal
//! step it wrote picks the next one from [`table::forward`]; a failure
//! diverts to the way back instead. The first run of an operation and a
//! run resumed after a crash differ only in where they enter and in
//! [`Run::resumed`], which makes checks thorough and asks what already
//! serves before starting anything.

use jiff::Timestamp;
use manifests::VerifiedManifest;
use semver::Version;

use crate::config::{Config, InstallMode};
use crate::converge::DesiredEntry;
use crate::coordination::{Fleet, Turn};
use crate::error::{NodeError, Result};
use crate::events;
use crate::journal::{Journal, Step};
use crate::lifecycle::Transition;
use crate::plan::UpdatePlan;
use crate::release_dir::{self, Depth};
use crate::sources::Sources;
use crate::state::{OperationKind, Outcome};
use crate::store::ContentStore;
use crate::{in_place, kept_manifests, migrations, switch};

use super::error::OperationError;
use super::record::{conclude, conclude_switched, fail};
use super::table::{self, show, Move, ServiceBack, WayBack};

/// How an operation that reached the table ended (failures before its
/// switch come back as `Err`, recorded `failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The target is live and in service: recorded `success`.
    Live(String),
    /// Gone back to the origin: recorded `rolled-back`.
    RolledBack(String),
    /// An operator's rollback switched, but its release did not go into
    /// service: recorded `failed`, and the node stays where the operator
    /// sent it.
    NotInService(String),
    /// Undone before its switch, after a crash: recorded `interrupted`.
    Undone(String),
    /// The outcome was recorded already: only the journal was closed.
    Closed(String),
}

impl Ended {
    pub fn message(&self) -> &str {
        match self {
            Ended::Live(m)
            | Ended::RolledBack(m)
            | Ended::NotInService(m)
            | Ended::Undone(m)
            | Ended::Closed(m) => m,
        }
    }
}

/// An update's verified input: what [`Move::Fetch`] downloads and stages.
pub struct Staging {
    pub sources: Sources,
    pub manifest: VerifiedManifest,
    /// When `manifest` was verified (the node's clock): kept with it, so a
    /// node requiring X.509 alone can re-verify it at that time later.
    pub verified_at: Timestamp,
    pub plan: UpdatePlan,
    pub store: ContentStore,
}

/// After a crash: what recovery knows that a first run does not.
pub struct Resumed {
    /// "interrupted apply 1.0.0 -> 2.0.0 (at step staged)", for the record.
    pub what: String,
    /// Where `current` pointed when recovery began.
    pub current: Option<Version>,
}

/// One operation in flight: its journal and what its moves act on.
pub struct Run<'a> {
    pub config: &'a Config,
    pub journal: Journal,
    pub(super) resumed: Option<Resumed>,
    pub(super) staging: Option<Staging>,
    /// In place, going forward: the writes to make.
    pub(super) entries: Option<Vec<DesiredEntry>>,
    /// In place: the restore point the switch made.
    pub(super) restore_point: Option<String>,
    fleet: Option<&'a Fleet>,
    turn: Option<Turn<'a>>,
}

/// What a move hands back: the table's next move, a detour, or the end.
pub(super) enum Next {
    /// The move wrote its step: [`table::forward`] says what follows.
    Table,
    Divert(Move),
    End(Ended),
}

impl<'a> Run<'a> {
    /// An update going forward. With `fleet`, the node takes its turn
    /// after staging and before `pre_apply`.
    pub fn update(
        config: &'a Config,
        journal: Journal,
        staging: Staging,
        entries: Option<Vec<DesiredEntry>>,
        fleet: Option<&'a Fleet>,
    ) -> Self {
        Run {
            config,
            journal,
            resumed: None,
            staging: Some(staging),
            entries,
            restore_point: None,
            fleet,
            turn: None,
        }
    }

    /// An operator's rollback going forward; in place, `entries` are the
    /// restore point's.
    pub fn rollback(
        config: &'a Config,
        journal: Journal,
        entries: Option<(String, Vec<DesiredEntry>)>,
    ) -> Self {
        let (restore_point, entries) = match entries {
            Some((id, entries)) => (Some(id), Some(entries)),
            None => (None, None),
        };
        Run {
            config,
            journal,
            resumed: None,
            staging: None,
            entries,
            restore_point,
            fleet: None,
            turn: None,
        }
    }

    /// An operation a crash interrupted, taken up by recovery; in pull
    /// mode inside `turn`.
    pub fn resume(
        config: &'a Config,
        journal: Journal,
        resumed: Resumed,
        turn: Option<Turn<'a>>,
    ) -> Self {
        Run {
            config,
            journal,
            resumed: Some(resumed),
            staging: None,
            entries: None,
            restore_point: None,
            fleet: None,
            turn,
        }
    }

    /// Performs `first`, then the moves the table and the outcomes choose,
    /// to the end. A pull-mode turn still held is finished with the result.
    pub fn drive(&mut self, first: Move) -> Result<Ended> {
        let ended = self.walk(first);
        if let Some(turn) = self.turn.take() {
            match &ended {
                Ok(Ended::Live(_)) => turn.finish(Ok(())),
                // Recovery of an operation that was over, or never
                // switched: no verdict on the version, nothing to halt.
                Ok(Ended::Closed(_) | Ended::Undone(_)) => turn.release(),
                Ok(other) => turn.finish(Err(&NodeError::RolledBack(other.message().into()))),
                Err(e) => turn.finish(Err(e)),
            }
        }
        ended
    }

    fn walk(&mut self, first: Move) -> Result<Ended> {
        let mut next = first;
        loop {
            let outcome = match next {
                Move::Fetch => self.fetch()?,
                Move::Switch => self.switch()?,
                Move::CheckLive => self.check_live()?,
                Move::GoLive => self.go_live()?,
                Move::WayBack(way_back) => Next::End(self.way_back(way_back)?),
                Move::Abandon => Next::End(self.abandon()?),
                Move::Close => {
                    Journal::close(&self.config.install.state_dir)?;
                    Next::End(Ended::Closed(format!(
                        "{}: its outcome was already recorded",
                        self.what()
                    )))
                }
            };
            next = match outcome {
                Next::Table => table::forward(self.journal.step, self.journal.operation)
                    .ok_or_else(|| {
                        NodeError::from(OperationError::NoMove {
                            step: format!("{:?}", self.journal.step),
                            state_dir: self.config.install.state_dir.clone(),
                        })
                    })?,
                Next::Divert(detour) => detour,
                Next::End(ended) => return Ok(ended),
            };
        }
    }

    /// Old releases beyond `[install] keep`, after a successful update.
    pub fn prune(&self) -> Result<()> {
        let node = crate::state::NodeState::load(&self.config.install.state_dir)?;
        let current = switch::current_version(&self.config.install.root).map_err(|e| {
            let current = self.config.install.root.join("current");
            NodeError::io(format!("cannot read {}", current.display()), e)
        })?;
        crate::retention::prune(
            self.config,
            current.as_ref(),
            node.previous_version.as_ref(),
        )
    }

    /// In place: the restore point this operation's switch made.
    pub fn restore_point(&self) -> Option<&str> {
        self.restore_point.as_deref()
    }

    /// Writes `step` to the journal before its effects begin.
    pub(super) fn advance(&mut self, step: Step) -> Result<()> {
        let config = self.config;
        self.journal.advance(&config.install.state_dir, step)
    }

    fn state_dir(&self) -> &std::path::Path {
        &self.config.install.state_dir
    }

    pub(super) fn update_kind(&self) -> bool {
        self.journal.operation == OperationKind::Apply
    }

    pub(super) fn versions(&self) -> (Option<Version>, Version) {
        (
            self.journal.from_version.clone(),
            self.journal.to_version.clone(),
        )
    }

    /// "interrupted apply …" after a crash; the operation's own name first time.
    pub(super) fn what(&self) -> String {
        match &self.resumed {
            Some(r) => r.what.clone(),
            None => format!(
                "{} {} -> {}",
                super::record::kind_name(self.journal.operation),
                show(self.journal.from_version.as_ref()),
                self.journal.to_version
            ),
        }
    }

    /// The content store: the update's, else opened.
    pub(super) fn store(&self) -> Result<ContentStore> {
        match &self.staging {
            Some(s) => Ok(s.store.clone()),
            None => ContentStore::open(self.state_dir()),
        }
    }

    /// The target's signed manifest: the one just verified, else the kept one.
    fn target_manifest(&self) -> Result<VerifiedManifest> {
        if let Some(s) = &self.staging {
            return Ok(s.manifest.clone());
        }
        let keys = self.config.trusted_keys()?;
        kept_manifests::load(self.state_dir(), &self.journal.to_version, &keys)
    }

    /// From `staged` to `switched`.
    fn switch(&mut self) -> Result<Next> {
        let (from, to) = self.versions();
        let update = self.update_kind();
        let runs = show(from.as_ref());
        if let (true, Some(fleet)) = (update, self.fleet) {
            match fleet.take_turn(from.as_ref(), &to) {
                Ok(taken) => self.turn = Some(taken),
                Err(e) => return Err(fail(self.config, &mut self.journal, e)),
            }
        }
        let transition = Transition::new(self.config, from.as_ref(), &to);
        let hook = match update {
            true => transition.pre_apply(),
            false => transition.operator_pre_rollback(),
        };
        if let Err(cause) = hook {
            let e = OperationError::PreHookFailed {
                cause: cause.to_string(),
                runs: runs.clone(),
                rollback: !update,
            };
            return Err(fail(self.config, &mut self.journal, e.into()));
        }
        // The last moment at which stopping changes nothing: make sure the
        // turn taken before `pre_apply` is still this node's.
        if let Some(Err(e)) = self.turn.as_ref().map(Turn::confirm) {
            if let Some(lost) = self.turn.take() {
                lost.give_up();
            }
            let e = OperationError::TurnLost {
                cause: e.to_string(),
                runs,
            };
            return Err(fail(self.config, &mut self.journal, e.into()));
        }
        if let Some(entries) = self.entries.take() {
            let store = self.store()?;
            let point = in_place::switch(self.config, &mut self.journal, &store, entries)?;
            // A rollback names the restore point it restores from.
            self.restore_point.get_or_insert(point);
            return Ok(Next::Table);
        }
        // Migrations move the data before `current` does, so the new code
        // never starts on data it does not know.
        let migrated = match update {
            true => self.migrate_up(&to),
            false => super::way_back::revert_for_rollback(self.config, from.as_ref(), &to),
        };
        if let Err(e) = migrated {
            return Err(fail(self.config, &mut self.journal, e));
        }
        let root = &self.config.install.root;
        if let Err(e) = switch::switch_to(root, &to) {
            let e = match update {
                true => OperationError::SwitchFailed {
                    root: root.clone(),
                    to: to.clone(),
                    cause: e,
                    reverted: self.revert_update_migrations(),
                }
                .into(),
                false => NodeError::io(format!("cannot switch to {to}"), e),
            };
            return Err(fail(self.config, &mut self.journal, e));
        }
        if let Err(e) = self.advance(Step::Switched) {
            return Err(self.undo_unrecorded_switch(e));
        }
        if update {
            events::emit(
                events::Event::Switched,
                events::versions(from.as_ref(), &to),
            );
        }
        Ok(Next::Table)
    }

    /// An update's pending `up`s, from the staged tree. A failed up has
    /// had this run's ups undone by their downs already.
    fn migrate_up(&self, to: &Version) -> Result<()> {
        let manifest = self.target_manifest()?;
        let release = release_dir::release_path(&self.config.install.root, to);
        migrations::apply_pending(
            self.state_dir(),
            manifest.manifest(),
            &release,
            &migrations::operation_env(self.journal.from_version.as_ref(), to),
            self.config.migrations.timeout(),
        )
        .map(|_| ())
        .map_err(|failure| {
            OperationError::MigrationsFailed {
                to: to.clone(),
                failure: failure.to_string(),
            }
            .into()
        })
    }

    /// From `switched` to `verified`: the live tree against its manifest.
    /// Right after the switch its metadata is enough (the tree was staged
    /// and checked moments ago); after a crash it is checked by content,
    /// and in place the planned writes are converged again.
    fn check_live(&mut self) -> Result<Next> {
        let problems = match self.config.install.mode {
            InstallMode::Symlink => {
                let manifest = self.target_manifest()?;
                let live =
                    release_dir::release_path(&self.config.install.root, &self.journal.to_version);
                let depth = match self.resumed {
                    Some(_) => Depth::Content,
                    None => Depth::Metadata,
                };
                release_dir::verify(manifest.manifest(), &live, depth)
                    .map_err(|e| NodeError::io(format!("cannot check {}", live.display()), e))?
                    .join("; ")
            }
            InstallMode::InPlace if self.resumed.is_some() => self.converge_again()?,
            InstallMode::InPlace => String::new(),
        };
        if problems.is_empty() {
            self.advance(Step::Verified)?;
            return Ok(Next::Table);
        }
        let service = match self.resumed {
            // The crash may have come after the service was restarted onto
            // the new files: the old release goes back into service.
            Some(_) => {
                crate::recovery_preconditions::check_switch_back(self.config, &self.journal)?;
                ServiceBack::Ask
            }
            None => ServiceBack::Untouched,
        };
        let cause = match self.resumed {
            Some(_) => problems,
            None => format!("the live tree does not match its manifest: {problems}"),
        };
        self.advance(Step::RollingBack)?;
        Ok(Next::Divert(Move::WayBack(WayBack {
            cause,
            begins: true,
            service,
        })))
    }

    /// In place, after a crash: the planned writes once more. "" when the
    /// files now match; otherwise what is wrong.
    fn converge_again(&self) -> Result<String> {
        let Some(plan) = in_place::InPlacePlan::load(self.state_dir())? else {
            return Err(OperationError::InPlacePlanMissing {
                context: format!("{}: ", self.what()),
                next: "check the files against `ferry verify`",
            }
            .into());
        };
        let store = self.store()?;
        let root = &self.config.install.root;
        Ok(
            match crate::converge::converge(root, &plan.entries, &store)
                .and_then(|()| crate::converge::check(root, &plan.entries, true))
            {
                Ok(problems) => problems.join("; "),
                Err(e) => e.to_string(),
            },
        )
    }

    /// From `verified`: into service, then the record.
    fn go_live(&mut self) -> Result<Next> {
        let (from, to) = self.versions();
        let transition = Transition::new(self.config, from.as_ref(), &to);
        let rollback = !self.update_kind();
        let went_live = match (&self.resumed, rollback) {
            (Some(_), _) => transition.resume_go_live(rollback),
            (None, false) => transition.go_live(),
            (None, true) => transition.operator_go_live(),
        };
        let failure = match went_live {
            Ok(()) => {
                if !rollback && self.resumed.is_none() {
                    // Whether a health check stood between the start
                    // and `live`: a coordinator must not call a node
                    // without `[health]` healthy.
                    let health = if self.config.health.is_some() {
                        "passed"
                    } else {
                        "none"
                    };
                    events::emit(
                        events::Event::Live,
                        events::with(
                            events::versions(from.as_ref(), &to),
                            serde_json::json!({ "health": health }),
                        ),
                    );
                }
                let message = self.success_message();
                conclude(
                    self.config,
                    &mut self.journal,
                    Outcome::Success,
                    message.clone(),
                )?;
                if self.config.install.mode == InstallMode::InPlace {
                    in_place::finish(self.config)?;
                }
                return Ok(Next::End(Ended::Live(message)));
            }
            Err(failure) => failure,
        };
        if rollback {
            // The operator chose this release: ferry does not flip again on
            // its own. The files are switched; the service needs a look, and
            // the release left is the previous one now, so `ferry rollback`
            // can take the node back to it.
            let prefix = match &self.resumed {
                Some(r) => format!("{}: ", r.what),
                None => String::new(),
            };
            let message = format!(
                "{prefix}switched to {to}, but it did not go into service: {}; check the service, then `ferry rollback --to VERSION` or `ferry apply`",
                failure.message
            );
            conclude_switched(
                self.config,
                &mut self.journal,
                Outcome::Failed,
                message.clone(),
            )?;
            return Ok(Next::End(Ended::NotInService(message)));
        }
        let service = match self.resumed {
            Some(_) => ServiceBack::Ask,
            None => ServiceBack::Known {
                old_stopped: failure.old_stopped,
            },
        };
        self.advance(Step::RollingBack)?;
        Ok(Next::Divert(Move::WayBack(WayBack {
            cause: failure.message,
            begins: true,
            service,
        })))
    }

    fn success_message(&self) -> String {
        let to = &self.journal.to_version;
        match (&self.resumed, self.journal.operation, &self.restore_point) {
            (Some(r), _, _) => format!("{}: finished, now at {to} and in service", r.what),
            (None, OperationKind::Rollback, Some(point)) => {
                format!("rolled back to {to} from restore point {point}")
            }
            (None, OperationKind::Rollback, None) => format!("rolled back to {to}"),
            (None, _, _) => format!("updated to {to}"),
        }
    }
}
