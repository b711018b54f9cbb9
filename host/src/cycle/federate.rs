//! Federation bookkeeping of phase 1: every fetch of a probe (fail-overs
//! included) goes into the remote health book, circuit transitions and
//! logical promotions into the ledger. A repository whose remotes all had an
//! open circuit made no fetch, so nothing is recorded against them.

use super::CycleError;
use super::assess::Assessment;
use super::probe::FetchRecord;
use crate::clock::Clock;
use crate::federation::{FederationState, HealthBook};
use crate::ledger::{EventKind, EventLedger};
use crate::policy::Policy;

/// Records `fetches` (the fetches of one assessment, in order) in the
/// remote health book and the selected endpoint in the federation state,
/// with their events.
#[allow(clippy::too_many_arguments)]
pub fn record(
    health: &mut HealthBook,
    federation: &mut FederationState,
    policy: &Policy,
    assessment: &Assessment,
    fetches: &[FetchRecord],
    ledger: &mut EventLedger,
    tick: &str,
    clock: Clock,
) -> Result<(), CycleError> {
    let probe = &assessment.probe;
    for fetch in fetches {
        let latency = u32::try_from(fetch.finished_ms - fetch.started_ms).unwrap_or(u32::MAX);
        let (latency, class) = if fetch.ok { (latency, None) } else { (0, fetch.failure.map(|c| c.as_str())) };
        if let Some(transition) =
            health.record(&fetch.url, fetch.ok, latency, class, clock.now(), &policy.remote_health)
        {
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
