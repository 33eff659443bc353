//! The node's id (`[node] id`): what places it in a release's rollout
//! waves (`crate::waves`).
//!
//! It must be stable — a node that changed id between two runs could jump
//! from a late wave to an early one — and distinct across the fleet, or
//! machines sharing an id would always move together. So, in order:
//!
//! 1. `[node] id` in `ferry.toml`, for fleets that already name their
//!    machines (or images cloned with one machine id);
//! 2. `/etc/machine-id`, systemd's random per-installation id, which is
//!    exactly stable and distinct (an empty or `uninitialized` file, as in
//!    a freshly built image, does not count);
//! 3. the kernel's hostname, unless it is a placeholder every unconfigured
//!    machine shares (`localhost`).
//!
//! Without any of them, a release with waves is refused unattended with a
//! message asking for `[node] id`, rather than every such node drawing the
//! same place.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigMistake, NodeError, Result};

/// systemd's machine id (machine-id(5)).
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// Longest `[node] id`: enough for an FQDN, short enough for a log line.
pub const MAX_ID_BYTES: usize = 255;

/// `[node]` as written in `ferry.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id in rollout waves; see the module docs for the
    /// default.
    #[serde(default)]
    pub id: Option<String>,
}

/// Where the id came from, for `ferry status` and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeIdSource {
    Config,
    MachineId,
    Hostname,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeId {
    pub id: String,
    pub source: NodeIdSource,
}

impl NodeConfig {
    /// `node.id` is a usable id: not empty, no surrounding space (which
    /// would be invisible in a message yet change the placement), no
    /// control characters, at most [`MAX_ID_BYTES`].
    pub fn check(&self) -> std::result::Result<(), ConfigMistake> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        if id.is_empty() {
            return Err(ConfigMistake::new(
                "node.id is empty: remove it to use /etc/machine-id, or name this node",
            ));
        }
        if id.trim() != id || id.chars().any(char::is_control) {
            return Err(ConfigMistake::new(format!(
                "node.id {id:?} has surrounding spaces or control characters: write the id alone"
            )));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(ConfigMistake::new(format!(
                "node.id is {} bytes long, more than {MAX_ID_BYTES}: use a shorter name",
                id.len()
            )));
        }
        Ok(())
    }
}

/// The id from what the node has: `configured` (`[node] id`), the
/// contents of `/etc/machine-id`, the hostname. Pure, so the order is
/// tested without touching the machine.
pub fn choose(
    configured: Option<&str>,
    machine_id: Option<&str>,
    hostname: Option<&str>,
) -> Option<NodeId> {
    if let Some(id) = configured {
        return Some(NodeId {
            id: id.to_string(),
            source: NodeIdSource::Config,
        });
    }
    let machine_id = machine_id
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "uninitialized");
    if let Some(id) = machine_id {
        return Some(NodeId {
            id: id.to_string(),
            source: NodeIdSource::MachineId,
        });
    }
    hostname
        .map(str::trim)
        .filter(|h| {
            !h.is_empty() && !matches!(*h, "localhost" | "localhost.localdomain" | "(none)")
        })
        .map(|h| NodeId {
            id: h.to_string(),
            source: NodeIdSource::Hostname,
        })
}

/// This node's id, reading `/etc/machine-id` and the hostname when
/// `[node] id` is not set.
pub fn resolve(config: &NodeConfig) -> Result<NodeId> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let hostname = read("/proc/sys/kernel/hostname").or_else(|| read("/etc/hostname"));
    choose(
        config.id.as_deref(),
        read(MACHINE_ID_PATH).as_deref(),
        hostname.as_deref(),
    )
    .ok_or(NodeError::NoNodeId)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> anyhow::Result<NodeConfig> {
        let config: NodeConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn the_configured_id_wins_then_the_machine_id_then_the_hostname() {
        let chosen = |c, m, h| choose(c, m, h).map(|n| (n.id, n.source));
        use NodeIdSource::*;
        assert_eq!(
            chosen(Some("web-1"), Some("abc\n"), Some("host")),
            Some(("web-1".into(), Config))
        );
        assert_eq!(
            chosen(None, Some("0123abcd\n"), Some("host")),
            Some(("0123abcd".into(), MachineId))
        );
        for unusable in ["", "\n", "uninitialized\n"] {
            assert_eq!(
                chosen(None, Some(unusable), Some("db-7\n")),
                Some(("db-7".into(), Hostname)),
                "{unusable:?}"
            );
        }
        assert_eq!(
            chosen(None, None, Some("db-7")),
            Some(("db-7".into(), Hostname))
        );
        for placeholder in ["localhost\n", "localhost.localdomain", "(none)", "", " "] {
            assert_eq!(
                chosen(None, None, Some(placeholder)),
                None,
                "{placeholder:?}"
            );
        }
        assert_eq!(chosen(None, None, None), None);
    }

    #[test]
    fn the_node_section_is_checked() {
        assert_eq!(node("").unwrap().id, None);
        assert_eq!(
            node(r#"id = "web-1""#).unwrap().id.as_deref(),
            Some("web-1")
        );
        let long = format!("id = \"{}\"", "a".repeat(MAX_ID_BYTES + 1));
        for (text, expected) in [
            (r#"id = """#, "node.id is empty"),
            (r#"id = " web-1""#, "surrounding spaces"),
            (r#"id = "web-1\n""#, "control characters"),
            (long.as_str(), "more than 255"),
            (r#"name = "web-1""#, "unknown field `name`"),
        ] {
            let err = node(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn this_machine_resolves_to_some_id_or_says_what_to_set() {
        // Whatever the test machine has, the answer is an id from one of
        // the sources or the message naming [node] id.
        match resolve(&NodeConfig::default()) {
            Ok(id) => assert!(!id.id.is_empty() && id.source != NodeIdSource::Config),
            Err(e) => assert!(e.to_string().contains("set [node] id"), "{e}"),
        }
        let configured = NodeConfig {
            id: Some("web-1".into()),
        };
        assert_eq!(
            resolve(&configured).unwrap(),
            NodeId {
                id: "web-1".into(),
                source: NodeIdSource::Config
            }
        );
    }
}
