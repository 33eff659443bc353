//! The Prometheus textfile: `[metrics] textfile`, rewritten after every
//! operation for node_exporter's textfile collector.
//!
//! ferry runs from a timer and exits, so there is no process to scrape;
//! node_exporter reads `*.prom` files from a directory instead. Every value
//! is derived from what the node already records (the `current` release and
//! `history.jsonl`), so the file can be rebuilt from scratch at any time and
//! a lost or stale one heals at the next operation. It is replaced
//! atomically (a temporary beside it, fsynced, renamed): the collector never
//! reads half a file, and the temporary's name does not end in `.prom`, so
//! the collector never reads it at all.
//!
//! Derived rules worth knowing when writing alerts:
//! - `ferry_last_attempt_timestamp_seconds` and
//!   `ferry_last_success_timestamp_seconds` are the end times of the last
//!   recorded operation and of the last successful one, of any kind;
//! - `ferry_last_update_duration_seconds` is the wall time of the last
//!   successful apply;
//! - `ferry_fetched_bytes_total{kind="full"}` includes what repairs
//!   downloaded (they fetch full objects only); records written before the
//!   split existed count as neither.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use semver::Version;
use serde::Deserialize;

use crate::config::Config;
use crate::error::{ConfigMistake, NodeError, Result};
use crate::state::{self, Operation, OperationKind, Outcome};

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to write the metrics, e.g.
    /// `/var/lib/prometheus/node-exporter/ferry.prom`; none when not set.
    #[serde(default)]
    pub textfile: Option<PathBuf>,
}

/// Checks `[metrics]`; the message names the key at fault.
pub fn check_config(config: &MetricsConfig) -> std::result::Result<(), ConfigMistake> {
    let Some(path) = &config.textfile else {
        return Ok(());
    };
    if !path.is_absolute() {
        return Err(ConfigMistake::new(format!(
            "metrics.textfile {} must be an absolute path",
            path.display()
        )));
    }
    if path.extension().is_none_or(|e| e != "prom") {
        return Err(ConfigMistake::new(format!(
            "metrics.textfile {} must end in .prom: node_exporter's textfile collector reads only *.prom files",
            path.display()
        )));
    }
    Ok(())
}

const OPERATIONS: [(OperationKind, &str); 3] = [
    (OperationKind::Apply, "apply"),
    (OperationKind::Rollback, "rollback"),
    (OperationKind::Repair, "repair"),
];

const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Success, "success"),
    (Outcome::Failed, "failed"),
    (Outcome::RolledBack, "rolled-back"),
    (Outcome::Interrupted, "interrupted"),
    (Outcome::Refused, "refused"),
];

/// The textfile's contents for a node running `installed` with `history`
/// (oldest first). Pure, so tests check the text itself.
pub fn render(installed: Option<&Version>, history: &[Operation]) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };

    metric(
        "ferry_installed_version_info",
        "gauge",
        "The release this node runs (no sample when none is installed).",
        &installed
            .map(|v| {
                (
                    format!("{{version=\"{}\"}}", escape(&v.to_string())),
                    "1".into(),
                )
            })
            .into_iter()
            .collect::<Vec<_>>(),
    );
    let last = history.last();
    let last_success = history
        .iter()
        .rev()
        .find(|op| op.outcome == Outcome::Success);
    metric(
        "ferry_last_attempt_timestamp_seconds",
        "gauge",
        "When the last recorded operation ended (0: none yet).",
        &[(String::new(), seconds(last.map(|op| op.finished_at)))],
    );
    metric(
        "ferry_last_success_timestamp_seconds",
        "gauge",
        "When the last successful operation ended (0: none yet).",
        &[(
            String::new(),
            seconds(last_success.map(|op| op.finished_at)),
        )],
    );

    let mut counts = Vec::new();
    for (kind, kind_name) in OPERATIONS {
        for (outcome, outcome_name) in OUTCOMES {
            let n = history
                .iter()
                .filter(|op| op.operation == kind && op.outcome == outcome)
                .count();
            counts.push((
                format!("{{operation=\"{kind_name}\",outcome=\"{outcome_name}\"}}"),
                n.to_string(),
            ));
        }
    }
    metric(
        "ferry_operations_total",
        "counter",
        "Operations recorded in this node's history, by kind and outcome.",
        &counts,
    );

    let delta: u64 = history.iter().map(|op| op.transfer.delta_bytes).sum();
    let full: u64 = history
        .iter()
        .map(|op| match op.operation {
            OperationKind::Repair => op.bytes_downloaded,
            _ => op.transfer.full_bytes,
        })
        .sum();
    metric(
        "ferry_fetched_bytes_total",
        "counter",
        "Bytes downloaded for updates, as delta patches or full objects.",
        &[
            ("{kind=\"delta\"}".into(), delta.to_string()),
            ("{kind=\"full\"}".into(), full.to_string()),
        ],
    );

    let last_update = history
        .iter()
        .rev()
        .find(|op| op.operation == OperationKind::Apply && op.outcome == Outcome::Success);
    metric(
        "ferry_last_update_duration_seconds",
        "gauge",
        "Wall time of the last successful apply (no sample before the first).",
        &last_update
            .map(|op| {
                let ms = op.finished_at.as_millisecond() - op.started_at.as_millisecond();
                (String::new(), (ms.max(0) as f64 / 1000.0).to_string())
            })
            .into_iter()
            .collect::<Vec<_>>(),
    );
    out
}

/// Seconds since the epoch with millisecond precision, `0` for never.
fn seconds(t: Option<Timestamp>) -> String {
    t.map_or("0".into(), |t| {
        (t.as_millisecond() as f64 / 1000.0).to_string()
    })
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Rewrites the textfile, if one is configured, from the node's records.
pub fn write(config: &Config) -> Result<()> {
    let Some(path) = &config.metrics.textfile else {
        return Ok(());
    };
    let installed = crate::installed::version(config)?;
    let history = state::history(&config.install.state_dir)?;
    write_textfile(path, &render(installed.as_ref(), &history))
}

fn write_textfile(path: &Path, text: &str) -> Result<()> {
    crate::durable::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| {
        NodeError::io(
            format!(
                "cannot write the metrics textfile {} (does its directory exist? see metrics.textfile)",
                path.display()
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Transfer;

    fn op(
        operation: OperationKind,
        outcome: Outcome,
        started: &str,
        finished: &str,
        transfer: Transfer,
        bytes_downloaded: u64,
    ) -> Operation {
        Operation {
            id: None,
            operation,
            from_version: None,
            to_version: Some("1.0.0".parse().unwrap()),
            outcome,
            started_at: started.parse().unwrap(),
            finished_at: finished.parse().unwrap(),
            message: String::new(),
            bytes_downloaded,
            transfer,
        }
    }

    /// The value of the one sample named exactly `series` (name and labels).
    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_node_with_history_reports_counts_bytes_and_times() {
        let bytes = |delta_bytes, full_bytes| Transfer {
            delta_bytes,
            full_bytes,
            ..Transfer::default()
        };
        let history = [
            op(
                OperationKind::Apply,
                Outcome::Success,
                "2024-05-01T12:00:00Z",
                "2024-05-01T12:00:02.5Z",
                bytes(0, 5000),
                5000,
            ),
            op(
                OperationKind::Apply,
                Outcome::Success,
                "2024-05-02T12:00:00Z",
                "2024-05-02T12:00:01.25Z",
                bytes(300, 700),
                1000,
            ),
            op(
                OperationKind::Repair,
                Outcome::Success,
                "2024-05-02T13:00:00Z",
                "2024-05-02T13:00:01Z",
                Transfer::default(),
                42,
            ),
            op(
                OperationKind::Apply,
                Outcome::Failed,
                "2024-05-03T12:00:00Z",
                "2024-05-03T12:00:09Z",
                bytes(0, 0),
                0,
            ),
        ];
        let v: Version = "1.1.0".parse().unwrap();
        let text = render(Some(&v), &history);
        assert_eq!(
            sample(&text, "ferry_installed_version_info{version=\"1.1.0\"}"),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "ferry_operations_total{operation=\"apply\",outcome=\"success\"}"
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "ferry_operations_total{operation=\"apply\",outcome=\"failed\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "ferry_operations_total{operation=\"repair\",outcome=\"success\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "ferry_operations_total{operation=\"rollback\",outcome=\"interrupted\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(&text, "ferry_fetched_bytes_total{kind=\"delta\"}"),
            Some("300")
        );
        assert_eq!(
            sample(&text, "ferry_fetched_bytes_total{kind=\"full\"}"),
            Some("5742")
        );
        let failed_at: Timestamp = "2024-05-03T12:00:09Z".parse().unwrap();
        let repaired_at: Timestamp = "2024-05-02T13:00:01Z".parse().unwrap();
        assert_eq!(
            sample(&text, "ferry_last_attempt_timestamp_seconds"),
            Some(failed_at.as_second().to_string().as_str())
        );
        assert_eq!(
            sample(&text, "ferry_last_success_timestamp_seconds"),
            Some(repaired_at.as_second().to_string().as_str())
        );
        assert_eq!(
            sample(&text, "ferry_last_update_duration_seconds"),
            Some("1.25")
        );
        // 15 counter series (3 operations, 5 outcomes), each metric
        // introduced by HELP and TYPE.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("ferry_operations_total{"))
                .count(),
            15
        );
        for name in [
            "ferry_installed_version_info",
            "ferry_last_attempt_timestamp_seconds",
            "ferry_last_success_timestamp_seconds",
            "ferry_operations_total",
            "ferry_fetched_bytes_total",
            "ferry_last_update_duration_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        }
    }

    #[test]
    fn a_fresh_node_reports_zeros_and_no_version() {
        let text = render(None, &[]);
        assert!(!text.contains("ferry_installed_version_info{"), "{text}");
        assert!(
            !text.contains("\nferry_last_update_duration_seconds "),
            "{text}"
        );
        assert_eq!(
            sample(&text, "ferry_last_attempt_timestamp_seconds"),
            Some("0")
        );
        assert_eq!(
            sample(&text, "ferry_fetched_bytes_total{kind=\"full\"}"),
            Some("0")
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_textfile_path_must_be_absolute_and_end_in_prom() {
        let check = |p: &str| {
            check_config(&MetricsConfig {
                textfile: Some(p.into()),
            })
        };
        assert!(check("/var/lib/node-exporter/ferry.prom").is_ok());
        assert!(check("ferry.prom")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(check("/var/lib/node-exporter/ferry.txt")
            .unwrap_err()
            .to_string()
            .contains(".prom"));
        assert!(check_config(&MetricsConfig::default()).is_ok());
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.prom");
        write_textfile(&path, "old\n").unwrap();
        write_textfile(&path, &render(None, &[])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), render(None, &[]));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary was left beside the textfile");
        let err = write_textfile(&dir.path().join("missing/ferry.prom"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.textfile"), "{err}");
    }
}
