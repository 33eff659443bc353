//! Size-limited filesystems for the disk-full tests.
//!
//! A [`SmallFilesystem`] is a tmpfs of a chosen size mounted on a directory
//! inside a test's workspace, so that a node's install root or state
//! directory can be made to run out of space for real (ENOSPC from the
//! kernel, not a simulated error). It is unmounted when dropped — also when
//! the test panics — lazily (`umount -l`) if something still holds it.
//!
//! Mounting needs root (or CAP_SYS_ADMIN). Where it is not allowed, a test
//! must not pass silently: [`SmallFilesystem::mount_or_skip`] fails the test
//! when `CI=true` and otherwise prints a loud skip notice on the real stderr
//! (past the test harness's output capture) and returns `None`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixtures::Node;

/// A mounted, size-limited tmpfs; unmounted on drop.
#[derive(Debug)]
pub struct SmallFilesystem {
    mountpoint: PathBuf,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `size_kib` KiB on `dir` (created if missing).
    /// Returns why it could not, with the command's own words.
    pub fn try_mount(dir: &Path, size_kib: u64) -> Result<SmallFilesystem, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_kib}k,mode=0755"))
            .arg("ferry-test-tmpfs")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs -o size={size_kib}k ferry-test-tmpfs {}` failed ({}): {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let fs = SmallFilesystem {
            mountpoint: dir.to_path_buf(),
        };
        // `mount` can succeed without mounting anything (a wrapper, a
        // container that fakes it): check that `dir` really is a new tmpfs.
        let kind = fs.stat_field("%T");
        if kind != "tmpfs" {
            return Err(format!(
                "mount reported success but {} is on {kind:?}, not a tmpfs",
                dir.display()
            ));
        }
        Ok(fs)
    }

    /// [`Self::try_mount`], or, when mounting is not possible: fails the
    /// test under `CI=true`, otherwise prints a loud skip notice and returns
    /// `None` (the caller then returns without asserting anything).
    pub fn mount_or_skip(dir: &Path, size_kib: u64, test: &str) -> Option<SmallFilesystem> {
        mounted_or_skip(Self::try_mount(dir, size_kib), test)
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Changes the size limit in place (`mount -o remount,size=…`), keeping
    /// every file. Shrinking below what is in use fails.
    #[track_caller]
    pub fn resize(&self, size_kib: u64) {
        let out = Command::new("mount")
            .arg("-o")
            .arg(format!("remount,size={size_kib}k"))
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "remounting {} with size={size_kib}k failed: {}",
            self.mountpoint.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Bytes free for unprivileged use.
    pub fn free_bytes(&self) -> u64 {
        let avail: u64 = self.stat_field("%a").parse().unwrap();
        let block: u64 = self.stat_field("%S").parse().unwrap();
        avail * block
    }

    /// Bytes in use.
    pub fn used_bytes(&self) -> u64 {
        let total: u64 = self.stat_field("%b").parse().unwrap();
        let free: u64 = self.stat_field("%f").parse().unwrap();
        let block: u64 = self.stat_field("%S").parse().unwrap();
        (total - free) * block
    }

    /// One field of `stat --file-system` for the mount point.
    fn stat_field(&self, format: &str) -> String {
        let out = Command::new("stat")
            .args(["--file-system", "--format", format])
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run stat");
        assert!(
            out.status.success(),
            "stat -f {} failed: {}",
            self.mountpoint.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
    }
}

/// A mount, or, when mounting is not possible: fails the test under
/// `CI=true`, otherwise prints a loud skip notice and returns `None` (the
/// caller then returns without asserting anything).
pub fn mounted_or_skip<T>(mounted: Result<T, String>, test: &str) -> Option<T> {
    match mounted {
        Ok(mount) => Some(mount),
        Err(why) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "{test}: cannot mount ({why}); CI must run the disk-full tests as root"
            );
            // Straight to the process's stderr: the test harness captures
            // eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n{bar}\nSKIPPED {test}: cannot mount ({why}).\n\
                 This test proves nothing here; run it as root (CI=true makes this a failure).\n{bar}",
                bar = "!".repeat(78)
            );
            None
        }
    }
}

/// A bind mount (`mount --bind`): the same filesystem seen at a second
/// place, as containers mount volumes. Hard links do not cross it even
/// though free space is shared. Unmounted on drop; drop it before the
/// filesystem it shows.
#[derive(Debug)]
pub struct BindMount {
    mountpoint: PathBuf,
}

impl BindMount {
    /// Shows `source` at `target` (both created if missing).
    pub fn try_mount(source: &Path, target: &Path) -> Result<BindMount, String> {
        for dir in [source, target] {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let out = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount --bind {} {}` failed ({}): {}",
                source.display(),
                target.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(BindMount {
            mountpoint: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
    }
}

/// `umount DIR`, or `umount -l DIR` if it is busy; warns if neither works.
fn unmount(mountpoint: &Path) {
    let umount = |lazy: bool| {
        let mut command = Command::new("umount");
        if lazy {
            command.arg("-l");
        }
        command
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !umount(false) && !umount(true) {
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: could not unmount the test mount at {}; unmount it by hand",
            mountpoint.display()
        );
    }
}

/// Points `node` at another install root and state directory (rewriting its
/// `ferry.toml`), e.g. to put them on a [`SmallFilesystem`].
pub fn relocate(node: &mut Node, root: &Path, state_dir: &Path) {
    let quote = |p: &Path| {
        format!(
            "\"{}\"",
            p.to_string_lossy()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        )
    };
    let text = fs::read_to_string(&node.config).unwrap();
    let mut seen = (false, false);
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("root = ") {
                seen.0 = true;
                format!("root = {}", quote(root))
            } else if line.starts_with("state_dir = ") {
                seen.1 = true;
                format!("state_dir = {}", quote(state_dir))
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(
        seen,
        (true, true),
        "{} has no root or state_dir line:\n{text}",
        node.config.display()
    );
    fs::write(&node.config, lines.join("\n") + "\n").unwrap();
    node.root = root.to_path_buf();
    node.state_dir = state_dir.to_path_buf();
}
