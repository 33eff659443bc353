//! Data migrations: running the `up` scripts a release ships, once each,
//! before the release goes live, and their `down` scripts to undo them.
//!
//! Files can be switched back by a rename; data cannot. So this node keeps
//! its own record of every migration it ran, `state_dir/migrations.json`,
//! one record per id: the checksum it ran, the release that shipped it,
//! when, how long, and how it ended (`running`, `applied`, `failed`,
//! `reverted`). That record, not the installed release, decides what is
//! pending: a migration applied once is never run again, whichever later
//! releases carry it, and one whose script has changed since it was
//! applied is refused — what it did to the data is already done, and a
//! changed script would make this node's data differ from every node that
//! ran the old one.
//!
//! Each state change is written durably before the next step: `running`
//! before an up starts, so a crash mid-script is visible afterwards (the
//! next apply runs that up again from the start, so ups must tolerate
//! being re-run after a partial run). A failed up has the ups of the same
//! run undone by their downs, newest first, so the data goes back to what
//! the still-live release expects.
//!
//! Scripts run with the release directory as working directory, with
//! `FERRY_FROM_VERSION`, `FERRY_TO_VERSION` (from the caller, see
//! [`operation_env`]), `FERRY_RELEASE_DIR` and `FERRY_MIGRATION_ID`; an
//! executable script runs directly (its `#!` line decides), any other with
//! `/bin/sh`. Each has `[migrations] timeout_seconds`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use manifests::manifest::{EntryKind, Manifest, Migration};
use manifests::{SafeRelativePath, Sha256Digest};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{NodeError, Result};
use crate::shell::{CommandError, ShellCommand};

mod error;
mod pinned;
pub use error::{MigrationError, NoDownScript, StepFailure, UpFailed};
use pinned::Direction;

/// `state_dir/migrations.json`.
pub const HISTORY_FILE: &str = "migrations.json";

/// `[migrations]` in the node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsConfig {
    /// Longest one migration script may run before it is killed (and
    /// counted as failed).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_timeout_seconds() -> u64 {
    600
}

impl Default for MigrationsConfig {
    fn default() -> Self {
        MigrationsConfig {
            timeout_seconds: default_timeout_seconds(),
        }
    }
}

impl MigrationsConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationOutcome {
    /// The up started and has not been seen to end: it is running now, or
    /// a crash cut it short.
    Running,
    Applied,
    /// The up failed (and did not change the data, if it is well written).
    Failed,
    /// The up ran, then its down undid it.
    Reverted,
}

/// What this node knows of one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub id: String,
    /// Checksum of the up script that ran.
    pub checksum: Sha256Digest,
    /// The release whose up script ran.
    pub version: Version,
    /// When the up started.
    pub applied_at: Timestamp,
    /// How long the up ran.
    pub duration_ms: u64,
    pub outcome: MigrationOutcome,
    /// When the down finished, for a reverted migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<Timestamp>,
    /// The last failure of its up or down: status and output tail.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// `state_dir/migrations.json`: one record per id, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationHistory {
    pub migrations: Vec<MigrationRecord>,
}

impl MigrationHistory {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(HISTORY_FILE)
    }

    pub fn load(state_dir: &Path) -> Result<MigrationHistory> {
        durable::load_json(
            &Self::path(state_dir),
            "it records which data migrations this node ran: restore it from backup; without it \
             ferry would run every migration again",
        )
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        durable::save_json(&Self::path(state_dir), self)
    }

    pub fn get(&self, id: &str) -> Option<&MigrationRecord> {
        self.migrations.iter().find(|r| r.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut MigrationRecord> {
        self.migrations.iter_mut().find(|r| r.id == id)
    }

    /// Whether the up of `id` ran to success and was not reverted since.
    pub fn is_applied(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|r| r.outcome == MigrationOutcome::Applied)
    }

    /// Inserts or replaces the record of `record.id`, keeping id order.
    fn put(&mut self, record: MigrationRecord) {
        match self
            .migrations
            .binary_search_by(|r| r.id.as_str().cmp(&record.id))
        {
            Ok(i) => self.migrations[i] = record,
            Err(i) => self.migrations.insert(i, record),
        }
    }
}

/// `FERRY_FROM_VERSION` (empty on a first install) and `FERRY_TO_VERSION`
/// of an operation moving this node from `from` to `to`: the caller's part
/// of a script's environment.
pub fn operation_env(from: Option<&Version>, to: &Version) -> Vec<(String, String)> {
    vec![
        (
            "FERRY_FROM_VERSION".into(),
            from.map(Version::to_string).unwrap_or_default(),
        ),
        ("FERRY_TO_VERSION".into(), to.to_string()),
    ]
}

/// The migrations of `manifest` this node has not applied, in id order.
/// Refused when one it did apply has a different checksum in `manifest`.
pub fn pending<'m>(state_dir: &Path, manifest: &'m Manifest) -> Result<Vec<&'m Migration>> {
    pending_in(&MigrationHistory::load(state_dir)?, manifest)
}

/// [`pending`] against a loaded history.
pub fn pending_in<'m>(
    history: &MigrationHistory,
    manifest: &'m Manifest,
) -> Result<Vec<&'m Migration>> {
    let mut pending = Vec::new();
    for migration in &manifest.migrations {
        match history.get(&migration.id) {
            Some(record) if record.outcome == MigrationOutcome::Applied => {
                if record.checksum != migration.checksum {
                    return Err(MigrationError::Edited {
                        id: migration.id.clone(),
                        ran: record.version.clone(),
                        old: record.checksum,
                        version: manifest.version.clone(),
                        new: migration.checksum,
                    }
                    .into());
                }
            }
            _ => pending.push(migration),
        }
    }
    Ok(pending)
}

/// Why [`apply_pending`] did not apply every pending migration.
#[derive(Debug)]
pub enum MigrationFailure {
    /// Nothing ran: the history could not be read, an applied migration
    /// was edited, or a script does not match its declared checksum.
    Refused(NodeError),
    /// An up failed (see [`UpFailed`]: what was reverted, what was not).
    Failed(Box<UpFailed>),
}

impl fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationFailure::Refused(e) => write!(f, "{e}"),
            MigrationFailure::Failed(failed) => write!(f, "{failed}"),
        }
    }
}

impl From<MigrationFailure> for NodeError {
    fn from(failure: MigrationFailure) -> Self {
        match failure {
            MigrationFailure::Refused(e) => e,
            MigrationFailure::Failed(failed) => MigrationError::UpFailed(failed).into(),
        }
    }
}

/// Runs the pending ups of `manifest` from its release tree at
/// `release_dir`, in id order, recording each; returns the ids applied now
/// (none when nothing was pending). On a failing up, the ups applied by
/// this call are reverted, newest first, before the failure is returned.
/// `env` is passed to every script (see [`operation_env`]).
pub fn apply_pending(
    state_dir: &Path,
    manifest: &Manifest,
    release_dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<String>, MigrationFailure> {
    let mut history = MigrationHistory::load(state_dir).map_err(MigrationFailure::Refused)?;
    let pending: Vec<Migration> = pending_in(&history, manifest)
        .map_err(MigrationFailure::Refused)?
        .into_iter()
        .cloned()
        .collect();
    // Every script is checked before the first runs: a release whose
    // declared checksum does not match its own script is inconsistent,
    // and half of it should not run.
    // The downs too: a failing up has them run, and they must be the
    // signed ones as much as the ups.
    // The signed check first: it refuses anything but a regular file
    // before reading it (a fifo there would block the read).
    for migration in &pending {
        check_signed_scripts(manifest, release_dir, migration)
            .and_then(|()| check_script(manifest, release_dir, migration))
            .map_err(MigrationFailure::Refused)?;
    }
    let runner = ScriptRunner {
        manifest,
        release_dir,
        env,
        timeout,
    };
    let mut applied: Vec<String> = Vec::new();
    for migration in &pending {
        if let Err(reason) = runner.up(state_dir, &mut history, migration) {
            let (reverted, not_reverted, revert_error) =
                match runner.downs(state_dir, &mut history, &applied) {
                    Ok(reverted) => (reverted, Vec::new(), None),
                    Err(stop) => (stop.reverted, stop.remaining, Some(stop.reason)),
                };
            return Err(MigrationFailure::Failed(Box::new(UpFailed {
                id: migration.id.clone(),
                reason,
                reverted,
                not_reverted,
                revert_error,
            })));
        }
        applied.push(migration.id.clone());
    }
    Ok(applied)
}

/// Runs the downs of `ids` from `manifest`'s release tree at `release_dir`,
/// newest id first, recording each as reverted. Every id must be shipped by
/// `manifest` with a down script; this is checked before any down runs.
/// Ids this node has not applied are skipped, so a repeated revert is
/// harmless.
pub fn revert(
    state_dir: &Path,
    manifest: &Manifest,
    release_dir: &Path,
    ids: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<()> {
    let mut history = MigrationHistory::load(state_dir)?;
    check_downs(manifest, release_dir, ids)?;
    let runner = ScriptRunner {
        manifest,
        release_dir,
        env,
        timeout,
    };
    runner
        .downs(state_dir, &mut history, ids)
        .map(|_| ())
        .map_err(|stop| {
            MigrationError::RevertStopped {
                reason: stop.reason,
                reverted: stop.reverted,
                remaining: stop.remaining,
            }
            .into()
        })
}

/// The migrations to revert before leaving release `from` for release `to`
/// (a rollback): those this node applied that `from` ships and `to` does
/// not, newest first. Refused when one has no down script — its data
/// change cannot be undone, so the node must not go back past it.
pub fn reverts_needed(state_dir: &Path, from: &Manifest, to: &Manifest) -> Result<Vec<String>> {
    let history = MigrationHistory::load(state_dir)?;
    let mut ids: Vec<String> = from
        .migrations
        .iter()
        .filter(|m| history.is_applied(&m.id) && to.migration(&m.id).is_none())
        .map(|m| m.id.clone())
        .collect();
    ids.reverse();
    for id in &ids {
        if from.migration(id).is_some_and(|m| m.down.is_none()) {
            return Err(MigrationError::Irreversible {
                from: from.version.clone(),
                to: to.version.clone(),
                id: id.clone(),
            }
            .into());
        }
    }
    Ok(ids)
}

/// Ids whose up ran to success at or after `since`, in id order: what an
/// operation that began at `since` applied, for recovery to revert after
/// a crash.
pub fn applied_since(state_dir: &Path, since: Timestamp) -> Result<Vec<String>> {
    Ok(MigrationHistory::load(state_dir)?
        .migrations
        .into_iter()
        .filter(|r| r.outcome == MigrationOutcome::Applied && r.applied_at >= since)
        .map(|r| r.id)
        .collect())
}

/// Refuses, before any down runs, reverting `ids` from `manifest`'s
/// release tree at `release_dir`: when one has no down script, or one's
/// down on disk is not the file the (re-verified) `manifest` pins.
pub fn check_downs(manifest: &Manifest, release_dir: &Path, ids: &[String]) -> Result<()> {
    for id in ids {
        let down = down_of(manifest, id).map_err(MigrationError::NoDown)?;
        pinned::check(manifest, release_dir, id, Direction::Down, down)?;
    }
    Ok(())
}

/// Refuses `migration` unless its up, and its down if it has one, are on
/// disk exactly as `manifest` pins them.
fn check_signed_scripts(
    manifest: &Manifest,
    release_dir: &Path,
    migration: &Migration,
) -> Result<()> {
    let id = &migration.id;
    pinned::check(manifest, release_dir, id, Direction::Up, &migration.up)?;
    match &migration.down {
        Some(down) => pinned::check(manifest, release_dir, id, Direction::Down, down),
        None => Ok(()),
    }
}

/// The down script of `id` in `manifest`, or why it cannot be run.
fn down_of<'m>(
    manifest: &'m Manifest,
    id: &str,
) -> std::result::Result<&'m SafeRelativePath, NoDownScript> {
    let migration = manifest
        .migration(id)
        .ok_or_else(|| NoDownScript::NotShipped {
            version: manifest.version.clone(),
            id: id.to_string(),
        })?;
    migration
        .down
        .as_ref()
        .ok_or_else(|| NoDownScript::Missing {
            version: manifest.version.clone(),
            id: id.to_string(),
        })
}

/// Refuses an up script whose content does not match the migration's
/// declared checksum.
fn check_script(manifest: &Manifest, release_dir: &Path, migration: &Migration) -> Result<()> {
    let path = migration.up.under(release_dir);
    let script = std::fs::read(&path).map_err(|e| {
        NodeError::io(
            format!("cannot read migration script {}", path.display()),
            e,
        )
    })?;
    let found = manifests::migration::checksum(&script);
    if found != migration.checksum {
        return Err(NodeError::verification(format!(
            "release {} declares migration {} with checksum {}, but its up script {} has \
             checksum {found}: the release is inconsistent; republish it",
            manifest.version, migration.id, migration.checksum, migration.up
        )));
    }
    Ok(())
}

/// Where a run of downs stopped.
struct RevertStop {
    reason: StepFailure,
    reverted: Vec<String>,
    /// The id that failed and every older one not reached.
    remaining: Vec<String>,
}

/// Runs one release's migration scripts and records what happened.
struct ScriptRunner<'a> {
    manifest: &'a Manifest,
    release_dir: &'a Path,
    env: &'a [(String, String)],
    timeout: Duration,
}

impl ScriptRunner<'_> {
    /// Runs the up of `migration`, recorded as running first; `Err` is the
    /// failure (status and output tail, or a state write that failed).
    fn up(
        &self,
        state_dir: &Path,
        history: &mut MigrationHistory,
        migration: &Migration,
    ) -> Result<(), StepFailure> {
        let record_failed = |e: NodeError| StepFailure::Record(Box::new(e));
        let started = Timestamp::now();
        history.put(MigrationRecord {
            id: migration.id.clone(),
            checksum: migration.checksum,
            version: self.manifest.version.clone(),
            applied_at: started,
            duration_ms: 0,
            outcome: MigrationOutcome::Running,
            reverted_at: None,
            last_error: None,
        });
        history.save(state_dir).map_err(record_failed)?;
        crate::faults::point("migrations:up-running");
        let result = self.checked_run(&migration.id, Direction::Up, &migration.up);
        let record = history.get_mut(&migration.id).expect("recorded just above");
        record.duration_ms = duration_ms(started);
        match &result {
            Ok(()) => {
                record.outcome = MigrationOutcome::Applied;
                record.last_error = None;
            }
            Err(reason) => {
                record.outcome = MigrationOutcome::Failed;
                record.last_error = Some(reason.to_string());
            }
        }
        history.save(state_dir).map_err(record_failed)?;
        result
    }

    /// Runs the downs of the applied ones among `ids`, newest id first,
    /// stopping at the first that cannot run or fails: an older down may
    /// rely on the newer ones having been undone.
    fn downs(
        &self,
        state_dir: &Path,
        history: &mut MigrationHistory,
        ids: &[String],
    ) -> Result<Vec<String>, RevertStop> {
        let mut order: Vec<&String> = ids.iter().filter(|id| history.is_applied(id)).collect();
        order.sort_by(|a, b| b.cmp(a));
        let mut reverted = Vec::new();
        for (i, id) in order.iter().enumerate() {
            let result = down_of(self.manifest, id)
                .map_err(|e| StepFailure::NoDown(Box::new(e)))
                .and_then(|down| self.checked_run(id, Direction::Down, down));
            let record = history.get_mut(id).expect("only applied ids are reverted");
            match &result {
                Ok(()) => {
                    record.outcome = MigrationOutcome::Reverted;
                    record.reverted_at = Some(Timestamp::now());
                }
                Err(reason) => record.last_error = Some(reason.to_string()),
            }
            let saved = history
                .save(state_dir)
                .map_err(|e| StepFailure::Record(Box::new(e)));
            if let Err(reason) = result.and(saved) {
                return Err(RevertStop {
                    reason,
                    reverted,
                    remaining: order[i..].iter().map(|id| id.to_string()).collect(),
                });
            }
            reverted.push(id.to_string());
        }
        Ok(reverted)
    }

    /// `script` checked against its manifest once more, right before it
    /// runs: every script was checked before the first one ran, but an
    /// earlier script may have run for minutes, and a script swapped in
    /// that time must not run (the window left is this call to the exec).
    fn checked_run(
        &self,
        id: &str,
        direction: Direction,
        script: &SafeRelativePath,
    ) -> Result<(), StepFailure> {
        pinned::check(self.manifest, self.release_dir, id, direction, script)
            .map_err(|e| StepFailure::Altered(Box::new(e)))?;
        self.run(id, direction.name(), script)
            .map_err(StepFailure::from)
    }

    fn run(
        &self,
        id: &str,
        direction: &str,
        script: &SafeRelativePath,
    ) -> std::result::Result<(), CommandError> {
        let executable = self
            .manifest
            .files
            .iter()
            .find(|f| &f.path == script)
            .is_some_and(|f| matches!(f.kind, EntryKind::Executable(_)));
        let quoted = shell_quote(&format!("./{script}"));
        let line = if executable {
            quoted
        } else {
            format!("/bin/sh {quoted}")
        };
        let what = format!("migration {id} {direction}");
        let mut env = self.env.to_vec();
        env.push((
            "FERRY_RELEASE_DIR".into(),
            self.release_dir.display().to_string(),
        ));
        env.push(("FERRY_MIGRATION_ID".into(), id.to_string()));
        let finished = ShellCommand {
            what: &what,
            line: &line,
            env,
            cwd: Some(self.release_dir),
            timeout: self.timeout,
        }
        .run_checked()?;
        tracing::info!(migration = id, direction, output = %finished.output.trim(), "migration script ran");
        Ok(())
    }
}

fn duration_ms(started: Timestamp) -> u64 {
    let elapsed = Timestamp::now().duration_since(started);
    u64::try_from(elapsed.as_millis()).unwrap_or(0)
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
