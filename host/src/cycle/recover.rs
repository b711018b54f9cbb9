//! Recovery from a killed cycle, run at the start of the next executing
//! cycle (under the cycle lock, so the killed one is certainly gone).
//!
//! Two kinds of leftovers:
//! - canary checkouts (`HERMES_HOME/tmp/canary-*`): only a cycle makes
//!   them and removes them, so any found now is a dead cycle's; removed,
//!   and listed in the `cycle-started` payload (`stale_canary_dirs_removed`);
//! - unsettled applies: a `rollback-planned` without an outcome from the
//!   same tick ([`RollbackIntelligence::unsettled`]). Each repository is
//!   inspected ([`apply::inspect_interrupted`]) and put back to a state
//!   the planner knows:
//!   - `untouched` (branch at the previous HEAD, clean): nothing to do;
//!   - `checkout-only` (branch at the previous HEAD, index and worktree
//!     holding only the target's versions): the checkout is undone;
//!   - `ref-moved` (branch at the target, clean): the health check's verdict
//!     was never recorded, so the branch is rolled back to the previous HEAD
//!     (compare-and-swap, same guards as any rollback); this cycle plans the
//!     upgrade again, with its checks;
//!   - `foreign-changes` (anything else): someone else's work; left alone,
//!     and the probe will defer the repository until it is clean.
//!
//!   Before the inspection, git lock files the killed apply itself left
//!   (the branch's ref lock holding the previous HEAD or the target, an
//!   `index.lock` holding one of their trees) are removed
//!   ([`apply::remove_own_stale_locks`]); other locks stay.
//!
//!   A repository under another holder's active lease is left for a later
//!   cycle. Every inspection is recorded as one `apply-recovered` event
//!   (killed tick, branch, previous HEAD, target, `found`, `action`, `ok`,
//!   `error`), which settles the plan.

use super::apply::{self, Interrupted};
use super::rollback::RollbackIntelligence;
use crate::clock::Clock;
use crate::coordinate::LeaseManager;
use crate::ledger::{EventKind, EventLedger, LedgerError};
use crate::policy::Policy;
use crate::workspace::Workspace;
use git2::Oid;
use serde_json::{Value, json};
use std::path::Path;

/// Removes canary checkouts a killed cycle left in `HERMES_HOME/tmp/`;
/// returns their names, sorted.
pub fn remove_stale_canaries(workspace: &Workspace) -> std::io::Result<Vec<String>> {
    let tmp = workspace.home().join("tmp");
    let entries = match std::fs::read_dir(&tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("canary-") && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// What the cycle needs to settle the applies a killed cycle left.
pub struct Recovery<'a> {
    pub workspace: &'a Workspace,
    pub policy: &'a Policy,
    pub leases: &'a LeaseManager<'a>,
    pub tick: &'a str,
    pub clock: Clock,
}

impl Recovery<'_> {
    /// Inspects and settles every unsettled apply of `rollbacks`, recording
    /// one `apply-recovered` event each (folded into `rollbacks`).
    pub fn settle_all(
        &self,
        rollbacks: &mut RollbackIntelligence,
        ledger: &mut EventLedger,
    ) -> Result<(), LedgerError> {
        let unsettled: Vec<String> = rollbacks.unsettled.iter().cloned().collect();
        for repo in unsettled {
            let plan = rollbacks.plans.get(&repo).cloned().unwrap_or(Value::Null);
            let Some(payload) = self.settle(&repo, &plan) else { continue };
            let event = ledger.append(self.tick, EventKind::ApplyRecovered, &repo, payload)?;
            rollbacks.apply(&event);
        }
        Ok(())
    }

    /// The `apply-recovered` payload for `repo`, or `None` when another
    /// holder's lease says to leave it for now.
    fn settle(&self, repo: &str, plan: &Value) -> Option<Value> {
        let text = |key: &str| plan.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (killed_tick, branch) = (text("tick"), text("branch"));
        let mut payload = json!({
            "killed_tick": killed_tick,
            "branch": branch,
            "previous_head": text("previous_head"),
            "target": text("target"),
        });
        let held = self.leases.active(self.clock.now()).ok()?.into_iter().find(|l| l.key == repo);
        if let Some(lease) = held
            && lease.holder.tick != killed_tick
        {
            tracing::info!(repo, holder = %lease.holder.tick, "an unsettled apply waits: another holder has the lease");
            return None;
        }
        let result =
            match (self.policy.repo(repo), Oid::from_str(&text("previous_head")), Oid::from_str(&text("target"))) {
                (Some(config), Ok(previous), Ok(target)) => {
                    let path = config.resolved_path(self.workspace.home());
                    self.put_right(&path, &branch, previous, target)
                }
                (None, ..) => Err(("not-in-policy", "the repository is no longer in the policy".to_owned())),
                _ => Err(("bad-plan", "the recorded plan lacks a previous HEAD or target".to_owned())),
            };
        let (found, action, error) = match result {
            Ok((found, action)) => (found, action, None),
            Err((found, error)) => (found, "none", Some(error)),
        };
        tracing::warn!(repo, found, action, "settled an apply a killed cycle left unfinished");
        payload["found"] = json!(found);
        payload["action"] = json!(action);
        payload["ok"] = json!(error.is_none());
        payload["error"] = json!(error);
        Some(payload)
    }

    /// Inspects the repository and undoes what the killed apply did;
    /// `Ok((found, action))` or `Err((found, why))`.
    fn put_right(
        &self,
        path: &Path,
        branch: &str,
        previous: Oid,
        target: Oid,
    ) -> Result<(&'static str, &'static str), (&'static str, String)> {
        let removed = apply::remove_own_stale_locks(path, branch, previous, target)
            .map_err(|e| ("unreadable", e.message().to_owned()))?;
        if !removed.is_empty() {
            tracing::warn!(path = %path.display(), ?removed, "removed git locks a killed apply left");
        }
        let found = apply::inspect_interrupted(path, branch, previous, target)
            .map_err(|e| ("unreadable", e.message().to_owned()))?;
        let label = found.as_str();
        match found {
            Interrupted::Untouched => Ok((label, "none")),
            Interrupted::Foreign => Ok((label, "left-for-operator")),
            Interrupted::CheckoutOnly => apply::undo_interrupted_checkout(path, previous, target)
                .map(|()| (label, "checkout-undone"))
                .map_err(|e| (label, e.message().to_owned())),
            Interrupted::RefMoved => {
                let reflog = format!("hermes: roll back an interrupted apply to {previous} (tick {})", self.tick);
                apply::roll_back(path, branch, target, previous, &reflog, &|| Ok(()))
                    .map(|()| (label, "rolled-back"))
                    .map_err(|refusal| (label, refusal.message))
            }
        }
    }
}
