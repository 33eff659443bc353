//! The threat: a migration's `down` script runs on a rollback, long after
//! its release was staged, from `releases/<version>/migrations/`. Anyone
//! who can write there (or into the content store the file is hard-linked
//! to) could swap it for a script of their own, and `ferry rollback` would
//! run it as ferry's user. The promise: every script is checked against
//! the release's kept, re-verified manifest before the first one runs; a
//! script that differs refuses the rollback (exit 3) before any hook,
//! script or switch, naming the script and `ferry repair`, which restores
//! the genuine script from verified content.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::run;
use ferry_tests::threats::VERIFICATION_FAILED;

const DOWN: &str = "migrations/0002_email.down.sh";

/// A node on 1.1.0, whose migration 0002_email (up and down scripts that
/// log to `db`) it applied, with 1.0.0 still on disk to roll back to.
struct Migrated {
    ws: Workspace,
    node: Node,
    db: PathBuf,
    /// What a planted script writes: it must never exist.
    marker: PathBuf,
}

fn migrated() -> Migrated {
    let ws = Workspace::new();
    let node = ws.node("n1");
    let db = ws.dir.join("db.log");
    let marker = ws.dir.join("planted-script-ran");
    let scripts = ws.dir.join("migrations");
    fs::create_dir_all(&scripts).unwrap();
    for (name, line) in [("0002_email.up.sh", "up"), ("0002_email.down.sh", "down")] {
        let path = scripts.join(name);
        fs::write(
            &path,
            format!("#!/bin/sh\nset -e\necho {line} >> '{}'\n", db.display()),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    run(ws
        .release_command("1.1.0", CHANNEL, &ws.input(2))
        .arg("--migrations")
        .arg(&scripts))
    .assert_success();
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    assert_eq!(fs::read_to_string(&db).unwrap(), "up\n");
    Migrated {
        ws,
        node,
        db,
        marker,
    }
}

impl Migrated {
    fn down_script(&self) -> PathBuf {
        self.node.release_dir("1.1.0").join(DOWN)
    }

    fn planted_script(&self) -> String {
        format!("#!/bin/sh\ntouch '{}'\n", self.marker.display())
    }

    fn migration_outcome(&self) -> String {
        let out = self.node.ferry_ok(&["migrations", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        report["history"][0]["outcome"]
            .as_str()
            .unwrap_or_else(|| panic!("no migration record\n{out}"))
            .to_string()
    }

    /// The rollback is refused before anything ran or switched.
    #[track_caller]
    fn assert_rollback_refused(&self) {
        let out = self.node.ferry(&["rollback", "--to", "1.0.0"]);
        out.assert_code(VERIFICATION_FAILED)
            .assert_stderr_contains(&self.down_script().display().to_string())
            .assert_stderr_contains("does not match the release's signed manifest")
            .assert_stderr_contains("ferry repair");
        assert!(!self.marker.exists(), "the planted down script ran\n{out}");
        assert_eq!(fs::read_to_string(&self.db).unwrap(), "up\n", "{out}");
        assert_eq!(self.node.current_version().as_deref(), Some("1.1.0"));
        assert_eq!(self.migration_outcome(), "applied");
        assert!(!self.node.state_dir.join("journal.json").exists());
    }

    /// After `ferry repair` the genuine down runs and the rollback lands.
    #[track_caller]
    fn assert_repair_then_rollback(&self) {
        self.node.ferry_ok(&["repair"]);
        let out = self.node.ferry_ok(&["rollback", "--to", "1.0.0"]);
        assert_eq!(self.node.current_version().as_deref(), Some("1.0.0"));
        assert_eq!(fs::read_to_string(&self.db).unwrap(), "up\ndown\n", "{out}");
        assert_eq!(self.migration_outcome(), "reverted");
        assert!(!self.marker.exists(), "the planted down script ran\n{out}");
        self.node.assert_current("1.0.0", &self.ws.input(1));
    }
}

fn overwrite(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_down_script_replaced_on_disk_is_not_run_by_rollback() {
    let m = migrated();
    let down = m.down_script();
    fs::remove_file(&down).unwrap();
    overwrite(&down, &m.planted_script());
    m.assert_rollback_refused();
    m.assert_repair_then_rollback();
}

#[test]
fn a_down_script_edited_through_its_store_link_is_not_run_by_rollback() {
    // Written in place: the release file is a hard link into the store, so
    // the store's copy changes too and cannot vouch for it.
    let m = migrated();
    overwrite(&m.down_script(), &m.planted_script());
    m.assert_rollback_refused();
    m.assert_repair_then_rollback();
}

#[test]
fn a_down_script_swapped_for_a_symlink_is_not_run_by_rollback() {
    let m = migrated();
    let planted = m.ws.dir.join("planted.sh");
    overwrite(&planted, &m.planted_script());
    let down = m.down_script();
    fs::remove_file(&down).unwrap();
    symlink(&planted, &down).unwrap();
    m.assert_rollback_refused();
    m.assert_repair_then_rollback();
}
