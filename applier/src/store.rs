//! The node's content store: verified, uncompressed file contents named by
//! their SHA-256, under `state_dir/store/`.
//!
//! Release trees are reflinks or hard links into the store
//! ([`crate::sharing`]), so a file unchanged across releases costs its bytes
//! once; stored objects are read-only, like the release files. Nothing enters the store unverified: a
//! download is checked against the signed compressed digest before the
//! decompressor sees it, then the decompressed bytes against the signed
//! content digest, capped at the signed size so a decompression bomb stops at
//! the first byte too many. Contents are re-hashed before reuse because a
//! hard-linked release file can be written through by the application.
//!
//! Downloads are resumable: an object is fetched into
//! `downloads/<content sha256>.part`, which outlives a failed or killed run,
//! and the next attempt (a retry in this process, or the next `ferry` run)
//! continues from the part's length. Transient failures are retried with
//! backoff ([`crate::retry`]), each retry resuming what is on disk.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifests::digest::HashingWriter;
use manifests::manifest::{DeltaRef, FileContent, ObjectRef};
use manifests::mode::Mode;
use manifests::Sha256Digest;

use crate::durable;
use crate::error::{NodeError, Result};
use crate::retry::{self, Verdict};
use crate::sharing::{self, Sharing};
use crate::transport::{FetchError, Transport};

/// Why a download did not complete (a wrong digest twice is a
/// verification failure, a refused write on our disk `NodeError::Io`).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Every attempt was transient and the retries ran out; the bytes are
    /// kept for the next run.
    #[error("cannot download {what}: gave up after {attempts} attempts: {last}; {kept} of its {size} bytes are kept in {} and the next run resumes from there", part.display())]
    GaveUp {
        what: String,
        attempts: u32,
        last: NodeError,
        kept: u64,
        size: u64,
        part: PathBuf,
    },
    /// The source closed the body before the signed size.
    #[error("{url} ended after {got} of its {size} bytes")]
    CutShort { url: String, got: u64, size: u64 },
}

/// Why one download attempt failed.
enum Failure {
    /// Worth another attempt (not before the pause the server asked for,
    /// if any): what is on disk is kept and continued.
    Transient(NodeError, Option<std::time::Duration>),
    /// The complete download has the wrong digest; the part was deleted.
    Corrupt(NodeError),
    /// More attempts cannot help.
    Permanent(NodeError),
}

/// A file of the repository as signed metadata pins it: where it is, how
/// many bytes it has and their SHA-256. Objects and delta patches are
/// downloaded alike.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile<'a> {
    pub path: &'a str,
    pub size: u64,
    pub sha256: Sha256Digest,
}

impl<'a> From<&'a ObjectRef> for PinnedFile<'a> {
    fn from(object: &'a ObjectRef) -> Self {
        PinnedFile {
            path: &object.path,
            size: object.size,
            sha256: object.sha256,
        }
    }
}

impl<'a> From<&'a DeltaRef> for PinnedFile<'a> {
    fn from(delta: &'a DeltaRef) -> Self {
        PinnedFile {
            path: &delta.path,
            size: delta.size,
            sha256: delta.sha256,
        }
    }
}

/// `state_dir/store` is ferry's alone. Its files carry the modes releases
/// use (they are hard-linked into release trees), so a store other users
/// could reach would let them run any content kept there — an old
/// release's setuid binary, say, long after that release was removed.
pub const STORE_DIR_MODE: u32 = 0o700;

/// Takes group and other access away from a store directory an older
/// ferry created 0755, the first time this one writes to it.
fn tighten(dir: &Path) -> Result<()> {
    let meta = fs::metadata(dir)
        .map_err(|e| NodeError::io(format!("cannot inspect {}", dir.display()), e))?;
    if meta.mode() & 0o7777 == STORE_DIR_MODE {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(STORE_DIR_MODE)).map_err(|e| {
        NodeError::io(
            format!(
                "cannot make {} private (mode {STORE_DIR_MODE:04o})",
                dir.display()
            ),
            e,
        )
    })
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    objects: PathBuf,
    downloads: PathBuf,
    sharing: Sharing,
}

impl ContentStore {
    pub fn open(state_dir: &Path) -> Result<ContentStore> {
        let store = ContentStore {
            objects: state_dir.join("store"),
            downloads: state_dir.join("downloads"),
            sharing: Sharing::from_env(),
        };
        for (dir, mode) in [(&store.objects, STORE_DIR_MODE), (&store.downloads, 0o755)] {
            durable::create_dir_all(dir, mode)
                .map_err(|e| NodeError::io(format!("cannot create {}", dir.display()), e))?;
        }
        tighten(&store.objects)?;
        Ok(store)
    }

    /// Opens the store for reading only: never creates anything (dry runs).
    pub fn at(state_dir: &Path) -> ContentStore {
        ContentStore {
            objects: state_dir.join("store"),
            downloads: state_dir.join("downloads"),
            sharing: Sharing::from_env(),
        }
    }

    pub fn path_of(&self, content: &Sha256Digest) -> PathBuf {
        self.objects.join(content.to_hex())
    }

    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    pub fn downloads_dir(&self) -> &Path {
        &self.downloads
    }

    /// True if the store holds exactly this content (size and SHA-256).
    pub fn holds(&self, sha256: &Sha256Digest, size: u64) -> Result<bool> {
        let path = self.path_of(sha256);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == size => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(NodeError::io(
                    format!("cannot inspect {}", path.display()),
                    e,
                ))
            }
        }
        let file = File::open(&path)
            .map_err(|e| NodeError::io(format!("cannot read {}", path.display()), e))?;
        let (digest, _) = Sha256Digest::of_reader(file)
            .map_err(|e| NodeError::io(format!("cannot read {}", path.display()), e))?;
        Ok(digest == *sha256)
    }

    /// Where the download of `content` goes while it is incomplete.
    pub fn part_path(&self, content: &FileContent) -> PathBuf {
        self.downloads.join(format!("{}.part", content.sha256))
    }

    /// Downloads, verifies and decompresses one object into the store, with
    /// `mode` as the stored file's mode (so releases can hard-link it).
    /// Returns the number of bytes fetched over the transport.
    pub fn fetch(
        &self,
        transport: &dyn Transport,
        content: &FileContent,
        mode: Mode,
        what: &str,
    ) -> Result<u64> {
        let object = &content.object;
        let part = self.part_path(content);
        let mut fetched = 0;
        self.download(
            transport,
            PinnedFile::from(object),
            &part,
            &format!("object {} for {what}", object.path),
            &mut fetched,
        )?;
        let result = self.admit(&part, content, mode, what);
        match &result {
            // A verified download is worth keeping if only the store's disk
            // failed: the next run admits it without fetching it again.
            Err(NodeError::Io { .. }) => {}
            _ => {
                let _ = fs::remove_file(&part);
            }
        }
        result.map(|()| fetched)
    }

    /// Downloads `file` into `part` and checks it against its signed size
    /// and SHA-256: when this returns `Ok`, `part` holds exactly the signed
    /// bytes. `what` names the file in messages ("object … for bin/app").
    /// Adds the bytes fetched over the transport to `fetched`, also when it
    /// fails, so the caller can account for every byte.
    ///
    /// Transient failures (connection, timeout, HTTP 5xx/429, a body shorter
    /// than signed) are retried as the transport's policy says, each retry
    /// resuming from the part on disk; when the budget runs out the part is
    /// kept for the next run. A complete download with the wrong digest is
    /// deleted and fetched once more from scratch (a proxy may have mangled
    /// it); twice wrong is a verification failure. A body larger than signed
    /// or a missing file fails at once. A write our own disk refuses is a
    /// [`NodeError::Io`].
    pub fn download(
        &self,
        transport: &dyn Transport,
        file: PinnedFile<'_>,
        part: &Path,
        what: &str,
        fetched: &mut u64,
    ) -> Result<()> {
        let mut refetched_corrupt = false;
        let label = format!("downloading {} for {what}", transport.url(file.path));
        let downloaded = retry::run(transport.retry_policy(), &label, |_| {
            match self.download_once(transport, file, what, part, fetched) {
                Ok(()) => Ok(()),
                Err(Failure::Transient(e, None)) => Err(Verdict::Retry(e)),
                Err(Failure::Transient(e, Some(pause))) => Err(Verdict::RetryAfter(e, pause)),
                Err(Failure::Corrupt(e)) if !refetched_corrupt => {
                    refetched_corrupt = true;
                    Err(Verdict::Retry(e))
                }
                Err(Failure::Corrupt(e) | Failure::Permanent(e)) => Err(Verdict::Fail(e)),
            }
        });
        downloaded.map_err(|gave_up| match gave_up.error {
            e @ (NodeError::Verification(_) | NodeError::Io { .. }) => e,
            last if gave_up.exhausted => DownloadError::GaveUp {
                what: what.to_string(),
                attempts: gave_up.attempts,
                last,
                kept: fs::metadata(part).map_or(0, |m| m.len()),
                size: file.size,
                part: part.to_path_buf(),
            }
            .into(),
            e => e,
        })
    }

    /// One attempt: continues `part` from its length up to the signed size,
    /// then checks the whole file against the signed digest. Adds the bytes
    /// written to `fetched`.
    ///
    /// The part is not fsynced as it grows, deliberately: after a power cut
    /// it may hold a torn or zero-filled tail, and the digest check over the
    /// whole file catches that (the part is then deleted and fetched again),
    /// so fsyncing would cost time and buy no correctness.
    fn download_once(
        &self,
        transport: &dyn Transport,
        file: PinnedFile<'_>,
        what: &str,
        part: &Path,
        fetched: &mut u64,
    ) -> Result<(), Failure> {
        let local = |context: &str, e| {
            Failure::Permanent(NodeError::io(format!("{context} {}", part.display()), e))
        };
        let mut out = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(part)
            .map_err(|e| local("cannot open", e))?;
        let mut have = out
            .metadata()
            .map_err(|e| local("cannot inspect", e))?
            .len();
        if have > file.size {
            tracing::warn!(
                part = %part.display(),
                bytes = have,
                signed = file.size,
                "partial download is longer than the signed file; starting again"
            );
            out.set_len(0).map_err(|e| local("cannot truncate", e))?;
            have = 0;
        }
        if have < file.size {
            if have > 0 {
                tracing::info!("resuming {} at byte {have} of {}", file.path, file.size);
            }
            out.seek(SeekFrom::Start(have))
                .map_err(|e| local("cannot seek in", e))?;
            let result = transport.fetch(file.path, have, file.size, &mut out);
            let now = out
                .metadata()
                .map_err(|e| local("cannot inspect", e))?
                .len();
            *fetched += now.saturating_sub(have);
            match result {
                Ok(_) => {}
                Err(e @ FetchError::RangeMismatch { .. }) => {
                    out.set_len(0).map_err(|e| local("cannot truncate", e))?;
                    return Err(Failure::Transient(e.into(), None));
                }
                Err(e @ FetchError::TooLarge { .. }) => {
                    // The server's file is not the signed one: what we have
                    // of it is worthless.
                    drop(out);
                    let _ = fs::remove_file(part);
                    return Err(Failure::Permanent(e.into()));
                }
                Err(FetchError::Local { source, .. }) => {
                    // Our own disk refused the write (typically ENOSPC): the
                    // part cannot grow, and deleting it gives the space back
                    // so the failure itself can be recorded. The message
                    // names the local file and its filesystem, not the URL.
                    drop(out);
                    let _ = fs::remove_file(part);
                    let context = format!(
                        "cannot write {} (downloading {}{})",
                        part.display(),
                        transport.url(file.path),
                        crate::space::write_failure_hint(part, &source)
                    );
                    return Err(Failure::Permanent(NodeError::io(context, source)));
                }
                Err(e) if e.is_transient() => {
                    let pause = e.asked_pause();
                    return Err(Failure::Transient(e.into(), pause));
                }
                Err(e) => return Err(Failure::Permanent(e.into())),
            }
            if now < file.size {
                return Err(Failure::Transient(
                    DownloadError::CutShort {
                        url: transport.url(file.path),
                        got: now,
                        size: file.size,
                    }
                    .into(),
                    None,
                ));
            }
        }
        out.seek(SeekFrom::Start(0))
            .map_err(|e| local("cannot seek in", e))?;
        let (digest, size) =
            Sha256Digest::of_reader(&mut out).map_err(|e| local("cannot read", e))?;
        if size != file.size || digest != file.sha256 {
            drop(out);
            let _ = fs::remove_file(part);
            return Err(Failure::Corrupt(NodeError::verification(format!(
                "{what} is corrupt: got {size} bytes with SHA-256 {digest}, the signed manifest says {} bytes with SHA-256 {}",
                file.size, file.sha256
            ))));
        }
        Ok(())
    }

    /// Decompresses a verified download into the store, checking the
    /// content against its signed size and digest.
    fn admit(&self, part: &Path, content: &FileContent, mode: Mode, what: &str) -> Result<()> {
        let object = &content.object;
        let read_err = |e| NodeError::io(format!("cannot read {}", part.display()), e);
        self.install_content(content, mode, what, &object.path, |out, tmp| {
            let decoder = zstd::stream::read::Decoder::new(File::open(part).map_err(read_err)?)
                .map_err(|e| {
                    NodeError::io(format!("cannot start decompressing {}", part.display()), e)
                })?;
            let mut writer = HashingWriter::new(out);
            // One byte past the signed size is enough to know it is too long.
            let mut decoder = decoder.take(content.size + 1);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(NodeError::verification(format!(
                            "object {} for {what} does not decompress: {e}",
                            object.path
                        )))
                    }
                };
                // A write error is the node's disk, not the object's fault.
                writer
                    .write_all(&buf[..n])
                    .map_err(|e| NodeError::writing(tmp, e))?;
            }
            let (_, digest, len) = writer.into_parts();
            Ok((len, digest))
        })
    }

    /// The tail every way of making content shares: `fill` writes the
    /// content into a fresh temporary file of the store (created with
    /// `mode`, open for reading and writing) and returns its length and
    /// SHA-256; they are checked against the signed `content`, then the file
    /// is fsynced, renamed to its digest's name and the store directory
    /// fsynced, so after a crash the store holds the whole verified content
    /// or nothing. `source` names where the bytes came from, for messages.
    /// On any failure the temporary file is removed.
    pub fn install_content(
        &self,
        content: &FileContent,
        mode: Mode,
        what: &str,
        source: &str,
        fill: impl FnOnce(&mut File, &Path) -> Result<(u64, Sha256Digest)>,
    ) -> Result<()> {
        let tmp = self
            .objects
            .join(format!(".tmp-{}-{}", content.sha256, std::process::id()));
        let result = (|| {
            let mut out = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .mode(mode.bits())
                .open(&tmp)
                .map_err(|e| NodeError::io(format!("cannot create {}", tmp.display()), e))?;
            let (len, digest) = fill(&mut out, &tmp)?;
            if len != content.size || digest != content.sha256 {
                return Err(NodeError::verification(format!(
                    "content of {what} from {source} is wrong: {len} bytes with SHA-256 {digest}, expected {} bytes with SHA-256 {}",
                    content.size, content.sha256
                )));
            }
            // Read-only, like the release files linked to it: a write
            // through a link must fail, not change every release sharing it.
            out.set_permissions(fs::Permissions::from_mode(sharing::read_only(mode).bits()))
                .map_err(|e| NodeError::io(format!("cannot set mode on {}", tmp.display()), e))?;
            out.sync_all()
                .map_err(|e| NodeError::io(format!("cannot fsync {}", tmp.display()), e))?;
            let dest = self.path_of(&content.sha256);
            fs::rename(&tmp, &dest)
                .map_err(|e| NodeError::io(format!("cannot move into {}", dest.display()), e))?;
            durable::sync_dir(&self.objects)
                .map_err(|e| NodeError::io(format!("cannot fsync {}", self.objects.display()), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Puts verified content at `dest` (inside a staging tree), read-only:
    /// a reflink where the filesystem has them, else a hard link when the
    /// stored file already has the wanted mode, else a copy
    /// ([`crate::sharing`]).
    pub fn materialize(&self, sha256: &Sha256Digest, mode: Mode, dest: &Path) -> io::Result<()> {
        sharing::place(&self.path_of(sha256), mode, dest, self.sharing).map(|_| ())
    }

    /// Removes every stored object whose bytes no longer hash to its name
    /// (written through a hard link of a release, say), so nothing damaged
    /// is linked into a release again; the next apply or repair fetches it
    /// afresh. Returns the digests removed.
    pub fn remove_damaged(&self) -> io::Result<Vec<Sha256Digest>> {
        let mut removed = Vec::new();
        let mut entries: Vec<_> = fs::read_dir(&self.objects)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Sha256Digest>().ok())
            else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            let (digest, _) = Sha256Digest::of_reader(File::open(entry.path())?)?;
            if digest != name {
                fs::remove_file(entry.path())?;
                removed.push(name);
            }
        }
        if !removed.is_empty() {
            durable::sync_dir(&self.objects)?;
        }
        Ok(removed)
    }

    /// Removes store contents no release links to any more (link count 1),
    /// and leftovers of interrupted downloads. Returns bytes freed.
    ///
    /// Contents in `keep` (those of releases the node may still switch to)
    /// stay even at link count 1: when releases are copies (another
    /// filesystem, in-place mode) nothing links to them, yet dropping them
    /// would make the next update download unchanged files again.
    pub fn collect_garbage(&self, keep: &BTreeSet<Sha256Digest>) -> io::Result<u64> {
        let mut freed = 0;
        for dir in [&self.objects, &self.downloads] {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let leftover = name.starts_with(".tmp-") || dir == &self.downloads;
                let kept = name
                    .parse::<Sha256Digest>()
                    .is_ok_and(|d| keep.contains(&d));
                if meta.is_file() && (leftover || (meta.nlink() == 1 && !kept)) {
                    fs::remove_file(entry.path())?;
                    freed += meta.len();
                }
            }
            durable::sync_dir(dir)?;
        }
        Ok(freed)
    }
}

/// A failed garbage collection of `state_dir/store`, naming it.
pub fn cleaning_failed(state_dir: &Path, e: io::Error) -> NodeError {
    let store = state_dir.join("store");
    NodeError::io(
        format!("cannot clean the content store {}", store.display()),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::Duration;

    use manifests::manifest::Compression;

    use crate::retry::RetryPolicy;

    /// What the scripted transport does wrong on one request.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Send this many bytes, then fail like a dropped connection.
        CutAfter(usize),
        /// Fail before sending anything, with this HTTP status.
        Status(u16),
        /// Invert the byte at this offset of the object.
        Flip(usize),
        /// Refuse to continue at the offset asked for.
        RangeMismatch,
    }

    /// Serves one object from memory, failing as scripted: one fault per
    /// request, in order, then clean answers.
    struct Scripted {
        data: Vec<u8>,
        retry: RetryPolicy,
        faults: RefCell<VecDeque<Fault>>,
        /// The offset of every request.
        offsets: RefCell<Vec<u64>>,
    }

    impl Transport for Scripted {
        fn url(&self, path: &str) -> String {
            format!("test://{path}")
        }

        fn retry_policy(&self) -> &RetryPolicy {
            &self.retry
        }

        fn fetch(
            &self,
            path: &str,
            offset: u64,
            limit: u64,
            out: &mut dyn Write,
        ) -> Result<u64, FetchError> {
            self.offsets.borrow_mut().push(offset);
            let url = self.url(path);
            let mut body = self.data[offset as usize..].to_vec();
            let mut cut = None;
            match self.faults.borrow_mut().pop_front() {
                None => {}
                Some(Fault::CutAfter(n)) => cut = Some(n),
                Some(Fault::Status(status)) => {
                    return Err(FetchError::Http {
                        url,
                        status,
                        retry_after: None,
                    })
                }
                Some(Fault::Flip(at)) => {
                    if let Some(b) = (at as u64)
                        .checked_sub(offset)
                        .and_then(|i| body.get_mut(i as usize))
                    {
                        *b ^= 0xff;
                    }
                }
                Some(Fault::RangeMismatch) => {
                    return Err(FetchError::RangeMismatch {
                        url,
                        message: "scripted".into(),
                    })
                }
            }
            if offset + body.len() as u64 > limit {
                return Err(FetchError::TooLarge { url, limit });
            }
            if let Some(n) = cut {
                body.truncate(n);
            }
            out.write_all(&body).unwrap();
            match cut {
                Some(_) => Err(FetchError::Network {
                    url,
                    message: "connection reset (scripted)".into(),
                }),
                None => Ok(body.len() as u64),
            }
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        store: ContentStore,
        content: FileContent,
        plain: Vec<u8>,
        compressed: Vec<u8>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        // Incompressible enough that the object has a few KiB to cut.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let plain: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let compressed = zstd::encode_all(&plain[..], 3).unwrap();
        let sha256 = Sha256Digest::of(&plain);
        let content = FileContent {
            mode: Mode::new(0o644).unwrap(),
            size: plain.len() as u64,
            sha256,
            object: ObjectRef {
                path: manifests::layout::object(&sha256),
                compression: Compression::Zstd,
                size: compressed.len() as u64,
                sha256: Sha256Digest::of(&compressed),
            },
            deltas: vec![],
        };
        Setup {
            _dir: dir,
            store,
            content,
            plain,
            compressed,
        }
    }

    fn transport(s: &Setup, retries: u32, faults: &[Fault]) -> Scripted {
        Scripted {
            data: s.compressed.clone(),
            retry: RetryPolicy {
                retries,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                quiet: false,
            },
            faults: RefCell::new(faults.iter().copied().collect()),
            offsets: RefCell::new(Vec::new()),
        }
    }

    fn fetch(s: &Setup, t: &Scripted) -> Result<u64> {
        s.store.fetch(t, &s.content, s.content.mode, "test/file")
    }

    fn assert_stored(s: &Setup) {
        assert!(s.store.holds(&s.content.sha256, s.content.size).unwrap());
        assert_eq!(
            fs::read(s.store.path_of(&s.content.sha256)).unwrap(),
            s.plain
        );
        assert!(
            !s.store.part_path(&s.content).exists(),
            "the part is removed once admitted"
        );
    }

    #[test]
    fn a_dropped_connection_is_resumed_where_it_stopped() {
        let s = setup();
        let t = transport(&s, 5, &[Fault::CutAfter(1000), Fault::CutAfter(500)]);
        let fetched = fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [0, 1000, 1500]);
        assert_eq!(fetched, s.compressed.len() as u64, "no byte fetched twice");
        assert_stored(&s);
    }

    #[test]
    fn a_part_left_by_an_earlier_run_is_continued() {
        let s = setup();
        fs::write(s.store.part_path(&s.content), &s.compressed[..3000]).unwrap();
        let t = transport(&s, 0, &[]);
        let fetched = fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [3000]);
        assert_eq!(fetched, s.compressed.len() as u64 - 3000);
        assert_stored(&s);

        // A complete part is admitted without any request.
        let s = setup();
        fs::write(s.store.part_path(&s.content), &s.compressed).unwrap();
        let t = transport(&s, 0, &[]);
        assert_eq!(fetch(&s, &t).unwrap(), 0);
        assert!(t.offsets.borrow().is_empty());
        assert_stored(&s);
    }

    #[test]
    fn a_part_longer_than_signed_is_discarded() {
        let s = setup();
        let mut long = s.compressed.clone();
        long.extend_from_slice(b"extra");
        fs::write(s.store.part_path(&s.content), &long).unwrap();
        let t = transport(&s, 0, &[]);
        fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [0]);
        assert_stored(&s);
    }

    #[test]
    fn a_resume_the_server_refuses_starts_again_from_zero() {
        let s = setup();
        fs::write(s.store.part_path(&s.content), &s.compressed[..3000]).unwrap();
        let t = transport(&s, 1, &[Fault::RangeMismatch]);
        fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [3000, 0]);
        assert_stored(&s);
    }

    #[test]
    fn a_corrupt_download_is_fetched_once_more_from_scratch() {
        let s = setup();
        let t = transport(&s, 5, &[Fault::Flip(100)]);
        fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [0, 0]);
        assert_stored(&s);

        // A corrupt part from an earlier run is caught the same way.
        let s = setup();
        let mut bad = s.compressed[..3000].to_vec();
        bad[10] ^= 1;
        fs::write(s.store.part_path(&s.content), &bad).unwrap();
        let t = transport(&s, 5, &[]);
        fetch(&s, &t).unwrap();
        assert_eq!(*t.offsets.borrow(), [3000, 0]);
        assert_stored(&s);
    }

    #[test]
    fn corrupt_twice_is_a_verification_failure_and_leaves_nothing() {
        let s = setup();
        let t = transport(
            &s,
            5,
            &[Fault::Flip(100), Fault::Flip(200), Fault::Flip(300)],
        );
        let err = fetch(&s, &t).unwrap_err();
        assert!(matches!(err, NodeError::Verification(_)), "{err}");
        assert!(err.to_string().contains("test/file"), "{err}");
        assert_eq!(*t.offsets.borrow(), [0, 0], "retried once, not more");
        assert!(!s.store.part_path(&s.content).exists());
        assert!(!s.store.holds(&s.content.sha256, s.content.size).unwrap());
    }

    #[test]
    fn an_exhausted_budget_keeps_the_part_for_the_next_run() {
        let s = setup();
        let t = transport(&s, 2, &[Fault::CutAfter(100); 4]);
        let err = fetch(&s, &t).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::Exit::Error.code(), "{err}");
        assert!(err.to_string().contains("after 3 attempts"), "{err}");
        assert_eq!(*t.offsets.borrow(), [0, 100, 200]);
        let part = fs::read(s.store.part_path(&s.content)).unwrap();
        assert_eq!(part, s.compressed[..300]);

        // The next run continues from there.
        let t = transport(&s, 0, &[]);
        assert_eq!(fetch(&s, &t).unwrap(), s.compressed.len() as u64 - 300);
        assert_eq!(*t.offsets.borrow(), [300]);
        assert_stored(&s);
    }

    #[test]
    fn server_errors_are_retried_but_permanent_ones_are_not() {
        let s = setup();
        let t = transport(&s, 5, &[Fault::Status(500), Fault::Status(429)]);
        fetch(&s, &t).unwrap();
        assert_eq!(t.offsets.borrow().len(), 3);
        assert_stored(&s);

        let s = setup();
        let t = transport(&s, 5, &[Fault::Status(403)]);
        fetch(&s, &t).unwrap_err();
        assert_eq!(t.offsets.borrow().len(), 1);
    }

    #[test]
    fn an_object_larger_than_signed_is_refused_at_once() {
        let s = setup();
        let mut t = transport(&s, 5, &[]);
        t.data.extend_from_slice(b"trailing garbage");
        let err = fetch(&s, &t).unwrap_err();
        assert!(matches!(err, NodeError::Verification(_)), "{err}");
        assert_eq!(t.offsets.borrow().len(), 1);
        assert!(!s.store.part_path(&s.content).exists());
    }

    #[test]
    fn garbage_collection_removes_parts() {
        let s = setup();
        fs::write(s.store.part_path(&s.content), b"partial").unwrap();
        s.store.collect_garbage(&BTreeSet::new()).unwrap();
        assert!(!s.store.part_path(&s.content).exists());
    }
}
