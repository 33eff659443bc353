//! Runs a command to completion, with a deadline, keeping what it printed.
//!
//! A hung `ferry` (a lock never released, a download that never ends) must
//! fail its test rather than hang the whole suite, so every command here has
//! a deadline after which it is killed. [`Output`] prints the command line,
//! exit code, stdout and stderr together, so that a failed assertion shows
//! everything needed to reproduce it by hand.

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one command may run before the test gives up on it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// The exit code, or `None` if a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts the exit code and returns `self` for further checks.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, Some(expected), "unexpected exit code\n{self}");
        self
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Asserts that stdout contains `needle` (case-insensitive).
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.to_lowercase().contains(&needle.to_lowercase()),
            "stdout does not contain {needle:?}\n{self}"
        );
        self
    }

    /// Asserts that stderr contains `needle` (case-insensitive).
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr does not contain {needle:?}\n{self}"
        );
        self
    }

    /// Asserts that stdout or stderr contains `needle` (case-insensitive):
    /// for messages whose stream the contract does not fix.
    #[track_caller]
    pub fn assert_stdout_or_stderr_contains(&self, needle: &str) -> &Self {
        let needle_lc = needle.to_lowercase();
        assert!(
            self.stdout.to_lowercase().contains(&needle_lc)
                || self.stderr.to_lowercase().contains(&needle_lc),
            "neither stdout nor stderr contains {needle:?}\n{self}"
        );
        self
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        match self.code {
            Some(code) => writeln!(f, "--- exit code: {code}")?,
            None => writeln!(f, "--- killed by a signal")?,
        }
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        writeln!(f, "--- stderr:\n{}", self.stderr)?;
        write!(f, "---")
    }
}

/// Runs `command` with stdin closed and [`DEFAULT_DEADLINE`].
pub fn run(command: &mut Command) -> Output {
    run_with_deadline(command, DEFAULT_DEADLINE)
}

/// Runs `command` with stdin closed; kills it and panics after `deadline`.
pub fn run_with_deadline(command: &mut Command, deadline: Duration) -> Output {
    let line = describe(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = Output {
                command: line,
                code: None,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            };
            panic!("the command did not finish within {deadline:?}; it was killed\n{out}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        command: line,
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The command as a shell line, with the environment it sets, for messages.
fn describe(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| {
            v.map(|v| {
                format!(
                    "{}={}",
                    k.to_string_lossy(),
                    shell_quote(&v.to_string_lossy())
                )
            })
        })
        .collect();
    parts.push(shell_quote(&command.get_program().to_string_lossy()));
    parts.extend(
        command
            .get_args()
            .map(|a| shell_quote(&a.to_string_lossy())),
    );
    parts.join(" ")
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
