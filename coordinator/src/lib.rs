//! `ferry-coordinator`: cluster rollouts, moving every node of a cluster to one version, a few
//! nodes at a time, from a coordinator that runs `ferry` on each node.
//!
//! A rollout is a sequence of *stages*. Each stage updates a few nodes at
//! once (each node runs its own `ferry apply`, with its own health check and
//! its own rollback) and the next stage starts only when the previous one
//! is healthy. The order is fixed, and each rule exists to limit the damage
//! a bad release can do:
//!
//! 1. **canary**: a few followers first, so a bad release hurts as few
//!    nodes as possible and is seen before it spreads;
//! 2. **follower batches** of at most `max_unavailable` nodes, and never so
//!    many that the nodes still up lose the Raft majority (a cluster that
//!    loses its majority stops accepting writes, which is worse than a slow
//!    rollout);
//! 3. **the leader last, alone**: updating it forces an election, so it
//!    happens once, when every follower already runs the new version and
//!    can take over.
//!
//! Version skew is bounded (at most one minor version between the target
//! and any node) because mixed versions must talk to each other for the
//! whole rollout, and releases promise compatibility with their neighbours
//! only.
//!
//! `inventory` reads `cluster.toml`, `plan` computes the stages (pure, so
//! every rule above is unit-tested), `transport` runs `ferry` on a node and
//! `record` persists a rollout so a killed coordinator can resume it;
//! `execute` drives one, with `node_apply` running each node's update,
//! `failure` handling a failed one,
//! `gate` reading the metrics gate, `lock` keeping coordinators of one
//! rollout apart, `cluster` keeping two rollouts off one cluster, and
//! `live_view` drawing the cluster on a terminal.
//! `leadership` moves a new leader last when leadership changes mid-rollout.
//! `prepare` saves a planned rollout for a later `execute`, `revert` rolls
//! a rollout's nodes back, `stop` aborts or pauses one on request, and `api` serves all of it over HTTP with a
//! live dashboard (`ferry rollout serve`); `commands` is what `ferry
//! rollout …` calls.
//!
//! Not for: updating a node. That is the `ferry-node` library, which this
//! crate uses (its exit codes, its `--output json` events and its
//! `status --json` report are the protocol between the two) and which
//! never uses this one, so a node-only `ferry` leaves all of it out.

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

pub mod api;
pub mod cluster;
pub mod commands;
pub mod error;
pub mod execute;
pub mod failure;
pub mod gate;
pub mod inventory;
pub mod leadership;
pub mod live_view;
pub mod lock;
pub mod node_apply;
pub mod plan;
pub mod prepare;
pub mod record;
pub mod revert;
pub mod shared_record;
pub mod stop;
pub mod transport;
