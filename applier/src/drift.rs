//! Drift: how the installed files differ from the signed manifest of the
//! installed version. `ferry verify` reports it; `ferry repair` removes it.
//!
//! The manifest is the node's kept copy, re-verified against the trusted
//! keys on every read, so a verify needs no network and trusts nothing the
//! tree itself says.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use manifests::{SafeRelativePath, VerifiedManifest};
use semver::Version;

use crate::config::{Config, InstallMode};
use crate::converge::{self, Desired, DesiredEntry};
use crate::error::{NodeError, Result};
use crate::{in_place, installed, kept_manifests, release_dir};

/// The installed version and what its files should be.
pub struct Installed {
    pub version: Version,
    pub manifest: VerifiedManifest,
    /// The directory the manifest's paths are relative to.
    pub dir: PathBuf,
    pub entries: Vec<DesiredEntry>,
    /// Directories whose every entry ferry owns: anything else in them is extra.
    owned_trees: Vec<SafeRelativePath>,
}

pub fn installed(config: &Config) -> Result<Installed> {
    let Some(version) = installed::version(config)? else {
        return Err(NodeError::NothingInstalled);
    };
    let keys = config.trusted_keys()?;
    let manifest = kept_manifests::load(&config.install.state_dir, &version, &keys)?;
    let (dir, entries, owned_trees) = match config.install.mode {
        InstallMode::Symlink => {
            let entries = manifest
                .manifest()
                .files
                .iter()
                .map(DesiredEntry::from_manifest)
                .collect();
            (
                release_dir::release_path(&config.install.root, &version),
                entries,
                Vec::new(),
            )
        }
        InstallMode::InPlace => {
            let entries = in_place::changeset(config, manifest.manifest(), None)?;
            let trees = config
                .install
                .targets
                .iter()
                .filter(|t| t.ends_with('/'))
                .filter_map(|t| {
                    let rel = Path::new(t.trim_end_matches('/'))
                        .strip_prefix(&config.install.root)
                        .ok()?;
                    SafeRelativePath::new(&rel.to_string_lossy()).ok()
                })
                .collect();
            (config.install.root.clone(), entries, trees)
        }
    };
    Ok(Installed {
        version,
        manifest,
        dir,
        entries,
        owned_trees,
    })
}

impl Installed {
    /// Paths present where only the manifest's entries belong.
    pub fn extras(&self) -> io::Result<Vec<SafeRelativePath>> {
        let expected: BTreeSet<&SafeRelativePath> = self.entries.iter().map(|e| &e.path).collect();
        let mut extra = Vec::new();
        let roots: Vec<Option<&SafeRelativePath>> = if self.owned_trees.is_empty() {
            vec![None]
        } else {
            self.owned_trees.iter().map(Some).collect()
        };
        for root in roots {
            let start = root.map_or(self.dir.clone(), |r| r.under(&self.dir));
            walk(&self.dir, &start, &expected, &mut extra)?;
        }
        Ok(extra)
    }

    /// Every difference, one line each: content, modes, missing and extra.
    pub fn differences(&self) -> io::Result<Vec<String>> {
        let mut problems = converge::check(&self.dir, &self.entries, true)?;
        problems.extend(
            self.extras()?
                .into_iter()
                .map(|p| format!("{p}: not part of release {}", self.version)),
        );
        Ok(problems)
    }

    /// What repair converges to: the manifest's entries, extras removed.
    pub fn repair_entries(&self) -> io::Result<Vec<DesiredEntry>> {
        let mut entries = self.entries.clone();
        entries.extend(self.extras()?.into_iter().map(|path| DesiredEntry {
            path,
            desired: Desired::Absent,
        }));
        Ok(entries)
    }
}

fn walk(
    base: &Path,
    dir: &Path,
    expected: &BTreeSet<&SafeRelativePath>,
    out: &mut Vec<SafeRelativePath>,
) -> io::Result<()> {
    let mut items: Vec<_> = match fs::read_dir(dir) {
        Ok(items) => items.collect::<io::Result<_>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let path = item.path();
        let rel = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let Ok(rel) = SafeRelativePath::new(&rel) else {
            continue;
        };
        if !expected.contains(&rel) {
            out.push(rel);
        } else if item.file_type()?.is_dir() {
            walk(base, &path, expected, out)?;
        }
    }
    Ok(())
}
