//! The coordinator's terminal view: one line per node (version, state,
//! step, health), redrawn in place while a rollout runs.
//!
//! An operator watching a rollout wants the whole cluster on one screen,
//! not a scrolling log in which the node that is stuck scrolled away. On a
//! terminal the table is redrawn a few times a second, with messages
//! (stage started, node failed) printed above it; anywhere else (a CI log,
//! a pipe, `nohup`) only the messages are printed, one per line, exactly as
//! before, because cursor movements in a log file are noise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use semver::Version;

use crate::record::{label, NodeProgress, NodeRolloutState, RolloutRecord};

/// Where a coordinator reports progress.
pub struct RolloutView {
    live: bool,
    /// Lines of the table now on screen (to move back over them).
    drawn: Mutex<usize>,
}

impl RolloutView {
    /// Live when stdout is a terminal that can move its cursor.
    pub fn for_stdout() -> RolloutView {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        RolloutView::new(std::io::stdout().is_terminal() && !dumb)
    }

    pub fn new(live: bool) -> RolloutView {
        RolloutView {
            live,
            drawn: Mutex::new(0),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Prints a message; on a terminal, above the table.
    pub fn say(&self, line: &str) {
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        if self.live {
            let _ = write!(out, "{}", erase(*drawn));
            *drawn = 0;
        }
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Redraws the table (terminal only).
    pub fn draw(&self, record: &RolloutRecord) {
        if !self.live {
            return;
        }
        let lines = table(record);
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = erase(*drawn);
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
        *drawn = lines.len();
    }

    /// Draws the table a last time and leaves it on screen: what follows
    /// prints below it.
    pub fn finish(&self, record: &RolloutRecord) {
        self.draw(record);
        *self.drawn.lock().unwrap_or_else(|p| p.into_inner()) = 0;
    }
}

/// Moves the cursor up over `lines` lines and clears to the end of screen.
fn erase(lines: usize) -> String {
    if lines == 0 {
        String::new()
    } else {
        format!("\x1b[{lines}F\x1b[J")
    }
}

/// The table: a header, then one line per node in rollout order (skipped
/// nodes last).
pub fn table(record: &RolloutRecord) -> Vec<String> {
    let mut names: Vec<&str> = record.plan.nodes_in_order().collect();
    names.extend(record.plan.skipped.iter().map(String::as_str));
    let width = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let mut lines = vec![format!(
        "{:<width$}  {:<17}  {:<12}  {:<8}  {:<9}  note",
        "node", "version", "state", "step", "health"
    )];
    for name in names {
        let Some(node) = record.nodes.get(name) else {
            continue;
        };
        let note = node.message.as_deref().unwrap_or("");
        let note: String = note.chars().take(60).collect();
        lines.push(
            format!(
                "{name:<width$}  {:<17}  {:<12}  {:<8}  {:<9}  {note}",
                version_shown(node, &record.version),
                label(node.state),
                node.phase.as_deref().unwrap_or("-"),
                node.health.as_deref().unwrap_or("-"),
            )
            .trim_end()
            .to_string(),
        );
    }
    lines
}

/// The version a node runs as far as the coordinator knows ("1.0.0 → 1.1.0"
/// while it moves).
pub fn version_shown(node: &NodeProgress, target: &Version) -> String {
    let from = node.from.as_ref().map_or("-".into(), |v| v.to_string());
    match node.state {
        NodeRolloutState::Updated | NodeRolloutState::Skipped => target.to_string(),
        NodeRolloutState::Updating => format!("{from} → {target}"),
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RolloutPlan, Stage, StageKind};
    use std::collections::BTreeMap;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn one_line_per_node_in_rollout_order_with_version_state_step_and_health() {
        let stage = |name: &str, kind, node: &str| Stage {
            name: name.into(),
            kind,
            nodes: vec![node.into()],
            why: String::new(),
        };
        let plan = RolloutPlan {
            target: v("1.1.0"),
            cluster_size: 3,
            batch_size: 1,
            leader: Some("n1".into()),
            stages: vec![
                stage("canary", StageKind::Canary, "n2"),
                stage("leader", StageKind::Leader, "n1"),
            ],
            skipped: vec!["n3".into()],
            warnings: vec![],
        };
        let currents: BTreeMap<String, Option<Version>> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), Some(v("1.0.0"))))
            .collect();
        let mut record =
            RolloutRecord::new(plan, "c.toml".into(), &currents, jiff::Timestamp::now());
        let n2 = record.nodes.get_mut("n2").unwrap();
        n2.state = NodeRolloutState::Updating;
        n2.phase = Some("switched".into());
        let n1 = record.nodes.get_mut("n1").unwrap();
        n1.state = NodeRolloutState::Failed;
        n1.health = Some("unhealthy".into());
        n1.message = Some("its health check failed".into());
        let lines = table(&record);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("node"));
        assert!(lines[1].starts_with("n2") && lines[1].contains("1.0.0 → 1.1.0"));
        assert!(lines[1].contains("updating") && lines[1].contains("switched"));
        assert!(lines[2].starts_with("n1") && lines[2].contains("failed"));
        assert!(lines[2].contains("unhealthy") && lines[2].contains("its health check failed"));
        assert!(lines[3].starts_with("n3") && lines[3].contains("skipped"));
    }

    #[test]
    fn the_cursor_goes_back_over_exactly_the_lines_drawn() {
        assert_eq!(erase(0), "");
        assert_eq!(erase(6), "\x1b[6F\x1b[J");
    }
}
