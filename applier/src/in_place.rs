//! In-place installs: release files at fixed paths below `install.root`
//! (`/usr/local/bin/mydb`, `/etc/mydb/defaults.toml`), replaced one atomic
//! rename at a time after a restore point of everything about to change.
//!
//! The set of writes is computed once ([`changeset`]) and persisted with the
//! restore point's id ([`InPlacePlan`]) before the first rename, so after a
//! crash recovery can converge the same set to the new state, or to the
//! restore point, and the files end all-new or all-old — never a mix.

use std::path::{Path, PathBuf};

use manifests::manifest::EntryKind;
use manifests::{Manifest, SafeRelativePath};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::converge::{self, Desired, DesiredEntry};
use crate::error::{NodeError, Result};
use crate::journal::{Journal, Step};
use crate::operation::error::OperationError;
use crate::operation::record;
use crate::restore_point::RestorePoint;
use crate::state::Outcome;
use crate::store::ContentStore;
use crate::{durable, faults};

/// The writes of an in-place operation and the restore point that undoes
/// them: `state_dir/in-place-plan.json`, present from just before the first
/// write until the operation is concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InPlacePlan {
    pub operation: String,
    pub restore_point: String,
    pub entries: Vec<DesiredEntry>,
}

fn plan_path(state_dir: &Path) -> PathBuf {
    state_dir.join("in-place-plan.json")
}

impl InPlacePlan {
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        durable::save_json(&plan_path(state_dir), self)
    }

    pub fn load(state_dir: &Path) -> Result<Option<InPlacePlan>> {
        let path = plan_path(state_dir);
        if !path.exists() {
            return Ok(None);
        }
        durable::load_json::<Option<InPlacePlan>>(
            &path,
            "restore the files from backup, then remove it",
        )
    }

    pub fn remove(state_dir: &Path) -> Result<()> {
        match std::fs::remove_file(plan_path(state_dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                let plan = plan_path(state_dir);
                return Err(NodeError::io(
                    format!("cannot remove {}", plan.display()),
                    e,
                ));
            }
        }
        durable::sync_dir(state_dir)
            .map_err(|e| NodeError::io(format!("cannot fsync {}", state_dir.display()), e))
    }
}

/// Relative forms of `install.targets`: (path, covers a directory tree).
fn targets(config: &Config) -> Vec<(String, bool)> {
    config
        .install
        .targets
        .iter()
        .map(|t| {
            let tree = t.ends_with('/');
            let rel = Path::new(t.trim_end_matches('/'))
                .strip_prefix(&config.install.root)
                .expect("config check: targets are below root");
            (rel.to_string_lossy().into_owned(), tree)
        })
        .collect()
}

enum Placement {
    /// Inside a target: ferry owns it.
    Managed,
    /// A directory above a target: must exist, its mode is the system's.
    Ancestor,
    Outside,
}

fn placement(path: &SafeRelativePath, targets: &[(String, bool)]) -> Placement {
    let p = path.as_str();
    for (target, tree) in targets {
        if p == target
            || (*tree && p.starts_with(target.as_str()) && p[target.len()..].starts_with('/'))
        {
            return Placement::Managed;
        }
    }
    let ancestor = targets
        .iter()
        .any(|(t, _)| t.starts_with(p) && t[p.len()..].starts_with('/'));
    if ancestor {
        Placement::Ancestor
    } else {
        Placement::Outside
    }
}

/// The writes that turn a node holding `old` (if any) into one holding
/// `new`. Refuses a release that would write outside `install.targets`.
pub fn changeset(
    config: &Config,
    new: &Manifest,
    old: Option<&Manifest>,
) -> Result<Vec<DesiredEntry>> {
    let targets = targets(config);
    let mut entries = Vec::with_capacity(new.files.len());
    let mut outside = Vec::new();
    for entry in &new.files {
        match (placement(&entry.path, &targets), &entry.kind) {
            (Placement::Managed, _) => entries.push(DesiredEntry::from_manifest(entry)),
            (Placement::Ancestor, EntryKind::Directory { .. }) => entries.push(DesiredEntry {
                path: entry.path.clone(),
                desired: Desired::DirectoryExists,
            }),
            _ => outside.push(entry.path.to_string()),
        }
    }
    if !outside.is_empty() {
        return Err(OperationError::OutsideTargets {
            version: new.version.clone(),
            outside,
        }
        .into());
    }
    if let Some(old) = old {
        for entry in &old.files {
            let still = new.files.iter().any(|n| n.path == entry.path);
            if !still && matches!(placement(&entry.path, &targets), Placement::Managed) {
                entries.push(DesiredEntry {
                    path: entry.path.clone(),
                    desired: Desired::Absent,
                });
            }
        }
    }
    Ok(entries)
}

/// Captures a restore point of everything `entries` touch, then converges
/// the files to `entries`. On any failure after the first write, converges
/// back to the restore point. The journal ends at `verified`; returns the
/// restore point's id.
pub fn switch(
    config: &Config,
    journal: &mut Journal,
    store: &ContentStore,
    entries: Vec<DesiredEntry>,
) -> Result<String> {
    let state_dir = &config.install.state_dir;
    let root = &config.install.root;
    let point = RestorePoint::capture(
        state_dir,
        store,
        root,
        &entries,
        journal.from_version.clone(),
        &journal.id,
    );
    let point = match point {
        Ok(p) => p,
        Err(e) => {
            return Err(record::fail(config, journal, e));
        }
    };
    faults::point("in-place:restore-point-made");
    let plan = InPlacePlan {
        operation: journal.id.clone(),
        restore_point: point.id.clone(),
        entries,
    };
    plan.save(state_dir)?;
    journal.advance(state_dir, Step::Staged)?;
    let written = converge::converge(root, &plan.entries, store)
        .map_err(|e| NodeError::io("cannot write the new files", e))
        .and_then(|()| journal.advance(state_dir, Step::Switched))
        .and_then(|()| {
            let problems = converge::check(root, &plan.entries, false)
                .map_err(|e| NodeError::io("cannot check the new files", e))?;
            if problems.is_empty() {
                Ok(())
            } else {
                Err(OperationError::InPlaceMismatch { problems }.into())
            }
        });
    if let Err(e) = written {
        journal.advance(state_dir, Step::RollingBack)?;
        let message = restore(config, journal, store, &e.to_string())?;
        return Err(OperationError::InPlaceUndone(message).into());
    }
    journal.advance(state_dir, Step::Verified)?;
    Ok(plan.restore_point)
}

/// Converges back to the plan's restore point and records `cause`.
pub fn restore(
    config: &Config,
    journal: &mut Journal,
    store: &ContentStore,
    cause: &str,
) -> Result<String> {
    let point = converge_back(config, store)?;
    let message = format!(
        "{} {} -> {} undone from restore point {point}: {cause}",
        record::kind_name(journal.operation),
        journal
            .from_version
            .as_ref()
            .map_or("nothing".into(), |v| v.to_string()),
        journal.to_version,
    );
    record::conclude(config, journal, Outcome::RolledBack, message.clone())?;
    InPlacePlan::remove(&config.install.state_dir)?;
    Ok(message)
}

/// Converges the files back to the plan's restore point; returns its id.
pub fn converge_back(config: &Config, store: &ContentStore) -> Result<String> {
    let state_dir = &config.install.state_dir;
    let plan = InPlacePlan::load(state_dir)?.ok_or_else(|| {
        NodeError::from(OperationError::InPlacePlanMissing {
            context: String::new(),
            next: "cannot tell which restore point to use",
        })
    })?;
    let point = RestorePoint::load(state_dir, &plan.restore_point)?;
    converge::converge(&config.install.root, &point.entries, store)
        .map_err(|e| NodeError::io(format!("cannot restore from restore point {}", point.id), e))?;
    Ok(point.id)
}

/// Housekeeping after a concluded in-place operation.
pub fn finish(config: &Config) -> Result<()> {
    let state_dir = &config.install.state_dir;
    InPlacePlan::remove(state_dir)?;
    crate::restore_point::prune(state_dir, config.install.keep_restore_points)?;
    // Keep the manifests of the installed version and of versions a restore
    // point can bring back; the store keeps their contents for re-applies.
    let mut wanted: Vec<semver::Version> = crate::installed::version(config)?.into_iter().collect();
    wanted.extend(
        RestorePoint::list(state_dir)?
            .into_iter()
            .filter_map(|p| p.version),
    );
    for version in crate::kept_manifests::versions(state_dir) {
        if !wanted.contains(&version) {
            crate::kept_manifests::remove(state_dir, &version);
        }
    }
    ContentStore::open(state_dir)?
        .collect_garbage(&crate::kept_manifests::referenced_contents(state_dir))
        .map_err(|e| crate::store::cleaning_failed(state_dir, e))?;
    Ok(())
}
