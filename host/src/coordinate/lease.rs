//! Leases with fencing tokens, persisted in `state/coordination_leases.json`
//! and read-modify-written under `state/.coordination.lock` (see the module
//! docs of [`crate::coordinate`] for the rules and the format).

use super::CoordError;
use crate::failpoint;
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use cap_std::fs::OpenOptions;
use chrono::{DateTime, Datelike, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Lock file inside `state/` held (exclusively) for each lease operation.
pub const LOCK_FILE: &str = ".coordination.lock";
/// Longest lease TTL [`LeaseManager::new`] accepts: 7 days.
pub const MAX_LEASE_TTL_SECS: u64 = 7 * 24 * 3600;
/// Longest lock delay [`LeaseManager::new`] accepts: 1 hour.
pub const MAX_LOCK_DELAY_SECS: u64 = 3600;

const VIEW: ViewName = ViewName::CoordinationLeases;

/// Who holds a lease: one tick of one process on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Tick id of the cycle that holds the lease.
    pub tick: String,
}

/// One lease on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The leased key (a repository name).
    pub key: String,
    /// The holder.
    pub holder: Holder,
    /// When this holder was granted the lease (RFC 3339 UTC).
    pub acquired_at: String,
    /// When it was last granted or renewed (RFC 3339 UTC).
    pub renewed_at: String,
    /// When it expires unless renewed (RFC 3339 UTC); active while
    /// `now < expires_at`.
    pub expires_at: String,
    /// TTL of the last grant or renewal, in seconds.
    pub ttl_secs: u64,
    /// Holder changes of this key while leased: 1 for a grant of a free key,
    /// plus 1 per takeover.
    pub transitions: u64,
    /// Fencing token of this grant; greater than every earlier token.
    pub fencing_token: u64,
}

/// The persisted table: the `data` of the `coordination_leases` view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseTable {
    /// Leases by key, active and expired (released ones are removed).
    pub leases: BTreeMap<String, Lease>,
    /// The last fencing token handed out (0: none yet).
    pub fencing_high_water: u64,
}

impl LeaseTable {
    /// Checks what the types cannot: keys match, times parse, tokens are in
    /// `1..=fencing_high_water` and unique.
    fn validate(&self) -> Result<(), String> {
        let mut tokens = BTreeSet::new();
        for (key, lease) in &self.leases {
            if &lease.key != key {
                return Err(format!("lease under key {key:?} says its key is {:?}", lease.key));
            }
            for (field, value) in [
                ("acquired_at", &lease.acquired_at),
                ("renewed_at", &lease.renewed_at),
                ("expires_at", &lease.expires_at),
            ] {
                parse_time(value)
                    .map_err(|e| format!("lease {key:?}: {field} {value:?} is not an RFC 3339 time: {e}"))?;
            }
            let token = lease.fencing_token;
            if token == 0 || token > self.fencing_high_water {
                return Err(format!(
                    "lease {key:?} has fencing token {token}; expected 1 to the fencing high-water mark {}",
                    self.fencing_high_water
                ));
            }
            if !tokens.insert(token) {
                return Err(format!("fencing token {token} is used by more than one lease (again by {key:?})"));
            }
        }
        Ok(())
    }
}

/// Outcome of [`LeaseManager::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// A new lease with a new fencing token (record `lease-granted`, or
    /// `lease-takeover` when `takeover_of` is set).
    Granted {
        lease: Lease,
        /// The expired lease of another holder this grant replaced.
        takeover_of: Option<Lease>,
    },
    /// The caller already held the active lease; it was renewed and keeps
    /// its token (record `lease-renewed`).
    Renewed { lease: Lease },
    /// Another holder's lease is active, or expired less than the lock delay
    /// ago (record `lease-conflict`).
    Conflict { held_by: Lease },
}

/// Lease operations of one [`Holder`] on one state directory.
///
/// Every operation takes the lock on [`LOCK_FILE`], reads the table, and
/// (when it changes it) writes it back atomically before unlocking. Any
/// number of managers, in any processes or threads, may share a state
/// directory. `now` is always a parameter; nothing here reads the clock.
///
/// Mutating calls take the current ledger head and store it in the view's
/// envelope, so the integrity gate can compare it with the ledger.
#[derive(Debug)]
pub struct LeaseManager<'s> {
    store: &'s StateStore,
    holder: Holder,
    ttl_secs: u64,
    lock_delay_secs: u64,
}

impl<'s> LeaseManager<'s> {
    /// A manager for `holder`. `ttl` (1 second to [`MAX_LEASE_TTL_SECS`])
    /// and `lock_delay` (0 to [`MAX_LOCK_DELAY_SECS`]) are used in whole
    /// seconds; fractions are rejected.
    pub fn new(store: &'s StateStore, holder: Holder, ttl: Duration, lock_delay: Duration) -> Result<Self, CoordError> {
        let ttl_secs = whole_secs("ttl", ttl, 1, MAX_LEASE_TTL_SECS)?;
        let lock_delay_secs = whole_secs("lock_delay", lock_delay, 0, MAX_LOCK_DELAY_SECS)?;
        Ok(Self { store, holder, ttl_secs, lock_delay_secs })
    }

    /// The holder this manager acts for.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Acquires (or renews) the lease on `key`; see [`Acquire`]. Writes the
    /// table unless the outcome is a conflict.
    pub fn acquire(&self, key: &str, now: DateTime<Utc>, ledger_head: &LedgerHead) -> Result<Acquire, CoordError> {
        let mut batch = self.batch(now, ledger_head)?;
        let outcome = batch.acquire(key)?;
        batch.commit()?;
        Ok(outcome)
    }

    /// Extends the caller's active lease on `key` by the TTL from `now`,
    /// keeping its token. Like [`Self::check_fence`] it fails with
    /// [`CoordError::StaleFence`] unless `token` is the token of the caller's
    /// active lease: an expired lease is not revived, and a lease taken over
    /// stays with its new holder. The cycle renews before each branch move.
    pub fn renew(
        &self,
        key: &str,
        token: u64,
        now: DateTime<Utc>,
        ledger_head: &LedgerHead,
    ) -> Result<Lease, CoordError> {
        let mut batch = self.batch(now, ledger_head)?;
        let renewed = batch.renew(key, token)?;
        batch.commit()?;
        Ok(renewed)
    }

    /// Releases the caller's active lease on `key`; returns it as it was.
    pub fn release(
        &self,
        key: &str,
        token: u64,
        now: DateTime<Utc>,
        ledger_head: &LedgerHead,
    ) -> Result<Lease, CoordError> {
        let mut batch = self.batch(now, ledger_head)?;
        let released = batch.release(key, token)?;
        batch.commit()?;
        Ok(released)
    }

    /// Several operations at `now` under one lock, one read of the table
    /// and (at [`LeaseBatch::commit`]) one write: a cycle takes, renews and
    /// releases the leases of all its upgrades this way, so its cost does
    /// not grow with the square of the repositories. Dropped without a
    /// commit, nothing is written.
    pub fn batch(&self, now: DateTime<Utc>, ledger_head: &LedgerHead) -> Result<LeaseBatch<'_, 's>, CoordError> {
        let lock = self.lock()?;
        let table = self.load()?;
        Ok(LeaseBatch { manager: self, _lock: lock, table, now, head: ledger_head.clone(), written: None })
    }

    /// Succeeds if `token` is the token of the caller's active lease on
    /// `key`; call it before every mutation the lease guards.
    pub fn check_fence(&self, key: &str, token: u64, now: DateTime<Utc>) -> Result<(), CoordError> {
        let _lock = self.lock()?;
        let table = self.load()?;
        self.fence(&table, key, token, now)
    }

    /// The active leases at `now` (of every holder), sorted by key.
    pub fn active(&self, now: DateTime<Utc>) -> Result<Vec<Lease>, CoordError> {
        let _lock = self.lock()?;
        let table = self.load()?;
        let mut active = Vec::new();
        for lease in table.leases.into_values() {
            if now < self.expiry(&lease)? {
                active.push(lease);
            }
        }
        Ok(active)
    }

    /// The whole table as persisted (expired leases included), for views.
    pub fn snapshot(&self) -> Result<LeaseTable, CoordError> {
        let _lock = self.lock()?;
        self.load()
    }

    /// A new lease for this holder with the next fencing token.
    fn grant(
        &self,
        table: &mut LeaseTable,
        key: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
        transitions: u64,
    ) -> Result<Lease, CoordError> {
        let token = table
            .fencing_high_water
            .checked_add(1)
            .ok_or_else(|| self.corrupt("the fencing high-water mark is exhausted".into()))?;
        table.fencing_high_water = token;
        Ok(Lease {
            key: key.to_owned(),
            holder: self.holder.clone(),
            acquired_at: stamp(now),
            renewed_at: stamp(now),
            expires_at: stamp(expires),
            ttl_secs: self.ttl_secs,
            transitions,
            fencing_token: token,
        })
    }

    fn extend(&self, lease: &mut Lease, now: DateTime<Utc>, expires: DateTime<Utc>) {
        lease.renewed_at = stamp(now);
        lease.expires_at = stamp(expires);
        lease.ttl_secs = self.ttl_secs;
    }

    /// The fencing rule shared by renew, release and check_fence.
    fn fence(&self, table: &LeaseTable, key: &str, token: u64, now: DateTime<Utc>) -> Result<(), CoordError> {
        let active = match table.leases.get(key) {
            Some(lease) if now < self.expiry(lease)? => Some(lease),
            _ => None,
        };
        match active {
            Some(lease) if lease.fencing_token == token && lease.holder == self.holder => Ok(()),
            _ => Err(CoordError::StaleFence {
                key: key.to_owned(),
                presented: token,
                current: active.map(|lease| lease.fencing_token),
            }),
        }
    }

    fn expiry(&self, lease: &Lease) -> Result<DateTime<Utc>, CoordError> {
        parse_time(&lease.expires_at).map_err(|e| self.corrupt(format!("lease {:?}: expires_at: {e}", lease.key)))
    }

    fn corrupt(&self, detail: String) -> CoordError {
        CoordError::State(StateError::Corrupt { path: self.store.path_of(VIEW.file_name()), detail })
    }

    fn lock(&self) -> Result<std::fs::File, CoordError> {
        let path = self.store.path_of(LOCK_FILE);
        let lock_err = |source| CoordError::Lock { path: path.clone(), source };
        let file = self
            .store
            .dir()
            .open_with(LOCK_FILE, OpenOptions::new().write(true).create(true).truncate(false))
            .map_err(lock_err)?
            .into_std();
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::debug!(lock = %path.display(), "another lease operation is running; waiting for it");
                file.lock().map_err(lock_err)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        Ok(file)
    }

    fn load(&self) -> Result<LeaseTable, CoordError> {
        let table = self.store.read::<LeaseTable>(VIEW)?.map(|envelope| envelope.data).unwrap_or_default();
        table.validate().map_err(|detail| self.corrupt(detail))?;
        Ok(table)
    }

    fn save(&self, table: &LeaseTable, now: DateTime<Utc>, ledger_head: &LedgerHead) -> Result<(), CoordError> {
        Ok(self.store.write(VIEW, &stamp(now), ledger_head, table)?)
    }
}

/// Lease operations under one lock, written once; see [`LeaseManager::batch`].
pub struct LeaseBatch<'m, 's> {
    manager: &'m LeaseManager<'s>,
    _lock: std::fs::File,
    table: LeaseTable,
    now: DateTime<Utc>,
    head: LedgerHead,
    /// The failpoint of the last change, when something changed.
    written: Option<&'static str>,
}

impl LeaseBatch<'_, '_> {
    /// [`LeaseManager::acquire`] within the batch.
    pub fn acquire(&mut self, key: &str) -> Result<Acquire, CoordError> {
        let m = self.manager;
        let now = self.now;
        let table = &mut self.table;
        let expires = add_secs(now, m.ttl_secs)?;
        let outcome = match table.leases.get(key) {
            None => Acquire::Granted { lease: m.grant(table, key, now, expires, 1)?, takeover_of: None },
            Some(current) => {
                let current_expiry = m.expiry(current)?;
                let mine = current.holder == m.holder;
                if now < current_expiry {
                    if !mine {
                        return Ok(Acquire::Conflict { held_by: current.clone() });
                    }
                    let mut lease = current.clone();
                    m.extend(&mut lease, now, expires);
                    Acquire::Renewed { lease }
                } else if mine {
                    let transitions = current.transitions;
                    Acquire::Granted { lease: m.grant(table, key, now, expires, transitions)?, takeover_of: None }
                } else if now < add_secs(current_expiry, m.lock_delay_secs)? {
                    return Ok(Acquire::Conflict { held_by: current.clone() });
                } else {
                    let previous = current.clone();
                    let lease = m.grant(table, key, now, expires, previous.transitions.saturating_add(1))?;
                    Acquire::Granted { lease, takeover_of: Some(previous) }
                }
            }
        };
        if let Acquire::Granted { lease, .. } | Acquire::Renewed { lease } = &outcome {
            table.leases.insert(key.to_owned(), lease.clone());
            self.written = Some(failpoint::LEASE_ACQUIRE_AFTER_WRITE);
        }
        Ok(outcome)
    }

    /// [`LeaseManager::renew`] within the batch.
    pub fn renew(&mut self, key: &str, token: u64) -> Result<Lease, CoordError> {
        let m = self.manager;
        m.fence(&self.table, key, token, self.now)?;
        let expires = add_secs(self.now, m.ttl_secs)?;
        let lease = self.table.leases.get_mut(key).expect("fence checked the lease exists");
        m.extend(lease, self.now, expires);
        self.written = Some(failpoint::LEASE_RENEW_AFTER_WRITE);
        Ok(lease.clone())
    }

    /// [`LeaseManager::release`] within the batch.
    pub fn release(&mut self, key: &str, token: u64) -> Result<Lease, CoordError> {
        self.manager.fence(&self.table, key, token, self.now)?;
        self.written = Some(failpoint::LEASE_RELEASE_AFTER_WRITE);
        Ok(self.table.leases.remove(key).expect("fence checked the lease exists"))
    }

    /// Writes the table if anything changed, then releases the lock.
    pub fn commit(self) -> Result<(), CoordError> {
        if let Some(point) = self.written {
            self.manager.save(&self.table, self.now, &self.head)?;
            failpoint::hit(point);
        }
        Ok(())
    }
}

fn whole_secs(setting: &'static str, value: Duration, min: u64, max: u64) -> Result<u64, CoordError> {
    let secs = value.as_secs();
    if value.subsec_nanos() != 0 || !(min..=max).contains(&secs) {
        return Err(CoordError::InvalidSetting {
            setting,
            problem: format!("{value:?}; expected whole seconds from {min} to {max}"),
        });
    }
    Ok(secs)
}

/// `t + secs`, refusing results RFC 3339 cannot store (and so could not be
/// read back).
fn add_secs(t: DateTime<Utc>, secs: u64) -> Result<DateTime<Utc>, CoordError> {
    let out_of_range = || CoordError::TimeOutOfRange { now: t.to_rfc3339(), secs };
    let sum = i64::try_from(secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|delta| t.checked_add_signed(delta))
        .ok_or_else(out_of_range)?;
    if !(1..=9999).contains(&t.year()) || !(1..=9999).contains(&sum.year()) {
        return Err(out_of_range());
    }
    Ok(sum)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}
