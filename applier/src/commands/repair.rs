//! `ferry repair`: make the installed files match the signed manifest again,
//! fetching (and verifying) whatever content the node no longer holds.
//! Each file is replaced by one atomic rename, so a repair cut short leaves
//! every file either as it was or repaired; running it again finishes it.

use jiff::Timestamp;

use crate::config::{Config, InstallMode};
use crate::converge;
use crate::drift;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::plan::human_bytes;
use crate::recovery;
use crate::release_dir;
use crate::sources::Sources;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::store::ContentStore;

pub fn run(config: &Config) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(recovery::recover(config, &lock)?);
    let started = Timestamp::now();
    let installed = drift::installed(config)?;
    let read_err = |e| NodeError::io(format!("cannot read {}", installed.dir.display()), e);
    let before = installed.differences().map_err(read_err)?;
    if before.is_empty() {
        outln!(
            "{} matches its signed manifest: nothing to repair",
            installed.version
        );
        return Ok(());
    }
    let result = (|| {
        let store = ContentStore::open(&config.install.state_dir)?;
        let sources = Sources::open(&config.repository)?;
        let mut downloaded = 0;
        for entry in &installed.manifest.manifest().files {
            let Some(content) = entry.content() else {
                continue;
            };
            if !store.holds(&content.sha256, content.size)? {
                downloaded +=
                    sources.fetch_object(&store, content, content.mode, entry.path.as_str())?;
            }
        }
        if config.install.mode == InstallMode::Symlink && !installed.dir.exists() {
            // The whole release directory is gone: built again the way
            // apply stages it, from the store that now holds every content.
            release_dir::stage(installed.manifest.manifest(), &store, &config.install.root)?;
        } else {
            let entries = installed.repair_entries().map_err(read_err)?;
            converge::converge(&installed.dir, &entries, &store).map_err(|e| {
                NodeError::io(
                    format!(
                        "cannot repair the installed files in {}",
                        installed.dir.display()
                    ),
                    e,
                )
            })?;
        }
        let after = installed.differences().map_err(read_err)?;
        if !after.is_empty() {
            return Err(NodeError::RepairIncomplete { differences: after });
        }
        Ok(downloaded)
    })();
    let (outcome, message) = match &result {
        Ok(bytes) => (
            Outcome::Success,
            format!(
                "repaired {} differences ({} downloaded)",
                before.len(),
                human_bytes(*bytes)
            ),
        ),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    let mut node = NodeState::load(&config.install.state_dir)?;
    state::record(
        &config.install.state_dir,
        &mut node,
        Operation {
            id: None,
            operation: OperationKind::Repair,
            from_version: Some(installed.version.clone()),
            to_version: Some(installed.version.clone()),
            outcome,
            started_at: started,
            finished_at: Timestamp::now(),
            message: message.clone(),
            bytes_downloaded: *result.as_ref().unwrap_or(&0),
            transfer: Default::default(),
        },
    )?;
    if let Some(operation) = &node.last_operation {
        crate::announce::operation_finished(config, operation);
    }
    result?;
    outln!("{}: {message}", installed.version);
    Ok(())
}
