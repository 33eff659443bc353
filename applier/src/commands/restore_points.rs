//! `ferry restore-points list|show ID|clean --keep N`.

use crate::config::Config;
use crate::converge::Desired;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::plan::human_bytes;
use crate::restore_point::{self, RestorePoint};
use crate::store::ContentStore;

pub fn list(config: &Config, json: bool) -> Result<()> {
    let points = RestorePoint::list(&config.install.state_dir)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&points).expect("restore points serialise")
        );
        return Ok(());
    }
    if points.is_empty() {
        outln!("no restore points (they are made by in-place updates and rollbacks)");
    }
    for p in &points {
        outln!(
            "{}  {}  version {}  {} paths, {}",
            p.id,
            p.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            p.version.as_ref().map_or("-".into(), |v| v.to_string()),
            p.entries.len(),
            human_bytes(p.bytes())
        );
    }
    Ok(())
}

pub fn show(config: &Config, id: &str, json: bool) -> Result<()> {
    let point = RestorePoint::load(&config.install.state_dir, id)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&point).expect("restore points serialise")
        );
        return Ok(());
    }
    outln!(
        "restore point {} of version {}",
        point.id,
        point.version.as_ref().map_or("-".into(), |v| v.to_string())
    );
    for entry in &point.entries {
        let what = match &entry.desired {
            Desired::Directory { mode } => format!("directory {mode}"),
            Desired::DirectoryExists => "directory (system)".into(),
            Desired::File { sha256, size, mode } => {
                format!("file {mode} {size} bytes sha256:{sha256}")
            }
            Desired::Symlink { target } => format!("symlink -> {target}"),
            Desired::Absent => "absent".into(),
        };
        outln!("  {}  {what}", entry.path);
    }
    let problems = point.verify(&config.install.state_dir)?;
    if problems.is_empty() {
        outln!("every saved file matches its SHA-256");
        Ok(())
    } else {
        Err(NodeError::verification(format!(
            "restore point {id} is damaged:\n  {}",
            problems.join("\n  ")
        )))
    }
}

pub fn clean(config: &Config, keep: usize) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(crate::recovery::recover(config, &lock)?);
    let removed = restore_point::prune(&config.install.state_dir, keep)?;
    let freed = ContentStore::open(&config.install.state_dir)?
        .collect_garbage(&crate::kept_manifests::referenced_contents(
            &config.install.state_dir,
        ))
        .map_err(|e| crate::store::cleaning_failed(&config.install.state_dir, e))?;
    outln!(
        "removed {removed} restore points, freed {}",
        human_bytes(freed)
    );
    Ok(())
}
