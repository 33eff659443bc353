//! The promise: the node's log lines are plain text wherever they are
//! kept. Warnings written to a file, a pipe or journald carried ANSI colour
//! escapes, noise in every `grep` and log viewer (and a terminal
//! escape sequence replayed by whoever `cat`s the log). Colour only when
//! stderr is a terminal, and never with `NO_COLOR` set.
//!
//! The fixtures set `NO_COLOR=1` for every run; these tests remove it, or
//! they could not fail.

use std::fs::{self, File};
use std::process::{Command, Stdio};

use ferry_tests::fixtures::{Node, NodeConfig, Workspace};

const ESC: u8 = 0x1b;
/// `ferry check`'s exit code when an update is available.
const UPDATE_AVAILABLE: i32 = 10;

/// A node whose primary repository is unreachable and whose mirror works:
/// `check` finds the update and warns about the primary.
fn warning_node(ws: &Workspace) -> Node {
    let mut config = NodeConfig::new("http://127.0.0.1:1/ferry".into(), &ws.public_key);
    config.mirrors = vec![ws.repo_url()];
    config.retries = Some(0);
    ws.node_with("mirrored", config)
}

/// Runs `command` with stderr into a file; returns the file's bytes.
fn stderr_to_file(ws: &Workspace, command: &mut Command) -> Vec<u8> {
    let log = ws.dir.join("stderr.log");
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .status()
        .expect("ferry runs");
    assert_eq!(
        status.code(),
        Some(UPDATE_AVAILABLE),
        "{}",
        String::from_utf8_lossy(&fs::read(&log).unwrap())
    );
    fs::read(&log).unwrap()
}

#[test]
fn warnings_into_a_file_carry_no_colour_codes() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = warning_node(&ws);
    for no_color in [None, Some("")] {
        let mut command = node.command(&["check"]);
        match no_color {
            None => command.env_remove("NO_COLOR"),
            Some(value) => command.env("NO_COLOR", value),
        };
        let log = stderr_to_file(&ws, &mut command);
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("WARN"), "the command must warn:\n{text}");
        assert!(
            !log.contains(&ESC),
            "NO_COLOR={no_color:?}: an escape in the log file:\n{text:?}"
        );
    }
}

/// On a terminal (`script` gives the command a pty) the warning is in
/// colour, unless `NO_COLOR` is set: the check above is not passing only
/// because colour is off everywhere.
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to give ferry a terminal");
    }
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = warning_node(&ws);
    let line = format!(
        "{} --config {} check",
        ferry_tests::binaries::ferry().display(),
        node.config.display()
    );
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let typescript = ws.dir.join("typescript");
        let mut command = Command::new("script");
        command
            .args(["-q", "-e", "-c", &line])
            .arg(&typescript)
            .env_remove("FERRY_CONFIG");
        match no_color {
            None => command.env_remove("NO_COLOR"),
            Some(value) => command.env("NO_COLOR", value),
        };
        let out = command.stdin(Stdio::null()).output().expect("script runs");
        assert_eq!(out.status.code(), Some(UPDATE_AVAILABLE), "{out:?}");
        let seen = fs::read(&typescript).unwrap();
        let text = String::from_utf8_lossy(&seen);
        assert!(text.contains("WARN"), "{text}");
        assert_eq!(
            seen.contains(&ESC),
            coloured,
            "NO_COLOR={no_color:?}:\n{text:?}"
        );
    }
}
