//! A node's turn to update: waiting for it (the leader for its followers,
//! every node for a slot), holding it, and giving it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use semver::Version;
use serde_json::json;

use super::etcd::{EtcdClient, EtcdError, KeyValue, SortBy};
use super::{followers_behind, CoordinationError, Fleet, Role, SlotHolder, SlotLoss};
use crate::error::{NodeError, Result};
use crate::events;

/// Whether a fleet halt stops a node queueing for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halts {
    Stop,
    Ignored,
}

/// Where a node stands in the slot queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// Among the first `max_unavailable`: it may update.
    Holds,
    /// Behind these holders and earlier waiters.
    Waits { ahead: Vec<String> },
    /// Its key is gone: its lease expired.
    Lost,
}

/// The node id at the end of a key (`<prefix>/slots/<id>`).
fn node_of(kv: &KeyValue) -> &str {
    kv.key.rsplit('/').next().unwrap_or(&kv.key)
}

/// `own_key`'s place among the unavailable: first every node marked
/// `down` (it switched and is not healthy again yet, so it counts as
/// unavailable whether or not it is alive and queued: a crashed node's
/// lease lapses, its mark does not), in the order they were marked; then
/// the queue in `slots` (sorted by creation revision). A marked node that
/// queues again (its recovery) is therefore first: it takes back the slot
/// it never gave up.
pub fn place(slots: &[KeyValue], down: &[KeyValue], own_key: &str, max_unavailable: u32) -> Place {
    let Some(own) = slots.iter().find(|kv| kv.key == own_key) else {
        return Place::Lost;
    };
    let marked: Vec<&str> = down.iter().map(node_of).collect();
    let order: Vec<&str> = marked
        .iter()
        .copied()
        .chain(slots.iter().map(node_of).filter(|n| !marked.contains(n)))
        .collect();
    let own = node_of(own);
    let i = order
        .iter()
        .position(|n| *n == own)
        .expect("own node is in the order");
    match i < max_unavailable as usize {
        true => Place::Holds,
        false => Place::Waits {
            ahead: order[..i].iter().map(|n| n.to_string()).collect(),
        },
    }
}

/// A lease renewed every third of its TTL by a thread until dropped.
struct Lease {
    id: i64,
    client: EtcdClient,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease {
    fn grant(client: &EtcdClient, ttl_seconds: u64) -> std::result::Result<Lease, EtcdError> {
        let id = client.grant(ttl_seconds)?;
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (client, stop, lost) = (client.clone(), stop.clone(), lost.clone());
            let every = Duration::from_millis(ttl_seconds * 1000 / 3);
            thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    match client.keep_alive(id) {
                        Ok(0) => {
                            lost.store(true, Ordering::Relaxed);
                            tracing::error!(lease = id, "the coordination lease expired: this node no longer holds its slot");
                            return;
                        }
                        Ok(_) => {}
                        // A blip: the next renewal may get through before
                        // the TTL runs out; if not, etcd answers TTL 0.
                        Err(e) => {
                            tracing::warn!(lease = id, error = %e, "cannot renew the coordination lease")
                        }
                    }
                }
            })
        };
        Ok(Lease {
            id,
            client: client.clone(),
            stop,
            lost,
            renewer: Some(renewer),
        })
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    /// Stops renewing and revokes: the slot keys go with the lease.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if let Err(e) = self.client.revoke(self.id) {
            // Not fatal: the lease expires by itself after its TTL.
            errln!("ferry: warning: cannot release the coordination slot now ({e}); it frees itself when its lease expires");
        }
    }
}

/// This node's turn: a slot held until [`Turn::finish`] (or drop).
pub struct Turn<'a> {
    fleet: &'a Fleet,
    to: Version,
    lease: Lease,
}

impl Fleet {
    /// Waits for this node's turn to update `from` → `to`: no halt, the
    /// followers done (leader), then a slot. Fails closed: any doubt is an
    /// error, and the node must not update.
    pub fn take_turn(&self, from: Option<&Version>, to: &Version) -> Result<Turn<'_>> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.config.wait_timeout_seconds);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        self.report_version(from)?;
        self.refuse_if_halted()?;
        if self.config.role == Role::Leader {
            self.wait_for_followers(to, deadline, poll)?;
        }
        self.take_slot(from, to, started, Halts::Stop)
    }

    /// A slot for crash recovery that is about to touch the service
    /// (finish going live, or bring the old release back): the node counts
    /// as unavailable meanwhile, so it queues like an update. Unlike an
    /// update it neither stops at a halt nor waits for followers: it
    /// repairs a node that is already half-way, and leaving it there is
    /// worse for the fleet than finishing.
    pub fn take_recovery_slot(&self, from: Option<&Version>, to: &Version) -> Result<Turn<'_>> {
        self.take_slot(from, to, Instant::now(), Halts::Ignored)
    }

    fn take_slot(
        &self,
        from: Option<&Version>,
        to: &Version,
        started: Instant,
        halts: Halts,
    ) -> Result<Turn<'_>> {
        let deadline = started + Duration::from_secs(self.config.wait_timeout_seconds);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let lease = Lease::grant(&self.client, self.config.lease_seconds)
            .map_err(|e| self.unreachable("take a lease", e))?;
        let holder = SlotHolder {
            node: self.node.clone(),
            from_version: from.map(Version::to_string),
            to_version: to.to_string(),
            since: Timestamp::now().to_string(),
        };
        let value = serde_json::to_vec(&holder).expect("a slot holder serializes");
        let own_key = self.key("slots", &self.node);
        self.client
            .put(&own_key, &value, lease.id)
            .map_err(|e| self.unreachable("queue for a slot", e))?;
        let max = self.config.max_unavailable;
        let mut said_waiting = None;
        loop {
            // Checked on every round: a node that failed meanwhile stops
            // the queue, including nodes that were next.
            if halts == Halts::Stop {
                self.refuse_if_halted()?;
            }
            let (slots, down) = self
                .queue()
                .map_err(|e| self.unreachable("read the slot queue", e))?;
            match place(&slots, &down, &own_key, max) {
                Place::Holds => break,
                Place::Lost => return Err(self.lease_lost()),
                Place::Waits { ahead } => {
                    if said_waiting.as_ref() != Some(&ahead.len()) {
                        events::say(format!(
                            "waiting for a slot: {} of {max} taken, {} ahead ({})",
                            ahead.len().min(max as usize),
                            ahead.len(),
                            ahead.join(", ")
                        ));
                        events::emit(
                            events::Event::Waiting,
                            json!({ "for": "slot", "ahead": ahead, "max_unavailable": max }),
                        );
                        said_waiting = Some(ahead.len());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(CoordinationError::NoSlotInTime {
                    wait_seconds: self.config.wait_timeout_seconds,
                    max_unavailable: max,
                    prefix: self.config.prefix.clone(),
                }
                .into());
            }
            thread::sleep(poll);
        }
        if lease.lost() {
            return Err(self.lease_lost());
        }
        self.client
            .put(&self.key("updating", &self.node), &value, lease.id)
            .map_err(|e| self.unreachable("mark this node as updating", e))?;
        let waited = started.elapsed().as_secs_f64();
        events::say(format!(
            "took a coordination slot ({max} at most updating at once) after {waited:.1}s"
        ));
        events::emit(
            events::Event::SlotAcquired,
            json!({ "node": self.node, "max_unavailable": max, "waited_seconds": waited }),
        );
        Ok(Turn {
            fleet: self,
            to: to.clone(),
            lease,
        })
    }

    /// The slot queue and the `down` marks, each by creation revision.
    fn queue(&self) -> std::result::Result<(Vec<KeyValue>, Vec<KeyValue>), EtcdError> {
        let read = |section| {
            self.client
                .range(&self.section(section), true, SortBy::CreateRevision, None)
                .map(|r| r.kvs)
        };
        Ok((read("slots")?, read("down")?))
    }

    /// Nodes counted as unavailable because they switched and have not
    /// ended a turn healthy since (`<prefix>/down/`), in marking order.
    pub fn down(&self) -> Result<Vec<SlotHolder>> {
        let range = self
            .client
            .range(&self.section("down"), true, SortBy::CreateRevision, None)
            .map_err(|e| self.unreachable("read the down marks", e))?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// Whether etcd holds this node's `down` mark: it switched during a
    /// turn and has not yet ended one healthy.
    pub fn marked_down(&self) -> Result<bool> {
        let range = self
            .client
            .range(&self.key("down", &self.node), false, SortBy::Key, None)
            .map_err(|e| self.unreachable("read this node's down mark", e))?;
        Ok(!range.kvs.is_empty())
    }

    /// Removes this node's `down` mark: it is healthy again (or never
    /// went down), and its slot is free for the next node.
    pub fn clear_down_mark(&self) -> Result<()> {
        self.client
            .delete(&self.key("down", &self.node), false)
            .map(|_| ())
            .map_err(|e| self.unreachable("remove this node's down mark", e))
    }

    fn refuse_if_halted(&self) -> Result<()> {
        match self.halt()? {
            None => Ok(()),
            Some(halt) => Err(NodeError::Halted(halt.refusal(&self.config.prefix))),
        }
    }

    fn lease_lost(&self) -> NodeError {
        CoordinationError::LeaseExpired {
            endpoints: self.client.endpoints(),
            lease_seconds: self.config.lease_seconds,
        }
        .into()
    }

    fn wait_for_followers(&self, to: &Version, deadline: Instant, poll: Duration) -> Result<()> {
        let expected = self.config.followers.unwrap_or(0);
        let mut said = None;
        loop {
            let members = self.members()?;
            let Some(behind) = followers_behind(&members, to, expected) else {
                return Ok(());
            };
            if said.as_ref() != Some(&behind) {
                events::say(format!(
                    "leader: waiting for the followers before updating: {behind}"
                ));
                events::emit(
                    events::Event::Waiting,
                    json!({ "for": "followers", "detail": behind }),
                );
                said = Some(behind.clone());
            }
            if Instant::now() >= deadline {
                return Err(CoordinationError::FollowersNotDone {
                    wait_seconds: self.config.wait_timeout_seconds,
                    behind,
                }
                .into());
            }
            thread::sleep(poll);
            self.refuse_if_halted()?;
        }
    }
}

impl Turn<'_> {
    /// Confirms, with etcd itself and not the renewer's last word, that
    /// this node still holds its slot: its lease alive and its key among
    /// the first `max_unavailable`. Called just before the switch, the
    /// last moment at which stopping leaves the node as it was. Any doubt
    /// (etcd unreachable, lease gone, key gone) is a refusal: a node that
    /// lost its slot may have been replaced by another one, and switching
    /// now could take one node more than `max_unavailable` down.
    pub fn confirm(&self) -> Result<()> {
        let fleet = self.fleet;
        let lost = |why: SlotLoss| NodeError::from(CoordinationError::SlotLost(why));
        if self.lease.lost() {
            return Err(lost(SlotLoss::LeaseLapsed {
                endpoints: fleet.client.endpoints(),
                lease_seconds: fleet.config.lease_seconds,
            }));
        }
        match fleet.client.keep_alive(self.lease.id) {
            Ok(ttl) if ttl > 0 => {}
            Ok(_) => return Err(lost(SlotLoss::LeaseGone)),
            Err(source) => {
                return Err(lost(SlotLoss::NoAnswer {
                    endpoints: fleet.client.endpoints(),
                    source,
                }))
            }
        }
        let (slots, down) = fleet
            .queue()
            .map_err(|e| lost(SlotLoss::QueueUnreadable(e)))?;
        let own_key = fleet.key("slots", &fleet.node);
        match place(&slots, &down, &own_key, fleet.config.max_unavailable) {
            Place::Holds => {}
            Place::Lost => return Err(lost(SlotLoss::KeyGone(own_key))),
            Place::Waits { ahead } => return Err(lost(SlotLoss::Overtaken(ahead))),
        }
        // From the switch on the node is unavailable until a turn of its
        // own ends with it healthy: marked without a lease, so that a crash
        // (lease lapsed) does not hand its slot to the next node while it
        // is down. No mark, no switch.
        let value = serde_json::to_vec(&SlotHolder {
            node: fleet.node.clone(),
            from_version: None,
            to_version: self.to.to_string(),
            since: Timestamp::now().to_string(),
        })
        .expect("a slot holder serializes");
        fleet
            .client
            .put(&fleet.key("down", &fleet.node), &value, 0)
            .map(|_| ())
            .map_err(|e| lost(SlotLoss::MarkUnwritten(e)))
    }

    /// Gives the slot back without reporting or halting: for an update
    /// stopped because the turn itself was lost, not because the version
    /// failed.
    pub fn give_up(self) {
        // The switch did not happen: the node never went down.
        self.release();
    }

    /// Gives the slot back after a recovery that only closed a finished
    /// operation or undid one that never switched: the node is as whole
    /// as before its turn, and the version gets no verdict (no report,
    /// no halt).
    pub fn release(self) {
        let Turn { fleet, lease, .. } = self;
        // The slot first, the mark last: while the mark is there the node
        // still counts as unavailable, so a node whose older slot key
        // comes first cannot start while this one's `updating` key is
        // still in etcd (two unavailable at one revision).
        drop(lease);
        clear_mark_or_warn(fleet);
    }

    /// Ends the turn after the update: on success the new version is
    /// reported; on failure the fleet is halted (`halt_on_failure`)
    /// before the slot is given back, so no waiting node slips in.
    pub fn finish(self, outcome: std::result::Result<(), &NodeError>) {
        let fleet = self.fleet;
        if self.lease.lost() {
            errln!("ferry: warning: this node's coordination lease expired during the update: another node may have started updating alongside it (etcd unreachable for longer than lease_seconds?)");
        }
        let reported = match outcome {
            Ok(()) => fleet.report_version(Some(&self.to)),
            Err(e) if fleet.config.halt_on_failure => {
                halt_fleet(fleet, &self.to, &e.to_string());
                Ok(())
            }
            Err(_) => Ok(()),
        };
        if let Err(e) = reported {
            errln!("ferry: warning: {e}");
        }
        // Healthy on either release: the slot is free again. Any other
        // failure may leave the node down, so it keeps counting as
        // unavailable until a later run ends healthy (or an operator
        // forgets it). The slot goes first and the mark last (see
        // `release`).
        let healthy = matches!(outcome, Ok(()) | Err(NodeError::RolledBack(_)));
        drop(self.lease);
        if healthy {
            clear_mark_or_warn(fleet);
        } else {
            errln!(
                "ferry: this node stays counted as unavailable ({}) until a run of its own ends with it healthy",
                fleet.key("down", &fleet.node)
            );
        }
    }
}

/// [`Fleet::clear_down_mark`], saying so when etcd would not take it: the
/// fleet then waits for this node, which is safe, until its next run.
fn clear_mark_or_warn(fleet: &Fleet) {
    if let Err(e) = fleet.clear_down_mark() {
        errln!("ferry: warning: {e}; the fleet counts this node as unavailable until its next run clears the mark");
    }
}

/// Halts the fleet after this node's update to `version` failed; says
/// loudly when etcd would not take the halt, since the fleet then goes on.
fn halt_fleet(fleet: &Fleet, version: &Version, cause: &str) {
    let prefix = &fleet.config.prefix;
    match fleet.write_halt_patiently(version, cause) {
        Ok(()) => errln!(
            "ferry: this failure halted the fleet ({prefix}/halt); after a look, `ferry coordination clear-halt` lets the nodes go on"
        ),
        Err(e) => {
            events::emit(events::Event::HaltFailed, json!({ "error": e.to_string() }));
            errln!(
                "ferry: ERROR: this failure could NOT halt the fleet, other nodes may still install {version}: {e}; stop them with `ferry coordination halt --reason \"...\"` once etcd answers"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(node: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: format!("/p/slots/{node}"),
            value: Vec::new(),
            create_revision: revision,
            mod_revision: revision,
            lease: 1,
        }
    }

    fn mark(node: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: format!("/p/down/{node}"),
            lease: 0,
            ..slot(node, revision)
        }
    }

    #[test]
    fn the_first_max_unavailable_in_creation_order_hold_a_slot() {
        let queue = [slot("c", 3), slot("a", 5), slot("b", 9)];
        assert_eq!(place(&queue, &[], "/p/slots/c", 2), Place::Holds);
        assert_eq!(place(&queue, &[], "/p/slots/a", 2), Place::Holds);
        assert_eq!(
            place(&queue, &[], "/p/slots/b", 2),
            Place::Waits {
                ahead: vec!["c".into(), "a".into()]
            }
        );
        assert_eq!(place(&queue, &[], "/p/slots/b", 3), Place::Holds);
        assert_eq!(place(&queue, &[], "/p/slots/gone", 3), Place::Lost);
    }

    #[test]
    fn a_node_marked_down_keeps_its_slot_and_takes_it_back_first() {
        // "x" switched and crashed: its slot key went with its lease, its
        // mark stayed. It still counts.
        let queue = [slot("a", 5), slot("b", 9)];
        let down = [mark("x", 2)];
        assert_eq!(
            place(&queue, &down, "/p/slots/a", 1),
            Place::Waits {
                ahead: vec!["x".into()]
            }
        );
        assert_eq!(place(&queue, &down, "/p/slots/a", 2), Place::Holds);
        assert_eq!(
            place(&queue, &down, "/p/slots/b", 2),
            Place::Waits {
                ahead: vec!["x".into(), "a".into()]
            }
        );
        // Its recovery queues behind them, and goes first.
        let queue = [slot("a", 5), slot("b", 9), slot("x", 12)];
        assert_eq!(place(&queue, &down, "/p/slots/x", 1), Place::Holds);
        assert_eq!(
            place(&queue, &down, "/p/slots/a", 1),
            Place::Waits {
                ahead: vec!["x".into()]
            }
        );
        // Two marked nodes fill two slots in the order they were marked.
        let down = [mark("y", 1), mark("x", 2)];
        assert_eq!(
            place(&queue, &down, "/p/slots/x", 1),
            Place::Waits {
                ahead: vec!["y".into()]
            }
        );
        assert_eq!(place(&queue, &down, "/p/slots/x", 2), Place::Holds);
        assert_eq!(place(&queue, &down, "/p/slots/gone", 2), Place::Lost);
    }
}
