//! Per-remote health and circuit breaking, persisted as
//! `state/remote_health.json` ([`ViewName::RemoteHealth`]).
//!
//! Health is keyed by the remote's **URL**, not by its name in one
//! repository's git config, so repositories that share a mirror share its
//! health: three repos failing against one dead mirror open its circuit for
//! all of them.
//!
//! The figures are cumulative integers: `success_rate_ppm` is
//! `successes * 1_000_000 / attempts` (1 000 000 before the first attempt);
//! `latency_ms` is an exponentially weighted average of successful fetch
//! times, `new = (3 * old + sample) / 4` in integer arithmetic, seeded by the
//! first success. Failed fetches do not move it: a refused connection is fast
//! and would make a dead remote look quick.
//!
//! The circuit follows the usual breaker:
//!
//! ```text
//! closed --(open_after_failures consecutive failures)--> open
//! open   --(cool_down_secs after opened_at; evaluated lazily)--> half-open
//! half-open --success--> closed        half-open --failure--> open (new opened_at)
//! ```
//!
//! The open -> half-open step is never written by itself: whoever asks
//! ([`HealthBook::circuit_at`], [`HealthBook::figures`], [`HealthBook::record`])
//! sees half-open once the cool-down has passed, so the file keeps `"open"`
//! and its `opened_at` until the trial fetch is recorded. A success recorded
//! while the circuit is still open also closes it (the remote evidently
//! works). All times are passed in; nothing here reads the clock.
//!
//! The view's `data`:
//!
//! ```json
//! { "remotes": {
//!     "https://git.example.com/core.git": {
//!       "attempts": 12, "successes": 9, "failures": 3,
//!       "success_rate_ppm": 750000, "latency_ms": 420,
//!       "consecutive_failures": 3, "circuit": "open",
//!       "opened_at": "2030-01-01T04:00:00.000Z", "last_failure": "network" } } }
//! ```

use crate::state::{Envelope, LedgerHead, StateError, StateStore, ViewName};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Success rate reported before the first attempt (100 %).
pub const FULL_RATE_PPM: u32 = 1_000_000;

/// Circuit-breaker state; the names are the WIT `circuit-state` names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Circuit {
    /// Healthy: fetches flow.
    #[default]
    Closed,
    /// Tripped after repeated failures: the remote should not be used.
    Open,
    /// Cool-down over: one trial fetch may be made.
    HalfOpen,
}

impl Circuit {
    /// Stable name, as serialized (`closed`, `open`, `half-open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half-open",
        }
    }
}

impl std::fmt::Display for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthPolicy {
    /// Consecutive failed fetches from one remote URL that open its circuit,
    /// 1 to 1000. Default 3.
    #[serde(default = "default_open_after_failures")]
    #[schemars(range(min = 1, max = 1000))]
    pub open_after_failures: u32,
    /// Seconds an open circuit waits before one trial fetch is allowed
    /// (half-open), 0 to 604800 (a week). Default 300.
    #[serde(default = "default_cool_down_secs")]
    #[schemars(range(max = 604_800))]
    pub cool_down_secs: u64,
}

fn default_open_after_failures() -> u32 {
    3
}

fn default_cool_down_secs() -> u64 {
    300
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self { open_after_failures: default_open_after_failures(), cool_down_secs: default_cool_down_secs() }
    }
}

/// A setting out of range; `field` is its JSON path relative to the member
/// holding the [`HealthPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SettingError {
    pub field: String,
    pub problem: String,
}

impl HealthPolicy {
    /// Checks the ranges the schema states.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(1..=1000).contains(&self.open_after_failures) {
            return Err(SettingError {
                field: "open_after_failures".to_owned(),
                problem: format!("{} is out of range; expected 1 to 1000", self.open_after_failures),
            });
        }
        if self.cool_down_secs > 604_800 {
            return Err(SettingError {
                field: "cool_down_secs".to_owned(),
                problem: format!("{} is out of range; expected 0 to 604800 seconds", self.cool_down_secs),
            });
        }
        Ok(())
    }

    fn cool_down(&self) -> Duration {
        Duration::seconds(i64::try_from(self.cool_down_secs.min(604_800)).unwrap_or(604_800))
    }
}

/// Health of one remote URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteHealth {
    /// Fetches recorded.
    pub attempts: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed.
    pub failures: u64,
    /// `successes * 1_000_000 / attempts`; 1 000 000 with no attempts.
    pub success_rate_ppm: u32,
    /// Weighted average latency of successful fetches in milliseconds.
    pub latency_ms: u32,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Circuit as last recorded (an open one may be half-open by now).
    pub circuit: Circuit,
    /// When the circuit last opened (RFC 3339); set while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<String>,
    /// Class of the last failure (`network`, `timeout`, `auth`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl Default for RemoteHealth {
    fn default() -> Self {
        Self {
            attempts: 0,
            successes: 0,
            failures: 0,
            success_rate_ppm: FULL_RATE_PPM,
            latency_ms: 0,
            consecutive_failures: 0,
            circuit: Circuit::Closed,
            opened_at: None,
            last_failure: None,
        }
    }
}

impl RemoteHealth {
    /// The circuit at `now`: an open circuit whose cool-down has passed is
    /// half-open. An `opened_at` that does not parse counts as long past
    /// (so the remote gets a trial rather than staying shut forever).
    pub fn circuit_at(&self, now: DateTime<Utc>, policy: &HealthPolicy) -> Circuit {
        if self.circuit != Circuit::Open {
            return self.circuit;
        }
        let opened = self.opened_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        match opened {
            Some(opened) if now < opened.with_timezone(&Utc) + policy.cool_down() => Circuit::Open,
            _ => Circuit::HalfOpen,
        }
    }
}

/// A change of circuit state caused by [`HealthBook::record`], for the
/// `remote-health-changed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitTransition {
    /// The remote URL.
    pub remote: String,
    /// The state before the fetch (half-open if an open circuit had cooled down).
    pub from: Circuit,
    pub to: Circuit,
    /// When the fetch was recorded (RFC 3339).
    pub at: String,
    /// Consecutive failures after the fetch.
    pub consecutive_failures: u32,
}

/// Health of every remote URL Hermes has fetched from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBook {
    /// By remote URL.
    pub remotes: BTreeMap<String, RemoteHealth>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl HealthBook {
    /// Records one fetch from `key` (the remote URL). `latency_ms` counts
    /// only for successes; `failure_class` is the fetch failure's class name
    /// (`FetchFailureClass::as_str`) and is kept as `last_failure`. Returns
    /// the circuit transition, if the fetch caused one.
    pub fn record(
        &mut self,
        key: &str,
        ok: bool,
        latency_ms: u32,
        failure_class: Option<&str>,
        now: DateTime<Utc>,
        policy: &HealthPolicy,
    ) -> Option<CircuitTransition> {
        let health = self.remotes.entry(key.to_owned()).or_default();
        let before = health.circuit_at(now, policy);
        health.attempts = health.attempts.saturating_add(1);
        if ok {
            health.latency_ms = if health.successes == 0 {
                latency_ms
            } else {
                // At most u32::MAX: a weighted mean of two u32 values.
                ((3 * u64::from(health.latency_ms) + u64::from(latency_ms)) / 4) as u32
            };
            health.successes = health.successes.saturating_add(1);
            health.consecutive_failures = 0;
            health.circuit = Circuit::Closed;
            health.opened_at = None;
        } else {
            health.failures = health.failures.saturating_add(1);
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.last_failure = Some(failure_class.unwrap_or("unknown").to_owned());
            let trips = match before {
                Circuit::Closed => health.consecutive_failures >= policy.open_after_failures.max(1),
                Circuit::HalfOpen => true,
                // Still cooling down: stays open, the cool-down is not extended.
                Circuit::Open => false,
            };
            if trips {
                health.circuit = Circuit::Open;
                health.opened_at = Some(rfc3339(now));
            }
        }
        health.success_rate_ppm = rate_ppm(health.successes, health.attempts);
        let after = health.circuit;
        (after != before).then(|| CircuitTransition {
            remote: key.to_owned(),
            from: before,
            to: after,
            at: rfc3339(now),
            consecutive_failures: health.consecutive_failures,
        })
    }

    /// The circuit of `key` at `now` (closed for a remote never seen).
    pub fn circuit_at(&self, key: &str, now: DateTime<Utc>, policy: &HealthPolicy) -> Circuit {
        self.remotes.get(key).map_or(Circuit::Closed, |h| h.circuit_at(now, policy))
    }

    /// `(success_rate_ppm, latency_ms, consecutive_failures, circuit)` of
    /// `key` at `now`, the figures of the selector's `remote-candidate`
    /// input; `(1_000_000, 0, 0, Closed)` for a remote never seen.
    pub fn figures(&self, key: &str, now: DateTime<Utc>, policy: &HealthPolicy) -> (u32, u32, u32, Circuit) {
        match self.remotes.get(key) {
            Some(h) => (h.success_rate_ppm, h.latency_ms, h.consecutive_failures, h.circuit_at(now, policy)),
            None => (FULL_RATE_PPM, 0, 0, Circuit::Closed),
        }
    }

    /// The WIT `remote-candidate` record (as the JSON the plugin runtime
    /// takes) for the remote named `name` with `role`, whose URL is `key`.
    pub fn candidate(
        &self,
        key: &str,
        name: &str,
        role: crate::policy::RemoteRole,
        now: DateTime<Utc>,
        policy: &HealthPolicy,
    ) -> serde_json::Value {
        let (rate, latency, failures, circuit) = self.figures(key, now, policy);
        serde_json::json!({
            "name": name,
            "role": role,
            "success-rate-ppm": rate,
            "latency-ms": latency,
            "consecutive-failures": failures,
            "circuit": circuit,
        })
    }

    /// Reads `state/remote_health.json`; `None` when absent.
    pub fn read(store: &StateStore) -> Result<Option<Envelope<HealthBook>>, StateError> {
        store.read(ViewName::RemoteHealth)
    }

    /// The persisted book, or an empty one when there is none yet.
    pub fn load(store: &StateStore) -> Result<HealthBook, StateError> {
        Ok(Self::read(store)?.map(|e| e.data).unwrap_or_default())
    }

    /// Writes `state/remote_health.json`.
    pub fn write(&self, store: &StateStore, ledger_head: &LedgerHead, written_at: &str) -> Result<(), StateError> {
        store.write(ViewName::RemoteHealth, written_at, ledger_head, self)
    }
}

fn rate_ppm(successes: u64, attempts: u64) -> u32 {
    if attempts == 0 {
        return FULL_RATE_PPM;
    }
    let ppm = u128::from(successes) * u128::from(FULL_RATE_PPM) / u128::from(attempts);
    u32::try_from(ppm).unwrap_or(FULL_RATE_PPM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RemoteRole;

    const URL: &str = "https://git.example.com/core.git";

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::seconds(secs)
    }

    fn fail(book: &mut HealthBook, at: i64, policy: &HealthPolicy) -> Option<CircuitTransition> {
        book.record(URL, false, 5, Some("network"), t(at), policy)
    }

    #[test]
    fn circuit_opens_after_n_consecutive_failures() {
        let policy = HealthPolicy::default();
        let mut book = HealthBook::default();
        assert_eq!(fail(&mut book, 0, &policy), None);
        assert_eq!(fail(&mut book, 1, &policy), None);
        assert_eq!(book.circuit_at(URL, t(1), &policy), Circuit::Closed);
        let tr = fail(&mut book, 2, &policy).expect("third failure opens");
        assert_eq!((tr.from, tr.to, tr.consecutive_failures), (Circuit::Closed, Circuit::Open, 3));
        assert_eq!(tr.remote, URL);
        assert_eq!(tr.at, "2030-01-01T00:00:02.000Z");
        let h = &book.remotes[URL];
        assert_eq!(h.opened_at.as_deref(), Some("2030-01-01T00:00:02.000Z"));
        assert_eq!(h.last_failure.as_deref(), Some("network"));
        assert_eq!(book.circuit_at(URL, t(3), &policy), Circuit::Open);
    }

    #[test]
    fn a_success_resets_the_failure_run() {
        let policy = HealthPolicy { open_after_failures: 2, cool_down_secs: 60 };
        let mut book = HealthBook::default();
        fail(&mut book, 0, &policy);
        assert_eq!(book.record(URL, true, 10, None, t(1), &policy), None);
        assert_eq!(fail(&mut book, 2, &policy), None, "the run restarted at the success");
        assert!(fail(&mut book, 3, &policy).is_some());
    }

    #[test]
    fn open_half_opens_after_cool_down_then_closes_on_success() {
        let policy = HealthPolicy { open_after_failures: 1, cool_down_secs: 300 };
        let mut book = HealthBook::default();
        assert_eq!(fail(&mut book, 0, &policy).map(|t| t.to), Some(Circuit::Open));
        assert_eq!(book.circuit_at(URL, t(299), &policy), Circuit::Open);
        assert_eq!(book.circuit_at(URL, t(300), &policy), Circuit::HalfOpen);
        assert_eq!(book.figures(URL, t(300), &policy).3, Circuit::HalfOpen);
        assert_eq!(book.remotes[URL].circuit, Circuit::Open, "half-open is evaluated lazily, not stored");
        let tr = book.record(URL, true, 40, None, t(301), &policy).expect("closes");
        assert_eq!((tr.from, tr.to), (Circuit::HalfOpen, Circuit::Closed));
        let h = &book.remotes[URL];
        assert_eq!((h.circuit, h.opened_at.as_deref(), h.consecutive_failures), (Circuit::Closed, None, 0));
        assert_eq!(h.last_failure.as_deref(), Some("network"), "the last failure stays on record");
    }

    #[test]
    fn half_open_failure_reopens_with_new_opened_at() {
        let policy = HealthPolicy { open_after_failures: 3, cool_down_secs: 300 };
        let mut book = HealthBook::default();
        for s in 0..3 {
            fail(&mut book, s, &policy);
        }
        assert_eq!(book.remotes[URL].opened_at.as_deref(), Some("2030-01-01T00:00:02.000Z"));
        let tr = book.record(URL, false, 0, Some("timeout"), t(1000), &policy).expect("reopens");
        assert_eq!((tr.from, tr.to), (Circuit::HalfOpen, Circuit::Open));
        let h = &book.remotes[URL];
        assert_eq!(h.opened_at.as_deref(), Some("2030-01-01T00:16:40.000Z"));
        assert_eq!(h.last_failure.as_deref(), Some("timeout"));
        assert_eq!(h.consecutive_failures, 4);
        assert_eq!(book.circuit_at(URL, t(1299), &policy), Circuit::Open);
        assert_eq!(book.circuit_at(URL, t(1300), &policy), Circuit::HalfOpen);
    }

    #[test]
    fn failure_while_open_keeps_the_cool_down() {
        let policy = HealthPolicy { open_after_failures: 1, cool_down_secs: 300 };
        let mut book = HealthBook::default();
        fail(&mut book, 0, &policy);
        assert_eq!(book.record(URL, false, 0, None, t(100), &policy), None);
        assert_eq!(book.remotes[URL].opened_at.as_deref(), Some("2030-01-01T00:00:00.000Z"));
        assert_eq!(book.remotes[URL].last_failure.as_deref(), Some("unknown"));
        assert_eq!(book.circuit_at(URL, t(300), &policy), Circuit::HalfOpen);
    }

    #[test]
    fn success_while_open_closes() {
        let policy = HealthPolicy { open_after_failures: 1, cool_down_secs: 300 };
        let mut book = HealthBook::default();
        fail(&mut book, 0, &policy);
        let tr = book.record(URL, true, 1, None, t(10), &policy).unwrap();
        assert_eq!((tr.from, tr.to), (Circuit::Open, Circuit::Closed));
    }

    #[test]
    fn unparseable_opened_at_counts_as_cooled_down() {
        let policy = HealthPolicy::default();
        let mut book = HealthBook::default();
        book.remotes.insert(
            URL.into(),
            RemoteHealth { circuit: Circuit::Open, opened_at: Some("yesterday".into()), ..RemoteHealth::default() },
        );
        assert_eq!(book.circuit_at(URL, t(0), &policy), Circuit::HalfOpen);
    }

    #[test]
    fn success_rate_and_latency_arithmetic() {
        let policy = HealthPolicy { open_after_failures: 100, cool_down_secs: 0 };
        let mut book = HealthBook::default();
        assert_eq!(book.figures(URL, t(0), &policy), (1_000_000, 0, 0, Circuit::Closed));
        book.record(URL, true, 100, None, t(0), &policy);
        assert_eq!(
            book.figures(URL, t(0), &policy),
            (1_000_000, 100, 0, Circuit::Closed),
            "first success seeds latency"
        );
        book.record(URL, true, 200, None, t(1), &policy);
        assert_eq!(book.remotes[URL].latency_ms, 125, "(3*100 + 200) / 4");
        book.record(URL, true, 0, None, t(2), &policy);
        assert_eq!(book.remotes[URL].latency_ms, 93, "(3*125 + 0) / 4 = 93.75, truncated");
        book.record(URL, false, 60_000, Some("timeout"), t(3), &policy);
        assert_eq!(book.remotes[URL].latency_ms, 93, "failures do not move latency");
        assert_eq!(book.figures(URL, t(3), &policy), (750_000, 93, 1, Circuit::Closed));
        book.record(URL, false, 0, Some("network"), t(4), &policy);
        book.record(URL, false, 0, Some("network"), t(5), &policy);
        let h = &book.remotes[URL];
        assert_eq!((h.attempts, h.successes, h.failures), (6, 3, 3));
        assert_eq!(h.success_rate_ppm, 500_000);
        // 1 of 3 is 333333.33 ppm: truncated.
        let mut other = HealthBook::default();
        other.record("x", true, u32::MAX, None, t(0), &policy);
        other.record("x", true, u32::MAX, None, t(0), &policy);
        other.record("x", false, 0, None, t(0), &policy);
        assert_eq!(other.remotes["x"].success_rate_ppm, 666_666);
        assert_eq!(other.remotes["x"].latency_ms, u32::MAX, "no overflow");
        assert_eq!(rate_ppm(0, 0), 1_000_000);
        assert_eq!(rate_ppm(1, 3), 333_333);
    }

    #[test]
    fn repos_sharing_a_url_share_health() {
        let policy = HealthPolicy::default();
        let mut book = HealthBook::default();
        // Three repositories fetch from the same mirror URL, once each.
        for _repo in ["api", "core", "web"] {
            book.record("file:///srv/mirror", false, 0, Some("network"), t(0), &policy);
        }
        assert_eq!(book.remotes.len(), 1);
        assert_eq!(book.circuit_at("file:///srv/mirror", t(1), &policy), Circuit::Open);
        assert_eq!(book.circuit_at("file:///srv/other", t(1), &policy), Circuit::Closed);
    }

    #[test]
    fn candidate_is_the_wit_record() {
        let policy = HealthPolicy { open_after_failures: 1, cool_down_secs: 10 };
        let mut book = HealthBook::default();
        book.record(URL, false, 0, Some("network"), t(0), &policy);
        let c = book.candidate(URL, "mirror", RemoteRole::Mirror, t(10), &policy);
        assert_eq!(
            c,
            serde_json::json!({
                "name": "mirror", "role": "mirror", "success-rate-ppm": 0, "latency-ms": 0,
                "consecutive-failures": 1, "circuit": "half-open"
            })
        );
    }

    #[test]
    fn circuit_names_are_the_wit_names() {
        for (c, name) in [(Circuit::Closed, "closed"), (Circuit::Open, "open"), (Circuit::HalfOpen, "half-open")] {
            assert_eq!(serde_json::to_value(c).unwrap(), name);
            assert_eq!(c.as_str(), name);
            assert_eq!(serde_json::from_value::<Circuit>(name.into()).unwrap(), c);
        }
    }

    #[test]
    fn policy_defaults_and_validation() {
        let p: HealthPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, HealthPolicy { open_after_failures: 3, cool_down_secs: 300 });
        assert!(p.validate().is_ok());
        assert!(serde_json::from_str::<HealthPolicy>(r#"{"open_after":1}"#).is_err());
        let bad = HealthPolicy { open_after_failures: 0, ..p };
        assert_eq!(bad.validate().unwrap_err().field, "open_after_failures");
        let bad = HealthPolicy { cool_down_secs: 604_801, ..p };
        assert_eq!(bad.validate().unwrap_err().field, "cool_down_secs");
        let schema = serde_json::to_value(schemars::schema_for!(HealthPolicy)).unwrap();
        assert_eq!(schema["properties"]["open_after_failures"]["default"], 3);
        assert_eq!(schema["properties"]["cool_down_secs"]["default"], 300);
    }

    #[test]
    fn view_round_trips_through_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(HealthBook::load(&store).unwrap(), HealthBook::default());
        let policy = HealthPolicy::default();
        let mut book = HealthBook::default();
        book.record(URL, true, 120, None, t(0), &policy);
        for s in 1..4 {
            book.record("ssh://mirror/core", false, 0, Some("auth"), t(s), &policy);
        }
        let head = LedgerHead { seq: 3, hash: "0".repeat(64) };
        book.write(&store, &head, "2030-01-01T00:00:04.000Z").unwrap();
        let env = HealthBook::read(&store).unwrap().unwrap();
        assert_eq!(env.view, "remote_health");
        assert_eq!(env.ledger_head, head);
        assert_eq!(env.data, book);
        assert_eq!(HealthBook::load(&store).unwrap(), book);
        let text = std::fs::read_to_string(dir.path().join("remote_health.json")).unwrap();
        assert!(text.contains(r#""circuit": "open""#), "{text}");
        assert!(text.contains(r#""success_rate_ppm": 1000000"#), "{text}");
    }
}
