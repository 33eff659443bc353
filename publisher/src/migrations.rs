//! `release --migrations DIR`: data migration scripts shipped with a release.
//!
//! DIR holds `<id>.up.<ext>` and, optionally, `<id>.down.<ext>`
//! (`0001_users.up.sh`, `0001_users.down.sh`). The scripts become part of
//! the release tree under `migrations/`, so they are stored, signed and
//! staged like every other file, and the manifest declares them in id
//! order with the checksum nodes remember them by
//! ([`manifests::migration::checksum`]).
//!
//! Everything is checked here, naming the file, before anything is
//! written: a bad name, a down without its up, two ups for one id, or a
//! `migrations/<file>` already in the input with other content. An up
//! without a down is allowed — some changes cannot be undone — and nodes
//! then refuse to revert it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use manifests::manifest::Migration;
use manifests::migration::{checksum, validate_id};
use manifests::mode::Mode;
use manifests::SafeRelativePath;

use crate::input::{InputEntry, InputKind, InputTree};

/// The directory of the release tree that holds migration scripts.
pub const TREE_DIR: &str = "migrations";

/// What a script file must be called, for messages.
const EXPECTED_FORM: &str = "<id>.up.<ext> or <id>.down.<ext>, with an id of A-Z, a-z, 0-9, \
                             '_', '.' and '-' zero-padded so ids sort in order \
                             (0001_create_users.up.sh)";

/// One script file of DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFile {
    /// Its file name, which it keeps under `migrations/`.
    pub name: String,
    pub source: PathBuf,
    pub mode: Mode,
}

impl ScriptFile {
    fn tree_path(&self) -> SafeRelativePath {
        SafeRelativePath::new(&format!("{TREE_DIR}/{}", self.name))
            .expect("checked names are safe path components")
    }
}

/// One migration read from DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationScripts {
    pub id: String,
    pub up: ScriptFile,
    pub down: Option<ScriptFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// Splits `<id>.up.<ext>` / `<id>.down.<ext>`; the id may itself hold dots.
fn parse_name(name: &str) -> Result<(&str, Direction), String> {
    let refuse = |why: &str| Err(format!("{name:?} {why}; expected {EXPECTED_FORM}"));
    let Some((rest, ext)) = name.rsplit_once('.') else {
        return refuse("has no extension");
    };
    if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
        return refuse("has no usable extension");
    }
    let direction = match rest.rsplit_once('.') {
        Some((_, "up")) => Direction::Up,
        Some((_, "down")) => Direction::Down,
        _ => return refuse("is neither an up nor a down script"),
    };
    let id = rest.rsplit_once('.').map(|(id, _)| id).unwrap_or_default();
    if let Err(e) = validate_id(id) {
        return refuse(&format!("has a bad id ({e})"));
    }
    Ok((id, direction))
}

/// Reads DIR: its migrations in id order.
pub fn read(dir: &Path) -> anyhow::Result<Vec<MigrationScripts>> {
    let entries = fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the migrations directory {} (--migrations)",
            dir.display()
        )
    })?;
    let mut ups: BTreeMap<String, ScriptFile> = BTreeMap::new();
    let mut downs: BTreeMap<String, ScriptFile> = BTreeMap::new();
    for entry in entries {
        let entry = entry
            .with_context(|| format!("cannot read the migrations directory {}", dir.display()))?;
        let source = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!(
                "{}: the name is not valid UTF-8; expected {EXPECTED_FORM}",
                source.display()
            );
        };
        // lstat: a symlink would publish whatever it points at.
        let meta = fs::symlink_metadata(&source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        if !meta.is_file() {
            bail!(
                "{} is not a regular file: the migrations directory holds only scripts named \
                 {EXPECTED_FORM}",
                source.display()
            );
        }
        let (id, direction) = parse_name(&name)
            .map_err(|e| anyhow::anyhow!("{}: migration script {e}", dir.display()))?;
        let id = id.to_string();
        let script = ScriptFile {
            name,
            source,
            mode: Mode::from_st_mode(meta.mode()),
        };
        let scripts = match direction {
            Direction::Up => &mut ups,
            Direction::Down => &mut downs,
        };
        if let Some(other) = scripts.insert(id.clone(), script) {
            bail!(
                "{}: migration {id} has two {} scripts ({} and {}): keep one",
                dir.display(),
                if direction == Direction::Up {
                    "up"
                } else {
                    "down"
                },
                other.name,
                scripts[&id].name
            );
        }
    }
    if let Some((id, down)) = downs.iter().find(|(id, _)| !ups.contains_key(*id)) {
        bail!(
            "{}: {} has no up script: add {id}.up.<ext>, or remove the down",
            dir.display(),
            down.name
        );
    }
    if ups.is_empty() {
        bail!(
            "the migrations directory {} holds no migration: expected scripts named \
             {EXPECTED_FORM}",
            dir.display()
        );
    }
    Ok(ups
        .into_iter()
        .map(|(id, up)| {
            let down = downs.remove(&id);
            MigrationScripts { id, up, down }
        })
        .collect())
}

/// Adds the scripts to the release tree under `migrations/`. A script the
/// input already holds there with the same bytes and mode is the same
/// file; any other file of that name is refused, since one of the two
/// would silently lose.
pub fn add_to_tree(tree: &mut InputTree, migrations: &[MigrationScripts]) -> anyhow::Result<()> {
    let dir = SafeRelativePath::new(TREE_DIR).expect("a constant safe path");
    match tree.entries.iter().find(|e| e.path == dir).map(|e| &e.kind) {
        None => tree.entries.push(InputEntry {
            path: dir,
            kind: InputKind::Directory {
                mode: Mode::new(0o755).expect("a valid mode"),
            },
        }),
        Some(InputKind::Directory { .. }) => {}
        Some(_) => bail!(
            "{} is not a directory, but --migrations puts the scripts there: rename it in the \
             input directory",
            tree.root.join(TREE_DIR).display()
        ),
    }
    let scripts = migrations
        .iter()
        .flat_map(|m| std::iter::once(&m.up).chain(m.down.as_ref()));
    for script in scripts {
        let path = script.tree_path();
        match tree
            .entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| &e.kind)
        {
            None => tree.entries.push(InputEntry {
                path,
                kind: InputKind::File {
                    mode: script.mode,
                    source: script.source.clone(),
                },
            }),
            Some(InputKind::File { mode, source })
                if *mode == script.mode && same_bytes(source, &script.source)? => {}
            Some(_) => bail!(
                "the input already has {} and it differs from the migration script {}: remove \
                 one of them",
                tree.root.join(path.as_str()).display(),
                script.source.display()
            ),
        }
    }
    // Manifest order: path bytes, parents first.
    tree.entries
        .sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    Ok(read(a)? == read(b)?)
}

/// The manifest's `migrations`: id order, checksums of the up scripts.
pub fn declare(migrations: &[MigrationScripts]) -> anyhow::Result<Vec<Migration>> {
    migrations
        .iter()
        .map(|m| {
            let script = fs::read(&m.up.source)
                .with_context(|| format!("cannot read {}", m.up.source.display()))?;
            Ok(Migration {
                id: m.id.clone(),
                up: m.up.tree_path(),
                down: m.down.as_ref().map(ScriptFile::tree_path),
                checksum: checksum(&script),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_id_and_direction() {
        assert_eq!(
            parse_name("0001_users.up.sh"),
            Ok(("0001_users", Direction::Up))
        );
        assert_eq!(
            parse_name("2024.05.01-x.down.py"),
            Ok(("2024.05.01-x", Direction::Down))
        );
        for bad in [
            "0001_users.sh",
            "0001_users.up",
            "0001 users.up.sh",
            ".up.sh",
            "0001.sideways.sh",
            "0001.up.s-h",
            "README",
        ] {
            let err = parse_name(bad).unwrap_err();
            assert!(err.contains("<id>.up.<ext>"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    fn write(dir: &Path, name: &str, content: &str) {
        fs::write(dir.join(name), content).unwrap();
    }

    #[test]
    fn a_directory_reads_into_migrations_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0002_b.up.sh", "echo b\r\n");
        write(dir.path(), "0001_a.up.sh", "echo a\n");
        write(dir.path(), "0001_a.down.sh", "echo undo a\n");
        let read = read(dir.path()).unwrap();
        let ids: Vec<&str> = read.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["0001_a", "0002_b"]);
        assert_eq!(read[0].down.as_ref().unwrap().name, "0001_a.down.sh");
        assert!(read[1].down.is_none());
        let declared = declare(&read).unwrap();
        assert_eq!(declared[0].up.as_str(), "migrations/0001_a.up.sh");
        assert_eq!(
            declared[0].down.as_ref().unwrap().as_str(),
            "migrations/0001_a.down.sh"
        );
        assert_eq!(declared[1].checksum, checksum(b"echo b\n"));
    }

    #[test]
    fn orphan_downs_doubled_ups_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_a.down.sh", "x");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0001_a.down.sh has no up script"), "{err}");

        write(dir.path(), "0001_a.up.sh", "x");
        write(dir.path(), "0001_a.up.py", "x");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("two up scripts"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "notes.txt", "x");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("\"notes.txt\""), "{err}");
        assert!(err.contains("<id>.up.<ext>"), "{err}");
    }

    #[test]
    fn scripts_join_the_tree_and_a_different_file_there_is_refused() {
        let input = tempfile::tempdir().unwrap();
        write(input.path(), "app", "app");
        let scripts = tempfile::tempdir().unwrap();
        write(scripts.path(), "0001_a.up.sh", "echo a\n");

        let mut tree = crate::input::walk(input.path()).unwrap();
        add_to_tree(&mut tree, &read(scripts.path()).unwrap()).unwrap();
        let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["app", "migrations", "migrations/0001_a.up.sh"]);

        // The same script already in the input is accepted, once.
        fs::create_dir(input.path().join("migrations")).unwrap();
        fs::copy(
            scripts.path().join("0001_a.up.sh"),
            input.path().join("migrations/0001_a.up.sh"),
        )
        .unwrap();
        let mut tree = crate::input::walk(input.path()).unwrap();
        add_to_tree(&mut tree, &read(scripts.path()).unwrap()).unwrap();
        assert_eq!(tree.entries.len(), 3);

        write(
            &input.path().join("migrations"),
            "0001_a.up.sh",
            "echo other\n",
        );
        let mut tree = crate::input::walk(input.path()).unwrap();
        let err = add_to_tree(&mut tree, &read(scripts.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("differs from the migration script"), "{err}");
    }
}
