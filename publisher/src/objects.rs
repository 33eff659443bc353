//! Content objects: `objects/<sha256 of content>`, zstd-compressed.
//!
//! Objects are named by their uncompressed content, so an unchanged file is
//! stored once however many releases carry it, and a new object is written
//! only when no release had that content before. Compression is single
//! threaded per object (parallelism comes from compressing several objects
//! at once) because zstd's multithreaded mode does not promise the same bytes
//! for the same input; with one thread and fixed parameters, the same
//! content at the same level gives the same object, which is what makes
//! publications reproducible.
//!
//! Objects are written to a temporary file in the objects directory, synced,
//! then renamed: a reader or a crash sees a whole object or none.
//!
//! Checking an object follows the order nodes use: stored size and SHA-256
//! first, so the decompressor only sees bytes the manifest vouches for, then
//! decompression with an output cap of the declared size plus one byte, so
//! a hostile object cannot expand without bound.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use manifests::digest::HashingWriter;
use manifests::layout;
use manifests::manifest::{Compression, ObjectRef};
use manifests::Sha256Digest;
use thiserror::Error;

const READ_BUFFER: usize = 256 * 1024;

/// Objects are served by plain web servers running as another user.
const OBJECT_MODE: u32 = 0o644;

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },

    #[error("cannot write object {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },

    #[error(
        "{} changed while it was being published (its content no longer matches what was \
         hashed); publish again once nothing writes to the input directory",
        path.display()
    )]
    Changed { path: PathBuf },

    #[error(
        "existing object {} {problem}; move it out of the repository and publish again \
         (`ferry-publish verify` lists every damaged object)",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        problem: ObjectProblem,
    },
}

/// What is wrong with a stored object, as `verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ObjectProblem {
    #[error("is missing")]
    Missing,

    #[error("cannot be read: {0}")]
    Unreadable(String),

    #[error("is {actual} bytes, but the manifest says {expected}")]
    StoredSize { actual: u64, expected: u64 },

    #[error("has SHA-256 {actual}, but the manifest says {expected}")]
    StoredDigest {
        actual: Sha256Digest,
        expected: Sha256Digest,
    },

    #[error("does not decompress as zstd: {0}")]
    Undecodable(String),

    #[error("decompresses to more than the {expected} bytes of its content")]
    TooLong { expected: u64 },

    #[error("decompresses to {actual} bytes, but the content is {expected} bytes")]
    ContentSize { actual: u64, expected: u64 },

    #[error("decompresses to content with SHA-256 {actual}, but its name says {expected}")]
    ContentDigest {
        actual: Sha256Digest,
        expected: Sha256Digest,
    },
}

/// SHA-256 and length of a file's bytes.
pub fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), ObjectError> {
    let read_error = |error| ObjectError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hasher).map_err(read_error)?;
    Ok(hasher.finish())
}

/// Where the object for `content` lives under the repository `root`.
pub fn object_path(root: &Path, content: &Sha256Digest) -> PathBuf {
    root.join(layout::object(content))
}

/// Looks for an existing object holding `content` (`size` bytes). Returns
/// its reference when it is present and sound, `None` when it is absent,
/// and an error when it is present but damaged: reusing it would pin
/// damaged bytes in a freshly signed manifest.
pub fn inspect_stored(
    root: &Path,
    content: &Sha256Digest,
    size: u64,
) -> Result<Option<ObjectRef>, ObjectError> {
    let path = object_path(root, content);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ObjectError::Read { path, error }),
    };
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(
        &mut BufReader::with_capacity(READ_BUFFER, file),
        &mut hasher,
    )
    .map_err(|error| ObjectError::Read {
        path: path.clone(),
        error,
    })?;
    let (sha256, stored_size) = hasher.finish();
    check_content(&path, content, size).map_err(|problem| ObjectError::Damaged {
        path: path.clone(),
        problem,
    })?;
    Ok(Some(ObjectRef {
        path: layout::object(content),
        compression: Compression::Zstd,
        size: stored_size,
        sha256,
    }))
}

/// Compresses `source` (expected to hold `content`, `size` bytes) into a new
/// object at zstd `level`. The file's bytes are hashed as they are
/// compressed, so a file that changed since planning is caught here instead
/// of being published under the wrong name. The caller syncs the objects
/// directory once after a batch ([`sync_objects_dir`]).
pub fn store(
    root: &Path,
    content: &Sha256Digest,
    size: u64,
    source: &Path,
    level: i32,
) -> Result<ObjectRef, ObjectError> {
    let final_path = object_path(root, content);
    let dir = final_path.parent().expect("object paths have a directory");
    let write_error = |error| ObjectError::Write {
        path: final_path.clone(),
        error,
    };
    let read_error = |error| ObjectError::Read {
        path: source.to_path_buf(),
        error,
    };

    let mut input = File::open(source).map_err(read_error)?;
    let temp = tempfile::Builder::new()
        .prefix(".tmp-object-")
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(OBJECT_MODE))
        .map_err(write_error)?;

    let stored = HashingWriter::new(BufWriter::with_capacity(READ_BUFFER, temp.as_file()));
    let mut encoder = zstd::stream::write::Encoder::new(stored, level).map_err(write_error)?;
    // The pledged size goes into the frame header (nodes can preallocate) and
    // makes zstd itself refuse to finish if the file grew or shrank.
    encoder
        .set_pledged_src_size(Some(size))
        .map_err(write_error)?;
    encoder.include_contentsize(true).map_err(write_error)?;
    encoder.include_checksum(true).map_err(write_error)?;
    let mut plain = HashingWriter::new(encoder);
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut read_so_far: u64 = 0;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        read_so_far += n as u64;
        if read_so_far > size {
            // Grown since hashing; stop before compressing past the pledge.
            return Err(ObjectError::Changed {
                path: source.to_path_buf(),
            });
        }
        plain.write_all(&buffer[..n]).map_err(write_error)?;
    }
    let (encoder, actual, actual_size) = plain.into_parts();
    if actual != *content || actual_size != size {
        return Err(ObjectError::Changed {
            path: source.to_path_buf(),
        });
    }
    let stored = encoder.finish().map_err(write_error)?;
    let (buffered, sha256, stored_size) = stored.into_parts();
    buffered
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(&final_path)
        .map_err(|e| write_error(e.error))?;
    Ok(ObjectRef {
        path: layout::object(content),
        compression: Compression::Zstd,
        size: stored_size,
        sha256,
    })
}

/// Makes the renames of freshly stored objects durable.
pub fn sync_objects_dir(root: &Path) -> Result<(), ObjectError> {
    let dir = root.join(layout::OBJECTS_DIR);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| ObjectError::Write { path: dir, error })
}

/// Checks the object at `path` against its reference in a manifest and the
/// content it must decompress to, in the order nodes check it.
pub fn check_stored(
    path: &Path,
    object: &ObjectRef,
    content: &Sha256Digest,
    size: u64,
) -> Result<(), ObjectProblem> {
    let unreadable = |e: io::Error| ObjectProblem::Unreadable(e.to_string());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectProblem::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    let actual_size = file.metadata().map_err(unreadable)?.len();
    if actual_size != object.size {
        return Err(ObjectProblem::StoredSize {
            actual: actual_size,
            expected: object.size,
        });
    }
    let mut hasher = HashingWriter::new(io::sink());
    // Capped like on a node: the file could grow while it is read.
    io::copy(
        &mut BufReader::with_capacity(READ_BUFFER, file).take(object.size),
        &mut hasher,
    )
    .map_err(unreadable)?;
    let (actual, _) = hasher.finish();
    if actual != object.sha256 {
        return Err(ObjectProblem::StoredDigest {
            actual,
            expected: object.sha256,
        });
    }
    check_content(path, content, size)
}

/// Decompresses the object at `path` with an output cap of `size + 1` bytes
/// and checks the result is `size` bytes with SHA-256 `content`.
fn check_content(path: &Path, content: &Sha256Digest, size: u64) -> Result<(), ObjectProblem> {
    decompress_checked(path, content, size, io::sink())
}

/// Appends the content of the object at `path` to `out`, checked like
/// [`check_stored`] checks it (output cap, size, SHA-256). Deltas use it to
/// load their base: content the repository holds, not trusted unchecked.
pub fn read_content(
    path: &Path,
    content: &Sha256Digest,
    size: u64,
    out: &mut Vec<u8>,
) -> Result<(), ObjectProblem> {
    let start = out.len();
    let result = decompress_checked(path, content, size, &mut *out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decompress_checked(
    path: &Path,
    content: &Sha256Digest,
    size: u64,
    sink: impl Write,
) -> Result<(), ObjectProblem> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ObjectProblem::Missing),
        Err(e) => return Err(ObjectProblem::Unreadable(e.to_string())),
    };
    let decoder = zstd::stream::read::Decoder::new(file)
        .map_err(|e| ObjectProblem::Undecodable(e.to_string()))?;
    let mut hasher = HashingWriter::new(sink);
    io::copy(&mut decoder.take(size.saturating_add(1)), &mut hasher)
        .map_err(|e| ObjectProblem::Undecodable(e.to_string()))?;
    let (actual, actual_size) = hasher.finish();
    if actual_size > size {
        return Err(ObjectProblem::TooLong { expected: size });
    }
    if actual_size != size {
        return Err(ObjectProblem::ContentSize {
            actual: actual_size,
            expected: size,
        });
    }
    if actual != *content {
        return Err(ObjectProblem::ContentDigest {
            actual,
            expected: *content,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(layout::OBJECTS_DIR)).unwrap();
        dir
    }

    fn stored_copy(data: &[u8], level: i32) -> (tempfile::TempDir, Sha256Digest, ObjectRef) {
        let repo = repo();
        let source = repo.path().join("source");
        fs::write(&source, data).unwrap();
        let content = Sha256Digest::of(data);
        let object = store(repo.path(), &content, data.len() as u64, &source, level).unwrap();
        (repo, content, object)
    }

    #[test]
    fn stored_objects_round_trip_and_are_reproducible() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (a, content, object) = stored_copy(&data, 19);
        let (b, _, again) = stored_copy(&data, 19);
        assert_eq!(object, again);
        let path = object_path(a.path(), &content);
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(object_path(b.path(), &content)).unwrap()
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(zstd::decode_all(File::open(&path).unwrap()).unwrap(), data);
        check_stored(&path, &object, &content, data.len() as u64).unwrap();
        assert_eq!(
            inspect_stored(a.path(), &content, data.len() as u64).unwrap(),
            Some(object)
        );
        assert_eq!(
            inspect_stored(a.path(), &Sha256Digest::of(b"other"), 5).unwrap(),
            None
        );
    }

    #[test]
    fn damaged_objects_are_named_precisely() {
        let data = b"hello hello hello hello".repeat(100);
        let (repo, content, object) = stored_copy(&data, 3);
        let path = object_path(repo.path(), &content);
        let size = data.len() as u64;

        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let problem = check_stored(&path, &object, &content, size).unwrap_err();
        assert!(
            matches!(problem, ObjectProblem::StoredDigest { .. }),
            "{problem}"
        );
        // Reuse decompresses, so the damage is caught when publishing too.
        assert!(matches!(
            inspect_stored(repo.path(), &content, size),
            Err(ObjectError::Damaged { .. })
        ));

        fs::write(&path, &bytes[..10]).unwrap();
        let problem = check_stored(&path, &object, &content, size).unwrap_err();
        assert!(
            matches!(problem, ObjectProblem::StoredSize { .. }),
            "{problem}"
        );

        // Sound zstd holding other content, under this content's name.
        let other = zstd::encode_all(&b"other content"[..], 3).unwrap();
        fs::write(&path, &other).unwrap();
        let forged = ObjectRef {
            size: other.len() as u64,
            sha256: Sha256Digest::of(&other),
            ..object.clone()
        };
        let problem = check_stored(&path, &forged, &content, size).unwrap_err();
        assert!(
            matches!(problem, ObjectProblem::ContentSize { .. }),
            "{problem}"
        );

        // More output than declared is cut off at size + 1.
        let problem = check_stored(&path, &forged, &content, 4).unwrap_err();
        assert_eq!(problem, ObjectProblem::TooLong { expected: 4 });

        fs::remove_file(&path).unwrap();
        assert_eq!(
            check_stored(&path, &object, &content, size),
            Err(ObjectProblem::Missing)
        );
    }

    #[test]
    fn a_file_that_changed_since_hashing_is_refused() {
        let repo = repo();
        let source = repo.path().join("source");
        fs::write(&source, b"new content").unwrap();
        let planned = Sha256Digest::of(b"old content");
        for size in [11, 3, 50] {
            let err = store(repo.path(), &planned, size, &source, 3).unwrap_err();
            assert!(matches!(err, ObjectError::Changed { .. }), "{err}");
        }
        let leftovers = fs::read_dir(repo.path().join(layout::OBJECTS_DIR))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "temporary files are removed");
    }
}
