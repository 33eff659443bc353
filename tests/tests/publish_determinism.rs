//! The promise: publishing is reproducible. The same input with the same
//! SOURCE_DATE_EPOCH gives byte-identical manifests and objects, whatever
//! the input's location on disk, the order its files were created in, their
//! timestamps or the number of compression threads — so a release can be
//! rebuilt and compared, and "already published" means the same bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use ferry_tests::fixtures::{release_tree, write_tree, Entry, Workspace};
use ferry_tests::run::run;

const EPOCH: &str = "1700000000";

fn publish(ws: &Workspace, repo: &Path, input: &Path, jobs: &str) {
    let mut command: Command = ws.publisher();
    command
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("release")
        .arg("--repo")
        .arg(repo)
        .arg("--key")
        .arg(&ws.secret_key)
        .args(["--version", "1.0.0", "--channel", "stable", "--jobs", jobs])
        .arg(input);
    run(&mut command).assert_success();
}

/// name → bytes of every file in `dir` whose name passes `keep`.
fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_input_and_epoch_give_identical_manifests_and_objects() {
    let ws = Workspace::new();
    let input_a = ws.input(1);
    // The same content elsewhere, files created in the reverse order and
    // with other timestamps.
    let input_b = ws.dir.join("elsewhere/input-copy");
    let (dirs, files): (Vec<Entry>, Vec<Entry>) = release_tree(1)
        .into_iter()
        .partition(|e| matches!(e, Entry::Dir { .. }));
    write_tree(&input_b, &dirs);
    write_tree(&input_b, &files.iter().rev().cloned().collect::<Vec<_>>());
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for entry in &files {
        if let Entry::File { path, .. } = entry {
            let file = fs::File::options()
                .write(true)
                .open(input_b.join(path))
                .unwrap();
            file.set_modified(long_ago).unwrap();
        }
    }

    let (repo_a, repo_b) = (ws.dir.join("repo-a"), ws.dir.join("repo-b"));
    publish(&ws, &repo_a, &input_a, "1");
    publish(&ws, &repo_b, &input_b, "2");

    let json = |name: &str| name.ends_with(".json");
    let manifests_a = files_in(&repo_a.join("manifests"), json);
    let manifests_b = files_in(&repo_b.join("manifests"), json);
    assert_eq!(manifests_a.keys().collect::<Vec<_>>(), ["1.0.0.json"]);
    for (name, a) in &manifests_a {
        let b = &manifests_b[name];
        assert!(
            a == b,
            "manifests/{name} differs between two publications of the same input:\n--- repo-a\n{}\n--- repo-b\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }

    let objects_a = files_in(&repo_a.join("objects"), |_| true);
    let objects_b = files_in(&repo_b.join("objects"), |_| true);
    assert!(!objects_a.is_empty(), "no objects were published");
    assert_eq!(
        objects_a.keys().collect::<Vec<_>>(),
        objects_b.keys().collect::<Vec<_>>(),
        "the two publications hold different objects"
    );
    for (name, a) in &objects_a {
        assert!(
            a == &objects_b[name],
            "objects/{name} differs between the two publications"
        );
    }
}
