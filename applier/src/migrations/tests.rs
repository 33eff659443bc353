use std::fs;
use std::os::unix::fs::PermissionsExt;

use manifests::manifest::{Compression, FileContent, FileEntry, Hooks, ObjectRef};
use manifests::migration::checksum;
use manifests::mode::Mode;

use super::*;

/// A migration of a test release: its id, up script and optional down.
struct Script<'a> {
    id: &'a str,
    up: &'a str,
    down: Option<&'a str>,
}

/// A release directory holding the scripts under `migrations/`, and its
/// manifest. Scripts append to `$DB/log` (DB is passed in the env).
struct Release {
    dir: tempfile::TempDir,
    manifest: Manifest,
}

fn release(version: &str, scripts: &[Script<'_>]) -> Release {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("migrations")).unwrap();
    let mut files = vec![FileEntry {
        path: SafeRelativePath::new("migrations").unwrap(),
        kind: EntryKind::Directory {
            mode: Mode::new(0o755).unwrap(),
        },
    }];
    let mut migrations = Vec::new();
    for script in scripts {
        let mut add = |name: String, text: &str, mode: u32| {
            let path = SafeRelativePath::new(&format!("migrations/{name}")).unwrap();
            let on_disk = path.under(dir.path());
            fs::write(&on_disk, text).unwrap();
            fs::set_permissions(&on_disk, fs::Permissions::from_mode(mode)).unwrap();
            let sha256 = Sha256Digest::of(text.as_bytes());
            let content = FileContent {
                mode: Mode::new(mode).unwrap(),
                size: text.len() as u64,
                sha256,
                object: ObjectRef {
                    path: manifests::layout::object(&sha256),
                    compression: Compression::Zstd,
                    size: 1,
                    sha256,
                },
                deltas: Vec::new(),
            };
            files.push(FileEntry {
                path: path.clone(),
                kind: if mode & 0o111 != 0 {
                    EntryKind::Executable(content)
                } else {
                    EntryKind::File(content)
                },
            });
            path
        };
        // The up is executable with a #! line, the down a plain file run
        // by /bin/sh: both ways of running a script are exercised.
        let up = add(
            format!("{}.up.sh", script.id),
            &format!("#!/bin/sh\n{}\n", script.up),
            0o755,
        );
        let down = script
            .down
            .map(|text| add(format!("{}.down.sh", script.id), text, 0o644));
        migrations.push(Migration {
            id: script.id.into(),
            checksum: checksum(&fs::read(up.under(dir.path())).unwrap()),
            up,
            down,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: manifests::FORMAT_VERSION,
        version: version.parse().unwrap(),
        channel: "stable".into(),
        created: Timestamp::UNIX_EPOCH,
        notes: String::new(),
        critical: false,
        min_upgrade_from: None,
        files,
        migrations,
        hooks: Hooks::default(),
        requirements: Vec::new(),
        waves: Vec::new(),
        delta_report: Vec::new(),
    };
    manifest.validate().unwrap();
    Release { dir, manifest }
}

/// A node's state directory and a "database" the scripts write to.
struct Node {
    state: tempfile::TempDir,
    db: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            state: tempfile::tempdir().unwrap(),
            db: tempfile::tempdir().unwrap(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = operation_env(Some(&"1.0.0".parse().unwrap()), &"2.0.0".parse().unwrap());
        env.push(("DB".into(), self.db.path().display().to_string()));
        env
    }

    fn apply(&self, release: &Release) -> Result<Vec<String>, MigrationFailure> {
        apply_pending(
            self.state.path(),
            &release.manifest,
            release.dir.path(),
            &self.env(),
            Duration::from_secs(20),
        )
    }

    fn log(&self) -> String {
        fs::read_to_string(self.db.path().join("log")).unwrap_or_default()
    }

    fn history(&self) -> MigrationHistory {
        MigrationHistory::load(self.state.path()).unwrap()
    }

    fn outcome(&self, id: &str) -> Option<MigrationOutcome> {
        self.history().get(id).map(|r| r.outcome)
    }
}

/// Migrations `0001_a`, `0002_b`, … whose ups append `up-a`, `up-b`, …
/// to the log and, `with_downs`, whose downs append `down-a`, ….
fn logged(version: &str, names: &[&str], with_downs: bool) -> Release {
    let texts: Vec<(String, String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                format!("{:04}_{name}", i + 1),
                log_line(&format!("up-{name}")),
                log_line(&format!("down-{name}")),
            )
        })
        .collect();
    let scripts: Vec<Script<'_>> = texts
        .iter()
        .map(|(id, up, down)| Script {
            id,
            up,
            down: with_downs.then_some(down.as_str()),
        })
        .collect();
    release(version, &scripts)
}

fn log_line(line: &str) -> String {
    format!("echo {line} >> \"$DB/log\"")
}

const USERS_UP: &str = "echo \"users $FERRY_MIGRATION_ID $FERRY_FROM_VERSION->$FERRY_TO_VERSION $(pwd)\" >> \"$DB/log\"";

#[test]
fn pending_ups_run_once_in_id_order_with_their_environment() {
    let node = Node::new();
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_users",
                up: USERS_UP,
                down: None,
            },
            Script {
                id: "0002_email",
                up: &log_line("email"),
                down: None,
            },
        ],
    );
    assert_eq!(
        pending(node.state.path(), &v2.manifest)
            .unwrap()
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["0001_users", "0002_email"]
    );
    assert_eq!(node.apply(&v2).unwrap(), ["0001_users", "0002_email"]);
    let cwd = fs::canonicalize(v2.dir.path()).unwrap();
    assert_eq!(
        node.log(),
        format!("users 0001_users 1.0.0->2.0.0 {}\nemail\n", cwd.display())
    );
    let record = node.history().get("0001_users").unwrap().clone();
    assert_eq!(record.outcome, MigrationOutcome::Applied);
    assert_eq!(record.version.to_string(), "2.0.0");
    assert_eq!(record.checksum, v2.manifest.migrations[0].checksum);

    // Again, and from a later release carrying the same two: nothing runs.
    assert!(node.apply(&v2).unwrap().is_empty());
    let v3 = release(
        "3.0.0",
        &[
            Script {
                id: "0001_users",
                up: USERS_UP,
                down: None,
            },
            Script {
                id: "0002_email",
                up: &log_line("email"),
                down: None,
            },
            Script {
                id: "0003_index",
                up: &log_line("index"),
                down: None,
            },
        ],
    );
    assert_eq!(node.apply(&v3).unwrap(), ["0003_index"]);
    assert!(node.log().ends_with("email\nindex\n"), "{}", node.log());
    assert_eq!(node.log().lines().count(), 3);
    // The record keeps the release that first ran it.
    assert_eq!(
        node.history()
            .get("0001_users")
            .unwrap()
            .version
            .to_string(),
        "2.0.0"
    );
}

#[test]
fn a_failing_up_reverts_the_ups_of_its_run_newest_first() {
    let node = Node::new();
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_a",
                up: &log_line("up-a"),
                down: Some(&log_line("down-a")),
            },
            Script {
                id: "0002_b",
                up: &log_line("up-b"),
                down: Some(&log_line("down-b")),
            },
            Script {
                id: "0003_c",
                up: "echo cannot reach the database >&2; exit 7",
                down: Some(&log_line("down-c")),
            },
        ],
    );
    let failure = node.apply(&v2).unwrap_err();
    let MigrationFailure::Failed(up) = &failure else {
        panic!("expected a failed migration, got {failure}");
    };
    assert_eq!(up.id, "0003_c");
    let reason = up.reason.to_string();
    assert!(reason.contains("exited with status 7"), "{reason}");
    assert!(reason.contains("cannot reach the database"), "{reason}");
    assert_eq!(up.reverted, ["0002_b", "0001_a"]);
    assert!(up.not_reverted.is_empty());
    assert_eq!(node.log(), "up-a\nup-b\ndown-b\ndown-a\n");
    assert_eq!(node.outcome("0001_a"), Some(MigrationOutcome::Reverted));
    assert_eq!(node.outcome("0002_b"), Some(MigrationOutcome::Reverted));
    assert_eq!(node.outcome("0003_c"), Some(MigrationOutcome::Failed));
    let error = node.history().get("0003_c").unwrap().last_error.clone();
    assert!(error.unwrap().contains("cannot reach the database"));
    // Nothing is applied, so all three are pending again.
    assert_eq!(pending(node.state.path(), &v2.manifest).unwrap().len(), 3);
}

#[test]
fn a_failing_up_after_an_irreversible_one_says_what_stays_applied() {
    let node = Node::new();
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_a",
                up: &log_line("up-a"),
                down: None,
            },
            Script {
                id: "0002_b",
                up: "exit 1",
                down: None,
            },
        ],
    );
    let failure = node.apply(&v2).unwrap_err();
    let message = failure.to_string();
    assert!(message.contains("migration 0002_b failed"), "{message}");
    assert!(
        message.contains("NOT reverted, still applied to the data: 0001_a"),
        "{message}"
    );
    assert!(message.contains("has no down script"), "{message}");
    assert_eq!(node.outcome("0001_a"), Some(MigrationOutcome::Applied));
}

#[test]
fn an_applied_migration_whose_script_changed_is_refused() {
    let node = Node::new();
    let v2 = release(
        "2.0.0",
        &[Script {
            id: "0001_a",
            up: &log_line("up-a"),
            down: None,
        }],
    );
    node.apply(&v2).unwrap();
    let edited = release(
        "3.0.0",
        &[
            Script {
                id: "0001_a",
                up: &log_line("up-a-edited"),
                down: None,
            },
            Script {
                id: "0002_b",
                up: &log_line("up-b"),
                down: None,
            },
        ],
    );
    let err = pending(node.state.path(), &edited.manifest)
        .unwrap_err()
        .to_string();
    let (old, new) = (
        v2.manifest.migrations[0].checksum.to_hex(),
        edited.manifest.migrations[0].checksum.to_hex(),
    );
    assert!(err.contains("migration 0001_a"), "{err}");
    assert!(err.contains(&old) && err.contains(&new), "{err}");
    assert!(err.contains("new migration with a higher id"), "{err}");
    // And applying runs nothing at all, not even the new 0002.
    let MigrationFailure::Refused(_) = node.apply(&edited).unwrap_err() else {
        panic!("an edited migration should refuse the whole run");
    };
    assert_eq!(node.log(), "up-a\n");
}

#[test]
fn failed_reverted_and_interrupted_migrations_are_pending_again() {
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_a",
                up: "true",
                down: None,
            },
            Script {
                id: "0002_b",
                up: "true",
                down: None,
            },
            Script {
                id: "0003_c",
                up: "true",
                down: None,
            },
            Script {
                id: "0004_d",
                up: "true",
                down: None,
            },
        ],
    );
    let mut history = MigrationHistory::default();
    let outcomes = [
        ("0004_d", MigrationOutcome::Running),
        ("0002_b", MigrationOutcome::Applied),
        ("0001_a", MigrationOutcome::Failed),
        ("0003_c", MigrationOutcome::Reverted),
    ];
    for (id, outcome) in outcomes {
        history.put(MigrationRecord {
            id: id.into(),
            checksum: v2.manifest.migration(id).unwrap().checksum,
            version: "2.0.0".parse().unwrap(),
            applied_at: Timestamp::UNIX_EPOCH,
            duration_ms: 5,
            outcome,
            reverted_at: None,
            last_error: None,
        });
    }
    let ids: Vec<&str> = history.migrations.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["0001_a", "0002_b", "0003_c", "0004_d"],
        "kept in id order"
    );
    let pending: Vec<&str> = pending_in(&history, &v2.manifest)
        .unwrap()
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(pending, ["0001_a", "0003_c", "0004_d"]);

    // Round trip through the file.
    let state = tempfile::tempdir().unwrap();
    history.save(state.path()).unwrap();
    assert_eq!(MigrationHistory::load(state.path()).unwrap(), history);
    let text = fs::read_to_string(state.path().join(HISTORY_FILE)).unwrap();
    assert!(text.contains("\"outcome\": \"reverted\""), "{text}");
}

#[test]
fn revert_runs_downs_newest_first_and_refuses_a_missing_down_up_front() {
    let node = Node::new();
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_a",
                up: &log_line("up-a"),
                down: Some(&log_line("down-a")),
            },
            Script {
                id: "0002_b",
                up: &log_line("up-b"),
                down: None,
            },
            Script {
                id: "0003_c",
                up: &log_line("up-c"),
                down: Some(&log_line("down-c")),
            },
        ],
    );
    let applied = node.apply(&v2).unwrap();
    let revert = |ids: &[String]| {
        revert(
            node.state.path(),
            &v2.manifest,
            v2.dir.path(),
            ids,
            &node.env(),
            Duration::from_secs(20),
        )
    };
    let err = revert(&applied).unwrap_err().to_string();
    assert!(err.contains("migration 0002_b"), "{err}");
    assert!(err.contains("no down script"), "{err}");
    assert_eq!(node.log(), "up-a\nup-b\nup-c\n", "no down ran");

    let reversible = ["0001_a".to_string(), "0003_c".to_string()];
    revert(&reversible).unwrap();
    assert_eq!(node.log(), "up-a\nup-b\nup-c\ndown-c\ndown-a\n");
    assert_eq!(node.outcome("0003_c"), Some(MigrationOutcome::Reverted));
    assert!(node.history().get("0003_c").unwrap().reverted_at.is_some());
    // Reverting again changes nothing.
    revert(&reversible).unwrap();
    assert_eq!(node.log().lines().count(), 5);
}

#[test]
fn going_back_past_an_irreversible_migration_is_refused() {
    let node = Node::new();
    let v1 = release("1.0.0", &[]);
    let v2 = release(
        "2.0.0",
        &[
            Script {
                id: "0001_a",
                up: "true",
                down: Some("true"),
            },
            Script {
                id: "0002_b",
                up: "true",
                down: None,
            },
        ],
    );
    assert!(
        reverts_needed(node.state.path(), &v2.manifest, &v1.manifest)
            .unwrap()
            .is_empty()
    );
    let started = Timestamp::now();
    node.apply(&v2).unwrap();
    assert_eq!(
        applied_since(node.state.path(), started).unwrap(),
        ["0001_a", "0002_b"]
    );
    let err = reverts_needed(node.state.path(), &v2.manifest, &v1.manifest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot go back from 2.0.0 to 1.0.0"), "{err}");
    assert!(err.contains("migration 0002_b"), "{err}");
    // A release that keeps 0002_b only needs 0001_a undone.
    let v15 = release(
        "1.5.0",
        &[Script {
            id: "0002_b",
            up: "true",
            down: None,
        }],
    );
    assert_eq!(
        reverts_needed(node.state.path(), &v2.manifest, &v15.manifest).unwrap(),
        ["0001_a"]
    );
}

#[test]
fn a_script_that_does_not_match_its_checksum_is_refused_before_anything_runs() {
    let node = Node::new();
    let v2 = logged("2.0.0", &["a", "b"], false);
    fs::write(
        v2.dir.path().join("migrations/0002_b.up.sh"),
        "#!/bin/sh\necho tampered >> \"$DB/log\"\n",
    )
    .unwrap();
    // The file differs from what the manifest pins: refused by that check,
    // which comes first.
    let err = node.apply(&v2).unwrap_err().to_string();
    assert!(
        err.contains("up script of migration 0002_b") && err.contains("no migration script ran"),
        "{err}"
    );
    assert_eq!(node.log(), "");
    assert!(node.history().migrations.is_empty());

    // The file is the one pinned, but the migration's declared checksum is
    // not its checksum (a publisher at fault): refused too.
    let mut v2 = logged("2.0.0", &["a", "b"], false);
    v2.manifest.migrations[1].checksum = v2.manifest.migrations[0].checksum;
    let err = node.apply(&v2).unwrap_err().to_string();
    assert!(
        err.contains("declares migration 0002_b with checksum"),
        "{err}"
    );
    assert_eq!(node.log(), "");
    assert!(node.history().migrations.is_empty());
}

#[test]
fn a_down_script_that_differs_from_its_manifest_is_refused_before_any_down_runs() {
    let node = Node::new();
    let v2 = logged("2.0.0", &["a", "b"], true);
    let applied = node.apply(&v2).unwrap();
    // The older down is the one edited: the newer one, which would run
    // first, must not run either.
    fs::write(
        v2.dir.path().join("migrations/0001_a.down.sh"),
        "echo planted >> \"$DB/log\"\n",
    )
    .unwrap();
    let err = revert(
        node.state.path(),
        &v2.manifest,
        v2.dir.path(),
        &applied,
        &node.env(),
        Duration::from_secs(20),
    )
    .unwrap_err();
    assert_eq!(err.exit(), crate::exit::Exit::Verification, "{err}");
    let text = err.to_string();
    assert!(text.contains("down script of migration 0001_a"), "{text}");
    assert!(text.contains("ferry repair"), "{text}");
    assert_eq!(node.log(), "up-a\nup-b\n", "no down ran");
    assert_eq!(node.outcome("0002_b"), Some(MigrationOutcome::Applied));

    // A release whose down differs is not applied either: a failing up
    // would run it.
    let other = Node::new();
    let refused = other.apply(&v2).unwrap_err().to_string();
    assert!(
        refused.contains("down script of migration 0001_a"),
        "{refused}"
    );
    assert_eq!(other.log(), "");
}
