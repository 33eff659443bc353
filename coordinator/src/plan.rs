//! The rollout plan: which nodes are updated in which stage, computed from
//! the inventory, the policy, who leads and what each node runs now.
//!
//! Pure: no I/O, so every rule is tested here with every cluster size.
//!
//! ## Batch size and the Raft majority
//!
//! A cluster of `n` nodes keeps working while a majority, `n/2 + 1`, is up,
//! so at most `n - (n/2 + 1)` nodes may be down at once. A stage never
//! holds more nodes than that, whatever `max_unavailable` says:
//! `batch = min(max_unavailable, n - (n/2 + 1))`, but at least 1, because
//! a rollout that can update no node is no rollout. That floor matters for
//! the two sizes where no node can be spared:
//!
//! - **1 node**: there is no quorum to keep; updating the node is downtime
//!   by definition, and the plan says so in `warnings`;
//! - **2 nodes**: a majority of 2 is 2, so updating either node stops the
//!   cluster for the length of that node's update. The plan updates one at
//!   a time and says so in `warnings` (a 2-node Raft cluster has this
//!   property with or without ferry; refusing would leave it unupdatable).
//!
//! The canary stage obeys the same limit: a canary larger than the batch
//! size is cut to it, with a warning.
//!
//! ## Version skew
//!
//! During a rollout old and new versions run side by side, so the target
//! must be a version every current version is compatible with. Precisely,
//! for every node that runs a version `c` (a node with nothing installed
//! constrains nothing):
//!
//! - same major (`target.major == c.major`): `|target.minor - c.minor| <= 1`;
//! - different major: allowed only as a one-major step up from a uniform
//!   cluster, i.e. every node runs the same version `c` and
//!   `target.major == c.major + 1`. Skipping a major (1.x to 3.0), a major
//!   downgrade, or a major step from a cluster that is itself mixed is
//!   refused: those are the cases no release promises to survive.
//!
//! Nodes already on the target are skipped and listed as such.

use std::collections::BTreeMap;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, RolloutPolicy};

/// The ordered stages of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    pub target: Version,
    /// Nodes in the cluster.
    pub cluster_size: usize,
    /// Nodes updated at once at most (see the module docs).
    pub batch_size: usize,
    pub leader: Option<String>,
    pub stages: Vec<Stage>,
    /// Nodes already on the target: not touched.
    pub skipped: Vec<String>,
    /// Things the operator should know before starting (quorum loss, a
    /// canary cut to the batch size).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// "canary", "batch 1", "batch 2", ..., "leader".
    pub name: String,
    pub kind: StageKind,
    /// Updated together, in this order.
    pub nodes: Vec<String>,
    /// Why this stage holds these nodes, for the operator.
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Canary,
    Batch,
    Leader,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the leader {0:?} is no node of the inventory")]
    UnknownLeader(String),
    #[error("no current version is known for node {0:?}; every node's status is needed to plan")]
    MissingVersion(String),
    #[error("version skew: {target} is {why} than node {node}'s {current}; go there in steps of one minor version (and one major version at most, from a cluster on one version)")]
    Skew {
        node: String,
        current: Version,
        target: Version,
        why: &'static str,
    },
    #[error("{target} is a new major version but the cluster runs several versions ({versions}): first bring every node to one version")]
    MajorFromMixedCluster { target: Version, versions: String },
    /// Nodes newer than the target, and no `--allow-downgrade`: their
    /// `ferry apply` would refuse the older version.
    #[error("{target} is older than what {nodes} run: a rollout to an older version is a downgrade; ask for it with --allow-downgrade (each node then runs `ferry apply --allow-downgrade`), after checking the release can read the newer one's data")]
    Downgrade { target: Version, nodes: String },
    /// `--allow-downgrade` with a command transport whose template cannot
    /// carry the flag.
    #[error("--allow-downgrade needs the node command to carry the flag, but [transport] template does not contain `{}`; add it there", crate::inventory::APPLY_ARGS)]
    DowngradeFlagUnplaceable,
}

impl RolloutPlan {
    /// Computes the stages; see the module docs for the rules.
    ///
    /// `leader` is who leads now (from `leader_command` or the inventory);
    /// `current_versions` holds every inventory node (`None`: nothing
    /// installed).
    pub fn compute(
        inventory: &Inventory,
        policy: &RolloutPolicy,
        leader: Option<&str>,
        current_versions: &BTreeMap<String, Option<Version>>,
        target: &Version,
    ) -> Result<RolloutPlan, PlanError> {
        if let Some(leader) = leader {
            if inventory.node(leader).is_none() {
                return Err(PlanError::UnknownLeader(leader.to_string()));
            }
        }
        let mut currents = Vec::new();
        for node in &inventory.nodes {
            let current = current_versions
                .get(&node.name)
                .ok_or_else(|| PlanError::MissingVersion(node.name.clone()))?;
            currents.push((node.name.as_str(), current.as_ref()));
        }
        check_skew(&currents, target)?;
        check_downgrade(inventory, policy, &currents, target)?;

        let n = inventory.nodes.len();
        let mut warnings = Vec::new();
        let quorum_batch = n - (n / 2 + 1);
        let batch_size = (policy.max_unavailable as usize).min(quorum_batch).max(1);
        if quorum_batch == 0 {
            warnings.push(if n == 1 {
                "a 1-node cluster is down while its node updates".to_string()
            } else {
                format!(
                    "a {n}-node cluster has no node to spare: it loses its majority while each node updates"
                )
            });
        } else if (policy.max_unavailable as usize) > quorum_batch {
            warnings.push(format!(
                "max_unavailable = {} lowered to {quorum_batch}: a {n}-node cluster needs {} nodes up for its majority",
                policy.max_unavailable,
                n / 2 + 1
            ));
        }

        let skipped: Vec<String> = currents
            .iter()
            .filter(|(_, c)| *c == Some(target))
            .map(|(name, _)| name.to_string())
            .collect();
        let pending = |name: &str| !skipped.iter().any(|s| s == name);
        let followers: Vec<String> = inventory
            .nodes
            .iter()
            .map(|node| node.name.clone())
            .filter(|name| Some(name.as_str()) != leader && pending(name))
            .collect();

        let mut stages = Vec::new();
        let mut rest = followers.as_slice();
        // A 1-node cluster has no follower to try the release on first.
        if n > 1 && !rest.is_empty() {
            let wanted = policy.canary.nodes_of(n);
            let mut size = wanted.min(rest.len());
            if size > batch_size {
                warnings.push(format!(
                    "canary of {wanted} nodes cut to {batch_size}: more would cost the cluster its majority"
                ));
                size = batch_size;
            }
            let (canary, after) = rest.split_at(size);
            stages.push(Stage {
                name: "canary".into(),
                kind: StageKind::Canary,
                nodes: canary.to_vec(),
                why: format!(
                    "followers first: a bad release reaches {} of {n} nodes before it is seen",
                    canary.len()
                ),
            });
            rest = after;
        }
        for (i, batch) in rest.chunks(batch_size).enumerate() {
            stages.push(Stage {
                name: format!("batch {}", i + 1),
                kind: StageKind::Batch,
                nodes: batch.to_vec(),
                why: format!("followers, at most {batch_size} down at once"),
            });
        }
        if let Some(leader) = leader.filter(|l| pending(l)) {
            stages.push(Stage {
                name: "leader".into(),
                kind: StageKind::Leader,
                nodes: vec![leader.to_string()],
                why: "the leader last and alone: one election, when every follower runs the new version"
                    .into(),
            });
        }
        Ok(RolloutPlan {
            target: target.clone(),
            cluster_size: n,
            batch_size,
            leader: leader.map(str::to_string),
            stages,
            skipped,
            warnings,
        })
    }

    /// Every node the plan updates, in order.
    pub fn nodes_in_order(&self) -> impl Iterator<Item = &str> {
        self.stages
            .iter()
            .flat_map(|s| s.nodes.iter().map(String::as_str))
    }
}

/// Nodes newer than `target` are downgraded only when asked for, and only
/// when the flag can reach their `ferry apply`.
fn check_downgrade(
    inventory: &Inventory,
    policy: &RolloutPolicy,
    currents: &[(&str, Option<&Version>)],
    target: &Version,
) -> Result<(), PlanError> {
    let newer: Vec<String> = currents
        .iter()
        .filter(|(_, c)| c.is_some_and(|c| c > target))
        .map(|(name, c)| format!("{name} ({})", c.expect("filtered on Some")))
        .collect();
    if newer.is_empty() {
        return Ok(());
    }
    if !policy.allow_downgrade {
        return Err(PlanError::Downgrade {
            target: target.clone(),
            nodes: newer.join(", "),
        });
    }
    match &inventory.transport {
        crate::inventory::Transport::Command(command)
            if !command.template.contains(crate::inventory::APPLY_ARGS) =>
        {
            Err(PlanError::DowngradeFlagUnplaceable)
        }
        _ => Ok(()),
    }
}

fn check_skew(currents: &[(&str, Option<&Version>)], target: &Version) -> Result<(), PlanError> {
    let installed: Vec<(&str, &Version)> = currents
        .iter()
        .filter_map(|(name, c)| c.map(|c| (*name, c)))
        .collect();
    for &(node, current) in &installed {
        let skew = |why| PlanError::Skew {
            node: node.to_string(),
            current: current.clone(),
            target: target.clone(),
            why,
        };
        if current.major == target.major {
            if target.minor > current.minor + 1 {
                return Err(skew("more than one minor version newer"));
            }
            if current.minor > target.minor + 1 {
                return Err(skew("more than one minor version older"));
            }
        } else if target.major < current.major {
            return Err(skew("a major version older"));
        } else if target.major > current.major + 1 {
            return Err(skew("more than one major version newer"));
        }
    }
    if installed.iter().any(|(_, c)| c.major != target.major) {
        let mut versions: Vec<&Version> = installed.iter().map(|(_, c)| *c).collect();
        versions.sort();
        versions.dedup();
        if versions.len() > 1 {
            return Err(PlanError::MajorFromMixedCluster {
                target: target.clone(),
                versions: versions
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Canary, CommandTransport, InventoryNode, Role, Transport, APPLY_ARGS};

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn cluster(n: usize) -> Inventory {
        Inventory {
            nodes: (1..=n)
                .map(|i| InventoryNode {
                    name: format!("n{i}"),
                    address: format!("10.0.0.{i}"),
                    role: Role::Follower,
                    labels: BTreeMap::new(),
                })
                .collect(),
            leader_command: None,
            cluster: None,
            transport: Transport::Command(CommandTransport {
                template: format!("ferry {APPLY_ARGS}"),
                status_template: Some("y".into()),
            }),
            rollout: RolloutPolicy::default(),
        }
    }

    fn all_on(inv: &Inventory, version: &str) -> BTreeMap<String, Option<Version>> {
        inv.nodes
            .iter()
            .map(|n| (n.name.clone(), Some(v(version))))
            .collect()
    }

    fn policy(canary: Canary, max_unavailable: u32) -> RolloutPolicy {
        RolloutPolicy {
            canary,
            max_unavailable,
            ..RolloutPolicy::default()
        }
    }

    /// The stages as `(name, nodes)`, for compact assertions.
    fn shape(plan: &RolloutPlan) -> Vec<(String, Vec<String>)> {
        plan.stages
            .iter()
            .map(|s| (s.name.clone(), s.nodes.clone()))
            .collect()
    }

    fn stages(expected: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        expected
            .iter()
            .map(|(name, nodes)| {
                (
                    name.to_string(),
                    nodes.iter().map(|n| n.to_string()).collect(),
                )
            })
            .collect()
    }

    fn plan(n: usize, leader: Option<&str>, p: &RolloutPolicy) -> RolloutPlan {
        let inv = cluster(n);
        RolloutPlan::compute(&inv, p, leader, &all_on(&inv, "1.0.0"), &v("1.1.0")).unwrap()
    }

    #[test]
    fn one_node_is_updated_alone_with_a_warning_and_no_canary() {
        let p = plan(1, Some("n1"), &RolloutPolicy::default());
        assert_eq!(shape(&p), stages(&[("leader", &["n1"])]));
        assert_eq!(p.batch_size, 1);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("1-node cluster is down"));
        // Without a leader the single node is a batch.
        let p = plan(1, None, &policy(Canary::Count(3), 4));
        assert_eq!(shape(&p), stages(&[("batch 1", &["n1"])]));
    }

    #[test]
    fn two_nodes_go_one_at_a_time_and_warn_about_the_majority() {
        let p = plan(2, Some("n1"), &policy(Canary::Count(1), 5));
        assert_eq!(
            shape(&p),
            stages(&[("canary", &["n2"]), ("leader", &["n1"])])
        );
        assert_eq!(p.batch_size, 1);
        assert!(
            p.warnings[0].contains("2-node cluster has no node to spare"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn three_nodes_allow_one_down_whatever_max_unavailable_says() {
        let p = plan(3, Some("n2"), &policy(Canary::Count(1), 3));
        assert_eq!(p.batch_size, 1);
        assert_eq!(
            shape(&p),
            stages(&[
                ("canary", &["n1"]),
                ("batch 1", &["n3"]),
                ("leader", &["n2"])
            ])
        );
        assert!(
            p.warnings[0].contains("max_unavailable = 3 lowered to 1"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn five_nodes_allow_two_down() {
        let p = plan(5, Some("n1"), &policy(Canary::Count(1), 2));
        assert_eq!(p.batch_size, 2);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            shape(&p),
            stages(&[
                ("canary", &["n2"]),
                ("batch 1", &["n3", "n4"]),
                ("batch 2", &["n5"]),
                ("leader", &["n1"])
            ])
        );
        let p = plan(5, Some("n1"), &policy(Canary::Count(1), 1));
        assert_eq!(p.batch_size, 1);
        assert_eq!(p.stages.len(), 5);
        assert!(p.stages.iter().all(|s| s.nodes.len() == 1));
    }

    #[test]
    fn seven_nodes_allow_three_down_and_the_canary_is_cut_to_that() {
        let p = plan(7, Some("n7"), &policy(Canary::Percent(60), 10));
        assert_eq!(p.batch_size, 3);
        assert_eq!(
            shape(&p),
            stages(&[
                ("canary", &["n1", "n2", "n3"]),
                ("batch 1", &["n4", "n5", "n6"]),
                ("leader", &["n7"])
            ])
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("canary of 5 nodes cut to 3")),
            "{:?}",
            p.warnings
        );
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("max_unavailable = 10 lowered to 3")));
    }

    #[test]
    fn canary_counts_and_fractions() {
        let cases: [(usize, Canary, usize); 8] = [
            (5, Canary::Count(1), 1),
            (5, Canary::Count(2), 2),
            (5, Canary::Percent(10), 1),
            (5, Canary::Percent(40), 2),
            (7, Canary::Percent(20), 2),
            (7, Canary::Percent(1), 1),
            // Never more than the followers there are.
            (3, Canary::Count(9), 1),
            (2, Canary::Percent(100), 1),
        ];
        for (n, canary, expected) in cases {
            let p = plan(n, Some("n1"), &policy(canary, 3));
            assert_eq!(p.stages[0].kind, StageKind::Canary);
            assert_eq!(p.stages[0].nodes.len(), expected, "{n} nodes, {canary:?}");
            assert!(
                !p.stages[0].nodes.contains(&"n1".to_string()),
                "the leader is no canary"
            );
        }
    }

    #[test]
    fn every_node_is_updated_once_the_leader_last_and_no_stage_breaks_the_majority() {
        for n in 1..=9 {
            for max in 1..=5 {
                for canary in [Canary::Count(1), Canary::Count(3), Canary::Percent(50)] {
                    for leader in [None, Some("n1"), Some("n3")] {
                        if leader == Some("n3") && n < 3 {
                            continue;
                        }
                        let p = plan(n, leader, &policy(canary, max));
                        let order: Vec<&str> = p.nodes_in_order().collect();
                        let mut sorted = order.clone();
                        sorted.sort();
                        sorted.dedup();
                        assert_eq!(sorted.len(), n, "{n} nodes: {order:?}");
                        assert_eq!(order.len(), n);
                        let spare = n - (n / 2 + 1);
                        for stage in &p.stages {
                            assert!(
                                stage.nodes.len() <= (max as usize).min(spare).max(1),
                                "{n} nodes, max {max}: {:?}",
                                p.stages
                            );
                        }
                        if let Some(leader) = leader {
                            let last = p.stages.last().unwrap();
                            assert_eq!(last.kind, StageKind::Leader);
                            assert_eq!(last.nodes, [leader]);
                            assert_eq!(
                                p.stages
                                    .iter()
                                    .filter(|s| s.nodes.iter().any(|x| x == leader))
                                    .count(),
                                1
                            );
                        } else {
                            assert!(p.stages.iter().all(|s| s.kind != StageKind::Leader));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nodes_on_the_target_are_skipped_and_listed() {
        let inv = cluster(5);
        let mut currents = all_on(&inv, "1.0.0");
        currents.insert("n2".into(), Some(v("1.1.0")));
        currents.insert("n1".into(), Some(v("1.1.0")));
        currents.insert("n4".into(), None);
        let p = RolloutPlan::compute(
            &inv,
            &policy(Canary::Count(1), 2),
            Some("n1"),
            &currents,
            &v("1.1.0"),
        )
        .unwrap();
        assert_eq!(p.skipped, ["n1", "n2"]);
        assert_eq!(
            shape(&p),
            stages(&[("canary", &["n3"]), ("batch 1", &["n4", "n5"])])
        );
        // Everything on the target: nothing to do.
        let p = RolloutPlan::compute(
            &inv,
            &RolloutPolicy::default(),
            Some("n1"),
            &all_on(&inv, "1.1.0"),
            &v("1.1.0"),
        )
        .unwrap();
        assert!(p.stages.is_empty());
        assert_eq!(p.skipped.len(), 5);
    }

    #[test]
    fn a_downgrade_is_planned_only_when_asked_for_and_the_flag_can_reach_the_nodes() {
        let inv = cluster(3);
        let currents: BTreeMap<String, Option<Version>> =
            [("n1", "1.2.0"), ("n2", "1.1.0"), ("n3", "1.2.0")]
                .iter()
                .map(|(n, c)| (n.to_string(), Some(v(c))))
                .collect();
        let plan = |policy: &RolloutPolicy, inv: &Inventory| {
            RolloutPlan::compute(inv, policy, None, &currents, &v("1.1.0"))
        };
        let err = plan(&RolloutPolicy::default(), &inv).unwrap_err();
        assert!(
            matches!(&err, PlanError::Downgrade { nodes, .. } if nodes == "n1 (1.2.0), n3 (1.2.0)"),
            "{err}"
        );
        assert!(err.to_string().contains("--allow-downgrade"), "{err}");
        let asked = RolloutPolicy {
            allow_downgrade: true,
            ..RolloutPolicy::default()
        };
        let p = plan(&asked, &inv).unwrap();
        assert_eq!(p.skipped, ["n2"]);
        // A command template without the apply arguments cannot carry it.
        let mut custom = inv.clone();
        custom.transport =
            crate::inventory::Transport::Command(crate::inventory::CommandTransport {
                template: "run-ferry {name} {version}".into(),
                status_template: Some("true".into()),
            });
        assert_eq!(
            plan(&asked, &custom).unwrap_err(),
            PlanError::DowngradeFlagUnplaceable
        );
    }

    #[test]
    fn skew_rules() {
        let inv = cluster(3);
        // Downgrades asked for: the skew rules alone decide here.
        let downgrades = RolloutPolicy {
            allow_downgrade: true,
            ..RolloutPolicy::default()
        };
        let check = |versions: [Option<&str>; 3], target: &str| {
            let currents = inv
                .nodes
                .iter()
                .zip(versions)
                .map(|(n, c)| (n.name.clone(), c.map(v)))
                .collect();
            RolloutPlan::compute(&inv, &downgrades, None, &currents, &v(target))
        };
        // Allowed: one minor up or down, patches, fresh nodes, a uniform major step.
        assert!(check([Some("1.0.0"); 3], "1.1.0").is_ok());
        assert!(check([Some("1.1.0"), Some("1.2.0"), Some("1.1.5")], "1.2.3").is_ok());
        assert!(check([Some("1.2.0"); 3], "1.1.0").is_ok());
        assert!(check([None, None, Some("1.0.0")], "1.1.0").is_ok());
        assert!(check([None; 3], "7.0.0").is_ok());
        assert!(check([Some("1.4.2"); 3], "2.0.0").is_ok());
        // Refused.
        let err = check([Some("1.0.0"), Some("1.1.0"), Some("1.0.0")], "1.2.0").unwrap_err();
        assert!(
            matches!(&err, PlanError::Skew { node, why, .. } if node == "n1" && why.contains("newer")),
            "{err}"
        );
        let err = check([Some("1.3.0"); 3], "1.1.0").unwrap_err();
        assert!(err.to_string().contains("older"), "{err}");
        let err = check([Some("1.0.0"); 3], "3.0.0").unwrap_err();
        assert!(
            err.to_string()
                .contains("more than one major version newer"),
            "{err}"
        );
        let err = check([Some("2.0.0"); 3], "1.9.0").unwrap_err();
        assert!(err.to_string().contains("major version older"), "{err}");
        let err = check([Some("1.4.0"), Some("1.4.1"), Some("1.4.0")], "2.0.0").unwrap_err();
        assert!(
            matches!(err, PlanError::MajorFromMixedCluster { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("1.4.0, 1.4.1"), "{err}");
    }

    #[test]
    fn a_missing_status_or_an_unknown_leader_is_an_error() {
        let inv = cluster(3);
        let mut currents = all_on(&inv, "1.0.0");
        assert_eq!(
            RolloutPlan::compute(
                &inv,
                &RolloutPolicy::default(),
                Some("n9"),
                &currents,
                &v("1.1.0")
            ),
            Err(PlanError::UnknownLeader("n9".into()))
        );
        currents.remove("n2");
        assert_eq!(
            RolloutPlan::compute(
                &inv,
                &RolloutPolicy::default(),
                None,
                &currents,
                &v("1.1.0")
            ),
            Err(PlanError::MissingVersion("n2".into()))
        );
    }
}
