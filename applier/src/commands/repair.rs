//! `ferry repair`: make the installed files match the signed manifest again,
//! fetching (and verifying) whatever content the node no longer holds.
//! Each file is replaced by one atomic rename, so a repair cut short leaves
//! every file either as it was or repaired; running it again finishes it.
//!
//! It repairs more than the live release: store objects that no longer
//! hash to their name are removed first (fetched again where a release
//! needs them), then (symlink mode) every kept release under `releases/`
//! is checked against its kept manifest and repaired (`release_repair`),
//! because a write through a shared inode reaches them all. Repaired files
//! are fresh inodes, read-only like every installed release file.

use jiff::Timestamp;

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::converge::{self, Desired};
use crate::drift;
use crate::error::{NodeError, Result};
use crate::lock::StateLock;
use crate::plan::human_bytes;
use crate::recovery;
use crate::release_dir;
use crate::sources::Sources;
use crate::state::{self, NodeState, Operation, OperationKind, Outcome};
use crate::store::ContentStore;
use crate::{kept_manifests, release_repair, sharing};

pub fn run(config: &Config) -> Result<()> {
    let lock = StateLock::acquire(&config.install.state_dir)?;
    super::announce_recovery(recovery::recover(config, &lock)?);
    let started = Timestamp::now();
    let installed = drift::installed(config)?;
    let read_err = |e| NodeError::io(format!("cannot read {}", installed.dir.display()), e);
    let before = installed.differences().map_err(read_err)?;
    let symlink = config.install.mode == InstallMode::Symlink;
    let result = (|| {
        let store = ContentStore::open(&config.install.state_dir)?;
        let mut sources = None;
        let mut report = Report {
            damaged_objects: store
                .remove_damaged()
                .map_err(|e| NodeError::io("cannot check the content store", e))?
                .len(),
            ..Report::default()
        };
        if !before.is_empty() {
            report.downloaded +=
                release_repair::ensure_contents(config, &store, &mut sources, &installed.manifest)?;
            repair_installed(config, &installed, &store)?;
            let after = installed.differences().map_err(read_err)?;
            if !after.is_empty() {
                return Err(NodeError::RepairIncomplete { differences: after });
            }
        }
        if symlink {
            repair_kept_releases(
                config,
                &installed.version,
                &store,
                &mut sources,
                &mut report,
            )?;
        }
        Ok(report)
    })();
    if matches!(&result, Ok(report) if before.is_empty() && report.is_empty()) {
        outln!(
            "{} matches its signed manifest: nothing to repair",
            installed.version
        );
        return Ok(());
    }
    let (outcome, message) = match &result {
        Ok(report) => (Outcome::Success, report.describe(before.len())),
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
            bytes_downloaded: result.as_ref().map_or(0, |r| r.downloaded),
            transfer: Default::default(),
        },
    )?;
    if let Some(operation) = &node.last_operation {
        crate::announce::operation_finished(config, operation);
    }
    let report = result?;
    outln!("{}: {message}", installed.version);
    for (version, entries) in &report.kept {
        outln!(
            "{version}: repaired {} entries of this kept release: {}",
            entries.len(),
            entries.join(", ")
        );
    }
    Ok(())
}

/// What a repair did beyond the live release's differences.
#[derive(Debug, Default)]
struct Report {
    downloaded: u64,
    /// Store objects removed because their bytes no longer hash to their name.
    damaged_objects: usize,
    /// Kept releases repaired, with the entries put back.
    kept: Vec<(Version, Vec<String>)>,
}

impl Report {
    fn is_empty(&self) -> bool {
        self.damaged_objects == 0 && self.kept.is_empty()
    }

    /// "repaired 4 differences; repaired kept release 1.0.0 (1 entries);
    /// removed 1 damaged store objects (12 B downloaded)".
    fn describe(&self, live_differences: usize) -> String {
        let mut parts = vec![format!("repaired {live_differences} differences")];
        for (version, entries) in &self.kept {
            parts.push(format!(
                "repaired kept release {version} ({} entries)",
                entries.len()
            ));
        }
        if self.damaged_objects > 0 {
            parts.push(format!(
                "removed {} damaged store objects",
                self.damaged_objects
            ));
        }
        format!(
            "{} ({} downloaded)",
            parts.join("; "),
            human_bytes(self.downloaded)
        )
    }
}

/// Puts the live release's files back: rebuilt whole when its directory is
/// gone, else converged file by file.
fn repair_installed(
    config: &Config,
    installed: &drift::Installed,
    store: &ContentStore,
) -> Result<()> {
    // Repair puts files back as their manifest says: never a setuid,
    // setgid or sticky bit the node no longer allows.
    crate::operation::decide::special_modes(
        installed.manifest.manifest(),
        config.install.allow_special_modes,
    )?;
    if config.install.mode == InstallMode::Symlink && !installed.dir.exists() {
        // The whole release directory is gone: built again the way
        // apply stages it, from the store that now holds every content.
        release_dir::stage(installed.manifest.manifest(), store, &config.install.root)?;
        return Ok(());
    }
    let read_err = |e| NodeError::io(format!("cannot read {}", installed.dir.display()), e);
    let mut entries = installed.repair_entries().map_err(read_err)?;
    if config.install.mode == InstallMode::Symlink {
        // A release's files are read-only (in place, the manifest's mode).
        for entry in &mut entries {
            if let Desired::File { mode, .. } = &mut entry.desired {
                *mode = sharing::read_only(*mode);
            }
        }
    }
    converge::converge(&installed.dir, &entries, store).map_err(|e| {
        NodeError::io(
            format!(
                "cannot repair the installed files in {}",
                installed.dir.display()
            ),
            e,
        )
    })
}

/// Every release under `releases/` other than the live one, against its
/// kept manifest. A release without a verifiable kept manifest cannot be
/// switched to anyway; it is named and left alone.
fn repair_kept_releases(
    config: &Config,
    live: &Version,
    store: &ContentStore,
    sources: &mut Option<Sources>,
    report: &mut Report,
) -> Result<()> {
    let keys = config.trusted_keys()?;
    let on_disk = release_dir::releases_on_disk(&config.install.root)
        .map_err(|e| NodeError::io("cannot list releases", e))?;
    for version in on_disk.iter().filter(|v| *v != live) {
        let manifest = match kept_manifests::load(&config.install.state_dir, version, &keys) {
            Ok(m) => m,
            Err(e) => {
                errln!("release {version} is not checked: {e}");
                continue;
            }
        };
        if let Err(e) = crate::operation::decide::special_modes(
            manifest.manifest(),
            config.install.allow_special_modes,
        ) {
            errln!("release {version} is not repaired: {e}");
            continue;
        }
        let repaired = release_repair::check_and_repair(config, store, sources, &manifest)?;
        report.downloaded += repaired.downloaded;
        if !repaired.entries.is_empty() {
            report.kept.push((version.clone(), repaired.entries));
        }
    }
    Ok(())
}
