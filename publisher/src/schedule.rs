//! The expensive work of a publication, new objects and deltas, as one
//! queue run largest first.
//!
//! Compressing a release's new objects and computing its deltas used to be
//! two phases. The second could not start before the first finished, so
//! with two threads the largest object (a 27 MB executable takes 13 s at
//! zstd level 19) ran while the other thread idled, and that idle time
//! capped what `--jobs 2` could buy. Neither kind of task needs the other's
//! output (a pair reads its target from the input file, not from the new
//! object), so both go in one queue, ordered by estimated cost; only the
//! decision whether a delta is worth keeping waits for its target's object
//! size, after the queue has drained.
//!
//! One worker per rayon thread takes the next task from a shared counter,
//! so tasks start strictly in queue order; rayon's own splitting of a
//! parallel iterator would hand each thread a contiguous half instead. Each
//! worker loop is pinned to its thread by `broadcast` rather than spawned: a
//! spawned loop could be stolen by a thread waiting inside a pair's
//! `rayon::join` (delta::encode), and then wait for memory that thread holds.
//! Only the join halves, which never wait on the memory budget, move between
//! threads: that is how a thread that has run out of tasks helps with the
//! last, largest pair instead of idling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use manifests::Sha256Digest;

use crate::deltas::DeltaPair;
use crate::plan::ReleasePlan;

/// One unit of a publication's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Compress and store the new object of this content.
    Object(Sha256Digest),
    /// Compute the delta of `pairs[i]`.
    Pair(usize),
}

/// The tasks of a release, most expensive first. Costs are estimated from
/// sizes, in bytes of zstd-19 input: a pair costs its base and target (the
/// suffix sort, zstd-patch-from over base and target, and the bsdiff
/// streams' frames each read about that much), an object its size. On the
/// benchmark's executables that put a pair at about four times its target's
/// object, as measured. Ties keep the pairs' plan order, then objects by
/// digest, so the queue is the same on every run.
pub fn tasks(plan: &ReleasePlan, pairs: &[DeltaPair]) -> Vec<Task> {
    let mut costed: Vec<(u64, Task)> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let cost = p.base_size.saturating_add(p.target_size).saturating_mul(2);
            (cost, Task::Pair(i))
        })
        .chain(
            plan.missing()
                .map(|(digest, content)| (content.size, Task::Object(*digest))),
        )
        .collect();
    // Stable: equal costs keep pairs (in plan order) before objects (in
    // digest order).
    costed.sort_by_key(|(cost, _)| std::cmp::Reverse(*cost));
    costed.into_iter().map(|(_, task)| task).collect()
}

/// Runs `work` on every item on the current rayon pool, items started in
/// order, one worker per thread; the results in item order. The first error
/// stops the workers (tasks already started finish) and is returned.
pub fn run_in_order<T, R, E>(
    items: &[T],
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    if !items.is_empty() {
        rayon::broadcast(|_| loop {
            if failed.load(Ordering::SeqCst) {
                return;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(item) = items.get(i) else {
                return;
            };
            let result = work(item);
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
        });
    }
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    // Tasks start in order, so after a failure the ones never started all
    // come after it: the first `Err` in item order is reached before any gap.
    let mut out = Vec::with_capacity(items.len());
    for result in results.into_iter().flatten() {
        out.push(result?);
    }
    assert_eq!(out.len(), items.len(), "every task ran");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_results_come_back_in_item_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let started = Mutex::new(Vec::new());
        let items: Vec<u32> = (0..50).collect();
        let out = pool
            .install(|| {
                run_in_order(&items, |i| {
                    started.lock().unwrap().push(*i);
                    Ok::<_, ()>(i * 2)
                })
            })
            .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let mut sorted = started.into_inner().unwrap();
        sorted.sort();
        assert_eq!(sorted, items);
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let ran = AtomicUsize::new(0);
        let items: Vec<u32> = (0..1000).collect();
        let out = pool.install(|| {
            run_in_order(&items, |i| {
                ran.fetch_add(1, Ordering::SeqCst);
                if *i == 3 {
                    Err(format!("task {i} failed"))
                } else {
                    Ok(())
                }
            })
        });
        assert_eq!(out, Err("task 3 failed".to_string()));
        assert!(ran.load(Ordering::SeqCst) < 1000, "the run stopped early");
    }
}
