//! Rollback intelligence: the rollback plans recorded before each apply and
//! the rollbacks carried out, folded from the ledger's `rollback-planned`,
//! `rolled-back`, outcome (`repo-upgraded`, `apply-failed`, …) and
//! `apply-recovered` events.
//!
//! Persisted as `state/rollback_intelligence.json` (data: [`RollbackIntelligence`]):
//!
//! ```json
//! { "plans": { "api": { "tick": "…", "seq": 31, "branch": "main",
//!                       "previous_head": "…", "target": "…", "steps": ["…"] } },
//!   "rollbacks": [ { "repo": "api", "tick": "…", "seq": 40, "from": "…", "to": "…", "ok": true } ],
//!   "plans_recorded": 12, "rollbacks_ok": 1, "rollbacks_failed": 0,
//!   "unsettled": ["web"] }
//! ```
//!
//! `unsettled` names the repositories whose latest plan has no outcome yet:
//! the cycle that planned the apply was killed before it recorded one. The
//! next cycle inspects them first ([`super::recover`]); its `apply-recovered`
//! event settles them. Views written before `unsettled` existed read as
//! having none.
//!
//! `plans` keeps the latest plan per repository; `rollbacks` the latest
//! [`KEPT_ROLLBACKS`], oldest first.

use crate::ledger::{self, EventKind, HermesEvent, LedgerError};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;

/// Rollbacks kept in the view.
pub const KEPT_ROLLBACKS: usize = 100;

/// The rollback view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackIntelligence {
    pub plans: BTreeMap<String, Value>,
    pub rollbacks: Vec<Value>,
    pub plans_recorded: u64,
    pub rollbacks_ok: u64,
    pub rollbacks_failed: u64,
    #[serde(default)]
    pub unsettled: BTreeSet<String>,
}

impl RollbackIntelligence {
    /// Folds one event in; other kinds are ignored.
    pub fn apply(&mut self, event: &HermesEvent) {
        // The payload with the event's tick and seq: what the view keeps.
        let entry = || {
            let mut entry = event.payload.clone();
            if let Value::Object(map) = &mut entry {
                map.insert("tick".into(), Value::String(event.tick.clone()));
                map.insert("seq".into(), Value::from(event.seq));
            }
            entry
        };
        let Some(kind) = EventKind::parse(&event.kind) else { return };
        if kind == EventKind::RollbackPlanned {
            self.plans_recorded += 1;
            self.plans.insert(event.subject.clone(), entry());
            self.unsettled.insert(event.subject.clone());
            return;
        }
        if kind == EventKind::ApplyRecovered || (settles(kind) && self.planned_in(&event.subject, &event.tick)) {
            self.unsettled.remove(&event.subject);
            return;
        }
        if kind == EventKind::RolledBack {
            if event.payload.get("ok") == Some(&Value::Bool(true)) {
                self.rollbacks_ok += 1;
            } else {
                self.rollbacks_failed += 1;
            }
            let mut entry = entry();
            if let Value::Object(map) = &mut entry {
                map.insert("repo".into(), Value::String(event.subject.clone()));
            }
            self.rollbacks.push(entry);
            if self.rollbacks.len() > KEPT_ROLLBACKS {
                self.rollbacks.remove(0);
            }
        }
    }

    /// Whether the latest plan of `repo` was made by `tick`.
    fn planned_in(&self, repo: &str, tick: &str) -> bool {
        self.plans.get(repo).and_then(|plan| plan.get("tick")).and_then(Value::as_str) == Some(tick)
    }

    /// Whether the cycle folds `kind` in when it writes the view at its end
    /// (plans and recoveries are folded in as they are recorded).
    pub fn folded_at_end(kind: &str) -> bool {
        EventKind::parse(kind).is_some_and(|kind| kind == EventKind::RolledBack || settles(kind))
    }

    /// The view if it reflects `head`, else a fold of the whole ledger.
    pub fn load(store: &StateStore, head: &LedgerHead) -> Result<Self, LedgerError> {
        if let Ok(Some(envelope)) = store.read::<Self>(ViewName::RollbackIntelligence)
            && &envelope.ledger_head == head
        {
            return Ok(envelope.data);
        }
        let path = store.path_of(ledger::LEDGER_FILE);
        let mut view = Self::default();
        match store.dir().open(ledger::LEDGER_FILE) {
            Ok(file) => {
                ledger::scan(BufReader::new(file), &path, |event| view.apply(event))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LedgerError::Io { path, source }),
        }
        Ok(view)
    }

    pub fn write(&self, store: &StateStore, written_at: &str, head: &LedgerHead) -> Result<(), StateError> {
        store.write(ViewName::RollbackIntelligence, written_at, head, self)
    }
}

/// Whether an event of `kind` is a repository's outcome, which settles the
/// plan its cycle made.
fn settles(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::RepoUpgraded
            | EventKind::RepoDeferred
            | EventKind::RepoBlocked
            | EventKind::RepoNoop
            | EventKind::ApplyFailed
    )
}
