//! Offline bundles: `ferry apply --bundle FILE.tar`.
//!
//! A bundle is a tar holding the repository files a node needs for some
//! releases (`ferry-publish bundle` writes it; layout in docs/FORMAT.md,
//! "Offline bundles"). It is as untrusted as a network repository — it comes
//! on a USB stick or through a ticket system — so it gets two gates:
//!
//! 1. **The tar itself**, before anything is written anywhere: every header
//!    is read (streaming, with caps on the number of entries, on each entry's
//!    size by what it is, and on long names) and every entry checked — its
//!    path must be a [`SafeRelativePath`] of the repository layout, its type a
//!    regular file or directory, no path twice, no link, device, fifo, sparse
//!    file or global/unknown extension header. One bad entry rejects the whole
//!    bundle, naming the entry and the reason ([`validate_entries`]).
//! 2. **The repository inside it**, through [`BundleTransport`], a
//!    [`Transport`] like `file://` and `http://`: the normal apply verifies
//!    every signature, pin, hash, expiry and serial exactly as for a network
//!    repository.
//!
//! ## Served from the tar, not extracted
//!
//! The transport reads each file straight from its byte range in the tar
//! (recorded while validating) instead of extracting the bundle to a
//! temporary directory first. That was chosen because:
//!
//! - nothing from the bundle is written to disk before it is verified: the
//!   only writes are the normal apply's, of verified content, into its own
//!   store. There is no extraction directory to create with the right mode,
//!   to keep away from other users, to clean up on error, or to leave behind
//!   when the node crashes or loses power half-way;
//! - no second copy: a bundle of a large release does not need its own size
//!   again in free space under `state_dir`;
//! - no path from the tar is ever joined to a directory, so even a bug in the
//!   path checks could not make a write escape. The checks still run: they
//!   are what makes a malformed or malicious bundle fail loudly and whole
//!   instead of half-working.
//!
//! The cost is that the bundle must be a seekable regular file (not a pipe),
//! which it is in every offline workflow. If the file changes after
//! validation, the transport serves different bytes at the recorded ranges;
//! those are verified like any other repository bytes, so that can only make
//! the apply fail, never install something unsigned.
//!
//! The threat tests serve bad data over a real HTTP server; a bundle
//! is a local file by definition, so its tests (tests/tests/bundle_path_safety.rs)
//! hand the node crafted tar files instead.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use manifests::untrusted_text::{escape, escape_bytes};
use manifests::{layout, SafeRelativePath, MAX_INDEX_BYTES, MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES};
use semver::Version;
use tar::{Archive, EntryType};

use crate::error::NodeError;
use crate::retry::RetryPolicy;
use crate::transport::{FetchError, Transport};

/// Most entries (files and directories) a bundle may hold. The table of
/// entries is kept in memory; at the longest layout path (~300 bytes) this
/// bounds it to well under 100 MiB. A release of 250,000 files is rare; a
/// bundle of several such releases should be split.
pub const MAX_ENTRIES: usize = 250_000;
/// Largest manifest a bundle may carry (its real bound is the index's pin).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Largest object or delta (their real bound is the manifest's signed size).
pub const MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Largest sum of entry sizes.
pub const MAX_TOTAL_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
/// Longest GNU long name (`L`) or pax header read into memory: the longest
/// path ferry accepts (1024 bytes) plus the NUL GNU tar appends.
const MAX_LONG_NAME_BYTES: u64 = 1025;
/// Largest pax extended header (`x`) read into memory.
const MAX_PAX_HEADER_BYTES: u64 = 8 * 1024;
/// Pax keys that may appear: the path, and times and owners (ignored, as
/// nothing is extracted). `size` and `linkpath` are refused: `size` makes
/// tar readers disagree about where entries start, `linkpath` is a link.
const ALLOWED_PAX_KEYS: [&str; 8] = [
    "path", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname",
];

/// Why a bundle was refused: which entry (when one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    /// `#N "path"` of the offending entry (1-based over tar headers), or
    /// `None` for a problem with the tar as a whole.
    pub entry: Option<String>,
    pub reason: String,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "entry {entry}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for BundleError {}

/// Where one file's bytes are in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

/// The checked table of contents of a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleContents {
    files: BTreeMap<SafeRelativePath, Span>,
    directories: BTreeSet<SafeRelativePath>,
}

impl BundleContents {
    pub fn file(&self, path: &str) -> Option<Span> {
        let path = SafeRelativePath::new(path).ok()?;
        self.files.get(&path).copied()
    }

    /// Every regular file, in path order.
    pub fn files(&self) -> impl Iterator<Item = (&SafeRelativePath, Span)> {
        self.files.iter().map(|(p, s)| (p, *s))
    }

    pub fn directories(&self) -> impl Iterator<Item = &SafeRelativePath> {
        self.directories.iter()
    }

    /// The end of the last byte any entry claims.
    fn data_end(&self) -> u64 {
        self.files
            .values()
            .map(|s| s.offset.saturating_add(s.size))
            .max()
            .unwrap_or(0)
    }
}

/// Reads a whole tar from `reader` and checks every entry (see the module
/// docs); never writes. Pure, for tests and the fuzzer; [`BundleTransport`]
/// does the same with seeks over file contents.
pub fn validate_entries<R: Read>(reader: R) -> Result<BundleContents, BundleError> {
    let mut archive = Archive::new(reader);
    let entries = archive.entries().map_err(whole)?;
    // Without Seek the tar crate reads over every entry's data, so a tar cut
    // short inside an entry already fails ("unexpected EOF").
    scan(entries, MAX_ENTRIES)
}

/// The problem is the tar as a whole (its structure), not a named entry.
/// The tar reader's errors quote header bytes: escaped.
fn whole(e: io::Error) -> BundleError {
    BundleError {
        entry: None,
        reason: format!("not a readable tar archive: {}", escape(&e.to_string())),
    }
}

/// An extension header read, waiting for the member it describes. Every
/// extension must be followed by a member, so there are at most twice as
/// many headers as the capped number of members.
struct PendingName {
    /// The member's path, unless a pax header set only times or owners.
    name: Option<Vec<u8>>,
    /// "GNU long name", "pax path" or "pax header", for messages.
    source: &'static str,
}

impl PendingName {
    fn shown(&self, header_name: &str) -> String {
        match &self.name {
            Some(name) => escape_bytes(name),
            None => header_name.to_string(),
        }
    }
}

/// Checks every entry; `max_entries` is [`MAX_ENTRIES`] but for tests.
fn scan<R: Read>(
    entries: tar::Entries<'_, R>,
    max_entries: usize,
) -> Result<BundleContents, BundleError> {
    let mut contents = BundleContents::default();
    let mut pending: Option<PendingName> = None;
    let mut total: u64 = 0;
    let mut members = 0usize;
    // Raw mode: the tar crate applies no GNU long name or pax header by
    // itself (it would read them into memory unbounded and honour a pax
    // `size`), so each is checked and applied here with a cap.
    let entries = entries.raw(true);
    for (number, entry) in (1usize..).zip(entries) {
        let mut entry = entry.map_err(|e| BundleError {
            entry: Some(format!("#{number}")),
            // The tar reader quotes the header's bytes (its name among them).
            reason: format!("unreadable tar header: {}", escape(&e.to_string())),
        })?;
        let header = entry.header().clone();
        let entry_type = header.entry_type();
        let header_name = escape_bytes(&header.path_bytes());
        let fail = |name: &str, reason: String| BundleError {
            entry: Some(format!("#{number} {}", quote(name))),
            reason,
        };
        if header.as_ustar().is_none() && header.as_gnu().is_none() {
            return Err(fail(
                &header_name,
                "not a ustar or GNU tar header (pre-POSIX tar formats are not accepted)".into(),
            ));
        }
        let size = entry.size();
        match entry_type {
            EntryType::GNULongName | EntryType::XHeader => {
                if let Some(p) = &pending {
                    return Err(fail(
                        &p.shown(&header_name),
                        format!(
                            "a {} is followed by another extension header: one member may have one name",
                            p.source
                        ),
                    ));
                }
                let (cap, source) = if entry_type == EntryType::GNULongName {
                    (MAX_LONG_NAME_BYTES, "GNU long name")
                } else {
                    (MAX_PAX_HEADER_BYTES, "pax header")
                };
                if size > cap {
                    return Err(fail(
                        &header_name,
                        format!("{source} of {size} bytes, more than the {cap} allowed"),
                    ));
                }
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry).take(cap).read_to_end(&mut data).map_err(|e| {
                    fail(
                        &header_name,
                        format!("unreadable {source}: {}", escape(&e.to_string())),
                    )
                })?;
                if data.len() as u64 != size {
                    return Err(fail(&header_name, format!("{source} cut short")));
                }
                pending = Some(if entry_type == EntryType::GNULongName {
                    // GNU tar terminates the name with one NUL; any other NUL
                    // is left for the path check to refuse.
                    if data.last() == Some(&0) {
                        data.pop();
                    }
                    PendingName {
                        name: Some(data),
                        source: "GNU long name",
                    }
                } else {
                    match pax_path(&data) {
                        Ok(Some(path)) => PendingName {
                            name: Some(path),
                            source: "pax path",
                        },
                        // Only times and owners: the member keeps its name.
                        Ok(None) => PendingName {
                            name: None,
                            source: "pax header",
                        },
                        Err(reason) => return Err(fail(&header_name, reason)),
                    }
                });
                continue;
            }
            _ => {}
        }

        // A member: a file, a directory, or something refused.
        let (raw_name, source) = match pending.take() {
            Some(PendingName {
                name: Some(name),
                source,
            }) => (name, Some(source)),
            _ => (header.path_bytes().into_owned(), None),
        };
        let shown = escape_bytes(&raw_name);
        let fail = |reason: String| {
            let reason = match source {
                Some(s) => format!("{reason} (name from a {s})"),
                None => reason,
            };
            fail(&shown, reason)
        };
        let is_dir = match entry_type {
            EntryType::Regular => false,
            EntryType::Directory => true,
            other => {
                return Err(fail(format!(
                    "{} entries are not allowed",
                    type_name(other)
                )))
            }
        };
        members += 1;
        if members > max_entries {
            return Err(fail(format!(
                "more than {max_entries} entries: a bundle that large is refused; make smaller bundles"
            )));
        }
        let Ok(name) = std::str::from_utf8(&raw_name) else {
            return Err(fail("the path is not UTF-8".into()));
        };
        // Tar writes directory names with a trailing `/`.
        let name = if is_dir {
            name.strip_suffix('/').unwrap_or(name)
        } else {
            name
        };
        let path = SafeRelativePath::new(name).map_err(|e| fail(e.to_string()))?;
        if is_dir {
            if size != 0 {
                return Err(fail(format!("a directory entry with {size} bytes of data")));
            }
            if !is_layout_directory(name) {
                return Err(fail(format!(
                    "not a directory of the repository layout ({}, {}, {} or {})",
                    layout::ROOTS_DIR,
                    layout::MANIFESTS_DIR,
                    layout::OBJECTS_DIR,
                    layout::DELTAS_DIR
                )));
            }
            if contents.files.contains_key(&path) || !contents.directories.insert(path) {
                return Err(fail("the path appears twice in the bundle".into()));
            }
            continue;
        }
        let cap = file_cap(name).ok_or_else(|| {
            fail("not a file of the repository layout (index.json, root.json, roots/<N>.json, manifests/<version>.json, their .minisig and .p7s, objects/<sha256>, deltas/<sha256>-<sha256>)".into())
        })?;
        if size > cap {
            return Err(fail(format!(
                "{size} bytes, more than the {cap} a file of its kind may have"
            )));
        }
        total = total.saturating_add(size);
        if total > MAX_TOTAL_BYTES {
            return Err(fail(format!(
                "the entries add up to more than {MAX_TOTAL_BYTES} bytes"
            )));
        }
        if contents.directories.contains(&path) {
            return Err(fail("the path appears twice in the bundle".into()));
        }
        let span = Span {
            offset: entry.raw_file_position(),
            size,
        };
        match contents.files.entry(path) {
            MapEntry::Occupied(_) => {
                return Err(fail("the path appears twice in the bundle".into()))
            }
            MapEntry::Vacant(v) => {
                v.insert(span);
            }
        }
    }
    if let Some(p) = pending {
        return Err(BundleError {
            entry: Some(quote(&p.shown("(extension header)"))),
            reason: format!("a {} describes no entry: the tar ends after it", p.source),
        });
    }
    Ok(contents)
}

/// The `path` of a pax extended header, refusing keys that could make tar
/// readers disagree about the member (see [`ALLOWED_PAX_KEYS`]).
fn pax_path(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut path = None;
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| format!("pax header: {}", escape(&e.to_string())))?;
        let key = record
            .key()
            .map_err(|_| "pax header: a key is not UTF-8".to_string())?;
        if !ALLOWED_PAX_KEYS.contains(&key) {
            return Err(format!(
                "pax header key {key:?} is not allowed in a bundle (only {})",
                ALLOWED_PAX_KEYS.join(", ")
            ));
        }
        if key == "path" {
            if path.is_some() {
                return Err("pax header sets the path twice".into());
            }
            path = Some(record.value_bytes().to_vec());
        }
    }
    Ok(path)
}

fn type_name(t: EntryType) -> String {
    match t {
        EntryType::Link => "hard link".into(),
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        EntryType::Continuous => "contiguous file".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        EntryType::XGlobalHeader => "pax global header".into(),
        EntryType::GNULongLink => "GNU long link name".into(),
        other => format!("type {:?}", other.as_byte() as char),
    }
}

/// `"name"`, shortened and with control characters escaped, for messages.
fn quote(name: &str) -> String {
    let short: String = name.chars().take(200).collect();
    format!("\"{}\"", escape(&short))
}

fn is_layout_directory(path: &str) -> bool {
    [
        layout::ROOTS_DIR,
        layout::MANIFESTS_DIR,
        layout::OBJECTS_DIR,
        layout::DELTAS_DIR,
    ]
    .contains(&path)
}

/// The size cap of a file at `path`, or `None` if the repository layout has
/// no such file. Names are checked as strictly as the node derives them, so
/// a bundle cannot carry anything the apply would not ask for.
fn file_cap(path: &str) -> Option<u64> {
    let signed = |name: &str, cap: u64| -> Option<u64> {
        if name.strip_suffix(".minisig").is_some() {
            Some(MAX_SIGNATURE_BYTES)
        } else if name.strip_suffix(".p7s").is_some() {
            Some(manifests::MAX_CMS_SIGNATURE_BYTES)
        } else {
            Some(cap)
        }
    };
    // The signed file a name stands for: itself, or what its one
    // `.minisig` / `.p7s` suffix signs.
    let base = |name: &str| -> String {
        name.strip_suffix(".minisig")
            .or_else(|| name.strip_suffix(".p7s"))
            .unwrap_or(name)
            .to_string()
    };
    let Some((dir, name)) = path.split_once('/') else {
        return match base(path).as_str() {
            layout::INDEX => signed(path, MAX_INDEX_BYTES),
            layout::ROOT => signed(path, MAX_ROOT_BYTES),
            _ => None,
        };
    };
    if name.contains('/') {
        return None;
    }
    match dir {
        layout::ROOTS_DIR => {
            let n = base(name);
            let n = n.strip_suffix(".json")?;
            let version: u64 = n.parse().ok()?;
            (version >= 1 && version.to_string() == n).then_some(())?;
            signed(name, MAX_ROOT_BYTES)
        }
        layout::MANIFESTS_DIR => {
            let n = base(name);
            let v = n.strip_suffix(".json")?;
            let version = Version::parse(v).ok()?;
            (version.to_string() == v).then_some(())?;
            signed(name, MAX_MANIFEST_BYTES)
        }
        layout::OBJECTS_DIR => is_digest(name).then_some(MAX_OBJECT_BYTES),
        layout::DELTAS_DIR => {
            let (base, target) = name.split_once('-')?;
            (is_digest(base) && is_digest(target)).then_some(MAX_OBJECT_BYTES)
        }
        _ => None,
    }
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A repository served from a validated bundle: a [`Transport`] over byte
/// ranges of the tar (see the module docs).
pub struct BundleTransport {
    path: PathBuf,
    file: File,
    contents: BundleContents,
    retry: RetryPolicy,
}

impl BundleTransport {
    /// Opens and validates the bundle at `path`. Writes nothing; a refusal
    /// is logged with the offending entry and returned as a verification
    /// failure.
    pub fn open(path: &Path) -> Result<BundleTransport, NodeError> {
        // Not `File::open`: opening a fifo would block until a writer came.
        let file = crate::regular_file::open_regular(path).map_err(|e| match e {
            crate::regular_file::OpenError::NotRegular(_) => NodeError::BundleNotAFile {
                path: path.to_path_buf(),
            },
            crate::regular_file::OpenError::Io(e) => {
                NodeError::io(format!("cannot open the bundle {}", path.display()), e)
            }
        })?;
        let meta = file
            .metadata()
            .map_err(|e| NodeError::io(format!("cannot stat the bundle {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(NodeError::BundleNotAFile {
                path: path.to_path_buf(),
            });
        }
        let checked = (|| {
            let mut archive = Archive::new(&file);
            let contents = scan(archive.entries_with_seek().map_err(whole)?, MAX_ENTRIES)?;
            // Seeking past the end of a file is not an error, so a tar cut
            // short inside an entry's data is caught here.
            if contents.data_end() > meta.len() {
                return Err(BundleError {
                    entry: None,
                    reason: format!(
                        "the tar is cut short: its entries need {} bytes, the file has {}",
                        contents.data_end(),
                        meta.len()
                    ),
                });
            }
            Ok(contents)
        })();
        let contents = checked.map_err(|e| {
            tracing::error!(
                bundle = %path.display(),
                entry = e.entry.as_deref().unwrap_or("-"),
                reason = %e.reason,
                "bundle rejected"
            );
            NodeError::verification(format!(
                "bundle {} rejected, nothing was written: {e}; use a bundle made by `ferry-publish bundle`",
                path.display()
            ))
        })?;
        tracing::info!(
            bundle = %path.display(),
            files = contents.files.len(),
            "bundle validated"
        );
        Ok(BundleTransport {
            path: path.to_path_buf(),
            file,
            contents,
            // A local file: retrying would read the same bytes again.
            retry: RetryPolicy::never(),
        })
    }

    pub fn contents(&self) -> &BundleContents {
        &self.contents
    }
}

impl Transport for BundleTransport {
    fn url(&self, path: &str) -> String {
        let missing_manifest = path.starts_with("manifests/") && self.contents.file(path).is_none();
        if !missing_manifest {
            return format!("{} (bundle entry {path})", self.path.display());
        }
        // The common mistake: a bundle of an older release applied without
        // --version, so the node asks for the channel's latest.
        let held: Vec<&str> = self
            .contents
            .files
            .keys()
            .filter_map(|p| p.as_str().strip_prefix("manifests/")?.strip_suffix(".json"))
            .collect();
        format!(
            "{} (bundle entry {path}: not in this bundle, which holds the manifests of {}; pick one with --version)",
            self.path.display(),
            if held.is_empty() { "no release".to_string() } else { held.join(", ") }
        )
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
        let url = || self.url(path);
        let span = self
            .contents
            .file(path)
            .ok_or_else(|| FetchError::NotFound { url: url() })?;
        // Refused before a byte is read, as a network file would be once
        // it passed the cap.
        if span.size > limit {
            return Err(FetchError::TooLarge { url: url(), limit });
        }
        if offset > span.size {
            return Err(FetchError::RangeMismatch {
                url: url(),
                message: format!(
                    "the entry has {} bytes, fewer than the {offset} already fetched",
                    span.size
                ),
            });
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = offset;
        while at < span.size {
            let want = buf.len().min((span.size - at) as usize);
            let n = match self.file.read_at(&mut buf[..want], span.offset + at) {
                Ok(0) => {
                    return Err(FetchError::Network {
                        url: url(),
                        message: "the bundle file ended early (it changed after it was checked)"
                            .into(),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FetchError::Network {
                        url: url(),
                        message: e.to_string(),
                    })
                }
            };
            out.write_all(&buf[..n])
                .map_err(|source| FetchError::Local {
                    context: format!("writing {}", url()),
                    source,
                })?;
            at += n as u64;
        }
        Ok(span.size - offset)
    }
}

#[cfg(test)]
mod tests;
