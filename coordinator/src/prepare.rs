//! Preparing a rollout: asking every node for its version and saving a
//! planned record (`ferry rollout plan`, `POST /api/v1/updates/plan`) that
//! `ferry rollout execute` starts later.
//!
//! Planning and starting are separate steps so a person (or a dashboard)
//! can look at the computed order before anything changes on a node.

use std::collections::BTreeMap;
use std::path::Path;

use semver::Version;

use crate::error::{CoordinatorError, Result};
use crate::inventory::{Inventory, RolloutPolicy};
use crate::plan::RolloutPlan;
use crate::record::{RolloutRecord, RolloutState};
use crate::transport;

/// One node's answer to `ferry status --json`: its version (`None`:
/// nothing installed) or why it could not be read.
#[derive(Debug, Clone)]
pub struct NodeVersion {
    pub name: String,
    pub answer: std::result::Result<Option<Version>, String>,
}

/// At most this many status queries run at once. Each costs a thread,
/// a shell, the transport (an ssh connection) and a handful of file
/// descriptors: a thread per node would ask 1,000 nodes with 1,000 ssh
/// clients and run out of descriptors (the usual limit is 1,024) long
/// before the network is the limit.
const STATUS_QUERIES_AT_ONCE: usize = 64;

/// Asks every node for its version, [`STATUS_QUERIES_AT_ONCE`] at a time
/// (a node that hangs holds one query for its timeout, not every node
/// after it), in inventory order.
pub fn ask_versions(inventory: &Inventory, own_ferry: &Path) -> Vec<NodeVersion> {
    let nodes = &inventory.nodes;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut answers: Vec<(usize, NodeVersion)> = std::thread::scope(|scope| {
        let askers: Vec<_> = (0..STATUS_QUERIES_AT_ONCE.min(nodes.len()))
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut answers = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(node) = nodes.get(i) else {
                            return answers;
                        };
                        answers.push((
                            i,
                            NodeVersion {
                                name: node.name.clone(),
                                answer: transport::current_version(
                                    &inventory.transport,
                                    node,
                                    own_ferry,
                                ),
                            },
                        ));
                    }
                })
            })
            .collect();
        askers
            .into_iter()
            .flat_map(|asker| asker.join().expect("a status thread panicked"))
            .collect()
    });
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

/// Every node's version, or an error naming every unreachable node (a
/// plan that ignored one could take the cluster below its majority).
pub fn current_versions(
    inventory: &Inventory,
    own_ferry: &Path,
) -> Result<BTreeMap<String, Option<Version>>> {
    let mut currents = BTreeMap::new();
    let mut failures = Vec::new();
    for NodeVersion { name, answer } in ask_versions(inventory, own_ferry) {
        match answer {
            Ok(version) => {
                currents.insert(name, version);
            }
            Err(e) => failures.push((name, e)),
        }
    }
    if failures.is_empty() {
        return Ok(currents);
    }
    Err(CoordinatorError::UnreachableNodes { failures })
}

/// Plans a rollout of `version` to the inventory at `inventory_path` and
/// saves it as `planned` in `state_dir`. The id is made unique: two plans
/// in the same second must not overwrite each other.
pub fn plan_rollout(
    inventory_path: &Path,
    version: &Version,
    policy: &RolloutPolicy,
    state_dir: &Path,
    own_ferry: &Path,
) -> Result<RolloutRecord> {
    let inventory = Inventory::load(inventory_path)?;
    let inventory_path = crate::cluster::absolute_inventory(inventory_path)?;
    let cluster_key = crate::cluster::key(&inventory, &inventory_path);
    // A plan made while another rollout moves the cluster would start from
    // versions that are about to change.
    let _cluster = crate::cluster::claim(state_dir, &cluster_key, None)?;
    let currents = current_versions(&inventory, own_ferry)?;
    let leader = inventory.current_leader()?;
    let plan = RolloutPlan::compute(&inventory, policy, leader.as_deref(), &currents, version)?;
    let now = jiff::Timestamp::now();
    let mut record = RolloutRecord::new(plan, inventory_path, &currents, now);
    record.cluster = Some(cluster_key);
    record.policy = Some(policy.clone());
    record.state = RolloutState::Planned;
    let base = record.id.clone();
    for n in 1..=100 {
        if n > 1 {
            record.id = format!("{base}-{n}");
        }
        // Holding the id's lock while checking keeps two planners from
        // claiming the same id (a held lock: that id is taken, try the next).
        let Ok(_lock) = super::execute::RolloutLock::acquire(state_dir, &record.id) else {
            continue;
        };
        if !RolloutRecord::path(state_dir, &record.id).exists() {
            record.save(state_dir, now)?;
            return Ok(record);
        }
    }
    Err(CoordinatorError::NoFreeRolloutId {
        base,
        dir: RolloutRecord::dir(state_dir),
    })
}
