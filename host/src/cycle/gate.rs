//! The integrity gate between phase 1 and phase 2.
//!
//! Before any repository is mutated, every check below must hold; if one
//! fails, no repository is touched in this cycle (every planned upgrade is
//! blocked with reason code `integrity-gate`) and the failing check is named.
//!
//! | check | what must hold |
//! |-------|----------------|
//! | `leases-match-reservations` | every granted reservation has an active lease of this holder with the granted fencing token |
//! | `leases-unique` | at most one active lease per repository key; fencing tokens distinct |
//! | `ledger-chain` | the ledger file verifies end to end and holds the last event this process appended |
//! | `views-agree-with-ledger` | every state view records a ledger position the ledger holds, with the same hash |
//! | `policy-digest` | the policy on disk has the digest the plan was made with |
//! | `plugin-digests` | each configured plugin component has the digest the plan was made with |
//!
//! Persisted as `state/control_plane_integrity.json` (data: [`GateReport`]).

use super::plan::Plan;
use crate::coordinate::{Holder, Lease};
use crate::ledger::EventLedger;
use crate::plugin::PluginKind;
use crate::plugin::set::configured_digest;
use crate::policy::Policy;
use crate::state::{LedgerHead, StateStore, ViewName};
use crate::workspace::Workspace;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The gate's verdict for one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    pub tick: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl GateReport {
    /// The first failing check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }
}

/// What the gate looks at.
pub struct GateInputs<'a> {
    pub workspace: &'a Workspace,
    pub store: &'a StateStore,
    pub ledger: &'a EventLedger,
    pub plan: &'a Plan,
    pub holder: &'a Holder,
    /// Leases granted to this cycle, by repository.
    pub grants: &'a BTreeMap<String, Lease>,
    /// Active leases as the lease table holds them now.
    pub active: &'a [Lease],
}

/// Views whose recorded ledger head the gate compares with the ledger.
const VIEWS: [ViewName; 6] = [
    ViewName::GlobalOrchestrationPlan,
    ViewName::UpgradeState,
    ViewName::UpgradeSummary,
    ViewName::CoordinationLeases,
    ViewName::RuntimeIntelligence,
    ViewName::RuntimeTopologyGraph,
];

/// Runs every check.
pub fn check(inputs: &GateInputs<'_>) -> GateReport {
    let checks = vec![leases_match(inputs), leases_unique(inputs.active), ledger_and_views(inputs), {
        // The policy as it is on disk now, read once for both checks.
        let policy = inputs.workspace.load_policy().map_err(|e| e.to_string());
        let mut checks = policy_digest(inputs, &policy);
        checks.extend(plugin_digests(inputs, &policy));
        checks
    }];
    let checks: Vec<Check> = checks.into_iter().flatten().collect();
    GateReport { tick: inputs.plan.tick.clone(), ok: checks.iter().all(|c| c.ok), checks }
}

fn verdict(name: &str, problems: Vec<String>, ok_detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok: problems.is_empty(),
        detail: if problems.is_empty() { ok_detail } else { problems.join("; ") },
    }
}

fn leases_match(inputs: &GateInputs<'_>) -> Vec<Check> {
    let mut problems = Vec::new();
    for (repo, grant) in inputs.grants {
        match inputs.active.iter().find(|l| &l.key == repo) {
            None => problems.push(format!("{repo}: granted token {} but no active lease", grant.fencing_token)),
            Some(lease) if &lease.holder != inputs.holder || lease.fencing_token != grant.fencing_token => problems
                .push(format!(
                    "{repo}: granted token {} to tick {}, the active lease has token {} held by tick {}",
                    grant.fencing_token, inputs.holder.tick, lease.fencing_token, lease.holder.tick
                )),
            Some(_) => {}
        }
    }
    vec![verdict(
        "leases-match-reservations",
        problems,
        format!("{} granted reservations have their leases", inputs.grants.len()),
    )]
}

fn leases_unique(active: &[Lease]) -> Vec<Check> {
    let mut keys = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    let mut problems = Vec::new();
    for lease in active {
        if !keys.insert(&lease.key) {
            problems.push(format!("two active leases for {}", lease.key));
        }
        if !tokens.insert(lease.fencing_token) {
            problems.push(format!("fencing token {} used twice", lease.fencing_token));
        }
    }
    vec![verdict("leases-unique", problems, format!("{} active leases, one per key", active.len()))]
}

fn ledger_and_views(inputs: &GateInputs<'_>) -> Vec<Check> {
    let head = inputs.ledger.head().clone();
    let mut wanted: BTreeMap<ViewName, LedgerHead> = BTreeMap::new();
    for view in VIEWS {
        if let Ok(Some(envelope)) = inputs.store.read::<serde_json::Value>(view) {
            wanted.insert(view, envelope.ledger_head);
        }
    }
    let mut needed: BTreeSet<u64> = wanted.values().map(|h| h.seq).collect();
    needed.insert(head.seq);
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    // Under the ledger lock: another process may append (a skipped cycle
    // records itself), and its half-written line must not look torn.
    let scanned = inputs.ledger.scan_locked(|event| {
        if needed.contains(&event.seq) {
            hashes.insert(event.seq, event.hash.clone());
        }
    });
    let chain = match &scanned {
        Err(problem) => verdict("ledger-chain", vec![problem.to_string()], String::new()),
        Ok(scan) if scan.torn_tail.is_some() => {
            verdict("ledger-chain", vec!["the ledger ends in a torn line".to_owned()], String::new())
        }
        Ok(scan) if head.seq > 0 && hashes.get(&head.seq) != Some(&head.hash) => verdict(
            "ledger-chain",
            vec![format!(
                "this process appended event {} with hash {}; the ledger (ending at {} {}) does not hold it",
                head.seq, head.hash, scan.head.seq, scan.head.hash
            )],
            String::new(),
        ),
        Ok(scan) => {
            verdict("ledger-chain", Vec::new(), format!("{} events verify, head {}", scan.events, scan.head.seq))
        }
    };
    let mut problems = Vec::new();
    for (view, at) in &wanted {
        if at.seq == 0 {
            continue;
        }
        match hashes.get(&at.seq) {
            Some(hash) if hash == &at.hash => {}
            Some(hash) => problems.push(format!(
                "{} records event {} with hash {}, the ledger has {hash}",
                view.file_name(),
                at.seq,
                at.hash
            )),
            None => problems.push(format!("{} records event {}, beyond the ledger's end", view.file_name(), at.seq)),
        }
    }
    let views = verdict("views-agree-with-ledger", problems, format!("{} views agree with the ledger", wanted.len()));
    vec![chain, views]
}

fn policy_digest(inputs: &GateInputs<'_>, policy: &Result<Policy, String>) -> Vec<Check> {
    let problems = match policy {
        Ok(policy) if policy.digest() == inputs.plan.policy_digest => Vec::new(),
        Ok(policy) => vec![format!(
            "the policy changed since the plan: digest {} now, {} in the plan",
            policy.digest(),
            inputs.plan.policy_digest
        )],
        Err(e) => vec![format!("the policy can no longer be read: {e}")],
    };
    vec![verdict("policy-digest", problems, format!("policy digest {}", inputs.plan.policy_digest))]
}

fn plugin_digests(inputs: &GateInputs<'_>, policy: &Result<Policy, String>) -> Vec<Check> {
    let mut problems = Vec::new();
    match policy {
        Ok(policy) => {
            for kind in PluginKind::ALL {
                let planned = inputs.plan.plugin_digests.get(&kind).map(String::as_str).unwrap_or("(none)");
                match configured_digest(inputs.workspace.home(), policy, kind) {
                    Ok(now) if now == planned => {}
                    Ok(now) => {
                        problems.push(format!("{}: component digest {now} now, {planned} in the plan", kind.as_str()))
                    }
                    Err(e) => problems.push(format!("{}: {e}", kind.as_str())),
                }
            }
        }
        Err(e) => problems.push(format!("the policy can no longer be read: {e}")),
    }
    vec![verdict("plugin-digests", problems, "every plugin component is the one the plan used".to_owned())]
}
