//! The event ledger: `state/runtime_events.jsonl`, the one source of truth.
//!
//! Format: one [`HermesEvent`] per line (see [`event`] for the hash chain),
//! each line terminated by `\n`. The file is only ever appended to.
//!
//! Several processes may append to one ledger (a cycle, and a second cycle
//! recording that it skipped). Each [`EventLedger::append`] (one event) or
//! [`EventLedger::append_all`] (a phase's events, in order) takes an
//! exclusive lock on `state/.ledger.lock`: it first reads and verifies
//! whatever other processes appended since this handle's last event, chains
//! the new events onto the real end, writes them with one `write` and
//! fsyncs once before the lock is released and the call returns. Once a
//! step is reported done, its event is on disk; two appends never
//! interleave; a chain never forks. Readers that must not see a half-written
//! line ([`verify`], [`EventLedger::scan_locked`]) take the same lock.
//!
//! A crash can leave a torn final line (bytes without the closing newline).
//! The next append repairs it, under the lock: a fragment that is a whole, correctly
//! chained event just gets its newline; anything else is cut off. Either way
//! a `ledger-repaired` event records the offset, length and SHA-256 of what
//! was found. Damage anywhere else (an edited, reordered, inserted or deleted
//! line) is never repaired: it is reported as [`LedgerError::Broken`] with the
//! first bad sequence number.

pub mod event;
pub mod read;
pub mod scan;

pub use event::{EVENT_FORMAT_VERSION, EventKind, EventRef, GENESIS_HASH, HermesEvent, Payload};
pub use scan::{Scan, TornTail, scan, scan_from, scan_map};

use crate::canonical;
use crate::clock::Clock;
use crate::state::LedgerHead;
use cap_std::fs::{Dir, File, OpenOptions};
use serde_json::{Value, json};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the ledger inside `state/`.
pub const LEDGER_FILE: &str = "runtime_events.jsonl";
const LOCK_FILE: &str = ".ledger.lock";

/// How far back from the end [`tail_position`] looks for the last line.
const TAIL_WINDOW: u64 = 256 * 1024;

/// The position of the last complete event of `file` if its line verifies
/// on its own (hash over its contents, a format this build writes); a torn
/// fragment after it is left for [`EventLedger::catch_up`] to find.
fn tail_position(mut file: std::fs::File) -> Option<Scan> {
    use std::io::Read;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut window = Vec::with_capacity(usize::try_from(len - start).ok()?);
    file.read_to_end(&mut window).ok()?;
    // The last newline ends the last complete line.
    let end = window.iter().rposition(|b| *b == b'\n')?;
    let line_start = window[..end].iter().rposition(|b| *b == b'\n').map(|i| i + 1);
    // A line that starts before the window (or the file's first line when
    // the window is the whole file) must be whole to be trusted.
    let line_start = match line_start {
        Some(i) => i,
        None if start == 0 => 0,
        None => return None,
    };
    let (event, computed) = scan::decode(&window[line_start..end]).ok()?;
    if event.hash != computed || event.v > EVENT_FORMAT_VERSION {
        return None;
    }
    Some(Scan {
        head: LedgerHead { seq: event.seq, hash: event.hash },
        events: 0,
        newest_version: event.v,
        torn_tail: None,
        end: start + end as u64 + 1,
        head_offset: start + line_start as u64,
    })
}

/// An event to append: what the caller says; the ledger adds version,
/// sequence number, time, tick and the chain.
#[derive(Debug, Clone)]
pub struct Pending {
    pub kind: EventKind,
    pub subject: String,
    pub payload: Value,
}

impl Pending {
    pub fn new(kind: EventKind, subject: &str, payload: Value) -> Self {
        Self { kind, subject: subject.to_owned(), payload }
    }
}

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

/// Verifies the ledger without changing it (waiting for an append in
/// progress to finish, so a half-written line is never reported as torn).
pub fn verify(state_dir: &Dir, state_path: &Path) -> Result<Scan, LedgerError> {
    let path = state_path.join(LEDGER_FILE);
    let io_err = |source| LedgerError::Io { path: path.clone(), source };
    let lock = match state_dir.open(LOCK_FILE) {
        Ok(lock) => Some(lock.into_std()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(io_err(source)),
    };
    if let Some(lock) = &lock {
        lock.lock_shared().map_err(io_err)?;
    }
    let scanned = match state_dir.open(LEDGER_FILE) {
        Ok(file) => scan(BufReader::new(file), &path, |_| {}),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Scan::empty()),
        Err(source) => Err(io_err(source)),
    };
    if let Some(lock) = &lock {
        let _ = lock.unlock();
    }
    scanned
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

/// An open ledger ready for appends.
#[derive(Debug)]
pub struct EventLedger {
    file: File,
    lock: std::fs::File,
    path: PathBuf,
    /// The verified prefix of the file as this handle last saw it: the last
    /// event's position and the byte offset where the next event goes.
    known: Scan,
    clock: Clock,
    /// Events appended through this handle, in order.
    appended: Vec<HermesEvent>,
}

impl EventLedger {
    /// Opens (creating if needed) and verifies the ledger. A torn final
    /// line is left for the next append to repair and record.
    pub fn open(state_dir: &Dir, state_path: &Path, clock: Clock) -> Result<Self, LedgerError> {
        Self::open_at(state_dir, state_path, clock, Scan::empty())
    }

    /// Like [`Self::open`], but verifies only the last complete event (its
    /// own hash) and chains onto it, without reading the events before it.
    /// Writers that run often and append little (a tick with nothing due)
    /// open this way so their cost does not grow with the ledger; every
    /// cycle and `hermes verify` still verify the whole chain. Falls back to
    /// [`Self::open`] when the last line cannot be trusted this way (a line
    /// longer than the window read, a bad hash, a newer format).
    pub fn open_at_tail(state_dir: &Dir, state_path: &Path, clock: Clock) -> Result<Self, LedgerError> {
        let known = state_dir.open(LEDGER_FILE).ok().and_then(|file| tail_position(file.into_std()));
        Self::open_at(state_dir, state_path, clock, known.unwrap_or_else(Scan::empty))
    }

    fn open_at(state_dir: &Dir, state_path: &Path, clock: Clock, known: Scan) -> Result<Self, LedgerError> {
        let path = state_path.join(LEDGER_FILE);
        let io_err = |source| LedgerError::Io { path: path.clone(), source };
        let lock = state_dir
            .open_with(LOCK_FILE, OpenOptions::new().write(true).create(true).truncate(false))
            .map_err(io_err)?
            .into_std();
        let file = state_dir
            .open_with(LEDGER_FILE, OpenOptions::new().read(true).append(true).create(true))
            .map_err(io_err)?;
        let mut ledger = Self { file, lock, path, known, clock, appended: Vec::new() };
        ledger.lock()?;
        let scanned = ledger.catch_up();
        let _ = ledger.lock.unlock();
        if scanned?.is_none() && ledger.known.events == 0 {
            // A new ledger file: make its directory entry durable.
            crate::fsx::sync_dir(state_dir).map_err(|source| LedgerError::Io { path: ledger.path.clone(), source })?;
        }
        Ok(ledger)
    }

    /// The last event's position.
    pub fn head(&self) -> &LedgerHead {
        &self.known.head
    }

    /// The events appended through this handle, oldest first.
    pub fn appended(&self) -> &[HermesEvent] {
        &self.appended
    }

    /// Path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scans the whole ledger under the lock, calling `visit` on each
    /// verified event.
    pub fn scan_locked(&self, visit: impl FnMut(&HermesEvent)) -> Result<Scan, LedgerError> {
        self.lock()?;
        let scanned = self
            .file
            .try_clone()
            .map_err(|source| LedgerError::Io { path: self.path.clone(), source })
            .and_then(|file| {
                let mut file = file.into_std();
                file.seek(SeekFrom::Start(0)).map_err(|source| LedgerError::Io { path: self.path.clone(), source })?;
                scan(BufReader::new(file), &self.path, visit)
            });
        let _ = self.lock.unlock();
        scanned
    }

    /// Appends an event and fsyncs it; returns the event as written.
    pub fn append(
        &mut self,
        tick: &str,
        kind: EventKind,
        subject: &str,
        payload: Value,
    ) -> Result<HermesEvent, LedgerError> {
        let mut written = self.append_all(tick, vec![Pending::new(kind, subject, payload)])?;
        Ok(written.pop().expect("one event was appended"))
    }

    /// Appends `events` in order with one write and one fsync (so one
    /// durability point for a whole phase's records), under one lock: no
    /// other process's event lands between them. Returns them as written.
    pub fn append_all(&mut self, tick: &str, events: Vec<Pending>) -> Result<Vec<HermesEvent>, LedgerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.lock()?;
        let result = self.append_locked(tick, events);
        let _ = self.lock.unlock();
        result
    }

    fn lock(&self) -> Result<(), LedgerError> {
        let io_err = |source| LedgerError::Io { path: self.path.clone(), source };
        match self.lock.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::debug!("another hermes process is appending to the ledger; waiting for it");
                self.lock.lock().map_err(io_err)
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    /// Reads what other processes appended since this handle last looked,
    /// verifying the chain from the known head on. Returns a torn final
    /// line, if one was found (the known prefix stops before it).
    fn catch_up(&mut self) -> Result<Option<TornTail>, LedgerError> {
        let io_err = |source| LedgerError::Io { path: self.path.clone(), source };
        let len = self.file.metadata().map_err(io_err)?.len();
        if len == self.known.end {
            return Ok(None);
        }
        if len < self.known.end {
            return Err(LedgerError::Broken {
                path: self.path.clone(),
                line: self.known.head.seq,
                first_bad_seq: self.known.head.seq,
                problem: format!("the file shrank from {} to {len} bytes while it was open", self.known.end),
            });
        }
        let mut file = self.file.try_clone().map_err(io_err)?.into_std();
        file.seek(SeekFrom::Start(self.known.end)).map_err(io_err)?;
        let scanned = scan_from(BufReader::new(file), &self.path, &self.known, |_| {})?;
        if scanned.newest_version > EVENT_FORMAT_VERSION {
            return Err(LedgerError::FutureVersion {
                path: self.path.clone(),
                found: scanned.newest_version,
                supported: EVENT_FORMAT_VERSION,
            });
        }
        let events = self.known.events + scanned.events;
        let torn = scanned.torn_tail.clone();
        self.known = Scan { events, torn_tail: None, ..scanned };
        Ok(torn)
    }

    fn append_locked(&mut self, tick: &str, events: Vec<Pending>) -> Result<Vec<HermesEvent>, LedgerError> {
        if let Some(torn) = self.catch_up()? {
            self.repair(torn, tick)?;
        }
        let mut bytes = Vec::new();
        let mut written = Vec::with_capacity(events.len());
        let mut head = self.known.head.clone();
        // Where the last event's line starts, relative to `bytes`.
        let mut last_start = 0;
        for pending in events {
            let mut event = HermesEvent {
                v: EVENT_FORMAT_VERSION,
                seq: head.seq + 1,
                time: self.clock.now_rfc3339(),
                tick: tick.to_owned(),
                kind: pending.kind.as_str().to_owned(),
                subject: pending.subject,
                payload: pending.payload,
                prev_hash: head.hash.clone(),
                hash: String::new(),
            };
            last_start = bytes.len() as u64;
            bytes.extend_from_slice(&event.seal());
            head = LedgerHead { seq: event.seq, hash: event.hash.clone() };
            written.push(event);
        }
        if crate::failpoint::reached(crate::failpoint::LEDGER_APPEND_TORN) {
            // Half the bytes reach the disk, the rest never do.
            let _ = self.write_durable(&bytes[..bytes.len() / 2]);
            crate::failpoint::die(crate::failpoint::LEDGER_APPEND_TORN);
        }
        self.write_durable(&bytes)?;
        let start = self.known.end;
        self.known.head = head;
        self.known.head_offset = start + last_start;
        self.known.end = start + bytes.len() as u64;
        self.known.events += written.len() as u64;
        for event in &written {
            tracing::debug!(seq = event.seq, kind = %event.kind, subject = %event.subject, "event appended");
        }
        self.appended.extend(written.iter().cloned());
        Ok(written)
    }

    fn write_durable(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        let io_err = |source| LedgerError::Io { path: self.path.clone(), source };
        self.file.write_all(bytes).map_err(io_err)?;
        crate::failpoint::hit(crate::failpoint::LEDGER_APPEND_BEFORE_SYNC);
        self.file.sync_data().map_err(io_err)
    }

    fn repair(&mut self, torn: TornTail, tick: &str) -> Result<(), LedgerError> {
        let action = if let Some(event) = &torn.complete_event {
            // The event is whole and chains on; only its newline is missing.
            self.write_durable(b"\n")?;
            self.known.head = LedgerHead { seq: event.seq, hash: event.hash.clone() };
            self.known.head_offset = torn.offset;
            self.known.end = torn.offset + torn.bytes.len() as u64 + 1;
            self.known.events += 1;
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
        let payload = json!({
            "action": action,
            "offset": torn.offset,
            "length": torn.bytes.len(),
            "sha256": canonical::sha256_hex(&torn.bytes),
            "preview": preview,
        });
        self.append_locked(tick, vec![Pending::new(EventKind::LedgerRepaired, "ledger", payload)])?;
        Ok(())
    }
}
