//! How a release file gets the store's bytes: a reflink, a hard link or a
//! copy, and the read-only mode installed files carry.
//!
//! A hard link shares the inode: a write through any release's file (an
//! operator's `chmod u+w` and append, say) changes the store and every
//! release that links the same content, which is how an edit of the live
//! release used to break the rollback target. A reflink (`FICLONE`, on
//! btrfs and xfs) shares the blocks but not the inode, so an edit stays in
//! the file it was made to. Where reflinks do not work, hard links stay
//! (they cost no bytes); the files are read-only so an accidental edit
//! fails loudly, and a switch re-hashes its target and repairs it from the
//! store or the repository before going live (`release_repair`).
//!
//! `FERRY_RELEASE_FILES` chooses, for measurement (`cargo xtask bench
//! apply`) and for filesystems where hard links are unwanted: `auto` (the
//! default: reflink, else hard link, else copy), `hardlink` (no reflink
//! attempt), `copy` (every release file its own bytes).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use manifests::mode::Mode;

/// The mode a file installed into `releases/<version>/` or the store
/// carries: the manifest's mode without its write bits (0644 → 0444, 0755 →
/// 0555), read and execute bits kept. A switch never writes into a release
/// file, so nothing of ferry's needs them, and their absence makes an
/// accidental write by a non-root user fail at once.
pub fn read_only(mode: Mode) -> Mode {
    Mode::new(mode.bits() & !0o222).expect("clearing bits keeps a mode valid")
}

/// True if a release file's actual mode is what its manifest says: the
/// manifest's mode, or its read-only form. Releases staged by an older
/// ferry carry the manifest's mode exactly; fewer bits never grant more.
pub fn mode_matches(actual: Mode, manifest: Mode) -> bool {
    actual == manifest || actual == read_only(manifest)
}

/// How release files are made from store objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Reflink, else hard link, else copy.
    Auto,
    /// Hard link, else copy.
    HardLink,
    /// Always a copy.
    Copy,
}

impl Sharing {
    /// From `FERRY_RELEASE_FILES`; unset or unknown is [`Sharing::Auto`]
    /// (an unknown value is warned about, not fatal: every choice yields
    /// the same verified bytes).
    pub fn from_env() -> Sharing {
        match std::env::var("FERRY_RELEASE_FILES").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Sharing::Auto,
            Ok("hardlink") => Sharing::HardLink,
            Ok("copy") => Sharing::Copy,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "FERRY_RELEASE_FILES is not auto, hardlink or copy; using auto"
                );
                Sharing::Auto
            }
        }
    }
}

/// Set once a reflink failed as unsupported, so a filesystem without them
/// costs one failed ioctl per process, not one per file.
static REFLINKS_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// How [`place`] made a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Reflink,
    HardLink,
    Copy,
}

/// Makes `dest` (which must not exist) hold the bytes of the store object
/// `src`, with the read-only form of `mode`. `src` is trusted to be
/// verified content; `dest` never shares an inode with `src` unless it is a
/// hard link of an object already carrying that mode.
pub fn place(src: &Path, mode: Mode, dest: &Path, sharing: Sharing) -> io::Result<Placed> {
    let mode = read_only(mode);
    if sharing == Sharing::Auto && !REFLINKS_UNSUPPORTED.load(Ordering::Relaxed) {
        match reflink(src, mode, dest) {
            Ok(()) => return Ok(Placed::Reflink),
            Err(e) if unsupported(&e) => REFLINKS_UNSUPPORTED.store(true, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
    }
    if sharing != Sharing::Copy {
        let meta = fs::metadata(src)?;
        if Mode::from_st_mode(meta.mode()) == mode && fs::hard_link(src, dest).is_ok() {
            return Ok(Placed::HardLink);
        }
    }
    // Different mode, another filesystem, a link limit, or asked for.
    copy(src, mode, dest)?;
    Ok(Placed::Copy)
}

/// Errors meaning "this filesystem (or pair of them) cannot reflink", as
/// opposed to a real failure of the destination.
fn unsupported(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|code| {
        [
            Errno::OPNOTSUPP,
            Errno::XDEV,
            Errno::INVAL,
            Errno::NOTTY,
            Errno::NOSYS,
            Errno::PERM,
        ]
        .iter()
        .any(|errno| errno.raw_os_error() == code)
    })
}

fn reflink(src: &Path, mode: Mode, dest: &Path) -> io::Result<()> {
    let from = File::open(src)?;
    let to = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode.bits())
        .open(dest)?;
    let cloned = rustix::fs::ioctl_ficlone(&to, &from).map_err(io::Error::from);
    let result = cloned.and_then(|()| {
        to.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
        to.sync_all()
    });
    if result.is_err() {
        drop(to);
        let _ = fs::remove_file(dest);
    }
    result
}

fn copy(src: &Path, mode: Mode, dest: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode.bits())
        .open(dest)?;
    io::copy(&mut from, &mut to)?;
    to.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
    to.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(bits: u32) -> Mode {
        Mode::new(bits).unwrap()
    }

    #[test]
    fn read_only_drops_write_bits_and_keeps_the_rest() {
        assert_eq!(read_only(m(0o644)), m(0o444));
        assert_eq!(read_only(m(0o755)), m(0o555));
        assert_eq!(read_only(m(0o4750)), m(0o4550));
        assert!(mode_matches(m(0o444), m(0o644)));
        assert!(mode_matches(m(0o644), m(0o644)));
        assert!(!mode_matches(m(0o666), m(0o644)));
        assert!(!mode_matches(m(0o400), m(0o644)));
    }

    #[test]
    fn every_way_of_placing_yields_the_bytes_read_only_and_only_a_hard_link_shares_the_inode() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("object");
        fs::write(&src, b"verified").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o444)).unwrap();
        for (i, sharing) in [Sharing::Auto, Sharing::HardLink, Sharing::Copy]
            .into_iter()
            .enumerate()
        {
            let dest = dir.path().join(format!("dest-{i}"));
            let placed = place(&src, m(0o644), &dest, sharing).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"verified");
            let meta = fs::metadata(&dest).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o444, "{sharing:?}");
            let shared = meta.ino() == fs::metadata(&src).unwrap().ino();
            assert_eq!(
                shared,
                placed == Placed::HardLink,
                "{sharing:?}: {placed:?}"
            );
            match sharing {
                // On a filesystem without FICLONE (tmpfs, ext4) the
                // fallback is the hard link.
                Sharing::Auto => assert_ne!(placed, Placed::Copy),
                Sharing::HardLink => assert_eq!(placed, Placed::HardLink),
                Sharing::Copy => assert_eq!(placed, Placed::Copy),
            }
        }
        // A store object with another mode is never linked.
        let dest = dir.path().join("other-mode");
        let placed = place(&src, m(0o755), &dest, Sharing::HardLink).unwrap();
        assert_eq!(placed, Placed::Copy);
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o555);
    }

    #[test]
    fn an_unsupported_reflink_is_told_from_a_real_failure() {
        use rustix::io::Errno;
        for errno in [Errno::OPNOTSUPP, Errno::XDEV, Errno::INVAL] {
            assert!(unsupported(&io::Error::from(errno)));
        }
        assert!(!unsupported(&io::Error::from(Errno::NOSPC)));
        assert!(!unsupported(&io::Error::from(Errno::IO)));
    }
}
