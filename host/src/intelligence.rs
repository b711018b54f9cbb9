//! Runtime intelligence: per-repository outcome statistics folded from the
//! ledger's outcome events, persisted as the `runtime_intelligence.json` view.
//!
//! This module owns [`RuntimeIntelligence`] (the fold and its view) and the
//! WIT `intelligence` record handed to the risk-scorer plugin
//! ([`RuntimeIntelligence::wit_record`]). It is "local memory", not a model:
//! integer counters and integer ratios in parts per million (ppm), derived
//! only from ledger events, so replaying the ledger rebuilds it exactly
//! ([`RuntimeIntelligence::rebuild`]).
//!
//! # What counts
//!
//! Only the outcome events of a repository are folded (the repository is the
//! payload's `repo`, or the event's `subject` when the payload has none):
//!
//! | event | effect |
//! |-------|--------|
//! | `repo-upgraded` | the tick's attempt, marked upgraded |
//! | `apply-failed` | the tick's attempt, marked failed |
//! | `rolled-back` | the tick's attempt, marked failed and rolled back (with `"ok": false` in the payload, the rollback itself failed: marked failed only) |
//! | `repo-deferred`, `repo-blocked`, `repo-noop` | no attempt; only `last_outcome_seq` moves |
//!
//! **One attempt per repository per tick.** All attempt events of one
//! repository that carry the same `tick` describe one attempt. The first of
//! them opens it (in the hour of day of its `time`); later ones amend it. An
//! attempt is a *failure* if any of its events is `apply-failed` or
//! `rolled-back`, otherwise a *success*; it is *rolled back* if any of its
//! events is `rolled-back`. So `repo-upgraded` followed by `rolled-back` in
//! the same tick (the post-apply health check failed) turns that success into
//! a failure with a rollback, `rolled-back` and `apply-failed` in either order
//! are one failed, rolled-back attempt, and a `rolled-back` in a tick without
//! another attempt event (e.g. recovery of an apply that crashed in an earlier
//! tick) is an attempt of its own that failed and was rolled back. Hence
//! always `attempts == successes + failures` and `rollbacks <= failures`.
//! Only the latest tick's attempt of a repository can be amended (ticks do
//! not interleave in the ledger).
//!
//! Events are folded in ledger order. An event whose `seq` is not above its
//! repository's `last_outcome_seq` has been folded already and is ignored, so
//! folding the same events twice changes nothing.
//!
//! # Derived figures
//!
//! Recomputed after every fold, all rounded down:
//!
//! - `rollback_rate_ppm = rollbacks * 1e6 / attempts` (0 without attempts);
//! - `failure_probability_ppm = (failures + 1) * 1e6 / (attempts + 2)`
//!   (Laplace's rule of succession: 500000 for a repository never attempted);
//! - `confidence_ppm = attempts * 1e6 / (attempts + 10)`: 0 with no sample,
//!   500000 at 10 attempts, 909090 at 100; `sample_size = attempts`;
//! - `risky_hours`: the UTC hours of day `h` with `hourly_failures[h] >= 2`
//!   and `2 * hourly_failures[h] >= hourly_attempts[h]` (at least two
//!   failures, and at least half the attempts of that hour failed), ascending.
//!
//! An attempt whose event `time` is not RFC 3339 counts in the totals but in
//! no hour.
//!
//! # On disk
//!
//! `state/runtime_intelligence.json`, in the [`crate::state`] envelope; `data`
//! is a serialized [`RuntimeIntelligence`] (snake_case keys, integers only,
//! repositories in name order):
//!
//! ```json
//! { "format_version": 1, "view": "runtime_intelligence", "written_at": "2025-01-01T03:00:00.000Z",
//!   "ledger_head": { "seq": 42, "hash": "…" },
//!   "data": { "repos": { "api": {
//!     "attempts": 3, "successes": 2, "failures": 1, "rollbacks": 1,
//!     "rollback_rate_ppm": 333333, "failure_probability_ppm": 400000,
//!     "confidence_ppm": 230769, "sample_size": 3, "risky_hours": [],
//!     "hourly_attempts": [0, 0, 0, 3, 0, …24 numbers], "hourly_failures": [0, 0, 0, 1, 0, …],
//!     "last_outcome_seq": 41,
//!     "last_attempt": { "tick": "t-3", "hour": 3, "upgraded": true, "apply_failed": false, "rolled_back": true }
//!   } } } }
//! ```
//!
//! The WIT record ([`RepoIntelligence::wit_record`]) has the kebab-case keys
//! of `record intelligence` in `wit/0.1.0/types.wit`: `attempts, successes,
//! failures, rollbacks, rollback-rate-ppm, failure-probability-ppm,
//! confidence-ppm, sample-size, risky-hours`.

use crate::ledger::{self, EventKind, HermesEvent, LedgerError};
use crate::state::{Envelope, LedgerHead, StateError, StateStore, ViewName};
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{self, BufReader};

/// Hours in a day: the length of the hourly histograms.
pub const HOURS: usize = 24;

/// One million: ratios are parts per million.
pub const PPM: u32 = 1_000_000;

/// A repository's figures need at least this many failures in an hour of day
/// before that hour can be risky.
pub const RISKY_HOUR_MIN_FAILURES: u32 = 2;

/// The confidence reaches one half at this many attempts.
pub const CONFIDENCE_HALF_AT: u64 = 10;

/// Outcome statistics of every repository seen in the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeIntelligence {
    /// Per repository name, in name order.
    pub repos: BTreeMap<String, RepoIntelligence>,
}

/// Outcome statistics of one repository (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIntelligence {
    /// Upgrade attempts: `successes + failures`.
    pub attempts: u64,
    /// Attempts that were applied and not rolled back.
    pub successes: u64,
    /// Attempts that failed (apply failed or rolled back).
    pub failures: u64,
    /// Attempts that were rolled back (a subset of `failures`).
    pub rollbacks: u64,
    /// `rollbacks / attempts` in ppm; 0 without attempts.
    pub rollback_rate_ppm: u32,
    /// `(failures + 1) / (attempts + 2)` in ppm.
    pub failure_probability_ppm: u32,
    /// `attempts / (attempts + 10)` in ppm.
    pub confidence_ppm: u32,
    /// Number of outcomes the estimates rest on (= `attempts`).
    pub sample_size: u64,
    /// Hours of day (UTC) where failures cluster, ascending.
    pub risky_hours: Vec<u8>,
    /// Attempts per hour of day (UTC) of their first event.
    pub hourly_attempts: [u32; HOURS],
    /// Failed attempts per hour of day (UTC) of their first event.
    pub hourly_failures: [u32; HOURS],
    /// `seq` of the last outcome event of this repository folded in.
    pub last_outcome_seq: u64,
    /// The attempt of the latest tick that had one, which later events of
    /// the same tick may still amend.
    pub last_attempt: Option<Attempt>,
}

/// What the events of one tick say about one repository's attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The tick the attempt belongs to.
    pub tick: String,
    /// Hour of day (UTC) of its first event; `None` if that time did not parse.
    pub hour: Option<u8>,
    /// A `repo-upgraded` event was seen.
    pub upgraded: bool,
    /// An `apply-failed` event was seen.
    pub apply_failed: bool,
    /// A `rolled-back` event was seen.
    pub rolled_back: bool,
}

impl Attempt {
    /// Whether the attempt counts as a failure.
    pub fn failed(&self) -> bool {
        self.apply_failed || self.rolled_back
    }
}

/// The part an outcome event plays in an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Upgraded,
    ApplyFailed,
    RolledBack,
}

impl Default for RepoIntelligence {
    /// The figures of a repository never attempted.
    fn default() -> Self {
        let mut zero = Self {
            attempts: 0,
            successes: 0,
            failures: 0,
            rollbacks: 0,
            rollback_rate_ppm: 0,
            failure_probability_ppm: 0,
            confidence_ppm: 0,
            sample_size: 0,
            risky_hours: Vec::new(),
            hourly_attempts: [0; HOURS],
            hourly_failures: [0; HOURS],
            last_outcome_seq: 0,
            last_attempt: None,
        };
        zero.recompute();
        zero
    }
}

impl RuntimeIntelligence {
    /// Folds one ledger event in; events that are not outcome events, and
    /// outcome events already folded, are ignored.
    pub fn apply(&mut self, event: &HermesEvent) {
        let step = match EventKind::parse(&event.kind) {
            Some(EventKind::RepoUpgraded) => Some(Step::Upgraded),
            Some(EventKind::ApplyFailed) => Some(Step::ApplyFailed),
            // A rollback that did not succeed (`"ok": false`) leaves the
            // attempt failed but not rolled back.
            Some(EventKind::RolledBack) if event.payload.get("ok") == Some(&Value::Bool(false)) => {
                Some(Step::ApplyFailed)
            }
            Some(EventKind::RolledBack) => Some(Step::RolledBack),
            Some(EventKind::RepoDeferred | EventKind::RepoBlocked | EventKind::RepoNoop) => None,
            _ => return,
        };
        let repo = repo_of(event);
        if self.repos.get(repo).is_some_and(|r| event.seq <= r.last_outcome_seq) {
            return;
        }
        let entry = self.repos.entry(repo.to_owned()).or_default();
        entry.last_outcome_seq = event.seq;
        if let Some(step) = step {
            entry.record(step, &event.tick, hour_of(&event.time));
        }
        entry.recompute();
    }

    /// Folds `events` (in ledger order) into fresh statistics.
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a HermesEvent>) -> Self {
        let mut intelligence = Self::default();
        for event in events {
            intelligence.apply(event);
        }
        intelligence
    }

    /// The statistics of `repo`; the zero record for a repository never seen.
    pub fn repo(&self, repo: &str) -> RepoIntelligence {
        self.repos.get(repo).cloned().unwrap_or_default()
    }

    /// The WIT `intelligence` record of `repo` (kebab-case keys); a
    /// repository never seen gets the zero record (failure probability
    /// 500000 ppm, confidence 0).
    pub fn wit_record(&self, repo: &str) -> Value {
        match self.repos.get(repo) {
            Some(r) => r.wit_record(),
            None => RepoIntelligence::default().wit_record(),
        }
    }

    /// Reads the `runtime_intelligence.json` view; `Ok(None)` if it does not exist.
    pub fn read(store: &StateStore) -> Result<Option<Envelope<Self>>, StateError> {
        store.read::<Self>(ViewName::RuntimeIntelligence)
    }

    /// The view's statistics if it exists and reflects exactly `head`;
    /// `Ok(None)` if it is missing or stale (then [`Self::rebuild_from_ledger`]).
    /// A corrupt view is [`StateError::Corrupt`], for the caller to quarantine.
    pub fn load_current(store: &StateStore, head: &LedgerHead) -> Result<Option<Self>, StateError> {
        Ok(Self::read(store)?.filter(|envelope| envelope.ledger_head == *head).map(|envelope| envelope.data))
    }

    /// Atomically writes the `runtime_intelligence.json` view; `head` is the
    /// last ledger event the statistics reflect.
    pub fn write(&self, store: &StateStore, written_at: &str, head: &LedgerHead) -> Result<(), StateError> {
        store.write(ViewName::RuntimeIntelligence, written_at, head, self)
    }

    /// Rebuilds the statistics by folding the whole ledger of `store`
    /// (verifying its chain); returns them with the ledger head they reflect.
    /// A missing ledger gives empty statistics at the genesis head.
    pub fn rebuild_from_ledger(store: &StateStore) -> Result<(Self, LedgerHead), LedgerError> {
        let path = store.path_of(ledger::LEDGER_FILE);
        let mut intelligence = Self::default();
        let scanned = match store.dir().open(ledger::LEDGER_FILE) {
            Ok(file) => ledger::scan(BufReader::new(file), &path, |event| intelligence.apply(event))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ledger::Scan::empty(),
            Err(source) => return Err(LedgerError::Io { path, source }),
        };
        Ok((intelligence, scanned.head))
    }
}

impl RepoIntelligence {
    /// The WIT `intelligence` record (kebab-case keys as in `wit/0.1.0/types.wit`).
    pub fn wit_record(&self) -> Value {
        json!({
            "attempts": self.attempts,
            "successes": self.successes,
            "failures": self.failures,
            "rollbacks": self.rollbacks,
            "rollback-rate-ppm": self.rollback_rate_ppm,
            "failure-probability-ppm": self.failure_probability_ppm,
            "confidence-ppm": self.confidence_ppm,
            "sample-size": self.sample_size,
            "risky-hours": self.risky_hours,
        })
    }

    /// Opens or amends the attempt of `tick` with one event's step.
    fn record(&mut self, step: Step, tick: &str, hour: Option<u8>) {
        let mut attempt = match self.last_attempt.take() {
            Some(open) if open.tick == tick => {
                self.count(&open, false);
                open
            }
            _ => Attempt { tick: tick.to_owned(), hour, upgraded: false, apply_failed: false, rolled_back: false },
        };
        match step {
            Step::Upgraded => attempt.upgraded = true,
            Step::ApplyFailed => attempt.apply_failed = true,
            Step::RolledBack => attempt.rolled_back = true,
        }
        self.count(&attempt, true);
        self.last_attempt = Some(attempt);
    }

    /// Adds an attempt's contribution to the counters, or takes it away.
    fn count(&mut self, attempt: &Attempt, add: bool) {
        fn bump64(counter: &mut u64, add: bool) {
            *counter = if add { counter.saturating_add(1) } else { counter.saturating_sub(1) };
        }
        fn bump32(counter: &mut u32, add: bool) {
            *counter = if add { counter.saturating_add(1) } else { counter.saturating_sub(1) };
        }
        let failed = attempt.failed();
        bump64(&mut self.attempts, add);
        bump64(if failed { &mut self.failures } else { &mut self.successes }, add);
        if attempt.rolled_back {
            bump64(&mut self.rollbacks, add);
        }
        if let Some(hour) = attempt.hour.map(usize::from).filter(|h| *h < HOURS) {
            bump32(&mut self.hourly_attempts[hour], add);
            if failed {
                bump32(&mut self.hourly_failures[hour], add);
            }
        }
    }

    /// Recomputes the derived figures from the counters.
    fn recompute(&mut self) {
        self.rollback_rate_ppm = ppm(self.rollbacks, self.attempts);
        self.failure_probability_ppm = ppm(self.failures.saturating_add(1), self.attempts.saturating_add(2));
        self.confidence_ppm = ppm(self.attempts, self.attempts.saturating_add(CONFIDENCE_HALF_AT));
        self.sample_size = self.attempts;
        self.risky_hours = (0..HOURS)
            .filter(|&h| {
                let (failures, attempts) = (self.hourly_failures[h], self.hourly_attempts[h]);
                failures >= RISKY_HOUR_MIN_FAILURES && u64::from(failures) * 2 >= u64::from(attempts)
            })
            .map(|h| h as u8)
            .collect();
    }
}

/// `num / den` in parts per million, rounded down, capped at 1000000; 0 when `den` is 0.
fn ppm(num: u64, den: u64) -> u32 {
    if den == 0 {
        return 0;
    }
    let value = u128::from(num) * u128::from(PPM) / u128::from(den);
    value.min(u128::from(PPM)) as u32
}

/// The repository an outcome event is about.
fn repo_of(event: &HermesEvent) -> &str {
    event.payload.get("repo").and_then(Value::as_str).filter(|name| !name.is_empty()).unwrap_or(&event.subject)
}

/// Hour of day (UTC) of an RFC 3339 time.
fn hour_of(time: &str) -> Option<u8> {
    DateTime::parse_from_rfc3339(time).ok().map(|t| t.with_timezone(&Utc).hour() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ledger::{EventLedger, GENESIS_HASH};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn event(seq: u64, tick: &str, kind: EventKind, repo: &str, hour: u8) -> HermesEvent {
        HermesEvent {
            v: 1,
            seq,
            time: format!("2025-03-04T{hour:02}:17:00.000Z"),
            tick: tick.to_owned(),
            kind: kind.as_str().to_owned(),
            subject: repo.to_owned(),
            payload: json!({ "repo": repo, "outcome": "x" }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Events from (tick, kind, repo, hour) with seq 1, 2, ...
    fn events(spec: &[(&str, EventKind, &str, u8)]) -> Vec<HermesEvent> {
        spec.iter()
            .enumerate()
            .map(|(i, (tick, kind, repo, hour))| event(i as u64 + 1, tick, *kind, repo, *hour))
            .collect()
    }

    use EventKind::{ApplyFailed, RepoBlocked, RepoDeferred, RepoNoop, RepoUpgraded, RolledBack};

    #[test]
    fn successes_and_failures_give_the_documented_figures() {
        let evs = events(&[
            ("t1", RepoUpgraded, "api", 1),
            ("t2", RepoUpgraded, "api", 2),
            ("t3", ApplyFailed, "api", 3),
            ("t4", RepoUpgraded, "api", 4),
            ("t5", RepoDeferred, "api", 5),
            ("t6", RepoBlocked, "api", 6),
            ("t7", RepoNoop, "api", 7),
        ]);
        let intel = RuntimeIntelligence::rebuild(&evs);
        let api = &intel.repos["api"];
        assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (4, 3, 1, 0));
        assert_eq!(api.rollback_rate_ppm, 0);
        assert_eq!(api.failure_probability_ppm, 333_333); // (1+1)/(4+2)
        assert_eq!(api.confidence_ppm, 285_714); // 4/14
        assert_eq!(api.sample_size, 4);
        assert_eq!(api.last_outcome_seq, 7);
        assert_eq!(api.hourly_attempts[3], 1);
        assert_eq!(api.hourly_failures[3], 1);
        assert_eq!(api.hourly_attempts.iter().sum::<u32>(), 4);
        assert!(api.risky_hours.is_empty());
    }

    #[test]
    fn deferred_blocked_and_noop_are_not_attempts() {
        let evs = events(&[("t1", RepoDeferred, "lib", 0), ("t2", RepoBlocked, "lib", 0), ("t3", RepoNoop, "lib", 0)]);
        let intel = RuntimeIntelligence::rebuild(&evs);
        let lib = &intel.repos["lib"];
        assert_eq!(lib.attempts, 0);
        assert_eq!(lib.last_outcome_seq, 3);
        assert_eq!(lib.wit_record(), RepoIntelligence::default().wit_record());
    }

    #[test]
    fn rollback_after_upgrade_in_the_same_tick_turns_the_success_into_a_failure() {
        let evs = events(&[("t1", RepoUpgraded, "api", 9), ("t1", RolledBack, "api", 10)]);
        let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
        assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (1, 0, 1, 1));
        assert_eq!(api.rollback_rate_ppm, 1_000_000);
        assert_eq!(api.failure_probability_ppm, 666_666); // 2/3
        assert_eq!(api.confidence_ppm, 90_909); // 1/11
        // The attempt stays in the hour of its first event.
        assert_eq!((api.hourly_attempts[9], api.hourly_failures[9]), (1, 1));
        assert_eq!(api.hourly_attempts[10], 0);
    }

    #[test]
    fn rollback_and_apply_failed_in_one_tick_are_one_attempt_in_either_order() {
        for pair in [[RolledBack, ApplyFailed], [ApplyFailed, RolledBack]] {
            let evs = events(&[("t1", pair[0], "api", 1), ("t1", pair[1], "api", 1)]);
            let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
            assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (1, 0, 1, 1), "{pair:?}");
        }
    }

    #[test]
    fn the_execute_stage_sequence_is_one_failed_rolled_back_attempt() {
        // What phase 2 writes when the post-apply health check fails:
        // health-checked, rolled-back {from, to, ok}, then apply-failed.
        let mut evs = events(&[
            ("t1", EventKind::HealthChecked, "api", 4),
            ("t1", RolledBack, "api", 4),
            ("t1", ApplyFailed, "api", 4),
        ]);
        evs[1].payload = json!({ "from": "b", "to": "a", "ok": true, "error": null });
        let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
        assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (1, 0, 1, 1));
        assert_eq!(api.last_outcome_seq, 3);
        // A rollback that failed is a failure but no rollback.
        evs[1].payload["ok"] = json!(false);
        let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
        assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (1, 0, 1, 0));
    }

    #[test]
    fn a_rollback_in_a_later_tick_is_an_attempt_of_its_own() {
        let evs =
            events(&[("t1", RepoUpgraded, "api", 1), ("t2", RolledBack, "api", 2), ("t2", RepoDeferred, "api", 2)]);
        let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
        assert_eq!((api.attempts, api.successes, api.failures, api.rollbacks), (2, 1, 1, 1));
        assert_eq!(api.rollback_rate_ppm, 500_000);
        assert_eq!(api.failure_probability_ppm, 500_000); // 2/4
    }

    #[test]
    fn repositories_are_counted_apart_and_the_payload_repo_wins_over_the_subject() {
        let mut evs = events(&[("t1", RepoUpgraded, "api", 1), ("t1", ApplyFailed, "web", 1)]);
        evs[1].subject = "cycle".into();
        let intel = RuntimeIntelligence::rebuild(&evs);
        assert_eq!(intel.repos.keys().collect::<Vec<_>>(), ["api", "web"]);
        assert_eq!(intel.repos["api"].successes, 1);
        assert_eq!(intel.repos["web"].failures, 1);
        // Without a payload repo, the subject names it.
        let mut ev = event(1, "t1", RepoUpgraded, "db", 1);
        ev.payload = json!({});
        assert_eq!(RuntimeIntelligence::rebuild([&ev]).repos["db"].attempts, 1);
    }

    #[test]
    fn other_event_kinds_are_ignored() {
        let evs = events(&[("t1", EventKind::CycleStarted, "cycle", 1), ("t1", EventKind::PlanMade, "api", 1)]);
        assert_eq!(RuntimeIntelligence::rebuild(&evs), RuntimeIntelligence::default());
    }

    #[test]
    fn folding_an_event_twice_changes_nothing() {
        let evs = events(&[("t1", RepoUpgraded, "api", 1), ("t2", ApplyFailed, "api", 1)]);
        let once = RuntimeIntelligence::rebuild(&evs);
        let twice = RuntimeIntelligence::rebuild(evs.iter().chain(evs.iter()));
        assert_eq!(once, twice);
    }

    #[test]
    fn an_unparseable_time_counts_in_the_totals_but_in_no_hour() {
        let mut ev = event(1, "t1", ApplyFailed, "api", 0);
        ev.time = "yesterday".into();
        let api = &RuntimeIntelligence::rebuild([&ev]).repos["api"];
        assert_eq!((api.attempts, api.failures), (1, 1));
        assert_eq!(api.hourly_attempts, [0; HOURS]);
    }

    #[test]
    fn hours_are_taken_in_utc() {
        let mut ev = event(1, "t1", RepoUpgraded, "api", 0);
        ev.time = "2025-03-04T23:30:00-02:00".into(); // 01:30 UTC
        assert_eq!(RuntimeIntelligence::rebuild([&ev]).repos["api"].hourly_attempts[1], 1);
    }

    #[test]
    fn risky_hours_need_two_failures_and_half_the_attempts_of_the_hour() {
        let mut spec = Vec::new();
        let mut tick = 0;
        let mut add = |kind, hour, spec: &mut Vec<(String, EventKind, u8)>| {
            tick += 1;
            spec.push((format!("t{tick}"), kind, hour));
        };
        // 03h: 2 failures of 3 attempts (67%): risky.
        add(ApplyFailed, 3, &mut spec);
        add(ApplyFailed, 3, &mut spec);
        add(RepoUpgraded, 3, &mut spec);
        // 05h: 1 failure of 1 (100%) but only one failure: not risky.
        add(ApplyFailed, 5, &mut spec);
        // 07h: 2 failures of 5 (40%): not risky.
        add(ApplyFailed, 7, &mut spec);
        add(ApplyFailed, 7, &mut spec);
        for _ in 0..3 {
            add(RepoUpgraded, 7, &mut spec);
        }
        // 21h: 2 failures of 4 (exactly 50%), one of them a rollback: risky.
        add(RepoUpgraded, 21, &mut spec);
        add(ApplyFailed, 21, &mut spec);
        add(RepoUpgraded, 21, &mut spec);
        add(RepoUpgraded, 21, &mut spec);
        let last = spec.last().unwrap().0.clone();
        spec.push((last, RolledBack, 22));
        let evs: Vec<HermesEvent> = spec
            .iter()
            .enumerate()
            .map(|(i, (tick, kind, hour))| event(i as u64 + 1, tick, *kind, "api", *hour))
            .collect();
        let api = &RuntimeIntelligence::rebuild(&evs).repos["api"];
        assert_eq!(api.risky_hours, vec![3, 21]);
        assert_eq!((api.hourly_attempts[21], api.hourly_failures[21]), (4, 2));
        assert_eq!(api.wit_record()["risky-hours"], json!([3, 21]));
    }

    #[test]
    fn a_repository_never_seen_gets_the_zero_record() {
        let record = RuntimeIntelligence::default().wit_record("nowhere");
        assert_eq!(
            record,
            json!({
                "attempts": 0, "successes": 0, "failures": 0, "rollbacks": 0,
                "rollback-rate-ppm": 0, "failure-probability-ppm": 500_000, "confidence-ppm": 0,
                "sample-size": 0, "risky-hours": [],
            })
        );
    }

    /// The field names of `record intelligence` in the WIT package.
    fn wit_fields() -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/0.1.0/types.wit");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let start = text.find("record intelligence {").expect("record intelligence in types.wit");
        let body = &text[start + "record intelligence {".len()..];
        let body = &body[..body.find('}').expect("end of record intelligence")];
        body.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("//"))
            .map(|line| line.split(':').next().unwrap().trim().to_owned())
            .collect()
    }

    #[test]
    fn wit_record_keys_are_the_wit_field_names() {
        let fields = wit_fields();
        let expected = [
            "attempts",
            "successes",
            "failures",
            "rollbacks",
            "rollback-rate-ppm",
            "failure-probability-ppm",
            "confidence-ppm",
            "sample-size",
            "risky-hours",
        ];
        assert_eq!(fields, expected);
        let evs = events(&[("t1", RepoUpgraded, "api", 1)]);
        let record = RuntimeIntelligence::rebuild(&evs).wit_record("api");
        let keys: BTreeSet<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, fields.iter().map(String::as_str).collect::<BTreeSet<_>>());
    }

    #[test]
    fn the_view_round_trips_through_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(RuntimeIntelligence::read(&store).unwrap().is_none());
        let evs =
            events(&[("t1", RepoUpgraded, "api", 1), ("t2", ApplyFailed, "web", 4), ("t2", RolledBack, "web", 4)]);
        let intel = RuntimeIntelligence::rebuild(&evs);
        let head = LedgerHead { seq: 3, hash: "ab".repeat(32) };
        intel.write(&store, "2025-03-04T05:00:00.000Z", &head).unwrap();
        let envelope = RuntimeIntelligence::read(&store).unwrap().unwrap();
        assert_eq!(envelope.view, "runtime_intelligence");
        assert_eq!(envelope.ledger_head, head);
        assert_eq!(envelope.data, intel);
        assert_eq!(RuntimeIntelligence::load_current(&store, &head).unwrap(), Some(intel.clone()));
        let newer = LedgerHead { seq: 4, hash: "cd".repeat(32) };
        assert_eq!(RuntimeIntelligence::load_current(&store, &newer).unwrap(), None);
        // Integers only on disk.
        let text = std::fs::read_to_string(dir.path().join("runtime_intelligence.json")).unwrap();
        let raw: Value = serde_json::from_str(&text).unwrap();
        fn no_floats(v: &Value) -> bool {
            match v {
                Value::Number(n) => n.is_u64() || n.is_i64(),
                Value::Array(a) => a.iter().all(no_floats),
                Value::Object(o) => o.values().all(no_floats),
                _ => true,
            }
        }
        assert!(no_floats(&raw));
    }

    #[test]
    fn rebuild_from_ledger_folds_the_real_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let (empty, head) = RuntimeIntelligence::rebuild_from_ledger(&store).unwrap();
        assert_eq!(empty, RuntimeIntelligence::default());
        assert_eq!(head, LedgerHead { seq: 0, hash: GENESIS_HASH.to_owned() });

        let clock = Clock::Fixed("2025-03-04T13:05:00Z".parse().unwrap());
        let mut ledger = EventLedger::open(store.dir(), dir.path(), clock).unwrap();
        let mut written = Vec::new();
        for (tick, kind, repo) in
            [("t1", RepoUpgraded, "api"), ("t1", EventKind::CycleFinished, "cycle"), ("t2", ApplyFailed, "api")]
        {
            written.push(ledger.append(tick, kind, repo, json!({ "repo": repo })).unwrap());
        }
        let (intel, head) = RuntimeIntelligence::rebuild_from_ledger(&store).unwrap();
        assert_eq!(&head, ledger.head());
        assert_eq!(intel, RuntimeIntelligence::rebuild(&written));
        assert_eq!((intel.repos["api"].attempts, intel.repos["api"].hourly_attempts[13]), (2, 2));
    }

    const KINDS: [EventKind; 7] =
        [RepoUpgraded, ApplyFailed, RolledBack, RepoDeferred, RepoBlocked, RepoNoop, EventKind::CycleFinished];

    /// (repo index, kind index, start a new tick?, hour)
    fn arb_steps() -> impl Strategy<Value = Vec<(usize, usize, bool, u8)>> {
        prop::collection::vec((0usize..3, 0usize..KINDS.len(), any::<bool>(), 0u8..24), 0..60)
    }

    fn to_events(steps: &[(usize, usize, bool, u8)]) -> Vec<HermesEvent> {
        let mut tick = 0;
        steps
            .iter()
            .enumerate()
            .map(|(i, &(repo, kind, new_tick, hour))| {
                tick += usize::from(new_tick);
                event(i as u64 + 1, &format!("t{tick}"), KINDS[kind], ["api", "web", "db"][repo], hour)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_sequence_keeps_the_invariants(steps in arb_steps()) {
            let evs = to_events(&steps);
            let intel = RuntimeIntelligence::rebuild(&evs);
            for r in intel.repos.values() {
                prop_assert_eq!(r.attempts, r.successes + r.failures);
                prop_assert!(r.rollbacks <= r.failures);
                prop_assert_eq!(r.sample_size, r.attempts);
                for value in [r.rollback_rate_ppm, r.failure_probability_ppm, r.confidence_ppm] {
                    prop_assert!(value <= PPM);
                }
                prop_assert_eq!(u64::from(r.hourly_attempts.iter().sum::<u32>()), r.attempts);
                prop_assert_eq!(u64::from(r.hourly_failures.iter().sum::<u32>()), r.failures);
                for h in 0..HOURS {
                    prop_assert!(r.hourly_failures[h] <= r.hourly_attempts[h]);
                }
                prop_assert!(r.risky_hours.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(r.risky_hours.iter().all(|h| usize::from(*h) < HOURS));
                let record = r.wit_record();
                prop_assert!(record["failure-probability-ppm"].as_u64().unwrap() <= 1_000_000);
            }
            // Attempts never exceed the attempt events.
            let attempt_events = evs.iter().filter(|e| matches!(EventKind::parse(&e.kind), Some(RepoUpgraded | ApplyFailed | RolledBack))).count() as u64;
            prop_assert!(intel.repos.values().map(|r| r.attempts).sum::<u64>() <= attempt_events);
        }

        #[test]
        fn rebuild_equals_incremental_folding_across_a_persisted_view(steps in arb_steps(), cut in 0usize..60) {
            let evs = to_events(&steps);
            let rebuilt = RuntimeIntelligence::rebuild(&evs);
            let cut = cut.min(evs.len());
            // Fold a prefix, persist it as JSON, reload, fold the rest
            // (and, being idempotent, the whole ledger again).
            let mut first = RuntimeIntelligence::default();
            for e in &evs[..cut] {
                first.apply(e);
            }
            let json = serde_json::to_string(&first).unwrap();
            let mut resumed: RuntimeIntelligence = serde_json::from_str(&json).unwrap();
            for e in &evs[cut..] {
                resumed.apply(e);
            }
            prop_assert_eq!(&resumed, &rebuilt);
            for e in &evs {
                resumed.apply(e);
            }
            prop_assert_eq!(&resumed, &rebuilt);
        }
    }
}
