//! The rollout-wave placement as docs/FORMAT.md ("Waves") documents it,
//! computed independently of ferry's code, for the tests that need a node
//! id in a known wave, and the publish-time clock those tests set.

use sha2::{Digest, Sha256};

/// `at` (RFC 3339) as Unix seconds, for `SOURCE_DATE_EPOCH`.
pub fn epoch(at: &str) -> String {
    at.parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
        .to_string()
}

/// The documented placement: the first 8 bytes of
/// SHA-256("ferry-wave:" + id + ":" + version), big-endian, against each
/// wave's percent as `draw * 100 < percent * 2^64`. Returns the 1-based
/// wave of a `50%@…,100%@…` schedule.
pub fn wave_of(id: &str, version: &str) -> usize {
    let digest = Sha256::digest(format!("ferry-wave:{id}:{version}").as_bytes());
    let draw = u64::from_be_bytes(digest[..8].try_into().unwrap());
    if u128::from(draw) * 100 < 50u128 << 64 {
        1
    } else {
        2
    }
}

/// The first `count` ids `<stem>-N` that land in `wave` for `version`.
pub fn ids_in_wave(stem: &str, version: &str, wave: usize, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..)
        .map(|i| format!("{stem}-{i}"))
        .filter(|id| wave_of(id, version) == wave)
        .take(count)
        .collect();
    assert_eq!(ids.len(), count);
    ids
}
