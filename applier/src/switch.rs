//! The `current` symlink: which release the node runs.
//!
//! Switching is one rename(2) of a freshly made symlink over `current`, then
//! an fsync of the directory: at every instant `current` names the old
//! release or the new one, and after the fsync the choice survives power
//! loss. The symlink, not a state file, is the truth about what runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::durable;

pub fn current_link(root: &Path) -> PathBuf {
    root.join("current")
}

/// The version `current` points at, or `None` on a node with nothing installed.
pub fn current_version(root: &Path) -> io::Result<Option<Version>> {
    let link = current_link(root);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let version = target
        .strip_prefix("releases")
        .ok()
        .and_then(|rest| rest.to_str())
        .and_then(|v| v.parse::<Version>().ok())
        .ok_or_else(|| {
            io::Error::other(format!(
                "{} points to {}, which is not a release managed by ferry (expected releases/<version>)",
                link.display(),
                target.display()
            ))
        })?;
    Ok(Some(version))
}

/// Points `current` at `releases/<version>` atomically and durably.
pub fn switch_to(root: &Path, version: &Version) -> io::Result<()> {
    let tmp = root.join(format!(".current.tmp-{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(Path::new("releases").join(version.to_string()), &tmp)?;
    crate::faults::point("switch:before-rename");
    if let Err(e) = fs::rename(&tmp, current_link(root)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crate::faults::point("switch:after-rename");
    durable::sync_dir(root)
}

/// Removes `current`: the node goes back to having nothing installed (only
/// when a first install fails after its switch).
pub fn unset(root: &Path) -> io::Result<()> {
    match fs::remove_file(current_link(root)) {
        Ok(()) => durable::sync_dir(root),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_replaces_the_link_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(current_version(dir.path()).unwrap(), None);
        let v1: Version = "1.0.0".parse().unwrap();
        let v2: Version = "2.0.0-rc.1".parse().unwrap();
        switch_to(dir.path(), &v1).unwrap();
        assert_eq!(current_version(dir.path()).unwrap(), Some(v1));
        switch_to(dir.path(), &v2).unwrap();
        assert_eq!(current_version(dir.path()).unwrap(), Some(v2));
        assert_eq!(
            fs::read_link(current_link(dir.path())).unwrap(),
            Path::new("releases/2.0.0-rc.1")
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("current")]);
    }

    #[test]
    fn a_foreign_current_link_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr/lib/other", current_link(dir.path())).unwrap();
        let err = current_version(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a release managed by ferry"), "{err}");
    }
}
