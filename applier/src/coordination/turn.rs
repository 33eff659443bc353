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

/// `node`'s place in `slots` (sorted by creation revision).
pub fn place(slots: &[KeyValue], own_key: &str, max_unavailable: u32) -> Place {
    match slots.iter().position(|kv| kv.key == own_key) {
        None => Place::Lost,
        Some(i) if i < max_unavailable as usize => Place::Holds,
        Some(i) => Place::Waits {
            ahead: slots[..i]
                .iter()
                .map(|kv| kv.key.rsplit('/').next().unwrap_or(&kv.key).to_string())
                .collect(),
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
            let slots = self
                .client
                .range(&self.section("slots"), true, SortBy::CreateRevision, None)
                .map_err(|e| self.unreachable("read the slot queue", e))?;
            match place(&slots.kvs, &own_key, max) {
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
        let slots = fleet
            .client
            .range(&fleet.section("slots"), true, SortBy::CreateRevision, None)
            .map_err(|e| lost(SlotLoss::QueueUnreadable(e)))?;
        let own_key = fleet.key("slots", &fleet.node);
        match place(&slots.kvs, &own_key, fleet.config.max_unavailable) {
            Place::Holds => Ok(()),
            Place::Lost => Err(lost(SlotLoss::KeyGone(own_key))),
            Place::Waits { ahead } => Err(lost(SlotLoss::Overtaken(ahead))),
        }
    }

    /// Gives the slot back without reporting or halting: for an update
    /// stopped because the turn itself was lost, not because the version
    /// failed.
    pub fn give_up(self) {
        drop(self.lease);
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
        drop(self.lease);
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

    #[test]
    fn the_first_max_unavailable_in_creation_order_hold_a_slot() {
        let queue = [slot("c", 3), slot("a", 5), slot("b", 9)];
        assert_eq!(place(&queue, "/p/slots/c", 2), Place::Holds);
        assert_eq!(place(&queue, "/p/slots/a", 2), Place::Holds);
        assert_eq!(
            place(&queue, "/p/slots/b", 2),
            Place::Waits {
                ahead: vec!["c".into(), "a".into()]
            }
        );
        assert_eq!(place(&queue, "/p/slots/b", 3), Place::Holds);
        assert_eq!(place(&queue, "/p/slots/gone", 3), Place::Lost);
    }
}
