//! Pull-mode coordination through etcd (`[coordination]`): nodes that
//! update themselves on a timer still take turns, as a fleet.
//!
//! Three rules, all kept in etcd under `prefix`:
//! - **at most `max_unavailable` nodes updating at once**: a semaphore of
//!   leased keys. A node queues as `<prefix>/slots/<node-id>` on a lease it
//!   keeps alive; the first `max_unavailable` keys by creation revision hold
//!   a slot. While it updates, a node also holds `<prefix>/updating/<node-id>`
//!   on the same lease. Both go when the update ends, or by themselves when
//!   a crashed node's lease expires (`lease_seconds`); but see `down`.
//! - **the leader last**: every node reports the version it runs in
//!   `<prefix>/members/<node-id>` (with its role). The leader takes a slot
//!   only once `followers` followers, and every follower that registered,
//!   report the version it is about to install.
//! - **a node is unavailable until it is healthy again**: just before its
//!   switch a node writes `<prefix>/down/<node-id>` with no lease, and
//!   removes it only when a turn of its own ends with it healthy (live, or
//!   rolled back). Marked nodes count first against `max_unavailable`, so
//!   a node that died after its switch keeps its slot after its lease
//!   lapsed, and its recovery (which then always takes a slot) gets it
//!   back first.
//! - **a failure halts the fleet**: a node whose update fails while it
//!   holds its slot writes `<prefix>/halt` (who, which version, why) before
//!   releasing the slot. No node takes a slot while it exists; `ferry
//!   coordination clear-halt` removes it once the cause is understood.
//!
//! It fails closed: a node that cannot reach etcd, or cannot tell whether it
//! may go, does not update. Fetching and staging happen before the turn
//! (they do not take the service down); the turn covers `pre_apply`, the
//! switch, the restart and the health gate, up to live or rolled back.

mod error;
pub mod etcd;
pub mod turn;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use manifests::untrusted_text::escape;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{ConfigMistake, NodeError, Result};
pub use error::{CoordinationError, SlotLoss};
use etcd::{EtcdClient, EtcdError, SortBy};
pub use turn::Turn;

/// `[coordination] kind`: the store coordinating the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoordinationKind {
    Etcd,
}

/// `[coordination] role`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    #[default]
    Follower,
    Leader,
}

/// `[coordination]` in `ferry.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationConfig {
    pub kind: CoordinationKind,
    /// etcd client URLs (`http://10.0.0.5:2379`); the first that answers
    /// is used.
    pub endpoints: Vec<String>,
    /// Where this cluster's keys live, e.g. `/ferry/mydb-prod`: every node
    /// of one cluster uses the same prefix.
    pub prefix: String,
    /// `leader` updates after every follower; `follower` (default).
    #[serde(default)]
    pub role: Role,
    /// Nodes updating at once, fleet-wide.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
    /// A crashed node's slot frees itself this long after its last
    /// keepalive.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// Leader only: how many followers must report the new version before
    /// the leader updates.
    #[serde(default)]
    pub followers: Option<u32>,
    /// How long `apply` waits for its turn (a slot, and for the leader the
    /// followers) before giving up; the next run tries again.
    #[serde(default = "default_wait_timeout_seconds")]
    pub wait_timeout_seconds: u64,
    /// How often a waiting node looks at etcd again.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Write the halt key when this node's update fails (default true).
    #[serde(default = "default_true")]
    pub halt_on_failure: bool,
    /// Deadline of each request to etcd.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// PEM CA certificates for `https://` endpoints instead of the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_max_unavailable() -> u32 {
    1
}
fn default_lease_seconds() -> u64 {
    15
}
/// `[coordination] wait_timeout_seconds` when not set.
pub const DEFAULT_WAIT_TIMEOUT_SECONDS: u64 = 3600;

fn default_wait_timeout_seconds() -> u64 {
    DEFAULT_WAIT_TIMEOUT_SECONDS
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}
fn default_request_timeout_seconds() -> u64 {
    5
}

impl CoordinationConfig {
    /// Mistakes, worded for the operator.
    pub fn check(&self) -> std::result::Result<(), ConfigMistake> {
        let bad = |message: String| Err(ConfigMistake::new(message));
        if self.endpoints.is_empty() {
            return bad("coordination.endpoints is empty: list the etcd client URLs (\"http://10.0.0.5:2379\")".into());
        }
        for endpoint in &self.endpoints {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return bad(format!(
                    "coordination.endpoints entry {endpoint:?} must start with http:// or https://"
                ));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return bad(format!(
                "coordination.prefix {:?} must start with / and not end with / (\"/ferry/mydb-prod\")",
                self.prefix
            ));
        }
        if self.max_unavailable == 0 {
            return bad("coordination.max_unavailable must be at least 1".into());
        }
        if self.lease_seconds < 2 {
            return bad("coordination.lease_seconds must be at least 2 (the lease is renewed every third of it)".into());
        }
        if self.request_timeout_seconds == 0 || self.poll_interval_ms == 0 {
            return bad(
                "coordination.request_timeout_seconds and poll_interval_ms must be at least 1"
                    .into(),
            );
        }
        match (self.role, self.followers) {
            (Role::Leader, None) => bad("coordination.role = \"leader\" needs coordination.followers: how many followers must report the new version before the leader updates".into()),
            (Role::Follower, Some(_)) => bad("coordination.followers is for the leader (role = \"leader\"); remove it here".into()),
            _ => Ok(()),
        }
    }
}

/// `<prefix>/halt`: why the fleet stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub node: String,
    pub version: String,
    pub reason: String,
    pub at: String,
}

impl Halt {
    /// Why the fleet stopped, in a sentence. Every field was read from
    /// etcd, where any node or `etcdctl` may have written it: escaped.
    pub fn describe(&self) -> String {
        let halt = Halt {
            node: escape(&self.node),
            version: escape(&self.version),
            reason: escape(&self.reason),
            at: escape(&self.at),
        };
        halt.describe_escaped()
    }

    fn describe_escaped(&self) -> String {
        if self.node.is_empty() {
            // Not a ferry record: someone halted the fleet with etcdctl.
            return format!("halted by hand: {}", self.reason);
        }
        if self.version.is_empty() {
            // `ferry coordination halt`, run on `node`.
            return format!(
                "halted by hand from {} at {}: {}",
                self.node, self.at, self.reason
            );
        }
        format!(
            "node {} failed to update to {} at {}: {}",
            self.node, self.version, self.at, self.reason
        )
    }

    /// The refusal every node gives while the fleet is halted.
    pub fn refusal(&self, prefix: &str) -> String {
        format!(
            "the fleet is halted ({prefix}/halt): {}; no node updates until an operator has looked at it and run `ferry coordination clear-halt`",
            self.describe()
        )
    }
}

/// `<prefix>/members/<node-id>`: the version a node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    pub role: Role,
    pub version: Option<String>,
    pub reported_at: String,
}

/// `<prefix>/slots/<node-id>` and `<prefix>/updating/<node-id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotHolder {
    pub node: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub since: String,
}

/// A node of a coordinated fleet: its etcd client and its id there.
pub struct Fleet {
    pub config: CoordinationConfig,
    pub client: EtcdClient,
    pub node: String,
}

impl Fleet {
    /// The fleet this node belongs to, when `[coordination]` is set.
    /// Contacts nothing yet.
    pub fn from_config(config: &Config) -> Result<Option<Fleet>> {
        let Some(coordination) = &config.coordination else {
            return Ok(None);
        };
        let node = config.node_id()?.id;
        let tls = match coordination
            .endpoints
            .iter()
            .any(|e| e.starts_with("https://"))
        {
            true => Some(crate::transport::tls_config_for(
                coordination.ca_file.as_deref(),
                "coordination.ca_file",
            )?),
            false => None,
        };
        let client = EtcdClient::new(
            &coordination.endpoints,
            Duration::from_secs(coordination.request_timeout_seconds),
            tls,
        );
        Ok(Some(Fleet {
            config: coordination.clone(),
            client,
            node,
        }))
    }

    pub fn key(&self, section: &str, node: &str) -> String {
        format!("{}/{section}/{node}", self.config.prefix)
    }

    pub fn section(&self, section: &str) -> String {
        format!("{}/{section}/", self.config.prefix)
    }

    pub fn halt_key(&self) -> String {
        format!("{}/halt", self.config.prefix)
    }

    /// An etcd failure as the node's error: fail closed, name the endpoints.
    pub fn unreachable(&self, doing: &'static str, source: EtcdError) -> NodeError {
        CoordinationError::Unreachable {
            doing,
            endpoints: self.client.endpoints(),
            source,
        }
        .into()
    }

    /// The halt record, if the fleet is halted.
    pub fn halt(&self) -> Result<Option<Halt>> {
        let range = self
            .client
            .range(&self.halt_key(), false, SortBy::Key, None)
            .map_err(|e| self.unreachable("read the halt key", e))?;
        let Some(kv) = range.kvs.first() else {
            return Ok(None);
        };
        // A halt written by hand (`etcdctl put <prefix>/halt why`) halts too.
        Ok(Some(serde_json::from_slice(&kv.value).unwrap_or_else(
            |_| Halt {
                node: String::new(),
                version: String::new(),
                reason: String::from_utf8_lossy(&kv.value).into_owned(),
                at: String::new(),
            },
        )))
    }

    /// Writes the halt key unless one is there already (the first failure
    /// is the one to look at).
    pub fn write_halt(&self, version: &Version, reason: &str) -> Result<()> {
        let halt = Halt {
            node: self.node.clone(),
            version: version.to_string(),
            reason: reason.to_string(),
            at: Timestamp::now().to_string(),
        };
        let value = serde_json::to_vec(&halt).expect("a halt serializes");
        self.client
            .create(&self.halt_key(), &value)
            .map(|_| ())
            .map_err(|e| self.unreachable("write the halt key", e))
    }

    /// [`Fleet::write_halt`], tried for about `lease_seconds` (at least
    /// 5 s) before giving up: a node whose update failed is the only one
    /// that knows the fleet must stop, and an etcd blip must not let the
    /// next nodes install the same version.
    pub fn write_halt_patiently(&self, version: &Version, reason: &str) -> Result<()> {
        let patience = Duration::from_secs(self.config.lease_seconds.max(5));
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            match self.write_halt(version, reason) {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() + pause > patience => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the halt key yet; trying again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Halts the fleet by hand: `node` and `version` say who asked.
    pub fn halt_by_hand(&self, reason: &str) -> Result<Option<Halt>> {
        let halt = Halt {
            node: self.node.clone(),
            version: String::new(),
            reason: reason.to_string(),
            at: Timestamp::now().to_string(),
        };
        let value = serde_json::to_vec(&halt).expect("a halt serializes");
        let created = self
            .client
            .create(&self.halt_key(), &value)
            .map_err(|e| self.unreachable("write the halt key", e))?;
        if created {
            Ok(None)
        } else {
            self.halt()
        }
    }

    /// Removes a member that left the fleet, so that a leader stops
    /// waiting for it. Returns what it last reported, `None` if unknown.
    pub fn forget_member(&self, node: &str) -> Result<Option<Member>> {
        let member = self.members()?.into_iter().find(|m| m.node == node);
        if member.is_some() {
            // A departed node never ends a healthy turn: its down mark
            // (see `turn`) would keep its slot for good.
            self.client
                .delete(&self.key("down", node), false)
                .map_err(|e| self.unreachable("delete the member's down mark", e))?;
            self.client
                .delete(&self.key("members", node), false)
                .map_err(|e| self.unreachable("delete the member", e))?;
        }
        Ok(member)
    }

    /// Removes the halt key; returns what it said.
    pub fn clear_halt(&self) -> Result<Option<Halt>> {
        let halt = self.halt()?;
        self.client
            .delete(&self.halt_key(), false)
            .map_err(|e| self.unreachable("delete the halt key", e))?;
        Ok(halt)
    }

    /// Reports the version this node runs, for the leader to see.
    pub fn report_version(&self, version: Option<&Version>) -> Result<()> {
        let member = Member {
            node: self.node.clone(),
            role: self.config.role,
            version: version.map(Version::to_string),
            reported_at: Timestamp::now().to_string(),
        };
        let value = serde_json::to_vec(&member).expect("a member serializes");
        self.client
            .put(&self.key("members", &self.node), &value, 0)
            .map(|_| ())
            .map_err(|e| self.unreachable("report this node's version", e))
    }

    /// Every registered member, by node id.
    pub fn members(&self) -> Result<Vec<Member>> {
        let range = self
            .client
            .range(&self.section("members"), true, SortBy::Key, None)
            .map_err(|e| self.unreachable("read the members", e))?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// Leader only: the followers that keep it from updating to `to` now
    /// ([`followers_behind`]); `None` for a follower, or when they are
    /// done. An unattended leader defers on `Some` instead of waiting.
    pub fn followers_keeping_the_leader(&self, to: &Version) -> Result<Option<String>> {
        if self.config.role != Role::Leader {
            return Ok(None);
        }
        let expected = self.config.followers.unwrap_or(0);
        Ok(followers_behind(&self.members()?, to, expected))
    }

    /// The slot queue in order (holders first) and who is updating now.
    pub fn slots(&self) -> Result<(Vec<SlotHolder>, Vec<SlotHolder>)> {
        let read = |section: &str, sort| -> Result<Vec<SlotHolder>> {
            let range = self
                .client
                .range(&self.section(section), true, sort, None)
                .map_err(|e| self.unreachable("read the slots", e))?;
            Ok(range
                .kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect())
        };
        Ok((
            read("slots", SortBy::CreateRevision)?,
            read("updating", SortBy::Key)?,
        ))
    }
}

/// Leader only: the followers that keep it waiting, or `None` when
/// `expected` followers report `target` (or newer) and no registered
/// follower is behind.
pub fn followers_behind(members: &[Member], target: &Version, expected: u32) -> Option<String> {
    let followers: Vec<&Member> = members
        .iter()
        .filter(|m| m.role == Role::Follower)
        .collect();
    let behind: Vec<String> = followers
        .iter()
        .filter(|m| {
            m.version
                .as_deref()
                .and_then(|v| Version::parse(v).ok())
                .is_none_or(|v| v < *target)
        })
        .map(|m| format!("{} ({})", m.node, m.version.as_deref().unwrap_or("nothing")))
        .collect();
    let ready = followers.len() - behind.len();
    if behind.is_empty() && ready >= expected as usize {
        return None;
    }
    let mut text = format!("{ready} of {expected} followers report {target}");
    if !behind.is_empty() {
        text.push_str(&format!("; behind: {}", behind.join(", ")));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, role: Role, version: Option<&str>) -> Member {
        Member {
            node: node.into(),
            role,
            version: version.map(str::to_string),
            reported_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_leader_waits_for_the_expected_count_and_every_registered_follower() {
        let target = Version::new(1, 1, 0);
        let mut members = vec![
            member("leader", Role::Leader, Some("1.0.0")),
            member("a", Role::Follower, Some("1.1.0")),
            member("b", Role::Follower, Some("1.0.0")),
        ];
        let waiting = followers_behind(&members, &target, 2).unwrap();
        assert!(
            waiting.contains("1 of 2") && waiting.contains("b (1.0.0)"),
            "{waiting}"
        );
        members[2].version = Some("1.2.0".into());
        assert_eq!(followers_behind(&members, &target, 2), None);
        // Fewer registered than expected: an unregistered follower may not
        // have started yet.
        assert!(followers_behind(&members, &target, 3)
            .unwrap()
            .contains("2 of 3"));
        // One more registered than expected, still behind: it counts.
        members.push(member("c", Role::Follower, None));
        assert!(followers_behind(&members, &target, 2)
            .unwrap()
            .contains("c (nothing)"));
    }

    #[test]
    fn a_halt_says_who_failed_or_that_it_was_written_by_hand() {
        let mut halt = Halt {
            node: "db2".into(),
            version: "1.1.0".into(),
            reason: "health gate failed".into(),
            at: "2026-01-01T00:00:00Z".into(),
        };
        let refusal = halt.refusal("/ferry/db");
        assert!(
            refusal.contains("/ferry/db/halt")
                && refusal.contains("node db2 failed to update to 1.1.0")
                && refusal.contains("ferry coordination clear-halt"),
            "{refusal}"
        );
        halt.node.clear();
        assert_eq!(halt.describe(), "halted by hand: health gate failed");
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let parse = |extra: &str| -> anyhow::Result<CoordinationConfig> {
            let c: CoordinationConfig = toml::from_str(&format!(
                "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/ferry/db\"\n{extra}"
            ))?;
            c.check()?;
            Ok(c)
        };
        let c = parse("").unwrap();
        assert_eq!(
            (c.role, c.max_unavailable, c.lease_seconds),
            (Role::Follower, 1, 15)
        );
        assert!(c.halt_on_failure);
        assert!(parse("role = \"leader\"")
            .unwrap_err()
            .to_string()
            .contains("followers"));
        assert!(parse("role = \"leader\"\nfollowers = 4").is_ok());
        assert!(parse("followers = 4")
            .unwrap_err()
            .to_string()
            .contains("for the leader"));
        assert!(parse("max_unavailable = 0")
            .unwrap_err()
            .to_string()
            .contains("max_unavailable"));
        assert!(parse("lease_seconds = 1")
            .unwrap_err()
            .to_string()
            .contains("lease_seconds"));
        let mut bad = c.clone();
        bad.prefix = "/ferry/db/".into();
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("coordination.prefix"));
        bad.prefix = "ferry".into();
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("coordination.prefix"));
        let mut bad = c.clone();
        bad.endpoints = vec!["127.0.0.1:2379".into()];
        assert!(bad.check().unwrap_err().to_string().contains("http://"));
        bad.endpoints.clear();
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("endpoints is empty"));
        assert!(toml::from_str::<CoordinationConfig>(
            "kind = \"consul\"\nendpoints = []\nprefix = \"/p\"\n"
        )
        .is_err());
    }
}
