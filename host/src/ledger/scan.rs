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

/// Lines read and decoded together; each batch's lines are parsed and
/// hashed on up to [`decoders`] threads, then linked and visited in order.
const BATCH: usize = 4096;

/// Below this many lines, a batch is decoded on the calling thread.
const PARALLEL_FROM: usize = 512;

/// Continues a scan: `reader` starts at byte `from.end` of the ledger,
/// right after the event `from.head`. The result counts only the events
/// read here; offsets and line numbers are those of the whole file.
///
/// Each line is parsed and its hash recomputed independently of the others
/// (in parallel for large batches); the chain links (sequence number,
/// `prev_hash`) and `visit` then run in file order, so the first bad line
/// reported is the first bad line in the file.
pub fn scan_from(
    mut reader: impl BufRead,
    path: &Path,
    from: &Scan,
    mut visit: impl FnMut(&HermesEvent),
) -> Result<Scan, LedgerError> {
    let mut result = Scan { events: 0, newest_version: 0, torn_tail: None, ..from.clone() };
    // One event per line: the line number of event n is n.
    let mut line_no = from.head.seq;
    loop {
        // The batch's lines, back to back in one buffer.
        let mut buffer = Vec::new();
        let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
        while bounds.len() < BATCH {
            let start = buffer.len();
            let read = reader
                .read_until(b'\n', &mut buffer)
                .map_err(|source| LedgerError::Io { path: path.to_owned(), source })?;
            if read == 0 {
                break;
            }
            bounds.push((start, buffer.len()));
            if buffer.last() != Some(&b'\n') {
                break;
            }
        }
        if bounds.is_empty() {
            return Ok(result);
        }
        let lines: Vec<&[u8]> = bounds.iter().map(|&(start, end)| &buffer[start..end]).collect();
        let decoded = decode_all(&lines);
        for (&line, decoded) in lines.iter().zip(decoded) {
            line_no += 1;
            let expected_seq = result.head.seq + 1;
            let checked = decoded.and_then(|(event, computed)| link(event, &computed, &result.head));
            if line.last() != Some(&b'\n') {
                result.torn_tail =
                    Some(TornTail { offset: result.end, bytes: line.to_vec(), complete_event: checked.ok() });
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
            result.end += line.len() as u64;
        }
    }
}

/// Threads that decode a large batch: the machine's cores.
fn decoders() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// [`decode`] of every line, in order; in parallel for large batches.
fn decode_all(lines: &[&[u8]]) -> Vec<Result<(HermesEvent, String), String>> {
    let threads = decoders();
    if lines.len() < PARALLEL_FROM || threads < 2 {
        return lines.iter().map(|line| decode(line)).collect();
    }
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = lines
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|line| decode(line)).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// An event line with exactly the members of [`HermesEvent`]: the common
/// case, parsed once into the event and hashed from it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Exact {
    v: u32,
    seq: u64,
    time: String,
    tick: String,
    kind: String,
    subject: String,
    payload: serde_json::Value,
    prev_hash: String,
    hash: String,
}

impl Exact {
    /// The canonical JSON of the event without `hash` (members in sorted
    /// order), exactly what [`hash_of`] hashes for the same line.
    fn hash(&self) -> String {
        use crate::canonical::{sha256_hex, write_scalar, write_value};
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"kind\":");
        write_scalar(&self.kind, &mut out);
        out.extend_from_slice(b",\"payload\":");
        write_value(&self.payload, &mut out);
        out.extend_from_slice(b",\"prev_hash\":");
        write_scalar(&self.prev_hash, &mut out);
        out.extend_from_slice(b",\"seq\":");
        write_scalar(&self.seq, &mut out);
        out.extend_from_slice(b",\"subject\":");
        write_scalar(&self.subject, &mut out);
        out.extend_from_slice(b",\"tick\":");
        write_scalar(&self.tick, &mut out);
        out.extend_from_slice(b",\"time\":");
        write_scalar(&self.time, &mut out);
        out.extend_from_slice(b",\"v\":");
        write_scalar(&self.v, &mut out);
        out.push(b'}');
        sha256_hex(&out)
    }
}

/// Parses one line and recomputes its hash: the event and the hash its
/// contents call for. A line with other members (a newer format, or an
/// edit) takes the general path: every member but `hash` is hashed.
/// Every reader of a single line (the scan, the tick's tail, a checkpoint's
/// head) decodes it here.
pub fn decode(line: &[u8]) -> Result<(HermesEvent, String), String> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    if let Ok(exact) = serde_json::from_slice::<Exact>(text) {
        let computed = exact.hash();
        let Exact { v, seq, time, tick, kind, subject, payload, prev_hash, hash } = exact;
        return Ok((HermesEvent { v, seq, time, tick, kind, subject, payload, prev_hash, hash }, computed));
    }
    let raw: serde_json::Value = serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let computed = hash_of(&raw);
    let event: HermesEvent = serde_json::from_value(raw).map_err(|e| format!("not a valid event: {e}"))?;
    Ok((event, computed))
}

/// Checks that `event` (whose contents hash to `computed`) is the event
/// that follows `prev`.
fn link(event: HermesEvent, computed: &str, prev: &LedgerHead) -> Result<HermesEvent, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ledger::{EventKind, EventLedger, Pending};
    use serde_json::json;

    /// A ledger of `n` events, written in one append, and its bytes.
    fn ledger_of(n: u64) -> (tempfile::TempDir, Vec<u8>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().to_utc();
        let mut ledger = EventLedger::open(&dir, tmp.path(), Clock::Fixed(now)).unwrap();
        let events = (0..n).map(|i| Pending::new(EventKind::RepoNoop, &format!("r{i}"), json!({ "i": i }))).collect();
        ledger.append_all("t1", events).unwrap();
        let bytes = std::fs::read(tmp.path().join(crate::ledger::LEDGER_FILE)).unwrap();
        (tmp, bytes)
    }

    #[test]
    fn the_exact_path_hashes_as_the_general_one() {
        let payload = json!({ "z": [1, -2.5, "é\u{1F600}\n\"q\""], "a": { "y": null, "b": true }, "\u{E000}": 1 });
        let event = HermesEvent {
            v: 1,
            seq: 7,
            time: "2026-11-25T10:00:00Z".into(),
            tick: "t/1".into(),
            kind: "repo-noop".into(),
            subject: "r\u{7f}".into(),
            payload,
            prev_hash: "00".into(),
            hash: String::new(),
        };
        let line = serde_json::to_vec(&event).unwrap();
        let (decoded, computed) = decode(&line).unwrap();
        assert_eq!(computed, crate::ledger::event::hash_of(&serde_json::from_slice(&line).unwrap()));
        assert_eq!(decoded, event);
        // An extra member is hashed too (general path): it changes the hash.
        let mut extra: serde_json::Value = serde_json::from_slice(&line).unwrap();
        extra["x"] = json!(1);
        let (_, with_extra) = decode(&serde_json::to_vec(&extra).unwrap()).unwrap();
        assert_ne!(with_extra, computed);
    }

    #[test]
    fn a_large_scan_decodes_in_parallel_and_visits_in_order() {
        let (_tmp, bytes) = ledger_of(3 * BATCH as u64 + 7);
        let mut seen = Vec::new();
        let scan = scan(bytes.as_slice(), Path::new("ledger"), |e| seen.push(e.seq)).unwrap();
        assert_eq!(scan.events, 3 * BATCH as u64 + 7);
        assert_eq!(scan.end, bytes.len() as u64);
        assert!(seen.iter().copied().eq(1..=scan.events), "visited in file order");
    }

    #[test]
    fn the_first_bad_line_of_a_large_scan_is_the_one_reported() {
        let (_tmp, bytes) = ledger_of(2 * BATCH as u64);
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Two edits: the earlier one, deep inside a parallel batch, is named.
        for seq in [BATCH + 1500, BATCH + 3000] {
            lines[seq - 1] = lines[seq - 1].replacen("\"i\":", "\"j\":", 1);
        }
        let damaged = lines.join("\n") + "\n";
        let mut visited = 0;
        match scan(damaged.as_bytes(), Path::new("ledger"), |_| visited += 1) {
            Err(LedgerError::Broken { first_bad_seq, .. }) => assert_eq!(first_bad_seq, (BATCH + 1500) as u64),
            other => panic!("expected a broken ledger, got {other:?}"),
        }
        assert_eq!(visited, BATCH + 1499, "nothing after the first bad event is visited");
    }
}
