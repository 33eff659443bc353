//! `index.json`: the signed entry point of a repository.
//!
//! A node reads the index first and trusts nothing else until the index has
//! vouched for it: every manifest is pinned here by SHA-256 and size, so a
//! mirror cannot mix a manifest from one publication with an index from
//! another. The serial grows with every publication and the expiry bounds how
//! long a captured index can be replayed to freeze a node on old software.

use std::collections::BTreeMap;

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::{layout, FormatError, Sha256Digest, FORMAT_VERSION};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always [`FORMAT_VERSION`] for this crate.
    pub format: u32,
    /// Grows by at least one with every publication; a node refuses an index
    /// whose serial is lower than one it already trusted.
    pub serial: u64,
    pub created: Timestamp,
    /// After this instant the index is stale and nodes refuse it until the
    /// publisher re-signs it (`ferry-publish release` or `refresh`).
    pub expires: Timestamp,
    pub channels: BTreeMap<String, ChannelIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelIndex {
    /// The highest version published on this channel.
    pub latest: Version,
    /// Every release on the channel, keyed by its version string.
    pub releases: BTreeMap<String, ManifestRef>,
}

/// A pin on one release manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    /// Always `manifests/<version>.json`; stored for people and static hosts,
    /// checked by readers against the path derived from the version.
    pub path: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub created: Timestamp,
}

impl Index {
    pub fn new(serial: u64, created: Timestamp, expires: Timestamp) -> Self {
        Index {
            format: FORMAT_VERSION,
            serial,
            created,
            expires,
            channels: BTreeMap::new(),
        }
    }

    /// Structural checks a reader runs right after verifying the signature.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.format != FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormat {
                what: "index.json",
                found: self.format,
                expected: FORMAT_VERSION,
            });
        }
        let inconsistent = |reason: String| FormatError::Inconsistent {
            what: "index.json".into(),
            reason,
        };
        if self.expires <= self.created {
            return Err(inconsistent("expires is not after created".into()));
        }
        for (name, channel) in &self.channels {
            validate_channel_name(name)?;
            if !channel.releases.contains_key(&channel.latest.to_string()) {
                return Err(inconsistent(format!(
                    "channel {name:?} names latest {} but does not list it",
                    channel.latest
                )));
            }
            for (version, pin) in &channel.releases {
                let parsed: Version = version.parse().map_err(|e| {
                    inconsistent(format!("channel {name:?} lists version {version:?}: {e}"))
                })?;
                if parsed.to_string() != *version {
                    return Err(inconsistent(format!(
                        "version {version:?} is not in canonical form"
                    )));
                }
                if parsed > channel.latest {
                    return Err(inconsistent(format!(
                        "channel {name:?} lists {version}, above its latest {}",
                        channel.latest
                    )));
                }
                if pin.path != layout::manifest(&parsed) {
                    return Err(inconsistent(format!(
                        "the manifest of {version} is listed at {:?}, expected {:?}",
                        pin.path,
                        layout::manifest(&parsed)
                    )));
                }
            }
        }
        Ok(())
    }

    /// The pin on `version` in `channel`, if published there.
    pub fn release(&self, channel: &str, version: &Version) -> Option<&ManifestRef> {
        self.channels
            .get(channel)?
            .releases
            .get(&version.to_string())
    }

    /// The channel that holds `version`, if any. A version lives in one
    /// channel because its manifest path is derived from the version alone.
    pub fn channel_of(&self, version: &Version) -> Option<&str> {
        let key = version.to_string();
        self.channels
            .iter()
            .find(|(_, c)| c.releases.contains_key(&key))
            .map(|(n, _)| n.as_str())
    }
}

/// Channel names end up in log lines, file names and URLs: keep them plain.
pub fn validate_channel_name(name: &str) -> Result<(), FormatError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(FormatError::BadChannel(name.to_string()))
    }
}
