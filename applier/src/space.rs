//! Pre-flight disk space check.
//!
//! Running out of space halfway through staging is safe (the old release
//! keeps running) but wasteful and noisy; refusing up front with numbers is
//! kinder. ferry asks for twice what the plan needs on each filesystem
//! involved, leaving the node room to breathe after the update.
//!
//! What an update writes, and where:
//! - `state_dir`: each new object's download and its decompressed content
//!   ([`UpdatePlan::state_bytes_needed`]);
//! - `install.root`: the release tree. Its files are hard links into the
//!   store, which cost nothing — but only when the store and the root are on
//!   the same *mount*: link(2) fails across mount points even of one
//!   filesystem (a bind mount, a container volume), and then every release
//!   file is a copy ([`UpdatePlan::release_bytes`]).
//!
//! When both paths draw on one filesystem (same device), both amounts come
//! out of the same free space and are checked together.

use std::path::{Path, PathBuf};

use crate::error::{NodeError, Result};
use crate::plan::{human_bytes, UpdatePlan};

const HEADROOM_FACTOR: u64 = 2;

/// The filesystem holding a path, as far as space and hard links go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filesystem {
    /// The path probed: the one asked about or its nearest existing ancestor.
    probe: PathBuf,
    /// Free bytes for unprivileged use.
    free: u64,
    /// The device: same device, same free space.
    dev: u64,
    /// The mount: hard links only work within one (None if the kernel
    /// cannot say, before Linux 5.8).
    mount: Option<u64>,
}

/// How the state directory and the install root share storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// One mount: release files are hard links into the store.
    SameMount,
    /// One filesystem seen through two mounts: one pool of free space, but
    /// release files are copies.
    SameFilesystem,
    /// Two filesystems: release files are copies, each side has its own
    /// free space.
    Separate,
}

fn sharing(state: &Filesystem, root: &Filesystem) -> Sharing {
    if state.dev != root.dev {
        Sharing::Separate
    } else if state.mount.is_some() && root.mount.is_some() && state.mount != root.mount {
        Sharing::SameFilesystem
    } else {
        Sharing::SameMount
    }
}

/// Probes the filesystem holding `path` (or its nearest existing ancestor:
/// the install root may not exist yet).
fn probe(path: &Path) -> Result<Filesystem> {
    let mut probe = path;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let err = |e: rustix::io::Errno| {
        NodeError::io(
            format!("cannot read free space of {}", probe.display()),
            e.into(),
        )
    };
    let st = rustix::fs::statvfs(probe).map_err(err)?;
    let (dev, mount) = match rustix::fs::statx(
        rustix::fs::CWD,
        probe,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MNT_ID,
    ) {
        Ok(sx) => {
            let dev = rustix::fs::makedev(sx.stx_dev_major, sx.stx_dev_minor);
            let has_mount = sx.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() != 0;
            (dev, has_mount.then_some(sx.stx_mnt_id))
        }
        // No statx (old kernel, seccomp): devices only.
        Err(_) => {
            let meta = std::fs::metadata(probe)
                .map_err(|e| NodeError::io(format!("cannot inspect {}", probe.display()), e))?;
            (std::os::unix::fs::MetadataExt::dev(&meta), None)
        }
    };
    Ok(Filesystem {
        probe: probe.to_path_buf(),
        free: st.f_bavail.saturating_mul(st.f_frsize),
        dev,
        mount,
    })
}

/// Free bytes for unprivileged use on the filesystem holding `path` (or
/// its nearest existing ancestor), for reports.
pub fn free_bytes(path: &Path) -> Result<u64> {
    probe(path).map(|fs| fs.free)
}

/// Where the filesystem holding `path` (or its nearest existing
/// ancestor) is mounted: the highest ancestor still on the same device.
pub fn mount_point(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut probe = path;
    while !probe.exists() {
        probe = probe.parent()?;
    }
    let probe = std::fs::canonicalize(probe).ok()?;
    let dev = std::fs::metadata(&probe).ok()?.dev();
    let mut mount = probe.clone();
    for ancestor in probe.ancestors().skip(1) {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.dev() == dev => mount = ancestor.to_path_buf(),
            _ => break,
        }
    }
    Some(mount)
}

/// What to add to a failed write of `path`: for a full filesystem (or
/// quota), which one and what to do; nothing for other errors, whose own
/// text says enough beside the path.
pub fn write_failure_hint(path: &Path, e: &std::io::Error) -> String {
    let full = matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    );
    if !full {
        return String::new();
    }
    let mount = mount_point(path).map_or_else(
        || "its filesystem".to_string(),
        |m| format!("the filesystem mounted at {}", m.display()),
    );
    format!("; {mount} is full: free space there, or move [install] state_dir to a larger one")
}

/// One filesystem without enough free space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Which configured paths draw on it, and how, for the message.
    what: String,
    free: u64,
    /// Bytes the update writes there (before headroom).
    uses: u64,
}

impl Shortfall {
    fn needs(&self) -> u64 {
        self.uses.saturating_mul(HEADROOM_FACTOR)
    }

    fn describe(&self) -> String {
        format!(
            "{} has {} free, needs {} (twice the {} the update writes there)",
            self.what,
            human_bytes(self.free),
            human_bytes(self.needs()),
            human_bytes(self.uses)
        )
    }
}

/// The disk check failed: the filesystems short of space, each with what
/// it has and needs. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "not enough disk space for {to}: {}; {}free some space and run ferry again — nothing was changed",
    short.iter().map(Shortfall::describe).collect::<Vec<_>>().join("; "),
    if *in_place { "" } else { "ferry wants twice what the update writes on each filesystem; " }
)]
pub struct NotEnoughSpace {
    pub to: semver::Version,
    pub short: Vec<Shortfall>,
    /// In place, release files are written beside their targets.
    pub in_place: bool,
}

/// The filesystems that lack space: pure, from the probes and the plan.
fn shortfalls(
    state_dir: &Path,
    state: &Filesystem,
    root_dir: &Path,
    root: &Filesystem,
    plan: &UpdatePlan,
) -> Vec<Shortfall> {
    let state_uses = plan.state_bytes_needed();
    let copies = plan.release_bytes;
    let candidates = match sharing(state, root) {
        Sharing::SameMount => vec![Shortfall {
            what: format!(
                "{} (state_dir and install.root, one filesystem)",
                state_dir.display()
            ),
            free: state.free,
            uses: state_uses,
        }],
        Sharing::SameFilesystem => vec![Shortfall {
            what: format!(
                "{} and {} (one filesystem through two mounts, so release files are copies)",
                state_dir.display(),
                root_dir.display()
            ),
            free: state.free,
            uses: state_uses.saturating_add(copies),
        }],
        Sharing::Separate => vec![
            Shortfall {
                what: format!("{} (state_dir)", state_dir.display()),
                free: state.free,
                uses: state_uses,
            },
            Shortfall {
                what: format!(
                    "{} (install.root, on another filesystem than the store, so release files are copies)",
                    root_dir.display()
                ),
                free: root.free,
                uses: copies,
            },
        ],
    };
    candidates
        .into_iter()
        .filter(|s| s.free < s.needs())
        .collect()
}

pub fn check(state_dir: &Path, root: &Path, plan: &UpdatePlan) -> Result<()> {
    if crate::faults::skip_space_check() {
        return Ok(());
    }
    let state = probe(state_dir)?;
    let root_fs = probe(root)?;
    tracing::debug!(?state, root = ?root_fs, "pre-flight space check");
    let short = shortfalls(state_dir, &state, root, &root_fs, plan);
    if short.is_empty() {
        return Ok(());
    }
    Err(NotEnoughSpace {
        to: plan.to.clone(),
        short,
        in_place: false,
    }
    .into())
}

/// In-place mode: release files are written as copies beside their
/// targets, which may live on other filesystems than the root and the
/// store. Each filesystem involved must hold twice what the update writes
/// there: the store's share where state_dir lives, and (at worst) the whole
/// release beside the targets on each filesystem the targets live on.
pub fn check_in_place(state_dir: &Path, targets: &[PathBuf], plan: &UpdatePlan) -> Result<()> {
    if crate::faults::skip_space_check() {
        return Ok(());
    }
    let state = probe(state_dir)?;
    let mut pools: Vec<(Filesystem, String, u64)> = vec![(
        state.clone(),
        format!("{} (state_dir)", state_dir.display()),
        plan.state_bytes_needed(),
    )];
    for target in targets {
        let fs = probe(target)?;
        match pools
            .iter_mut()
            .find(|(p, _, _)| p.dev == fs.dev && p.mount == fs.mount)
        {
            Some((_, what, uses)) if !what.contains("targets") => {
                what.push_str(" and install.targets");
                *uses = uses.saturating_add(plan.release_bytes);
            }
            Some(_) => {}
            None => pools.push((
                fs,
                format!("{} (install.targets)", target.display()),
                plan.release_bytes,
            )),
        }
    }
    let short: Vec<Shortfall> = pools
        .into_iter()
        .map(|(fs, what, uses)| Shortfall {
            what,
            free: fs.free,
            uses,
        })
        .filter(|s| s.free < s.needs())
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    Err(NotEnoughSpace {
        to: plan.to.clone(),
        short,
        in_place: true,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn fs(free: u64, dev: u64, mount: Option<u64>) -> Filesystem {
        Filesystem {
            probe: PathBuf::from("/x"),
            free,
            dev,
            mount,
        }
    }

    /// A plan downloading 3 MiB that decompress to 4 MiB, for a release of
    /// 5 MiB of files.
    fn plan() -> UpdatePlan {
        use manifests::manifest::{Compression, EntryKind, FileContent, ObjectRef};
        use manifests::{FileEntry, SafeRelativePath, Sha256Digest};
        let file = |path: &str, size: u64, compressed: u64, held: bool| {
            let sha256 = Sha256Digest::of(path.as_bytes());
            (
                FileEntry {
                    path: SafeRelativePath::new(path).unwrap(),
                    kind: EntryKind::File(FileContent {
                        mode: manifests::mode::Mode::new(0o644).unwrap(),
                        size,
                        sha256,
                        object: ObjectRef {
                            path: manifests::layout::object(&sha256),
                            compression: Compression::Zstd,
                            size: compressed,
                            sha256,
                        },
                        deltas: vec![],
                    }),
                },
                held.then_some(sha256),
            )
        };
        let entries = [
            file("new", 4 * MIB, 3 * MIB, false),
            file("old", MIB, MIB, true),
        ];
        let mut m: manifests::Manifest = serde_json::from_value(serde_json::json!({
            "format": 1, "version": "2.0.0", "channel": "stable",
            "created": "2026-01-01T00:00:00Z", "files": []
        }))
        .unwrap();
        m.files = entries.iter().map(|(e, _)| e.clone()).collect();
        let held = entries.iter().filter_map(|(_, h)| *h).collect();
        let plan = UpdatePlan::compute(&m, None, &held, &crate::plan::HeldBases::new());
        assert_eq!(plan.state_bytes_needed(), 7 * MIB);
        assert_eq!(plan.release_bytes, 5 * MIB);
        plan
    }

    fn short(state: Filesystem, root: Filesystem) -> Vec<Shortfall> {
        shortfalls(Path::new("/s"), &state, Path::new("/r"), &root, &plan())
    }

    #[test]
    fn one_mount_needs_twice_the_downloads_and_store_only() {
        // Release files are hard links: they cost nothing.
        assert!(short(fs(14 * MIB, 1, Some(7)), fs(14 * MIB, 1, Some(7))).is_empty());
        let s = short(fs(14 * MIB - 1, 1, Some(7)), fs(14 * MIB - 1, 1, Some(7)));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].needs(), 14 * MIB);
        assert!(s[0].describe().contains("/s (state_dir and install.root"));
        assert!(s[0].describe().contains("needs 14.0 MiB"), "{s:?}");
        // A kernel that cannot tell mounts apart: devices decide.
        assert!(short(fs(14 * MIB, 1, None), fs(14 * MIB, 1, Some(8))).is_empty());
    }

    #[test]
    fn separate_filesystems_each_need_twice_their_share() {
        // state: 2 × 7 MiB; root: 2 × 5 MiB of copies.
        assert!(short(fs(14 * MIB, 1, Some(7)), fs(10 * MIB, 2, Some(8))).is_empty());
        let s = short(fs(14 * MIB, 1, Some(7)), fs(10 * MIB - 1, 2, Some(8)));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].needs(), 10 * MIB);
        assert!(s[0].describe().starts_with("/r (install.root"), "{s:?}");
        let s = short(fs(14 * MIB - 1, 1, Some(7)), fs(10 * MIB, 2, Some(8)));
        assert_eq!(s.len(), 1);
        assert!(s[0].describe().starts_with("/s (state_dir)"), "{s:?}");
        assert_eq!(
            short(fs(0, 1, Some(7)), fs(0, 2, Some(8))).len(),
            2,
            "both filesystems are named"
        );
    }

    #[test]
    fn one_filesystem_through_two_mounts_pays_for_copies_from_one_pool() {
        // link(2) fails across mounts: 2 × (7 + 5) MiB from the same space.
        assert!(short(fs(24 * MIB, 1, Some(7)), fs(24 * MIB, 1, Some(8))).is_empty());
        let s = short(fs(24 * MIB - 1, 1, Some(7)), fs(24 * MIB - 1, 1, Some(8)));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].needs(), 24 * MIB);
        assert!(s[0].describe().contains("/s and /r"), "{s:?}");
    }

    #[test]
    fn probing_a_missing_path_probes_its_nearest_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/there");
        let a = probe(&missing).unwrap();
        let b = probe(dir.path()).unwrap();
        assert_eq!(a.probe, dir.path());
        assert_eq!((a.dev, a.mount), (b.dev, b.mount));
    }
}
