//! Where this node stands in a release's rollout waves, and when it may
//! install the release unattended.
//!
//! A pull-mode fleet has no coordinator, so each node places itself: it
//! hashes its node id together with the release version and reads the
//! result as a position in [0, 100). The node belongs to the first wave
//! whose (cumulative) percent is above its position, and an unattended run
//! may install once that wave has opened: the release's `created` plus the
//! wave's `after_seconds` (`crate::policy` treats that instant as a "not
//! before", like soak). The exact formula is part of the format
//! (docs/FORMAT.md, "Waves"), so a fleet tool can predict every node:
//!
//! ```text
//! draw     = first 8 bytes of SHA-256("ferry-wave:" + node id + ":" + version), big-endian u64
//! position = 100 * draw / 2^64
//! wave     = the first wave with position < percent, i.e. draw * 100 < percent * 2^64
//! ```
//!
//! The comparison is done in exact integers (u128), never in floating
//! point, so two implementations cannot disagree at a boundary. The
//! version is in the hash so that the same machines are not always the
//! canaries: every release draws a fresh sample of the fleet.
//!
//! One exception: a fleet's leader (`[coordination] role = "leader"`)
//! goes in the last wave whatever its draw. It updates only after its
//! followers (`crate::coordination`), and a leader placed in an earlier
//! wave than they would wait for them in every unattended run until their
//! wave opened.
//!
//! Everything here is a pure function; the node id comes from
//! `crate::node_id`.

use jiff::Timestamp;
use manifests::manifest::Wave;
use manifests::Sha256Digest;
use semver::Version;
use serde::Serialize;

use crate::coordination::Role;

/// The domain-separation prefix of the hash: no other hash ferry makes can
/// collide with a placement.
pub const HASH_PREFIX: &str = "ferry-wave:";

/// A node's place in a release's waves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavePlace {
    /// 1-based, as people count: "wave 2 of 4".
    pub index: usize,
    /// How many waves the release has.
    pub count: usize,
    /// The wave's cumulative share of the fleet.
    pub percent: u8,
    /// The release's `created` plus the wave's `after_seconds`.
    pub opens_at: Timestamp,
    /// The node's hash draw (see the module docs); [`WavePlace::position`]
    /// is the same number on the 0-100 scale.
    pub draw: u64,
    /// The node is its fleet's leader: in the last wave whatever its draw.
    pub leader: bool,
}

/// What `ferry check --json` shows as `wave`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaveReport {
    pub index: usize,
    pub count: usize,
    pub percent: u8,
    pub opens_at: Timestamp,
    /// This node's position in [0, 100) (its draw; a leader is in the
    /// last wave whatever it is).
    pub position: f64,
    /// Whether the wave had opened when the report was made.
    pub open: bool,
    /// The node is its fleet's leader (`[coordination] role = "leader"`),
    /// placed in the last wave.
    pub leader: bool,
}

impl WavePlace {
    /// The node's position in [0, 100).
    pub fn position(&self) -> f64 {
        position(self.draw)
    }

    /// `wave 2 of 4 (5%)`; `wave 4 of 4 (100%, the leader's)`.
    pub fn describe(&self) -> String {
        let whose = if self.leader { ", the leader's" } else { "" };
        format!(
            "wave {} of {} ({}%{whose})",
            self.index, self.count, self.percent
        )
    }

    /// The place as `ferry check` reports it at `now`.
    pub fn report(&self, now: Timestamp) -> WaveReport {
        WaveReport {
            index: self.index,
            count: self.count,
            percent: self.percent,
            opens_at: self.opens_at,
            position: self.position(),
            open: self.opens_at <= now,
            leader: self.leader,
        }
    }
}

/// The node's draw for `version`: the first 8 bytes, big-endian, of
/// SHA-256 over `ferry-wave:<node id>:<version>` (the version in its
/// canonical semver spelling).
pub fn draw(node_id: &str, version: &Version) -> u64 {
    let digest = Sha256Digest::of(format!("{HASH_PREFIX}{node_id}:{version}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

/// `draw` on the 0-100 scale, for people (decisions use [`wave_of`]).
pub fn position(draw: u64) -> f64 {
    draw as f64 / 2f64.powi(64) * 100.0
}

/// The 0-based index of the first wave whose percent is above the draw's
/// position, compared exactly: `draw * 100 < percent * 2^64`. `None` only
/// when there are no waves, or (in a schedule that failed validation) no
/// wave reaches the draw.
pub fn wave_of(waves: &[Wave], draw: u64) -> Option<usize> {
    waves
        .iter()
        .position(|w| u128::from(draw) * 100 < u128::from(w.percent) << 64)
}

/// This node's place in `waves` of the release `version` created at
/// `created`; `None` when the release has no waves (everyone may install).
/// A leader goes in the last wave.
pub fn place(
    waves: &[Wave],
    node_id: &str,
    role: Role,
    version: &Version,
    created: Timestamp,
) -> Option<WavePlace> {
    let draw = draw(node_id, version);
    let leader = role == Role::Leader;
    let i = match leader {
        true => waves.len().checked_sub(1)?,
        false => wave_of(waves, draw)?,
    };
    Some(WavePlace {
        index: i + 1,
        count: waves.len(),
        percent: waves[i].percent,
        opens_at: waves[i].opens_at(created),
        draw,
        leader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(percent: u8, after_seconds: u64) -> Wave {
        Wave {
            percent,
            after_seconds,
        }
    }

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The contract's example: 1 %, 5 %, 25 %, 100 %.
    fn contract() -> Vec<Wave> {
        vec![
            w(1, 3600),
            w(5, 4 * 3600),
            w(25, 86_400),
            w(100, 3 * 86_400),
        ]
    }

    #[test]
    fn the_draw_is_the_documented_hash() {
        // Computed independently: python3 -c "import hashlib;
        // print(hashlib.sha256(b'ferry-wave:node-a:2.0.0').hexdigest()[:16])"
        assert_eq!(draw("node-a", &v("2.0.0")), 0xe586ea3f86cd6537);
        assert_eq!(draw("node-a", &v("2.0.1")), 0x4f8367c7617f35cc);
        let p = position(0xe586ea3f86cd6537);
        assert!((p - 89.658_989).abs() < 1e-5, "{p}");
    }

    #[test]
    fn placement_is_deterministic() {
        let created = t("2030-06-03T00:00:00Z");
        for id in ["node-a", "web-17", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", ""] {
            let first = place(&contract(), id, Role::Follower, &v("2.0.0"), created);
            assert!(first.is_some());
            for _ in 0..3 {
                assert_eq!(
                    place(&contract(), id, Role::Follower, &v("2.0.0"), created),
                    first
                );
            }
        }
    }

    #[test]
    fn the_version_draws_a_fresh_sample_of_the_fleet() {
        // Which of 1,000 nodes are in the first half differs from release
        // to release: the canaries are not always the same machines.
        let first_half = |version: &str| -> Vec<bool> {
            (0..1000)
                .map(|i| {
                    wave_of(&[w(50, 0), w(100, 1)], draw(&format!("n{i}"), &v(version))) == Some(0)
                })
                .collect()
        };
        let (a, b) = (first_half("1.0.0"), first_half("1.0.1"));
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        // Independent halves agree about half the time.
        assert!((400..600).contains(&same), "{same} of 1000 agree");
        // And the node id matters just as much.
        assert_ne!(draw("a", &v("1.0.0")), draw("b", &v("1.0.0")));
        // The separator keeps "a" + "1:1.0.0" apart from "a:1" + "1.0.0".
        assert_ne!(draw("a:1", &v("1.0.0")), draw("a", &v("1.0.0")));
    }

    #[test]
    fn ten_thousand_nodes_fill_each_wave_with_its_share() {
        let waves = contract();
        let version = v("2.0.0");
        let mut counts = vec![0usize; waves.len()];
        let total = 10_000;
        for i in 0..total {
            let id = format!("node-{i:05}");
            counts[wave_of(&waves, draw(&id, &version)).unwrap()] += 1;
        }
        let mut previous = 0u8;
        for (wave, count) in waves.iter().zip(&counts) {
            let share = f64::from(wave.percent - previous);
            let actual = *count as f64 * 100.0 / total as f64;
            assert!(
                (actual - share).abs() <= 1.5,
                "wave {}%: {actual}% of the nodes, expected {share}% (counts {counts:?})",
                wave.percent
            );
            previous = wave.percent;
        }
        // Machine ids look like hex; they spread just as well.
        let mut counts = [0usize; 2];
        for i in 0..total {
            let id = format!("{:032x}", (i as u128) * 0x9e37_79b9_7f4a_7c15);
            counts[wave_of(&[w(30, 0), w(100, 0)], draw(&id, &version)).unwrap()] += 1;
        }
        assert!((2850..=3150).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn boundaries_are_exact_integers() {
        let halves = [w(50, 0), w(100, 0)];
        // Position 50 exactly is not below 50: the second wave.
        assert_eq!(wave_of(&halves, (1 << 63) - 1), Some(0));
        assert_eq!(wave_of(&halves, 1 << 63), Some(1));
        // 2^64 / 100 = 184467440737095516.16: the last draw in 1 %.
        let one = [w(1, 0), w(100, 0)];
        assert_eq!(wave_of(&one, 184_467_440_737_095_516), Some(0));
        assert_eq!(wave_of(&one, 184_467_440_737_095_517), Some(1));
        // The ends of the range.
        assert_eq!(wave_of(&contract(), 0), Some(0));
        assert_eq!(wave_of(&contract(), u64::MAX), Some(3));
        assert_eq!(wave_of(&[w(100, 0)], u64::MAX), Some(0));
        assert!(position(u64::MAX) <= 100.0 && position(0) == 0.0);
        // No waves: no place. A schedule without 100 % (refused by
        // validation) leaves the top draws without one.
        assert_eq!(wave_of(&[], 0), None);
        assert_eq!(wave_of(&[w(50, 0)], u64::MAX), None);
    }

    #[test]
    fn every_draw_lands_in_exactly_the_wave_its_position_names() {
        let waves = contract();
        for i in 0..2000u64 {
            let d = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let index = wave_of(&waves, d).unwrap();
            let p = position(d);
            assert!(p < f64::from(waves[index].percent), "{d}: {p}");
            if index > 0 {
                assert!(p >= f64::from(waves[index - 1].percent), "{d}: {p}");
            }
        }
    }

    #[test]
    fn the_place_opens_its_delay_after_the_release_was_created() {
        let created = t("2030-06-03T00:00:00Z");
        let version = v("2.0.0");
        // node-a draws position 89.66 for 2.0.0: the last wave.
        let place = place(&contract(), "node-a", Role::Follower, &version, created).unwrap();
        assert_eq!(
            (place.index, place.count, place.percent),
            (4, 4, 100),
            "{place:?}"
        );
        assert_eq!(place.opens_at, t("2030-06-06T00:00:00Z"));
        assert_eq!(place.describe(), "wave 4 of 4 (100%)");
        let report = place.report(t("2030-06-05T23:59:59Z"));
        assert_eq!((report.index, report.count, report.percent), (4, 4, 100));
        assert!((report.position - 89.658_989).abs() < 1e-5);
        assert!(!report.open);
        assert!(place.report(t("2030-06-06T00:00:00Z")).open);
        // For 2.0.1 the same node draws 31.06: the first half.
        let halves = [w(50, 3600), w(100, 7200)];
        let early = super::place(&halves, "node-a", Role::Follower, &v("2.0.1"), created).unwrap();
        assert_eq!((early.index, early.percent), (1, 50));
        assert_eq!(early.opens_at, t("2030-06-03T01:00:00Z"));
        assert_eq!(
            super::place(&[], "node-a", Role::Follower, &version, created),
            None
        );
        assert_eq!(
            super::place(&[], "node-a", Role::Leader, &version, created),
            None
        );
    }

    #[test]
    fn the_leader_goes_in_the_last_wave_whatever_its_draw() {
        let created = t("2030-06-03T00:00:00Z");
        let halves = [w(50, 3600), w(100, 7200)];
        // node-a draws 31.06 for 2.0.1: the first half as a follower.
        let leader = place(&halves, "node-a", Role::Leader, &v("2.0.1"), created).unwrap();
        assert_eq!((leader.index, leader.count, leader.percent), (2, 2, 100));
        assert_eq!(leader.opens_at, t("2030-06-03T02:00:00Z"));
        assert!(leader.leader && leader.report(created).leader);
        assert!((leader.position() - 31.06).abs() < 0.01, "{leader:?}");
        assert_eq!(leader.describe(), "wave 2 of 2 (100%, the leader's)");
        // Already last by its draw: the same wave.
        let last = place(&contract(), "node-a", Role::Leader, &v("2.0.0"), created).unwrap();
        assert_eq!((last.index, last.percent), (4, 100));
        // For every draw.
        for i in 0..500 {
            let id = format!("leader-{i}");
            let p = place(&contract(), &id, Role::Leader, &v("2.0.0"), created).unwrap();
            assert_eq!(p.index, 4, "{id}");
        }
    }
}
