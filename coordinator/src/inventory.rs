//! `cluster.toml`: the nodes of a cluster, how to reach them and the
//! rollout policy.
//!
//! ```toml
//! # Optional: the cluster's name. One rollout at a time per cluster; without
//! # it the cluster is this file's absolute path.
//! cluster = "orders-db"
//!
//! # Optional: a shell line printing the current leader's name. When set,
//! # the `role` of each node is ignored: leadership moves, the file does not.
//! leader_command = "etcdctl endpoint status --write-out=json | jq -r ..."
//!
//! [[node]]
//! name = "db1"
//! address = "10.0.0.1"
//! role = "leader"            # or "follower" (the default)
//! labels = { zone = "a" }
//!
//! [transport]
//! kind = "ssh"               # runs `ferry` on the node over OpenSSH
//! user = "deploy"
//! port = 22
//! identity = "/etc/ferry/id_ed25519"
//! extra_args = ["-o", "StrictHostKeyChecking=yes"]
//! ferry_path = "ferry"       # the default
//! config = "/etc/ferry/ferry.toml"   # optional: the node's ferry config
//! # In `ferry_path` and `config`, `{name}` is the node's name, for several
//! # nodes on one host: config = "/srv/nodes/{name}/ferry.toml"
//!
//! [rollout]
//! canary = 1                 # a count, or a fraction: "10%"
//! max_unavailable = 1
//! bake_seconds = 0
//! apply_timeout_seconds = 1800   # one node's apply at most (default 30 min)
//! stage_timeout_seconds = 3600   # optional: a whole stage at most
//! promote = "manual"         # or "auto"
//! rollback_on_failure = "all"   # or "node"
//! metrics_gate = { url = "http://10.0.0.9/error_rate", max = 0.01 }
//! ```
//!
//! The `command` transport runs a shell line instead of ssh, for one-box
//! setups and tests; see [`CommandTransport`] for its placeholders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use ferry_node::shell::{CommandError, ShellCommand};

/// How long `leader_command` may take: it asks a live cluster a question,
/// and a hung answer must not hang the rollout.
pub const LEADER_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed and validated `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(rename = "node", default)]
    pub nodes: Vec<InventoryNode>,
    #[serde(default)]
    pub leader_command: Option<String>,
    /// The cluster's name: at most one rollout is active per cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    pub transport: Transport,
    #[serde(default)]
    pub rollout: RolloutPolicy,
}

/// One `[[node]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryNode {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    #[default]
    Follower,
}

/// `[transport]`: how the coordinator runs `ferry` on a node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Transport {
    Ssh(SshTransport),
    Command(CommandTransport),
}

/// `kind = "ssh"`: the OpenSSH client runs `ferry` on the node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTransport {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// Passed to `ssh` before the destination, verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The `ferry` executable on the node; `{name}` is the node's name.
    #[serde(default = "default_ferry_path")]
    pub ferry_path: String,
    /// The node's ferry configuration (`--config`); ferry's default if
    /// unset. `{name}` is the node's name.
    #[serde(default)]
    pub config: Option<String>,
}

fn default_ferry_path() -> String {
    "ferry".to_string()
}

/// `kind = "command"`: a shell line per node, for one-box setups and tests.
///
/// Placeholders, replaced in `template` and `status_template` (each value
/// is shell-quoted when it holds anything but `[A-Za-z0-9._/:@%+=-]`):
///
/// - `{name}`: the node's name;
/// - `{address}`: the node's address;
/// - `{version}`: the target version (`apply` only);
/// - `{ferry}`: the path of the coordinator's own `ferry` executable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandTransport {
    /// Runs the update, e.g.
    /// `"{ferry} --config /nodes/{name}/ferry.toml apply --version {version} --output json"`.
    pub template: String,
    /// Reads the node's status; by default `template` with
    /// [`APPLY_ARGS`] replaced by `status --json`.
    #[serde(default)]
    pub status_template: Option<String>,
}

/// What `template` must contain for `status_template` to be derived.
pub const APPLY_ARGS: &str = "apply --version {version} --output json";

/// `[rollout]`: the policy; each key can be overridden by a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    #[serde(default)]
    pub canary: Canary,
    #[serde(default = "one")]
    pub max_unavailable: u32,
    #[serde(default)]
    pub bake_seconds: u64,
    #[serde(default)]
    pub promote: Promote,
    #[serde(default)]
    pub rollback_on_failure: RollbackScope,
    #[serde(default)]
    pub metrics_gate: Option<MetricsGate>,
    /// `--allow-downgrade` of `ferry rollout start`/`plan`: nodes newer
    /// than the target are planned, and each runs `ferry apply
    /// --allow-downgrade`. Kept in the rollout's record; the inventory may
    /// not set it (a downgrade is asked for each time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_downgrade: bool,
    /// How long one node's `ferry apply` may take before it is stopped and
    /// the node counts as failed.
    #[serde(default = "default_apply_timeout")]
    pub apply_timeout_seconds: u64,
    /// How long one stage may take from its first node's start; an apply
    /// still running then is stopped and fails its node. None: each node
    /// has its `apply_timeout_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_timeout_seconds: Option<u64>,
}

fn one() -> u32 {
    1
}

/// 30 minutes: a database node's apply (download, migrations, a restart,
/// its health gate) rarely takes longer, and a hung one must not hold a
/// rollout forever.
pub const DEFAULT_APPLY_TIMEOUT_SECONDS: u64 = 30 * 60;

fn default_apply_timeout() -> u64 {
    DEFAULT_APPLY_TIMEOUT_SECONDS
}

/// The longest either deadline may be: a week.
const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            canary: Canary::default(),
            max_unavailable: 1,
            bake_seconds: 0,
            promote: Promote::default(),
            rollback_on_failure: RollbackScope::default(),
            metrics_gate: None,
            allow_downgrade: false,
            apply_timeout_seconds: DEFAULT_APPLY_TIMEOUT_SECONDS,
            stage_timeout_seconds: None,
        }
    }
}

/// The size of the canary stage: a node count, or a percentage of the
/// cluster's nodes (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CanarySpelling", into = "CanarySpelling")]
pub enum Canary {
    Count(u32),
    Percent(u32),
}

impl Default for Canary {
    fn default() -> Self {
        Canary::Count(1)
    }
}

/// How `canary` is written: `2` or `"10%"`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CanarySpelling {
    Count(i64),
    Text(String),
}

impl TryFrom<CanarySpelling> for Canary {
    type Error = String;
    fn try_from(spelling: CanarySpelling) -> Result<Self, String> {
        match spelling {
            CanarySpelling::Count(n) if n >= 1 && n <= u32::MAX as i64 => {
                Ok(Canary::Count(n as u32))
            }
            CanarySpelling::Count(n) => Err(format!(
                "canary = {n}: the canary stage needs at least 1 node"
            )),
            // A string is a percentage, exactly: "10%" (the API's document
            // says so; a count is a number).
            CanarySpelling::Text(text) => match text.strip_suffix('%') {
                Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    text.parse()
                }
                _ => Err(format!(
                    "canary = {text:?}: write a node count (2) or a percentage of the nodes (\"10%\")"
                )),
            },
        }
    }
}

impl From<Canary> for CanarySpelling {
    fn from(canary: Canary) -> Self {
        match canary {
            Canary::Count(n) => CanarySpelling::Count(n.into()),
            Canary::Percent(p) => CanarySpelling::Text(format!("{p}%")),
        }
    }
}

impl std::str::FromStr for Canary {
    type Err = String;
    /// `3` or `"25%"` (1% to 100%).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let wrong = || {
            format!(
                "canary = {text:?}: write a node count (2) or a percentage of the nodes (\"10%\")"
            )
        };
        if let Some(percent) = text.strip_suffix('%') {
            let p: u32 = percent.trim().parse().map_err(|_| wrong())?;
            if !(1..=100).contains(&p) {
                return Err(format!(
                    "canary = {text:?}: the percentage must be 1% to 100%"
                ));
            }
            Ok(Canary::Percent(p))
        } else {
            match text.parse::<u32>() {
                Ok(0) => Err(format!(
                    "canary = {text}: the canary stage needs at least 1 node"
                )),
                Ok(n) => Ok(Canary::Count(n)),
                Err(_) => Err(wrong()),
            }
        }
    }
}

impl Canary {
    /// How many nodes of a cluster of `nodes` this is, at least 1.
    pub fn nodes_of(self, nodes: usize) -> usize {
        match self {
            Canary::Count(n) => n as usize,
            Canary::Percent(p) => (nodes * p as usize).div_ceil(100).max(1),
        }
    }
}

/// After the canary: wait for `ferry rollout promote ID`, or go on by
/// itself once the gate has held for the bake time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Promote {
    #[default]
    Manual,
    Auto,
}

/// When a node fails: roll back only that node, or every node updated so
/// far (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RollbackScope {
    Node,
    #[default]
    All,
}

/// `metrics_gate = { url, max }`: an HTTP endpoint whose body is a number
/// (an error rate, a latency) that must stay `<= max` for a stage to pass.
///
/// A `url` with `{name}` or `{address}` is a per-node gate, read for every
/// node the rollout has updated; without them it is one cluster-wide
/// number. It is read after every stage and every `interval_seconds`
/// while baking, so automatic promotion happens only when the gate held
/// for the whole bake time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsGate {
    pub url: String,
    pub max: f64,
    #[serde(default = "default_gate_interval")]
    pub interval_seconds: u64,
    /// One reading's deadline; a reading that times out fails the gate.
    #[serde(default = "default_gate_timeout")]
    pub timeout_seconds: u64,
}

fn default_gate_interval() -> u64 {
    5
}

fn default_gate_timeout() -> u64 {
    5
}

/// Why `cluster.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a mistake in it: the key at fault and what to do.
    #[error("inventory {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// Why the current leader is not known.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("leader_command printed {name:?}, which is no node of the inventory (nodes: {}); fix the command or the inventory", nodes.join(", "))]
    NotANode { name: String, nodes: Vec<String> },
}

impl Inventory {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::parse(&text).map_err(|problem| InventoryError::Invalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    pub fn parse(text: &str) -> Result<Inventory, String> {
        let inventory: Inventory = toml::from_str(text).map_err(|e| e.to_string())?;
        inventory.validate()?;
        Ok(inventory)
    }

    fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("no [[node]]: list the cluster's nodes".into());
        }
        let mut names = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty()
                || !node
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(format!(
                    "node #{} name = {:?}: use letters, digits, '.', '_' and '-' (it names files and log lines)",
                    i + 1,
                    node.name
                ));
            }
            if !names.insert(node.name.as_str()) {
                return Err(format!(
                    "node {:?} is listed twice: node names must be unique",
                    node.name
                ));
            }
            if node.address.trim().is_empty() {
                return Err(format!("node {:?}: address is empty", node.name));
            }
        }
        let leaders: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Leader)
            .map(|n| n.name.as_str())
            .collect();
        if leaders.len() > 1 && self.leader_command.is_none() {
            return Err(format!(
                "nodes {} all have role = \"leader\": a cluster has one leader (or set leader_command)",
                leaders.join(", ")
            ));
        }
        if let Some(name) = &self.cluster {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(format!(
                    "cluster = {name:?}: give the cluster a name, or remove the key to name it by this file's path"
                ));
            }
        }
        if let Some(line) = &self.leader_command {
            if line.trim().is_empty() {
                return Err("leader_command is empty: remove it or give a shell line printing the leader's name".into());
            }
        }
        if self.rollout.allow_downgrade {
            return Err("[rollout] allow_downgrade: a downgrade is asked for each time with `ferry rollout start --allow-downgrade` (or `plan`), not set in the inventory; remove the key".into());
        }
        let timeouts = [
            (
                "apply_timeout_seconds",
                Some(self.rollout.apply_timeout_seconds),
            ),
            ("stage_timeout_seconds", self.rollout.stage_timeout_seconds),
        ];
        for (key, value) in timeouts {
            if let Some(seconds) = value {
                if !(1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
                    return Err(format!(
                        "[rollout] {key} = {seconds} is out of range: use 1 to {MAX_TIMEOUT_SECONDS} (a week)"
                    ));
                }
            }
        }
        if self.rollout.max_unavailable == 0 {
            return Err(
                "[rollout] max_unavailable = 0: at least 1 node must be updated at a time".into(),
            );
        }
        if let Some(gate) = &self.rollout.metrics_gate {
            if !gate.url.starts_with("http://") && !gate.url.starts_with("https://") {
                return Err(format!(
                    "[rollout] metrics_gate.url = {:?}: give an http:// or https:// URL",
                    gate.url
                ));
            }
            if !gate.max.is_finite() {
                return Err("[rollout] metrics_gate.max must be a finite number".into());
            }
            if gate.interval_seconds == 0 || gate.timeout_seconds == 0 {
                return Err("[rollout] metrics_gate: interval_seconds and timeout_seconds must be at least 1".into());
            }
        }
        match &self.transport {
            Transport::Ssh(ssh) => {
                if ssh.ferry_path.trim().is_empty() {
                    return Err("[transport] ferry_path is empty".into());
                }
            }
            Transport::Command(command) => {
                if command.status_template.is_none() && !command.template.contains(APPLY_ARGS) {
                    return Err(format!(
                        "[transport] template does not contain `{APPLY_ARGS}`, so the status command cannot be derived from it: set status_template"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn node(&self, name: &str) -> Option<&InventoryNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The leader named in the file (`role = "leader"`), if any.
    pub fn configured_leader(&self) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Leader)
            .map(|n| n.name.as_str())
    }

    /// Who leads now: `leader_command`'s answer when it is set (the roles
    /// in the file are then ignored), else the node with `role = "leader"`.
    pub fn current_leader(&self) -> Result<Option<String>, LeaderError> {
        let Some(line) = &self.leader_command else {
            return Ok(self.configured_leader().map(str::to_string));
        };
        let finished = ShellCommand {
            what: "leader_command",
            line,
            env: Vec::new(),
            cwd: None,
            timeout: LEADER_COMMAND_TIMEOUT,
        }
        .run_checked()?;
        let name = finished.output.trim();
        self.leader_named(name).map(Some)
    }

    /// Checks what `leader_command` printed.
    pub fn leader_named(&self, name: &str) -> Result<String, LeaderError> {
        if self.node(name).is_some() {
            Ok(name.to_string())
        } else {
            Err(LeaderError::NotANode {
                name: name.to_string(),
                nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND_TRANSPORT: &str =
        "[transport]\nkind = \"command\"\ntemplate = \"{ferry} --config /n/{name}.toml apply --version {version} --output json\"\n";

    fn nodes(n: usize) -> String {
        (1..=n)
            .map(|i| format!("[[node]]\nname = \"n{i}\"\naddress = \"10.0.0.{i}\"\n"))
            .collect()
    }

    #[test]
    fn a_full_inventory_parses_with_every_key() {
        let text = r#"
leader_command = "echo b"
[[node]]
name = "a"
address = "10.0.0.1"
role = "leader"
labels = { zone = "z1" }
[[node]]
name = "b"
address = "10.0.0.2"
[transport]
kind = "ssh"
user = "deploy"
port = 2222
identity = "/k"
extra_args = ["-o", "X=y"]
config = "/etc/ferry.toml"
[rollout]
canary = "10%"
max_unavailable = 2
bake_seconds = 30
promote = "auto"
rollback_on_failure = "node"
metrics_gate = { url = "http://m/err", max = 0.5 }
"#;
        let inv = Inventory::parse(text).unwrap();
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(inv.nodes[0].role, Role::Leader);
        assert_eq!(inv.nodes[1].role, Role::Follower);
        assert_eq!(inv.nodes[0].labels["zone"], "z1");
        let Transport::Ssh(ssh) = &inv.transport else {
            panic!("ssh expected")
        };
        assert_eq!(ssh.port, Some(2222));
        assert_eq!(ssh.ferry_path, "ferry");
        assert_eq!(ssh.extra_args, ["-o", "X=y"]);
        assert_eq!(inv.rollout.canary, Canary::Percent(10));
        assert_eq!(inv.rollout.max_unavailable, 2);
        assert_eq!(inv.rollout.promote, Promote::Auto);
        assert_eq!(inv.rollout.rollback_on_failure, RollbackScope::Node);
        assert_eq!(inv.rollout.metrics_gate.as_ref().unwrap().max, 0.5);
    }

    /// The README's example inventory is one the coordinator accepts.
    #[test]
    fn the_readme_example_inventory_is_valid() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme
            .find("## Rolling out to a cluster")
            .expect("the README has a rollout section")..];
        let start = section.find("```toml\n").expect("an example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let inv = Inventory::parse(example)
            .unwrap_or_else(|e| panic!("the README example is refused: {e}"));
        assert_eq!(inv.nodes.len(), 3);
        assert_eq!(inv.configured_leader(), Some("db1"));
        assert!(matches!(inv.transport, Transport::Ssh(_)));
        assert!(inv.rollout.metrics_gate.is_some());
    }

    #[test]
    fn defaults_are_one_canary_one_at_a_time_manual_and_roll_back_all() {
        let inv = Inventory::parse(&format!("{}{COMMAND_TRANSPORT}", nodes(3))).unwrap();
        assert_eq!(inv.rollout, RolloutPolicy::default());
        assert_eq!(inv.rollout.canary, Canary::Count(1));
        assert_eq!(inv.rollout.rollback_on_failure, RollbackScope::All);
        assert_eq!(inv.rollout.promote, Promote::Manual);
        assert_eq!(inv.configured_leader(), None);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (format!("{}{}{COMMAND_TRANSPORT}", nodes(2), "[[node]]\nname = \"n1\"\naddress = \"x\"\n"), "\"n1\" is listed twice"),
            (format!("[[node]]\nname = \"a b\"\naddress = \"x\"\n{COMMAND_TRANSPORT}"), "name = \"a b\""),
            (format!("[[node]]\nname = \"a\"\naddress = \" \"\n{COMMAND_TRANSPORT}"), "node \"a\": address is empty"),
            (format!("[[node]]\nname = \"a\"\naddress = \"x\"\nrole = \"leader\"\n[[node]]\nname = \"b\"\naddress = \"y\"\nrole = \"leader\"\n{COMMAND_TRANSPORT}"), "a, b all have role"),
            (format!("[[node]]\nname = \"a\"\naddress = \"x\"\nrole = \"boss\"\n{COMMAND_TRANSPORT}"), "boss"),
            (format!("[[node]]\nname = \"a\"\naddress = \"x\"\ncolour = \"red\"\n{COMMAND_TRANSPORT}"), "colour"),
            (format!("{}[transport]\nkind = \"ssh\"\nusr = \"x\"\n", nodes(1)), "usr"),
            (format!("{}[transport]\nkind = \"carrier-pigeon\"\n", nodes(1)), "carrier-pigeon"),
            (format!("{}[transport]\nkind = \"command\"\ntemplate = \"run {{name}}\"\n", nodes(1)), "set status_template"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\ncanary = 0\n", nodes(1)), "at least 1 node"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\ncanary = \"150%\"\n", nodes(1)), "1% to 100%"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\ncanary = \"some\"\n", nodes(1)), "percentage of the nodes"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\nmax_unavailable = 0\n", nodes(1)), "max_unavailable = 0"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\npromote = \"yolo\"\n", nodes(1)), "yolo"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\nmetrics_gate = {{ url = \"ftp://x\", max = 1 }}\n", nodes(1)), "metrics_gate.url"),
            (format!("{}{COMMAND_TRANSPORT}[rollout]\nbake = 3\n", nodes(1)), "bake"),
            (COMMAND_TRANSPORT.to_string(), "no [[node]]"),
        ];
        for (text, expected) in cases {
            let err = Inventory::parse(&text).unwrap_err();
            assert!(
                err.contains(expected),
                "{expected:?} not in {err:?} for\n{text}"
            );
        }
    }

    #[test]
    fn canary_sizes_round_up_and_are_at_least_one() {
        assert_eq!(Canary::Count(2).nodes_of(5), 2);
        assert_eq!(Canary::Percent(10).nodes_of(5), 1);
        assert_eq!(Canary::Percent(10).nodes_of(11), 2);
        assert_eq!(Canary::Percent(50).nodes_of(5), 3);
        assert_eq!(Canary::Percent(1).nodes_of(1), 1);
        assert_eq!("25%".parse::<Canary>().unwrap(), Canary::Percent(25));
        assert_eq!("3".parse::<Canary>().unwrap(), Canary::Count(3));
    }

    #[test]
    fn leader_command_names_the_leader_and_an_unknown_name_is_an_error() {
        let text = format!(
            "leader_command = \"echo n2\"\n{}{COMMAND_TRANSPORT}",
            nodes(3).replacen(
                "address = \"10.0.0.1\"",
                "address = \"10.0.0.1\"\nrole = \"leader\"",
                1
            )
        );
        let inv = Inventory::parse(&text).unwrap();
        assert_eq!(inv.configured_leader(), Some("n1"));
        assert_eq!(inv.current_leader().unwrap().as_deref(), Some("n2"));
        let unknown = Inventory::parse(&text.replace("echo n2", "echo n9")).unwrap();
        let err = unknown.current_leader().unwrap_err().to_string();
        assert!(
            err.contains("\"n9\"") && err.contains("n1, n2, n3"),
            "{err}"
        );
        let failing = Inventory::parse(&text.replace("echo n2", "exit 4")).unwrap();
        assert!(failing
            .current_leader()
            .unwrap_err()
            .to_string()
            .contains("status 4"));
    }
}
