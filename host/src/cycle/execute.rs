//! Phase 2 for one repository: execute, defer or block.
//!
//! For an `upgrade`:
//! 1. dependencies that failed, were blocked or deferred in this cycle stop it;
//! 2. the rollback plan (branch, previous HEAD, target, steps) is appended to
//!    the ledger (fsynced) before anything changes;
//! 3. the canary check, if configured, runs in a temporary checkout of the
//!    candidate commit under `HERMES_HOME/tmp/` (the repository itself is not
//!    touched; the checkout is removed afterwards) — failure blocks;
//! 4. the lease is renewed (which checks the fencing token is still the
//!    current one; a stale holder stops: `fence-rejected`, deferred);
//! 5. the guarded fast-forward ([`super::apply`]), with the fencing token
//!    checked once more right before the branch's compare-and-swap;
//! 6. the health check, if configured, runs in the real worktree — failure
//!    renews the lease again and rolls back to the recorded HEAD
//!    ([`super::apply::roll_back`], fenced the same way); with the lease
//!    lost, the branch stays at the target and the outcome says so.
//!
//! Repositories of one dependency depth run in parallel lanes; events of
//! one repository keep their order. Every step is recorded: `rollback-planned`, `canary-run`,
//! `lease-renewed` / `fence-rejected`, `health-checked`, `rolled-back`.

use super::apply;
use super::outcome::{Outcome, RepoOutcome};
use super::plan::{Decision, Plan, Recommendation};
use super::rollback::RollbackIntelligence;
use crate::clock::Clock;
use crate::coordinate::{Lease, LeaseManager};
use crate::failpoint;
use crate::ledger::{EventKind, EventLedger, LedgerError};
use crate::policy::Policy;
use crate::process::{self, CommandSpec};
use crate::state::{LedgerHead, StateStore, ViewName};
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
    /// The rollback view, rewritten as soon as a plan is recorded.
    pub rollbacks: &'a Mutex<RollbackIntelligence>,
    pub store: &'a StateStore,
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
        let event = ledger.append(step.tick, kind, subject, payload)?;
        if kind == EventKind::RollbackPlanned {
            // The plan is in rollback_intelligence.json before anything changes.
            let mut rollbacks = step.rollbacks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            rollbacks.apply(&event);
            let head = LedgerHead { seq: event.seq, hash: event.hash.clone() };
            rollbacks.write(step.store, &step.clock.now_rfc3339(), &head).map_err(|e| LedgerError::Io {
                path: step.store.path_of(ViewName::RollbackIntelligence.file_name()),
                source: std::io::Error::other(e),
            })?;
            failpoint::hit(failpoint::ROLLBACK_PLAN_WRITTEN);
        }
        Ok(())
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
    if decision.recommendation != Recommendation::Upgrade {
        return Ok(result);
    }
    let lease = match clearance {
        Some(Clearance::Granted(lease)) => lease,
        Some(Clearance::Refused(outcome, code, reason)) => {
            result.settle(*outcome, code, reason.clone());
            return Ok(result);
        }
        None => {
            result.settle(Outcome::Failed, "no-lease", "no lease was reserved for this upgrade".into());
            return Ok(result);
        }
    };
    for dep in &decision.depends_on {
        let (outcome, code) = match step.earlier.get(dep) {
            Some(Outcome::Failed | Outcome::Blocked) => (Outcome::Blocked, "dependency-failed"),
            Some(Outcome::Deferred) => (Outcome::Deferred, "dependency-deferred"),
            _ => continue,
        };
        result.settle(outcome, code, format!("dependency {dep:?} did not upgrade in this cycle"));
        return Ok(result);
    }
    let (Some(repo), Some(branch), Some(head), Some(target)) = (
        step.policy.repo(&decision.repo),
        decision.branch.as_deref(),
        decision.head.as_deref().and_then(|h| Oid::from_str(h).ok()),
        decision.target.as_deref().and_then(|t| Oid::from_str(t).ok()),
    ) else {
        result.settle(
            Outcome::Failed,
            "incomplete-probe",
            "the plan lacks branch, HEAD or target for an upgrade".into(),
        );
        return Ok(result);
    };
    let path = repo.resolved_path(step.workspace.home());
    let name = &decision.repo;

    append(
        EventKind::RollbackPlanned,
        name,
        json!({
            "branch": branch,
            "previous_head": head.to_string(),
            "target": target.to_string(),
            "steps": [
                format!("check that refs/heads/{branch} is still at {target} and the worktree is clean"),
                format!("check out the tree of {head}"),
                format!("move refs/heads/{branch} from {target} back to {head} (compare-and-swap)"),
            ],
        }),
    )?;

    if let Some(canary) = repo.canary.as_ref().or(step.policy.checks.canary.as_ref()) {
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

    // Right after the canary, before the apply: renew the lease. Renewal
    // checks that the fencing token is still the current one; a stale holder
    // stops here, and the fence is checked once more right before the branch
    // moves.
    if let Err(why) = renew(step, name, lease, "apply", ledger)? {
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
