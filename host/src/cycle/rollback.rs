//! Rollback intelligence: the rollback plans recorded before each apply and
//! the rollbacks carried out, folded from the ledger's `rollback-planned`
//! and `rolled-back` events.
//!
//! Persisted as `state/rollback_intelligence.json` (data: [`RollbackIntelligence`]):
//!
//! ```json
//! { "plans": { "api": { "tick": "…", "seq": 31, "branch": "main",
//!                       "previous_head": "…", "target": "…", "steps": ["…"] } },
//!   "rollbacks": [ { "repo": "api", "tick": "…", "seq": 40, "from": "…", "to": "…", "ok": true } ],
//!   "plans_recorded": 12, "rollbacks_ok": 1, "rollbacks_failed": 0 }
//! ```
//!
//! `plans` keeps the latest plan per repository; `rollbacks` the latest
//! [`KEPT_ROLLBACKS`], oldest first.

use crate::ledger::{self, EventKind, HermesEvent, LedgerError};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
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
}

impl RollbackIntelligence {
    /// Folds one event in; other kinds are ignored.
    pub fn apply(&mut self, event: &HermesEvent) {
        let mut entry = event.payload.clone();
        if let Value::Object(map) = &mut entry {
            map.insert("tick".into(), Value::String(event.tick.clone()));
            map.insert("seq".into(), Value::from(event.seq));
        }
        if event.kind == EventKind::RollbackPlanned.as_str() {
            self.plans_recorded += 1;
            self.plans.insert(event.subject.clone(), entry);
        } else if event.kind == EventKind::RolledBack.as_str() {
            if event.payload.get("ok") == Some(&Value::Bool(true)) {
                self.rollbacks_ok += 1;
            } else {
                self.rollbacks_failed += 1;
            }
            if let Value::Object(map) = &mut entry {
                map.insert("repo".into(), Value::String(event.subject.clone()));
            }
            self.rollbacks.push(entry);
            if self.rollbacks.len() > KEPT_ROLLBACKS {
                self.rollbacks.remove(0);
            }
        }
    }

    /// The view if it reflects `head`, else a fold of the whole ledger.
    pub fn load(store: &StateStore, head: &LedgerHead) -> Result<Self, LedgerError> {
        if let Ok(Some(envelope)) = store.read::<Self>(ViewName::RollbackIntelligence) {
            if &envelope.ledger_head == head {
                return Ok(envelope.data);
            }
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
