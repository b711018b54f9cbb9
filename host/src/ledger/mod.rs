//! The event ledger: `state/runtime_events.jsonl`, the one source of truth.
//!
//! Format: one [`HermesEvent`] per line (see [`event`] for the hash chain),
//! each line terminated by `\n`. The file is only ever appended to.
//!
//! Writers ([`EventLedger::open`]) hold an exclusive lock on
//! `state/.ledger.lock` for their lifetime, so appends of two processes never
//! interleave. Each [`EventLedger::append`] is written with one `write` and
//! fsynced before it returns: once a step is reported done, its event is on
//! disk.
//!
//! A crash can leave a torn final line (bytes without the closing newline).
//! The first append after opening repairs it: a fragment that is a whole, correctly
//! chained event just gets its newline; anything else is cut off. Either way
//! a `ledger-repaired` event records the offset, length and SHA-256 of what
//! was found. Damage anywhere else (an edited, reordered, inserted or deleted
//! line) is never repaired: it is reported as [`LedgerError::Broken`] with the
//! first bad sequence number.

pub mod event;
mod scan;

pub use event::{EVENT_FORMAT_VERSION, EventKind, GENESIS_HASH, HermesEvent};
pub use scan::{Scan, TornTail, scan};

use crate::canonical;
use crate::clock::Clock;
use crate::state::LedgerHead;
use cap_std::fs::{Dir, File, OpenOptions};
use serde_json::{Value, json};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name of the ledger inside `state/`.
pub const LEDGER_FILE: &str = "runtime_events.jsonl";
const LOCK_FILE: &str = ".ledger.lock";

/// Errors opening, verifying or appending to the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot access ledger {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ledger {path} is broken at line {line}: first bad sequence number {first_bad_seq}: {problem}")]
    Broken { path: PathBuf, line: u64, first_bad_seq: u64, problem: String },
    #[error(
        "ledger {path} ends at sequence number {ledger_seq} but {view} records sequence number {view_seq}: first bad sequence number {}: events were removed from the end",
        ledger_seq + 1
    )]
    Truncated { path: PathBuf, ledger_seq: u64, view: String, view_seq: u64 },
    #[error(
        "ledger {path} holds events of format version {found}; this hermes writes version {supported} and will not append after a newer one"
    )]
    FutureVersion { path: PathBuf, found: u32, supported: u32 },
}

/// Verifies the ledger without changing it.
pub fn verify(state_dir: &Dir, state_path: &Path) -> Result<Scan, LedgerError> {
    let path = state_path.join(LEDGER_FILE);
    match state_dir.open(LEDGER_FILE) {
        Ok(file) => scan(BufReader::new(file), &path, |_| {}),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Scan::empty()),
        Err(source) => Err(LedgerError::Io { path, source }),
    }
}

/// Fails with [`LedgerError::Truncated`] when a view records a ledger
/// position beyond the ledger's last event: lines were cut from its end.
pub fn check_view_head(
    ledger_path: &Path,
    ledger_seq: u64,
    view: &str,
    view_head: &LedgerHead,
) -> Result<(), LedgerError> {
    if view_head.seq > ledger_seq {
        return Err(LedgerError::Truncated {
            path: ledger_path.to_owned(),
            ledger_seq,
            view: view.to_owned(),
            view_seq: view_head.seq,
        });
    }
    Ok(())
}

/// An open, locked ledger ready for appends.
#[derive(Debug)]
pub struct EventLedger {
    file: File,
    _lock: std::fs::File,
    path: PathBuf,
    head: LedgerHead,
    clock: Clock,
    /// A torn final line found on open, repaired before the next append.
    torn: Option<TornTail>,
    /// Events appended through this handle, in order.
    appended: Vec<HermesEvent>,
}

impl EventLedger {
    /// Locks and verifies the ledger, then opens it for appending. A torn
    /// final line is repaired (and the repair recorded) by the first append.
    pub fn open(state_dir: &Dir, state_path: &Path, clock: Clock) -> Result<Self, LedgerError> {
        let path = state_path.join(LEDGER_FILE);
        let io_err = |source| LedgerError::Io { path: path.clone(), source };
        let lock = state_dir
            .open_with(LOCK_FILE, OpenOptions::new().write(true).create(true).truncate(false))
            .map_err(io_err)?
            .into_std();
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!("another hermes process is writing the ledger; waiting for it");
                lock.lock().map_err(io_err)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let file = state_dir
            .open_with(LEDGER_FILE, OpenOptions::new().read(true).append(true).create(true))
            .map_err(io_err)?;
        let scanned = scan(BufReader::new(file.try_clone().map_err(io_err)?), &path, |_| {})?;
        if scanned.newest_version > EVENT_FORMAT_VERSION {
            return Err(LedgerError::FutureVersion {
                path,
                found: scanned.newest_version,
                supported: EVENT_FORMAT_VERSION,
            });
        }
        if scanned.events == 0 && scanned.torn_tail.is_none() {
            // A new ledger file: make its directory entry durable.
            crate::fsx::sync_dir(state_dir).map_err(io_err)?;
        }
        // A whole event that only lacks its newline is the head already; the
        // first append completes it.
        let head = match scanned.torn_tail.as_ref().and_then(|t| t.complete_event.as_ref()) {
            Some(event) => LedgerHead { seq: event.seq, hash: event.hash.clone() },
            None => scanned.head,
        };
        Ok(Self { file, _lock: lock, path, head, clock, torn: scanned.torn_tail, appended: Vec::new() })
    }

    /// The last event's position.
    pub fn head(&self) -> &LedgerHead {
        &self.head
    }

    /// The events appended through this handle, oldest first.
    pub fn appended(&self) -> &[HermesEvent] {
        &self.appended
    }

    /// Path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event and fsyncs it; returns the event as written.
    pub fn append(
        &mut self,
        tick: &str,
        kind: EventKind,
        subject: &str,
        payload: Value,
    ) -> Result<HermesEvent, LedgerError> {
        if let Some(torn) = self.torn.take() {
            self.repair(torn, tick)?;
        }
        let mut event = HermesEvent {
            v: EVENT_FORMAT_VERSION,
            seq: self.head.seq + 1,
            time: self.clock.now_rfc3339(),
            tick: tick.to_owned(),
            kind: kind.as_str().to_owned(),
            subject: subject.to_owned(),
            payload,
            prev_hash: self.head.hash.clone(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| LedgerError::Io { path: self.path.clone(), source: io::Error::other(e) })?;
        line.push(b'\n');
        self.write_durable(&line)?;
        self.head = LedgerHead { seq: event.seq, hash: event.hash.clone() };
        tracing::debug!(seq = event.seq, kind = %kind, subject, "event appended");
        self.appended.push(event.clone());
        Ok(event)
    }

    fn write_durable(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        let io_err = |source| LedgerError::Io { path: self.path.clone(), source };
        self.file.write_all(bytes).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)
    }

    fn repair(&mut self, torn: TornTail, tick: &str) -> Result<(), LedgerError> {
        let action = if torn.complete_event.is_some() {
            // The event is whole and chains on; only its newline is missing.
            self.write_durable(b"\n")?;
            "completed"
        } else {
            let std_file =
                self.file.try_clone().map_err(|source| LedgerError::Io { path: self.path.clone(), source })?.into_std();
            std_file
                .set_len(torn.offset)
                .and_then(|()| std_file.sync_all())
                .map_err(|source| LedgerError::Io { path: self.path.clone(), source })?;
            "truncated"
        };
        tracing::warn!(path = %self.path.display(), offset = torn.offset, bytes = torn.bytes.len(), action, "repaired torn final ledger line");
        let preview: String = String::from_utf8_lossy(&torn.bytes).chars().take(200).collect();
        self.append(
            tick,
            EventKind::LedgerRepaired,
            "ledger",
            json!({
                "action": action,
                "offset": torn.offset,
                "length": torn.bytes.len(),
                "sha256": canonical::sha256_hex(&torn.bytes),
                "preview": preview,
            }),
        )?;
        Ok(())
    }
}
