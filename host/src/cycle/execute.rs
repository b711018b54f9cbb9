//! Phase 2 for one repository: execute, defer or block.
//!
//! Before the lanes of a dependency depth start, [`prepare_level`] takes
//! every upgrade of the depth that may go ahead (lease granted, no
//! dependency failed, blocked or deferred in this cycle) and
//! 1. appends their rollback plans (branch, previous HEAD, target, steps) in
//!    one write with one fsync, then writes `rollback_intelligence.json`
//!    once: every plan is on disk before anything changes;
//! 2. renews the leases of those without a canary in one write of the lease
//!    table (which checks each fencing token is still the current one) and
//!    records the renewals.
//!
//! Then, for each upgrade, on its lane:
//! 3. the canary check, if configured, runs in a temporary checkout of the
//!    candidate commit under `HERMES_HOME/tmp/` (the repository itself is not
//!    touched; the checkout is removed afterwards) — failure blocks;
//! 4. after the canary, or when half the TTL passed since the level's
//!    renewal, the lease is renewed here; a lease lost at a renewal stops
//!    the upgrade (`fence-rejected`, deferred);
//! 5. the guarded fast-forward ([`super::apply`]), with the fencing token
//!    checked once more right before the branch's compare-and-swap;
//! 6. the health check, if configured, runs in the real worktree — failure
//!    renews the lease again and rolls back to the recorded HEAD
//!    ([`super::apply::roll_back`], fenced the same way); with the lease
//!    lost, the branch stays at the target and the outcome says so.
//!
//! Repositories of one dependency depth run in parallel lanes; events of
//! one repository keep their order. Every step is recorded: `rollback-planned`, `lease-renewed`,
//! `canary-run`, `fence-rejected`, `health-checked`, `rolled-back`.

use super::CycleError;
use super::apply;
use super::outcome::{Outcome, RepoOutcome};
use super::plan::{Decision, Plan, Recommendation};
use super::rollback::RollbackIntelligence;
use crate::clock::Clock;
use crate::coordinate::{Lease, LeaseManager};
use crate::failpoint;
use crate::ledger::{EventKind, EventLedger, LedgerError, Pending};
use crate::policy::{Policy, RepoPolicy};
use crate::process::{self, CommandSpec};
use crate::state::StateStore;
use crate::workspace::Workspace;
use git2::Oid;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Whether coordination and the integrity gate let an upgrade proceed.
#[derive(Debug, Clone)]
pub enum Clearance {
    /// A lease was granted; every mutation re-checks its fencing token.
    Granted(Lease),
    /// Not this cycle: the outcome, reason code and reason to record.
    Refused(Outcome, &'static str, String),
}

/// What phase 2 needs besides the decision itself.
pub struct Step<'a> {
    pub workspace: &'a Workspace,
    pub policy: &'a Policy,
    pub plan: &'a Plan,
    pub tick: &'a str,
    /// Outcomes of repositories earlier in the plan.
    pub earlier: &'a BTreeMap<String, Outcome>,
    pub leases: &'a LeaseManager<'a>,
    pub clock: Clock,
    /// The rollback view, rewritten when a level's plans are recorded.
    pub rollbacks: &'a Mutex<RollbackIntelligence>,
    pub store: &'a StateStore,
    /// The lease renewals of [`prepare_level`] for this level: the renewed
    /// lease, or why it was lost.
    pub renewals: &'a BTreeMap<String, Result<Lease, String>>,
}

/// An upgrade that may go ahead: everything phase 2 needs to carry it out.
struct Ready<'a> {
    lease: &'a Lease,
    repo: &'a RepoPolicy,
    branch: &'a str,
    head: Oid,
    target: Oid,
}

/// Why an upgrade does not go ahead: `None` when it is no upgrade at all,
/// else the outcome, reason code and reason to settle it with.
type NotReady = Option<(Outcome, &'static str, String)>;

/// Whether `decision` is an upgrade that may go ahead: a lease was granted,
/// no dependency failed, was blocked or deferred earlier in this cycle, and
/// the plan has branch, HEAD and target.
fn ready<'a>(step: &Step<'a>, decision: &'a Decision, clearance: Option<&'a Clearance>) -> Result<Ready<'a>, NotReady> {
    if decision.recommendation != Recommendation::Upgrade {
        return Err(None);
    }
    let lease = match clearance {
        Some(Clearance::Granted(lease)) => lease,
        Some(Clearance::Refused(outcome, code, reason)) => return Err(Some((*outcome, code, reason.clone()))),
        None => return Err(Some((Outcome::Failed, "no-lease", "no lease was reserved for this upgrade".into()))),
    };
    for dep in &decision.depends_on {
        let (outcome, code) = match step.earlier.get(dep) {
            Some(Outcome::Failed | Outcome::Blocked) => (Outcome::Blocked, "dependency-failed"),
            Some(Outcome::Deferred) => (Outcome::Deferred, "dependency-deferred"),
            _ => continue,
        };
        return Err(Some((outcome, code, format!("dependency {dep:?} did not upgrade in this cycle"))));
    }
    match (
        step.policy.repo(&decision.repo),
        decision.branch.as_deref(),
        decision.head.as_deref().and_then(|h| Oid::from_str(h).ok()),
        decision.target.as_deref().and_then(|t| Oid::from_str(t).ok()),
    ) {
        (Some(repo), Some(branch), Some(head), Some(target)) => Ok(Ready { lease, repo, branch, head, target }),
        _ => Err(Some((
            Outcome::Failed,
            "incomplete-probe",
            "the plan lacks branch, HEAD or target for an upgrade".into(),
        ))),
    }
}

/// Before a level's lanes start: records the rollback plan of every upgrade
/// of the level that may go ahead (one append, one fsync, then one write of
/// the rollback view: every plan is on disk before anything changes), and
/// renews their leases (one write of the lease table, one append). Returns
/// the renewals for [`Step::renewals`].
pub fn prepare_level(
    step: &Step<'_>,
    level: &[Decision],
    clearances: &BTreeMap<String, Clearance>,
    ledger: &mut EventLedger,
) -> Result<BTreeMap<String, Result<Lease, String>>, CycleError> {
    let ready: Vec<(&Decision, Ready<'_>)> =
        level.iter().filter_map(|d| ready(step, d, clearances.get(&d.repo)).ok().map(|r| (d, r))).collect();
    let mut renewals = BTreeMap::new();
    if ready.is_empty() {
        return Ok(renewals);
    }
    let plans = ready
        .iter()
        .map(|(decision, go)| {
            let (branch, head, target) = (go.branch, go.head, go.target);
            let payload = json!({
                "branch": branch,
                "previous_head": head.to_string(),
                "target": target.to_string(),
                "steps": [
                    format!("check that refs/heads/{branch} is still at {target} and the worktree is clean"),
                    format!("check out the tree of {head}"),
                    format!("move refs/heads/{branch} from {target} back to {head} (compare-and-swap)"),
                ],
            });
            Pending::new(EventKind::RollbackPlanned, &decision.repo, payload)
        })
        .collect();
    let recorded = ledger.append_all(step.tick, plans)?;
    {
        let mut rollbacks = step.rollbacks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in &recorded {
            rollbacks.apply(event);
        }
        rollbacks.write(step.store, &step.clock.now_rfc3339(), ledger.head())?;
    }
    failpoint::hit(failpoint::ROLLBACK_PLAN_WRITTEN);

    let mut batch = step.leases.batch(step.clock.now(), ledger.head())?;
    let mut events = Vec::new();
    // An upgrade with a canary renews after its canary instead.
    for (decision, go) in ready.iter().filter(|(_, go)| canary_of(step, go.repo).is_none()) {
        let name = &decision.repo;
        let token = go.lease.fencing_token;
        match batch.renew(name, token) {
            Ok(renewed) => {
                events.push(Pending::new(
                    EventKind::LeaseRenewed,
                    name,
                    json!({ "lease": renewed, "before": "apply" }),
                ));
                renewals.insert(name.clone(), Ok(renewed));
            }
            Err(e) => {
                let why = e.to_string();
                let payload = json!({ "token": token, "error": why, "at": "renew-before-apply" });
                events.push(Pending::new(EventKind::FenceRejected, name, payload));
                renewals.insert(name.clone(), Err(why));
            }
        }
    }
    batch.commit()?;
    ledger.append_all(step.tick, events)?;
    Ok(renewals)
}

/// The canary of `repo`: its own, else the policy's.
fn canary_of<'a>(step: &Step<'a>, repo: &'a RepoPolicy) -> Option<&'a CommandSpec> {
    repo.canary.as_ref().or(step.policy.checks.canary.as_ref())
}

/// Whether half of `lease`'s TTL has passed since it was last renewed.
fn half_spent(lease: &Lease, clock: Clock) -> bool {
    let renewed = chrono::DateTime::parse_from_rfc3339(&lease.renewed_at).map(|t| t.with_timezone(&chrono::Utc));
    renewed.map_or(true, |at| (clock.now() - at).num_seconds() >= i64::try_from(lease.ttl_secs / 2).unwrap_or(0))
}

/// Carries out one decision; appends its step events to `ledger`.
pub fn execute(
    step: &Step<'_>,
    decision: &Decision,
    clearance: Option<&Clearance>,
    ledger: &Mutex<EventLedger>,
) -> Result<RepoOutcome, LedgerError> {
    // Lanes share the ledger; each append takes the lock for that one event.
    let append = |kind: EventKind, subject: &str, payload: serde_json::Value| -> Result<(), LedgerError> {
        let mut ledger = ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ledger.append(step.tick, kind, subject, payload).map(|_| ())
    };
    let mut result = RepoOutcome {
        repo: decision.repo.clone(),
        outcome: match decision.recommendation {
            Recommendation::Upgrade => Outcome::Upgraded,
            Recommendation::Defer | Recommendation::Hold => Outcome::Deferred,
            Recommendation::Block => Outcome::Blocked,
            Recommendation::Noop => Outcome::Noop,
        },
        recommendation: decision.recommendation,
        reason_code: decision.reason_code.clone(),
        reason: decision.reason.clone(),
        head_before: decision.head.clone(),
        head_after: decision.head.clone(),
        target: decision.target.clone(),
        decision_hash: step.plan.decision_hash.clone(),
    };
    let go = match ready(step, decision, clearance) {
        Ok(go) => go,
        Err(None) => return Ok(result),
        Err(Some((outcome, code, reason))) => {
            result.settle(outcome, code, reason);
            return Ok(result);
        }
    };
    let Ready { lease, repo, branch, head, target } = go;
    let path = repo.resolved_path(step.workspace.home());
    let name = &decision.repo;

    let canary = canary_of(step, repo);
    let canary_ran = canary.is_some();
    if let Some(canary) = canary {
        let outcome = run_canary(step, name, &path, target, canary);
        let payload = match &outcome {
            Ok(run) => json!({ "target": target.to_string(), "result": run }),
            Err(message) => json!({ "target": target.to_string(), "error": message }),
        };
        append(EventKind::CanaryRun, name, payload)?;
        match outcome {
            Ok(run) if run.success() => {}
            Ok(run) => {
                result.settle(
                    Outcome::Blocked,
                    "canary-failed",
                    format!("canary {:?} {} at {target}", canary.argv, run.describe()),
                );
                return Ok(result);
            }
            Err(message) => {
                result.settle(Outcome::Failed, "canary-setup-failed", message);
                return Ok(result);
            }
        }
    }

    // Before the apply, the lease was renewed with the rest of the level
    // ([`prepare_level`]); after a canary, or when that renewal has used
    // up half the TTL, it is renewed again here. Renewal checks that the
    // fencing token is still the current one; a stale holder stops, and the
    // fence is checked once more right before the branch moves.
    let renewal = match step.renewals.get(name) {
        Some(Ok(renewed)) if !canary_ran && !half_spent(renewed, step.clock) => Ok(()),
        Some(Err(why)) => Err(why.clone()),
        _ => renew(step, name, lease, "apply", ledger)?,
    };
    if let Err(why) = renewal {
        result.settle(Outcome::Deferred, apply::FENCE_REJECTED, why);
        return Ok(result);
    }
    let fence = || step.leases.check_fence(name, lease.fencing_token, step.clock.now()).map_err(|e| e.to_string());
    let reflog = format!("hermes: fast-forward to {target} (tick {})", step.tick);
    if let Err(refusal) = apply::fast_forward(&path, branch, head, target, &reflog, &fence) {
        if refusal.code == apply::FENCE_REJECTED {
            append(
                EventKind::FenceRejected,
                name,
                json!({ "token": lease.fencing_token, "error": refusal.message, "at": "apply" }),
            )?;
        }
        let outcome = if refusal.transient { Outcome::Deferred } else { Outcome::Failed };
        result.settle(outcome, refusal.code, refusal.message);
        return Ok(result);
    }
    result.head_after = Some(target.to_string());
    result.reason = format!("fast-forwarded {} commits", decision.behind);

    if let Some(health) = repo.health.as_ref().or(step.policy.checks.health.as_ref()) {
        let run = process::run(health, &path, &[("HERMES_REPO", name), ("HERMES_TICK", step.tick)]);
        append(EventKind::HealthChecked, name, json!({ "head": target.to_string(), "result": run }))?;
        if !run.success() {
            // The rollback is a mutation too: renew first, fence right
            // before the branch moves back. A lost lease leaves the repo at
            // the target (someone else holds it now) and says so.
            let rolled = match renew(step, name, lease, "rollback", ledger)? {
                Err(why) => Err(apply::ApplyRefusal { transient: false, code: apply::FENCE_REJECTED, message: why }),
                Ok(()) => {
                    let reflog = format!("hermes: roll back to {head} (tick {})", step.tick);
                    let rolled = apply::roll_back(&path, branch, target, head, &reflog, &fence);
                    if let Err(refusal) = &rolled
                        && refusal.code == apply::FENCE_REJECTED
                    {
                        append(
                            EventKind::FenceRejected,
                            name,
                            json!({ "token": lease.fencing_token, "error": refusal.message, "at": "rollback" }),
                        )?;
                    }
                    rolled
                }
            };
            append(
                EventKind::RolledBack,
                name,
                json!({
                    "from": target.to_string(),
                    "to": head.to_string(),
                    "ok": rolled.is_ok(),
                    "error": rolled.as_ref().err().map(|r| &r.message),
                    "code": rolled.as_ref().err().map(|r| r.code),
                }),
            )?;
            let (head_after, note) = match rolled {
                Ok(()) => (head, format!("rolled back to {head}")),
                Err(refusal) if refusal.code == apply::FENCE_REJECTED => (
                    target,
                    format!(
                        "NOT ROLLED BACK, still at {target}: the lease was lost before the rollback ({})",
                        refusal.message
                    ),
                ),
                Err(refusal) => (target, format!("ROLLBACK FAILED, still at {target}: {}", refusal.message)),
            };
            result.head_after = Some(head_after.to_string());
            result.settle(
                Outcome::Failed,
                "health-check-failed",
                format!("health check {:?} {}; {note}", health.argv, run.describe()),
            );
        }
    }
    Ok(result)
}

/// Renews `lease` right before a mutation (`before`: "apply" or "rollback")
/// and records the result: `lease-renewed`, or `fence-rejected` (at
/// `renew-before-<before>`) when the token is no longer the current one.
/// `Ok(Err(why))`: the lease is lost and the mutation must not happen.
///
/// The ledger stays locked for the renewal, so the lease table records the
/// ledger head right before the event that records the renewal.
fn renew(
    step: &Step<'_>,
    name: &str,
    lease: &Lease,
    before: &str,
    ledger: &Mutex<EventLedger>,
) -> Result<Result<(), String>, LedgerError> {
    let mut ledger = ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let head = ledger.head().clone();
    match step.leases.renew(name, lease.fencing_token, step.clock.now(), &head) {
        Ok(renewed) => {
            ledger.append(step.tick, EventKind::LeaseRenewed, name, json!({ "lease": renewed, "before": before }))?;
            Ok(Ok(()))
        }
        Err(e) => {
            let why = e.to_string();
            let at = format!("renew-before-{before}");
            ledger.append(
                step.tick,
                EventKind::FenceRejected,
                name,
                json!({ "token": lease.fencing_token, "error": why, "at": at }),
            )?;
            Ok(Err(why))
        }
    }
}

/// Runs the canary in a temporary checkout of `target`.
fn run_canary(
    step: &Step<'_>,
    name: &str,
    path: &Path,
    target: Oid,
    canary: &CommandSpec,
) -> Result<process::CommandOutcome, String> {
    let tmp_root = step.workspace.home().join("tmp");
    std::fs::create_dir_all(&tmp_root).map_err(|e| format!("cannot create {}: {e}", tmp_root.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("canary-{name}-"))
        .tempdir_in(&tmp_root)
        .map_err(|e| format!("cannot create a canary directory in {}: {e}", tmp_root.display()))?;
    apply::checkout_into(path, target, dir.path())
        .map_err(|e| format!("cannot check out {target} for the canary: {e}"))?;
    failpoint::hit(failpoint::CANARY_CHECKOUT);
    let run = process::run(
        canary,
        dir.path(),
        &[("HERMES_REPO", name), ("HERMES_TICK", step.tick), ("HERMES_CANDIDATE", &target.to_string())],
    );
    Ok(run)
}
