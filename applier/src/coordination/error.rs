//! Why a node could not take or keep its turn, or a fleet command could
//! not be carried out. Every one of them means the node did not update (it
//! fails closed); a halted fleet is `NodeError::Halted` (exit 7) instead.

use thiserror::Error;

use super::etcd::EtcdError;

#[derive(Debug, Error)]
pub enum CoordinationError {
    /// etcd did not answer, or answered something unusable.
    #[error(
        "cannot {doing} in etcd ({endpoints}): {source}; the node does not update without its turn"
    )]
    Unreachable {
        /// What the node was doing: "read the halt key", "take a lease".
        doing: &'static str,
        endpoints: String,
        #[source]
        source: EtcdError,
    },
    #[error("no coordination slot came free within coordination.wait_timeout_seconds = {wait_seconds} ({max_unavailable} at most updating in {prefix}); the update was not started, the next run queues again")]
    NoSlotInTime {
        wait_seconds: u64,
        max_unavailable: u32,
        prefix: String,
    },
    /// The lease lapsed while the node queued for a slot.
    #[error("this node's coordination lease expired while it waited (etcd {endpoints} unreachable for longer than lease_seconds = {lease_seconds}?); the update was not started")]
    LeaseExpired {
        endpoints: String,
        lease_seconds: u64,
    },
    /// The leader waited for its followers in vain.
    #[error("the leader updates last, and the followers were not done within coordination.wait_timeout_seconds = {wait_seconds}: {behind}; update them (or fix coordination.followers), the next run tries again")]
    FollowersNotDone { wait_seconds: u64, behind: String },
    /// Just before the switch, the slot was no longer this node's.
    #[error("this node no longer holds its coordination slot ({0}); another node may have taken it, so the update was stopped before the switch; the next run queues again")]
    SlotLost(SlotLoss),
    /// A fleet command on a node without `[coordination]`.
    #[error("this node has no [coordination] section: configure it (see the README's \"Pull mode coordination\") to use the fleet commands")]
    NotConfigured,
    /// `ferry coordination halt --reason ""`.
    #[error("--reason is empty: say why the fleet is halted, for whoever clears it")]
    EmptyReason,
    /// `ferry coordination forget NODE` for a node etcd does not list.
    #[error("{node} is not a member of {prefix}: `ferry coordination status` lists the members")]
    NotAMember { node: String, prefix: String },
}

/// How a node found out that its slot is no longer its own.
#[derive(Debug, Error)]
pub enum SlotLoss {
    /// The renewer saw the lease lapse.
    #[error("its lease expired: etcd {endpoints} unreachable for longer than lease_seconds = {lease_seconds}?")]
    LeaseLapsed {
        endpoints: String,
        lease_seconds: u64,
    },
    #[error("etcd says its lease expired")]
    LeaseGone,
    /// Any doubt is a loss: the slot may have gone to another node.
    #[error("etcd {endpoints} did not answer: {source}")]
    NoAnswer {
        endpoints: String,
        #[source]
        source: EtcdError,
    },
    #[error("cannot read the slot queue: {0}")]
    QueueUnreadable(#[source] EtcdError),
    /// The `down` mark could not be written: without it a crash after
    /// the switch would free the slot while the node is down.
    #[error("cannot mark it as down before the switch: {0}")]
    MarkUnwritten(#[source] EtcdError),
    #[error("its key {0} is gone")]
    KeyGone(String),
    #[error("{} nodes are now ahead of it: {}", .0.len(), .0.join(", "))]
    Overtaken(Vec<String>),
}
