//! The threat: a named pipe where the node expects a file. Opening a fifo
//! for reading blocks until a writer comes, and no timeout applies to a
//! `file://` repository or a bundle, so a fifo planted at `index.json` or
//! `roots/1.json` of a local repository, or handed over as `--bundle`,
//! held `ferry check` and `ferry apply` (and the node's lock) for ever.
//! The node must refuse anything that is not a regular file, at once, with
//! an error naming the path.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::fixtures::Workspace;
use ferry_tests::run::{run_with_deadline, Output};

/// Far more than a refusal takes; far less than "for ever".
const PROMPTLY: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[track_caller]
fn assert_refused_promptly(out: &Output, started: Instant, path: &Path) {
    assert!(started.elapsed() < PROMPTLY, "{out}");
    assert!(
        out.code.is_some_and(|code| code != 0 && code != 101),
        "expected a clean failure:\n{out}"
    );
    out.assert_stderr_contains(&path.display().to_string());
    out.assert_stderr_contains("not a regular file");
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn a_fifo_in_a_file_repository_is_refused_at_once() {
    for file in ["index.json", "roots/1.json"] {
        let ws = Workspace::new();
        ws.publish_v1_v2();
        let node = ws.node("a");
        let fifo = ws.repo.join(file);
        std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
        mkfifo(&fifo);
        for command in ["check", "apply"] {
            let started = Instant::now();
            let out = run_with_deadline(&mut node.command(&[command]), PROMPTLY);
            assert_refused_promptly(&out, started, &fifo);
        }
        assert_eq!(node.current_version(), None, "nothing was installed");
    }
}

#[test]
fn a_fifo_given_as_the_bundle_is_refused_at_once() {
    let ws = Workspace::new();
    let node = ws.node("a");
    let fifo = ws.dir.join("bundle.tar");
    mkfifo(&fifo);
    let started = Instant::now();
    let out = run_with_deadline(
        &mut node.command(&["apply", "--bundle", fifo.to_str().unwrap()]),
        PROMPTLY,
    );
    assert_refused_promptly(&out, started, &fifo);
}
