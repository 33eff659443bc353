//! `ferry migrations [--json]`: the data migrations this node ran, how each
//! ended, and which ones the installed release ships that have not run.
//!
//! Read-only and lock-free like `status`: an operator chasing a failed
//! apply wants the record while the node may be retrying. The pending list
//! comes from the installed release's kept manifest, re-verified, so it
//! shows what that signed release asks for, not what a file on disk says.

use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::migrations::{self, MigrationHistory, MigrationOutcome, MigrationRecord};
use crate::{installed, kept_manifests};

#[derive(Serialize)]
pub struct MigrationsReport {
    pub installed_version: Option<Version>,
    /// Every migration this node ran, in id order.
    pub history: Vec<MigrationRecord>,
    /// Migrations of the installed release not applied on this node.
    pub pending: Vec<manifests::manifest::Migration>,
    /// Why `pending` could not be worked out (an applied migration the
    /// installed release ships with another checksum), if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_error: Option<String>,
}

pub fn report(config: &Config) -> Result<MigrationsReport> {
    let state_dir = &config.install.state_dir;
    let history = MigrationHistory::load(state_dir)?;
    let installed_version = installed::version(config)?;
    let (mut pending, mut pending_error) = (Vec::new(), None);
    if let Some(version) = &installed_version {
        let manifest = kept_manifests::load(state_dir, version, &config.trusted_keys()?)?;
        match migrations::pending_in(&history, manifest.manifest()) {
            Ok(list) => pending = list.into_iter().cloned().collect(),
            Err(e) => pending_error = Some(e.to_string()),
        }
    }
    Ok(MigrationsReport {
        installed_version,
        history: history.migrations,
        pending,
        pending_error,
    })
}

pub fn run(config: &Config, json: bool) -> Result<()> {
    let r = report(config)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&r).expect("the migrations report serialises")
        );
        return Ok(());
    }
    if r.history.is_empty() {
        outln!("no migrations have run on this node");
    } else {
        outln!(
            "{:<28} {:<12} {:<23} {:>9}  {:<9} RELEASE",
            "ID",
            "CHECKSUM",
            "APPLIED",
            "DURATION",
            "OUTCOME"
        );
        for record in &r.history {
            outln!("{}", describe(record));
        }
    }
    let installed = r
        .installed_version
        .as_ref()
        .map_or("nothing installed".to_string(), |v| v.to_string());
    if let Some(error) = &r.pending_error {
        outln!("pending for {installed}: unknown: {error}");
    } else if r.pending.is_empty() {
        outln!("pending for {installed}: none");
    } else {
        let ids: Vec<&str> = r.pending.iter().map(|m| m.id.as_str()).collect();
        outln!("pending for {installed}: {}", ids.join(", "));
    }
    Ok(())
}

/// One line of the table; a failure's reason follows on the next line.
fn describe(record: &MigrationRecord) -> String {
    let outcome = match record.outcome {
        MigrationOutcome::Applied => "applied",
        MigrationOutcome::Reverted => "reverted",
        MigrationOutcome::Failed => "FAILED",
        // Seen while an apply runs it, or after a crash cut it short.
        MigrationOutcome::Running => "RUNNING",
    };
    let mut line = format!(
        "{:<28} {:<12} {:<23} {:>8.3}s  {:<9} {}",
        record.id,
        &record.checksum.to_hex()[..12],
        record.applied_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        record.duration_ms as f64 / 1000.0,
        outcome,
        record.version
    );
    if let Some(error) = &record.last_error {
        line.push_str(&format!(
            "\n    last error: {}",
            error.lines().next().unwrap_or("")
        ));
    }
    line
}
