//! `ferry rollout ...`: the coordinator side of a cluster rollout (see
//! the crate docs for what a rollout is and its stage order).
//!
//! `start --dry-run` plans; `start` plans, saves a record and executes it
//! (`crate::execute`); `promote`, `resume` and `abort` continue
//! or stop a recorded rollout; `list` and `status` read the records.
//! `plan` saves a planned rollout that `execute` starts (the API's two
//! steps), `rollback` returns a rollout's updated nodes to their old
//! versions, and `serve` runs the HTTP API and dashboard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::Serialize;

use crate::cluster;
use crate::error::{CoordinatorError, Result};
use crate::execute::{self, RolloutLock};
use crate::inventory::{Canary, Inventory, Promote, RollbackScope, RolloutPolicy};
use crate::lock::StopRequest;
use crate::plan::RolloutPlan;
use crate::record::{label, NodeRolloutState, RolloutRecord, RolloutState};
use crate::stop::{self, Stopped};
use crate::{prepare, revert};

/// `ferry rollout start`'s arguments.
#[derive(Debug, Clone)]
pub struct StartArgs {
    pub inventory: PathBuf,
    pub version: Version,
    pub dry_run: bool,
    pub json: bool,
    pub state_dir: PathBuf,
    pub overrides: PolicyOverrides,
}

/// Flags that override `[rollout]` keys for one rollout.
#[derive(Debug, Clone, Default)]
pub struct PolicyOverrides {
    pub canary: Option<Canary>,
    pub max_unavailable: Option<u32>,
    pub bake_seconds: Option<u64>,
    pub promote: Option<Promote>,
    pub rollback_on_failure: Option<RollbackScope>,
    /// `--allow-downgrade`: plan nodes newer than the target and pass the
    /// flag to their `ferry apply`.
    pub allow_downgrade: bool,
}

impl PolicyOverrides {
    pub fn apply_to(&self, policy: &RolloutPolicy) -> Result<RolloutPolicy> {
        let mut policy = policy.clone();
        if let Some(canary) = self.canary {
            policy.canary = canary;
        }
        if let Some(max) = self.max_unavailable {
            if max == 0 {
                return Err(CoordinatorError::ZeroMaxUnavailable);
            }
            policy.max_unavailable = max;
        }
        if let Some(bake) = self.bake_seconds {
            policy.bake_seconds = bake;
        }
        if let Some(promote) = self.promote {
            policy.promote = promote;
        }
        if let Some(scope) = self.rollback_on_failure {
            policy.rollback_on_failure = scope;
        }
        policy.allow_downgrade = self.allow_downgrade;
        Ok(policy)
    }
}

/// What `start --dry-run --json` prints.
#[derive(Serialize)]
struct DryRun<'a> {
    dry_run: bool,
    policy: &'a RolloutPolicy,
    current_versions: &'a BTreeMap<String, Option<Version>>,
    plan: &'a RolloutPlan,
}

pub fn start(args: &StartArgs) -> Result<()> {
    let inventory = Inventory::load(&args.inventory)?;
    let policy = args.overrides.apply_to(&inventory.rollout)?;
    let own_ferry = own_ferry()?;
    let inventory_path = cluster::absolute_inventory(&args.inventory)?;
    let cluster_key = cluster::key(&inventory, &inventory_path);
    // Claimed before the nodes are asked anything, and held to the end: a
    // second start on this cluster is refused at once, not after its plan.
    let _cluster = match args.dry_run {
        true => None,
        false => Some(cluster::claim(&args.state_dir, &cluster_key, None)?),
    };
    let currents = prepare::current_versions(&inventory, &own_ferry)?;
    let leader = inventory.current_leader()?;
    let plan = RolloutPlan::compute(
        &inventory,
        &policy,
        leader.as_deref(),
        &currents,
        &args.version,
    )?;
    if !args.dry_run {
        let mut record =
            RolloutRecord::new(plan, inventory_path, &currents, jiff::Timestamp::now());
        record.cluster = Some(cluster_key);
        record.policy = Some(policy.clone());
        let _lock = RolloutLock::acquire(&args.state_dir, &record.id)?;
        record.save(&args.state_dir, jiff::Timestamp::now())?;
        outln!("rollout {}", record.id);
        print_plan(&record.plan, &policy, &currents);
        return execute::drive(&args.state_dir, record, &inventory, &policy, &own_ferry);
    }
    if args.json {
        let out = DryRun {
            dry_run: true,
            policy: &policy,
            current_versions: &currents,
            plan: &plan,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&out).expect("plans serialise")
        );
    } else {
        print_plan(&plan, &policy, &currents);
        outln!("dry run: nothing was changed");
    }
    Ok(())
}

fn print_plan(
    plan: &RolloutPlan,
    policy: &RolloutPolicy,
    currents: &BTreeMap<String, Option<Version>>,
) {
    outln!(
        "rollout of {} to {} nodes, at most {} at a time, leader: {}",
        plan.target,
        plan.cluster_size,
        plan.batch_size,
        plan.leader.as_deref().unwrap_or("none")
    );
    outln!(
        "after the canary: promote {}, bake {}s between stages{}; on a failed node roll back {}",
        label(policy.promote),
        policy.bake_seconds,
        policy
            .metrics_gate
            .as_ref()
            .map_or(String::new(), |g| format!(", gate: {} <= {}", g.url, g.max)),
        match policy.rollback_on_failure {
            RollbackScope::Node => "that node",
            RollbackScope::All => "every updated node",
        }
    );
    let version = |name: &str| {
        currents
            .get(name)
            .cloned()
            .flatten()
            .map_or("nothing".to_string(), |v| v.to_string())
    };
    for stage in &plan.stages {
        let nodes: Vec<String> = stage
            .nodes
            .iter()
            .map(|n| format!("{n} ({})", version(n)))
            .collect();
        outln!("  {:<10} {}: {}", stage.name, nodes.join(", "), stage.why);
    }
    if plan.stages.is_empty() {
        outln!("  nothing to do: every node runs {}", plan.target);
    }
    if !plan.skipped.is_empty() {
        outln!(
            "  skipped (already on {}): {}",
            plan.target,
            plan.skipped.join(", ")
        );
    }
    for warning in &plan.warnings {
        outln!("warning: {warning}");
    }
}

pub fn list(state_dir: &Path, json: bool) -> Result<()> {
    let records = RolloutRecord::list(state_dir)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&records).expect("records serialise")
        );
    } else if records.is_empty() {
        outln!("no rollouts in {}", RolloutRecord::dir(state_dir).display());
    } else {
        out!("{}", render_list(&records));
    }
    Ok(())
}

/// One line per rollout: id, state, version, progress.
/// The stage a person should read for a rollout: the one it is in (or
/// stopped in) while it runs or after it failed or was aborted, the last
/// one done while it awaits promotion, all of them once it succeeded.
/// (`stage_index` is the next stage to run, 0-based.)
fn shown_stage(r: &RolloutRecord) -> usize {
    let stages = r.plan.stages.len();
    match r.state {
        RolloutState::Planned => 0,
        RolloutState::Succeeded => stages,
        RolloutState::AwaitingPromotion => r.stage_index.min(stages),
        _ => (r.stage_index + 1).min(stages),
    }
}

fn render_list(records: &[RolloutRecord]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "{}  {:<18} {}  stage {}/{}  {} of {} nodes updated\n",
                r.id,
                label(r.state),
                r.version,
                shown_stage(r),
                r.plan.stages.len(),
                r.count(NodeRolloutState::Updated),
                r.plan.nodes_in_order().count()
            )
        })
        .collect()
}

pub fn status(state_dir: &Path, id: &str, json: bool) -> Result<()> {
    let r = RolloutRecord::load(state_dir, id)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&r).expect("records serialise")
        );
    } else {
        out!("{}", render_status(&r));
    }
    Ok(())
}

/// The record for a person: the rollout, then each stage's nodes with
/// their state, then the skipped nodes.
fn render_status(r: &RolloutRecord) -> String {
    let mut out = format!(
        "rollout:   {}\nversion:   {}\nstate:     {}\nstage:     {} of {}\ninventory: {}\ncreated:   {}\nupdated:   {}\n",
        r.id,
        r.version,
        label(r.state),
        shown_stage(r),
        r.plan.stages.len(),
        r.inventory.display(),
        r.created,
        r.updated
    );
    for (i, stage) in r.plan.stages.iter().enumerate() {
        out.push_str(&format!("stage {} ({}):\n", i + 1, stage.name));
        for name in &stage.nodes {
            out.push_str(&render_node(r, name));
        }
    }
    if !r.plan.skipped.is_empty() {
        out.push_str("skipped:\n");
        for name in &r.plan.skipped {
            out.push_str(&render_node(r, name));
        }
    }
    let recent = r.timeline.len().saturating_sub(STATUS_TIMELINE);
    if !r.timeline.is_empty() {
        out.push_str("timeline:\n");
    }
    for entry in &r.timeline[recent..] {
        let node = entry
            .node
            .as_deref()
            .map_or(String::new(), |n| format!("{n}: "));
        out.push_str(&format!("  {}  {node}{}\n", entry.at, entry.message));
    }
    out
}

/// Timeline entries `ferry rollout status` shows (the JSON has them all).
const STATUS_TIMELINE: usize = 15;

fn render_node(r: &RolloutRecord, name: &str) -> String {
    let Some(node) = r.nodes.get(name) else {
        return format!("  {name:<16} (not in the record)\n");
    };
    let from = node
        .from
        .as_ref()
        .map_or("nothing".into(), |v| v.to_string());
    let message = node
        .message
        .as_ref()
        .map_or(String::new(), |m| format!(": {m}"));
    let health = node
        .health
        .as_ref()
        .map_or(String::new(), |h| format!(" [{h}]"));
    format!(
        "  {name:<16} {:<12} from {from}{health}{message}\n",
        label(node.state)
    )
}

/// Loads rollout `id` under its lock, with its inventory and policy.
fn continue_rollout(
    state_dir: &Path,
    id: &str,
    allowed: &[RolloutState],
    verb: &'static str,
) -> Result<()> {
    // Load first: an unknown id creates no lock file.
    let first = RolloutRecord::load(state_dir, id)?;
    let _cluster = cluster::claim(state_dir, &cluster::of_record(&first), Some(id))?;
    let _lock = RolloutLock::acquire(state_dir, id)?;
    let record = RolloutRecord::load(state_dir, id)?;
    if !allowed.contains(&record.state) {
        return Err(CoordinatorError::WrongState {
            id: id.to_string(),
            state: label(record.state),
            allowed: allowed
                .iter()
                .map(|s| label(*s))
                .collect::<Vec<_>>()
                .join(" or "),
            verb,
        });
    }
    let inventory = Inventory::load(&record.inventory)?;
    let policy = record
        .policy
        .clone()
        .unwrap_or_else(|| inventory.rollout.clone());
    let own_ferry = own_ferry()?;
    outln!("rollout {id}: {verb} from stage {}", record.stage_index + 1);
    let done: Vec<&str> = record
        .nodes
        .iter()
        .filter(|(_, n)| n.state == NodeRolloutState::Updated)
        .map(|(name, _)| name.as_str())
        .collect();
    if !done.is_empty() {
        outln!("  already on {}: {}", record.version, done.join(", "));
    }
    execute::drive(state_dir, record, &inventory, &policy, &own_ferry)
}

/// `ferry rollout promote ID`: go on past the canary.
pub fn promote(state_dir: &Path, id: &str) -> Result<()> {
    continue_rollout(
        state_dir,
        id,
        &[RolloutState::AwaitingPromotion],
        "promoted",
    )
}

/// `ferry rollout resume ID`: continue what a dead coordinator left, or a
/// paused rollout.
pub fn resume(state_dir: &Path, id: &str) -> Result<()> {
    continue_rollout(
        state_dir,
        id,
        &[RolloutState::Running, RolloutState::Paused],
        "resumed",
    )
}

/// `ferry rollout plan`: computes and saves a planned rollout, prints its
/// id first (for scripts) and then the plan.
pub fn plan(
    inventory: &Path,
    version: &Version,
    overrides: &PolicyOverrides,
    state_dir: &Path,
) -> Result<()> {
    let loaded = Inventory::load(inventory)?;
    let policy = overrides.apply_to(&loaded.rollout)?;
    let own_ferry = own_ferry()?;
    let record = prepare::plan_rollout(inventory, version, &policy, state_dir, &own_ferry)?;
    outln!("{}", record.id);
    let currents: BTreeMap<String, Option<Version>> = record
        .nodes
        .iter()
        .map(|(name, node)| (name.clone(), node.from.clone()))
        .collect();
    print_plan(&record.plan, &policy, &currents);
    outln!(
        "planned: start it with `ferry rollout execute {} --state-dir {}`",
        record.id,
        state_dir.display()
    );
    Ok(())
}

/// `ferry rollout execute ID`: start a planned rollout.
pub fn execute(state_dir: &Path, id: &str) -> Result<()> {
    continue_rollout(state_dir, id, &[RolloutState::Planned], "executed")
}

/// `ferry rollout rollback ID`: every node the rollout updated back to its
/// old version, newest first.
pub fn rollback(state_dir: &Path, id: &str) -> Result<()> {
    revert::rollback_rollout(state_dir, id, &own_ferry()?)
}

/// This executable: what the nodes and the transports run (`{ferry}`).
pub fn own_ferry() -> Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| CoordinatorError::io("cannot find this ferry executable", e))
}

/// `ferry rollout abort ID`: no more nodes, no rollback. A rollout a
/// coordinator is driving is asked to stop (it does before its next stage
/// or during its bake; nodes updating now finish); one nobody drives is
/// marked aborted at once.
pub fn abort(state_dir: &Path, id: &str) -> Result<()> {
    match stop::stop(state_dir, id, StopRequest::Abort)? {
        Stopped::Requested => outln!(
            "rollout {id}: abort requested; its coordinator stops before the next stage \
             (nodes updating now finish; nothing is rolled back). Follow it with `ferry rollout status {id}`"
        ),
        Stopped::Now(_) => {
            outln!("rollout {id} aborted: no more nodes will be updated; nothing was rolled back")
        }
    }
    Ok(())
}

/// `ferry rollout pause ID`: no more nodes until `ferry rollout resume ID`.
pub fn pause(state_dir: &Path, id: &str) -> Result<()> {
    match stop::stop(state_dir, id, StopRequest::Pause)? {
        Stopped::Requested => outln!(
            "rollout {id}: pause requested; its coordinator stops before the next stage \
             (nodes updating now finish). Continue with `ferry rollout resume {id}`"
        ),
        Stopped::Now(_) => {
            outln!("rollout {id} paused; continue with `ferry rollout resume {id}`")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_only_the_keys_they_name() {
        let file = RolloutPolicy {
            bake_seconds: 60,
            ..RolloutPolicy::default()
        };
        let overrides = PolicyOverrides {
            canary: Some(Canary::Percent(20)),
            promote: Some(Promote::Auto),
            ..PolicyOverrides::default()
        };
        let policy = overrides.apply_to(&file).unwrap();
        assert_eq!(policy.canary, Canary::Percent(20));
        assert_eq!(policy.promote, Promote::Auto);
        assert_eq!(policy.bake_seconds, 60);
        assert_eq!(policy.max_unavailable, 1);
        let zero = PolicyOverrides {
            max_unavailable: Some(0),
            ..PolicyOverrides::default()
        };
        assert!(zero
            .apply_to(&file)
            .unwrap_err()
            .to_string()
            .contains("--max-unavailable 0"));
    }

    #[test]
    fn list_and_status_show_each_node_state() {
        use crate::inventory::{CommandTransport, InventoryNode, Role, Transport};
        use crate::record::RolloutState;
        let inventory = Inventory {
            nodes: ["a", "b", "c"]
                .iter()
                .map(|n| InventoryNode {
                    name: n.to_string(),
                    address: "x".into(),
                    role: Role::Follower,
                    labels: BTreeMap::new(),
                })
                .collect(),
            leader_command: None,
            cluster: None,
            transport: Transport::Command(CommandTransport {
                template: "t".into(),
                status_template: Some("s".into()),
            }),
            rollout: RolloutPolicy::default(),
        };
        let currents: BTreeMap<String, Option<Version>> = [
            ("a".to_string(), Some(Version::new(1, 0, 0))),
            ("b".to_string(), Some(Version::new(1, 0, 0))),
            ("c".to_string(), Some(Version::new(1, 1, 0))),
        ]
        .into();
        let target = Version::new(1, 1, 0);
        let plan = RolloutPlan::compute(
            &inventory,
            &RolloutPolicy::default(),
            Some("a"),
            &currents,
            &target,
        )
        .unwrap();
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut record = RolloutRecord::new(plan, "/c.toml".into(), &currents, now);
        record.stage_index = 1;
        record.state = RolloutState::AwaitingPromotion;
        let b = record.nodes.get_mut("b").unwrap();
        b.state = NodeRolloutState::Updated;
        let a = record.nodes.get_mut("a").unwrap();
        a.state = NodeRolloutState::Failed;
        a.message = Some("health check failed".into());

        assert_eq!(
            render_list(std::slice::from_ref(&record)),
            "20261201T100000Z-1.1.0  awaiting-promotion 1.1.0  stage 1/2  1 of 2 nodes updated\n"
        );
        let status = render_status(&record);
        // Failed in stage 2: it is stage 2 that is shown.
        let mut failed = record.clone();
        failed.state = RolloutState::Failed;
        assert!(render_list(std::slice::from_ref(&failed))
            .contains("failed             1.1.0  stage 2/2"));
        for line in [
            "state:     awaiting-promotion\n",
            "stage:     1 of 2\n",
            "stage 1 (canary):\n  b                updated      from 1.0.0\n",
            "stage 2 (leader):\n  a                failed       from 1.0.0: health check failed\n",
            "skipped:\n  c                skipped      from 1.1.0\n",
        ] {
            assert!(status.contains(line), "{line:?} not in\n{status}");
        }
    }

    #[test]
    fn states_print_as_their_json_spelling() {
        use crate::record::RolloutState;
        assert_eq!(label(RolloutState::AwaitingPromotion), "awaiting-promotion");
        assert_eq!(label(NodeRolloutState::RolledBack), "rolled-back");
        assert_eq!(label(Promote::Manual), "manual");
    }
}
