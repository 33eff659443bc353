//! Setuid, setgid and sticky bits in a release.
//!
//! The format allows them (`0o7777`), and a signature says who published a
//! release, not that it is harmless: a stolen key or a careless build that
//! ships `4755` would give every local user a root-owned setuid binary in
//! `releases/<version>/`, kept there (and in older releases) long after
//! anyone looked at it. A node therefore refuses any entry with one of
//! those bits unless its operator said they are intended
//! (`[install] allow_special_modes = true`).

use manifests::manifest::{EntryKind, Manifest};
use manifests::mode::Mode;
use semver::Version;
use thiserror::Error;

/// The bits refused by default.
pub const SPECIAL_BITS: u32 = 0o7000;

/// Entries named in the message at most; the rest are counted.
const NAMED_AT_MOST: usize = 10;

/// A release asks for special mode bits and the node does not allow them.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("release {version} asks for special mode bits, which ferry refuses by default: {}; nothing was changed. If they are intended, set `[install] allow_special_modes = true` in the node's configuration", describe(entries))]
pub struct SpecialModes {
    pub version: Version,
    /// Every entry with a special bit: its path and mode.
    pub entries: Vec<(String, Mode)>,
}

/// Refuses `manifest` if any entry has a setuid, setgid or sticky bit.
pub fn refuse(manifest: &Manifest) -> Result<(), SpecialModes> {
    let entries: Vec<(String, Mode)> = manifest
        .files
        .iter()
        .filter_map(|entry| {
            let mode = match &entry.kind {
                EntryKind::Directory { mode } => *mode,
                EntryKind::File(c) | EntryKind::Executable(c) => c.mode,
                EntryKind::Symlink { .. } => return None,
            };
            (mode.bits() & SPECIAL_BITS != 0).then(|| (entry.path.to_string(), mode))
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    Err(SpecialModes {
        version: manifest.version.clone(),
        entries,
    })
}

/// `bin/tool 4755 (setuid), tmp 1777 (sticky)`, the first few only.
fn describe(entries: &[(String, Mode)]) -> String {
    let mut text: Vec<String> = entries
        .iter()
        .take(NAMED_AT_MOST)
        .map(|(path, mode)| {
            // A signed path may hold control characters: never raw.
            let path = manifests::untrusted_text::escape(path);
            format!("{path} {mode} ({})", bit_names(*mode))
        })
        .collect();
    if entries.len() > NAMED_AT_MOST {
        text.push(format!("and {} more", entries.len() - NAMED_AT_MOST));
    }
    text.join(", ")
}

fn bit_names(mode: Mode) -> String {
    [(0o4000, "setuid"), (0o2000, "setgid"), (0o1000, "sticky")]
        .iter()
        .filter(|(bit, _)| mode.bits() & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: &str) -> Manifest {
        serde_json::from_str(&format!(
            r#"{{"format": 1, "version": "2.0.0", "channel": "stable",
                "created": "2030-06-03T00:00:00Z", "files": [{entries}]}}"#
        ))
        .unwrap()
    }

    fn file(path: &str, mode: &str) -> String {
        let sha = "0".repeat(64);
        format!(
            r#"{{"path": "{path}", "kind": "executable", "mode": "{mode}", "size": 1,
                "sha256": "{sha}", "object": {{"path": "objects/{sha}",
                "compression": "zstd", "size": 1, "sha256": "{sha}"}}}}"#
        )
    }

    #[test]
    fn ordinary_modes_and_symlinks_pass() {
        let m = manifest(&format!(
            r#"{{"path": "bin", "kind": "directory", "mode": "0755"}}, {},
               {{"path": "bin/link", "kind": "symlink", "target": "app"}}"#,
            file("bin/app", "0755")
        ));
        assert_eq!(refuse(&m), Ok(()));
    }

    #[test]
    fn every_special_bit_is_refused_and_named() {
        let m = manifest(&format!(
            r#"{{"path": "bin", "kind": "directory", "mode": "0755"}}, {}, {},
               {{"path": "tmp", "kind": "directory", "mode": "1777"}}"#,
            file("bin/su", "4755"),
            file("bin/both", "6711"),
        ));
        let refused = refuse(&m).unwrap_err();
        assert_eq!(
            refused
                .entries
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
            ["bin/su", "bin/both", "tmp"]
        );
        let text = refused.to_string();
        for part in [
            "release 2.0.0",
            "bin/su 4755 (setuid)",
            "bin/both 6711 (setuid, setgid)",
            "tmp 1777 (sticky)",
            "[install] allow_special_modes = true",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }

    #[test]
    fn a_long_list_is_cut_short() {
        let entries: Vec<(String, Mode)> = (0..12)
            .map(|i| (format!("f{i}"), Mode::new(0o4755).unwrap()))
            .collect();
        let text = describe(&entries);
        assert!(text.contains("f9 4755"), "{text}");
        assert!(!text.contains("f10"), "{text}");
        assert!(text.ends_with("and 2 more"), "{text}");
    }
}
