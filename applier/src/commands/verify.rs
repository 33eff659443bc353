//! `ferry verify`: compare the installed files with the signed manifest of
//! the installed version. Exit 0 when they match, 4 with the list otherwise.

use crate::config::Config;
use crate::drift;
use crate::error::{NodeError, Result};

pub fn run(config: &Config) -> Result<()> {
    let installed = drift::installed(config)?;
    let problems = installed
        .differences()
        .map_err(|e| NodeError::io(format!("cannot read {}", installed.dir.display()), e))?;
    if problems.is_empty() {
        outln!(
            "{} matches its signed manifest ({} entries checked)",
            installed.version,
            installed.entries.len()
        );
        return Ok(());
    }
    Err(NodeError::Drift(format!(
        "{} differs from its signed manifest in {} places (run `ferry repair` to restore it):\n  {}",
        installed.version,
        problems.len(),
        problems.join("\n  ")
    )))
}
