//! `HermesEvent`: one line of `state/runtime_events.jsonl`.
//!
//! On disk each event is one line of JSON with the fields below, in any key
//! order. `hash` is the lower-case hex SHA-256 of the canonical JSON
//! ([`crate::canonical`]) of the event without its `hash` field; `prev_hash`
//! is the previous event's `hash` ([`GENESIS_HASH`] for the first), so the
//! lines form a chain that any edit, insertion, deletion or reordering breaks.
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
        hash_of(&serde_json::to_value(self).unwrap_or(Value::Null))
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
