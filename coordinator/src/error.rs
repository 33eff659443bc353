//! The coordinator's errors, and the exit status each maps to (one
//! `match`, [`CoordinatorError::exit`]; the statuses are the node's table,
//! `ferry_node::exit::Exit`, so `ferry rollout …` speaks the same codes).

use std::io;
use std::path::PathBuf;

use ferry_node::error::NodeError;
use ferry_node::events::Event;
use ferry_node::exit::Exit;
use semver::Version;
use thiserror::Error;

use crate::inventory::{InventoryError, LeaderError};
use crate::plan::PlanError;

#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// A failure of the node library the coordinator uses (durable
    /// writes, file locks), passed on with the node's own exit status.
    #[error(transparent)]
    Node(Box<NodeError>),
    /// The coordinator's own disk (its state directory, this executable).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// `cluster.toml` cannot be used.
    #[error(transparent)]
    Inventory(Box<InventoryError>),
    /// `leader_command` did not name a node.
    #[error(transparent)]
    Leader(Box<LeaderError>),
    /// The rollout cannot be planned (unknown leader, version skew, ...).
    #[error("cannot plan the rollout: {0}")]
    Plan(Box<PlanError>),
    /// Planning needs every node's version; these did not answer.
    #[error("unreachable nodes: {} (their status could not be read; fix them or remove them from the inventory):\n{}", names(failures), details(failures))]
    UnreachableNodes {
        /// Each node with why its status could not be read.
        failures: Vec<(String, String)>,
    },
    #[error("--max-unavailable 0: at least 1 node must be updated at a time")]
    ZeroMaxUnavailable,
    #[error("{id:?} is no rollout id: `ferry rollout list` shows them")]
    BadRolloutId { id: String },
    #[error("no rollout {id} in {}: `ferry rollout list --state-dir DIR` shows the rollouts there", dir.display())]
    UnknownRollout { id: String, dir: PathBuf },
    #[error("{} is corrupt ({source}); move it away to continue without it", path.display())]
    CorruptRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot find a free rollout id for {base} in {}: is the directory writable?", dir.display())]
    NoFreeRolloutId { base: String, dir: PathBuf },
    /// Another coordinator holds the rollout's lock.
    #[error("rollout {id} is being driven by another coordinator ({} is locked); follow it with `ferry rollout status {id}`, or stop it with `ferry rollout abort {id}`", lock.display())]
    DrivenElsewhere { id: String, lock: PathBuf },
    /// Another rollout holds the cluster ([`crate::cluster`]).
    #[error("{}", cluster_busy(cluster, active.as_ref(), lock))]
    ClusterBusy {
        cluster: String,
        /// The active rollout's id and state; none when only another
        /// command's lock says so (it is planning or starting one).
        active: Option<(String, String)>,
        lock: PathBuf,
    },
    /// `promote`, `resume` or `execute` of a rollout in another state.
    #[error(
        "rollout {id} is {state}: only a rollout that is {allowed} can be {verb}{}",
        wrong_state_hint(id, state)
    )]
    WrongState {
        id: String,
        state: String,
        allowed: String,
        verb: &'static str,
    },
    /// `abort` of a rollout that has ended.
    #[error("rollout {id} is already {state}")]
    AlreadyEnded { id: String, state: String },
    #[error("rollout {id} cannot be rolled back: {why}")]
    NotRollbackable { id: String, why: &'static str },
    /// The rollout's record names a node the inventory lost.
    #[error("node {node} of rollout {id} is no longer in the inventory; put it back to resume")]
    NodeLeftInventory { node: String, id: String },
    /// Stopped by `ferry rollout abort`: nothing was rolled back.
    #[error("rollout {id} was aborted on request before stage {stage}: nodes already updated stay on {version}; nothing was rolled back")]
    Aborted {
        id: String,
        stage: usize,
        version: Box<Version>,
    },
    /// A node failed: the rollout stopped and rolled back per its policy.
    #[error("rollout {id} failed at {}; {rolled}{}", failed.join(", "), rollbacks_failed(rollback_errors))]
    Failed {
        id: String,
        /// Each failed node with why: "db2 (exit 6: …)".
        failed: Vec<String>,
        /// What the policy rolled back.
        rolled: &'static str,
        rollback_errors: Vec<String>,
    },
    /// `ferry rollout rollback` could not bring every node back.
    #[error("rollout {id}: rollbacks that failed: {}; fix those nodes and run `ferry rollout rollback {id}` again", errors.join("; "))]
    RollbacksFailed { id: String, errors: Vec<String> },
    #[error("the token file {} is open to every user (mode {mode:o}): `chmod 600 {}` and start again", path.display(), path.display())]
    TokenFileOpen { path: PathBuf, mode: u32 },
    #[error("the token in {} is empty or shorter than {min} characters: {how}", path.display())]
    TokenTooShort {
        path: PathBuf,
        min: usize,
        how: &'static str,
    },
    #[error("cannot listen on {address}: {reason} (is the address right and the port free?)")]
    Listen { address: String, reason: String },
    /// `--tls-cert` or `--tls-key` cannot be used.
    #[error("{what} {}: {reason} (give a PEM certificate chain in --tls-cert and its PEM private key in --tls-key)", path.display())]
    Tls {
        path: PathBuf,
        what: String,
        reason: String,
    },
}

fn names(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn details(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(_, why)| format!("  {why}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rollbacks_failed(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("; rollbacks that failed: {}", errors.join("; "))
    }
}

/// What to do with a rollout that cannot be continued: one that failed,
/// or whose automatic rollback was cut short, is rolled back on request.
fn wrong_state_hint(id: &str, state: &str) -> String {
    match state {
        "failed" | "rolling-back" => format!(
            "; to return the nodes it updated to their old versions run `ferry rollout rollback {id}`"
        ),
        _ => String::new(),
    }
}

fn cluster_busy(
    cluster: &str,
    active: Option<&(String, String)>,
    lock: &std::path::Path,
) -> String {
    match active {
        Some((id, state)) => format!(
            "rollout {id} is {state} on {cluster}: one rollout at a time per cluster, nothing was changed. Finish it (`ferry rollout promote {id}` or `ferry rollout resume {id}`), roll it back (`ferry rollout rollback {id}`) or stop it (`ferry rollout abort {id}`) first"
        ),
        None => format!(
            "another `ferry rollout` command is working on {cluster} right now (it holds {}): one rollout at a time per cluster, nothing was changed. Try again when it ends, or see `ferry rollout list`",
            lock.display()
        ),
    }
}

impl CoordinatorError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        CoordinatorError::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit status this error ends `ferry rollout …` with.
    pub fn exit(&self) -> Exit {
        match self {
            CoordinatorError::Node(e) => e.exit(),
            CoordinatorError::Io { .. }
            | CoordinatorError::Inventory(_)
            | CoordinatorError::Leader(_)
            | CoordinatorError::Plan(_)
            | CoordinatorError::UnreachableNodes { .. }
            | CoordinatorError::ZeroMaxUnavailable
            | CoordinatorError::BadRolloutId { .. }
            | CoordinatorError::UnknownRollout { .. }
            | CoordinatorError::CorruptRecord { .. }
            | CoordinatorError::NoFreeRolloutId { .. }
            | CoordinatorError::DrivenElsewhere { .. }
            | CoordinatorError::WrongState { .. }
            | CoordinatorError::AlreadyEnded { .. }
            | CoordinatorError::NotRollbackable { .. }
            | CoordinatorError::NodeLeftInventory { .. }
            | CoordinatorError::Aborted { .. }
            | CoordinatorError::Failed { .. }
            | CoordinatorError::RollbacksFailed { .. }
            | CoordinatorError::TokenFileOpen { .. }
            | CoordinatorError::TokenTooShort { .. }
            | CoordinatorError::Listen { .. }
            | CoordinatorError::Tls { .. } => Exit::Error,
            CoordinatorError::ClusterBusy { .. } => Exit::ClusterBusy,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }

    /// The last `--output json` event of a command that ends with this
    /// error.
    pub fn final_event(&self) -> Event {
        match self {
            CoordinatorError::Node(e) => e.final_event(),
            _ => Event::Failed,
        }
    }
}

/// The boxed variants: `?` boxes their details (every `Result` pays for
/// the largest variant).
macro_rules! boxed_from {
    ($($variant:ident($type:ty)),* $(,)?) => {
        $(impl From<$type> for CoordinatorError {
            fn from(e: $type) -> Self {
                CoordinatorError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Node(NodeError),
    Inventory(InventoryError),
    Leader(LeaderError),
    Plan(PlanError),
);

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_failures_keep_their_exit_and_the_rest_exit_1() {
        let locked = NodeError::LockHeld {
            path: "/var/lib/ferry/lock".into(),
        };
        let passed_on = CoordinatorError::from(locked);
        assert_eq!(passed_on.exit(), Exit::Locked);
        assert!(
            passed_on
                .to_string()
                .contains("another ferry operation is running"),
            "{passed_on}"
        );
        let failed = CoordinatorError::Failed {
            id: "r1".into(),
            failed: vec!["db2 (exit 6)".into()],
            rolled: "every node it had updated was rolled back",
            rollback_errors: Vec::new(),
        };
        assert_eq!(failed.exit(), Exit::Error);
        assert_eq!(failed.final_event(), Event::Failed);
        assert_eq!(
            failed.to_string(),
            "rollout r1 failed at db2 (exit 6); every node it had updated was rolled back"
        );
    }

    #[test]
    fn unreachable_nodes_are_all_named() {
        let e = CoordinatorError::UnreachableNodes {
            failures: vec![
                ("n1".into(), "n1: ssh: connect refused".into()),
                ("n3".into(), "n3: timed out".into()),
            ],
        };
        assert_eq!(
            e.to_string(),
            "unreachable nodes: n1, n3 (their status could not be read; fix them or remove them from the inventory):\n  n1: ssh: connect refused\n  n3: timed out"
        );
    }
}
