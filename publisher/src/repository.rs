//! The repository directory: its lock, verified reads and atomic writes.
//!
//! A repository is plain files served by any static web server, so the only
//! coordination available is the filesystem: an exclusive `flock` keeps two
//! publishers from interleaving their index updates (the second would
//! silently drop the first's release), and every file is written to a
//! temporary name, synced and renamed, so a reader or a crash sees the old
//! file or the new one, never half of one.
//!
//! The publisher trusts its own repository no more than a node does: the
//! existing index and manifests are verified with the public key derived
//! from the signing key before anything in them is used, so a tampered or
//! foreign repository is never extended and re-signed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifests::index::ManifestRef;
use manifests::{
    layout, FormatError, VerifiedIndex, VerifiedManifest, MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES,
};
use semver::Version;
use thiserror::Error;

use crate::root_chain::RepoTrust;

/// Held (with `flock`) for the whole of a publication.
pub const LOCK_FILE: &str = ".ferry-publish.lock";

/// Repository files are served by web servers running as another user.
const FILE_MODE: u32 = 0o644;

#[derive(Debug, Error)]
pub enum RepositoryError {
    #[error("cannot create repository directory {}: {error}", path.display())]
    Create { path: PathBuf, error: io::Error },

    #[error("repository {} does not exist or is not a directory: check --repo", path.display())]
    NotADirectory { path: PathBuf },

    #[error("cannot lock {}: {error}", path.display())]
    Lock { path: PathBuf, error: io::Error },

    #[error(
        "another ferry-publish is publishing to {} (it holds {}): wait for it to finish, then run again",
        repo.display(),
        lock.display()
    )]
    Busy { repo: PathBuf, lock: PathBuf },

    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },

    #[error("{} is larger than {limit} bytes, more than nodes will read: the repository is damaged; run `ferry-publish verify`", path.display())]
    TooLarge { path: PathBuf, limit: u64 },

    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },

    #[error(
        "{} exists but its signature {} is missing: restore the signature (or the whole \
         repository from a backup) before publishing",
        path.display(),
        signature.display()
    )]
    MissingSignature { path: PathBuf, signature: PathBuf },

    #[error(
        "{} is signed by key {found}, not by key {expected}: publish with the key \
         that signs this repository, or start a new repository for a new key (or \
         introduce the new key with `ferry-publish root`)",
        path.display()
    )]
    ForeignKey {
        path: PathBuf,
        found: String,
        /// The key ids (and files) the repository was checked with.
        expected: String,
    },

    #[error("{}: {error}; run `ferry-publish verify` to see what is wrong", path.display())]
    Invalid { path: PathBuf, error: FormatError },

    #[error(
        "index.json lists version {version} but {} is missing: the repository is damaged; \
         run `ferry-publish verify`",
        path.display()
    )]
    MissingManifest { version: Version, path: PathBuf },
}

/// A repository directory.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
}

/// The publisher's exclusive lock; released when dropped (the descriptor
/// closes). The file itself stays: removing a lock file races with the next
/// publisher opening it.
#[derive(Debug)]
pub struct PublishLock {
    _file: File,
}

impl Repository {
    /// An existing repository.
    pub fn open(root: &Path) -> Result<Self, RepositoryError> {
        if !root.is_dir() {
            return Err(RepositoryError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        Ok(Repository {
            root: root.to_path_buf(),
        })
    }

    /// A repository to publish into, created with its directories if needed.
    pub fn create(root: &Path) -> Result<Self, RepositoryError> {
        for dir in [
            root.to_path_buf(),
            root.join(layout::OBJECTS_DIR),
            root.join(layout::MANIFESTS_DIR),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|error| RepositoryError::Create { path: dir, error })?;
        }
        Ok(Repository {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a repository-relative name such as `index.json`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Takes the publish lock, failing at once if another publisher holds it.
    pub fn lock(&self) -> Result<PublishLock, RepositoryError> {
        let path = self.path(LOCK_FILE);
        let lock_error = |error| RepositoryError::Lock {
            path: path.clone(),
            error,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(lock_error)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(PublishLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(RepositoryError::Busy {
                repo: self.root.clone(),
                lock: path,
            }),
            Err(e) => Err(lock_error(e.into())),
        }
    }

    /// Reads `relative`, or `None` if it does not exist. More than `limit`
    /// bytes is an error: every file has a bound a node would apply.
    pub fn read(&self, relative: &str, limit: u64) -> Result<Option<Vec<u8>>, RepositoryError> {
        let path = self.path(relative);
        let read_error = |error| RepositoryError::Read {
            path: path.clone(),
            error,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > limit {
            return Err(RepositoryError::TooLarge { path, limit });
        }
        Ok(Some(bytes))
    }

    /// Whether `relative` exists (as anything, including a broken symlink).
    pub fn exists(&self, relative: &str) -> bool {
        fs::symlink_metadata(self.path(relative)).is_ok()
    }

    /// The current index, verified with `trust` (the repository's roots,
    /// or without a root the public halves of the signing keys); `None`
    /// for a repository that has never been published to.
    pub fn read_index(&self, trust: &RepoTrust) -> Result<Option<VerifiedIndex>, RepositoryError> {
        // A signature without an index is the remains of a first publication
        // interrupted between its last two writes: the repository is new.
        let Some(bytes) = self.read(layout::INDEX, MAX_INDEX_BYTES)? else {
            return Ok(None);
        };
        let signature = self.read_signature(layout::INDEX)?;
        trust
            .verify_index(&bytes, &signature)
            .map(Some)
            .map_err(|error| self.verification_error(layout::INDEX, trust, error))
    }

    /// The manifest of `version`, verified against its pin in the index.
    pub fn read_manifest(
        &self,
        pin: &ManifestRef,
        version: &Version,
        trust: &RepoTrust,
    ) -> Result<VerifiedManifest, RepositoryError> {
        let relative = layout::manifest(version);
        let bytes =
            self.read(&relative, pin.size)?
                .ok_or_else(|| RepositoryError::MissingManifest {
                    version: version.clone(),
                    path: self.path(&relative),
                })?;
        let signature = self.read_signature(&relative)?;
        trust
            .verify_manifest(bytes, signature, pin, version)
            .map_err(|error| self.verification_error(&relative, trust, error))
    }

    fn read_signature(&self, relative: &str) -> Result<Vec<u8>, RepositoryError> {
        let signature = layout::signature_of(relative);
        self.read(&signature, MAX_SIGNATURE_BYTES)?.ok_or_else(|| {
            RepositoryError::MissingSignature {
                path: self.path(relative),
                signature: self.path(&signature),
            }
        })
    }

    fn verification_error(
        &self,
        relative: &str,
        trust: &RepoTrust,
        error: FormatError,
    ) -> RepositoryError {
        match (error, trust) {
            (FormatError::UntrustedKey { key_id, .. }, RepoTrust::Keys(keys)) => {
                let expected: Vec<String> = keys.key_ids().iter().map(|k| k.to_string()).collect();
                RepositoryError::ForeignKey {
                    path: self.path(relative),
                    found: key_id,
                    expected: expected.join(", "),
                }
            }
            (error, _) => RepositoryError::Invalid {
                path: self.path(relative),
                error,
            },
        }
    }

    /// Replaces `relative` with `bytes` atomically and durably: temporary
    /// file in the same directory, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, relative: &str, bytes: &[u8]) -> Result<(), RepositoryError> {
        let path = self.path(relative);
        let write_error = |error| RepositoryError::Write {
            path: path.clone(),
            error,
        };
        let dir = path.parent().expect("repository files live in a directory");
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(write_error)?;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(write_error)?;
        temp.write_all(bytes).map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&path).map_err(|e| write_error(e.error))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_publisher_is_turned_away() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::create(dir.path()).unwrap();
        let held = repo.lock().unwrap();
        let err = repo.lock().unwrap_err();
        assert!(matches!(err, RepositoryError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another ferry-publish"), "{err}");
        drop(held);
        repo.lock().unwrap();
    }

    #[test]
    fn atomic_writes_replace_whole_files_readably() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::create(dir.path()).unwrap();
        repo.write_atomic("manifests/1.0.0.json", b"one").unwrap();
        repo.write_atomic("manifests/1.0.0.json", b"two").unwrap();
        assert_eq!(
            repo.read("manifests/1.0.0.json", 3).unwrap().unwrap(),
            b"two"
        );
        let mode = fs::metadata(repo.path("manifests/1.0.0.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(matches!(
            repo.read("manifests/1.0.0.json", 2),
            Err(RepositoryError::TooLarge { .. })
        ));
        assert_eq!(repo.read("absent", 10).unwrap(), None);
        let names: Vec<_> = fs::read_dir(repo.path("manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1.0.0.json"], "no temporary file is left behind");
    }
}
