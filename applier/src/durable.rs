//! Writes that survive a power cut.
//!
//! A rename is only durable once the directory holding it is fsynced, and a
//! file's bytes only once the file is: every "this is now true on disk" step
//! in ferry goes through these functions so that none forgets half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// fsyncs a directory so that entries created, renamed or removed in it
/// survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `data` atomically: a reader (or a crash) sees the old
/// content or the new, never a mix. The temporary sits beside the target so
/// that the rename stays within one filesystem.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        crate::faults::point("durable:before-rename");
        fs::rename(&tmp, path)?;
        crate::faults::point("durable:after-rename");
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends one line to a log file and fsyncs it: history must not lose the
/// record of an operation that changed the node. After a torn last line
/// (a power cut mid-append) the new line starts on a line of its own, so
/// the torn one stays the only damaged record.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    crate::faults::point("history:before-append");
    let mut buf = Vec::with_capacity(line.len() + 2);
    if !ends_with_newline(&mut f)? {
        buf.push(b'\n');
    }
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    f.write_all(&buf)?;
    f.sync_data()
}

/// Whether `f` is empty or ends with `\n`.
fn ends_with_newline(f: &mut File) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if f.metadata()?.len() == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Creates `dir` and its missing parents, fsyncing each parent that gained an
/// entry so the new directories survive a crash.
pub fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, 0o755)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads a JSON state file, or `T::default()` when there is none yet.
/// `if_corrupt` tells the operator what to do about an unreadable one.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    if_corrupt: &'static str,
) -> crate::error::Result<T> {
    use crate::error::NodeError;
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| NodeError::CorruptState {
            path: path.to_path_buf(),
            source,
            if_corrupt,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(NodeError::io(format!("cannot read {}", path.display()), e)),
    }
}

/// Writes a JSON state file atomically and durably.
pub fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> crate::error::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state types serialise");
    write_atomic(path, &bytes, 0o644).map_err(|e| crate::error::NodeError::writing(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_after_a_torn_line_starts_on_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        append_line(&path, "one").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"tor")
            .unwrap();
        append_line(&path, "two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n{\"tor\ntwo\n");
    }
}
