//! Coordinate: reserve a lease for every planned upgrade, release them all
//! at the end of the cycle, and record what happened.
//!
//! Rules (the leases themselves live in [`crate::coordinate`]):
//! - each upgrade, in plan order, asks for the lease on its repository key;
//! - an active foreign lease wins: the repository is deferred (`lease-held`);
//! - an expired foreign lease is taken over after the lock delay, recorded
//!   as `lease-takeover`;
//! - a repository whose dependency was not granted is blocked
//!   (`dependency-not-granted`);
//! - leases are released after phase 2 and expire on their own after a crash.
//!
//! Views written: `agent_coordination_state.json` (grants, conflicts,
//! takeovers, releases of the cycle) and `runtime_consensus_state.json`
//! (who holds what on this host; single-host, no quorum is claimed).

use super::execute::Clearance;
use super::outcome::Outcome;
use super::plan::{Plan, Recommendation};
use crate::clock::Clock;
use crate::coordinate::{Acquire, CoordError, Holder, Lease, LeaseManager};
use crate::ledger::{EventKind, EventLedger, LedgerError, Pending};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Errors of the coordination step.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error(transparent)]
    Coordination(#[from] CoordError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The reservations of one cycle.
#[derive(Debug, Default, Serialize)]
pub struct Reservations {
    /// Per planned upgrade: granted or refused.
    #[serde(skip)]
    pub clearances: BTreeMap<String, Clearance>,
    pub grants: BTreeMap<String, Lease>,
    pub conflicts: Vec<Value>,
    pub takeovers: Vec<Value>,
    pub released: Vec<String>,
}

/// Asks for a lease for every upgrade of `plan`, in plan order: one
/// read and one write of the lease table, then one append of their events.
pub fn reserve(
    plan: &Plan,
    leases: &LeaseManager<'_>,
    ledger: &mut EventLedger,
    tick: &str,
    clock: Clock,
) -> Result<Reservations, ReserveError> {
    let mut r = Reservations::default();
    let mut events = Vec::new();
    let mut batch = leases.batch(clock.now(), ledger.head())?;
    for decision in plan.decisions.iter().filter(|d| d.recommendation == Recommendation::Upgrade) {
        let repo = &decision.repo;
        let missing_dep =
            decision.depends_on.iter().find(|dep| matches!(r.clearances.get(*dep), Some(Clearance::Refused(..))));
        if let Some(dep) = missing_dep {
            let reason = format!("dependency {dep:?} was not granted a lease");
            r.clearances.insert(repo.clone(), Clearance::Refused(Outcome::Blocked, "dependency-not-granted", reason));
            continue;
        }
        match batch.acquire(repo)? {
            Acquire::Granted { lease, takeover_of } => {
                let (kind, payload) = match &takeover_of {
                    Some(old) => {
                        let p = json!({ "lease": lease, "took_over": old });
                        r.takeovers.push(p.clone());
                        (EventKind::LeaseTakeover, p)
                    }
                    None => (EventKind::LeaseGranted, json!({ "lease": lease })),
                };
                events.push(Pending::new(kind, repo, payload));
                r.grants.insert(repo.clone(), lease.clone());
                r.clearances.insert(repo.clone(), Clearance::Granted(lease));
            }
            Acquire::Renewed { lease } => {
                events.push(Pending::new(EventKind::LeaseRenewed, repo, json!({ "lease": lease })));
                r.grants.insert(repo.clone(), lease.clone());
                r.clearances.insert(repo.clone(), Clearance::Granted(lease));
            }
            Acquire::Conflict { held_by } => {
                let payload = json!({ "held_by": held_by });
                events.push(Pending::new(EventKind::LeaseConflict, repo, payload.clone()));
                r.conflicts.push(payload);
                let reason = format!(
                    "lease held by tick {} (pid {} on {}) until {}",
                    held_by.holder.tick, held_by.holder.pid, held_by.holder.host, held_by.expires_at
                );
                r.clearances.insert(repo.clone(), Clearance::Refused(Outcome::Deferred, "lease-held", reason));
            }
        }
    }
    batch.commit()?;
    ledger.append_all(tick, events)?;
    Ok(r)
}

/// Defers every upgrade because resource pressure is critical.
pub fn defer_all(r: &mut Reservations, reasons: &str) {
    for clearance in r.clearances.values_mut() {
        *clearance = Clearance::Refused(
            Outcome::Deferred,
            "resource-pressure",
            format!("critical resource pressure: {reasons}"),
        );
    }
}

/// Refuses every granted upgrade because the integrity gate failed.
pub fn refuse_all(r: &mut Reservations, check: &str, detail: &str) {
    for clearance in r.clearances.values_mut() {
        *clearance =
            Clearance::Refused(Outcome::Blocked, "integrity-gate", format!("integrity check {check} failed: {detail}"));
    }
}

/// Releases every lease granted to this cycle: one write of the lease
/// table, then one append of their events.
pub fn release(
    r: &mut Reservations,
    leases: &LeaseManager<'_>,
    ledger: &mut EventLedger,
    tick: &str,
    clock: Clock,
) -> Result<(), ReserveError> {
    let mut events = Vec::new();
    let mut batch = leases.batch(clock.now(), ledger.head())?;
    for (repo, lease) in &r.grants {
        match batch.release(repo, lease.fencing_token) {
            Ok(_) => {
                let payload = json!({ "fencing_token": lease.fencing_token });
                events.push(Pending::new(EventKind::LeaseReleased, repo, payload));
                r.released.push(repo.clone());
            }
            Err(CoordError::StaleFence { .. }) => {
                // Someone took it over after it expired; theirs now.
                let payload = json!({ "token": lease.fencing_token, "at": "release" });
                events.push(Pending::new(EventKind::FenceRejected, repo, payload));
            }
            Err(e) => return Err(e.into()),
        }
    }
    batch.commit()?;
    ledger.append_all(tick, events)?;
    Ok(())
}

/// Writes the coordination and consensus views.
pub fn write_views(
    store: &StateStore,
    r: &Reservations,
    leases: &LeaseManager<'_>,
    holder: &Holder,
    clock: Clock,
    head: &LedgerHead,
) -> Result<(), ReserveError> {
    let written_at = clock.now_rfc3339();
    store.write(ViewName::AgentCoordinationState, &written_at, head, &json!({ "holder": holder, "cycle": r }))?;
    let table = leases.snapshot()?;
    let active = leases.active(clock.now())?;
    let consensus = json!({
        "model": "single-host",
        "quorum": false,
        "note": "leases are arbitrated by one file lock on this host; no cross-host agreement is claimed",
        "active_leases": active,
        "fencing_high_water": table.fencing_high_water,
    });
    store.write(ViewName::RuntimeConsensusState, &written_at, head, &consensus)?;
    Ok(())
}
