//! What `ferry apply` tells the world while it works: human lines and
//! progress bars on a terminal, or one JSON event per line for machines
//! (`--output json`).
//!
//! The JSON stream is what a fleet coordinator reads over ssh, so it owns
//! stdout: in JSON mode nothing else is printed there (logs go to stderr
//! through tracing, where journald picks them up), each line is one
//! complete object with an `event` name and a `timestamp`, and the last
//! line is always `applied`, `up_to_date`, `dry_run`, `deferred`,
//! `rolled_back`, `halted`, `refused` or `failed` (the last four from
//! `NodeError::final_event`). Progress bars are drawn only in human mode and only when
//! stderr is a terminal: a timer's journal gets the plain lines instead.

use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// `--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    #[default]
    Human,
    Json,
}

static MODE: OnceLock<OutputMode> = OnceLock::new();

/// Chooses the output mode once, at start-up.
pub fn set_mode(mode: OutputMode) {
    let _ = MODE.set(mode);
}

pub fn mode() -> OutputMode {
    MODE.get().copied().unwrap_or_default()
}

/// A line for people: printed in human mode only.
pub fn say(text: impl std::fmt::Display) {
    if mode() == OutputMode::Human {
        outln!("{text}");
    }
}

/// The `event` of one `--output json` line. This enum is the protocol: the
/// node prints it, the coordinator (`ferry-coordinator`) and fleet tools
/// read it, so a name is spelled once, here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The update plan: `fetches`, `deltas`, `download_bytes`, ….
    Plan,
    Fetched,
    Staged,
    /// `[coordination]`: waiting for a slot or for the followers.
    Waiting,
    SlotAcquired,
    Switched,
    /// The service passed its health gate.
    Live,
    /// Final: the update is installed.
    Applied,
    /// Final: nothing to do.
    UpToDate,
    /// Final: `--dry-run` printed its plan.
    DryRun,
    /// Final: an unattended run the policy holds back.
    Deferred,
    /// Final: the new release failed once live and the old one is back, or
    /// a `ferry rollback` finished.
    RolledBack,
    /// Final: the `[coordination]` fleet is halted.
    Halted,
    /// Final: the request was refused before anything started (unknown
    /// version, downgrade without the flag, policy); exit 8.
    Refused,
    /// A failed update could not write the fleet's halt key.
    HaltFailed,
    /// Final: anything else; `message` and `exit_code` say what.
    Failed,
    /// An event this build does not know (a newer node's): read, not
    /// matched.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The name on the wire (`slot_acquired`), for messages and records.
    pub fn name(self) -> &'static str {
        match self {
            Event::Plan => "plan",
            Event::Fetched => "fetched",
            Event::Staged => "staged",
            Event::Waiting => "waiting",
            Event::SlotAcquired => "slot_acquired",
            Event::Switched => "switched",
            Event::Live => "live",
            Event::Applied => "applied",
            Event::UpToDate => "up_to_date",
            Event::DryRun => "dry_run",
            Event::Deferred => "deferred",
            Event::RolledBack => "rolled_back",
            Event::Halted => "halted",
            Event::Refused => "refused",
            Event::HaltFailed => "halt_failed",
            Event::Failed => "failed",
            Event::Unknown => "unknown",
        }
    }

    /// Whether a line with this event ends the stream.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Event::Applied
                | Event::UpToDate
                | Event::DryRun
                | Event::Deferred
                | Event::RolledBack
                | Event::Halted
                | Event::Refused
                | Event::Failed
        )
    }
}

/// One `--output json` line as a reader sees it: the event, and whatever
/// fields it carries.
#[derive(Debug, Clone, Deserialize)]
pub struct EventLine {
    pub event: Event,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl EventLine {
    /// The event of one line of output, if it is an event line at all.
    pub fn parse(line: &str) -> Option<EventLine> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// One event for machines: printed in JSON mode only. `fields` must be a
/// JSON object.
pub fn emit(event: Event, fields: Value) {
    if mode() != OutputMode::Json {
        return;
    }
    let mut object = Map::new();
    object.insert(
        "event".into(),
        serde_json::to_value(event).unwrap_or(Value::Null),
    );
    object.insert(
        "timestamp".into(),
        Value::from(jiff::Timestamp::now().to_string()),
    );
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    outln!("{}", Value::Object(object));
}

/// A progress bar over `total` units (bytes or files), drawn on a terminal
/// in human mode; hidden otherwise. `step` names the phase.
pub fn progress(step: &str, total: u64, bytes: bool) -> Progress {
    let bar = if mode() == OutputMode::Human {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let template = if bytes {
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:>9} [{bar:30}] {pos}/{len} files"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(step.to_string());
    Progress { bar }
}

/// A phase's progress; cleared when dropped.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn advance(&self, units: u64) {
        self.bar.inc(units);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The fields every outcome event carries.
pub fn versions(from: Option<&semver::Version>, to: &semver::Version) -> Value {
    json!({
        "from_version": from.map(|v| v.to_string()),
        "to_version": to.to_string(),
    })
}

/// `fields` with `more` merged in (both JSON objects).
pub fn with(mut fields: Value, more: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut fields, more) {
        a.extend(b);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Event; 17] = [
        Event::Plan,
        Event::Fetched,
        Event::Staged,
        Event::Waiting,
        Event::SlotAcquired,
        Event::Switched,
        Event::Live,
        Event::Applied,
        Event::UpToDate,
        Event::DryRun,
        Event::Deferred,
        Event::RolledBack,
        Event::Halted,
        Event::Refused,
        Event::HaltFailed,
        Event::Failed,
        Event::Unknown,
    ];

    #[test]
    fn the_wire_name_is_the_serde_name_and_reads_back() {
        for event in ALL {
            let wire = serde_json::to_value(event).unwrap();
            assert_eq!(wire, event.name(), "{event:?}");
            let line = format!(r#"{{"event":"{}","timestamp":"t","x":1}}"#, event.name());
            let read = EventLine::parse(&line).expect("an event line");
            assert_eq!(read.event, event);
            assert_eq!(read.fields["x"], 1);
        }
    }

    #[test]
    fn a_newer_nodes_event_reads_as_unknown_and_other_lines_are_not_events() {
        let read = EventLine::parse(r#"{"event":"teleported"}"#).unwrap();
        assert_eq!(read.event, Event::Unknown);
        assert!(EventLine::parse("not json").is_none());
        assert!(EventLine::parse(r#"{"no_event":1}"#).is_none());
    }
}
