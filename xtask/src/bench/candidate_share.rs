//! `cargo xtask bench lifecycle`, blue-green: the share of live requests
//! the candidate answers while ferry's health gate is still checking it.
//!
//! Both instances listen on one port with SO_REUSEPORT, so the kernel hands
//! new connections to the candidate before ferry has decided anything; the
//! README states how many. The window is marked by the node's own
//! commands: `start_command` first writes the time it starts the
//! candidate, `stop_command` the time ferry retires the old instance, which
//! it does only once the candidate passed its gate. Clients sending `GET
//! /version` on a new connection each record when they sent it and which
//! version answered; the requests sent inside the window are counted.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

/// Clients sending requests during each measured update, as in the
/// under-load measurement.
const WORKERS: usize = 4;

/// Where the node's commands write their times.
pub struct Marks {
    dir: PathBuf,
}

impl Marks {
    pub fn new(dir: &Path) -> Result<Marks> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Marks {
            dir: dir.to_path_buf(),
        })
    }

    /// `start_command` with the candidate's start time written first.
    pub fn start(&self, command: &str) -> String {
        marked(&self.dir.join("start"), command)
    }

    /// `stop_command` with the time the gate passed written first.
    pub fn stop(&self, command: &str) -> String {
        marked(&self.dir.join("gate"), command)
    }

    fn clear(&self) -> Result<()> {
        for name in ["start", "gate"] {
            match fs::remove_file(self.dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context(format!("cannot clear the {name} mark"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The first time written to `name` (Unix seconds).
    fn read(&self, name: &str) -> Result<f64> {
        let path = self.dir.join(name);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no {name} mark in {}: did ferry run the command?",
                path.display()
            )
        })?;
        let first = text.lines().next().unwrap_or("").trim();
        first
            .parse()
            .with_context(|| format!("{} holds {first:?}, not a time", path.display()))
    }
}

/// `command`, after appending the time (`date +%s.%N`) to `mark`.
fn marked(mark: &Path, command: &str) -> String {
    format!("date +%s.%N >> '{}'; {command}", mark.display())
}

/// One update's window and who answered in it.
pub struct Window {
    /// From the candidate's start to its gate passing.
    pub seconds: f64,
    /// Requests sent in the window that got a version back.
    pub answered: u64,
    /// Of those, the ones the candidate answered.
    pub by_candidate: u64,
    /// Requests sent from the candidate's first answer to the gate, and
    /// the candidate's part of them: the split between two listeners.
    pub answered_once_listening: u64,
    pub by_candidate_once_listening: u64,
    /// Requests sent in the window that failed.
    pub failed: u64,
}

impl Window {
    /// The candidate's share of the answered requests of the window.
    pub fn share(&self) -> Option<f64> {
        ratio(self.by_candidate, self.answered)
    }

    /// Its share once it was listening.
    pub fn share_once_listening(&self) -> Option<f64> {
        ratio(
            self.by_candidate_once_listening,
            self.answered_once_listening,
        )
    }
}

/// `part / whole`, when there is a whole.
pub fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Runs `update` (a blue-green `ferry apply` to `candidate`) under load and
/// counts who answered inside the window the marks give.
pub fn measure(
    addr: SocketAddr,
    marks: &Marks,
    candidate: &str,
    update: impl FnOnce() -> Result<()>,
) -> Result<Window> {
    marks.clear()?;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = now();
                    let version = version_at(addr);
                    if version.is_none() {
                        thread::sleep(Duration::from_millis(1));
                    }
                    samples.push((sent, version));
                }
                samples
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let updated = update();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.join().unwrap_or_default());
    }
    updated?;
    let (start, gate) = (marks.read("start")?, marks.read("gate")?);
    ensure!(
        gate >= start,
        "the gate mark ({gate}) is before the start mark ({start})"
    );
    Ok(count(&samples, start, gate, candidate))
}

fn count(samples: &[(f64, Option<String>)], start: f64, gate: f64, candidate: &str) -> Window {
    let in_window = |t: f64| t >= start && t < gate;
    let first_answer = samples
        .iter()
        .filter(|(t, v)| in_window(*t) && v.as_deref() == Some(candidate))
        .map(|(t, _)| *t)
        .min_by(f64::total_cmp);
    let mut window = Window {
        seconds: gate - start,
        answered: 0,
        by_candidate: 0,
        answered_once_listening: 0,
        by_candidate_once_listening: 0,
        failed: 0,
    };
    for (sent, version) in samples.iter().filter(|(t, _)| in_window(*t)) {
        let Some(version) = version else {
            window.failed += 1;
            continue;
        };
        let by_candidate = version == candidate;
        window.answered += 1;
        window.by_candidate += u64::from(by_candidate);
        if first_answer.is_some_and(|first| *sent >= first) {
            window.answered_once_listening += 1;
            window.by_candidate_once_listening += u64::from(by_candidate);
        }
    }
    window
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The version a fresh connection's `GET /version` got, if it got one.
fn version_at(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg says them.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, v: Option<&str>) -> (f64, Option<String>) {
        (t, v.map(str::to_string))
    }

    #[test]
    fn only_requests_sent_inside_the_window_count() {
        let samples = [
            sample(9.0, Some("1.0.0")),
            sample(10.0, Some("1.0.0")),
            sample(10.1, None),
            sample(10.2, Some("1.0.1")),
            sample(10.3, Some("1.0.0")),
            sample(10.4, Some("1.0.1")),
            sample(11.0, Some("1.0.1")),
        ];
        let w = count(&samples, 10.0, 11.0, "1.0.1");
        assert_eq!((w.answered, w.by_candidate, w.failed), (4, 2, 1));
        assert_eq!(w.share(), Some(0.5));
        // From the candidate's first answer (10.2): 10.2, 10.3, 10.4.
        assert_eq!(
            (w.answered_once_listening, w.by_candidate_once_listening),
            (3, 2)
        );
    }

    #[test]
    fn a_window_without_answers_has_no_share() {
        let w = count(&[sample(5.0, Some("1.0.0"))], 10.0, 11.0, "1.0.1");
        assert_eq!((w.share(), w.share_once_listening()), (None, None));
    }
}
