//! `ferry history [--json]`: every operation this node ran, oldest first.

use crate::config::Config;
use crate::error::Result;
use crate::state;

pub fn run(config: &Config, json: bool) -> Result<()> {
    let ops = state::history(&config.install.state_dir)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&ops).expect("history serialises")
        );
        return Ok(());
    }
    if ops.is_empty() {
        outln!("no operations recorded yet");
    }
    for op in &ops {
        outln!("{}", super::status::describe(op));
    }
    Ok(())
}
