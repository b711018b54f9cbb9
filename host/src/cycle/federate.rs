//! Federation bookkeeping of phase 1: every fetch of a probe (fail-overs
//! included) goes into the remote health book, circuit transitions and
//! logical promotions into the ledger. A repository whose remotes all had an
//! open circuit made no fetch, so nothing is recorded against them.

use super::assess::Assessment;
use super::probe::FetchRecord;
use crate::clock::Clock;
use crate::federation::{FederationState, HealthBook};
use crate::ledger::{EventKind, Pending};
use crate::policy::Policy;

/// Records `fetches` (the fetches of one assessment, in order) in the
/// remote health book and the selected endpoint in the federation state,
/// with their events (pushed onto `events`, for the phase's one append).
#[allow(clippy::too_many_arguments)]
pub fn record(
    health: &mut HealthBook,
    federation: &mut FederationState,
    policy: &Policy,
    assessment: &Assessment,
    fetches: &[FetchRecord],
    events: &mut Vec<Pending>,
    tick: &str,
    clock: Clock,
) {
    let probe = &assessment.probe;
    for fetch in fetches {
        let latency = u32::try_from(fetch.finished_ms - fetch.started_ms).unwrap_or(u32::MAX);
        let (latency, class) = if fetch.ok { (latency, None) } else { (0, fetch.failure.map(|c| c.as_str())) };
        if let Some(transition) =
            health.record(&fetch.url, fetch.ok, latency, class, clock.now(), &policy.remote_health)
        {
            let payload = serde_json::to_value(&transition).unwrap_or_default();
            events.push(Pending::new(EventKind::RemoteHealthChanged, &probe.repo, payload));
        }
    }
    let Some(repo) = policy.repo(&probe.repo) else { return };
    if probe.fetch_ms.is_some() {
        let role = repo.remotes.iter().find(|r| r.name == probe.remote).map_or(repo.primary_remote().role, |r| r.role);
        if let Some(promotion) = federation.select(&probe.repo, &probe.remote, role, &repo.primary_remote().name, tick)
        {
            let payload = serde_json::to_value(&promotion).unwrap_or_default();
            events.push(Pending::new(EventKind::RemotePromoted, &probe.repo, payload));
        }
    }
}
