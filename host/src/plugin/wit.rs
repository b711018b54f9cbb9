//! The records and enums of the WIT interface `hermes:plugin/types@0.1.0`
//! as Rust types, and the [`Operation`] of each world: a component's
//! exports are type-checked against them when it is loaded
//! ([`super::engine`]); they are also the JSON of inputs, outputs, fixtures
//! and the ledger.
//!
//! A call lowers its input into the guest and lifts the result straight
//! from these types (no dynamic component values); an input is read from
//! its JSON with its strings borrowed, not copied. serde maps them to JSON:
//!
//! | WIT | JSON |
//! |-----|------|
//! | integers | a number that fits the type |
//! | `string` | a string |
//! | `list<T>` | an array |
//! | `record` | an object keyed by the WIT field names (kebab-case); an unknown key is an error, a missing `option` field is `none` |
//! | `enum` | the case name as a string |
//! | `option<T>` | `null` or the value |
//!
//! The operation's `result<T, string>` is recorded as the `ok` value, or
//! the `err` message. The `#[component(name)]` of every field and case is
//! checked against the component's WIT when it is loaded; the serde names
//! come from `rename_all = "kebab-case"` and are the same.

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Lift, Lower};

pub use super::PluginKind;
pub use super::engine::PluginMetadata;

/// One incoming commit.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CommitSummary<'a> {
    #[component(name = "id")]
    pub id: &'a str,
    #[component(name = "summary")]
    pub summary: &'a str,
    #[component(name = "changed-paths")]
    #[serde(borrow)]
    pub changed_paths: Vec<&'a str>,
}

/// What git says about a repository.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepoFacts<'a> {
    #[component(name = "name")]
    pub name: &'a str,
    #[component(name = "branch")]
    #[serde(borrow)]
    pub branch: Option<&'a str>,
    #[component(name = "head")]
    #[serde(borrow)]
    pub head: Option<&'a str>,
    #[component(name = "upstream-head")]
    #[serde(borrow)]
    pub upstream_head: Option<&'a str>,
    #[component(name = "ahead")]
    pub ahead: u64,
    #[component(name = "behind")]
    pub behind: u64,
    #[component(name = "dirty-paths")]
    pub dirty_paths: u64,
    #[component(name = "untracked-paths")]
    pub untracked_paths: u64,
    #[component(name = "operation")]
    #[serde(borrow)]
    pub operation: Option<&'a str>,
    #[component(name = "incoming")]
    #[serde(borrow)]
    pub incoming: Vec<CommitSummary<'a>>,
    #[component(name = "depends-on")]
    #[serde(borrow)]
    pub depends_on: Vec<&'a str>,
}

/// How much a signal matters.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[component(enum)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    #[component(name = "info")]
    Info,
    #[component(name = "warning")]
    Warning,
    #[component(name = "critical")]
    Critical,
}

/// One finding of a probe.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Signal {
    #[component(name = "key")]
    pub key: String,
    #[component(name = "value")]
    pub value: String,
    #[component(name = "severity")]
    pub severity: Severity,
    #[component(name = "message")]
    pub message: String,
}

/// The probe's input.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProbeInput<'a> {
    #[component(name = "repo")]
    #[serde(borrow)]
    pub repo: RepoFacts<'a>,
    #[component(name = "logical-time")]
    pub logical_time: u64,
}

/// The repository's history of outcomes.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Intelligence {
    #[component(name = "attempts")]
    pub attempts: u64,
    #[component(name = "successes")]
    pub successes: u64,
    #[component(name = "failures")]
    pub failures: u64,
    #[component(name = "rollbacks")]
    pub rollbacks: u64,
    #[component(name = "rollback-rate-ppm")]
    pub rollback_rate_ppm: u32,
    #[component(name = "failure-probability-ppm")]
    pub failure_probability_ppm: u32,
    #[component(name = "confidence-ppm")]
    pub confidence_ppm: u32,
    #[component(name = "sample-size")]
    pub sample_size: u64,
    #[component(name = "risky-hours")]
    pub risky_hours: Vec<u8>,
}

/// One integer setting of the scorer.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Setting<'a> {
    #[component(name = "key")]
    pub key: &'a str,
    #[component(name = "value")]
    pub value: i64,
}

/// The scorer's input.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScoreInput<'a> {
    #[component(name = "repo")]
    #[serde(borrow)]
    pub repo: RepoFacts<'a>,
    #[component(name = "signals")]
    pub signals: Vec<Signal>,
    #[component(name = "intelligence")]
    pub intelligence: Intelligence,
    #[component(name = "settings")]
    #[serde(borrow)]
    pub settings: Vec<Setting<'a>>,
    #[component(name = "logical-time")]
    pub logical_time: u64,
    #[component(name = "hour-of-day")]
    pub hour_of_day: u8,
}

/// What the scorer recommends.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[component(enum)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum Recommendation {
    #[component(name = "upgrade")]
    Upgrade,
    #[component(name = "defer")]
    Defer,
    #[component(name = "block")]
    Block,
    #[component(name = "hold")]
    Hold,
    #[component(name = "noop")]
    Noop,
}

/// The scorer's output.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScoreOutput {
    #[component(name = "risk")]
    pub risk: u32,
    #[component(name = "recommendation")]
    pub recommendation: Recommendation,
    #[component(name = "priority")]
    pub priority: u32,
    #[component(name = "reasons")]
    pub reasons: Vec<String>,
}

/// A remote's role in the policy.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[component(enum)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteRole {
    #[component(name = "primary")]
    Primary,
    #[component(name = "origin")]
    Origin,
    #[component(name = "mirror")]
    Mirror,
    #[component(name = "cache")]
    Cache,
    #[component(name = "fallback")]
    Fallback,
}

/// A remote's circuit breaker.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[component(enum)]
#[repr(u8)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    #[component(name = "closed")]
    Closed,
    #[component(name = "open")]
    Open,
    #[component(name = "half-open")]
    HalfOpen,
}

/// One remote the selector may choose.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RemoteCandidate<'a> {
    #[component(name = "name")]
    pub name: &'a str,
    #[component(name = "role")]
    pub role: RemoteRole,
    #[component(name = "success-rate-ppm")]
    pub success_rate_ppm: u32,
    #[component(name = "latency-ms")]
    pub latency_ms: u32,
    #[component(name = "consecutive-failures")]
    pub consecutive_failures: u32,
    #[component(name = "circuit")]
    pub circuit: CircuitState,
}

/// The selector's input.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SelectInput<'a> {
    #[component(name = "repo")]
    pub repo: &'a str,
    #[component(name = "candidates")]
    #[serde(borrow)]
    pub candidates: Vec<RemoteCandidate<'a>>,
    #[component(name = "logical-time")]
    pub logical_time: u64,
}

/// The selector's output.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[component(record)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SelectOutput {
    #[component(name = "chosen")]
    pub chosen: String,
    #[component(name = "ranking")]
    pub ranking: Vec<String>,
    #[component(name = "reason")]
    pub reason: String,
}

/// The Rust types of a world's operation, `func(input) -> result<output,
/// string>`. A call borrows the input's strings from its JSON.
pub(crate) trait Operation {
    const KIND: PluginKind;
    type Input<'a>: Deserialize<'a> + ComponentType + Lower;
    type Output: ComponentType + Lift + Serialize;
}

/// `repo-probe`'s `probe`.
pub(crate) enum Probe {}
/// `risk-scorer`'s `score`.
pub(crate) enum Score {}
/// `federation-selector`'s `select`.
pub(crate) enum Select {}

impl Operation for Probe {
    const KIND: PluginKind = PluginKind::RepoProbe;
    type Input<'a> = ProbeInput<'a>;
    type Output = Vec<Signal>;
}

impl Operation for Score {
    const KIND: PluginKind = PluginKind::RiskScorer;
    type Input<'a> = ScoreInput<'a>;
    type Output = ScoreOutput;
}

impl Operation for Select {
    const KIND: PluginKind = PluginKind::FederationSelector;
    type Input<'a> = SelectInput<'a>;
    type Output = SelectOutput;
}

/// Reads `json` as a `T`; the error names the JSON path under `root`
/// (`at input.repo: missing field `ahead``). The path is tracked only when
/// the input does not fit, by reading it a second time.
pub fn from_json<'a, T: Deserialize<'a>>(json: &'a serde_json::Value, root: &str) -> Result<T, String> {
    if let Ok(value) = T::deserialize(json) {
        return Ok(value);
    }
    serde_path_to_error::deserialize::<_, T>(json).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => format!("at {root}: {}", e.inner()),
            _ => format!("at {root}.{path}: {}", e.inner()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> serde_json::Value {
        json!({
            "name": "app", "branch": "main", "head": null, "ahead": 0, "behind": 2,
            "dirty-paths": 0, "untracked-paths": 0, "incoming": [], "depends-on": []
        })
    }

    #[test]
    fn kebab_case_json_round_trips_and_a_missing_option_is_none() {
        let json = json!({ "repo": facts(), "logical-time": 7 });
        let input: ProbeInput = from_json(&json, "input").unwrap();
        assert_eq!((input.repo.upstream_head, input.repo.behind), (None, 2));
        assert_eq!(input.repo.name.as_ptr(), json["repo"]["name"].as_str().unwrap().as_ptr(), "borrowed, not copied");
        let back = serde_json::to_value(&input).unwrap();
        assert_eq!(back["repo"]["upstream-head"], serde_json::Value::Null);
        assert_eq!(back["logical-time"], 7);
    }

    #[test]
    fn errors_name_the_json_path() {
        let missing = from_json::<ProbeInput>(&json!({ "repo": facts() }), "input").unwrap_err();
        assert_eq!(missing, "at input: missing field `logical-time`");
        let mut repo = facts();
        repo["incoming"] = json!([{ "id": "a", "summary": "s", "changed-paths": [1] }]);
        let nested = from_json::<ProbeInput>(&json!({ "repo": repo, "logical-time": 1 }), "input").unwrap_err();
        assert!(nested.starts_with("at input.repo.incoming[0].changed-paths[0]: invalid type"), "{nested}");
        let unknown = json!({ "repo": facts(), "logical-time": 1, "x": 1 });
        assert!(from_json::<ProbeInput>(&unknown, "input").unwrap_err().starts_with("at input.x: unknown field `x`"));
        let negative = json!({ "key": "k", "value": -1 });
        assert_eq!(from_json::<Setting>(&negative, "input").map(|s| s.value), Ok(-1));
        let severity =
            from_json::<Signal>(&json!({ "key": "k", "value": "v", "severity": "loud", "message": "" }), "s");
        assert!(severity.unwrap_err().starts_with("at s.severity: unknown variant `loud`"));
    }
}
