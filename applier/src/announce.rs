//! Telling the world outside the node: the one place commands call after
//! they record an operation (`operation_finished`) or find an update
//! (`update_available`), so that webhooks (`crate::notify`) and the metrics
//! textfile (`crate::metrics`) cannot drift apart from the records.
//!
//! Nothing here can fail an operation: it has already been recorded, and a
//! receiver that is down or a textfile directory that is missing is only a
//! warning on stderr.
//!
//! Which notification an operation sends:
//!
//! | operation | success       | rolled-back   | failed, interrupted | refused |
//! |-----------|---------------|---------------|---------------------|---------|
//! | apply     | `applied`     | `rolled_back` | `failed`            | none    |
//! | rollback  | `rolled_back` | `rolled_back` | `failed`            | none    |
//! | repair    | `applied`     | `rolled_back` | `failed`            | none    |
//!
//! A refused request (`ferry apply --version` naming a release the channel
//! does not publish, a downgrade without `--allow-downgrade`, a `[policy]`
//! rule) sends nothing: the node is exactly as it was and healthy, and
//! paging someone for an operator's typo would teach them to ignore
//! `failed`. The operator who asked sees the refusal (exit 8), and the
//! history and the metrics textfile record it.
//!
//! A successful `ferry rollback` is `rolled_back` because the node now runs
//! an older release, which is what that event's subscribers watch for. A
//! successful repair is `applied`: the installed release is again exactly
//! as signed, and with PagerDuty that resolves the incident its failure
//! opened. The payloads' `operation` and `outcome` fields tell these apart.

use crate::config::Config;
use crate::notify::{self, Notified, NotifyEvent, NotifyEventKind};
use crate::recovery::kind_name;
use crate::state::{Operation, OperationKind, Outcome};

/// After `state::record`: sends the operation's notification and rewrites
/// the metrics textfile.
pub fn operation_finished(config: &Config, operation: &Operation) {
    if let Err(e) = crate::metrics::write(config) {
        tracing::warn!("metrics not updated: {e}");
    }
    if config.notify.is_empty() {
        return;
    }
    if let Some(event) = event_of(operation) {
        notify::send_all(&config.notify, &event);
    }
}

/// The notification `operation` sends (see the table in the module docs);
/// `None` for a refused request.
pub fn event_of(operation: &Operation) -> Option<NotifyEvent> {
    let kind = match (operation.operation, operation.outcome) {
        (_, Outcome::Refused) => return None,
        (_, Outcome::Failed | Outcome::Interrupted) => NotifyEventKind::Failed,
        (_, Outcome::RolledBack) | (OperationKind::Rollback, Outcome::Success) => {
            NotifyEventKind::RolledBack
        }
        (OperationKind::Apply | OperationKind::Repair, Outcome::Success) => {
            NotifyEventKind::Applied
        }
    };
    Some(NotifyEvent {
        kind,
        operation: Some(kind_name(operation.operation).to_string()),
        from_version: operation.from_version.clone(),
        to_version: operation.to_version.clone(),
        outcome: outcome_name(operation.outcome).to_string(),
        message: operation.message.clone(),
        timestamp: operation.finished_at,
    })
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failed => "failed",
        Outcome::RolledBack => "rolled-back",
        Outcome::Interrupted => "interrupted",
        Outcome::Refused => "refused",
    }
}

/// After `ferry check` found `report.latest` newer than what runs: sends
/// `update_available` once per version. The version is remembered in
/// `state_dir/notified.json` after the attempt, delivered or not, so an
/// hourly timer does not resend to every receiver because one is down.
pub fn update_available(config: &Config, report: &crate::commands::check::CheckReport) {
    // A release this node rolled back by itself was announced when it
    // failed; "available" again would page for the same bad build.
    if !report.update_available
        || report.rolled_back_here.is_some()
        || !config
            .notify
            .iter()
            .any(|c| c.events.contains(&NotifyEventKind::UpdateAvailable))
    {
        return;
    }
    let state_dir = &config.install.state_dir;
    let mut notified = match Notified::load(state_dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("update_available not sent: {e}");
            return;
        }
    };
    if notified.update_available.as_ref() == Some(&report.latest) {
        return;
    }
    notify::send_all(
        &config.notify,
        &NotifyEvent {
            kind: NotifyEventKind::UpdateAvailable,
            operation: None,
            from_version: report.installed.clone(),
            to_version: Some(report.latest.clone()),
            outcome: "available".into(),
            message: format!(
                "{} is available on channel {}",
                report.latest, config.repository.channel
            ),
            timestamp: jiff::Timestamp::now(),
        },
    );
    notified.update_available = Some(report.latest.clone());
    let saved = crate::durable::create_dir_all(state_dir, 0o755)
        .map_err(|e| {
            crate::error::NodeError::io(format!("cannot create {}", state_dir.display()), e)
        })
        .and_then(|()| notified.save(state_dir));
    if let Err(e) = saved {
        tracing::warn!("cannot remember that {} was announced: {e}", report.latest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(operation: OperationKind, outcome: Outcome) -> Operation {
        Operation {
            id: None,
            operation,
            from_version: Some("1.0.0".parse().unwrap()),
            to_version: Some("1.1.0".parse().unwrap()),
            outcome,
            started_at: "2024-05-01T12:00:00Z".parse().unwrap(),
            finished_at: "2024-05-01T12:00:03Z".parse().unwrap(),
            message: "m".into(),
            bytes_downloaded: 0,
            transfer: Default::default(),
        }
    }

    #[test]
    fn operations_map_to_the_documented_events() {
        use OperationKind::*;
        use Outcome::*;
        let table = [
            (Apply, Success, NotifyEventKind::Applied),
            (Apply, RolledBack, NotifyEventKind::RolledBack),
            (Apply, Failed, NotifyEventKind::Failed),
            (Apply, Interrupted, NotifyEventKind::Failed),
            (Rollback, Success, NotifyEventKind::RolledBack),
            (Rollback, Failed, NotifyEventKind::Failed),
            (Rollback, Interrupted, NotifyEventKind::Failed),
            (Repair, Success, NotifyEventKind::Applied),
            (Repair, Failed, NotifyEventKind::Failed),
        ];
        for (kind, outcome, expected) in table {
            let event = event_of(&op(kind, outcome)).expect("an event");
            assert_eq!(event.kind, expected, "{kind:?} {outcome:?}");
        }
        for kind in [Apply, Rollback, Repair] {
            assert!(event_of(&op(kind, Refused)).is_none(), "{kind:?} refused");
        }
        let event = event_of(&op(Apply, Interrupted)).expect("an event");
        assert_eq!(
            (event.operation.as_deref(), event.outcome.as_str()),
            (Some("apply"), "interrupted")
        );
        assert_eq!(event.timestamp, "2024-05-01T12:00:03Z".parse().unwrap());
    }
}
