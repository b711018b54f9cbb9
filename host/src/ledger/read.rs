//! Reading the ledger for people and scripts: a [`LedgerReader`] that
//! verifies the hash chain while it reads and can be called again to read
//! what was appended since, and an [`EventFilter`] (repository, kinds,
//! starting point) for the readers built on it (`hermes events`,
//! `hermes explain`).
//!
//! The reader takes no lock while it reads, so a long read never holds up a
//! cycle's appends. Every event it hands out has been verified against the
//! chain from the first event on; the first line that does not verify stops
//! the read with [`LedgerError::Broken`] (first bad sequence number), so a
//! reader never shows anything past the damage. Events of every format
//! version are read: `v` is not checked, and kinds this build does not know
//! are handed out as they are.

use super::event::HermesEvent;
use super::{LEDGER_FILE, LOCK_FILE, LedgerError, Scan, TornTail, scan_from};
use cap_std::fs::Dir;
use chrono::{DateTime, FixedOffset};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Reads the ledger incrementally, verifying the chain as it goes.
#[derive(Debug)]
pub struct LedgerReader {
    dir: Dir,
    path: PathBuf,
    /// The verified prefix read so far: the last event and the byte offset
    /// just past it. `events` counts every event read since [`Self::new`].
    verified: Scan,
}

impl LedgerReader {
    /// A reader of `state_dir`'s ledger (`state_path` is the same directory,
    /// for messages), positioned before the first event.
    pub fn new(state_dir: &Dir, state_path: &Path) -> Result<Self, LedgerError> {
        let path = state_path.join(LEDGER_FILE);
        let dir = state_dir.try_clone().map_err(|source| LedgerError::Io { path: path.clone(), source })?;
        Ok(Self { dir, path, verified: Scan::empty() })
    }

    /// Path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verified prefix read so far (its `head` is the last event handed out).
    pub fn position(&self) -> &Scan {
        &self.verified
    }

    /// Reads the complete events appended after the verified prefix, checks
    /// each against the chain, and calls `visit` with the event and its line
    /// as stored (without the newline), in order. A missing ledger has no
    /// events. Returns the final fragment when the file ends without a
    /// newline; it is not consumed, so the next call reads it again (it may
    /// be an append in progress, see [`Self::read_new_locked`]).
    pub fn read_new(&mut self, mut visit: impl FnMut(&HermesEvent, &str)) -> Result<Option<TornTail>, LedgerError> {
        let io_err = |source| LedgerError::Io { path: self.path.clone(), source };
        let file = match self.dir.open(LEDGER_FILE) {
            Ok(file) => file.into_std(),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.verified.end == 0 => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.shrank(0)),
            Err(source) => return Err(io_err(source)),
        };
        let len = file.metadata().map_err(io_err)?.len();
        if len < self.verified.end {
            return Err(self.shrank(len));
        }
        if len == self.verified.end {
            return Ok(None);
        }
        let mut file = file;
        file.seek(SeekFrom::Start(self.verified.end)).map_err(io_err)?;
        // Read no further than the length seen now: what is appended
        // meanwhile is for the next call.
        let mut reader = BufReader::new(file.take(len - self.verified.end));
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
                return Ok(None);
            }
            let raw = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            let step = scan_from(&line[..], &self.path, &self.verified, |event| visit(event, &raw))?;
            if step.torn_tail.is_some() {
                return Ok(step.torn_tail);
            }
            let events = self.verified.events + step.events;
            let newest_version = self.verified.newest_version.max(step.newest_version);
            self.verified = Scan { events, newest_version, ..step };
        }
    }

    /// [`Self::read_new`] while holding the ledger lock shared, so that an
    /// append in progress is waited for instead of being seen as a torn
    /// line. Hold it only for short reads: appends wait while it is held.
    pub fn read_new_locked(&mut self, visit: impl FnMut(&HermesEvent, &str)) -> Result<Option<TornTail>, LedgerError> {
        let lock = match self.dir.open(LOCK_FILE) {
            Ok(lock) => Some(lock.into_std()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(LedgerError::Io { path: self.path.clone(), source }),
        };
        if let Some(lock) = &lock {
            lock.lock_shared().map_err(|source| LedgerError::Io { path: self.path.clone(), source })?;
        }
        let read = self.read_new(visit);
        if let Some(lock) = &lock {
            let _ = lock.unlock();
        }
        read
    }

    /// Reads the whole rest of the ledger: unlocked, then, if it seems to end
    /// in a torn line, once more under the lock. Returns a torn final line
    /// that is really there (left by a crash; the next cycle repairs it).
    pub fn read_to_end(&mut self, mut visit: impl FnMut(&HermesEvent, &str)) -> Result<Option<TornTail>, LedgerError> {
        if self.read_new(&mut visit)?.is_none() {
            return Ok(None);
        }
        self.read_new_locked(visit)
    }

    fn shrank(&self, len: u64) -> LedgerError {
        LedgerError::Broken {
            path: self.path.clone(),
            line: self.verified.head.seq,
            first_bad_seq: self.verified.head.seq,
            problem: format!("the file shrank from {} to {len} bytes while it was being read", self.verified.end),
        }
    }
}

/// Where a read starts: at a sequence number or at a time (both inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Events with `seq` at least this.
    Seq(u64),
    /// Events whose `time` is at or after this instant.
    Time(DateTime<FixedOffset>),
}

impl Since {
    /// Parses a sequence number (digits) or an RFC 3339 time.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Since::Seq).map_err(|e| format!("{text:?} is not a sequence number: {e}"));
        }
        DateTime::parse_from_rfc3339(text).map(Since::Time).map_err(|e| {
            format!("{text:?} is neither a sequence number nor an RFC 3339 time such as 2026-11-25T06:58:58Z ({e})")
        })
    }

    /// Whether `event` is at or after this point. An event whose `time` is
    /// not an RFC 3339 time is not after any time.
    pub fn admits(&self, event: &HermesEvent) -> bool {
        match self {
            Since::Seq(seq) => event.seq >= *seq,
            Since::Time(time) => DateTime::parse_from_rfc3339(&event.time).is_ok_and(|t| t >= *time),
        }
    }
}

/// Which events a reader shows. The empty filter shows every event.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events whose `subject` is this (a repository name, `cycle`, a
    /// gate check's name, ...).
    pub repo: Option<String>,
    /// Only events of these kinds (as written in the ledger); empty for all.
    pub kinds: Vec<String>,
    /// Only events from this point on.
    pub since: Option<Since>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &HermesEvent) -> bool {
        self.repo.as_ref().is_none_or(|repo| event.subject == *repo)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.since.as_ref().is_none_or(|since| since.admits(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ledger::{EventKind, EventLedger};
    use cap_std::ambient_authority;
    use serde_json::json;
    use std::io::Write;

    fn ledger_with(events: usize) -> (tempfile::TempDir, Dir, EventLedger) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        let clock = Clock::Fixed(DateTime::parse_from_rfc3339("2026-11-25T06:58:58Z").unwrap().to_utc());
        let mut ledger = EventLedger::open(&dir, tmp.path(), clock).unwrap();
        for i in 0..events {
            ledger
                .append("t-1", EventKind::RepoProbed, if i % 2 == 0 { "core" } else { "api" }, json!({"i": i}))
                .unwrap();
        }
        (tmp, dir, ledger)
    }

    fn read_all(reader: &mut LedgerReader) -> Result<Vec<(u64, String)>, LedgerError> {
        let mut seen = Vec::new();
        reader.read_to_end(|e, raw| seen.push((e.seq, raw.to_owned())))?;
        Ok(seen)
    }

    #[test]
    fn reads_incrementally_and_hands_out_raw_lines() {
        let (tmp, dir, mut ledger) = ledger_with(3);
        let mut reader = LedgerReader::new(&dir, tmp.path()).unwrap();
        let first = read_all(&mut reader).unwrap();
        assert_eq!(first.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
        let file = std::fs::read_to_string(tmp.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(file.lines().next().unwrap(), first[0].1);
        assert!(read_all(&mut reader).unwrap().is_empty());
        ledger.append("t-2", EventKind::CycleFinished, "cycle", json!({})).unwrap();
        let next = read_all(&mut reader).unwrap();
        assert_eq!(next.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4]);
        assert_eq!(reader.position().head.seq, 4);
        assert_eq!(reader.position().events, 4);
    }

    #[test]
    fn a_missing_ledger_has_no_events() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        let mut reader = LedgerReader::new(&dir, tmp.path()).unwrap();
        assert!(read_all(&mut reader).unwrap().is_empty());
    }

    #[test]
    fn stops_at_the_first_bad_line() {
        let (tmp, dir, _ledger) = ledger_with(4);
        let path = tmp.path().join(LEDGER_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"i\":2", "\"i\":7", 1)).unwrap();
        let mut reader = LedgerReader::new(&dir, tmp.path()).unwrap();
        let mut seen = Vec::new();
        let err = reader.read_to_end(|e, _| seen.push(e.seq)).unwrap_err();
        assert_eq!(seen, [1, 2], "nothing past the damage is handed out");
        assert!(matches!(err, LedgerError::Broken { first_bad_seq: 3, .. }), "{err}");
    }

    #[test]
    fn a_torn_tail_is_returned_and_read_again_once_whole() {
        let (tmp, dir, _ledger) = ledger_with(2);
        let path = tmp.path().join(LEDGER_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap().to_owned();
        // Cut the second line in half.
        std::fs::write(&path, &text[..text.len() - last.len() / 2]).unwrap();
        let mut reader = LedgerReader::new(&dir, tmp.path()).unwrap();
        let mut seen = Vec::new();
        let torn = reader.read_to_end(|e, _| seen.push(e.seq)).unwrap().expect("torn tail");
        assert_eq!(seen, [1]);
        assert!(torn.complete_event.is_none());
        std::fs::write(&path, &text).unwrap();
        assert!(reader.read_to_end(|e, _| seen.push(e.seq)).unwrap().is_none());
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn a_shrunk_file_is_reported() {
        let (tmp, dir, _ledger) = ledger_with(2);
        let mut reader = LedgerReader::new(&dir, tmp.path()).unwrap();
        read_all(&mut reader).unwrap();
        std::fs::File::create(tmp.path().join(LEDGER_FILE)).unwrap().write_all(b"").unwrap();
        assert!(matches!(read_all(&mut reader), Err(LedgerError::Broken { .. })));
    }

    #[test]
    fn filters() {
        let event = |seq, kind: &str, subject: &str, time: &str| HermesEvent {
            v: 1,
            seq,
            time: time.to_owned(),
            tick: "t".to_owned(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            payload: json!({}),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let e = event(5, "repo-probed", "core", "2026-11-25T06:58:58.000Z");
        assert!(EventFilter::default().matches(&e));
        let f = |repo: Option<&str>, kinds: &[&str], since: Option<&str>| EventFilter {
            repo: repo.map(str::to_owned),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            since: since.map(|s| Since::parse(s).unwrap()),
        };
        assert!(f(Some("core"), &[], None).matches(&e));
        assert!(!f(Some("api"), &[], None).matches(&e));
        assert!(f(None, &["plan-made", "repo-probed"], None).matches(&e));
        assert!(!f(None, &["plan-made"], None).matches(&e));
        assert!(f(None, &[], Some("5")).matches(&e));
        assert!(!f(None, &[], Some("6")).matches(&e));
        assert!(f(None, &[], Some("2026-11-25T06:58:58Z")).matches(&e));
        assert!(f(None, &[], Some("2026-11-25T07:58:58+01:00")).matches(&e));
        assert!(!f(None, &[], Some("2026-11-25T06:58:58.001Z")).matches(&e));
        assert!(!f(None, &[], Some("2000-01-01T00:00:00Z")).matches(&event(1, "x", "y", "yesterday")));
        assert!(Since::parse("soon").is_err());
        assert_eq!(Since::parse("12"), Ok(Since::Seq(12)));
    }
}
