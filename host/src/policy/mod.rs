//! The upgrade policy: `HERMES_HOME/config/runtime_upgrade_policies.json`.
//!
//! The policy is JSON whose shape is the Rust types below; the JSON Schema in
//! `config/runtime_upgrade_policies.schema.json` is generated from them
//! (`hermes policy schema`). Comments live in `"$comment"` members (a string
//! or a list of strings) so the file stays plain JSON and survives being
//! rewritten by `hermes repo add`.
//!
//! [`load`] parses with the JSON path of any error ([`serde_path_to_error`]),
//! then [`validate`] checks what types cannot: unique names, existing paths,
//! known dependencies, no dependency cycles. Every error names the file, the
//! JSON path and what was expected.

mod validate;

pub use validate::validate;

use crate::canonical;
use crate::coordinate::CoordinationPolicy;
use crate::federation::HealthPolicy;
use crate::fsx;
use crate::process::CommandSpec;
use crate::resource::ResourcePolicy;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The policy format this build reads and writes.
pub const POLICY_FORMAT_VERSION: u32 = 1;
/// Policy file name inside `config/`.
pub const POLICY_FILE: &str = "runtime_upgrade_policies.json";
/// Schema file name inside `config/`.
pub const SCHEMA_FILE: &str = "runtime_upgrade_policies.schema.json";

/// Errors loading or saving the policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write policy {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("invalid policy {path}\n  at {json_path}: {problem}")]
    Invalid { path: PathBuf, json_path: String, problem: String },
}

/// A `"$comment"` member: one string or a list of lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Comment {
    Line(String),
    Lines(Vec<String>),
}

/// The whole policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Hermes upgrade policy")]
pub struct Policy {
    /// Path or URL of this file's JSON Schema, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Free-form comment; ignored by Hermes.
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
    /// Policy format version; this build understands 1.
    #[serde(default = "default_format_version")]
    pub format_version: u32,
    /// How repositories are fetched.
    #[serde(default)]
    pub fetch: FetchPolicy,
    /// The repositories Hermes upgrades.
    #[serde(default)]
    pub repos: Vec<RepoPolicy>,
    /// Which component implements each plugin kind, and its limits. A kind
    /// left out uses the default plugin built into hermes.
    #[serde(default, skip_serializing_if = "PluginsPolicy::is_default")]
    pub plugins: PluginsPolicy,
    /// Commands run around an upgrade, for every repository (a repository's
    /// own `canary` / `health` replace these).
    #[serde(default, skip_serializing_if = "ChecksPolicy::is_default")]
    pub checks: ChecksPolicy,
    /// Leases and per-remote budgets.
    #[serde(default, skip_serializing_if = "CoordinationPolicy::is_default")]
    pub coordination: CoordinationPolicy,
    /// Resource pressure thresholds and the number of parallel lanes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: ResourcePolicy,
    /// When a remote's circuit opens and how long it cools down.
    #[serde(default, skip_serializing_if = "is_default")]
    pub remote_health: HealthPolicy,
    /// Where each cycle also writes Prometheus metrics.
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics: crate::projection::metrics::MetricsPolicy,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    value == &T::default()
}

/// Canary and health checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksPolicy {
    /// Run in a temporary checkout of the candidate commit before the
    /// apply; a failure blocks the upgrade. Environment: HERMES_REPO,
    /// HERMES_TICK, HERMES_CANDIDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CommandSpec>,
    /// Run in the worktree after the apply; a failure rolls back to the
    /// previous HEAD. Environment: HERMES_REPO, HERMES_TICK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<CommandSpec>,
}

impl ChecksPolicy {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Plugin configuration per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_probe: Option<PluginPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_scorer: Option<PluginPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_selector: Option<PluginPolicy>,
}

impl PluginsPolicy {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The settings for `kind` (`"repo-probe"`, `"risk-scorer"`,
    /// `"federation-selector"`), if any.
    pub fn get(&self, kind: &str) -> Option<&PluginPolicy> {
        match kind {
            "repo-probe" => self.repo_probe.as_ref(),
            "risk-scorer" => self.risk_scorer.as_ref(),
            "federation-selector" => self.federation_selector.as_ref(),
            _ => None,
        }
    }
}

/// One plugin kind's component and limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginPolicy {
    /// Component file (absolute or relative to HERMES_HOME); unset means the
    /// built-in default plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SHA-256 (hex) the component file must have; required with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Fuel per call (deterministic instruction budget); default per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Linear memory cap per call in MiB, 1 to 256; default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Wall-clock backstop per call in milliseconds; default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Integer settings passed to the plugin (the scorer's weights and
    /// thresholds, e.g. `"weight.behind": 40`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, i64>,
}

/// Fetch settings shared by every repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchPolicy {
    /// Seconds a fetch may take before it is aborted and classified as a
    /// (transient) timeout. 1 to 3600.
    #[serde(default = "default_fetch_timeout")]
    pub timeout_secs: u64,
}

/// One repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    /// Free-form comment; ignored by Hermes.
    #[serde(rename = "$comment", default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
    /// Unique name: letters, digits, `.`, `_` and `-`, at most 64 characters.
    pub name: String,
    /// Path of the git working tree, absolute or relative to HERMES_HOME.
    pub path: String,
    /// Branch the working tree must be on; when unset, whatever branch is
    /// checked out is upgraded from its upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Names of repositories that must be upgraded (or be up to date) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Git remotes to fetch from, with their roles. Empty means `origin` as
    /// primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteSpec>,
    /// Canary check for this repository (replaces `checks.canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CommandSpec>,
    /// Health check for this repository (replaces `checks.health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<CommandSpec>,
}

/// A git remote of a repository and its role in federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// Name of the remote in the repository's git config.
    pub name: String,
    /// Role of the remote.
    pub role: RemoteRole,
}

/// Role of a remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RemoteRole {
    Primary,
    Origin,
    Mirror,
    Cache,
    Fallback,
}

impl RemoteRole {
    /// The role as written in the policy (and in the WIT `remote-role`).
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteRole::Primary => "primary",
            RemoteRole::Origin => "origin",
            RemoteRole::Mirror => "mirror",
            RemoteRole::Cache => "cache",
            RemoteRole::Fallback => "fallback",
        }
    }
}

fn default_format_version() -> u32 {
    POLICY_FORMAT_VERSION
}

fn default_fetch_timeout() -> u64 {
    60
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { timeout_secs: default_fetch_timeout() }
    }
}

impl RepoPolicy {
    /// Absolute path of the working tree.
    pub fn resolved_path(&self, home: &Path) -> PathBuf {
        home.join(&self.path)
    }

    /// The remote fetched from: the first `primary`, else the first listed,
    /// else `origin`.
    pub fn primary_remote(&self) -> RemoteSpec {
        self.remotes
            .iter()
            .find(|r| r.role == RemoteRole::Primary)
            .or_else(|| self.remotes.first())
            .cloned()
            .unwrap_or_else(|| RemoteSpec { name: "origin".to_owned(), role: RemoteRole::Primary })
    }
}

impl Policy {
    /// The policy `hermes init` writes.
    pub fn starter() -> Self {
        let lines = [
            "Hermes upgrade policy. Each field is described in runtime_upgrade_policies.schema.json.",
            "Add repositories with `hermes repo add PATH [--name N] [--depends-on N]...`, or by hand:",
            "  { \"name\": \"api\", \"path\": \"repos/api\", \"branch\": \"main\", \"depends_on\": [\"core\"],",
            "    \"remotes\": [ { \"name\": \"origin\", \"role\": \"primary\" } ] }",
            "Relative paths are relative to HERMES_HOME. Check the file with `hermes policy check`.",
        ];
        Self {
            schema: Some(format!("./{SCHEMA_FILE}")),
            comment: Some(Comment::Lines(lines.iter().map(|l| (*l).to_owned()).collect())),
            format_version: POLICY_FORMAT_VERSION,
            fetch: FetchPolicy::default(),
            repos: Vec::new(),
            plugins: PluginsPolicy::default(),
            checks: ChecksPolicy::default(),
            coordination: CoordinationPolicy::default(),
            resources: ResourcePolicy::default(),
            remote_health: HealthPolicy::default(),
            metrics: Default::default(),
        }
    }

    /// SHA-256 of the policy's canonical JSON, without `$schema` and
    /// `$comment` members (editing a comment does not change the digest).
    pub fn digest(&self) -> String {
        let mut bare = self.clone();
        bare.schema = None;
        bare.comment = None;
        for repo in &mut bare.repos {
            repo.comment = None;
        }
        canonical::digest(&bare).unwrap_or_default()
    }

    /// Looks a repository up by name.
    pub fn repo(&self, name: &str) -> Option<&RepoPolicy> {
        self.repos.iter().find(|r| r.name == name)
    }
}

/// The generated JSON Schema, pretty-printed with a final newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Policy);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses and validates the policy at `path`; relative repo paths are
/// resolved against `home`.
pub fn load(path: &Path, home: &Path) -> Result<Policy, PolicyError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
    let policy = parse(&bytes, path)?;
    validate(&policy, path, home)?;
    Ok(policy)
}

/// Parses policy JSON, naming the JSON path of the first error.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Policy, PolicyError> {
    // serde would also accept a struct written as an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(PolicyError::Invalid {
            path: path.to_owned(),
            json_path: ".".to_owned(),
            problem: "an array; expected a JSON object with `repos`".to_owned(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let policy: Policy = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut problem = e.inner().to_string();
        if problem.starts_with("missing field") {
            problem
                .push_str("; expected every field the schema marks as required (a repository needs `name` and `path`)");
        } else if problem.starts_with("EOF while parsing") {
            problem.push_str("; expected complete JSON: a closing bracket or brace is missing");
        }
        PolicyError::Invalid { path: path.to_owned(), json_path: e.path().to_string(), problem }
    })?;
    de.end().map_err(|e| PolicyError::Invalid {
        path: path.to_owned(),
        json_path: ".".to_owned(),
        problem: e.to_string(),
    })?;
    Ok(policy)
}

/// Writes the policy (pretty JSON) atomically into `config_dir`.
pub fn save(policy: &Policy, config_dir: &Path) -> Result<(), PolicyError> {
    let mut text = serde_json::to_string_pretty(policy)
        .map_err(|e| PolicyError::Write { path: config_dir.join(POLICY_FILE), source: io::Error::other(e) })?;
    text.push('\n');
    write_config_file(config_dir, POLICY_FILE, &text)
}

/// Writes the policy's JSON Schema atomically into `config_dir`.
pub fn save_schema(config_dir: &Path) -> Result<(), PolicyError> {
    write_config_file(config_dir, SCHEMA_FILE, &schema_json())
}

fn write_config_file(config_dir: &Path, name: &str, text: &str) -> Result<(), PolicyError> {
    let write_err = |source| PolicyError::Write { path: config_dir.join(name), source };
    let dir = Dir::open_ambient_dir(config_dir, ambient_authority()).map_err(write_err)?;
    fsx::write_atomic(&dir, name, text.as_bytes()).map_err(write_err)
}
