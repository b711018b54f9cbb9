//! Finalize: fold the cycle's outcome events into the state views.
//!
//! Views written here (all in the [`crate::state`] envelope):
//! - `auto_safe_upgrade_state.json`: [`UpgradeState`], per-repository state
//!   folded from every outcome event in the ledger;
//! - `auto_safe_upgrade_summary.json`: the [`CycleReport`] of the last cycle;
//! - `auto_safe_upgrade_state_history.jsonl`: one [`HistoryLine`] per cycle.
//!
//! `auto_safe_upgrade_state.json` is a projection: when it is missing,
//! corrupt or behind the ledger head it is rebuilt by folding the ledger,
//! and the rebuild is recorded as a `state-view-rebuilt` event (a corrupt
//! file is kept as `<name>.corrupt-<seq>`).

use super::CycleReport;
use super::outcome::{Outcome, RepoOutcome};
use crate::ledger::{self, EventKind, EventLedger, HermesEvent, LedgerError};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::BufReader;

/// Per-repository upgrade state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub repos: BTreeMap<String, RepoState>,
}

/// What Hermes last did to one repository, and how often.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    /// HEAD after the last cycle that saw the repo.
    pub head: Option<String>,
    pub last_outcome: Option<Outcome>,
    pub last_reason_code: String,
    pub last_reason: String,
    pub last_tick: String,
    pub last_seq: u64,
    pub last_upgraded_tick: Option<String>,
    pub upgrades: u64,
    pub deferrals: u64,
    pub blocks: u64,
    pub failures: u64,
    pub noops: u64,
}

impl UpgradeState {
    /// Folds one ledger event in; events that record no outcome are ignored.
    pub fn apply(&mut self, event: &HermesEvent) {
        if Outcome::from_event_kind(&event.kind).is_none() {
            return;
        }
        let Ok(outcome) = RepoOutcome::deserialize(&event.payload) else {
            tracing::warn!(seq = event.seq, "outcome event with an unreadable payload; skipped in projection");
            return;
        };
        let state = self.repos.entry(outcome.repo.clone()).or_default();
        state.head = outcome.head_after.or(outcome.head_before).or(state.head.take());
        state.last_outcome = Some(outcome.outcome);
        state.last_reason_code = outcome.reason_code;
        state.last_reason = outcome.reason;
        state.last_tick = event.tick.clone();
        state.last_seq = event.seq;
        let counter = match outcome.outcome {
            Outcome::Upgraded => {
                state.last_upgraded_tick = Some(event.tick.clone());
                &mut state.upgrades
            }
            Outcome::Deferred => &mut state.deferrals,
            Outcome::Blocked => &mut state.blocks,
            Outcome::Failed => &mut state.failures,
            Outcome::Noop => &mut state.noops,
        };
        *counter += 1;
    }
}

/// One line of `auto_safe_upgrade_state_history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    pub tick: String,
    pub decision_hash: String,
    pub counts: BTreeMap<Outcome, u64>,
}

/// Errors of the finalize step.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Loads the upgrade state, rebuilding it from the ledger if the view is
/// missing, stale or corrupt. A view from a newer Hermes is an error.
pub fn load_upgrade_state(
    store: &StateStore,
    ledger: &mut EventLedger,
    tick: &str,
) -> Result<UpgradeState, FinalizeError> {
    let view = ViewName::UpgradeState;
    let mut reason = match store.read::<UpgradeState>(view) {
        Ok(Some(envelope)) if envelope.ledger_head == *ledger.head() => return Ok(envelope.data),
        Ok(Some(envelope)) => {
            ledger::check_view_head(ledger.path(), ledger.head().seq, view.file_name(), &envelope.ledger_head)?;
            json!({ "why": "stale", "view_seq": envelope.ledger_head.seq })
        }
        Ok(None) if ledger.head().seq == 0 => return Ok(UpgradeState::default()),
        Ok(None) => json!({ "why": "missing" }),
        Err(StateError::Corrupt { path, detail }) => quarantine(store, ledger, view, &path, detail)?,
        Err(e) => return Err(e.into()),
    };
    let state = rebuild(store, ledger)?;
    reason["view"] = json!(view.file_name());
    ledger.append(tick, EventKind::StateViewRebuilt, view.stem(), reason)?;
    Ok(state)
}

/// Views a cycle rewrites or appends to, besides the lease table (which is
/// never set aside: a corrupt one stops the cycle, so no lease is lost) and
/// the upgrade state (rebuilt by [`load_upgrade_state`]).
const REWRITTEN: [ViewName; 16] = [
    ViewName::GlobalOrchestrationPlan,
    ViewName::UpgradeSummary,
    ViewName::UpgradeStateHistory,
    ViewName::RemoteHealth,
    ViewName::RuntimeIntelligence,
    ViewName::RuntimeResourceState,
    ViewName::RuntimeResourceTelemetry,
    ViewName::AgentCoordinationState,
    ViewName::RuntimeConsensusState,
    ViewName::RuntimeTopologyGraph,
    ViewName::RemoteFederationState,
    ViewName::FederationTopologyState,
    ViewName::ControlPlaneIntegrity,
    ViewName::RollbackIntelligence,
    ViewName::LiveRuntimeControlPlane,
    ViewName::GraphCheckpoint,
];

/// Checks the views a cycle rewrites or appends to before it starts: one
/// from a newer Hermes stops the cycle; a corrupt one is kept aside (and the
/// fact recorded) so that the cycle writes a fresh one.
pub fn prepare_views(store: &StateStore, ledger: &mut EventLedger, tick: &str) -> Result<(), FinalizeError> {
    // Temp files of writers that died before their rename are garbage.
    let removed = crate::fsx::remove_stale_temps(store.dir())
        .map_err(|source| StateError::Write { path: store.path_of("."), source })?;
    if !removed.is_empty() {
        ledger.append(
            tick,
            EventKind::StateViewRebuilt,
            "state",
            json!({ "view": "temp files", "why": "stale-temp-files", "removed": removed }),
        )?;
    }
    for view in REWRITTEN {
        match store.check(view) {
            Ok(()) if !view.is_history() => {
                // A view that saw more of the ledger than the ledger holds
                // means events were cut from its end.
                if let Ok(Some(envelope)) = store.read::<serde_json::Value>(view) {
                    ledger::check_view_head(ledger.path(), ledger.head().seq, view.file_name(), &envelope.ledger_head)?;
                }
            }
            Ok(()) => {}
            Err(StateError::Corrupt { path, detail }) => {
                let mut payload = quarantine(store, ledger, view, &path, detail)?;
                payload["view"] = json!(view.file_name());
                ledger.append(tick, EventKind::StateViewRebuilt, view.stem(), payload)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Moves a corrupt view aside; returns the payload of the event recording it.
fn quarantine(
    store: &StateStore,
    ledger: &EventLedger,
    view: ViewName,
    path: &std::path::Path,
    detail: String,
) -> Result<serde_json::Value, FinalizeError> {
    let aside = store.quarantine(view, ledger.head().seq)?;
    tracing::warn!(path = %path.display(), %detail, aside, "state view is corrupt; kept aside and rebuilt");
    Ok(json!({ "why": "corrupt", "detail": detail, "kept_as": aside }))
}

/// Folds every outcome event of the ledger into a fresh [`UpgradeState`].
fn rebuild(store: &StateStore, ledger: &EventLedger) -> Result<UpgradeState, FinalizeError> {
    let mut state = UpgradeState::default();
    let file = store
        .dir()
        .open(ledger::LEDGER_FILE)
        .map_err(|source| LedgerError::Io { path: ledger.path().to_owned(), source })?;
    ledger::scan(BufReader::new(file), ledger.path(), |event| state.apply(event))?;
    Ok(state)
}

/// Writes the views of a finished cycle; `head` is the `cycle-finished` event.
pub fn write_views(
    store: &StateStore,
    state: &UpgradeState,
    report: &CycleReport,
    written_at: &str,
    head: &LedgerHead,
) -> Result<(), StateError> {
    store.write(ViewName::UpgradeState, written_at, head, state)?;
    store.write(ViewName::UpgradeSummary, written_at, head, report)?;
    let line =
        HistoryLine { tick: report.tick.clone(), decision_hash: report.decision_hash.clone(), counts: report.counts() };
    store.append_history(ViewName::UpgradeStateHistory, written_at, head, &line)
}
