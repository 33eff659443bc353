//! `ferry coordination status|halt|clear-halt|forget`: the fleet's state
//! in etcd as this node's `[coordination]` sees it, and the operator's
//! hands on it.

use serde_json::json;

use crate::config::Config;
use crate::coordination::{CoordinationError, Fleet};
use crate::error::Result;

fn fleet(config: &Config) -> Result<Fleet> {
    Ok(Fleet::from_config(config)?.ok_or(CoordinationError::NotConfigured)?)
}

/// The halt key, who is updating, who waits, and every member's version.
pub fn status(config: &Config, as_json: bool) -> Result<()> {
    let fleet = fleet(config)?;
    let halt = fleet.halt()?;
    let (queue, updating) = fleet.slots()?;
    let members = fleet.members()?;
    let down = fleet.down()?;
    let max = fleet.config.max_unavailable as usize;
    // As the nodes count: marked nodes first (see `coordination::turn`),
    // then the queue; a marked node queueing again is not a waiter.
    let is_down = |node: &str| down.iter().any(|d| d.node == node);
    let free = max.saturating_sub(down.len());
    let waiting: Vec<_> = queue
        .iter()
        .filter(|s| !is_down(&s.node))
        .skip(free)
        .collect();
    if as_json {
        let text = json!({
            "prefix": fleet.config.prefix,
            "endpoints": fleet.config.endpoints,
            "max_unavailable": fleet.config.max_unavailable,
            "halt": halt,
            "updating": updating,
            "down": down,
            "waiting": waiting,
            "members": members,
        });
        outln!("{}", serde_json::to_string_pretty(&text).expect("JSON"));
        return Ok(());
    }
    outln!(
        "fleet {} (etcd {})",
        fleet.config.prefix,
        fleet.client.endpoints()
    );
    match &halt {
        Some(halt) => outln!(
            "HALTED: {}\n  after a look: ferry coordination clear-halt",
            halt.describe()
        ),
        None => outln!("not halted"),
    }
    outln!("updating ({} of at most {max}):", updating.len());
    for slot in &updating {
        outln!(
            "  {} {} -> {} since {}",
            slot.node,
            slot.from_version.as_deref().unwrap_or("nothing"),
            slot.to_version,
            slot.since
        );
    }
    for mark in &down {
        outln!(
            "  {} down since {} (switched to {}, not healthy again yet): holds a slot until a run of its own ends healthy, or `ferry coordination forget {}`",
            mark.node, mark.since, mark.to_version, mark.node
        );
    }
    if !waiting.is_empty() {
        let names: Vec<&str> = waiting.iter().map(|s| s.node.as_str()).collect();
        outln!("waiting for a slot: {}", names.join(", "));
    }
    outln!("members ({}):", members.len());
    for member in &members {
        outln!(
            "  {:<24} {:<8} {:<12} reported {}",
            member.node,
            serde_json::to_value(member.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            member.version.as_deref().unwrap_or("nothing"),
            member.reported_at
        );
    }
    Ok(())
}

/// Removes the halt key so that nodes update again.
pub fn clear_halt(config: &Config) -> Result<()> {
    let fleet = fleet(config)?;
    match fleet.clear_halt()? {
        Some(halt) => outln!(
            "cleared the halt of {}/halt ({}); nodes update again on their next run",
            fleet.config.prefix,
            halt.describe()
        ),
        None => outln!("{} was not halted", fleet.config.prefix),
    }
    Ok(())
}

/// Writes the halt key by hand: every node refuses to take a slot (nodes
/// updating now finish their update).
pub fn halt(config: &Config, reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(CoordinationError::EmptyReason.into());
    }
    let fleet = fleet(config)?;
    match fleet.halt_by_hand(reason)? {
        None => outln!(
            "halted {}: no node takes a slot until `ferry coordination clear-halt` (nodes updating now finish)",
            fleet.config.prefix
        ),
        Some(earlier) => outln!(
            "{} was already halted ({}); left as it was",
            fleet.config.prefix,
            earlier.describe()
        ),
    }
    Ok(())
}

/// Removes a departed member, so that the leader stops waiting for it.
pub fn forget(config: &Config, node: &str) -> Result<()> {
    let fleet = fleet(config)?;
    match fleet.forget_member(node)? {
        Some(member) => {
            outln!(
                "forgot {node} (it last reported {}); a leader no longer waits for it, and it registers again on its next run if it still exists",
                member.version.as_deref().unwrap_or("nothing")
            );
            Ok(())
        }
        None => Err(CoordinationError::NotAMember {
            node: node.to_string(),
            prefix: fleet.config.prefix.clone(),
        }
        .into()),
    }
}
