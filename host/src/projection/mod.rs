//! GraphProjectionEngine: folds ledger events into a [`GraphSnapshot`], the
//! operator's picture of the workspace (repositories with their HEAD, last
//! decision and outcome; remotes; leases; jobs; the last tick and gate; the
//! edges between them).
//!
//! The projection is derived: it is never a second source of truth. It is
//! a pure fold, `snapshot = events.fold(GraphSnapshot::default(), apply)`,
//! with no clock, no randomness and only ordered maps, so the same ledger
//! prefix always gives the same snapshot, byte for byte. [`patch`] diffs two
//! snapshots; [`checkpoint`] stores one so readers resume instead of
//! re-reading the whole ledger.
//!
//! Events of kinds this build does not project (and kinds from a later
//! build) only move the snapshot's position.

pub mod checkpoint;
pub mod dot;
pub mod metrics;
pub mod patch;
pub mod step;

use crate::ledger::{EventKind, HermesEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use step::Change;
pub use step::Step;

/// The projected state after event `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    /// Sequence number of the last event folded in (0: none).
    pub seq: u64,
    /// Hash of that event (empty when none).
    pub hash: String,
    /// The last cycle that started, and how it ended.
    pub last_tick: Option<TickNode>,
    /// Cycles that skipped because another one was running.
    pub skipped_ticks: u64,
    /// The last integrity gate.
    pub integrity: Option<IntegrityNode>,
    pub repos: BTreeMap<String, RepoNode>,
    /// Remotes by `repo/remote`.
    pub remotes: BTreeMap<String, RemoteNode>,
    /// Active leases by key.
    pub leases: BTreeMap<String, LeaseNode>,
    /// Scheduled jobs by name (filled by job events).
    pub jobs: BTreeMap<String, JobNode>,
    pub edges: BTreeSet<Edge>,
    /// Running totals since the first event (`hermes metrics`).
    #[serde(default)]
    pub counters: Counters,
}

/// Totals folded from every event, for `hermes metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub events: u64,
    pub cycles: u64,
    /// Repository outcomes by kind (`upgraded`, `deferred`, ...).
    pub outcomes: BTreeMap<String, u64>,
    pub rollbacks: u64,
    pub rollbacks_failed: u64,
    /// Plugin calls by `kind/outcome`.
    pub plugin_calls: BTreeMap<String, u64>,
    /// Fuel used by plugin kind.
    pub plugin_fuel: BTreeMap<String, u64>,
    pub lease_conflicts: u64,
    pub lease_takeovers: u64,
    pub fence_rejections: u64,
    pub integrity_failures: u64,
}

/// A cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickNode {
    pub tick: String,
    /// Sequence number of its `cycle-started` event.
    pub started_seq: u64,
    pub started_at: String,
    /// Set by `cycle-finished`.
    pub finished_at: Option<String>,
    pub decision_hash: Option<String>,
    /// Outcomes by kind, as `cycle-finished` counted them.
    pub counts: BTreeMap<String, u64>,
}

/// The result of the last integrity gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityNode {
    pub tick: String,
    pub ok: bool,
    /// Names of the checks that failed.
    pub failed: Vec<String>,
    pub checks: u64,
}

/// A repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoNode {
    pub branch: Option<String>,
    /// HEAD as last probed or changed by Hermes.
    pub head: Option<String>,
    pub upstream_head: Option<String>,
    pub ahead: u64,
    pub behind: u64,
    /// The remote the last probe fetched from.
    pub remote: Option<String>,
    pub depends_on: Vec<String>,
    pub last_decision: Option<DecisionNode>,
    pub last_outcome: Option<OutcomeNode>,
    pub rollbacks: u64,
}

/// What the last plan said about a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionNode {
    pub tick: String,
    pub recommendation: String,
    pub risk: Option<u64>,
    pub reason_code: String,
    pub decision_hash: String,
}

/// How the last phase 2 ended for a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeNode {
    pub tick: String,
    pub seq: u64,
    pub outcome: String,
    pub reason_code: String,
    pub reason: String,
}

/// A remote of a repository, as probes and health changes saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteNode {
    pub repo: String,
    pub name: String,
    /// Probes that fetched from it.
    pub fetches: u64,
    /// Probes whose fetch from it failed and fell over.
    pub failures: u64,
    /// The last `remote-health-changed` payload, as recorded.
    pub health: Option<Value>,
}

/// An active lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseNode {
    pub key: String,
    pub holder_tick: String,
    pub fencing_token: u64,
    pub expires_at: String,
}

/// A scheduled job and its last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobNode {
    pub name: String,
    pub last_run: Option<Value>,
}

/// A typed edge between two nodes (`repo:NAME`, `remote:REPO/NAME`,
/// `lease:KEY`, `tick:ID`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `depends-on`, `uses-remote`, `holds-lease`.
    pub kind: String,
}

impl GraphSnapshot {
    /// Folds one event in. Events must come in ledger order.
    pub fn apply(&mut self, event: &HermesEvent) {
        self.apply_step(Step::of(event.as_ref()));
    }

    /// Folds one event's [`Step`] in. Steps must come in ledger order.
    pub fn apply_step(&mut self, step: Step) {
        self.seq = step.seq;
        step.hash.write_to(&mut self.hash);
        self.counters.events += 1;
        let Some(kind) = step.kind else { return };
        self.count(kind, &step.change);
        let Step { tick, subject, change, seq, .. } = step;
        match (kind, change) {
            (_, Change::CycleStarted { time }) => {
                self.last_tick = Some(TickNode {
                    tick,
                    started_seq: seq,
                    started_at: time,
                    finished_at: None,
                    decision_hash: None,
                    counts: BTreeMap::new(),
                });
                self.integrity = None;
            }
            (_, Change::CycleFinished { time, decision_hash, counts }) => {
                if let Some(last) = self.last_tick.as_mut().filter(|t| t.tick == tick) {
                    last.finished_at = Some(time);
                    last.decision_hash = decision_hash;
                    last.counts = counts;
                }
            }
            (EventKind::CycleSkipped, _) => self.skipped_ticks += 1,
            (_, Change::Probed(probe)) => self.probed(&subject, probe),
            (_, Change::Planned(plan)) => self.planned(&tick, plan),
            (_, Change::Outcome(outcome)) => {
                let repo = self.repos.entry(subject).or_default();
                if let Some(head) = outcome.head_after.text() {
                    repo.head = Some(head);
                }
                repo.last_outcome = Some(OutcomeNode {
                    tick,
                    seq,
                    outcome: outcome.outcome.text().unwrap_or_default(),
                    reason_code: outcome.reason_code.text().unwrap_or_default(),
                    reason: outcome.reason.text().unwrap_or_default(),
                });
            }
            (_, Change::RolledBack { ok, to }) => {
                let repo = self.repos.entry(subject).or_default();
                if ok {
                    repo.head = to;
                    repo.rollbacks += 1;
                }
            }
            (_, Change::Lease(lease)) => {
                if let Some(key) = lease.key.text() {
                    let node = LeaseNode {
                        key: key.clone(),
                        holder_tick: lease.holder.0.tick.text().unwrap_or_default(),
                        fencing_token: lease.fencing_token.count().unwrap_or(0),
                        expires_at: lease.expires_at.text().unwrap_or_default(),
                    };
                    self.edges.insert(Edge::holds_lease(&node.holder_tick, &key));
                    // A takeover or renewal replaces the lease (and its holder's edge).
                    if let Some(old) = self.leases.insert(key.clone(), node)
                        && old.holder_tick != self.leases[&key].holder_tick
                    {
                        self.edges.remove(&Edge::holds_lease(&old.holder_tick, &key));
                    }
                }
            }
            (_, Change::Released { fencing_token }) => {
                if self.leases.get(&subject).is_some_and(|l| l.fencing_token == fencing_token)
                    && let Some(lease) = self.leases.remove(&subject)
                {
                    self.edges.remove(&Edge::holds_lease(&lease.holder_tick, &lease.key));
                }
            }
            (_, Change::RemoteHealth { remote, health }) => {
                let remote = remote.unwrap_or_else(|| subject.clone());
                let key = format!("{subject}/{remote}");
                let node = self.remotes.entry(key).or_insert_with(|| RemoteNode {
                    repo: subject.clone(),
                    name: remote,
                    ..RemoteNode::default()
                });
                node.health = Some(health);
            }
            (_, Change::Gate { ok }) => {
                let integrity = self.integrity.get_or_insert_with(|| IntegrityNode {
                    tick,
                    ok: true,
                    failed: Vec::new(),
                    checks: 0,
                });
                integrity.checks += 1;
                if ok == Some(false) {
                    integrity.ok = false;
                    integrity.failed.push(subject);
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, kind: EventKind, change: &Change) {
        let c = &mut self.counters;
        match (kind, change) {
            (EventKind::CycleStarted, _) => c.cycles += 1,
            (_, Change::Outcome(outcome)) => {
                let outcome =
                    outcome.outcome.text().unwrap_or_else(|| kind.as_str().trim_start_matches("repo-").into());
                *c.outcomes.entry(outcome).or_insert(0) += 1;
            }
            (_, Change::RolledBack { ok: true, .. }) => c.rollbacks += 1,
            (_, Change::RolledBack { ok: false, .. }) => c.rollbacks_failed += 1,
            (_, Change::PluginCalled { kind: plugin, outcome, fuel_used }) => {
                let plugin = plugin.clone().unwrap_or_default();
                let outcome = outcome.as_deref().unwrap_or_default();
                *c.plugin_calls.entry(format!("{plugin}/{outcome}")).or_insert(0) += 1;
                *c.plugin_fuel.entry(plugin).or_insert(0) += fuel_used;
            }
            (EventKind::LeaseConflict, _) => c.lease_conflicts += 1,
            (EventKind::LeaseTakeover, _) => c.lease_takeovers += 1,
            (EventKind::FenceRejected, _) => c.fence_rejections += 1,
            (EventKind::IntegrityFailed, _) => c.integrity_failures += 1,
            _ => {}
        }
    }

    fn probed(&mut self, name: &str, probe: step::Probe) {
        let repo = self.repos.entry(name.to_owned()).or_default();
        repo.branch = probe.branch.text().or(repo.branch.take());
        repo.head = probe.head.text().or(repo.head.take());
        repo.upstream_head = probe.upstream_head.text();
        repo.ahead = probe.ahead.count().unwrap_or(0);
        repo.behind = probe.behind.count().unwrap_or(0);
        repo.remote = probe.remote.text();
        let failed = probe.failed_over.0.into_iter().filter_map(|r| r.0);
        let used = repo.remote.clone();
        for (remote, ok) in failed.map(|r| (r, false)).chain(used.map(|r| (r, true))) {
            let node = self.remotes.entry(format!("{name}/{remote}")).or_insert_with(|| RemoteNode {
                repo: name.to_owned(),
                name: remote.clone(),
                ..RemoteNode::default()
            });
            if ok {
                node.fetches += 1;
            } else {
                node.failures += 1;
            }
            self.edges.insert(Edge {
                from: format!("repo:{name}"),
                to: format!("remote:{name}/{remote}"),
                kind: "uses-remote".into(),
            });
        }
    }

    fn planned(&mut self, tick: &str, plan: step::Plan) {
        let hash = plan.decision_hash.text().unwrap_or_default();
        for step::Lenient(decision) in plan.decisions.0 {
            let Some(name) = decision.repo.text() else { continue };
            let depends_on: Vec<String> = decision.depends_on.0.iter().filter_map(step::Scalar::text).collect();
            let repo = self.repos.entry(name.clone()).or_default();
            for old in std::mem::take(&mut repo.depends_on) {
                self.edges.remove(&Edge::depends_on(&name, &old));
            }
            repo.depends_on = depends_on.clone();
            repo.last_decision = Some(DecisionNode {
                tick: tick.to_owned(),
                recommendation: decision.recommendation.text().unwrap_or_default(),
                risk: decision.risk.count(),
                reason_code: decision.reason_code.text().unwrap_or_default(),
                decision_hash: hash.clone(),
            });
            for dep in depends_on {
                self.edges.insert(Edge::depends_on(&name, &dep));
            }
        }
    }
}

impl Edge {
    fn holds_lease(holder_tick: &str, key: &str) -> Edge {
        Edge { from: format!("tick:{holder_tick}"), to: format!("lease:{key}"), kind: "holds-lease".into() }
    }

    fn depends_on(repo: &str, dep: &str) -> Edge {
        Edge { from: format!("repo:{repo}"), to: format!("repo:{dep}"), kind: "depends-on".into() }
    }
}

#[cfg(test)]
mod tests;
