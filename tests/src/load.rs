//! Load for restart tests: count every request a restart drops.
//!
//! The generator itself lives in the demo crate
//! (`ferry_demo_service::load`) because `demo-load`, the same generator as
//! a program, must be able to run where a test thread cannot: inside a
//! network namespace. This module re-exports it for in-process use and
//! drives the program for the rest.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use ferry_demo_service::load::{LoadGenerator, LoadReport};

/// Opens `n` connections to `addr`, each left idle after one keep-alive
/// request the server answered (so the server, not just its backlog,
/// holds it). Panics, saying which connection failed, if one does.
pub fn hold_idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    ferry_demo_service::load::hold_idle_connections(addr, n)
        .unwrap_or_else(|e| panic!("cannot hold {n} idle connections to {addr}: {e}"))
}

/// A `demo-load` process running in the background.
pub struct RunningLoad {
    child: Option<Child>,
    command: String,
}

/// Starts `command` (`demo-load`, possibly behind `ip netns exec`) with
/// `--addr`, `--workers` and `--seconds`.
pub fn start_demo_load(
    mut command: Command,
    addr: SocketAddr,
    workers: usize,
    duration: Duration,
) -> RunningLoad {
    command
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--seconds")
        .arg(duration.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = format!("{command:?}");
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    RunningLoad {
        child: Some(child),
        command: line,
    }
}

impl RunningLoad {
    /// Waits for the run to end; its report.
    pub fn finish(mut self) -> LoadReport {
        let child = self.child.take().expect("finish is called once");
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.command));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "`{}` failed ({}):\n{stdout}\n{}",
            self.command,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no load report ({e}): {stdout:?}",
                self.command
            )
        })
    }
}

impl Drop for RunningLoad {
    /// A test that panics before `finish` leaves no generator running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
