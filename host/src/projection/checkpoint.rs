//! Checkpoints of the graph projection, so reading the current state costs
//! the events since the last checkpoint, not the whole ledger.
//!
//! On-disk format: `state/graph_checkpoint.json`, a state envelope (view
//! `graph_checkpoint`, `ledger_head` = the snapshot's position) whose `data`
//! is
//!
//! ```json
//! { "head_offset": 81234, "end": 81702, "snapshot": { "seq": 212, ... } }
//! ```
//!
//! `head_offset` is where the line of event `seq` starts in
//! `runtime_events.jsonl`, `end` where the next line starts. Every cycle
//! rewrites it at its end.
//!
//! Before it is used, a checkpoint is checked against the ledger: the line at
//! `head_offset` must be event `seq` with the recorded hash and end at `end`.
//! A checkpoint that disagrees (the ledger was replaced, cut or edited
//! there), is corrupt, or is missing is discarded and the projection rebuilt
//! from the first event. Events after the checkpoint are verified as they
//! are folded in; events before it are not re-read (`hermes verify` and
//! `hermes replay` read everything).

use super::{GraphSnapshot, Step};
use crate::ledger::{self, LedgerError, Scan, scan_map};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

/// The stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub head_offset: u64,
    pub end: u64,
    pub snapshot: GraphSnapshot,
}

/// The projection as of the ledger's last complete event.
#[derive(Debug, Clone)]
pub struct Projection {
    pub snapshot: GraphSnapshot,
    /// Where the projection resumed: the checkpoint's position, or 0.
    pub resumed_at: u64,
    /// Why a stored checkpoint was not used, if one was discarded.
    pub discarded: Option<String>,
    /// Events read from the ledger to get here.
    pub events_read: u64,
    /// The ledger position reached (for the next checkpoint).
    pub scan: Scan,
}

/// Errors projecting.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Projects the whole ledger, resuming from the stored checkpoint when it
/// agrees with the ledger.
pub fn project(store: &StateStore) -> Result<Projection, ProjectionError> {
    project_until(store, None)
}

/// Projects the ledger up to event `until` (all of it when `None`),
/// resuming from the stored checkpoint when it agrees with the ledger and
/// is not past `until`.
pub fn project_until(store: &StateStore, until: Option<u64>) -> Result<Projection, ProjectionError> {
    let path = store.path_of(ledger::LEDGER_FILE);
    let io_err = |source| LedgerError::Io { path: path.clone(), source };
    let file = match store.dir().open(ledger::LEDGER_FILE) {
        Ok(file) => file.into_std(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Projection {
                snapshot: GraphSnapshot::default(),
                resumed_at: 0,
                discarded: None,
                events_read: 0,
                scan: Scan::empty(),
            });
        }
        Err(source) => return Err(io_err(source).into()),
    };
    let (start, discarded) = match store.read::<Checkpoint>(ViewName::GraphCheckpoint) {
        Ok(Some(envelope)) if until.is_some_and(|seq| seq < envelope.data.snapshot.seq) => (None, None),
        Ok(Some(envelope)) => match snapshot_agrees(&envelope.ledger_head, &envelope.data)
            .and_then(|()| agrees(&file, &path, &envelope.ledger_head, envelope.data.head_offset, envelope.data.end))
        {
            Ok(()) => (Some(envelope.data), None),
            Err(why) => (None, Some(why)),
        },
        Ok(None) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(why) = &discarded {
        tracing::warn!(why, "graph checkpoint discarded; projecting from the first event");
    }
    let (mut snapshot, from) = match start {
        Some(checkpoint) => {
            let from = Scan {
                head: LedgerHead { seq: checkpoint.snapshot.seq, hash: checkpoint.snapshot.hash.clone() },
                events: 0,
                newest_version: 0,
                torn_tail: None,
                end: checkpoint.end,
                head_offset: checkpoint.head_offset,
            };
            (checkpoint.snapshot, from)
        }
        None => (GraphSnapshot::default(), Scan::empty()),
    };
    let resumed_at = snapshot.seq;
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(from.end)).map_err(io_err)?;
    let until = until.unwrap_or(u64::MAX);
    let step = |event: ledger::EventRef<'_>| Ok((event.seq <= until).then(|| Step::of(event)));
    let scan = scan_map(reader, &path, &from, step, |step| {
        if let Some(step) = step {
            snapshot.apply_step(step);
        }
    })?;
    Ok(Projection { snapshot, resumed_at, discarded, events_read: scan.events, scan })
}

/// Checks that the checkpoint's snapshot is at its envelope's head.
fn snapshot_agrees(head: &LedgerHead, checkpoint: &Checkpoint) -> Result<(), String> {
    if checkpoint.snapshot.seq != head.seq || checkpoint.snapshot.hash != head.hash {
        return Err("its snapshot and its ledger_head disagree".to_owned());
    }
    Ok(())
}

/// Checks that the ledger holds the event `head` as a whole line at bytes
/// `head_offset..end`.
fn agrees(file: &std::fs::File, path: &Path, head: &LedgerHead, head_offset: u64, end: u64) -> Result<(), String> {
    if head.seq == 0 {
        return Err("it is empty".to_owned());
    }
    let mut reader = BufReader::new(file.try_clone().map_err(|e| e.to_string())?);
    reader.seek(SeekFrom::Start(head_offset)).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if head_offset + line.len() as u64 != end || line.last() != Some(&b'\n') {
        return Err(format!("the ledger has no whole line at bytes {head_offset}..{end}"));
    }
    let (event, hash) =
        ledger::scan::decode(&line).map_err(|problem| format!("the line at byte {head_offset} is {problem}"))?;
    if event.seq != head.seq || event.hash != head.hash || hash != event.hash {
        return Err(format!(
            "the ledger holds event {} with hash {} at byte {head_offset}, the checkpoint expects event {} with hash {}",
            event.seq, event.hash, head.seq, head.hash
        ));
    }
    Ok(())
}

/// Writes the projection as the new checkpoint (nothing for an empty ledger).
pub fn write(store: &StateStore, written_at: &str, projection: &Projection) -> Result<(), StateError> {
    if projection.snapshot.seq == 0 {
        return Ok(());
    }
    let checkpoint = Checkpoint {
        head_offset: projection.scan.head_offset,
        end: projection.scan.end,
        snapshot: projection.snapshot.clone(),
    };
    store.write(ViewName::GraphCheckpoint, written_at, &projection.scan.head, &checkpoint)
}
