//! `ferry status [--json]`: what runs, what ran before, how the last
//! operation went. Read-only and lock-free, so it answers during an apply;
//! it never recovers an interrupted operation (that is the next mutating
//! command's job, under the lock) but says what that command will do.
//! Damaged state files are reported in `problems`, not fatal: status is
//! what an operator runs to find out what is wrong.

use manifests::untrusted_text::escape;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::config::{Config, InstallMode};
use crate::error::Result;
use crate::journal::Journal;
use crate::recovery;
use crate::release_dir;
use crate::state::{NodeState, Operation, Outcome};

/// `ferry status --json`. Also the protocol the coordinator reads nodes
/// with (`ferry-coordinator`'s transport), so it deserialises as well:
/// `current_version` must be there (every ferry prints it: without it the
/// output is not a status report), any other field an older node does not
/// print reads as its default, and fields a newer node adds are ignored.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// Required when read: `deserialize_with` turns off serde's "missing
    /// Option is None".
    #[serde(deserialize_with = "Option::deserialize")]
    pub current_version: Option<Version>,
    #[serde(default)]
    pub previous_version: Option<Version>,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub last_operation: Option<Operation>,
    #[serde(default)]
    pub releases: Vec<Version>,
    #[serde(default)]
    pub install_root: String,
    #[serde(default)]
    pub state_dir: String,
    /// The journal of an operation running right now (another ferry holds
    /// the lock), if any.
    #[serde(default)]
    pub operation_in_progress: Option<Journal>,
    /// The journal of an operation a crash cut short (nobody holds the
    /// lock), and what the next `apply`, `rollback` or `repair` will do
    /// about it; null when there is none.
    #[serde(default)]
    pub interrupted_operation: Option<InterruptedOperation>,
    /// This node's id in rollout waves and where it came from (`config`,
    /// `machine-id`, `hostname`); null when it has none (see
    /// `crate::node_id`).
    #[serde(default)]
    pub node_id: Option<crate::node_id::NodeId>,
    /// Releases this node rolled back by itself and has not installed
    /// since, oldest version first: unattended runs skip them.
    #[serde(default)]
    pub rolled_back_here: Vec<crate::rolled_back_here::RolledBackRelease>,
    /// What status could not read or found inconsistent (a corrupt
    /// `journal.json` or `state.json`, `current` naming a missing
    /// release), one sentence each; empty when all is well.
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InterruptedOperation {
    pub journal: Journal,
    /// `close`, `commit`, `abandon` or `switch-back` (see
    /// `crate::recovery::Action`).
    pub next_action: String,
    /// The same, in a sentence; says so when recovery will refuse.
    pub next_action_description: String,
}

pub fn report(config: &Config) -> Result<StatusReport> {
    let root = &config.install.root;
    let state_dir = &config.install.state_dir;
    let mut problems = Vec::new();
    let node = NodeState::load(state_dir).unwrap_or_else(|e| {
        problems.push(e.to_string());
        NodeState::default()
    });
    let current_version = match crate::installed::version(config) {
        Ok(v) => v,
        // In place the version is in state.json, already reported above.
        Err(_) if config.install.mode == InstallMode::InPlace => None,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    if let (Some(v), InstallMode::Symlink) = (&current_version, config.install.mode) {
        let dir = release_dir::release_path(root, v);
        if !dir.is_dir() {
            problems.push(format!(
                "{} points at {}, which is not on disk: run `ferry repair`",
                crate::switch::current_link(root).display(),
                dir.display()
            ));
        }
    }
    let journal = Journal::load(state_dir).unwrap_or_else(|e| {
        problems.push(e.to_string());
        None
    });
    let rolled_back_here = crate::rolled_back_here::RolledBackHere::load(state_dir)
        .map(|here| here.releases().cloned().collect())
        .unwrap_or_else(|e| {
            problems.push(e.to_string());
            Vec::new()
        });
    let (operation_in_progress, interrupted_operation) = match journal {
        None => (None, None),
        // Unknown (no /proc) counts as running: never call live work a crash.
        Some(journal) if crate::lock::held_by_anyone(state_dir) != Some(false) => {
            (Some(journal), None)
        }
        Some(journal) => {
            let action = recovery::decide(&journal, config.install.mode, current_version.as_ref());
            let next_action_description =
                match crate::recovery_preconditions::check(config, &journal, action) {
                    Ok(()) => action.describe(&journal),
                    Err(refusal) => format!("refuse to act (exit 3): {refusal}"),
                };
            (
                None,
                Some(InterruptedOperation {
                    journal,
                    next_action: action.name().to_string(),
                    next_action_description,
                }),
            )
        }
    };
    Ok(StatusReport {
        current_version,
        previous_version: node.previous_version,
        channel: config.repository.channel.clone(),
        last_operation: node.last_operation,
        releases: release_dir::releases_on_disk(root)
            .map_err(|e| release_dir::listing_failed(root, e))?,
        install_root: root.display().to_string(),
        state_dir: state_dir.display().to_string(),
        operation_in_progress,
        interrupted_operation,
        // Only releases with waves need an id; status just shows it.
        node_id: config.node_id().ok(),
        rolled_back_here,
        problems,
    })
}

pub fn run(config: &Config, json: bool) -> Result<()> {
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
            "running:   {} {} -> {} (journal step {:?})",
            recovery::kind_name(j.operation),
            show(&j.from_version),
            j.to_version,
            j.step
        );
    }
    if let Some(i) = &r.interrupted_operation {
        let j = &i.journal;
        outln!(
            "interrupted: {} {} -> {} (journal step {:?}); the next apply, rollback or repair will {}",
            recovery::kind_name(j.operation),
            show(&j.from_version),
            j.to_version,
            j.step,
            i.next_action_description
        );
    }
    for problem in &r.problems {
        outln!("problem:   {}", escape(problem));
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
    for release in &r.rolled_back_here {
        outln!("rolled back here: {}", release.describe());
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
        // Recorded messages can quote a server or a bundle.
        escape(op.message.lines().next().unwrap_or(""))
    )
}
