//! `ferry-publish bundle`: the repository files some releases need, in one
//! tar, for nodes without network access (`ferry apply --bundle FILE.tar`).
//!
//! The bundle is a subset of the repository, byte for byte, under the same
//! paths (docs/FORMAT.md, "Offline bundles"): the signed index and its
//! signatures, the roots of trust, the manifests of the chosen versions with
//! their signatures, their objects, and the deltas from `--from` versions.
//! Nothing is re-signed or re-encoded, so a node verifies a bundle exactly as
//! it verifies the repository, and the bundle needs no key to make.
//!
//! The output is deterministic — same repository and arguments, same bytes —
//! so a bundle can be checksummed, cached and compared: entries are sorted by
//! path, owned by 0:0 with no user or group names, mode 0644 (files) or 0755
//! (directories), and dated with the index's `created`. Only regular files
//! and directories are written (ustar headers, with GNU long names for the
//! delta paths longer than 100 bytes), which is all a node accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use manifests::index::Index;
use manifests::manifest::Manifest;
use manifests::{layout, Sha256Digest, MAX_INDEX_BYTES, MAX_ROOT_BYTES, MAX_SIGNATURE_BYTES};
use semver::Version;

use crate::byte_size::ByteSize;
use crate::cli::BundleArgs;
use crate::repository::{Repository, RepositoryError};

/// Which releases go into a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// These versions; when empty, the latest of `channel` (or of every
    /// channel).
    pub versions: Vec<Version>,
    pub channel: Option<String>,
    /// Also the deltas whose base is content of these versions.
    pub from: Vec<Version>,
}

/// What a bundle holds, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    pub versions: Vec<Version>,
    /// Files (not directories) in the tar, and the sum of their sizes.
    pub files: usize,
    pub bytes: u64,
    pub deltas: usize,
    /// Chosen versions that are not their channel's latest, with the
    /// channel's latest: a node must be told `--version` for them.
    pub not_latest: Vec<(Version, Version)>,
}

pub fn run(args: &BundleArgs) -> anyhow::Result<ExitCode> {
    let selection = Selection {
        versions: args.version.clone(),
        channel: args.channel.clone(),
        from: args.from.clone(),
    };
    let summary = write_bundle(&args.repo, &args.out, &selection)?;
    let versions: Vec<String> = summary.versions.iter().map(|v| v.to_string()).collect();
    outln!(
        "wrote {}: {} ({} files, {}, {} deltas)",
        args.out.display(),
        versions.join(", "),
        summary.files,
        ByteSize(summary.bytes),
        summary.deltas
    );
    for (version, latest) in &summary.not_latest {
        outln!(
            "note: {version} is not its channel's latest ({latest}): apply it with `ferry apply --bundle {} --version {version}`",
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where an entry's bytes come from.
enum Source {
    /// Already read (and checked against its pin): index, manifests.
    Memory(Vec<u8>),
    /// A repository file of this exact size.
    Disk { path: PathBuf, size: u64 },
}

/// Writes the bundle of `selection` from the repository at `repo` to `out`
/// (through a temporary file beside it, renamed when complete).
pub fn write_bundle(
    repo: &Path,
    out: &Path,
    selection: &Selection,
) -> anyhow::Result<BundleSummary> {
    let repo = Repository::open(repo)?;
    // The lock keeps a concurrent `release` from replacing index.json
    // between reading it and its signature. A repository we may not write to
    // (a read-only mirror) cannot be locked, nor published to meanwhile.
    let _lock = match repo.lock() {
        Ok(lock) => Some(lock),
        Err(e @ RepositoryError::Busy { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!("reading the repository without its lock: {e}");
            None
        }
    };

    let index_bytes = repo
        .read(layout::INDEX, MAX_INDEX_BYTES)?
        .with_context(|| {
            format!(
            "{} has no index.json: is it a ferry repository? (`ferry-publish release` creates one)",
            repo.root().display()
        )
        })?;
    let index: Index = serde_json::from_slice(&index_bytes).with_context(|| {
        format!(
            "{} is not a valid index",
            repo.path(layout::INDEX).display()
        )
    })?;
    index.validate().with_context(|| {
        format!(
            "{} is not a valid index",
            repo.path(layout::INDEX).display()
        )
    })?;

    let versions = choose_versions(&index, selection, repo.root())?;
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    entries.insert(layout::INDEX.to_string(), Source::Memory(index_bytes));
    add_signatures(&repo, &mut entries, layout::INDEX)?;
    add_roots(&repo, &mut entries)?;

    // The contents nodes on the --from versions hold: deltas from them.
    let mut bases: BTreeSet<Sha256Digest> = BTreeSet::new();
    for from in &selection.from {
        let (_, manifest) = read_manifest(&repo, &index, from, "--from")?;
        bases.extend(
            manifest
                .files
                .iter()
                .filter_map(|f| f.content())
                .map(|c| c.sha256),
        );
    }

    let mut deltas = 0;
    for version in &versions {
        let (bytes, manifest) = read_manifest(&repo, &index, version, "--version")?;
        let path = layout::manifest(version);
        entries.insert(path.clone(), Source::Memory(bytes));
        add_signatures(&repo, &mut entries, &path)?;
        for content in manifest.files.iter().filter_map(|f| f.content()) {
            let object = layout::object(&content.sha256);
            add_disk(&repo, &mut entries, &object, content.object.size, &path)?;
            for delta in content
                .deltas
                .iter()
                .filter(|d| bases.contains(&d.base_sha256))
            {
                let delta_path = layout::delta(&delta.base_sha256, &content.sha256);
                if !entries.contains_key(&delta_path) {
                    deltas += 1;
                }
                add_disk(&repo, &mut entries, &delta_path, delta.size, &path)?;
            }
        }
    }

    let mtime = u64::try_from(index.created.as_second()).unwrap_or(0);
    let summary = BundleSummary {
        not_latest: versions
            .iter()
            .filter_map(|v| {
                let channel = index.channel_of(v)?;
                let latest = &index.channels[channel].latest;
                (latest != v).then(|| (v.clone(), latest.clone()))
            })
            .collect(),
        versions,
        files: entries.len(),
        bytes: entries
            .values()
            .map(|s| match s {
                Source::Memory(b) => b.len() as u64,
                Source::Disk { size, .. } => *size,
            })
            .sum(),
        deltas,
    };
    write_tar(out, &entries, mtime)?;
    Ok(summary)
}

/// The versions to bundle; every one must be published (and on `channel`).
fn choose_versions(
    index: &Index,
    selection: &Selection,
    repo: &Path,
) -> anyhow::Result<Vec<Version>> {
    let published = || {
        let mut all: Vec<String> = index
            .channels
            .iter()
            .flat_map(|(c, ch)| ch.releases.keys().map(move |v| format!("{v} ({c})")))
            .collect();
        all.sort();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    if let Some(channel) = &selection.channel {
        if !index.channels.contains_key(channel) {
            let known: Vec<&str> = index.channels.keys().map(String::as_str).collect();
            bail!(
                "channel {channel:?} is not in {} (channels: {}); check --channel",
                repo.display(),
                known.join(", ")
            );
        }
    }
    for version in selection.versions.iter().chain(&selection.from) {
        match (index.channel_of(version), &selection.channel) {
            (None, _) => bail!(
                "version {version} is not published in {} (published: {}); check --version and --from, or publish it first",
                repo.display(),
                published()
            ),
            (Some(found), Some(wanted))
                if found != wanted && selection.versions.contains(version) =>
            {
                bail!("version {version} is published on channel {found}, not {wanted}; drop --channel or pick a version of {wanted}")
            }
            _ => {}
        }
    }
    let mut versions: Vec<Version> = if selection.versions.is_empty() {
        index
            .channels
            .iter()
            .filter(|(name, _)| selection.channel.as_ref().is_none_or(|c| c == *name))
            .map(|(_, ch)| ch.latest.clone())
            .collect()
    } else {
        selection.versions.clone()
    };
    versions.sort();
    versions.dedup();
    if versions.is_empty() {
        bail!("{} has no release to bundle", repo.display());
    }
    Ok(versions)
}

/// The manifest of `version`, checked against its pin in the index: a
/// bundle must hold exactly what nodes verify.
fn read_manifest(
    repo: &Repository,
    index: &Index,
    version: &Version,
    flag: &str,
) -> anyhow::Result<(Vec<u8>, Manifest)> {
    let pin = index
        .channel_of(version)
        .and_then(|c| index.release(c, version))
        .with_context(|| format!("{flag} {version} is not published"))?;
    let path = layout::manifest(version);
    let shown = repo.path(&path);
    let bytes = repo.read(&path, pin.size)?.with_context(|| {
        format!(
            "{} is missing though index.json lists {version}: the repository is damaged; run `ferry-publish verify`",
            shown.display()
        )
    })?;
    if bytes.len() as u64 != pin.size || Sha256Digest::of(&bytes) != pin.sha256 {
        bail!(
            "{} does not match its pin in index.json (size or SHA-256): the repository is damaged; run `ferry-publish verify`",
            shown.display()
        );
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid manifest", shown.display()))?;
    manifest
        .validate()
        .with_context(|| format!("{} is not a valid manifest", shown.display()))?;
    Ok((bytes, manifest))
}

/// `path.minisig` (required: nodes refuse an unsigned file) and `path.p7s`
/// (when the repository has one).
fn add_signatures(
    repo: &Repository,
    entries: &mut BTreeMap<String, Source>,
    path: &str,
) -> anyhow::Result<()> {
    let minisig = layout::signature_of(path);
    let bytes = repo.read(&minisig, MAX_SIGNATURE_BYTES)?.with_context(|| {
        format!(
            "{} is missing: nodes refuse an unsigned {path}; restore it or publish again",
            repo.path(&minisig).display()
        )
    })?;
    entries.insert(minisig, Source::Memory(bytes));
    let p7s = layout::cms_signature_of(path);
    if let Some(bytes) = repo.read(&p7s, manifests::MAX_CMS_SIGNATURE_BYTES)? {
        entries.insert(p7s, Source::Memory(bytes));
    }
    Ok(())
}

/// `root.json` and every `roots/<N>.json`, with their signatures, when the
/// repository has a root of trust: nodes walk the chain from the bundle.
fn add_roots(repo: &Repository, entries: &mut BTreeMap<String, Source>) -> anyhow::Result<()> {
    if let Some(bytes) = repo.read(layout::ROOT, MAX_ROOT_BYTES)? {
        entries.insert(layout::ROOT.to_string(), Source::Memory(bytes));
        add_signatures(repo, entries, layout::ROOT)?;
    }
    let dir = repo.path(layout::ROOTS_DIR);
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for item in listing {
        let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = item.file_name();
        // Only `<N>.json` (N ≥ 1, no leading zero) is part of the chain;
        // drafts and stray files are not the repository's.
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(version) = n.parse::<u64>() else {
            continue;
        };
        if version == 0 || version.to_string() != n {
            continue;
        }
        let path = layout::root_version(version);
        let bytes = repo
            .read(&path, MAX_ROOT_BYTES)?
            .with_context(|| format!("{} vanished while bundling", repo.path(&path).display()))?;
        entries.insert(path.clone(), Source::Memory(bytes));
        add_signatures(repo, entries, &path)?;
    }
    Ok(())
}

/// A content file (object or delta) that must exist with its signed size.
fn add_disk(
    repo: &Repository,
    entries: &mut BTreeMap<String, Source>,
    path: &str,
    size: u64,
    listed_by: &str,
) -> anyhow::Result<()> {
    if entries.contains_key(path) {
        return Ok(());
    }
    let full = repo.path(path);
    let meta = std::fs::metadata(&full).with_context(|| {
        format!(
            "{} (listed by {listed_by}) is missing or unreadable: the repository is incomplete; run `ferry-publish verify`",
            full.display()
        )
    })?;
    if !meta.is_file() || meta.len() != size {
        bail!(
            "{} is not the {size}-byte file {listed_by} signs: the repository is damaged; run `ferry-publish verify`",
            full.display()
        );
    }
    entries.insert(path.to_string(), Source::Disk { path: full, size });
    Ok(())
}

/// Writes `entries` (with their parent directories) as a deterministic tar
/// at `out`, atomically.
fn write_tar(out: &Path, entries: &BTreeMap<String, Source>, mtime: u64) -> anyhow::Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".ferry-bundle-")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let write_error = || format!("cannot write {}", temp.path().display());
    let mut builder = tar::Builder::new(BufWriter::new(temp.as_file()));

    // Directories first within their place in path order: `manifests` sorts
    // before `manifests/…`, so a BTreeMap of both gives that order.
    let dirs: BTreeSet<&str> = entries
        .keys()
        .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d))
        .collect();
    let mut all: BTreeMap<&str, Option<&Source>> = dirs.into_iter().map(|d| (d, None)).collect();
    all.extend(entries.iter().map(|(p, s)| (p.as_str(), Some(s))));

    for (path, source) in all {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match source {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), io::empty())
                    .with_context(write_error)?;
            }
            Some(source) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                match source {
                    Source::Memory(bytes) => {
                        header.set_size(bytes.len() as u64);
                        builder
                            .append_data(&mut header, path, bytes.as_slice())
                            .with_context(write_error)?;
                    }
                    Source::Disk { path: file, size } => {
                        header.set_size(*size);
                        let reader = ExactReader::open(file, *size)?;
                        builder
                            .append_data(&mut header, path, reader)
                            .with_context(|| {
                                format!("cannot copy {} into the bundle", file.display())
                            })?;
                    }
                }
            }
        }
    }
    let mut writer = builder.into_inner().with_context(write_error)?;
    writer.flush().with_context(write_error)?;
    drop(writer);
    temp.as_file().sync_all().with_context(write_error)?;
    temp.persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Reads exactly `size` bytes of a file: a file that shrank or grew since it
/// was checked fails instead of corrupting the tar (whose header already
/// holds the size).
struct ExactReader {
    inner: io::Take<File>,
    remaining: u64,
    path: PathBuf,
}

impl ExactReader {
    fn open(path: &Path, size: u64) -> anyhow::Result<ExactReader> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(ExactReader {
            inner: file.take(size),
            remaining: size,
            path: path.to_path_buf(),
        })
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being bundled", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_written_before_their_files_and_the_tar_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("obj");
        std::fs::write(&object, b"content").unwrap();
        let mut entries = BTreeMap::new();
        entries.insert("index.json".to_string(), Source::Memory(b"{}".to_vec()));
        let long = format!("deltas/{}-{}", "a".repeat(64), "b".repeat(64));
        entries.insert(
            long.clone(),
            Source::Disk {
                path: object.clone(),
                size: 7,
            },
        );
        entries.insert(
            "objects/x".to_string(),
            Source::Disk {
                path: object.clone(),
                size: 7,
            },
        );
        let out = dir.path().join("b.tar");
        write_tar(&out, &entries, 1_767_225_600).unwrap();
        let first = std::fs::read(&out).unwrap();
        write_tar(&out, &entries, 1_767_225_600).unwrap();
        assert_eq!(first, std::fs::read(&out).unwrap());

        let mut archive = tar::Archive::new(first.as_slice());
        let listed: Vec<(String, u32, u64, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.entry_type(),
                )
            })
            .collect();
        use tar::EntryType::{Directory, Regular};
        assert_eq!(
            listed,
            [
                ("deltas/".to_string(), 0o755, 1_767_225_600, Directory),
                (long, 0o644, 1_767_225_600, Regular),
                ("index.json".to_string(), 0o644, 1_767_225_600, Regular),
                ("objects/".to_string(), 0o755, 1_767_225_600, Directory),
                ("objects/x".to_string(), 0o644, 1_767_225_600, Regular),
            ]
        );
    }

    #[test]
    fn a_file_that_shrank_fails_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("obj");
        std::fs::write(&object, b"short").unwrap();
        let mut entries = BTreeMap::new();
        entries.insert(
            "objects/x".to_string(),
            Source::Disk {
                path: object,
                size: 100,
            },
        );
        let out = dir.path().join("b.tar");
        let err = write_tar(&out, &entries, 0).unwrap_err();
        assert!(format!("{err:#}").contains("shrank"), "{err:#}");
        assert!(!out.exists(), "a failed bundle must leave no file");
    }
}
