//! Reading and verifying the ledger's hash chain, in parallel where the
//! ledger is long.

use super::LedgerError;
use super::event::{ChainHash, EventRef, GENESIS_HASH, HermesEvent, Payload, hash_of, seal_verifies};
use crate::canonical::sha256_hex;
use crate::state::LedgerHead;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;

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
    reader: impl BufRead,
    path: &Path,
    from: &Scan,
    mut visit: impl FnMut(&HermesEvent),
) -> Result<Scan, LedgerError> {
    scan_map(reader, path, from, owned, |event| visit(&event))
}

/// Bytes read and decoded together (whole lines: a batch ends at the end
/// of the line that crosses this size).
const BATCH_BYTES: usize = 2 << 20;

/// The first read of a batch.
const FIRST_READ: usize = 64 << 10;

/// Below this many lines, a batch is decoded on the calling thread.
const PARALLEL_FROM: usize = 512;

/// [`scan_from`] with the work split in two: `map` turns each event into
/// what the caller needs (on the decoding threads, in any order, while the
/// line's bytes are at hand), and `visit` receives the results in file
/// order, each only once its event is known to chain on.
///
/// Each line is parsed and its hash recomputed independently of the others,
/// in batches of [`BATCH_BYTES`] spread over the machine's cores; the next
/// batch is decoded while this one's links (sequence number, `prev_hash`)
/// are checked and its results visited. The first bad line reported is the
/// first bad line in the file, and nothing after it is visited. An error
/// from `map` is that line's problem.
pub fn scan_map<T: Send>(
    mut reader: impl BufRead,
    path: &Path,
    from: &Scan,
    map: impl Fn(EventRef<'_>) -> Result<T, String> + Sync,
    mut visit: impl FnMut(T),
) -> Result<Scan, LedgerError> {
    let mut scanned = Scanned {
        path,
        scan: Scan { events: 0, newest_version: 0, torn_tail: None, ..from.clone() },
        // One event per line: the line number of event n is n.
        line_no: from.head.seq,
        head_hash: ChainHash::parse(&from.head.hash),
    };
    let map = &map;
    std::thread::scope(|scope| {
        let mut in_flight: Option<Batch<'_, T>> = None;
        loop {
            let next = Lines::read(&mut reader, path)?.map(|lines| Batch::decode(scope, lines, map));
            if let Some(batch) = in_flight.take()
                && !scanned.link(batch, &mut visit)?
            {
                return Ok(scanned.finish());
            }
            match next {
                Some(batch) => in_flight = Some(batch),
                None => return Ok(scanned.finish()),
            }
        }
    })
}

/// The [`scan_map`] mapping that keeps whole events.
fn owned(event: EventRef<'_>) -> Result<HermesEvent, String> {
    event.into_owned().map_err(|e| format!("not a valid event: {e}"))
}

/// A batch's lines, back to back in one buffer.
struct Lines {
    buffer: Vec<u8>,
    bounds: Vec<(usize, usize)>,
}

impl Lines {
    /// Reads the next batch of lines; `None` at the end. A final line
    /// without its newline ends the batch.
    fn read(reader: &mut impl BufRead, path: &Path) -> Result<Option<Self>, LedgerError> {
        let io_err = |source| LedgerError::Io { path: path.to_owned(), source };
        // A first small read, so that a short scan (`hermes events` reads
        // line by line) does not reserve a whole batch.
        let mut buffer = Vec::new();
        reader.by_ref().take(FIRST_READ as u64).read_to_end(&mut buffer).map_err(io_err)?;
        if buffer.len() == FIRST_READ {
            buffer.reserve(BATCH_BYTES);
            reader.by_ref().take((BATCH_BYTES - FIRST_READ) as u64).read_to_end(&mut buffer).map_err(io_err)?;
        }
        if buffer.last().is_some_and(|b| *b != b'\n') {
            reader.read_until(b'\n', &mut buffer).map_err(io_err)?;
        }
        let mut bounds = Vec::with_capacity(buffer.len() / 256);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buffer) {
            bounds.push((start, end + 1));
            start = end + 1;
        }
        if start < buffer.len() {
            bounds.push((start, buffer.len()));
        }
        Ok((!bounds.is_empty()).then_some(Lines { buffer, bounds }))
    }

    fn line(&self, i: usize) -> &[u8] {
        let (start, end) = self.bounds[i];
        &self.buffer[start..end]
    }

    /// [`decode_with`] of lines `range`.
    fn decode<T>(
        &self,
        range: std::ops::Range<usize>,
        map: &impl Fn(EventRef<'_>) -> Result<T, String>,
    ) -> Vec<Result<Decoded<T>, String>> {
        range.map(|i| decode_with(self.line(i), map)).collect()
    }
}

/// A batch being decoded: its lines, and their decodings in parts (each
/// part a decoding thread's share, in order).
struct Batch<'scope, T> {
    lines: Arc<Lines>,
    parts: Vec<Part<'scope, T>>,
}

enum Part<'scope, T> {
    Ready(Vec<Result<Decoded<T>, String>>),
    Running(std::thread::ScopedJoinHandle<'scope, Vec<Result<Decoded<T>, String>>>),
}

impl<'scope, T: Send + 'scope> Batch<'scope, T> {
    /// Starts decoding `lines`: on one thread per core for a large batch,
    /// right here for a small one.
    fn decode<'env, F>(scope: &'scope std::thread::Scope<'scope, 'env>, lines: Lines, map: &'env F) -> Self
    where
        F: Fn(EventRef<'_>) -> Result<T, String> + Sync,
    {
        let count = lines.bounds.len();
        let threads = if count < PARALLEL_FROM { 1 } else { decoders() };
        if threads < 2 {
            let decoded = lines.decode(0..count, map);
            return Batch { lines: Arc::new(lines), parts: vec![Part::Ready(decoded)] };
        }
        let lines = Arc::new(lines);
        let chunk = count.div_ceil(threads);
        let parts = (0..count)
            .step_by(chunk)
            .map(|start| {
                let range = start..count.min(start + chunk);
                let shared = Arc::clone(&lines);
                let decode = {
                    let range = range.clone();
                    move || shared.decode(range, map)
                };
                match std::thread::Builder::new().name("ledger-decode".into()).spawn_scoped(scope, decode) {
                    Ok(worker) => Part::Running(worker),
                    // No thread to be had: decode the share here.
                    Err(_) => Part::Ready(lines.decode(range, map)),
                }
            })
            .collect();
        Batch { lines, parts }
    }

    /// The decodings, in line order, as the parts finish.
    fn decoded(self) -> impl Iterator<Item = Result<Decoded<T>, String>> {
        self.parts.into_iter().flat_map(|part| match part {
            Part::Ready(decoded) => decoded,
            Part::Running(worker) => worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        })
    }
}

/// Threads that decode a large batch: the machine's cores, asked once per
/// process (the answer reads cgroup files).
fn decoders() -> usize {
    static DECODERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *DECODERS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// Where a scan stands.
struct Scanned<'p> {
    path: &'p Path,
    /// The scan so far; `scan.head.hash` is only brought up to date with
    /// `head_hash` by [`Scanned::finish`].
    scan: Scan,
    line_no: u64,
    head_hash: ChainHash,
}

impl Scanned<'_> {
    /// Links a decoded batch onto the chain and visits its events; `false`
    /// when it ended in a torn final line (the scan is over).
    fn link<T: Send>(&mut self, batch: Batch<'_, T>, visit: &mut impl FnMut(T)) -> Result<bool, LedgerError> {
        let lines = Arc::clone(&batch.lines);
        for (i, decoded) in batch.decoded().enumerate() {
            let line = lines.line(i);
            self.line_no += 1;
            let expected_seq = self.scan.head.seq + 1;
            if line.last() != Some(&b'\n') {
                let complete_event = decode_with(line, &owned)
                    .and_then(|d| link(d, self.scan.head.seq, &self.head_hash))
                    .ok()
                    .map(|d| d.item);
                self.scan.torn_tail = Some(TornTail { offset: self.scan.end, bytes: line.to_vec(), complete_event });
                return Ok(false);
            }
            let event = decoded.and_then(|d| link(d, self.scan.head.seq, &self.head_hash)).map_err(|problem| {
                LedgerError::Broken {
                    path: self.path.to_owned(),
                    line: self.line_no,
                    first_bad_seq: expected_seq,
                    problem,
                }
            })?;
            self.scan.events += 1;
            self.scan.newest_version = self.scan.newest_version.max(event.v);
            self.scan.head.seq = event.seq;
            self.head_hash = event.hash;
            self.scan.head_offset = self.scan.end;
            self.scan.end += line.len() as u64;
            visit(event.item);
        }
        Ok(true)
    }

    /// The scan, with its head's hash.
    fn finish(mut self) -> Scan {
        self.head_hash.write_to(&mut self.scan.head.hash);
        self.scan
    }
}

/// One line, decoded and its hash recomputed, waiting to be linked.
struct Decoded<T> {
    v: u32,
    seq: u64,
    prev_hash: ChainHash,
    hash: ChainHash,
    /// The hash the line's contents call for, when it is not `hash`.
    mismatch: Option<String>,
    /// What the scan's `map` made of the event.
    item: T,
}

/// The members of an event line, borrowed from it (a line whose strings
/// hold escapes, or that has other members, takes the general path).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Members<'a> {
    v: u32,
    seq: u64,
    time: &'a str,
    tick: &'a str,
    kind: &'a str,
    subject: &'a str,
    #[serde(borrow)]
    payload: &'a RawValue,
    prev_hash: &'a str,
    hash: &'a str,
}

/// Parses one line, recomputes its hash and maps the event.
///
/// A line in the sealed layout ([`HermesEvent::seal`]) is verified by
/// hashing its bytes and hands `map` its payload unparsed. Another line
/// with exactly the event's members is hashed from its canonical JSON; a
/// line with other members (a newer format, or an edit) is hashed with
/// every member but `hash`.
fn decode_with<T>(line: &[u8], map: &impl Fn(EventRef<'_>) -> Result<T, String>) -> Result<Decoded<T>, String> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    if let Ok(m) = serde_json::from_slice::<Members>(text) {
        let sealed = seal_verifies(text);
        let payload = match sealed {
            true => Payload::Raw(m.payload),
            false => Payload::Value(Cow::Owned(
                serde_json::from_str(m.payload.get()).map_err(|e| format!("not valid JSON: {e}"))?,
            )),
        };
        let event = EventRef {
            v: m.v,
            seq: m.seq,
            time: m.time,
            tick: m.tick,
            kind: m.kind,
            subject: m.subject,
            payload,
            prev_hash: m.prev_hash,
            hash: m.hash,
        };
        let mismatch = match sealed {
            true => None,
            false => Some(sha256_hex(&event.canonical_body())).filter(|computed| computed != m.hash),
        };
        let item = map(event)?;
        let (prev_hash, hash) = (ChainHash::parse(m.prev_hash), ChainHash::parse(m.hash));
        return Ok(Decoded { v: m.v, seq: m.seq, prev_hash, hash, mismatch, item });
    }
    let raw: Value = serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let computed = hash_of(&raw);
    let HermesEvent { v, seq, time, tick, kind, subject, payload, prev_hash, hash } =
        serde_json::from_value(raw).map_err(|e| format!("not a valid event: {e}"))?;
    let item = map(EventRef {
        v,
        seq,
        time: &time,
        tick: &tick,
        kind: &kind,
        subject: &subject,
        payload: Payload::Value(Cow::Owned(payload)),
        prev_hash: &prev_hash,
        hash: &hash,
    })?;
    let mismatch = (computed != hash).then_some(computed);
    Ok(Decoded { v, seq, prev_hash: ChainHash::parse(&prev_hash), hash: ChainHash::parse(&hash), mismatch, item })
}

/// Parses one line and recomputes its hash: the event and the hash its
/// contents call for. Every reader of a single line (the tick's tail, a
/// checkpoint's head) decodes it here.
pub fn decode(line: &[u8]) -> Result<(HermesEvent, String), String> {
    let decoded = decode_with(line, &owned)?;
    let computed = decoded.mismatch.unwrap_or_else(|| decoded.item.hash.clone());
    Ok((decoded.item, computed))
}

/// Checks that the line `decoded` is the event that follows event
/// `prev_seq`, whose hash is `prev_hash`.
fn link<T>(decoded: Decoded<T>, prev_seq: u64, prev_hash: &ChainHash) -> Result<Decoded<T>, String> {
    let expected_seq = prev_seq + 1;
    if decoded.seq != expected_seq {
        return Err(format!(
            "found sequence number {} where {expected_seq} was expected (a line was deleted, inserted or moved)",
            decoded.seq
        ));
    }
    if decoded.prev_hash != *prev_hash {
        return Err(format!(
            "prev_hash {} does not match the hash of event {prev_seq} ({prev_hash})",
            decoded.prev_hash
        ));
    }
    if let Some(computed) = &decoded.mismatch {
        return Err(format!(
            "hash {} does not match the event's contents (computed {computed}): the line was edited",
            decoded.hash
        ));
    }
    Ok(decoded)
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

    /// More lines than one batch holds (every test line is longer than 200 bytes).
    const BATCH: usize = BATCH_BYTES / 200;

    #[test]
    fn a_sealed_line_is_the_canonical_json_its_hash_covers_with_the_hash_last() {
        for subject in ["api", "quote\"and\\slash \u{e9}\u{7f}"] {
            let mut event = HermesEvent {
                v: 1,
                seq: 3,
                time: "2026-11-25T10:00:00Z".into(),
                tick: "t/1".into(),
                kind: "repo-noop".into(),
                subject: subject.into(),
                payload: json!({ "b": [1, "x\n"], "a": { "d": null, "c": true } }),
                prev_hash: "ab".repeat(32),
                hash: String::new(),
            };
            let line = event.seal();
            let text = std::str::from_utf8(&line).unwrap().strip_suffix('\n').unwrap();
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(event.hash, hash_of(&value));
            let (without_hash, _) = text.rsplit_once(",\"hash\":").unwrap();
            assert_eq!(
                format!("{without_hash}}}").into_bytes(),
                crate::canonical::to_canonical_bytes_without(&value, "hash")
            );
            assert!(seal_verifies(text.as_bytes()));
            let (decoded, computed) = decode(&line).unwrap();
            assert_eq!((decoded, computed), (event.clone(), event.hash.clone()));
            // The same event in another member order (older writers) verifies too.
            let (decoded, computed) = decode(&serde_json::to_vec(&event).unwrap()).unwrap();
            assert_eq!((decoded, computed), (event.clone(), event.hash.clone()));
            // One changed byte is caught, whichever path the line takes.
            let edited = text.replacen("true", "null", 1).into_bytes();
            assert!(!seal_verifies(&edited));
            let (_, computed) = decode(&edited).unwrap();
            assert_ne!(computed, event.hash);
        }
    }

    #[test]
    fn a_large_scan_decodes_in_parallel_and_visits_in_order() {
        let (_tmp, bytes) = ledger_of(3 * BATCH as u64 + 7);
        assert!(bytes.len() > 3 * BATCH_BYTES, "the ledger spans several batches");
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
