//! A simulated fleet: many fake nodes behind the `command` transport, for
//! the thousand-node rollout test and `cargo xtask bench rollout`.
//!
//! Each node is a directory of small files driven by `fake_node.sh` (see
//! its header): `apply` sleeps, then records the new version; `status`
//! reports it; `rollback` returns to the previous one. Real nodes cost a
//! release build and hundreds of milliseconds of I/O each; fake ones cost
//! a few processes, so what a thousand-node rollout measures is the
//! coordinator (its threads, its record, its output), not the nodes.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The fake node program, written into each fleet directory.
pub const FAKE_NODE_SCRIPT: &str = include_str!("fake_node.sh");

/// A fleet of fake nodes in `dir`: `node-0001` is the leader, the others
/// followers, in inventory order.
#[derive(Debug, Clone)]
pub struct FakeFleet {
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// One line of a fake node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `apply`, `apply-failed` or `rollback`.
    pub op: String,
    pub version: String,
    /// Wall clock, nanoseconds since the epoch (`date +%s%N`).
    pub start_ns: u128,
    pub end_ns: u128,
}

impl FakeFleet {
    /// Creates `nodes` fake nodes running `version`, each apply taking
    /// `apply_seconds`.
    pub fn create(
        dir: &Path,
        nodes: usize,
        version: &str,
        apply_seconds: f64,
    ) -> io::Result<FakeFleet> {
        fs::create_dir_all(dir)?;
        let script = dir.join("fake_node.sh");
        fs::write(&script, FAKE_NODE_SCRIPT)?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        fs::write(dir.join("apply_seconds"), format!("{apply_seconds}\n"))?;
        let names: Vec<String> = (1..=nodes).map(|i| format!("node-{i:04}")).collect();
        for name in &names {
            let node = dir.join(name);
            fs::create_dir_all(&node)?;
            fs::write(node.join("current"), format!("{version}\n"))?;
        }
        Ok(FakeFleet {
            dir: dir.to_path_buf(),
            names,
        })
    }

    pub fn leader(&self) -> &str {
        &self.names[0]
    }

    pub fn script(&self) -> PathBuf {
        self.dir.join("fake_node.sh")
    }

    /// Makes `name`'s next applies fail with exit `code` (6: the node's
    /// health check failed and it rolled itself back).
    pub fn make_fail(&self, name: &str, code: i32) -> io::Result<()> {
        fs::write(self.dir.join(name).join("fail"), format!("{code}\n"))
    }

    /// Writes `cluster.toml` for this fleet; `rollout` is the body of its
    /// `[rollout]` table.
    pub fn write_inventory(&self, rollout: &str) -> io::Result<PathBuf> {
        let mut text = String::with_capacity(self.names.len() * 64);
        for name in &self.names {
            let role = if name == self.leader() {
                "leader"
            } else {
                "follower"
            };
            text.push_str(&format!(
                "[[node]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nrole = \"{role}\"\n"
            ));
        }
        // The rollback line is the template with the apply arguments
        // replaced, so the template ends in exactly those.
        text.push_str(&format!(
            "[transport]\nkind = \"command\"\ntemplate = \"{} --config {}/{{name}} apply --version {{version}} --output json\"\n",
            self.script().display(),
            self.dir.display()
        ));
        text.push_str(&format!("[rollout]\n{rollout}\n"));
        let path = self.dir.join("cluster.toml");
        fs::write(&path, text)?;
        Ok(path)
    }

    /// The version `name` runs now.
    pub fn current(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name).join("current"))
            .ok()
            .map(|v| v.trim().to_string())
    }

    /// Every operation `name` ran, oldest first. Panics on a malformed
    /// line: the fake node writes them, so one is a bug in it.
    pub fn log(&self, name: &str) -> Vec<Operation> {
        let path = self.dir.join(name).join("log");
        let Ok(text) = fs::read_to_string(&path) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let parsed = (fields.len() == 4)
                    .then(|| {
                        Some(Operation {
                            op: fields[0].to_string(),
                            version: fields[1].to_string(),
                            start_ns: fields[2].parse().ok()?,
                            end_ns: fields[3].parse().ok()?,
                        })
                    })
                    .flatten();
                parsed.unwrap_or_else(|| panic!("{}: malformed line {line:?}", path.display()))
            })
            .collect()
    }
}

/// The most operations that overlapped in time.
pub fn most_at_once(operations: &[&Operation]) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::with_capacity(operations.len() * 2);
    for op in operations {
        edges.push((op.start_ns, 1));
        edges.push((op.end_ns, -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start_ns: u128, end_ns: u128) -> Operation {
        Operation {
            op: "apply".into(),
            version: "1".into(),
            start_ns,
            end_ns,
        }
    }

    #[test]
    fn overlaps_are_counted_and_touching_ones_are_not() {
        let ops = [op(0, 10), op(5, 15), op(10, 20), op(30, 40)];
        assert_eq!(most_at_once(&ops.iter().collect::<Vec<_>>()), 2);
        assert_eq!(most_at_once(&[]), 0);
    }
}
