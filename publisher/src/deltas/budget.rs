//! The memory bound on delta work: a counting semaphore over bytes.
//!
//! Each pair holds its base and target in memory, plus bidiff's suffix array
//! and zstd's match tables, so memory grows with the pairs in flight, not
//! with the thread count alone: two 1 GiB executables diffed at once need
//! several GiB. Every job first takes its estimated peak
//! ([`estimated_peak`]) from a [`MemoryBudget`] and gives it back when done;
//! a job that does not fit waits. A job estimated above the whole budget
//! takes all of it, so it runs alone rather than never.
//!
//! A worker blocks on the budget only between jobs, never while holding
//! part of it, and the only nested rayon work (the joins inside a pair, see
//! `crate::schedule`) never waits on the budget, so a blocked worker can
//! never be waiting on itself.

use std::sync::{Condvar, Mutex};

/// Bytes of zstd match tables at most: at level 19-22 the binary-tree,
/// hash and long-distance tables of a 2^31 window stay below this; smaller
/// inputs shrink them (zstd sizes tables to the input).
const ZSTD_TABLES_MAX: u64 = 512 << 20;

/// The budget when available memory cannot be read.
pub const FALLBACK_BUDGET: u64 = 1 << 30;

/// The smallest default budget, however little memory is free: enough for
/// small pairs to run two at a time.
const MIN_DEFAULT_BUDGET: u64 = 256 << 20;

/// Peak memory of computing one delta, from the sizes alone. The two
/// halves of a pair, and the frames of the bsdiff half, may run at once on
/// idle threads (see `delta::encode::candidates`), so their peaks add up:
/// bidiff holds a 4-byte suffix-array slot per base byte and its three
/// streams (together at most about the target's size), then the split
/// encoding one more copy of the base (its copy frame is compressed against
/// it); zstd-patch-from holds its match tables. Both read base and target,
/// and three compressed candidates are each at most about the target's
/// size. The table terms are upper bounds: on ripgrep's 27 MB executable
/// the estimate is 1.1 GiB and the measured peak, with two threads on the
/// pair, 365 MiB, which leaves room for the frames running side by side.
pub fn estimated_peak(base: u64, target: u64) -> u64 {
    let inputs = base.saturating_add(target);
    let bidiff = base
        .saturating_mul(5)
        .saturating_add(target)
        .saturating_add(inputs.saturating_mul(8).min(ZSTD_TABLES_MAX));
    let zstd = inputs.saturating_mul(8).min(ZSTD_TABLES_MAX);
    let candidates = target.saturating_mul(3);
    inputs
        .saturating_add(bidiff)
        .saturating_add(zstd)
        .saturating_add(candidates)
}

/// Peak memory of checking one stored delta: base and target, and the patch.
pub fn check_peak(base: u64, target: u64, patch: u64) -> u64 {
    base.saturating_add(target).saturating_add(patch)
}

/// The default budget: half the memory the kernel reports available, so
/// the rest of the machine keeps room, but at least [`MIN_DEFAULT_BUDGET`].
pub fn default_budget() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_available(&text));
    match available {
        Some(bytes) => (bytes / 2).max(MIN_DEFAULT_BUDGET),
        None => FALLBACK_BUDGET,
    }
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A semaphore counting bytes.
#[derive(Debug)]
pub struct MemoryBudget {
    capacity: u64,
    in_use: Mutex<u64>,
    released: Condvar,
}

/// Bytes taken from a [`MemoryBudget`], returned when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(capacity: u64) -> Self {
        MemoryBudget {
            capacity: capacity.max(1),
            in_use: Mutex::new(0),
            released: Condvar::new(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Waits until `bytes` (at most the whole budget) fit, then takes them.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.capacity);
        let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *in_use + bytes > self.capacity {
            in_use = self
                .released
                .wait(in_use)
                .unwrap_or_else(|p| p.into_inner());
        }
        *in_use += bytes;
        Reservation {
            budget: self,
            bytes,
        }
    }

    pub fn in_use(&self) -> u64 {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *in_use -= self.bytes;
        self.budget.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn reservations_never_exceed_the_budget_and_oversized_jobs_run_alone() {
        let budget = MemoryBudget::new(100);
        let peak = AtomicU64::new(0);
        let jobs = [60u64, 50, 40, 500, 30, 30, 30, 100];
        std::thread::scope(|s| {
            for bytes in jobs {
                let (budget, peak) = (&budget, &peak);
                s.spawn(move || {
                    let held = budget.reserve(bytes);
                    let now = budget.in_use();
                    peak.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= 100, "{now} bytes in use");
                    if bytes >= 100 {
                        assert_eq!(now, 100, "an oversized job holds everything");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    drop(held);
                });
            }
        });
        assert_eq!(budget.in_use(), 0);
        assert_eq!(peak.load(Ordering::SeqCst), 100);
    }

    #[test]
    fn estimates_grow_with_the_pair_and_cap_the_zstd_part() {
        let small = estimated_peak(1_000, 1_000);
        assert!((2_000..100_000).contains(&small), "{small}");
        let big = estimated_peak(1 << 30, 1 << 30);
        // Inputs, the suffix array, a copy of the base, two sets of zstd
        // tables and the candidates.
        assert_eq!(big, (2 << 30) + (6 << 30) + 2 * (512 << 20) + (3 << 30));
        assert_eq!(
            parse_mem_available("MemTotal: 10 kB\nMemAvailable:   2048 kB\n"),
            Some(2 << 20)
        );
        assert!(default_budget() >= MIN_DEFAULT_BUDGET);
    }
}
