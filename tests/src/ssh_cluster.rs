//! Five nodes reached over real ssh, for the coordinator tests of the
//! `ssh` transport.
//!
//! The nodes are [`five_nodes_on_1_0_0`]'s (own install root, state
//! directory and `ferry.toml` each, 1.0.0 installed, 1.1.0 published), and
//! a [`TestSshd`] serves them all from this machine. The inventory names
//! each node by an ssh host alias (`n1`…`n5`) that the client's
//! `ssh_config` sends to the test sshd, so a test can make one node
//! unreachable by pointing its alias elsewhere. On the node side ferry
//! runs with sshd's environment, not the test's: everything it needs is
//! in its `ferry.toml` (`config = ".../nodes/{name}/ferry.toml"`).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::binaries;
use crate::cluster::{coordinator, five_nodes_on_1_0_0};
use crate::fixtures::{Node, Workspace};
use crate::run::Output;
use crate::sshd::TestSshd;

/// The version every test rolls out (the nodes run 1.0.0).
pub const TARGET: &str = "1.1.0";

pub struct SshCluster {
    pub ws: Workspace,
    /// `n1` (the leader) … `n5`.
    pub nodes: Vec<Node>,
    pub sshd: TestSshd,
}

/// One entry of a node's history: operation, target version, end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOperation {
    pub operation: String,
    pub to_version: String,
    pub finished_at: Timestamp,
}

impl SshCluster {
    /// The cluster and its sshd, or `None` (outside CI) when sshd cannot
    /// run here. Also checks that ssh really reaches the nodes' ferry.
    pub fn start_or_skip(test: &str) -> Option<SshCluster> {
        let (ws, nodes) = five_nodes_on_1_0_0();
        let sshd = TestSshd::start_or_skip(test, &ws.dir.join("sshd"))?;
        let cluster = SshCluster { ws, nodes, sshd };
        let probe = cluster.sshd.ssh("n1", "echo ferry-ssh-ok");
        assert!(
            String::from_utf8_lossy(&probe.stdout).contains("ferry-ssh-ok"),
            "ssh to the test sshd failed: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&probe.stderr),
            cluster.sshd.log()
        );
        Some(cluster)
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Appends `toml` (a `[service]` or `[health]` table) to the node's
    /// `ferry.toml`.
    pub fn configure(&self, name: &str, toml: &str) {
        let node = self.node(name);
        let mut text = fs::read_to_string(&node.config).unwrap();
        text.push_str(&format!("\n{toml}\n"));
        fs::write(&node.config, text).unwrap();
    }

    /// Gives the node a health gate that fails on [`TARGET`] and passes
    /// on anything else: the new version is broken on that node only,
    /// and its own rollback to 1.0.0 is healthy again.
    pub fn break_target_health(&self, name: &str) {
        let current = self.node(name).root.join("current");
        self.configure(
            name,
            &format!(
                "[health]\ncommand = \"test \\\"$(basename \\\"$(readlink {})\\\")\\\" != {TARGET}\"\n\
                 interval_ms = 50\nretries = 3\ntimeout_seconds = 5\n",
                current.display()
            ),
        );
    }

    /// `cluster.toml`: the five nodes by alias, n1 the leader, the ssh
    /// transport to the test sshd, and `rollout` as the `[rollout]` table.
    pub fn inventory(&self, rollout: &str) -> PathBuf {
        let mut text = String::new();
        for node in &self.nodes {
            let role = if node.name == "n1" {
                "leader"
            } else {
                "follower"
            };
            text.push_str(&format!(
                "[[node]]\nname = \"{0}\"\naddress = \"{0}\"\nrole = \"{role}\"\n\n",
                node.name
            ));
        }
        let extra: Vec<String> = self
            .sshd
            .ssh_args()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        text.push_str(&format!(
            "[transport]\nkind = \"ssh\"\nuser = \"{user}\"\nport = {port}\nidentity = \"{identity}\"\n\
             extra_args = [{extra}]\nferry_path = \"{ferry}\"\nconfig = \"{nodes}/{{name}}/ferry.toml\"\n\n\
             [rollout]\n{rollout}\n",
            user = self.sshd.user,
            port = self.sshd.port,
            identity = self.sshd.identity.display(),
            extra = extra.join(", "),
            ferry = binaries::ferry().display(),
            nodes = self.ws.dir.join("nodes").display(),
        ));
        let path = self.ws.dir.join("cluster.toml");
        fs::write(&path, text).unwrap();
        path
    }

    /// The arguments of `ferry rollout start` to [`TARGET`] with `inventory`.
    fn start_args(&self, inventory: &std::path::Path, flags: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "rollout",
            "start",
            "--inventory",
            &inventory.to_string_lossy(),
            "--version",
            TARGET,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        args
    }

    /// Runs `ferry rollout start` to completion.
    pub fn start(&self, inventory: &std::path::Path, flags: &[&str]) -> Output {
        let args = self.start_args(inventory, flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        coordinator(&self.ws, &args)
    }

    /// Starts `ferry rollout start` in the background (to be killed).
    /// Its temporary files (status queries) go to the workspace.
    pub fn spawn_start(&self, inventory: &std::path::Path, flags: &[&str]) -> Child {
        let tmp = self.ws.dir.join("coordinator-tmp");
        fs::create_dir_all(&tmp).unwrap();
        Command::new(binaries::ferry())
            .env_remove("FERRY_CONFIG")
            .env("TMPDIR", &tmp)
            .env("NO_COLOR", "1")
            .args(self.start_args(inventory, flags))
            .arg("--state-dir")
            .arg(self.ws.dir.join("coordinator"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the coordinator")
    }

    /// `ferry rollout ARGS` against this cluster's coordinator state.
    pub fn rollout(&self, args: &[&str]) -> Output {
        let mut all = vec!["rollout"];
        all.extend_from_slice(args);
        coordinator(&self.ws, &all)
    }

    /// The ids of the recorded rollouts.
    pub fn rollout_ids(&self) -> Vec<String> {
        let dir = self.ws.dir.join("coordinator/rollouts");
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect()
    }

    /// The rollout record `<id>.json`.
    pub fn record(&self, id: &str) -> Value {
        let path = self.ws.dir.join(format!("coordinator/rollouts/{id}.json"));
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    /// The node's history after its 1.0.0 install, from `ferry history --json`.
    pub fn operations(&self, name: &str) -> Vec<NodeOperation> {
        self.node(name)
            .history_json()
            .iter()
            .skip(1)
            .map(|op| NodeOperation {
                operation: op["operation"].as_str().unwrap().to_string(),
                to_version: op["to_version"].as_str().unwrap_or("").to_string(),
                finished_at: op["finished_at"].as_str().unwrap().parse().unwrap(),
            })
            .collect()
    }

    /// (operation, to_version) of the node's history after 1.0.0.
    pub fn kinds(&self, name: &str) -> Vec<(String, String)> {
        self.operations(name)
            .into_iter()
            .map(|op| (op.operation, op.to_version))
            .collect()
    }

    /// Asserts every named node applied [`TARGET`] exactly once and runs it.
    #[track_caller]
    pub fn assert_applied_once(&self, names: &[&str]) {
        for name in names {
            assert_eq!(
                self.kinds(name),
                [("apply".to_string(), TARGET.to_string())],
                "{name}'s history"
            );
            assert_eq!(
                self.node(name).current_version().as_deref(),
                Some(TARGET),
                "{name}"
            );
        }
    }

    /// Asserts the named nodes were never touched: no operation since the
    /// 1.0.0 install, still on 1.0.0.
    #[track_caller]
    pub fn assert_untouched(&self, names: &[&str]) {
        for name in names {
            assert!(self.operations(name).is_empty(), "{name} was touched");
            assert_eq!(
                self.node(name).current_version().as_deref(),
                Some("1.0.0"),
                "{name}"
            );
        }
    }
}

/// The id `ferry rollout start` printed (`rollout <id>`).
pub fn rollout_id(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("rollout "))
        .unwrap_or_else(|| panic!("no rollout id printed\n{out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Polls `ready` every 10 ms until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
