//! What crash recovery checks before it acts, and the temporaries it sweeps.
//!
//! Recovery trusts the journal to say what the node was doing, but not to
//! say that the releases it names are still there: a journal naming a
//! release that was deleted (or never staged, or copied from another node)
//! would otherwise make recovery point `current` at a missing directory and
//! report the old release "back". So before an action that switches to or
//! commits a release, that release must be on disk and vouched for by its
//! kept signed manifest; if not, recovery refuses (exit 3) and changes
//! nothing.

use std::io;
use std::path::Path;

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::journal::{self, Journal};
use crate::recovery::{kind_name, Action};
use crate::state::kept_manifest_path;
use crate::{converge, kept_manifests, release_dir, switch};

/// The release `action` would leave `current` on, when it names one that
/// must exist (symlink mode only: in place, a switch back restores a
/// restore point and a commit converges a saved plan, not a directory).
fn release_it_ends_on(journal: &Journal, action: Action, mode: InstallMode) -> Option<&Version> {
    if mode == InstallMode::InPlace {
        return None;
    }
    match action {
        Action::Commit => Some(&journal.to_version),
        Action::SwitchBack => journal.from_version.as_ref(),
        Action::Close | Action::Abandon => None,
    }
}

/// Refuses `action` when the release it would switch to or commit is not
/// on disk or has no valid kept manifest. Reads only.
pub fn check(config: &Config, journal: &Journal, action: Action) -> Result<()> {
    match release_it_ends_on(journal, action, config.install.mode) {
        Some(version) => check_release(config, journal, version),
        None => Ok(()),
    }
}

/// Before a commit that turns out to need a switch back: the origin must be
/// there to switch back to.
pub fn check_switch_back(config: &Config, journal: &Journal) -> Result<()> {
    match &journal.from_version {
        Some(from) if config.install.mode == InstallMode::Symlink => {
            check_release(config, journal, from)
        }
        _ => Ok(()),
    }
}

fn check_release(config: &Config, journal: &Journal, version: &Version) -> Result<()> {
    let state_dir = &config.install.state_dir;
    let journal_path = journal::path(state_dir);
    let what = format!(
        "{} names the interrupted {} {} -> {}",
        journal_path.display(),
        kind_name(journal.operation),
        journal
            .from_version
            .as_ref()
            .map_or("nothing".to_string(), |v| v.to_string()),
        journal.to_version
    );
    let todo = format!(
        "check where {} points, then move {} aside and run the operation again",
        switch::current_link(&config.install.root).display(),
        journal_path.display()
    );
    let release = release_dir::release_path(&config.install.root, version);
    if !release.is_dir() {
        return Err(NodeError::verification(format!(
            "recovery refused: {what}, but its release {} is not on disk; {todo}",
            release.display()
        )));
    }
    let keys = config.trusted_keys()?;
    if let Err(e) = kept_manifests::load(state_dir, version, &keys) {
        return Err(NodeError::verification(format!(
            "recovery refused: {what}, but the kept manifest {} of {version} is missing or invalid ({}); {todo}",
            kept_manifest_path(state_dir, version).display(),
            e.to_string().replace('\n', " ")
        )));
    }
    Ok(())
}

/// Removes the temporaries a killed `ferry repair` leaves beside the files
/// it was replacing in the live release (`.<name>.ferry-tmp-<pid>`, see
/// [`converge::TEMP_MARK`]). Only safe under the lock.
pub fn sweep_repair_temporaries(config: &Config) -> io::Result<()> {
    let root = &config.install.root;
    match config.install.mode {
        InstallMode::Symlink => match switch::current_version(root) {
            Ok(Some(version)) => sweep_tree(&release_dir::release_path(root, &version)),
            // Nothing live, or `current` is not ferry's: nothing of repair's.
            Ok(None) | Err(_) => Ok(()),
        },
        // In place the root is shared with the system: only the
        // directories of the installed release's own entries are looked at.
        InstallMode::InPlace => match crate::drift::installed(config) {
            Ok(installed) => converge::remove_temporaries(&installed.dir, &installed.entries),
            Err(e) => {
                tracing::debug!(error = %e, "no installed release to sweep repair temporaries from");
                Ok(())
            }
        },
    }
}

fn sweep_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut removed = false;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let is_dir = entry.file_type()?.is_dir();
        if entry
            .file_name()
            .to_string_lossy()
            .contains(converge::TEMP_MARK)
        {
            if is_dir {
                release_dir::remove_tree(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            removed = true;
        } else if is_dir {
            sweep_tree(&path)?;
        }
    }
    if removed {
        crate::durable::sync_dir(dir)?;
    }
    Ok(())
}
