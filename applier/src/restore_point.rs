//! Restore points: what every path an in-place operation touches looked
//! like before it, so the operation can be undone without the network.
//!
//! A restore point is `state_dir/restore-points/<id>/restore-point.json`
//! (each path's kind, mode, size and SHA-256) plus hard links
//! `objects/<sha256>` to the content in the store, which both deduplicates
//! it (a file unchanged across many restore points is stored once) and keeps
//! the store's garbage collector, which removes contents nothing links to,
//! away from it. It is made and fsynced before the first file is replaced:
//! if it cannot be made, nothing is changed.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use manifests::mode::Mode;
use manifests::Sha256Digest;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::converge::{Desired, DesiredEntry};
use crate::durable;
use crate::error::{NodeError, Result};
use crate::store::ContentStore;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePoint {
    pub id: String,
    pub created: Timestamp,
    /// The version that was installed when the restore point was made.
    pub version: Option<Version>,
    /// The journal id of the operation that made it.
    pub operation: String,
    pub entries: Vec<DesiredEntry>,
}

/// A failed listing of the restore points, naming their directory.
fn listing_failed(state_dir: &Path, e: io::Error) -> NodeError {
    NodeError::io(format!("cannot list {}", dir(state_dir).display()), e)
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("restore-points")
}

fn point_dir(state_dir: &Path, id: &str) -> PathBuf {
    dir(state_dir).join(id)
}

impl RestorePoint {
    /// Records the current state of every path in `about_to_change`.
    pub fn capture(
        state_dir: &Path,
        store: &ContentStore,
        root: &Path,
        about_to_change: &[DesiredEntry],
        version: Option<Version>,
        operation: &str,
    ) -> Result<RestorePoint> {
        let id = format!("{}", Timestamp::now().as_nanosecond());
        let point = point_dir(state_dir, &id);
        let objects = point.join("objects");
        let result = (|| {
            durable::create_dir_all(&objects, 0o700)?;
            let mut entries = Vec::with_capacity(about_to_change.len());
            for wanted in about_to_change {
                let desired = pre_image(root, wanted, store)?;
                if let Desired::File { sha256, .. } = &desired {
                    let link = objects.join(sha256.to_hex());
                    if !link.exists() {
                        fs::hard_link(store.path_of(sha256), &link)?;
                    }
                }
                entries.push(DesiredEntry {
                    path: wanted.path.clone(),
                    desired,
                });
            }
            durable::sync_dir(&objects)?;
            let record = RestorePoint {
                id: id.clone(),
                created: Timestamp::now(),
                version: version.clone(),
                operation: operation.to_string(),
                entries,
            };
            let json = serde_json::to_vec_pretty(&record).expect("restore points serialise");
            durable::write_atomic(&point.join("restore-point.json"), &json, 0o600)?;
            durable::sync_dir(&dir(state_dir))?;
            Ok(record)
        })();
        result.map_err(|e: io::Error| {
            let _ = crate::release_dir::remove_tree(&point);
            let context = format!(
                "cannot make a restore point in {}, so nothing was changed",
                point.display()
            );
            NodeError::io(context, e)
        })
    }

    pub fn load(state_dir: &Path, id: &str) -> Result<RestorePoint> {
        let path = point_dir(state_dir, id).join("restore-point.json");
        let bytes = fs::read(&path)
            .map_err(|e| NodeError::io(format!("cannot read {}", path.display()), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|source| NodeError::CorruptRestorePoint { path, source })
    }

    /// Every complete restore point, oldest first.
    pub fn list(state_dir: &Path) -> Result<Vec<RestorePoint>> {
        let mut points = Vec::new();
        let entries = match fs::read_dir(dir(state_dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(points),
            Err(e) => return Err(listing_failed(state_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| listing_failed(state_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A point whose record was never written is an interrupted capture.
            if entry.path().join("restore-point.json").is_file() {
                points.push(Self::load(state_dir, &name)?);
            }
        }
        points.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(points)
    }

    /// Checks every file's content against the recorded SHA-256 before a
    /// restore may use it. One line per file that differs or is missing.
    pub fn verify(&self, state_dir: &Path) -> Result<Vec<String>> {
        let objects = point_dir(state_dir, &self.id).join("objects");
        let mut problems = Vec::new();
        for entry in &self.entries {
            if let Desired::File { sha256, size, .. } = &entry.desired {
                let path = objects.join(sha256.to_hex());
                match File::open(&path).and_then(Sha256Digest::of_reader) {
                    Ok((digest, len)) if digest == *sha256 && len == *size => {}
                    Ok((digest, len)) => problems.push(format!(
                        "{}: saved copy is {len} bytes with SHA-256 {digest}, recorded {size} bytes with SHA-256 {sha256}",
                        entry.path
                    )),
                    Err(e) => problems.push(format!("{}: saved copy unreadable: {e}", entry.path)),
                }
            }
        }
        Ok(problems)
    }

    pub fn remove(state_dir: &Path, id: &str) -> Result<()> {
        let point = point_dir(state_dir, id);
        crate::release_dir::remove_tree(&point)
            .map_err(|e| NodeError::io(format!("cannot remove {}", point.display()), e))
    }

    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.desired {
                Desired::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

/// What `wanted.path` is now, with a file's content secured in the store.
fn pre_image(root: &Path, wanted: &DesiredEntry, store: &ContentStore) -> io::Result<Desired> {
    let path = wanted.path.under(root);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Desired::Absent),
        Err(e) => return Err(e),
    };
    let mode = Mode::from_st_mode(meta.mode());
    if meta.is_dir() {
        return Ok(match wanted.desired {
            Desired::DirectoryExists => Desired::DirectoryExists,
            _ => Desired::Directory { mode },
        });
    }
    if meta.file_type().is_symlink() {
        return Ok(Desired::Symlink {
            target: fs::read_link(&path)?.to_string_lossy().into_owned(),
        });
    }
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is neither a file, a directory nor a symlink",
            path.display()
        )));
    }
    // Hash a private copy, not the live file: the application may write to
    // it meanwhile, and the store must hold exactly the bytes recorded.
    let tmp = store
        .objects_dir()
        .join(format!(".tmp-adopt-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    fs::copy(&path, &tmp)?;
    let (sha256, size) = Sha256Digest::of_reader(File::open(&tmp)?)?;
    let stored = store.path_of(&sha256);
    let held = fs::metadata(&stored).is_ok_and(|m| m.len() == size)
        && File::open(&stored)
            .and_then(Sha256Digest::of_reader)
            .is_ok_and(|(d, _)| d == sha256);
    if held {
        fs::remove_file(&tmp)?;
    } else {
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &stored)?;
        durable::sync_dir(store.objects_dir())?;
    }
    Ok(Desired::File { sha256, size, mode })
}

/// Keeps the newest `keep` restore points; returns how many were removed.
pub fn prune(state_dir: &Path, keep: usize) -> Result<usize> {
    let points = RestorePoint::list(state_dir)?;
    let excess = points.len().saturating_sub(keep);
    for point in &points[..excess] {
        RestorePoint::remove(state_dir, &point.id)?;
    }
    Ok(excess)
}
