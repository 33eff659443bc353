//! A migration script is run only if its bytes on disk are the ones its
//! release's signed manifest pins (the entry's size and SHA-256).
//!
//! The up's checksum alone is not enough: it is the identity a node
//! remembers a migration by, and says nothing of the `down`. A down runs
//! long after its release was staged — on a rollback, from the release
//! being left — from a tree that anything able to write to the install
//! root could have edited since. Running it unchecked would let an edited
//! file in `releases/` run as the node's user; so every script is checked
//! against the manifest, which the caller re-verified (a kept manifest,
//! `kept_manifests::load`), before the first script of a run starts.

use std::fs::File;
use std::path::Path;

use manifests::manifest::Manifest;
use manifests::{SafeRelativePath, Sha256Digest};

use super::MigrationError;
use crate::error::Result;

/// Which of a migration's scripts is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Refuses `script`, the `direction` script of migration `id`, unless the
/// regular file at `script` below `release_dir` holds exactly the bytes
/// `manifest` pins for it.
pub fn check(
    manifest: &Manifest,
    release_dir: &Path,
    id: &str,
    direction: Direction,
    script: &SafeRelativePath,
) -> Result<()> {
    let path = script.under(release_dir);
    let altered = |found: String| MigrationError::ScriptAltered {
        version: manifest.version.clone(),
        id: id.to_string(),
        direction: direction.name(),
        path: path.clone(),
        found,
    };
    // A valid manifest names a file entry for every script; one that does
    // not is refused, not trusted.
    let Some(pinned) = manifest
        .files
        .iter()
        .find(|f| &f.path == script)
        .and_then(|f| f.content())
    else {
        return Err(altered("the manifest pins no file at that path".into()).into());
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(altered("it is not a regular file".into()).into()),
        Err(e) => return Err(altered(format!("it cannot be read: {e}")).into()),
    }
    let found = File::open(&path).and_then(Sha256Digest::of_reader);
    match found {
        Ok((sha256, size)) if sha256 == pinned.sha256 && size == pinned.size => Ok(()),
        Ok((sha256, size)) => Err(altered(format!(
            "it has {size} bytes with SHA-256 {sha256}, the manifest pins {} bytes with SHA-256 {}",
            pinned.size, pinned.sha256
        ))
        .into()),
        Err(e) => Err(altered(format!("it cannot be read: {e}")).into()),
    }
}
