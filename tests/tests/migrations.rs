//! The promise: data migrations shipped with a release run once each, in id
//! order, before the release goes live; a failing one leaves the node on
//! its old release with the migrations of that run undone; and a migration
//! a node already ran can never be swapped for another script under the
//! same id (a line-ending conversion is not a change).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};
use serde_json::Value;

/// A migrations directory under the workspace, and the "database" (a log
/// file) its scripts append to.
struct Scripts {
    dir: PathBuf,
    db: PathBuf,
}

impl Scripts {
    fn new(ws: &Workspace, name: &str) -> Scripts {
        let dir = ws.dir.join("migrations").join(name);
        fs::create_dir_all(&dir).unwrap();
        let db = ws.dir.join("db");
        fs::create_dir_all(&db).unwrap();
        Scripts {
            dir,
            db: db.join("log"),
        }
    }

    /// Writes `name` with `body` after a `#!/bin/sh` line; executable ones
    /// run directly, the others through /bin/sh.
    fn write(&self, name: &str, body: &str, executable: bool) -> &Self {
        let path = self.dir.join(name);
        fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// A script body that appends `line` to the database.
    fn append(&self, line: &str) -> String {
        format!("echo \"{line}\" >> '{}'", self.db.display())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.db).unwrap_or_default()
    }
}

fn publish_with(ws: &Workspace, version: &str, input: &Path, scripts: &Path) -> Output {
    let out = run(ws
        .release_command(version, CHANNEL, input)
        .arg("--migrations")
        .arg(scripts));
    out.assert_success();
    out
}

fn migrations_json(node: &Node) -> Value {
    let out = node.ferry_ok(&["migrations", "--json"]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("migrations --json is not JSON ({e})\n{out}"))
}

/// `id -> (outcome, version)` from `ferry migrations --json`.
fn outcomes(report: &Value) -> Vec<(String, String, String)> {
    report["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history array: {report:#}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pending_ids(report: &Value) -> Vec<String> {
    report["pending"]
        .as_array()
        .unwrap_or_else(|| panic!("no pending array: {report:#}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn triple(id: &str, outcome: &str, version: &str) -> (String, String, String) {
    (id.into(), outcome.into(), version.into())
}

#[test]
fn migrations_run_once_in_order_before_the_release_goes_live() {
    let ws = Workspace::new();
    let node = ws.node("n1");
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    node.ferry_ok(&["apply"]);

    let scripts = Scripts::new(&ws, "v2");
    // The first up records what `current` was while it ran: the old release.
    let current = node.current();
    scripts
        .write(
            "0001_users.up.sh",
            &scripts.append(&format!(
                "0001 up $FERRY_FROM_VERSION->$FERRY_TO_VERSION id=$FERRY_MIGRATION_ID live=$(basename \"$(readlink '{}')\") cwd=$(basename \"$PWD\") dir=$(basename \"$FERRY_RELEASE_DIR\")",
                current.display()
            )),
            true,
        )
        .write("0001_users.down.sh", &scripts.append("0001 down"), false)
        .write("0002_email.up.sh", &scripts.append("0002 up"), false);
    publish_with(&ws, "2.0.0", &ws.input(2), &scripts.dir);

    let out = node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("2.0.0"), "{out}");
    assert_eq!(
        scripts.log(),
        "0001 up 1.0.0->2.0.0 id=0001_users live=1.0.0 cwd=2.0.0 dir=2.0.0\n0002 up\n"
    );
    let report = migrations_json(&node);
    assert_eq!(report["installed_version"], "2.0.0", "{report:#}");
    assert_eq!(
        outcomes(&report),
        [
            triple("0001_users", "applied", "2.0.0"),
            triple("0002_email", "applied", "2.0.0")
        ]
    );
    assert!(pending_ids(&report).is_empty(), "{report:#}");
    let text = node.ferry_ok(&["migrations"]);
    text.assert_stdout_contains("0001_users")
        .assert_stdout_contains("pending for 2.0.0: none");

    // Applying again runs nothing.
    node.ferry_ok(&["apply"]);
    assert_eq!(scripts.log().lines().count(), 2);

    // A later release carrying the same two and a third runs the third only.
    let v3 = Scripts::new(&ws, "v3");
    for name in ["0001_users.up.sh", "0001_users.down.sh", "0002_email.up.sh"] {
        fs::copy(scripts.dir.join(name), v3.dir.join(name)).unwrap();
    }
    v3.write("0003_index.up.sh", &v3.append("0003 up"), true);
    publish_with(&ws, "3.0.0", &ws.input(3), &v3.dir);
    node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("3.0.0"));
    assert_eq!(scripts.log().lines().count(), 3, "{}", scripts.log());
    assert!(scripts.log().ends_with("0002 up\n0003 up\n"));
    assert_eq!(
        outcomes(&migrations_json(&node)),
        [
            triple("0001_users", "applied", "2.0.0"),
            triple("0002_email", "applied", "2.0.0"),
            triple("0003_index", "applied", "3.0.0")
        ]
    );
}

#[test]
fn a_failing_migration_leaves_the_node_on_its_old_release_with_the_run_undone() {
    let ws = Workspace::new();
    let node = ws.node("n1");
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    node.ferry_ok(&["apply"]);

    let scripts = Scripts::new(&ws, "broken");
    scripts
        .write("0001_users.up.sh", &scripts.append("0001 up"), true)
        .write("0001_users.down.sh", &scripts.append("0001 down"), true)
        .write(
            "0002_email.up.sh",
            "echo 'column email already exists' >&2; exit 3",
            true,
        );
    publish_with(&ws, "2.0.0", &ws.input(2), &scripts.dir);

    let out = node.ferry(&["apply"]);
    out.assert_code(1)
        .assert_stderr_contains("migration 0002_email failed")
        .assert_stderr_contains("column email already exists")
        .assert_stderr_contains("reverted: 0001_users");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"), "{out}");
    assert_eq!(scripts.log(), "0001 up\n0001 down\n");
    let report = migrations_json(&node);
    assert_eq!(report["installed_version"], "1.0.0");
    assert_eq!(
        outcomes(&report),
        [
            triple("0001_users", "reverted", "2.0.0"),
            triple("0002_email", "failed", "2.0.0")
        ]
    );
    let error = report["history"][1]["last_error"].as_str().unwrap_or("");
    assert!(error.contains("exited with status 3"), "{report:#}");
    let history = node.history_json();
    let last = history.last().expect("the failed apply is in the history");
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert_eq!(last["to_version"], "2.0.0", "{last:#}");

    // A fixed release runs both again: the reverted one is pending again.
    let fixed = Scripts::new(&ws, "fixed");
    for name in ["0001_users.up.sh", "0001_users.down.sh"] {
        fs::copy(scripts.dir.join(name), fixed.dir.join(name)).unwrap();
    }
    fixed.write("0002_email.up.sh", &fixed.append("0002 up"), true);
    publish_with(&ws, "2.0.1", &ws.input(2), &fixed.dir);
    node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("2.0.1"));
    assert_eq!(scripts.log(), "0001 up\n0001 down\n0001 up\n0002 up\n");
    assert_eq!(
        outcomes(&migrations_json(&node)),
        [
            triple("0001_users", "applied", "2.0.1"),
            triple("0002_email", "applied", "2.0.1")
        ]
    );
}

#[test]
fn an_applied_migration_cannot_change_but_line_endings_may() {
    let ws = Workspace::new();
    let node = ws.node("n1");
    let scripts = Scripts::new(&ws, "v1");
    scripts.write("0001_users.up.sh", &scripts.append("0001 up"), true);
    publish_with(&ws, "1.0.0", &ws.input(1), &scripts.dir);
    node.ferry_ok(&["apply"]);
    assert_eq!(scripts.log(), "0001 up\n");

    // The same script with CRLF line endings, and a new migration.
    let crlf = Scripts::new(&ws, "crlf");
    let original = fs::read_to_string(scripts.dir.join("0001_users.up.sh")).unwrap();
    let converted = crlf.dir.join("0001_users.up.sh");
    fs::write(&converted, original.replace('\n', "\r\n")).unwrap();
    fs::set_permissions(&converted, fs::Permissions::from_mode(0o755)).unwrap();
    crlf.write("0002_email.up.sh", &crlf.append("0002 up"), true);
    publish_with(&ws, "1.1.0", &ws.input(2), &crlf.dir);
    node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    assert_eq!(scripts.log(), "0001 up\n0002 up\n");

    // A real edit of 0001, with a new 0003: refused, nothing runs or moves.
    let edited = Scripts::new(&ws, "edited");
    edited
        .write("0001_users.up.sh", &edited.append("0001 up, edited"), true)
        .write("0002_email.up.sh", &edited.append("0002 up"), true)
        .write("0003_index.up.sh", &edited.append("0003 up"), true);
    publish_with(&ws, "1.2.0", &ws.input(3), &edited.dir);
    let before = migrations_json(&node);
    let out = node.ferry(&["apply"]);
    out.assert_code(1)
        .assert_stderr_contains("migration 0001_users was applied on this node")
        .assert_stderr_contains(before["history"][0]["checksum"].as_str().unwrap())
        .assert_stderr_contains("new migration with a higher id");
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    assert!(
        !node.release_dir("1.2.0").exists(),
        "the refused release was staged"
    );
    assert_eq!(scripts.log(), "0001 up\n0002 up\n");
    assert_eq!(
        migrations_json(&node)["history"],
        before["history"],
        "the record changed"
    );
}

#[test]
fn bad_script_names_are_refused_by_the_publisher() {
    let ws = Workspace::new();
    let scripts = Scripts::new(&ws, "bad");
    scripts.write("0001 users.up.sh", "true", true);
    let out = run(ws
        .release_command("1.0.0", CHANNEL, &ws.input(1))
        .arg("--migrations")
        .arg(&scripts.dir));
    out.assert_code(1)
        .assert_stderr_contains("\"0001 users.up.sh\"")
        .assert_stderr_contains("<id>.up.<ext>");
    assert!(
        !ws.repo.join("index.json").exists(),
        "a refused release published an index"
    );
}

#[test]
fn an_in_place_node_refuses_a_release_with_migrations() {
    let ws = Workspace::new();
    let scripts = Scripts::new(&ws, "v1");
    scripts.write("0001_users.up.sh", &scripts.append("0001 up"), true);
    publish_with(&ws, "1.0.0", &ws.input(1), &scripts.dir);
    let node = ws.in_place_node("n1", "");
    let out = node.ferry(&["apply"]);
    out.assert_code(1)
        .assert_stderr_contains("ships data migrations")
        .assert_stderr_contains("symlink mode");
    assert_eq!(scripts.log(), "");
    assert!(
        fs::read_dir(&node.root).unwrap().next().is_none(),
        "files were written below the in-place root"
    );
}
