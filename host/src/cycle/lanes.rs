//! Parallel lanes of phase 2: the decisions of one dependency depth run on
//! up to `lanes` threads. The assignment is static: lane `k` runs the
//! decisions `k`, `k + lanes`, `k + 2 * lanes`, ... of the level, in plan
//! order, so the lane of every decision depends only on the plan and the lane
//! count (the topology snapshot is the same on every run of the same plan).
//! An upgrade holds a slot of the budget of its remote's URL while it runs.
//! Results come back in the decisions' order.
//!
//! Phase 1's passes (selector calls, git probes, probe and scorer plugin
//! calls) run on lanes too, through [`map_in_lanes`]: items are taken in
//! order from a shared counter (their work takes unequal time) and results
//! come back in the items' order, so nothing downstream depends on which
//! lane ran what.

use super::Progress;
use super::assess::health_key;
use super::execute::{self, Step};
use super::outcome::RepoOutcome;
use super::plan::{Decision, Recommendation};
use super::reserve::Reservations;
use crate::coordinate::RemoteBudget;
use crate::ledger::{EventLedger, LedgerError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Applies `work` to every item (with its index) on up to `lanes` threads,
/// this one included, which take the items in order from a shared counter;
/// returns the results in the items' order.
pub fn map_in_lanes<T: Send, R: Send>(items: Vec<T>, lanes: usize, work: impl Fn(usize, T) -> R + Sync) -> Vec<R> {
    let total = items.len();
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let lane = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = items.get(i) else { break };
            let Some(item) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() else { continue };
            let result = work(i, item);
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..lanes.clamp(1, total.max(1)) {
            scope.spawn(lane);
        }
        lane();
    });
    // A lane that panicked has made the scope panic, so every slot is full.
    results
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| panic!("item {i} of {total} has no result: a lane stopped early"))
        })
        .collect()
}

/// The lane of the `index`-th decision of a level run on `lanes` lanes.
pub fn lane_of(index: usize, lanes: usize) -> usize {
    index % lanes.max(1)
}

/// Runs the decisions of one dependency depth on up to `lanes` threads;
/// returns (lane, result) per decision, in the decisions' order.
pub fn run_level(
    level: &[Decision],
    lanes: usize,
    step: &Step<'_>,
    reservations: &Reservations,
    budget: &RemoteBudget,
    ledger: &Mutex<EventLedger>,
    progress: Progress<'_>,
) -> Vec<(u32, Result<RepoOutcome, LedgerError>)> {
    let lanes = lanes.max(1);
    let slots: Vec<Mutex<Option<Result<RepoOutcome, LedgerError>>>> = level.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for lane in 0..lanes.min(level.len()) {
            let slots = &slots;
            scope.spawn(move || {
                for (i, decision) in level.iter().enumerate().skip(lane).step_by(lanes) {
                    let clearance = reservations.clearances.get(&decision.repo);
                    let result = if decision.recommendation == Recommendation::Upgrade {
                        progress(&format!("upgrading {} (lane {lane})", decision.repo));
                        let url = endpoint(step, decision);
                        budget.with_slot(&url, &decision.remote, || execute::execute(step, decision, clearance, ledger))
                    } else {
                        execute::execute(step, decision, clearance, ledger)
                    };
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            let lane = u32::try_from(lane_of(i, lanes)).unwrap_or(u32::MAX);
            let result = slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(LedgerError::Io {
                    path: Default::default(),
                    source: std::io::Error::other("a lane stopped without a result"),
                })
            });
            (lane, result)
        })
        .collect()
}

/// The budget key of `decision`'s remote: its URL from the repository's git
/// config, else `<repo>/<remote>` (as for remote health).
fn endpoint(step: &Step<'_>, decision: &Decision) -> String {
    let url = step
        .policy
        .repo(&decision.repo)
        .and_then(|repo| git2::Repository::open(repo.resolved_path(step.workspace.home())).ok())
        .and_then(|git| git.find_remote(&decision.remote).ok().and_then(|r| r.url().ok().map(str::to_owned)));
    let urls: BTreeMap<String, String> = url.map(|u| (decision.remote.clone(), u)).into_iter().collect();
    health_key(&decision.repo, &decision.remote, &urls)
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn lanes_are_assigned_round_robin_in_plan_order() {
        let lanes: Vec<usize> = (0..7).map(|i| lane_of(i, 3)).collect();
        assert_eq!(lanes, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(lane_of(5, 0), 0, "no lanes counts as one");
        assert_eq!(lane_of(2, 8), 2);
    }
}
