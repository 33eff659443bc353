//! Finding the delta bases a node holds, before planning.
//!
//! A delta is only usable if the node can read its base content, and the
//! plan must know which bases it can read before it chooses between patches
//! and full objects. Every candidate is checked by hashing it now, once: a
//! release file is a hard link into the store that the application may have
//! written through, and an in-place file is the application's to change, so
//! a name alone proves nothing. (The patch's output is hashed again after
//! applying; that check is the one that counts, this one keeps the plan
//! honest.)
//!
//! Where a base can be:
//! - the content store: the contents of the releases still on disk (hard
//!   links, or kept for copied and in-place releases) and of restore points;
//! - if the store lost it, another copy: the file at the base's path in a
//!   release directory still on disk (symlink mode), in the live tree
//!   (in-place mode, where the installed files are copies), or a restore
//!   point's saved copy.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use manifests::{Manifest, Sha256Digest};
use semver::Version;

use crate::config::{Config, InstallMode};
use crate::error::{NodeError, Result};
use crate::plan::{BaseLocation, HeldBase, HeldBases};
use crate::store::ContentStore;
use crate::{release_dir, restore_point};

/// The bases of `manifest`'s deltas this node can read, for the contents
/// it does not hold already (`held`). Each candidate digest and each file
/// is hashed at most once.
pub fn locate(
    config: &Config,
    store: &ContentStore,
    manifest: &Manifest,
    held: &BTreeSet<Sha256Digest>,
    installed: Option<&Version>,
) -> Result<HeldBases> {
    let state_dir = &config.install.state_dir;
    // Candidate base digest -> its size (0: the manifest did not say).
    let mut wanted: BTreeMap<Sha256Digest, u64> = BTreeMap::new();
    // Paths of the new release whose old content may be a base.
    let mut paths: BTreeSet<&str> = BTreeSet::new();
    for entry in &manifest.files {
        let Some(content) = entry.content() else {
            continue;
        };
        if held.contains(&content.sha256) || content.deltas.is_empty() {
            continue;
        }
        paths.insert(entry.path.as_str());
        for delta in &content.deltas {
            wanted.entry(delta.base_sha256).or_insert(delta.base_size);
        }
    }
    let mut found = HeldBases::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let kept = kept_releases(state_dir);
    let describe = |digest: &Sha256Digest| -> String {
        kept.iter()
            .rev()
            .find_map(|(version, m)| {
                m.files
                    .iter()
                    .find(|f| f.content().is_some_and(|c| c.sha256 == *digest))
                    .map(|f| format!("{version} {}", f.path))
            })
            .unwrap_or_else(|| format!("content {}", &digest.to_hex()[..12]))
    };

    // 1. The store. A content of the new release the store holds was
    //    verified while computing `held`.
    for (digest, size) in &wanted {
        let size = match *size {
            0 => fs::metadata(store.path_of(digest)).map_or(u64::MAX, |m| m.len()),
            size => size,
        };
        if held.contains(digest) || (size != u64::MAX && store.holds(digest, size)?) {
            found.insert(
                *digest,
                HeldBase {
                    location: BaseLocation::Store,
                    described: describe(digest),
                },
            );
        }
    }
    if found.len() == wanted.len() {
        return Ok(found);
    }

    // 2. Other copies, for what the store lost.
    let mut copies: Vec<(PathBuf, String)> = Vec::new();
    let root = &config.install.root;
    // (directory, the version it holds, how to call it)
    let trees: Vec<(PathBuf, Option<Version>, String)> = match config.install.mode {
        InstallMode::Symlink => release_dir::releases_on_disk(root)
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                (
                    release_dir::release_path(root, &v),
                    Some(v.clone()),
                    v.to_string(),
                )
            })
            .collect(),
        InstallMode::InPlace => vec![(
            root.clone(),
            installed.cloned(),
            installed.map_or("the installed tree".into(), |v| format!("installed {v}")),
        )],
    };
    for (tree, tree_version, label) in &trees {
        // The same path in an older tree, then wherever a kept manifest of
        // that tree's version put a wanted base.
        for path in &paths {
            copies.push((tree.join(path), format!("{label} {path}")));
        }
        for (version, m) in &kept {
            if tree_version.as_ref() == Some(version) {
                for f in &m.files {
                    if f.content().is_some_and(|c| wanted.contains_key(&c.sha256)) {
                        copies.push((tree.join(f.path.as_str()), format!("{label} {}", f.path)));
                    }
                }
            }
        }
    }
    let points = restore_point::dir(state_dir);
    if let Ok(listing) = fs::read_dir(&points) {
        for point in listing.flatten() {
            for digest in wanted.keys() {
                copies.push((
                    point.path().join("objects").join(digest.to_hex()),
                    format!(
                        "restore point {} content {}",
                        point.file_name().to_string_lossy(),
                        &digest.to_hex()[..12]
                    ),
                ));
            }
        }
    }
    let mut hashed: BTreeSet<PathBuf> = BTreeSet::new();
    for (path, described) in copies {
        if found.len() == wanted.len() {
            break;
        }
        if !hashed.insert(path.clone()) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        // Only a regular file of a wanted size is worth reading.
        let size_wanted = wanted
            .iter()
            .any(|(d, s)| !found.contains_key(d) && (*s == 0 || *s == meta.len()));
        if !meta.is_file() || !size_wanted {
            continue;
        }
        let digest = match File::open(&path).and_then(Sha256Digest::of_reader) {
            Ok((digest, _)) => digest,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(NodeError::io(
                    format!("cannot read {} (a possible delta base)", path.display()),
                    e,
                ))
            }
        };
        if wanted.contains_key(&digest) && !found.contains_key(&digest) {
            tracing::info!(base = %path.display(), "delta base found outside the store");
            found.insert(
                digest,
                HeldBase {
                    location: BaseLocation::File(path),
                    described,
                },
            );
        }
    }
    Ok(found)
}

/// The manifests kept for releases on this node, oldest first, parsed
/// without their signatures: they only suggest where to look and what to
/// call a base; every candidate is hashed before it counts.
fn kept_releases(state_dir: &Path) -> Vec<(Version, Manifest)> {
    let mut kept: Vec<(Version, Manifest)> = crate::kept_manifests::versions(state_dir)
        .into_iter()
        .filter_map(|v| {
            let bytes = fs::read(crate::state::kept_manifest_path(state_dir, &v)).ok()?;
            let m = serde_json::from_slice::<Manifest>(&bytes).ok()?;
            Some((v, m))
        })
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept
}
