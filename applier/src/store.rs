//! The node's content store: verified, uncompressed file contents named by
//! their SHA-256, under `state_dir/store/`.
//!
//! Release trees are hard links into the store, so a file unchanged across
//! releases costs its bytes once. Nothing enters the store unverified: a
//! download is checked against the signed compressed digest before the
//! decompressor sees it, then the decompressed bytes against the signed
//! content digest, capped at the signed size so a decompression bomb stops at
//! the first byte too many. Contents are re-hashed before reuse because a
//! hard-linked release file can be written through by the application.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use manifests::digest::HashingWriter;
use manifests::manifest::FileContent;
use manifests::mode::Mode;
use manifests::Sha256Digest;

use crate::durable;
use crate::error::{NodeError, Result};
use crate::transport::Transport;

pub struct ContentStore {
    objects: PathBuf,
    downloads: PathBuf,
}

impl ContentStore {
    pub fn open(state_dir: &Path) -> Result<ContentStore> {
        let store = ContentStore {
            objects: state_dir.join("store"),
            downloads: state_dir.join("downloads"),
        };
        for dir in [&store.objects, &store.downloads] {
            durable::create_dir_all(dir, 0o755)
                .map_err(|e| NodeError::io(format!("cannot create {}", dir.display()), e))?;
        }
        Ok(store)
    }

    /// Opens the store for reading only: never creates anything (dry runs).
    pub fn at(state_dir: &Path) -> ContentStore {
        ContentStore {
            objects: state_dir.join("store"),
            downloads: state_dir.join("downloads"),
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
        let part = self.downloads.join(format!("{}.part", content.sha256));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| NodeError::io(format!("cannot create {}", part.display()), e))?;
        let fetched = transport.fetch(&object.path, 0, object.size, &mut file);
        let fetched = match fetched {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&part);
                return Err(NodeError::from(e));
            }
        };
        drop(file);
        let result = self.admit(&part, content, mode, what);
        let _ = fs::remove_file(&part);
        result.map(|()| fetched)
    }

    /// Verifies a downloaded object and moves its content into the store.
    fn admit(&self, part: &Path, content: &FileContent, mode: Mode, what: &str) -> Result<()> {
        let object = &content.object;
        let read_err = |e| NodeError::io(format!("cannot read {}", part.display()), e);
        let (digest, size) =
            Sha256Digest::of_reader(File::open(part).map_err(read_err)?).map_err(read_err)?;
        if size != object.size || digest != object.sha256 {
            return Err(NodeError::verification(format!(
                "object {} for {what} is corrupt: got {size} bytes with SHA-256 {digest}, the signed manifest says {} bytes with SHA-256 {}",
                object.path, object.size, object.sha256
            )));
        }
        let tmp = self
            .objects
            .join(format!(".tmp-{}-{}", content.sha256, std::process::id()));
        let result = (|| {
            let decoder = zstd::stream::read::Decoder::new(File::open(part).map_err(read_err)?)
                .map_err(|e| NodeError::io("cannot start zstd decoder", e))?;
            let out = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(mode.bits())
                .open(&tmp)
                .map_err(|e| NodeError::io(format!("cannot create {}", tmp.display()), e))?;
            let mut writer = HashingWriter::new(out);
            // One byte past the signed size is enough to know it is too long.
            io::copy(&mut decoder.take(content.size + 1), &mut writer).map_err(|e| {
                NodeError::verification(format!(
                    "object {} for {what} does not decompress: {e}",
                    object.path
                ))
            })?;
            let (out, digest, len) = writer.into_parts();
            if len != content.size || digest != content.sha256 {
                return Err(NodeError::verification(format!(
                    "content of {what} from {} is wrong: {len} bytes with SHA-256 {digest}, expected {} bytes with SHA-256 {}",
                    object.path, content.size, content.sha256
                )));
            }
            // The umask may have trimmed the mode at creation.
            out.set_permissions(fs::Permissions::from_mode(mode.bits()))
                .map_err(|e| NodeError::io(format!("cannot set mode on {}", tmp.display()), e))?;
            out.sync_all()
                .map_err(|e| NodeError::io(format!("cannot fsync {}", tmp.display()), e))?;
            let dest = self.path_of(&content.sha256);
            fs::rename(&tmp, &dest)
                .map_err(|e| NodeError::io(format!("cannot move into {}", dest.display()), e))?;
            durable::sync_dir(&self.objects).map_err(|e| NodeError::io("cannot fsync the store", e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Puts verified content at `dest` (inside a staging tree): a hard link
    /// when the stored file already has the wanted mode, else a copy.
    pub fn materialize(&self, sha256: &Sha256Digest, mode: Mode, dest: &Path) -> io::Result<()> {
        let src = self.path_of(sha256);
        let meta = fs::metadata(&src)?;
        if Mode::from_st_mode(meta.mode()) == mode && fs::hard_link(&src, dest).is_ok() {
            return Ok(());
        }
        // Different mode, another filesystem, or a link limit: copy instead.
        let mut from = File::open(&src)?;
        let mut to = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(mode.bits())
            .open(dest)?;
        io::copy(&mut from, &mut to)?;
        to.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
        to.sync_all()?;
        to.flush()
    }

    /// Removes store contents no release links to any more (link count 1),
    /// and leftovers of interrupted downloads. Returns bytes freed.
    pub fn collect_garbage(&self) -> io::Result<u64> {
        let mut freed = 0;
        for dir in [&self.objects, &self.downloads] {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let leftover = entry.file_name().to_string_lossy().starts_with(".tmp-")
                    || dir == &self.downloads;
                if meta.is_file() && (meta.nlink() == 1 || leftover) {
                    fs::remove_file(entry.path())?;
                    freed += meta.len();
                }
            }
            durable::sync_dir(dir)?;
        }
        Ok(freed)
    }
}
