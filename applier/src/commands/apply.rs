//! `ferry apply`: arguments, then the operation's three parts
//! ([`crate::operation`]): gather and decide, then — journaled — the table.

use jiff::Timestamp;
use semver::Version;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::events;
use crate::journal::Journal;
use crate::lock::StateLock;
use crate::operation::decide::Request;
use crate::operation::error::OperationError;
use crate::operation::gather::{self, Gathered};
use crate::operation::{Ended, Move, Run};
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::{installed, recovery};

pub struct ApplyArgs {
    pub version: Option<Version>,
    pub dry_run: bool,
    pub allow_downgrade: bool,
    /// Apply from this offline bundle (a tar) instead of `repository.url`.
    pub bundle: Option<std::path::PathBuf>,
    /// Run by the timer, not an operator: `[policy]` windows, blackout
    /// dates, soak and `auto` decide whether to install now.
    pub unattended: bool,
    /// Install `version` (or the channel's latest) whatever `[policy]`
    /// pin, max_version and exclude_versions say.
    pub ignore_policy: bool,
}

pub fn run(config: &Config, args: &ApplyArgs) -> Result<()> {
    // A bundle is checked whole before anything is written — not even the
    // lock file or a failed operation in the history — so a rejected bundle
    // leaves the node exactly as it was.
    let bundle = match &args.bundle {
        Some(path) => Some(crate::bundle::BundleTransport::open(path)?),
        None => None,
    };
    // A dry run is read-only: no lock (a concurrent apply must not see it
    // as busy), no recovery, nothing created.
    let _lock = if args.dry_run {
        None
    } else {
        let lock = StateLock::acquire(&config.install.state_dir)?;
        super::announce_recovery(recovery::recover(config, &lock)?);
        Some(lock)
    };
    let started = Timestamp::now();
    let from = installed::version(config)?;
    let request = Request {
        version: args.version.clone(),
        allow_downgrade: args.allow_downgrade,
        ignore_policy: args.ignore_policy,
        unattended: args.unattended,
    };
    let mut target = args.version.clone();
    let fleet = crate::coordination::Fleet::from_config(config)?;
    let gathered = gather::gather(
        config,
        &request,
        args.dry_run,
        bundle,
        from.as_ref(),
        &mut target,
    );
    match gathered {
        Ok(Gathered::Update(update)) => {
            let (staging, entries) = *update;
            let to = staging.plan.to.clone();
            let plan = gather::plan_fields(&staging.plan);
            let journal = Journal::begin(
                &config.install.state_dir,
                OperationKind::Apply,
                from.clone(),
                to.clone(),
            )?;
            let versions = events::versions(from.as_ref(), &to);
            events::emit(events::Event::Plan, events::with(versions.clone(), plan));
            let in_place = entries.is_some();
            let mut run = Run::update(config, journal, staging, entries, fleet.as_ref());
            match run.drive(Move::Fetch)? {
                Ended::Live(_) => {
                    let from = from.map_or("nothing".to_string(), |v| v.to_string());
                    let how = if in_place { " in place" } else { "" };
                    events::say(format!(
                        "updated {from} -> {to}{how} ({})",
                        run.describe_transfer()
                    ));
                    events::emit(
                        events::Event::Applied,
                        applied_fields(versions, &run.journal),
                    );
                    if in_place {
                        Ok(())
                    } else {
                        run.prune()
                    }
                }
                Ended::RolledBack(message) => Err(NodeError::RolledBack(message)),
                // An update either goes live or goes back: nothing else
                // ends its table.
                other => Err(OperationError::NotInService(other.message().to_string()).into()),
            }
        }
        // A deferral is the policy working, not a failure: nothing is
        // recorded and the timer's run ends with 0. Either way the node
        // reports what it runs, so that a leader sees this follower is
        // done, or who is behind (a follower whose wave has not opened).
        Ok(gathered @ (Gathered::AlreadyCurrent | Gathered::Deferred)) => {
            if let Some(fleet) = &fleet {
                if let Err(e) = fleet.report_version(from.as_ref()) {
                    errln!("ferry: warning: {e}");
                }
                // Whole on its release with nothing left to recover: a
                // down mark left by a crash after the turn's operation was
                // over (before the mark went) no longer holds a slot.
                if matches!(gathered, Gathered::AlreadyCurrent) {
                    if let Err(e) = fleet.clear_down_mark() {
                        errln!("ferry: warning: {e}");
                    }
                }
            }
            Ok(())
        }
        Ok(Gathered::DryRun) => Ok(()),
        Err(e) => {
            // Stopped before the journal began: nothing changed, but the
            // operator should see why in `status` and `history`. A refused
            // request is told apart from a failure there, and announces no
            // `failed` (see `crate::announce`).
            let outcome = match e {
                NodeError::Refused(_) => Outcome::Refused,
                _ => Outcome::Failed,
            };
            let mut node = NodeState::load(&config.install.state_dir).unwrap_or_default();
            let operation = Operation {
                id: None,
                operation: OperationKind::Apply,
                from_version: from,
                to_version: target,
                outcome,
                started_at: started,
                finished_at: Timestamp::now(),
                message: e.to_string(),
                bytes_downloaded: 0,
                transfer: Default::default(),
            };
            let _ = state::record(&config.install.state_dir, &mut node, operation.clone());
            crate::announce::operation_finished(config, &operation);
            Err(e)
        }
    }
}

fn applied_fields(versions: serde_json::Value, journal: &Journal) -> serde_json::Value {
    events::with(
        versions,
        serde_json::json!({
            "bytes_downloaded": journal.bytes_downloaded,
            "deltas_used": journal.transfer.deltas_used,
            "delta_fallbacks": journal.transfer.delta_fallbacks,
            "full_objects": journal.transfer.full_objects,
        }),
    )
}
