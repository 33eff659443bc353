//! Running operator-supplied commands: hooks, service commands, health
//! commands, migrations and pre-flight checks.
//!
//! Every one of them is a line of shell from the configuration or a script
//! from a signed release, run with `/bin/sh -c`, and every one can hang: a
//! `systemctl restart` waiting on a stuck unit, a migration waiting on a
//! lock. So each run has a deadline. On the deadline the whole process
//! group gets SIGTERM, then SIGKILL after a grace period, so a hook that
//! forked children does not leave them running with the node's lock
//! released. Output is captured (its tail is kept for the error message and
//! the log), never inherited: `--output json` owns stdout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Bytes of a command's output kept for messages.
const OUTPUT_TAIL: usize = 4096;

/// How long the output readers get after the command exits.
const READER_GRACE: Duration = Duration::from_millis(300);

/// How long a command has after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A shell command line and how to run it.
#[derive(Debug, Clone)]
pub struct ShellCommand<'a> {
    /// What the command is, for messages: "pre_apply hook", "migration 0003 up".
    pub what: &'a str,
    pub line: &'a str,
    pub env: Vec<(String, String)>,
    pub cwd: Option<&'a Path>,
    pub timeout: Duration,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub timed_out: bool,
    /// The last bytes of stdout and stderr together, lossily decoded.
    pub output: String,
    pub duration: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// "exited with status 3: <output tail>", "timed out after 30s", for
    /// error messages.
    pub fn describe(&self, timeout: Duration) -> String {
        let status = if self.timed_out {
            format!("timed out after {}s and was killed", timeout.as_secs())
        } else {
            match self.code {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            }
        };
        let output = self.output.trim();
        if output.is_empty() {
            status
        } else {
            format!("{status}: {}", last_lines(output, 5))
        }
    }
}

/// Why a command did not run to success: it could not be started, or it
/// ended badly (status, signal or deadline, with its output's tail). The
/// message names the command (`pre_apply hook `...``) for the operator.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("{what} `{line}` could not be started: {source}")]
    NotStarted {
        what: String,
        line: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} `{line}` {}", finished.describe(*timeout))]
    Failed {
        what: String,
        line: String,
        finished: Box<Finished>,
        timeout: Duration,
    },
}

impl CommandError {
    /// How the command ended, when it ran at all.
    pub fn finished(&self) -> Option<&Finished> {
        match self {
            CommandError::NotStarted { .. } => None,
            CommandError::Failed { finished, .. } => Some(finished),
        }
    }
}

impl ShellCommand<'_> {
    /// Runs the command to its end or its deadline. An error only when it
    /// cannot be started at all.
    pub fn run(&self) -> std::io::Result<Finished> {
        let started = Instant::now();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(self.line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // Its own process group, so the deadline reaches its children.
            .process_group(0);
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut stream| {
            let tail = Arc::new(Mutex::new(Vec::new()));
            let shared = Arc::clone(&tail);
            let reader = thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = shared.lock().unwrap_or_else(|p| p.into_inner());
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * OUTPUT_TAIL {
                        let excess = tail.len() - OUTPUT_TAIL;
                        tail.drain(..excess);
                    }
                }
            });
            (reader, tail)
        })
        .collect::<Vec<_>>();
        let pgid = child.id() as i32;
        let deadline = started + self.timeout;
        let mut timed_out = false;
        let mut killed_at: Option<Instant> = None;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            let now = Instant::now();
            match killed_at {
                None if now >= deadline => {
                    timed_out = true;
                    signal_group(pgid, rustix::process::Signal::TERM);
                    killed_at = Some(now);
                }
                Some(at) if now >= at + KILL_GRACE => {
                    signal_group(pgid, rustix::process::Signal::KILL);
                    let status = child.wait()?;
                    break status;
                }
                _ => {}
            }
            thread::sleep(Duration::from_millis(10));
        };
        if timed_out {
            // Children that outlived the shell still hold the pipes.
            signal_group(pgid, rustix::process::Signal::KILL);
        }
        // A command that starts a daemon (`start_command`) leaves it holding
        // the pipes: the shell's exit, not the pipes' end, is the end of the
        // command. Whatever the readers have by then, shortly after, is the
        // output; a reader still blocked on the daemon is left behind.
        let mut output = Vec::new();
        let collect_until = Instant::now() + READER_GRACE;
        for (reader, tail) in readers {
            while !reader.is_finished() && Instant::now() < collect_until {
                thread::sleep(Duration::from_millis(5));
            }
            output.extend(tail.lock().unwrap_or_else(|p| p.into_inner()).iter());
        }
        if output.len() > OUTPUT_TAIL {
            output.drain(..output.len() - OUTPUT_TAIL);
        }
        Ok(Finished {
            code: status.code(),
            timed_out,
            output: String::from_utf8_lossy(&output).into_owned(),
            duration: started.elapsed(),
        })
    }

    /// Runs the command; `Err` naming it, its status and its output
    /// unless it exited 0 in time.
    pub fn run_checked(&self) -> Result<Finished, CommandError> {
        let finished = self.run().map_err(|source| CommandError::NotStarted {
            what: self.what.to_string(),
            line: self.line.to_string(),
            source,
        })?;
        if finished.success() {
            Ok(finished)
        } else {
            Err(CommandError::Failed {
                what: self.what.to_string(),
                line: self.line.to_string(),
                finished: Box::new(finished),
                timeout: self.timeout,
            })
        }
    }
}

fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        // Already gone is fine.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str, timeout_ms: u64) -> ShellCommand<'_> {
        ShellCommand {
            what: "test command",
            line,
            env: vec![("FERRY_TO_VERSION".into(), "2.0.0".into())],
            cwd: None,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn success_status_and_output_are_reported() {
        let ok = command("echo to=$FERRY_TO_VERSION", 5000).run().unwrap();
        assert!(ok.success());
        assert_eq!(ok.output.trim(), "to=2.0.0");
        let failed = command("echo broken >&2; exit 3", 5000)
            .run_checked()
            .unwrap_err();
        assert_eq!(failed.finished().and_then(|f| f.code), Some(3));
        let message = failed.to_string();
        assert!(
            message.starts_with("test command `echo broken >&2; exit 3` exited with status 3"),
            "{message}"
        );
        assert!(message.contains("broken"), "{message}");
    }

    #[test]
    fn a_command_that_leaves_a_daemon_behind_returns_when_the_shell_exits() {
        let started = Instant::now();
        let finished = command("echo started; sleep 20 &", 5000).run().unwrap();
        assert!(finished.success());
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(finished.output.trim(), "started");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        let started = Instant::now();
        let finished = command("sleep 30 & sleep 30; echo never", 200)
            .run()
            .unwrap();
        assert!(finished.timed_out);
        assert!(!finished.success());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(finished
            .describe(Duration::from_millis(200))
            .contains("timed out"));
    }
}
