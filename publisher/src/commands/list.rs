//! `ferry-publish list`: what a repository holds, per channel.
//!
//! This is an inventory for the person operating the repository, read from
//! their own disk, so it does not verify signatures (it takes no key; use
//! `verify` for that). It still parses with the format's own types and
//! validation, so what it shows is what nodes would see if the signatures
//! hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use jiff::Timestamp;
use manifests::index::Index;
use manifests::manifest::Manifest;
use manifests::{layout, MAX_INDEX_BYTES};
use semver::Version;
use serde::Serialize;

use crate::byte_size::ByteSize;
use crate::cli::ListArgs;
use crate::repository::Repository;

/// The listing, also the `--json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub serial: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub channels: BTreeMap<String, ChannelListing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelListing {
    pub latest: Version,
    /// Sorted by semantic version, oldest first.
    pub releases: Vec<ReleaseListing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseListing {
    pub version: Version,
    pub latest: bool,
    pub created: Timestamp,
    pub manifest: String,
    /// Regular files and executables; `None` if the manifest is unreadable.
    pub files: Option<usize>,
    /// Uncompressed bytes of those files.
    pub content_bytes: Option<u64>,
    /// The rollout schedule (`--waves`), e.g. `50%@1h,100%@2h`; omitted
    /// when the release has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waves: Option<String>,
    /// Why `files` and `content_bytes` are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub fn run(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let listing = list_repository(&args.repo)?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&listing).context("cannot serialise the listing")?;
        outln!("{text}");
    } else {
        out!("{}", render(&listing));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the index and manifests of the repository at `root`.
pub fn list_repository(root: &Path) -> anyhow::Result<Listing> {
    let repo = Repository::open(root)?;
    let Some(bytes) = repo.read(layout::INDEX, MAX_INDEX_BYTES)? else {
        bail!(
            "{} does not exist: is {} a ferry repository? (`ferry-publish release` creates it)",
            repo.path(layout::INDEX).display(),
            root.display()
        );
    };
    let index: Index = serde_json::from_slice(&bytes).with_context(|| {
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

    let mut channels = BTreeMap::new();
    for (name, channel) in &index.channels {
        let mut releases: Vec<ReleaseListing> = channel
            .releases
            .iter()
            .map(|(version, pin)| {
                let version: Version = version
                    .parse()
                    .expect("a validated index holds valid versions");
                let summary = manifest_summary(&repo, pin.size, &version);
                ReleaseListing {
                    latest: version == channel.latest,
                    created: pin.created,
                    manifest: pin.path.clone(),
                    files: summary.as_ref().ok().map(|s| s.0),
                    content_bytes: summary.as_ref().ok().map(|s| s.1),
                    waves: summary.as_ref().ok().and_then(|s| s.2.clone()),
                    problem: summary.err(),
                    version,
                }
            })
            .collect();
        releases.sort_by(|a, b| a.version.cmp(&b.version));
        channels.insert(
            name.clone(),
            ChannelListing {
                latest: channel.latest.clone(),
                releases,
            },
        );
    }
    Ok(Listing {
        serial: index.serial,
        created: index.created,
        expires: index.expires,
        channels,
    })
}

/// File count, content bytes and rollout schedule of a release's manifest.
fn manifest_summary(
    repo: &Repository,
    pinned_size: u64,
    version: &Version,
) -> Result<(usize, u64, Option<String>), String> {
    let relative = layout::manifest(version);
    let bytes = repo
        .read(&relative, pinned_size)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{relative} is missing"))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("{relative}: {e}"))?;
    manifest
        .validate()
        .map_err(|e| format!("{relative}: {e}"))?;
    let files = manifest
        .files
        .iter()
        .filter(|f| f.content().is_some())
        .count();
    let waves = (!manifest.waves.is_empty()).then(|| manifests::wave::describe(&manifest.waves));
    Ok((files, manifest.content_bytes(), waves))
}

/// The human-readable listing.
pub fn render(listing: &Listing) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "index serial {}, created {}, expires {}\n",
        listing.serial, listing.created, listing.expires
    ));
    for (name, channel) in &listing.channels {
        out.push_str(&format!("\nchannel {name} (latest {})\n", channel.latest));
        let width = channel
            .releases
            .iter()
            .map(|r| r.version.to_string().len())
            .max()
            .unwrap_or(0);
        for release in &channel.releases {
            let marker = if release.latest {
                "* latest"
            } else {
                "        "
            };
            let mut detail = match (release.files, release.content_bytes, &release.problem) {
                (Some(files), Some(bytes), _) => {
                    format!("{files} files, {} ({bytes} bytes)", ByteSize(bytes))
                }
                (_, _, Some(problem)) => format!("unreadable: {problem}"),
                _ => "unreadable".to_string(),
            };
            if let Some(waves) = &release.waves {
                detail.push_str(&format!(", waves {waves}"));
            }
            out.push_str(&format!(
                "  {:<width$}  {marker}  {}  {detail}\n",
                release.version.to_string(),
                release.created
            ));
        }
    }
    out
}
