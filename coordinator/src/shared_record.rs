//! The record of a running rollout, changed by every node thread of a
//! stage at once and saved after each change as a group commit.
//!
//! Every node state change must be durable before the coordinator acts on
//! it (a killed coordinator resumes from the file). Writing the whole
//! record (about 130 bytes a node, two fsyncs) once per change, under the
//! record's lock, made the nodes of a stage that finish together queue for
//! one write each. Here the write happens outside the record's lock, one
//! writer at a time, and each change gets a number: a caller whose change
//! is already in a finished write (its number is at most the one written)
//! does not write again. Numbers, not a comparison with the file: reading
//! and serialising a 1,000-node record to learn that nothing changed cost
//! as much as writing it.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;

use crate::error::Result;
use crate::record::RolloutRecord;

pub struct SharedRecord<'a> {
    /// The record, and how many changes were made to it.
    record: Mutex<(RolloutRecord, u64)>,
    /// Held while writing; the number of changes the file on disk holds.
    written: Mutex<u64>,
    state_dir: &'a Path,
}

impl<'a> SharedRecord<'a> {
    /// `record`, which is on disk as it is.
    pub fn new(record: RolloutRecord, state_dir: &'a Path) -> SharedRecord<'a> {
        SharedRecord {
            record: Mutex::new((record, 0)),
            written: Mutex::new(0),
            state_dir,
        }
    }

    pub fn state_dir(&self) -> &'a Path {
        self.state_dir
    }

    /// Changes the record; returns once a write holding the change is
    /// durable.
    pub fn update<T>(&self, change: impl FnOnce(&mut RolloutRecord) -> T) -> Result<T> {
        let (out, mine) = {
            let mut guard = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            let out = change(&mut guard.0);
            guard.1 += 1;
            (out, guard.1)
        };
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if *written >= mine {
            // A write that started after this change finished meanwhile.
            return Ok(out);
        }
        let (mut snapshot, changes) = {
            let guard = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            (guard.0.clone(), guard.1)
        };
        let now = Timestamp::now();
        snapshot.save(self.state_dir, now)?;
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .updated = now;
        *written = changes;
        Ok(out)
    }

    pub fn read<T>(&self, look: impl FnOnce(&RolloutRecord) -> T) -> T {
        look(&self.record.lock().unwrap_or_else(PoisonError::into_inner).0)
    }

    pub fn into_inner(self) -> RolloutRecord {
        self.record
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RolloutPlan, Stage, StageKind};
    use crate::record::NodeRolloutState;
    use semver::Version;
    use std::collections::BTreeMap;

    fn record() -> RolloutRecord {
        let nodes: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
        let plan = RolloutPlan {
            target: Version::new(1, 1, 0),
            cluster_size: nodes.len(),
            batch_size: nodes.len(),
            leader: None,
            stages: vec![Stage {
                name: "batch 1".into(),
                kind: StageKind::Batch,
                nodes: nodes.clone(),
                why: String::new(),
            }],
            skipped: vec![],
            warnings: vec![],
        };
        let currents: BTreeMap<String, Option<Version>> = nodes
            .iter()
            .map(|n| (n.clone(), Some(Version::new(1, 0, 0))))
            .collect();
        RolloutRecord::new(plan, "/c.toml".into(), &currents, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn every_change_is_on_disk_when_its_update_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record();
        r.save(dir.path(), Timestamp::now()).unwrap();
        let id = r.id.clone();
        let shared = SharedRecord::new(r, dir.path());
        // Forty threads change forty nodes at once; each checks the file
        // holds its own change as soon as its update returns.
        std::thread::scope(|scope| {
            for i in 0..40 {
                let (shared, id, dir) = (&shared, &id, dir.path());
                scope.spawn(move || {
                    let name = format!("n{i:02}");
                    shared
                        .update(|r| {
                            r.nodes.get_mut(&name).unwrap().state = NodeRolloutState::Updated
                        })
                        .unwrap();
                    let on_disk = RolloutRecord::load(dir, id).unwrap();
                    assert_eq!(on_disk.nodes[&name].state, NodeRolloutState::Updated);
                });
            }
        });
        let last = shared.into_inner();
        assert_eq!(last, RolloutRecord::load(dir.path(), &id).unwrap());
        assert_eq!(last.count(NodeRolloutState::Updated), 40);
    }
}
