//! A node running the demo service with `strategy = "blue-green"` inside a
//! network namespace, for the blue-green tests: ferry run in the
//! namespace, and the demo instances counted from their pid files and
//! from `/proc`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_demo_service::commands::blue_green_commands;

use crate::binaries::{ferry, ferry_with_fault_injection};
use crate::crash_walk;
use crate::demo::demo_release;
use crate::fixtures::{Node, Workspace, CHANNEL};
use crate::netns::NetworkNamespace;
use crate::run::{run, Output};

/// Where the demo instances listen, inside the namespace.
pub const ADDR: &str = "127.0.0.1:8080";

/// A node configured for blue-green with the demo service, inside `ns`.
pub struct BlueGreenNode<'a> {
    pub ns: &'a NetworkNamespace,
    pub node: Node,
    pub pid_dir: PathBuf,
}

impl<'a> BlueGreenNode<'a> {
    /// Node `name` of `ws`, its health gate asking for the version
    /// (`expect_version = true`).
    pub fn new(ws: &Workspace, ns: &'a NetworkNamespace) -> BlueGreenNode<'a> {
        Self::named(ws, ns, "n1")
    }

    pub fn named(ws: &Workspace, ns: &'a NetworkNamespace, name: &str) -> BlueGreenNode<'a> {
        let node = ws.node(name);
        let pid_dir = node.dir.join("pids");
        fs::create_dir_all(&pid_dir).unwrap();
        let (start, stop) = blue_green_commands(ADDR, &pid_dir, &node.dir.join("demo.log"));
        let mut config = fs::read_to_string(&node.config).unwrap();
        config.push_str(&format!(
            "\n[service]\nstrategy = \"blue-green\"\nstart_command = {start:?}\nstop_command = {stop:?}\ncommand_timeout_seconds = 20\n\
             [health]\nurl = \"http://{ADDR}/health\"\nexpect_version = true\ninterval_ms = 50\nretries = 100\ntimeout_seconds = 15\n"
        ));
        fs::write(&node.config, config).unwrap();
        BlueGreenNode { ns, node, pid_dir }
    }

    /// Rewrites the node's configuration: `from` becomes `to`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let config = fs::read_to_string(&self.node.config).unwrap();
        assert!(config.contains(from), "{from:?} not in\n{config}");
        fs::write(&self.node.config, config.replace(from, to)).unwrap();
    }

    /// `ferry ARGS` inside the namespace.
    pub fn ferry(&self, args: &[&str]) -> Output {
        run(&mut self.ferry_command(ferry(), args))
    }

    pub fn ferry_command(&self, binary: &Path, args: &[&str]) -> Command {
        ferry_in(self.ns, binary, &self.node.config, args)
    }

    /// The fault-injection build of `ferry ARGS` inside the namespace.
    pub fn fault_command(&self, args: &[&str]) -> Command {
        self.ferry_command(ferry_with_fault_injection(), args)
    }

    /// Live processes of `version`'s demo service, whatever their pid
    /// files say (one started twice overwrites its pid file).
    pub fn instances(&self, version: &str) -> usize {
        let pid_file = self.pid_dir.join(format!("demo-{version}.pid"));
        let needle = pid_file.to_string_lossy().into_owned();
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == needle.as_bytes())
            })
            .count()
    }

    /// Versions with a running instance (a pid file whose process lives).
    pub fn running(&self) -> Vec<String> {
        let mut versions: Vec<String> = fs::read_dir(&self.pid_dir)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let pid = fs::read_to_string(&path).ok()?;
                let alive = Command::new("kill")
                    .args(["-0", pid.trim()])
                    .status()
                    .ok()?
                    .success();
                let name = path.file_name()?.to_str()?.to_string();
                alive.then(|| {
                    name.trim_start_matches("demo-")
                        .trim_end_matches(".pid")
                        .to_string()
                })
            })
            .collect();
        versions.sort();
        versions
    }
}

impl Drop for BlueGreenNode<'_> {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.pid_dir) {
            for entry in entries.flatten() {
                if let Ok(pid) = fs::read_to_string(entry.path()) {
                    let _ = Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
    }
}

/// A node serving healthy 1.0.0, with 2.0.0 published unhealthy and a
/// health gate short enough to fail it in 3 s.
pub fn serving_1_0_0_with_failing_2_0_0(ns: &NetworkNamespace) -> (Workspace, BlueGreenNode<'_>) {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &demo_release(&ws, "1.0.0", true));
    ws.publish("2.0.0", CHANNEL, &demo_release(&ws, "2.0.0", false));
    let node = BlueGreenNode::new(&ws, ns);
    node.edit_config(
        "retries = 100\ntimeout_seconds = 15",
        "retries = 20\ntimeout_seconds = 3",
    );
    node.ferry(&["apply", "--version", "1.0.0"])
        .assert_success();
    (ws, node)
}

/// `binary --config CONFIG ARGS…` (a build of `ferry`) inside `ns`, with
/// none of the environment's fault variables.
pub fn ferry_in(ns: &NetworkNamespace, binary: &Path, config: &Path, args: &[&str]) -> Command {
    let mut command = ns.command(binary);
    crash_walk::clean(&mut command)
        .arg("--config")
        .arg(config)
        .args(args);
    command
}

/// A namespace for a blue-green test (`None`: not root, the test skips),
/// with `net.ipv4.tcp_migrate_req=1` so a closing SO_REUSEPORT listener
/// hands its queue to its sibling.
pub fn namespace(test: &str) -> Option<NetworkNamespace> {
    let ns = NetworkNamespace::create_or_skip(test)?;
    ns.sysctl("net.ipv4.tcp_migrate_req", "1")
        .unwrap_or_else(|e| panic!("{e}"));
    Some(ns)
}
