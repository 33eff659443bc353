//! Migrations: scripts a release ships to move a node's data forward (`up`)
//! and, optionally, back (`down`).
//!
//! A node runs each migration's `up` once, ever, and remembers the
//! migration by its id and checksum. Those two are therefore the contract
//! between releases: the id decides the order and whether a migration is
//! new to a node, the checksum whether a migration a node already ran is
//! still the one a later release describes. Both are fixed here, in the
//! format crate, so that the publisher computes exactly what nodes check.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::EntryKind;
use crate::safe_path::SafeRelativePath;
use crate::{FormatError, Sha256Digest};

/// Longest migration id: long enough for a date and a description, short
/// enough to stay readable in `ferry migrations` and in file names.
pub const MAX_ID_LEN: usize = 128;

/// One migration of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Made of `A-Z a-z 0-9 _ . -`; ids sort as byte strings, which is the
    /// order migrations run in (so publishers zero-pad: `0001_create_users`).
    pub id: String,
    /// The script that makes the change: a file of the same manifest.
    pub up: SafeRelativePath,
    /// The script that undoes it, if the change can be undone.
    pub down: Option<SafeRelativePath>,
    /// [`checksum`] of the `up` script.
    pub checksum: Sha256Digest,
}

/// The checksum of a migration script: SHA-256 of its bytes with line
/// endings normalised (every CR LF pair, then every lone CR, becomes LF).
///
/// Normalised because the checksum tells a node whether a migration it
/// already ran has been edited since, and a checkout that converts line
/// endings has not edited anything a shell runs differently.
pub fn checksum(script: &[u8]) -> Sha256Digest {
    let mut normalised = Vec::with_capacity(script.len());
    let mut bytes = script.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' {
            normalised.push(b'\n');
            if bytes.peek() == Some(&b'\n') {
                bytes.next();
            }
        } else {
            normalised.push(byte);
        }
    }
    Sha256Digest::of(&normalised)
}

/// Checks a migration id: 1 to [`MAX_ID_LEN`] characters from
/// `A-Z a-z 0-9 _ . -`. Ids end up in file names, environment variables
/// and messages, so nothing that needs quoting in any of them is allowed.
pub fn validate_id(id: &str) -> Result<(), FormatError> {
    let bad = |reason: &str| {
        Err(FormatError::Inconsistent {
            what: format!(
                "migration id {:?}",
                id.chars().take(200).collect::<String>()
            ),
            reason: format!(
                "{reason}; use 1-{MAX_ID_LEN} characters from A-Z, a-z, 0-9, '_', '.' and '-', \
                 zero-padded so ids sort in order (0001_create_users)"
            ),
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is too long");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(&format!("it contains {c:?}"));
    }
    Ok(())
}

/// The manifest rules for `migrations`: valid ids in strictly ascending
/// order (so each id appears once), and `up`/`down` naming regular files or
/// executables of the same release. `kinds` maps each path of the release
/// to its entry kind.
pub(crate) fn validate_all(
    migrations: &[Migration],
    kinds: &BTreeMap<&SafeRelativePath, &EntryKind>,
) -> Result<(), String> {
    let mut previous: Option<&str> = None;
    for migration in migrations {
        let id = migration.id.as_str();
        validate_id(id).map_err(|e| e.to_string())?;
        if let Some(previous) = previous {
            if previous == id {
                return Err(format!("migration {id} is listed twice"));
            }
            if previous > id {
                return Err(format!(
                    "migrations are not in ascending id order: {id} comes after {previous}"
                ));
            }
        }
        previous = Some(id);
        let scripts = [
            ("up", Some(&migration.up)),
            ("down", migration.down.as_ref()),
        ];
        for (which, path) in scripts {
            let Some(path) = path else { continue };
            match kinds.get(path) {
                Some(EntryKind::File(_) | EntryKind::Executable(_)) => {}
                Some(_) => {
                    return Err(format!(
                        "migration {id}: its {which} script {path} is not a regular file"
                    ))
                }
                None => {
                    return Err(format!(
                        "migration {id}: its {which} script {path} is not in the release"
                    ))
                }
            }
        }
        if migration.down.as_ref() == Some(&migration.up) {
            return Err(format!(
                "migration {id}: up and down are the same script {}",
                migration.up
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Compression, FileContent, FileEntry, Hooks, Manifest, ObjectRef};
    use crate::mode::Mode;
    use crate::{layout, FORMAT_VERSION};

    fn path(p: &str) -> SafeRelativePath {
        SafeRelativePath::new(p).unwrap()
    }

    fn file(p: &str, mode: u32, content: &[u8]) -> FileEntry {
        let sha256 = Sha256Digest::of(content);
        let content = FileContent {
            mode: Mode::new(mode).unwrap(),
            size: content.len() as u64,
            sha256,
            object: ObjectRef {
                path: layout::object(&sha256),
                compression: Compression::Zstd,
                size: 1,
                sha256,
            },
            deltas: Vec::new(),
        };
        let kind = if mode & 0o111 != 0 {
            EntryKind::Executable(content)
        } else {
            EntryKind::File(content)
        };
        FileEntry {
            path: path(p),
            kind,
        }
    }

    fn migration(id: &str, up: &str, down: Option<&str>) -> Migration {
        Migration {
            id: id.into(),
            up: path(up),
            down: down.map(path),
            checksum: checksum(b"x"),
        }
    }

    /// A release with `migrations/` holding a.up.sh, a.down.sh and b.up.sh.
    fn release(migrations: Vec<Migration>) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            version: "2.0.0".parse().unwrap(),
            channel: "stable".into(),
            created: jiff::Timestamp::UNIX_EPOCH,
            notes: String::new(),
            critical: false,
            min_upgrade_from: None,
            files: vec![
                FileEntry {
                    path: path("migrations"),
                    kind: EntryKind::Directory {
                        mode: Mode::new(0o755).unwrap(),
                    },
                },
                file("migrations/a.down.sh", 0o644, b"down"),
                file("migrations/a.up.sh", 0o755, b"up"),
                file("migrations/b.up.sh", 0o644, b"up b"),
            ],
            migrations,
            hooks: Hooks::default(),
            requirements: Vec::new(),
            waves: Vec::new(),
            delta_report: Vec::new(),
        }
    }

    fn refusal(migrations: Vec<Migration>) -> String {
        release(migrations)
            .validate()
            .expect_err("the manifest should be refused")
            .to_string()
    }

    #[test]
    fn a_manifest_with_well_formed_migrations_validates() {
        release(vec![
            migration("0001_a", "migrations/a.up.sh", Some("migrations/a.down.sh")),
            migration("0002_b", "migrations/b.up.sh", None),
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn migrations_out_of_order_or_twice_are_refused() {
        let err = refusal(vec![
            migration("0002_b", "migrations/b.up.sh", None),
            migration("0001_a", "migrations/a.up.sh", None),
        ]);
        assert!(err.contains("not in ascending id order"), "{err}");
        let err = refusal(vec![
            migration("0001", "migrations/a.up.sh", None),
            migration("0001", "migrations/b.up.sh", None),
        ]);
        assert!(err.contains("0001 is listed twice"), "{err}");
        let err = refusal(vec![migration("bad id", "migrations/a.up.sh", None)]);
        assert!(err.contains("\"bad id\""), "{err}");
    }

    #[test]
    fn scripts_must_be_files_of_the_release() {
        let err = refusal(vec![migration("0001", "migrations/c.up.sh", None)]);
        assert!(
            err.contains("its up script migrations/c.up.sh is not in the release"),
            "{err}"
        );
        let err = refusal(vec![migration(
            "0001",
            "migrations/a.up.sh",
            Some("migrations"),
        )]);
        assert!(
            err.contains("its down script migrations is not a regular file"),
            "{err}"
        );
        let err = refusal(vec![migration(
            "0001",
            "migrations/a.up.sh",
            Some("migrations/a.up.sh"),
        )]);
        assert!(err.contains("up and down are the same script"), "{err}");
    }

    #[test]
    fn line_endings_do_not_change_the_checksum() {
        let lf = checksum(b"#!/bin/sh\necho one\necho two\n");
        assert_eq!(checksum(b"#!/bin/sh\r\necho one\r\necho two\r\n"), lf);
        assert_eq!(checksum(b"#!/bin/sh\recho one\recho two\r"), lf);
        assert_eq!(checksum(b"#!/bin/sh\r\necho one\recho two\n"), lf);
        // A blank line is kept: CR CR LF is two line ends, not one.
        assert_ne!(checksum(b"#!/bin/sh\r\r\necho one\necho two\n"), lf);
        assert_ne!(checksum(b"#!/bin/sh\necho one\necho three\n"), lf);
        assert_eq!(checksum(b"a\n"), Sha256Digest::of(b"a\n"));
    }

    #[test]
    fn ids_are_checked_and_the_message_gives_the_form() {
        for good in ["0001_create_users", "2024.05.01-a", "x"] {
            validate_id(good).unwrap();
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in ["", "0001 users", "0001/users", "ü", "a$b", long.as_str()] {
            let err = validate_id(bad).unwrap_err().to_string();
            assert!(err.contains("0001_create_users"), "{bad:?}: {err}");
        }
    }
}
