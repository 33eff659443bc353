//! Pre-flight disk space check.
//!
//! Running out of space halfway through staging is safe (the old release
//! keeps running) but wasteful and noisy; refusing up front with numbers is
//! kinder. ferry asks for twice what the plan needs, leaving the node room
//! to breathe after the update.

use std::path::Path;

use crate::error::{NodeError, Result};
use crate::plan::{human_bytes, UpdatePlan};

const HEADROOM_FACTOR: u64 = 2;

/// Free bytes for unprivileged use on the filesystem holding `path` (or its
/// nearest existing ancestor).
fn free_bytes(path: &Path) -> Result<(u64, u64)> {
    let mut probe = path;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let st = rustix::fs::statvfs(probe).map_err(|e| {
        NodeError::io(
            format!("cannot read free space of {}", probe.display()),
            e.into(),
        )
    })?;
    let dev = std::fs::metadata(probe)
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .unwrap_or(0);
    Ok((st.f_bavail.saturating_mul(st.f_frsize), dev))
}

pub fn check(state_dir: &Path, root: &Path, plan: &UpdatePlan) -> Result<()> {
    if crate::faults::skip_space_check() {
        return Ok(());
    }
    let (state_free, state_dev) = free_bytes(state_dir)?;
    let (root_free, root_dev) = free_bytes(root)?;
    let state_need = plan.state_bytes_needed() * HEADROOM_FACTOR;
    // On another filesystem than the store, release files are copies.
    let root_need = if state_dev == root_dev {
        0
    } else {
        plan.release_bytes * HEADROOM_FACTOR
    };
    let mut short = Vec::new();
    if state_dev == root_dev {
        if state_free < state_need {
            short.push(format!(
                "{} (state_dir and install.root) has {} free",
                state_dir.display(),
                human_bytes(state_free)
            ));
        }
    } else {
        if state_free < state_need {
            short.push(format!(
                "{} has {} free, needs {}",
                state_dir.display(),
                human_bytes(state_free),
                human_bytes(state_need)
            ));
        }
        if root_free < root_need {
            short.push(format!(
                "{} has {} free, needs {}",
                root.display(),
                human_bytes(root_free),
                human_bytes(root_need)
            ));
        }
    }
    if short.is_empty() {
        return Ok(());
    }
    Err(NodeError::Other(format!(
        "not enough disk space for {} (ferry wants twice the {} the update needs): {}; free some space and run ferry again — nothing was changed",
        plan.to,
        human_bytes(plan.state_bytes_needed()),
        short.join("; ")
    )))
}
