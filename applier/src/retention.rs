//! Removing old releases after a successful switch.
//!
//! The current and previous releases are always kept (rollback needs the
//! previous one without the network); `keep_releases` counts them. A release
//! is first renamed to a hidden name and only then deleted, so a crash
//! mid-delete never leaves a half-deleted tree under a version's name.

use semver::Version;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::store::ContentStore;
use crate::{durable, kept_manifests, release_dir};

pub fn prune(config: &Config, current: Option<&Version>, previous: Option<&Version>) -> Result<()> {
    let root = &config.install.root;
    let on_disk =
        release_dir::releases_on_disk(root).map_err(|e| release_dir::listing_failed(root, e))?;
    let mut keep: Vec<&Version> = current.into_iter().chain(previous).collect();
    // Then the newest others, up to the configured count.
    for v in on_disk.iter().rev() {
        if keep.len() >= config.install.keep_releases {
            break;
        }
        if !keep.contains(&v) {
            keep.push(v);
        }
    }
    let releases = release_dir::releases_dir(root);
    for version in on_disk.iter().filter(|v| !keep.contains(v)) {
        let path = release_dir::release_path(root, version);
        let doomed = releases.join(format!(".remove-{version}-{}", std::process::id()));
        std::fs::rename(&path, &doomed)
            .map_err(|e| NodeError::io(format!("cannot retire {}", path.display()), e))?;
        durable::sync_dir(&releases).map_err(|e| NodeError::io("cannot fsync releases", e))?;
        release_dir::remove_tree(&doomed)
            .map_err(|e| NodeError::io(format!("cannot remove {}", doomed.display()), e))?;
        kept_manifests::remove(&config.install.state_dir, version);
        crate::events::say(format!("removed old release {version}"));
    }
    ContentStore::open(&config.install.state_dir)?
        .collect_garbage(&kept_manifests::referenced_contents(
            &config.install.state_dir,
        ))
        .map_err(|e| crate::store::cleaning_failed(&config.install.state_dir, e))?;
    Ok(())
}
