//! Leadership is live: who leads is asked again before every stage.
//!
//! The plan puts the leader last and alone, because updating it forces an
//! election and that should happen once, when every follower already runs
//! the new version. But leadership moves on its own (a failover, an
//! operator's switchover between canary and promotion), and a plan made
//! with the old leader would update the new one in a follower batch and
//! the old one "last". So before each stage the coordinator asks
//! `leader_command` again, and when the answer differs from the plan's
//! leader the two swap places in the stages not run yet: the new leader
//! takes the old one's place in the leader stage, the old leader takes the
//! new one's slot in its follower stage (batch sizes, and so the number of
//! nodes down at once, stay the same). The change goes in the timeline.

use crate::plan::{RolloutPlan, StageKind};

/// What [`follow`] changed in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderMove {
    /// The plan's leader still leads (or the cluster names no leader).
    Unchanged,
    /// `new` took `old`'s place in the leader stage; `old` went into
    /// `new`'s slot in stage `into_stage` (0-based).
    Swapped {
        old: Option<String>,
        new: String,
        into_stage: Option<usize>,
    },
    /// `new` leads but is not in a stage still to run (already updated,
    /// or skipped): the plan's leader is only renamed, and the old leader
    /// goes on where it was.
    AlreadyDone { old: Option<String>, new: String },
}

impl LeaderMove {
    /// The timeline line for a change; `None` when nothing changed.
    pub fn describe(&self) -> Option<String> {
        let old = |o: &Option<String>| o.clone().unwrap_or_else(|| "no leader".into());
        match self {
            LeaderMove::Unchanged => None,
            LeaderMove::Swapped { old: o, new, .. } => Some(format!(
                "leadership moved from {} to {new}: {new} is updated last, {} in its place",
                old(o),
                o.as_deref().unwrap_or("nobody")
            )),
            LeaderMove::AlreadyDone { old: o, new } => Some(format!(
                "leadership moved from {} to {new}, which is not left to update",
                old(o)
            )),
        }
    }
}

/// Makes the stages from `next` on agree with `leader`, the cluster's
/// leader now. Stages before `next` have run and are not touched.
pub fn follow(plan: &mut RolloutPlan, next: usize, leader: &str) -> LeaderMove {
    if plan.leader.as_deref() == Some(leader) {
        return LeaderMove::Unchanged;
    }
    let old = plan.leader.replace(leader.to_string());
    let position = |plan: &RolloutPlan, name: &str| {
        plan.stages
            .iter()
            .enumerate()
            .skip(next)
            .find_map(|(s, stage)| {
                let i = stage.nodes.iter().position(|n| n == name)?;
                Some((s, i))
            })
    };
    let Some((new_stage, new_index)) = position(plan, leader) else {
        return LeaderMove::AlreadyDone {
            old,
            new: leader.to_string(),
        };
    };
    if plan.stages[new_stage].kind == StageKind::Leader {
        // Already last (the plan had it there): nothing to swap.
        return LeaderMove::Unchanged;
    }
    let leader_stage = plan
        .stages
        .iter()
        .enumerate()
        .skip(next)
        .find(|(_, s)| s.kind == StageKind::Leader)
        .map(|(s, _)| s);
    let old_slot = old.as_deref().and_then(|o| position(plan, o));
    match (leader_stage, old_slot) {
        (Some(ls), Some((os, oi))) if os == ls => {
            plan.stages[ls].nodes[oi] = leader.to_string();
            plan.stages[new_stage].nodes[new_index] = old.clone().unwrap_or_default();
            LeaderMove::Swapped {
                old,
                new: leader.to_string(),
                into_stage: Some(new_stage),
            }
        }
        (Some(ls), _) => {
            // The old leader is done or gone: the new one only moves last.
            plan.stages[new_stage].nodes.remove(new_index);
            plan.stages[ls].nodes.push(leader.to_string());
            plan.stages.retain(|s| !s.nodes.is_empty());
            LeaderMove::Swapped {
                old,
                new: leader.to_string(),
                into_stage: None,
            }
        }
        (None, _) => {
            // No leader stage left to run: a stage of its own, last.
            plan.stages[new_stage].nodes.remove(new_index);
            plan.stages.push(crate::plan::Stage {
                name: "leader".into(),
                kind: StageKind::Leader,
                nodes: vec![leader.to_string()],
                why: "the current leader, alone and last: leadership moved during the rollout"
                    .into(),
            });
            plan.stages.retain(|s| !s.nodes.is_empty());
            LeaderMove::Swapped {
                old,
                new: leader.to_string(),
                into_stage: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Stage;

    fn plan() -> RolloutPlan {
        let stage = |name: &str, kind, nodes: &[&str]| Stage {
            name: name.into(),
            kind,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            why: String::new(),
        };
        RolloutPlan {
            target: "1.1.0".parse().unwrap(),
            cluster_size: 5,
            batch_size: 2,
            leader: Some("n1".into()),
            stages: vec![
                stage("canary", StageKind::Canary, &["n2"]),
                stage("batch 1", StageKind::Batch, &["n3", "n4"]),
                stage("batch 2", StageKind::Batch, &["n5"]),
                stage("leader", StageKind::Leader, &["n1"]),
            ],
            skipped: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn nodes(plan: &RolloutPlan) -> Vec<Vec<&str>> {
        plan.stages
            .iter()
            .map(|s| s.nodes.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn a_new_leader_in_a_follower_batch_swaps_with_the_old_one() {
        let mut p = plan();
        assert_eq!(follow(&mut p, 1, "n1"), LeaderMove::Unchanged);
        let moved = follow(&mut p, 1, "n4");
        assert!(
            matches!(
                &moved,
                LeaderMove::Swapped {
                    into_stage: Some(1),
                    ..
                }
            ),
            "{moved:?}"
        );
        assert_eq!(
            nodes(&p),
            [vec!["n2"], vec!["n3", "n1"], vec!["n5"], vec!["n4"]]
        );
        assert_eq!(p.leader.as_deref(), Some("n4"));
        assert!(moved.describe().unwrap().contains("from n1 to n4"));
    }

    #[test]
    fn a_new_leader_already_updated_only_renames_the_leader() {
        let mut p = plan();
        // n2 (the canary) ran in stage 0; stages 1.. are left.
        let moved = follow(&mut p, 1, "n2");
        assert!(matches!(moved, LeaderMove::AlreadyDone { .. }), "{moved:?}");
        assert_eq!(nodes(&p), nodes(&plan()));
        assert_eq!(p.leader.as_deref(), Some("n2"));
    }

    #[test]
    fn with_no_leader_stage_left_the_new_leader_gets_one_last() {
        let mut p = plan();
        p.stages.pop();
        p.leader = None;
        follow(&mut p, 1, "n5");
        assert_eq!(nodes(&p), [vec!["n2"], vec!["n3", "n4"], vec!["n5"]]);
        assert_eq!(p.stages.last().unwrap().kind, StageKind::Leader);
        assert_eq!(p.stages.len(), 3);
    }
}
