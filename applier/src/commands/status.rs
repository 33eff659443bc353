//! `ferry status [--json]`: what runs, what ran before, how the last
//! operation went. Read-only and lock-free, so it answers during an apply.

use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::error::{NodeError, Result};
use crate::release_dir;
use crate::state::{NodeState, Operation, Outcome};

#[derive(Serialize)]
pub struct StatusReport {
    pub current_version: Option<Version>,
    pub previous_version: Option<Version>,
    pub channel: String,
    pub last_operation: Option<Operation>,
    pub releases: Vec<Version>,
    pub install_root: String,
    pub state_dir: String,
    /// The journal of an operation running right now (another ferry holds
    /// the lock), if any.
    pub operation_in_progress: Option<crate::journal::Journal>,
    /// This node's id in rollout waves and where it came from (`config`,
    /// `machine-id`, `hostname`); null when it has none (see
    /// `crate::node_id`).
    pub node_id: Option<crate::node_id::NodeId>,
}

pub fn report(config: &Config) -> Result<StatusReport> {
    let root = &config.install.root;
    let node = NodeState::load(&config.install.state_dir)?;
    Ok(StatusReport {
        current_version: crate::installed::version(config)?,
        previous_version: node.previous_version,
        channel: config.repository.channel.clone(),
        last_operation: node.last_operation,
        releases: release_dir::releases_on_disk(root)
            .map_err(|e| NodeError::io("cannot list releases", e))?,
        install_root: root.display().to_string(),
        state_dir: config.install.state_dir.display().to_string(),
        operation_in_progress: crate::journal::Journal::load(&config.install.state_dir)?,
        // Only releases with waves need an id; status just shows it.
        node_id: config.node_id().ok(),
    })
}

pub fn run(config: &Config, json: bool) -> Result<()> {
    super::recover_if_idle(config)?;
    let r = report(config)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&r).expect("status serialises")
        );
        return Ok(());
    }
    let show = |v: &Option<Version>| v.as_ref().map_or("-".to_string(), |v| v.to_string());
    outln!(
        "current:   {}",
        r.current_version
            .as_ref()
            .map_or("nothing installed".into(), |v| v.to_string())
    );
    outln!("previous:  {}", show(&r.previous_version));
    outln!("channel:   {}", r.channel);
    let on_disk: Vec<String> = r.releases.iter().map(|v| v.to_string()).collect();
    outln!(
        "on disk:   {}",
        if on_disk.is_empty() {
            "-".into()
        } else {
            on_disk.join(", ")
        }
    );
    if let Some(j) = &r.operation_in_progress {
        outln!(
            "unfinished: {} {} -> {} (journal step {:?})",
            crate::recovery::kind_name(j.operation),
            show(&j.from_version),
            j.to_version,
            j.step
        );
    }
    match &r.node_id {
        Some(node) => {
            let from = match node.source {
                crate::node_id::NodeIdSource::Config => "[node] id",
                crate::node_id::NodeIdSource::MachineId => crate::node_id::MACHINE_ID_PATH,
                crate::node_id::NodeIdSource::Hostname => "the hostname",
            };
            outln!("node id:   {} (from {from})", node.id);
        }
        None => outln!("node id:   none (set [node] id to take part in rollout waves)"),
    }
    match &r.last_operation {
        None => outln!("last:      -"),
        Some(op) => outln!("last:      {}", describe(op)),
    }
    Ok(())
}

pub fn describe(op: &Operation) -> String {
    let outcome = match op.outcome {
        Outcome::Success => "ok",
        Outcome::Failed => "FAILED",
        Outcome::RolledBack => "ROLLED BACK",
        Outcome::Interrupted => "INTERRUPTED",
        Outcome::Refused => "REFUSED",
    };
    let show = |v: &Option<Version>| v.as_ref().map_or("-".to_string(), |v| v.to_string());
    let kind = serde_json::to_value(op.operation)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!(
        "{} {kind} {} -> {} {outcome}: {}",
        op.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        show(&op.from_version),
        show(&op.to_version),
        op.message.lines().next().unwrap_or("")
    )
}
