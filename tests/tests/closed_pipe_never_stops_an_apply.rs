//! The promise: output is a report about the work, never part of it. A
//! reader that goes away — `ferry --output json apply | head -1`, `ferry
//! history | head`, a closed ssh channel — neither panics ferry nor stops
//! an operation between two of its steps: it finishes, records its outcome
//! and exits as it would have with someone reading. The same holds for a
//! closed stderr, where logs and messages go.
//!
//! Real pipes: the test spawns the binary with its stdout (and stderr) on a
//! pipe and closes the reading end, either after the first line (what
//! `head -1` does) or before the program writes anything, so that every
//! write it makes meets a closed pipe.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::DEFAULT_DEADLINE;

/// How the reader of a stream goes away.
#[derive(Clone, Copy)]
enum Reader {
    /// Reads the first line, then closes its end (`| head -1`).
    FirstLineOnly,
    /// Closes its end before the program writes anything.
    GoneFromTheStart,
}

/// What a program whose readers left did.
struct Finished {
    command: String,
    code: Option<i32>,
    first_line: Option<String>,
    /// Empty when stderr was closed.
    stderr: String,
}

impl Finished {
    #[track_caller]
    fn assert_completed(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "{} panicked\n{}",
            self.command,
            self.stderr
        );
        assert_eq!(
            self.code,
            Some(0),
            "{} did not finish cleanly\nfirst line: {:?}\nstderr:\n{}",
            self.command,
            self.first_line,
            self.stderr
        );
    }
}

/// A pipe whose reading end is already closed: every write fails (EPIPE).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer)
}

/// Runs `command` with its stdout read as `stdout` says and, with
/// `close_stderr`, its stderr closed from the start too.
fn run_with_reader_gone(mut command: Command, stdout: Reader, close_stderr: bool) -> Finished {
    let line = format!("{command:?}");
    command.stdin(Stdio::null());
    command.stdout(match stdout {
        Reader::FirstLineOnly => Stdio::piped(),
        Reader::GoneFromTheStart => closed_pipe(),
    });
    command.stderr(if close_stderr {
        closed_pipe()
    } else {
        Stdio::piped()
    });
    let mut child = command.spawn().expect("the binary starts");
    let stderr = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let first_line = child.stdout.take().map(|pipe| {
        let mut reader = BufReader::new(pipe);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        // `reader` is dropped here: the pipe's reading end closes.
        first
    });
    let code = wait_with_deadline(&mut child, &line);
    Finished {
        command: line,
        code,
        first_line,
        stderr: stderr
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
    }
}

fn wait_with_deadline(child: &mut Child, command: &str) -> Option<i32> {
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} did not finish within {DEFAULT_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A node on 1.0.0 with 1.1.0 published.
fn node_on_1_0_0() -> (Workspace, Node) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("n1");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    (ws, node)
}

#[track_caller]
fn assert_updated_to_1_1_0(ws: &Workspace, node: &Node) {
    node.assert_current("1.1.0", &ws.input(2));
    let status = node.status_json();
    assert_eq!(status["current_version"], "1.1.0", "{status:#}");
    let last = &status["last_operation"];
    assert_eq!(last["outcome"], "success", "{status:#}");
    assert_eq!(last["to_version"], "1.1.0", "{status:#}");
    assert!(
        status["operation_in_progress"].is_null(),
        "the apply left its journal behind: {status:#}"
    );
}

#[test]
fn a_json_apply_read_only_to_its_first_line_installs_the_release() {
    let (ws, node) = node_on_1_0_0();
    let finished = run_with_reader_gone(
        node.command(&["--output", "json", "apply"]),
        Reader::FirstLineOnly,
        false,
    );
    finished.assert_completed();
    let first: serde_json::Value =
        serde_json::from_str(finished.first_line.as_deref().unwrap_or_default())
            .expect("the first line is a JSON event");
    assert_eq!(first["event"], "plan", "{first}");
    assert_updated_to_1_1_0(&ws, &node);
}

#[test]
fn an_apply_with_stdout_and_stderr_closed_installs_the_release() {
    let (ws, node) = node_on_1_0_0();
    for output in ["human", "json"] {
        let mut command = node.command(&["--output", output, "apply"]);
        // Logs at debug: the pre-flight space check writes one, so the
        // logger meets the closed stderr too.
        command.env("FERRY_LOG", "debug");
        let finished = run_with_reader_gone(command, Reader::GoneFromTheStart, true);
        finished.assert_completed();
        if output == "human" {
            assert_updated_to_1_1_0(&ws, &node);
            node.ferry_ok(&["rollback"]);
            node.assert_current("1.0.0", &ws.input(1));
        }
    }
    assert_updated_to_1_1_0(&ws, &node);
}

#[test]
fn history_status_and_a_dry_run_into_a_closed_pipe_exit_0() {
    let (ws, node) = node_on_1_0_0();
    node.ferry_ok(&["apply"]);
    node.ferry_ok(&["rollback"]);
    node.ferry_ok(&["apply"]);
    assert_eq!(node.history_json().len(), 4);
    ws.publish("1.2.0", ferry_tests::fixtures::CHANNEL, &ws.input(3));

    for args in [
        &["history"][..],
        &["history", "--json"],
        &["status"],
        &["status", "--json"],
        &["apply", "--dry-run"],
        &["--output", "json", "apply", "--dry-run"],
        &["check", "--json"],
    ] {
        for reader in [Reader::FirstLineOnly, Reader::GoneFromTheStart] {
            let finished = run_with_reader_gone(node.command(args), reader, false);
            if args[0] == "check" {
                // An update is available: check's own status, not a panic.
                assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
                assert_eq!(finished.code, Some(10), "{}", finished.stderr);
            } else {
                finished.assert_completed();
            }
        }
    }
    // The dry runs changed nothing.
    node.assert_current("1.1.0", &ws.input(2));
    assert_eq!(node.history_json().len(), 4);
}

#[test]
fn ferry_publish_list_into_a_closed_pipe_exits_0() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    for reader in [Reader::FirstLineOnly, Reader::GoneFromTheStart] {
        for json in [true, false] {
            let mut command = ws.publisher();
            command.arg("list").arg("--repo").arg(&ws.repo);
            if json {
                command.arg("--json");
            }
            run_with_reader_gone(command, reader, false).assert_completed();
        }
    }
}
