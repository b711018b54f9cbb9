//! Replay: the ledger as the one source of truth, checked against what was
//! derived from it.
//!
//! Two read-only operations, both behind `hermes replay`:
//!
//! - [`views::replay_state`] verifies the hash chain, folds the ledger into
//!   every view that can be derived from it, writes those views with the
//!   production writers into a scratch directory, and compares each with the
//!   file in `state/` (`written_at` ignored). It also recomputes the
//!   `decision_hash` of every recorded plan from its recorded decisions, and
//!   checks the hash each outcome and `cycle-finished` event carries.
//! - [`plugin::replay_plugin`] re-runs every recorded `plugin-called` input of
//!   one kind against another component (the production engine, the
//!   policy's limits, one fresh instance per call through
//!   [`crate::plugin::call::invoke`]) and re-plans each recorded cycle with
//!   the new outputs in place of the recorded ones.
//!
//! Neither writes to `state/` or touches a repository. Both stop at the first
//! event that does not verify: nothing past it is replayed.

pub mod plugin;
pub mod views;

use crate::ledger::{self, HermesEvent, LedgerError, Scan};
use crate::state::{StateError, StateStore};
use std::io::BufReader;
use std::path::Path;

/// Errors that stop a replay before it can report.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// There is no `state/` directory (or it cannot be opened).
    #[error("no state directory at {0}")]
    NoState(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The scratch or output directory cannot be used.
    #[error("{0}")]
    Scratch(String),
    /// The component to replay against cannot be read, loaded, or is of
    /// another kind.
    #[error("{0}")]
    Component(String),
}

/// Opens `state_dir` without creating it.
pub(crate) fn open_state(state_dir: &Path) -> Result<StateStore, ReplayError> {
    if !state_dir.is_dir() {
        return Err(ReplayError::NoState(state_dir.display().to_string()));
    }
    Ok(StateStore::open(state_dir)?)
}

/// Scans the ledger of `store` (a missing ledger is empty), calling `visit`
/// on every verified event in order. The first line that does not verify
/// ends the scan with [`LedgerError::Broken`]; `visit` has then seen
/// exactly the events before it.
pub(crate) fn scan_ledger(store: &StateStore, visit: impl FnMut(&HermesEvent)) -> Result<Scan, LedgerError> {
    let path = store.path_of(ledger::LEDGER_FILE);
    match store.dir().open(ledger::LEDGER_FILE) {
        Ok(file) => ledger::scan(BufReader::new(file), &path, visit),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Scan::empty()),
        Err(source) => Err(LedgerError::Io { path, source }),
    }
}

/// Size of the ledger file now (0 when missing), to notice a cycle that
/// appended while a replay was reading.
pub(crate) fn ledger_len(store: &StateStore) -> u64 {
    store.dir().metadata(ledger::LEDGER_FILE).map(|m| m.len()).unwrap_or(0)
}
