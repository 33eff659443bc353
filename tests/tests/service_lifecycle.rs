//! The promise: `ferry apply` ends with the new release serving and
//! healthy, or with the old one serving and healthy again — never with a
//! node whose files moved on while its service is down or broken.
//!
//! The service is the real demo service (`examples/demo-service`), started
//! by the node's `restart_command` from `current`, answering on 127.0.0.1.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_demo_service::commands::restart_command;
use ferry_tests::demo::{demo_release, free_port};
use ferry_tests::fixtures::{Node, Workspace, CHANNEL};

/// The demo service of one node: where it listens and its pid file.
struct Service {
    port: u16,
    pid_file: PathBuf,
    log: PathBuf,
}

impl Service {
    fn new(node: &Node) -> Service {
        Service {
            port: free_port(),
            pid_file: node.dir.join("demo.pid"),
            log: node.dir.join("demo.log"),
        }
    }

    /// Stops the running instance (if any) and starts the one in `current`:
    /// what a `systemctl restart` would do.
    fn restart_script(&self, node: &Node) -> String {
        restart_command(
            &node.root,
            &format!("127.0.0.1:{}", self.port),
            &self.pid_file,
            &self.log,
        )
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// `GET path` once; `None` when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Some((status, body))
    }

    /// The version the service answers with, waiting up to 5 s for it to.
    #[track_caller]
    fn version(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((200, body)) = self.get("/version") {
                return body.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the demo service does not answer /version"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// A node on 1.0.0 with its demo service running, restarted by ferry, health
/// checked at `/health` with the version in the body.
fn node_running_v1(ws: &Workspace) -> (Node, Service) {
    let node = ws.node("n1");
    let service = Service::new(&node);
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!(
        "\n[service]\nstrategy = \"restart\"\nrestart_command = {:?}\ncommand_timeout_seconds = 20\nhook_timeout_seconds = 10\n\
         [health]\nurl = \"http://127.0.0.1:{}/health\"\nexpect_version = true\ninterval_ms = 100\nretries = 15\ntimeout_seconds = 10\n",
        service.restart_script(&node),
        service.port
    ));
    fs::write(&node.config, config).unwrap();
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    assert_eq!(service.version(), "1.0.0");
    (node, service)
}

fn last_outcome(node: &Node) -> (String, String) {
    let history = node.history_json();
    let last = history.last().expect("an operation in history");
    (
        last["outcome"].as_str().unwrap().to_string(),
        last["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_healthy_update_goes_live() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let (node, service) = node_running_v1(&ws);
    let old_pid = service.pid();

    node.ferry_ok(&["apply"]);
    assert_eq!(node.current_version().as_deref(), Some("2.0.0"));
    assert_eq!(service.version(), "2.0.0");
    assert_ne!(service.pid(), old_pid, "the service was restarted");
    let (status, body) = service.get("/health").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_outcome(&node).0, "success");
}

#[test]
fn an_unhealthy_release_is_rolled_back_and_the_old_one_serves_again() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", false));
    let (node, service) = node_running_v1(&ws);

    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(6), "a rolled-back update exits 6\n{out}");
    assert!(out.stderr.contains("not healthy"), "{out}");
    assert!(out.stderr.contains("1.0.0 is healthy again"), "{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(service.version(), "1.0.0");
    let (outcome, message) = last_outcome(&node);
    assert_eq!(outcome, "rolled-back", "{message}");
    assert!(message.contains("2.0.0 is not healthy"), "{message}");
    // The failure is visible at a glance.
    let status = node.status_json();
    assert_eq!(status["current_version"], "1.0.0", "{status:#}");
}

#[test]
fn a_failing_pre_apply_hook_stops_the_update_before_the_switch() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let seen = ws.dir.join("hook-env");
    let hook = format!(
        "echo \"$FERRY_FROM_VERSION $FERRY_TO_VERSION $FERRY_RELEASE_DIR\" > {}; echo 'database is busy' >&2; exit 7",
        seen.display()
    );
    let (node, service) = node_running_v1(&ws);
    let text = fs::read_to_string(&node.config).unwrap().replacen(
        "hook_timeout_seconds = 10\n",
        &format!("hook_timeout_seconds = 10\npre_apply = {hook:?}\n"),
        1,
    );
    fs::write(&node.config, text).unwrap();
    let pid = service.pid();

    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("pre_apply hook"), "{out}");
    assert!(out.stderr.contains("database is busy"), "{out}");
    assert!(out.stderr.contains("1.0.0 still runs"), "{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(service.pid(), pid, "the service was not touched");
    assert_eq!(service.version(), "1.0.0");
    let env = fs::read_to_string(&seen).unwrap();
    assert_eq!(
        env.trim(),
        format!("1.0.0 2.0.0 {}", node.release_dir("2.0.0").display())
    );
    assert_eq!(last_outcome(&node).0, "failed");
}

#[test]
fn a_failing_post_apply_hook_rolls_the_update_back() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let rollback_log = ws.dir.join("rollback-hooks");
    let extra = format!(
        "post_apply = \"exit 3\"\npre_rollback = \"echo pre $FERRY_FROM_VERSION $FERRY_TO_VERSION >> {0}\"\npost_rollback = \"echo post $FERRY_FROM_VERSION $FERRY_TO_VERSION >> {0}\"\n",
        rollback_log.display()
    );
    let (node, service) = node_running_v1(&ws);
    let text = fs::read_to_string(&node.config).unwrap().replacen(
        "hook_timeout_seconds = 10\n",
        &format!("hook_timeout_seconds = 10\n{extra}"),
        1,
    );
    fs::write(&node.config, text).unwrap();

    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(6), "{out}");
    assert!(out.stderr.contains("post_apply hook"), "{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(service.version(), "1.0.0");
    assert_eq!(
        fs::read_to_string(&rollback_log).unwrap(),
        "pre 2.0.0 1.0.0\npost 2.0.0 1.0.0\n"
    );
    assert_eq!(last_outcome(&node).0, "rolled-back");
}

#[test]
fn a_hook_that_hangs_is_killed_at_its_timeout() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let (node, service) = node_running_v1(&ws);
    let text = fs::read_to_string(&node.config).unwrap().replacen(
        "hook_timeout_seconds = 10\n",
        "hook_timeout_seconds = 1\npre_apply = \"sleep 60\"\n",
        1,
    );
    fs::write(&node.config, text).unwrap();
    let started = Instant::now();
    let out = node.ferry(&["apply"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("timed out after 1s"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(service.version(), "1.0.0");
}

/// `ferry rollback` by an operator restarts the restored release too.
#[test]
fn an_operator_rollback_restarts_the_old_release() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", true));
    let (node, service) = node_running_v1(&ws);
    node.ferry_ok(&["apply"]);
    assert_eq!(service.version(), "2.0.0");
    node.ferry_ok(&["rollback"]);
    assert_eq!(service.version(), "1.0.0");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
}
