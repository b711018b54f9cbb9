//! The scenario file of `hermes simulate`: its versioned JSON format, the
//! parser and the validation. Every refusal names the file, the JSON path
//! and what was expected (`invalid scenario FILE\n  at ticks[2].steps[0]:
//! ...`). The format is documented field by field in
//! docs/runtime_simulation_lab.md; in short:
//!
//! ```json
//! { "format_version": 1, "name": "steady-upstream", "description": "...",
//!   "start": "2026-03-02T09:00:00Z", "minutes_between_ticks": 15,
//!   "repos": [ { "name": "core" }, { "name": "api", "depends_on": ["core"] } ],
//!   "policy": { "coordination": { "lease_ttl_secs": 600 } },
//!   "ticks": [
//!     { "steps": [ { "action": "upstream-commit", "repo": "core" } ],
//!       "expect": { "exit_code": 0, "repos": { "core": { "outcome": "upgraded", "head": "upstream" } } } } ] }
//! ```

use crate::cycle::outcome::Outcome;
use crate::cycle::plan::Recommendation;
use crate::failpoint;
use crate::federation::health::Circuit;
use crate::policy::RemoteRole;
use crate::resource::PressureLevel;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The scenario format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Most ticks one scenario may drive.
pub const MAX_TICKS: usize = 100;
/// Policy members a scenario may not set (the simulation writes them).
const RESERVED_POLICY_MEMBERS: &[&str] = &["repos", "format_version", "$schema"];

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Value>,
    /// `1`; a newer version is refused.
    pub format_version: u32,
    /// Lower-case letters, digits and `-`; how `hermes simulate NAME` finds it.
    pub name: String,
    /// What the scenario shows, one or two sentences.
    pub description: String,
    /// Logical time of the first tick (RFC 3339).
    #[serde(default = "default_start")]
    pub start: String,
    /// Logical minutes between two ticks, 1 to 1440.
    #[serde(default = "default_minutes")]
    pub minutes_between_ticks: u32,
    /// Whether the scenario kills ticks at failpoints (`crash_at`), which
    /// only debug builds have; a release build skips it with a note.
    #[serde(default)]
    pub needs_failpoints: bool,
    /// The repositories, in policy order.
    pub repos: Vec<SimRepo>,
    /// Members merged into the generated policy (`checks`, `coordination`,
    /// `resources`, `remote_health`, `fetch`, `plugins`, `metrics`).
    #[serde(default)]
    pub policy: Map<String, Value>,
    /// The ticks, in order: steps first, then one real `hermes tick`, then
    /// the expectations.
    pub ticks: Vec<SimTick>,
}

fn default_start() -> String {
    "2026-03-02T09:00:00Z".to_owned()
}

fn default_minutes() -> u32 {
    15
}

/// One repository: a bare upstream, one bare repository per remote and the
/// working tree Hermes upgrades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRepo {
    pub name: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The git remotes and their federation roles; empty: `origin`, primary.
    #[serde(default)]
    pub remotes: Vec<SimRemote>,
    /// The repository's `canary` command in the policy (`{argv, timeout_secs}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Value>,
    /// The repository's `health` command in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
}

/// A remote of a simulated repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRemote {
    pub name: String,
    pub role: RemoteRole,
}

/// One tick of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTick {
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Value>,
    /// Faults and changes made before the tick, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// A failpoint (`HERMES_FAILPOINT`) the tick's process dies at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_at: Option<String>,
    /// What must hold after the tick.
    #[serde(default)]
    pub expect: Expect,
}

/// A change made to the world between ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// A commit on the upstream's `main`, copied to every remote.
    UpstreamCommit {
        repo: String,
        /// File written (default `src/change_<n>.txt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// Its contents (default a line naming the commit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contents: Option<String>,
        /// Remove `file` instead of writing it.
        #[serde(default)]
        delete: bool,
    },
    /// The remote stops answering: the repository's git remote is pointed
    /// at a closed local port (a transient network failure).
    RemoteDown { repo: String, remote: String },
    /// The remote answers again (its URL is restored).
    RemoteUp { repo: String, remote: String },
    /// A local commit in the working tree and another upstream: diverged.
    Diverge { repo: String },
    /// The operator resolves a divergence: the working tree is reset to upstream.
    Resolve { repo: String },
    /// An uncommitted change in the working tree.
    Dirty { repo: String },
    /// The uncommitted change is discarded.
    Clean { repo: String },
    /// Another process (pid 4242 on host `elsewhere`) holds the repository's
    /// lease for `ttl_minutes` from now.
    ForeignLease { repo: String, ttl_minutes: u32 },
    /// Resource telemetry is overridden with these figures (the others stay
    /// at the simulation's calm baseline).
    Pressure {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load_milli_per_core: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mem_free_mib: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disk_free_mib: Option<u64>,
    },
    /// Telemetry returns to the calm baseline.
    PressureClear {},
}

impl Step {
    /// The repository the step acts on, if any.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Step::UpstreamCommit { repo, .. }
            | Step::RemoteDown { repo, .. }
            | Step::RemoteUp { repo, .. }
            | Step::Diverge { repo }
            | Step::Resolve { repo }
            | Step::Dirty { repo }
            | Step::Clean { repo }
            | Step::ForeignLease { repo, .. } => Some(repo),
            Step::Pressure { .. } | Step::PressureClear {} => None,
        }
    }
}

/// What must hold after a tick. Everything is optional; the ledger must
/// verify after every tick unless `ledger_verifies` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exit code of `hermes tick` (unset: 0 or 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether the tick's process was killed (default: whether `crash_at` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashed: Option<bool>,
    /// The integrity gate of this tick's cycle passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_ok: Option<bool>,
    /// `hermes verify` accepts the ledger (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_verifies: Option<bool>,
    /// The pressure level the cycle assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<PressureLevel>,
    /// Per repository.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoExpect>,
    /// Per remote, keyed `REPO/REMOTE`.
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteExpect>,
}

/// Where a repository's HEAD must be after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadExpect {
    /// At the upstream's `main`.
    Upstream,
    /// Where it was before the tick.
    Unchanged,
    /// Either (an interrupted apply may land on both sides).
    UpstreamOrUnchanged,
}

/// What must hold for one repository after a tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoExpect {
    /// The plan's recommendation in this tick's cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Recommendation>,
    /// The outcome in this tick's cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadExpect>,
    /// No uncommitted change, no untracked file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree_clean: Option<bool>,
    /// Risk score of this tick's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Range>,
    /// Runtime intelligence (runtime_intelligence.json) after the tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollbacks: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_rate_ppm: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_probability_ppm: Option<Range>,
    /// The remote federation selected for the repository (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// What must hold for one remote (by its current URL in remote_health.json).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<Circuit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_ppm: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Range>,
}

/// An inclusive range of integers; `{"min": 1}`, `{"max": 0}`, `{"min": 2, "max": 2}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Range {
    pub fn contains(&self, value: u64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (Some(a), Some(b)) => write!(f, "{a}..={b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => write!(f, "any"),
        }
    }
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid scenario {}\n  at {json_path}: {problem}", path.display())]
    Invalid { path: PathBuf, json_path: String, problem: String },
}

/// Reads, parses and validates the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    parse(&bytes, path)
}

/// Parses and validates scenario JSON; `path` is named in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Scenario, ScenarioError> {
    let invalid = |json_path: &str, problem: String| ScenarioError::Invalid {
        path: path.to_owned(),
        json_path: json_path.to_owned(),
        problem,
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid(
            ".",
            "not a JSON object; expected an object with `format_version`, `name`, `repos` and `ticks`".to_owned(),
        ));
    }
    // The version first, so that a newer file is refused for what it is.
    if let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(bytes)
        && let Some(v) = doc.get("format_version").and_then(Value::as_u64)
        && v > u64::from(FORMAT_VERSION)
    {
        return Err(invalid(
            "format_version",
            format!("unsupported format version {v}; expected {FORMAT_VERSION} (or lower)"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let scenario: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut problem = e.inner().to_string();
        if problem.starts_with("missing field") {
            problem.push_str("; expected every required member (docs/runtime_simulation_lab.md lists them)");
        } else if problem.starts_with("EOF while parsing") {
            problem.push_str("; expected complete JSON: a closing bracket or brace is missing");
        } else if problem.contains("unknown variant") && problem.contains("upstream-commit") {
            problem.push_str(" (the `action` of a step)");
        }
        invalid(&e.path().to_string(), problem)
    })?;
    de.end().map_err(|e| invalid(".", format!("{e}; expected one JSON object and nothing after it")))?;
    validate(&scenario).map_err(|(json_path, problem)| invalid(&json_path, problem))?;
    Ok(scenario)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn valid_ident(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.'])
}

/// Checks what the types cannot; the error is (JSON path, problem).
pub fn validate(s: &Scenario) -> Result<(), (String, String)> {
    let err = |path: String, problem: String| Err((path, problem));
    if s.format_version == 0 {
        return err("format_version".into(), format!("0; expected {FORMAT_VERSION}"));
    }
    if !valid_name(&s.name) {
        return err("name".into(), format!("{:?}; expected 1 to 64 lower-case letters, digits and `-`", s.name));
    }
    if DateTime::parse_from_rfc3339(&s.start).is_err() {
        return err("start".into(), format!("{:?}; expected an RFC 3339 time such as 2026-03-02T09:00:00Z", s.start));
    }
    if !(1..=1440).contains(&s.minutes_between_ticks) {
        return err("minutes_between_ticks".into(), format!("{}; expected 1 to 1440", s.minutes_between_ticks));
    }
    if s.repos.is_empty() || s.repos.len() > 32 {
        return err("repos".into(), format!("{} repositories; expected 1 to 32", s.repos.len()));
    }
    let mut remotes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (i, repo) in s.repos.iter().enumerate() {
        if !valid_ident(&repo.name) {
            return err(
                format!("repos[{i}].name"),
                format!("{:?}; expected 1 to 64 letters, digits, `.`, `_`, `-`", repo.name),
            );
        }
        if remotes.contains_key(repo.name.as_str()) {
            return err(format!("repos[{i}].name"), format!("{:?} appears twice; expected unique names", repo.name));
        }
        let mut names = BTreeSet::new();
        for (j, remote) in repo.remotes.iter().enumerate() {
            if !valid_ident(&remote.name) || !names.insert(remote.name.as_str()) {
                return err(
                    format!("repos[{i}].remotes[{j}].name"),
                    format!("{:?}; expected a unique remote name of letters, digits, `.`, `_`, `-`", remote.name),
                );
            }
        }
        if names.is_empty() {
            names.insert("origin");
        }
        remotes.insert(&repo.name, names);
    }
    for (i, repo) in s.repos.iter().enumerate() {
        for (j, dep) in repo.depends_on.iter().enumerate() {
            if !remotes.contains_key(dep.as_str()) || dep == &repo.name {
                return err(
                    format!("repos[{i}].depends_on[{j}]"),
                    format!("{dep:?}; expected the name of another repository"),
                );
            }
        }
    }
    for key in s.policy.keys() {
        if RESERVED_POLICY_MEMBERS.contains(&key.as_str()) {
            return err(
                format!("policy.{key}"),
                "set by the simulation; expected policy members such as `checks`, `coordination`, `resources`".into(),
            );
        }
    }
    if s.ticks.is_empty() || s.ticks.len() > MAX_TICKS {
        return err("ticks".into(), format!("{} ticks; expected 1 to {MAX_TICKS}", s.ticks.len()));
    }
    let repo_known = |name: &str| remotes.contains_key(name);
    for (t, tick) in s.ticks.iter().enumerate() {
        for (k, step) in tick.steps.iter().enumerate() {
            let at = format!("ticks[{t}].steps[{k}]");
            if let Some(repo) = step.repo()
                && !repo_known(repo)
            {
                return err(format!("{at}.repo"), format!("{repo:?}; expected the name of a repository of `repos`"));
            }
            match step {
                Step::RemoteDown { repo, remote } | Step::RemoteUp { repo, remote }
                    if !remotes[repo.as_str()].contains(remote.as_str()) =>
                {
                    return err(format!("{at}.remote"), format!("{remote:?}; expected a remote of {repo}"));
                }
                Step::ForeignLease { ttl_minutes, .. } if !(1..=10080).contains(ttl_minutes) => {
                    return err(format!("{at}.ttl_minutes"), format!("{ttl_minutes}; expected 1 to 10080"));
                }
                Step::UpstreamCommit { file: Some(file), .. } if !valid_file(file) => {
                    return err(
                        format!("{at}.file"),
                        format!("{file:?}; expected a relative path inside the repository, not under .git"),
                    );
                }
                Step::UpstreamCommit { file: None, delete: true, .. } => {
                    return err(format!("{at}.file"), "missing; expected the file to delete".into());
                }
                _ => {}
            }
        }
        if let Some(point) = &tick.crash_at {
            if !failpoint::ALL.contains(&point.as_str()) {
                return err(
                    format!("ticks[{t}].crash_at"),
                    format!(
                        "{point:?}; expected a failpoint named in host/src/failpoint.rs, such as {}",
                        failpoint::APPLY_AFTER_REF_UPDATE
                    ),
                );
            }
            if !s.needs_failpoints {
                return err(format!("ticks[{t}].crash_at"), "set, but `needs_failpoints` is not true; expected `\"needs_failpoints\": true` in a scenario that crashes ticks".into());
            }
        }
        for name in tick.expect.repos.keys() {
            if !repo_known(name) {
                return err(
                    format!("ticks[{t}].expect.repos.{name}"),
                    format!("{name:?}; expected the name of a repository of `repos`"),
                );
            }
        }
        for key in tick.expect.remotes.keys() {
            let known = key.split_once('/').is_some_and(|(r, m)| remotes.get(r).is_some_and(|set| set.contains(m)));
            if !known {
                return err(
                    format!("ticks[{t}].expect.remotes.{key}"),
                    format!("{key:?}; expected REPO/REMOTE naming a remote of a repository"),
                );
            }
        }
    }
    Ok(())
}

fn valid_file(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('/')
        && file.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && part != ".git")
}

/// The logical time of tick `index` (0-based).
pub fn tick_time(s: &Scenario, index: usize) -> DateTime<Utc> {
    let start = DateTime::parse_from_rfc3339(&s.start).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    start + chrono::Duration::minutes(i64::from(s.minutes_between_ticks) * index as i64)
}
