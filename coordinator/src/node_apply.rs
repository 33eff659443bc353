//! Running `ferry apply` (or `rollback`) on one node through the
//! transport, and following its JSON events while it runs.
//!
//! The node's stdout goes to a file of ours rather than a pipe
//! [`ShellCommand`] would keep only the tail of: the whole stream is the
//! node's report, and reading the file while the command runs gives the
//! coordinator each step (`fetched`, `staged`, `switched`, `live`) as it
//! happens, for the live view and the dashboard, the same over ssh as for
//! a local command.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use crate::execute::{judge_apply, NodeOutcome};
use crate::inventory::{Inventory, InventoryNode};
use crate::transport::{command_line, settled_version, shell_quote, RemoteCommand};
use ferry_node::events::{Event, EventLine};
use ferry_node::exit::Exit;
use ferry_node::shell::{Finished, ShellCommand};

/// Applies tried on a node whose lock is held by another operation.
const LOCKED_ATTEMPTS: u32 = 3;

/// How often a running node's events are read.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// The `event` of every complete JSON line of `text`, in order.
pub fn events(text: &str) -> Vec<Event> {
    event_lines(text)
        .into_iter()
        .map(|line| line.event)
        .collect()
}

/// Every JSON event line of `text`, with its fields, in order.
pub fn event_lines(text: &str) -> Vec<EventLine> {
    text.lines().filter_map(EventLine::parse).collect()
}

/// Runs `line` with its stdout in a file of our own in `capture_dir`,
/// calling `on_event` with each JSON event as the command prints it;
/// returns how it ended and the whole stdout.
///
/// The file is removed when the command ends. A coordinator killed
/// meanwhile leaves it, with the orphaned transport still writing to it:
/// that is why it lives in the rollout's own directory, which the next
/// coordinator of the rollout clears, rather than in the system's.
pub fn run_following(
    what: &str,
    line: &str,
    timeout: Duration,
    capture_dir: &Path,
    on_event: &(dyn Fn(&EventLine) + Sync),
) -> Result<(Finished, String), String> {
    let path = capture_dir.join(format!(
        "ferry-rollout-{}-{}.out",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    ));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{what}: cannot create {}: {e}", path.display()))?;
    let redirected = format!("( {line}\n) >{}", shell_quote(&path.to_string_lossy()));
    let done = AtomicBool::new(false);
    let (finished, stdout) = std::thread::scope(|scope| {
        let follower = scope.spawn(|| follow(&path, &done, on_event));
        let finished = ShellCommand {
            what,
            line: &redirected,
            env: Vec::new(),
            cwd: None,
            timeout,
        }
        .run();
        done.store(true, Ordering::SeqCst);
        let stdout = follower.join().unwrap_or_default();
        (finished, stdout)
    });
    let _ = std::fs::remove_file(&path);
    let finished = finished.map_err(|e| format!("{what}: `{line}` could not be started: {e}"))?;
    Ok((finished, stdout))
}

/// Reads `path` as it grows until `done`, then once more; hands each
/// complete line's event to `on_event` and returns everything read.
fn follow(path: &Path, done: &AtomicBool, on_event: &(dyn Fn(&EventLine) + Sync)) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut text = String::new();
    let mut consumed = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let mut chunk = Vec::new();
        if file.seek(SeekFrom::Start(text.len() as u64)).is_ok() {
            let _ = file.read_to_end(&mut chunk);
        }
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Only whole lines: a line being written is read next time.
        if let Some(end) = text.rfind('\n') {
            if end + 1 > consumed {
                for line in event_lines(&text[consumed..=end]) {
                    on_event(&line);
                }
                consumed = end + 1;
            }
        }
        if finished {
            if consumed < text.len() {
                for line in event_lines(&text[consumed..]) {
                    on_event(&line);
                }
            }
            return text;
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// What one node of a stage is to run, and until when.
#[derive(Debug, Clone, Copy)]
pub struct NodeWork<'a> {
    /// `ferry apply --version V [--allow-downgrade] --output json`.
    pub apply: RemoteCommand<'a>,
    /// `[rollout] apply_timeout_seconds`.
    pub timeout: Duration,
    /// `[rollout] stage_timeout_seconds` from the stage's start, if set.
    pub stage_ends: Option<std::time::Instant>,
}

impl NodeWork<'_> {
    /// How long the next command may run: the apply timeout, cut to what
    /// is left of the stage.
    pub fn time_left(&self) -> Duration {
        match self.stage_ends {
            Some(end) => self
                .timeout
                .min(end.saturating_duration_since(std::time::Instant::now())),
            None => self.timeout,
        }
    }
}

/// Runs `work.apply` on `node` and judges it.
pub fn apply(
    inventory: &Inventory,
    node: &InventoryNode,
    work: NodeWork<'_>,
    own_ferry: &Path,
    capture_dir: &Path,
    on_event: &(dyn Fn(&EventLine) + Sync),
) -> NodeOutcome {
    let apply = work.apply;
    let line = command_line(&inventory.transport, node, apply, own_ferry);
    let what = format!("apply on node {}", node.name);
    let mut attempts = 0;
    let (finished, stdout) = loop {
        let (finished, stdout) =
            match run_following(&what, &line, work.time_left(), capture_dir, on_event) {
                Err(e) => return NodeOutcome::Failed(e),
                Ok(ran) => ran,
            };
        // The node was busy with an operation of its own (its timer's
        // apply, an operator's repair): wait for it to end and try again,
        // rather than fail the node and roll back the cluster for it.
        attempts += 1;
        if finished.code != Some(i32::from(Exit::Locked.code())) || attempts >= LOCKED_ATTEMPTS {
            break (finished, stdout);
        }
        if let Err(e) = settled_version(&inventory.transport, node, own_ferry, work.time_left()) {
            return NodeOutcome::Failed(format!(
                "it was busy with another ferry operation, and then: {e}"
            ));
        }
    };
    let last = events(&stdout).pop();
    if finished.timed_out {
        let limit = match work.stage_ends {
            Some(end) if end <= std::time::Instant::now() => {
                "the stage's stage_timeout_seconds ran out".to_string()
            }
            _ => format!("apply_timeout_seconds = {}", work.timeout.as_secs()),
        };
        return NodeOutcome::Failed(format!(
            "its apply was stopped: {limit} ([rollout] in the inventory)"
        ));
    }
    match judge_apply(finished.code, finished.timed_out, last) {
        NodeOutcome::Failed(why) => {
            let tail = finished.output.trim();
            let tail = tail
                .char_indices()
                .rev()
                .nth(400)
                .map_or(tail, |(i, _)| &tail[i..]);
            NodeOutcome::Failed(if tail.is_empty() {
                why
            } else {
                format!("{why}; its output ends: {tail}")
            })
        }
        ok => ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_are_reported_while_the_command_runs_and_all_of_stdout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Mutex::new(Vec::new());
        let started = std::time::Instant::now();
        let line =
            r#"echo '{"event":"plan"}'; echo not json; sleep 0.6; echo '{"event":"applied"}'"#;
        let (finished, stdout) = run_following(
            "test",
            line,
            Duration::from_secs(10),
            dir.path(),
            &|e: &EventLine| seen.lock().unwrap().push((e.event, started.elapsed())),
        )
        .unwrap();
        assert!(finished.success());
        assert!(stdout.contains("not json") && stdout.ends_with("{\"event\":\"applied\"}\n"));
        let seen = seen.into_inner().unwrap();
        let names: Vec<Event> = seen.iter().map(|(e, _)| *e).collect();
        assert_eq!(names, [Event::Plan, Event::Applied]);
        // `plan` was seen before the command slept its 0.6 s out.
        assert!(seen[0].1 < Duration::from_millis(550), "{seen:?}");
        // The capture file is gone once the command ended.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_last_line_without_newline_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Mutex::new(Vec::new());
        let (_, stdout) = run_following(
            "test",
            r#"printf '{"event":"failed"}'; exit 3"#,
            Duration::from_secs(10),
            dir.path(),
            &|e: &EventLine| seen.lock().unwrap().push(e.event),
        )
        .unwrap();
        assert_eq!(events(&stdout), [Event::Failed]);
        assert_eq!(seen.into_inner().unwrap(), [Event::Failed]);
    }
}
