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

/// One event for machines: printed in JSON mode only. `fields` must be a
/// JSON object.
pub fn emit(event: &str, fields: Value) {
    if mode() != OutputMode::Json {
        return;
    }
    let mut object = Map::new();
    object.insert("event".into(), Value::from(event));
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
