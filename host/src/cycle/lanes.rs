//! Parallel lanes of phase 2: the decisions of one dependency depth run on
//! up to `lanes` threads, taken in plan order; an upgrade holds its remote's
//! budget slot while it runs. Results come back in the decisions' order.

use super::Progress;
use super::execute::{self, Step};
use super::outcome::RepoOutcome;
use super::plan::{Decision, Recommendation};
use super::reserve::Reservations;
use crate::coordinate::RemoteBudget;
use crate::ledger::{EventLedger, LedgerError};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    let slots: Vec<Mutex<Option<(u32, Result<RepoOutcome, LedgerError>)>>> =
        level.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for lane in 0..lanes.min(level.len()) {
            let (slots, next) = (&slots, &next);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(decision) = level.get(i) else { break };
                    let upgrade = decision.recommendation == Recommendation::Upgrade;
                    if upgrade {
                        progress(&format!("upgrading {} (lane {lane})", decision.repo));
                        while !budget.try_reserve(&decision.remote) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    let result = execute::execute(step, decision, reservations.clearances.get(&decision.repo), ledger);
                    if upgrade {
                        budget.release(&decision.remote);
                    }
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some((lane as u32, result));
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner().ok().flatten().unwrap_or((
                0,
                Err(LedgerError::Io {
                    path: Default::default(),
                    source: std::io::Error::other("a lane stopped without a result"),
                }),
            ))
        })
        .collect()
}
