//! AgentCoordinator: leases with fencing tokens and per-remote budgets
//! (single host; persisted in `state/coordination_leases.json`).
//!
//! This module owns:
//!
//! - the lease table, the
//!   [`CoordinationLeases`](crate::state::ViewName::CoordinationLeases) view
//!   (`state/coordination_leases.json`), and its lock file
//!   `state/.coordination.lock` ([`LOCK_FILE`]);
//! - [`LeaseManager`]: acquire, renew, release and fence-check leases, each a
//!   read-modify-write of the table under an exclusive OS file lock, so any
//!   number of processes (and threads) on this host see one serial history;
//! - [`RemoteBudget`]: in-memory caps on concurrent use of one remote, shared
//!   by the parallel lanes of one process;
//! - [`CoordinationPolicy`]: the `coordination` settings of the policy.
//!
//! It does not append ledger events: every operation returns what happened
//! ([`Acquire`], the renewed or released [`Lease`], [`CoordError::StaleFence`])
//! and the caller records the matching `lease-*` / `fence-rejected` event.
//!
//! # Rules
//!
//! - One lease per key (a repository name). A lease is *active* while
//!   `now < expires_at`.
//! - An active lease of another holder wins: [`Acquire::Conflict`].
//! - The holder of an active lease acquiring it again renews it
//!   ([`Acquire::Renewed`], same fencing token).
//! - An expired lease of another holder may be taken over once
//!   `now >= expires_at + lock_delay` (before that: a conflict). The takeover
//!   is reported in the `takeover_of` of [`Acquire::Granted`]. A holder may re-acquire
//!   its own expired lease at once (a new grant, no takeover).
//! - Every grant and takeover gets a new fencing token, one more than the
//!   persisted `fencing_high_water`. Tokens only grow and are never reused,
//!   also across releases and restarts.
//! - [`LeaseManager::renew`], [`LeaseManager::release`] and
//!   [`LeaseManager::check_fence`] succeed only for the token of an active
//!   lease held by the caller's [`Holder`]; anything else is
//!   [`CoordError::StaleFence`] and the stale holder must stop.
//! - `transitions` counts the holder changes of a key while it is leased: 1
//!   for a grant of a free key, plus 1 for each takeover. A release frees the
//!   key (its entry is removed) and ends the count.
//!
//! # On-disk format
//!
//! `state/coordination_leases.json` is a state view (see [`crate::state`]):
//! the envelope's `data` is a [`LeaseTable`]. Times are RFC 3339 UTC with
//! millisecond precision (truncated, so a stored expiry is never later than
//! the computed one). Expired leases stay in the table until they are taken
//! over or re-acquired; released leases are removed. `ledger_head` is the
//! ledger head the caller passed to the mutating call: the last event before
//! the one that will record this change.
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "view": "coordination_leases",
//!   "written_at": "2026-03-01T12:00:05.000Z",
//!   "ledger_head": { "seq": 42, "hash": "9f2c…" },
//!   "data": {
//!     "leases": {
//!       "api": {
//!         "key": "api",
//!         "holder": { "host": "build-01", "pid": 4242, "tick": "20260301T120000Z-4242" },
//!         "acquired_at": "2026-03-01T12:00:05.000Z",
//!         "renewed_at": "2026-03-01T12:00:05.000Z",
//!         "expires_at": "2026-03-01T12:15:05.000Z",
//!         "ttl_secs": 900,
//!         "transitions": 1,
//!         "fencing_token": 7
//!       }
//!     },
//!     "fencing_high_water": 7
//!   }
//! }
//! ```
//!
//! A view that does not parse, or whose table is inconsistent (a map key that
//! differs from its lease's `key`, an unparsable time, a token of 0, above
//! `fencing_high_water` or used twice), is reported as
//! [`StateError::Corrupt`] inside [`CoordError::State`] and never
//! overwritten; a missing view is an empty table.

mod budget;
mod lease;

pub use budget::{CoordinationPolicy, RemoteBudget};
pub use lease::{Acquire, Holder, LOCK_FILE, Lease, LeaseManager, LeaseTable, MAX_LEASE_TTL_SECS, MAX_LOCK_DELAY_SECS};

use crate::state::StateError;
use std::io;
use std::path::PathBuf;

/// Errors of the coordination layer.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    /// The lease view could not be read or written, is corrupt, or is from a
    /// newer Hermes (the error names the file).
    #[error(transparent)]
    State(#[from] StateError),
    /// `presented` is not the token of an active lease of `key` held by the
    /// caller; `current` is the token of the key's active lease, if any.
    #[error(
        "fencing token {presented} for lease {key:?} is stale: {}",
        match current {
            Some(token) => format!("the active lease has token {token}"),
            None => "the key has no active lease".to_owned(),
        }
    )]
    StaleFence { key: String, presented: u64, current: Option<u64> },
    /// A TTL or lock delay outside its allowed range.
    #[error("invalid coordination setting {setting}: {problem}")]
    InvalidSetting { setting: &'static str, problem: String },
    /// `now` (plus a TTL or lock delay) is outside the years 1 to 9999, which
    /// RFC 3339 can store.
    #[error("time {now} plus {secs} seconds is outside the years 1 to 9999")]
    TimeOutOfRange { now: String, secs: u64 },
}

#[cfg(test)]
mod tests;
