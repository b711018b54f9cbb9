//! Reading and verifying the ledger's hash chain.

use super::LedgerError;
use super::event::{GENESIS_HASH, HermesEvent, hash_of};
use crate::state::LedgerHead;
use std::io::BufRead;
use std::path::Path;

/// A final fragment without its newline, left by a crash mid-append.
#[derive(Debug, Clone)]
pub struct TornTail {
    /// Byte offset where the fragment starts.
    pub offset: u64,
    /// The fragment.
    pub bytes: Vec<u8>,
    /// Set when the fragment is a whole event that chains on correctly.
    pub complete_event: Option<HermesEvent>,
}

/// What a scan of the ledger found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The last good event (seq 0 and the genesis hash if none).
    pub head: LedgerHead,
    /// Number of complete events.
    pub events: u64,
    /// Highest event format version seen.
    pub newest_version: u32,
    /// A torn final line, if any.
    pub torn_tail: Option<TornTail>,
    /// Byte offset just past the last complete event: where the next one goes.
    pub end: u64,
    /// Byte offset where the last complete event's line starts.
    pub head_offset: u64,
}

impl Scan {
    /// The scan of an empty ledger.
    pub fn empty() -> Self {
        Self {
            head: LedgerHead { seq: 0, hash: GENESIS_HASH.to_owned() },
            events: 0,
            newest_version: 0,
            torn_tail: None,
            end: 0,
            head_offset: 0,
        }
    }
}

/// Reads every event from `reader`, checks the chain, and calls `visit` on
/// each verified event in order.
pub fn scan(reader: impl BufRead, path: &Path, visit: impl FnMut(&HermesEvent)) -> Result<Scan, LedgerError> {
    scan_from(reader, path, &Scan::empty(), visit)
}

/// Continues a scan: `reader` starts at byte `from.end` of the ledger,
/// right after the event `from.head`. The result counts only the events
/// read here; offsets and line numbers are those of the whole file.
pub fn scan_from(
    mut reader: impl BufRead,
    path: &Path,
    from: &Scan,
    mut visit: impl FnMut(&HermesEvent),
) -> Result<Scan, LedgerError> {
    let mut result = Scan { events: 0, newest_version: 0, torn_tail: None, ..from.clone() };
    let mut line = Vec::new();
    // One event per line: the line number of event n is n.
    let mut line_no = from.head.seq;
    loop {
        line.clear();
        let read =
            reader.read_until(b'\n', &mut line).map_err(|source| LedgerError::Io { path: path.to_owned(), source })?;
        if read == 0 {
            return Ok(result);
        }
        line_no += 1;
        let expected_seq = result.head.seq + 1;
        let torn = line.last() != Some(&b'\n');
        let checked = check_line(&line, &result.head);
        if torn {
            result.torn_tail = Some(TornTail { offset: result.end, bytes: line.clone(), complete_event: checked.ok() });
            return Ok(result);
        }
        let event = checked.map_err(|problem| LedgerError::Broken {
            path: path.to_owned(),
            line: line_no,
            first_bad_seq: expected_seq,
            problem,
        })?;
        visit(&event);
        result.events += 1;
        result.newest_version = result.newest_version.max(event.v);
        result.head = LedgerHead { seq: event.seq, hash: event.hash };
        result.head_offset = result.end;
        result.end += read as u64;
    }
}

fn check_line(line: &[u8], prev: &LedgerHead) -> Result<HermesEvent, String> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let raw: serde_json::Value = serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let computed = hash_of(&raw);
    let event: HermesEvent = serde_json::from_value(raw).map_err(|e| format!("not a valid event: {e}"))?;
    let expected_seq = prev.seq + 1;
    if event.seq != expected_seq {
        return Err(format!(
            "found sequence number {} where {expected_seq} was expected (a line was deleted, inserted or moved)",
            event.seq
        ));
    }
    if event.prev_hash != prev.hash {
        return Err(format!(
            "prev_hash {} does not match the hash of event {} ({})",
            event.prev_hash, prev.seq, prev.hash
        ));
    }
    if event.hash != computed {
        return Err(format!(
            "hash {} does not match the event's contents (computed {computed}): the line was edited",
            event.hash
        ));
    }
    Ok(event)
}
