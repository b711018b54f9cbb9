//! `HermesEvent`: one line of `state/runtime_events.jsonl`.
//!
//! On disk each event is one line of JSON with the fields below, in any key
//! order. `hash` is the lower-case hex SHA-256 of the canonical JSON
//! ([`crate::canonical`]) of the event without its `hash` field; `prev_hash`
//! is the previous event's `hash` ([`GENESIS_HASH`] for the first), so the
//! lines form a chain that any edit, insertion, deletion or reordering breaks.
//!
//! Writers put the members in canonical order with `hash` last
//! ([`HermesEvent::seal`]): everything before `,"hash":` plus the closing
//! brace is then exactly the canonical JSON the hash covers, so a reader
//! verifies such a line by hashing its bytes, without rebuilding it. Lines
//! in any other layout (written before this layout, or by hand) verify
//! through their canonical JSON, as before; both are the same hash.
//!
//! `v` is the event format version. Readers accept every version up to
//! [`EVENT_FORMAT_VERSION`] (and verify newer ones as far as the chain goes);
//! writers refuse to append after an event newer than they are.

use crate::canonical;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event format this build writes.
pub const EVENT_FORMAT_VERSION: u32 = 1;

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One ledger event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HermesEvent {
    /// Event format version.
    pub v: u32,
    /// Sequence number: 1 for the first event, +1 for each next one. It is
    /// the ledger's logical clock.
    pub seq: u64,
    /// Wall-clock time of the append, RFC 3339 UTC.
    pub time: String,
    /// Id of the tick or cycle the event belongs to.
    pub tick: String,
    /// What happened (see [`EventKind`]); kept as text so that events of a
    /// newer format still verify.
    pub kind: String,
    /// What it happened to: a repository name, `cycle` or `ledger`.
    pub subject: String,
    /// Kind-specific details.
    pub payload: Value,
    /// `hash` of the previous event.
    pub prev_hash: String,
    /// Hash of this event (see module docs).
    pub hash: String,
}

impl HermesEvent {
    /// The hash this event's contents call for.
    pub fn compute_hash(&self) -> String {
        canonical::sha256_hex(&self.as_ref().canonical_body())
    }

    /// Sets `hash` from the contents and returns the event's line as
    /// writers write it: canonical members, `hash` last, `\n` at the end.
    pub fn seal(&mut self) -> Vec<u8> {
        let mut line = self.as_ref().canonical_body();
        self.hash = canonical::sha256_hex(&line);
        line.pop(); // the closing brace
        line.extend_from_slice(HASH_MEMBER);
        line.extend_from_slice(self.hash.as_bytes());
        line.extend_from_slice(b"\"}\n");
        line
    }

    /// The event as a borrowed view.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            v: self.v,
            seq: self.seq,
            time: &self.time,
            tick: &self.tick,
            kind: &self.kind,
            subject: &self.subject,
            payload: Payload::Value(std::borrow::Cow::Borrowed(&self.payload)),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

/// What precedes the hash at the end of a line [`HermesEvent::seal`] wrote.
const HASH_MEMBER: &[u8] = b",\"hash\":\"";

/// Length of the end of a sealed line: `,"hash":"`, 64 hex digits, `"}`.
const SEALED_TAIL: usize = HASH_MEMBER.len() + 64 + 2;

/// Whether `text` (a line without its newline) is in the layout
/// [`HermesEvent::seal`] writes and its bytes (everything before `,"hash":`
/// plus the closing brace) hash to the hash it carries.
pub fn seal_verifies(text: &[u8]) -> bool {
    let Some(split) = text.len().checked_sub(SEALED_TAIL) else { return false };
    let (body, tail) = text.split_at(split);
    let Some(stored) = tail.strip_prefix(HASH_MEMBER).and_then(|t| t.strip_suffix(b"\"}")) else { return false };
    use sha2::Digest as _;
    let mut sha = sha2::Sha256::new();
    sha.update(body);
    sha.update(b"}");
    canonical::sha256_hex_bytes(sha.finalize().into()) == stored
}

/// A `hash` or `prev_hash` as the chain compares them: inline when it has
/// the length of a SHA-256 in hex (every well-formed one), as text
/// otherwise (a damaged line; it never matches a computed hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainHash {
    Hex([u8; 64]),
    Other(String),
}

impl ChainHash {
    pub fn parse(text: &str) -> ChainHash {
        match <[u8; 64]>::try_from(text.as_bytes()) {
            Ok(hex) => ChainHash::Hex(hex),
            Err(_) => ChainHash::Other(text.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Built from a whole `str` of 64 bytes: valid UTF-8.
            ChainHash::Hex(hex) => std::str::from_utf8(hex).unwrap_or_default(),
            ChainHash::Other(text) => text,
        }
    }

    /// Replaces `out` with the hash's text (reusing its allocation).
    pub fn write_to(&self, out: &mut String) {
        out.clear();
        out.push_str(self.as_str());
    }
}

impl std::fmt::Display for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A borrowed event: the members of a ledger line as the scan found them
/// (the payload still as its raw JSON when the line was read in the sealed
/// layout), or of a [`HermesEvent`].
#[derive(Debug, Clone)]
pub struct EventRef<'a> {
    pub v: u32,
    pub seq: u64,
    pub time: &'a str,
    pub tick: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub payload: Payload<'a>,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// An event's payload, parsed or not yet.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// The JSON text as the line holds it.
    Raw(&'a serde_json::value::RawValue),
    Value(std::borrow::Cow<'a, Value>),
}

impl Payload<'_> {
    /// The payload read as `T` (`None` when it does not fit `T`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        match self {
            Payload::Raw(raw) => serde_json::from_str(raw.get())
                .ok()
                // serde_json::Value keeps the last of duplicated members; so does this.
                .or_else(|| T::deserialize(&serde_json::from_str::<Value>(raw.get()).ok()?).ok()),
            Payload::Value(value) => T::deserialize(value.as_ref()).ok(),
        }
    }

    /// The payload as a JSON value.
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self {
            Payload::Raw(raw) => serde_json::from_str(raw.get()),
            Payload::Value(value) => Ok(value.into_owned()),
        }
    }
}

impl EventRef<'_> {
    /// The canonical JSON of the event without `hash`: what its hash covers.
    pub fn canonical_body(&self) -> Vec<u8> {
        use crate::canonical::{write_scalar, write_value};
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"kind\":");
        write_scalar(self.kind, &mut out);
        out.extend_from_slice(b",\"payload\":");
        match &self.payload {
            Payload::Value(value) => write_value(value, &mut out),
            Payload::Raw(raw) => write_value(&serde_json::from_str(raw.get()).unwrap_or(Value::Null), &mut out),
        }
        out.extend_from_slice(b",\"prev_hash\":");
        write_scalar(self.prev_hash, &mut out);
        out.extend_from_slice(b",\"seq\":");
        write_scalar(&self.seq, &mut out);
        out.extend_from_slice(b",\"subject\":");
        write_scalar(self.subject, &mut out);
        out.extend_from_slice(b",\"tick\":");
        write_scalar(self.tick, &mut out);
        out.extend_from_slice(b",\"time\":");
        write_scalar(self.time, &mut out);
        out.extend_from_slice(b",\"v\":");
        write_scalar(&self.v, &mut out);
        out.push(b'}');
        out
    }

    /// The event as an owned [`HermesEvent`].
    pub fn into_owned(self) -> Result<HermesEvent, serde_json::Error> {
        Ok(HermesEvent {
            v: self.v,
            seq: self.seq,
            time: self.time.to_owned(),
            tick: self.tick.to_owned(),
            kind: self.kind.to_owned(),
            subject: self.subject.to_owned(),
            payload: self.payload.into_value()?,
            prev_hash: self.prev_hash.to_owned(),
            hash: self.hash.to_owned(),
        })
    }
}

/// The chain hash of an event given as raw JSON: every member but `hash`
/// counts, including members a newer format added, so newer events verify.
pub fn hash_of(event: &Value) -> String {
    canonical::sha256_hex(&canonical::to_canonical_bytes_without(event, "hash"))
}

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// The kinds of event this build writes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The kind as written in the ledger.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $text,)*
                }
            }

            /// The kind named `text`, if this build knows it.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// A torn final line was repaired when the ledger was opened.
    LedgerRepaired = "ledger-repaired",
    /// A state view could not be read; it was moved aside and rebuilt.
    StateViewRebuilt = "state-view-rebuilt",
    /// A cycle began (payload: mode, policy digest, repo count).
    CycleStarted = "cycle-started",
    /// A cycle did not run because another one held the cycle lock
    /// (payload: the holder's pid, host and start time, when known).
    CycleSkipped = "cycle-skipped",
    /// A plugin was called (payload: the call record: plugin, version,
    /// digest, WIT and wasmtime versions, normalized input, output, fuel).
    PluginCalled = "plugin-called",
    /// A repository was probed (payload: probe facts, signals, score).
    RepoProbed = "repo-probed",
    /// Phase 1 produced a plan (payload: decision hash and decisions).
    PlanMade = "plan-made",
    /// A repository was fast-forwarded.
    RepoUpgraded = "repo-upgraded",
    /// A repository was left alone for now and will be retried.
    RepoDeferred = "repo-deferred",
    /// A repository cannot be upgraded until someone acts.
    RepoBlocked = "repo-blocked",
    /// A repository had nothing to do.
    RepoNoop = "repo-noop",
    /// A guarded apply was attempted and failed; nothing was changed.
    ApplyFailed = "apply-failed",
    /// A cycle ended (payload: counts by outcome).
    CycleFinished = "cycle-finished",
    /// A lease was granted (payload: the lease with its fencing token).
    LeaseGranted = "lease-granted",
    /// A lease was refused because another holder has it.
    LeaseConflict = "lease-conflict",
    /// An expired lease of another holder was taken over.
    LeaseTakeover = "lease-takeover",
    /// A lease was renewed.
    LeaseRenewed = "lease-renewed",
    /// A lease was released.
    LeaseReleased = "lease-released",
    /// A stale holder's fencing token was refused.
    FenceRejected = "fence-rejected",
    /// The resource sample and pressure level of a cycle.
    ResourcePressure = "resource-pressure",
    /// A remote's health changed (payload: remote, figures, circuit).
    RemoteHealthChanged = "remote-health-changed",
    /// The endpoint selected for a repository changed (logical promotion).
    RemotePromoted = "remote-promoted",
    /// One integrity check ran (payload: check name, ok, detail).
    GateChecked = "gate-checked",
    /// The integrity gate failed: no repository is mutated this cycle.
    IntegrityFailed = "integrity-failed",
    /// A rollback plan was persisted before an apply.
    RollbackPlanned = "rollback-planned",
    /// The canary check ran in a temporary worktree.
    CanaryRun = "canary-run",
    /// The post-apply health check ran.
    HealthChecked = "health-checked",
    /// A repository was rolled back to its recorded HEAD.
    RolledBack = "rolled-back",
    /// An apply left unsettled by a killed cycle was inspected and put
    /// right at the start of the next cycle (payload: the killed tick,
    /// branch, previous HEAD, target, what was found, what was done).
    ApplyRecovered = "apply-recovered",
    /// `hermes tick` (or `hermes job run`) took the tick lock (payload:
    /// trigger, configured jobs, the ids of the due ones).
    TickStarted = "tick-started",
    /// A tick did not run because another held the tick lock (payload: the
    /// holder's pid, host and start time, when known).
    TickSkipped = "tick-skipped",
    /// A tick ended (payload: jobs run, outcome counts, exit code).
    TickFinished = "tick-finished",
    /// A job started (payload: job id, kind, schedule, trigger, argv).
    JobStarted = "job-started",
    /// A job ended (payload: outcome, detail, and for scripts the exit
    /// code, signal, timeout, duration and bounded output tails).
    JobFinished = "job-finished",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
