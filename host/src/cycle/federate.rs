//! Federation bookkeeping of phase 1: every fetch of a probe (fail-overs
//! included) goes into the remote health book, circuit transitions and
//! logical promotions into the ledger.

use super::CycleError;
use super::assess::{self, Assessment};
use super::probe::ProbeProblem;
use crate::clock::Clock;
use crate::federation::{FederationState, HealthBook};
use crate::ledger::{EventKind, EventLedger};
use crate::policy::Policy;

/// Records the fetches of one assessment in the remote health book and the
/// selected endpoint in the federation state, with their events.
pub fn record(
    health: &mut HealthBook,
    federation: &mut FederationState,
    policy: &Policy,
    assessment: &Assessment,
    ledger: &mut EventLedger,
    tick: &str,
    clock: Clock,
) -> Result<(), CycleError> {
    let probe = &assessment.probe;
    let key = |remote: &str| assess::health_key(&probe.repo, remote, &assessment.remote_urls);
    let mut fetches: Vec<(String, bool, u32, Option<&str>)> =
        probe.failed_over.iter().map(|a| (key(&a.remote), false, 0, Some(a.failure.class.as_str()))).collect();
    match (&probe.problem, probe.fetch_ms) {
        (Some(ProbeProblem::FetchFailed(f)), _) => fetches.push((key(&probe.remote), false, 0, Some(f.class.as_str()))),
        (_, Some(ms)) => fetches.push((key(&probe.remote), true, u32::try_from(ms).unwrap_or(u32::MAX), None)),
        _ => {}
    }
    for (remote, ok, latency, class) in fetches {
        if let Some(transition) = health.record(&remote, ok, latency, class, clock.now(), &policy.remote_health) {
            ledger.append(
                tick,
                EventKind::RemoteHealthChanged,
                &probe.repo,
                serde_json::to_value(&transition).unwrap_or_default(),
            )?;
        }
    }
    let Some(repo) = policy.repo(&probe.repo) else { return Ok(()) };
    if probe.fetch_ms.is_some() {
        let role = repo.remotes.iter().find(|r| r.name == probe.remote).map_or(repo.primary_remote().role, |r| r.role);
        if let Some(promotion) = federation.select(&probe.repo, &probe.remote, role, &repo.primary_remote().name, tick)
        {
            ledger.append(
                tick,
                EventKind::RemotePromoted,
                &probe.repo,
                serde_json::to_value(&promotion).unwrap_or_default(),
            )?;
        }
    }
    Ok(())
}
