//! Opening a file from outside the node's own state for reading: a
//! `file://` repository's files and an offline bundle.
//!
//! `open(2)` of a named pipe blocks until a writer appears, and no timeout
//! applies to a local file, so a fifo planted at `index.json` or given as
//! `--bundle` would hold `ferry apply` (and its lock) forever. The file is
//! opened with `O_NONBLOCK`, which makes opening a fifo return at once, and
//! refused by `fstat` unless it is a regular file; a regular file reads the
//! same with or without the flag. `O_NOCTTY` as well: opening a terminal
//! device planted there must not make it the controlling terminal of a
//! `ferry` that has none (a run from its timer), whose hangup would then
//! signal it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A fifo, socket, device or directory where a file was expected.
    #[error("it is a {0}, not a regular file, so ferry does not read it")]
    NotRegular(&'static str),
}

impl OpenError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading if it is a regular file (symlinks followed),
/// without ever blocking on a fifo.
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(OpenError::NotRegular(if kind.is_fifo() {
        "named pipe (fifo)"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else {
        "special file"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_and_a_file_is_read() {
        let dir = std::env::temp_dir().join(format!("ferry-regular-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("index.json");
        let _ = std::fs::remove_file(&fifo);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = open_regular(&fifo).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
        assert!(matches!(
            open_regular(&dir),
            Err(OpenError::NotRegular("directory"))
        ));
        assert!(open_regular(&dir.join("missing"))
            .unwrap_err()
            .is_not_found());
        let file = dir.join("file");
        std::fs::write(&file, b"bytes").unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut open_regular(&file).unwrap(), &mut text).unwrap();
        assert_eq!(text, "bytes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
