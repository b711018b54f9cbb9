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

use crate::ledger::{EventKind, HermesEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl GraphSnapshot {
    /// Folds one event in. Events must come in ledger order.
    pub fn apply(&mut self, event: &HermesEvent) {
        self.seq = event.seq;
        self.hash.clone_from(&event.hash);
        self.counters.events += 1;
        let payload = &event.payload;
        let Some(kind) = EventKind::parse(&event.kind) else { return };
        self.count(kind, payload);
        match kind {
            EventKind::CycleStarted => {
                self.last_tick = Some(TickNode {
                    tick: event.tick.clone(),
                    started_seq: event.seq,
                    started_at: event.time.clone(),
                    finished_at: None,
                    decision_hash: None,
                    counts: BTreeMap::new(),
                });
                self.integrity = None;
            }
            EventKind::CycleFinished => {
                if let Some(tick) = self.last_tick.as_mut().filter(|t| t.tick == event.tick) {
                    tick.finished_at = Some(event.time.clone());
                    tick.decision_hash = text(payload, "decision_hash");
                    tick.counts = serde_json::from_value(payload["counts"].clone()).unwrap_or_default();
                }
            }
            EventKind::CycleSkipped => self.skipped_ticks += 1,
            EventKind::RepoProbed => self.probed(&event.subject, &payload["probe"]),
            EventKind::PlanMade => self.planned(&event.tick, payload),
            EventKind::RepoUpgraded | EventKind::RepoDeferred | EventKind::RepoBlocked | EventKind::RepoNoop => {
                let repo = self.repos.entry(event.subject.clone()).or_default();
                if let Some(head) = text(payload, "head_after") {
                    repo.head = Some(head);
                }
                repo.last_outcome = Some(OutcomeNode {
                    tick: event.tick.clone(),
                    seq: event.seq,
                    outcome: text(payload, "outcome").unwrap_or_default(),
                    reason_code: text(payload, "reason_code").unwrap_or_default(),
                    reason: text(payload, "reason").unwrap_or_default(),
                });
            }
            EventKind::RolledBack => {
                let repo = self.repos.entry(event.subject.clone()).or_default();
                if payload["ok"] == Value::Bool(true) {
                    repo.head = text(payload, "to");
                    repo.rollbacks += 1;
                }
            }
            EventKind::LeaseGranted | EventKind::LeaseTakeover | EventKind::LeaseRenewed => {
                let lease = &payload["lease"];
                if let Some(key) = text(lease, "key") {
                    let node = LeaseNode {
                        key: key.clone(),
                        holder_tick: text(&lease["holder"], "tick").unwrap_or_default(),
                        fencing_token: number(lease, "fencing_token"),
                        expires_at: text(lease, "expires_at").unwrap_or_default(),
                    };
                    self.edges.insert(Edge {
                        from: format!("tick:{}", node.holder_tick),
                        to: format!("lease:{key}"),
                        kind: "holds-lease".into(),
                    });
                    // A takeover or renewal replaces the lease (and its holder's edge).
                    if let Some(old) = self.leases.insert(key.clone(), node)
                        && old.holder_tick != self.leases[&key].holder_tick
                    {
                        self.edges.remove(&Edge {
                            from: format!("tick:{}", old.holder_tick),
                            to: format!("lease:{key}"),
                            kind: "holds-lease".into(),
                        });
                    }
                }
            }
            EventKind::LeaseReleased => {
                let token = number(payload, "fencing_token");
                if self.leases.get(&event.subject).is_some_and(|l| l.fencing_token == token)
                    && let Some(lease) = self.leases.remove(&event.subject)
                {
                    self.edges.remove(&Edge {
                        from: format!("tick:{}", lease.holder_tick),
                        to: format!("lease:{}", lease.key),
                        kind: "holds-lease".into(),
                    });
                }
            }
            EventKind::RemoteHealthChanged => {
                let remote = text(payload, "remote").unwrap_or_else(|| event.subject.clone());
                let key = format!("{}/{remote}", event.subject);
                let node = self.remotes.entry(key).or_insert_with(|| RemoteNode {
                    repo: event.subject.clone(),
                    name: remote,
                    ..RemoteNode::default()
                });
                node.health = Some(payload.clone());
            }
            EventKind::GateChecked => {
                let integrity = self.integrity.get_or_insert_with(|| IntegrityNode {
                    tick: event.tick.clone(),
                    ok: true,
                    failed: Vec::new(),
                    checks: 0,
                });
                integrity.checks += 1;
                if payload["ok"] == Value::Bool(false) {
                    integrity.ok = false;
                    integrity.failed.push(event.subject.clone());
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, kind: EventKind, payload: &Value) {
        let c = &mut self.counters;
        match kind {
            EventKind::CycleStarted => c.cycles += 1,
            EventKind::RepoUpgraded | EventKind::RepoDeferred | EventKind::RepoBlocked | EventKind::RepoNoop => {
                let outcome =
                    text(payload, "outcome").unwrap_or_else(|| kind.as_str().trim_start_matches("repo-").into());
                *c.outcomes.entry(outcome).or_insert(0) += 1;
            }
            EventKind::RolledBack if payload["ok"] == Value::Bool(true) => c.rollbacks += 1,
            EventKind::RolledBack => c.rollbacks_failed += 1,
            EventKind::PluginCalled => {
                let plugin = text(payload, "kind").unwrap_or_default();
                let outcome = text(payload, "outcome").unwrap_or_default();
                *c.plugin_calls.entry(format!("{plugin}/{outcome}")).or_insert(0) += 1;
                *c.plugin_fuel.entry(plugin).or_insert(0) += number(payload, "fuel_used");
            }
            EventKind::LeaseConflict => c.lease_conflicts += 1,
            EventKind::LeaseTakeover => c.lease_takeovers += 1,
            EventKind::FenceRejected => c.fence_rejections += 1,
            EventKind::IntegrityFailed => c.integrity_failures += 1,
            _ => {}
        }
    }

    fn probed(&mut self, name: &str, probe: &Value) {
        let repo = self.repos.entry(name.to_owned()).or_default();
        repo.branch = text(probe, "branch").or(repo.branch.take());
        repo.head = text(probe, "head").or(repo.head.take());
        repo.upstream_head = text(probe, "upstream_head");
        repo.ahead = number(probe, "ahead");
        repo.behind = number(probe, "behind");
        repo.remote = text(probe, "remote");
        let failed: Vec<String> = probe["failed_over"]
            .as_array()
            .map(|f| f.iter().filter_map(|r| text(r, "remote").or_else(|| r.as_str().map(str::to_owned))).collect())
            .unwrap_or_default();
        let used = repo.remote.clone();
        for (remote, ok) in failed.into_iter().map(|r| (r, false)).chain(used.map(|r| (r, true))) {
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

    fn planned(&mut self, tick: &str, plan: &Value) {
        let hash = text(plan, "decision_hash").unwrap_or_default();
        for decision in plan["decisions"].as_array().into_iter().flatten() {
            let Some(name) = text(decision, "repo") else { continue };
            let depends_on: Vec<String> = decision["depends_on"]
                .as_array()
                .map(|d| d.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let repo = self.repos.entry(name.clone()).or_default();
            for old in std::mem::take(&mut repo.depends_on) {
                self.edges.remove(&Edge {
                    from: format!("repo:{name}"),
                    to: format!("repo:{old}"),
                    kind: "depends-on".into(),
                });
            }
            repo.depends_on = depends_on.clone();
            repo.last_decision = Some(DecisionNode {
                tick: tick.to_owned(),
                recommendation: text(decision, "recommendation").unwrap_or_default(),
                risk: decision.get("risk").and_then(Value::as_u64),
                reason_code: text(decision, "reason_code").unwrap_or_default(),
                decision_hash: hash.clone(),
            });
            for dep in depends_on {
                self.edges.insert(Edge {
                    from: format!("repo:{name}"),
                    to: format!("repo:{dep}"),
                    kind: "depends-on".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
