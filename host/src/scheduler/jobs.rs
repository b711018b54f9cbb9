//! `HERMES_HOME/config/jobs.json`: the jobs `hermes tick` runs.
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "allowed_roots": ["/opt/hermes-scripts"],
//!   "jobs": [
//!     { "id": "upgrade", "schedule": "*/15 * * * *", "kind": "upgrade-cycle" },
//!     { "id": "backup", "schedule": "1h", "kind": "script",
//!       "path": "scripts/backup.sh", "args": ["--to", "/srv/backup"],
//!       "timeout_secs": 600, "enabled": true }
//!   ]
//! }
//! ```
//!
//! A missing file means no jobs. Relative paths (a script's `path`, an
//! allowed root) are taken from `HERMES_HOME`. `HERMES_HOME/scripts` is
//! always an allowed root. See docs/scheduler.md.

use super::schedule::Schedule;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// File name inside `config/`.
pub const JOBS_FILE: &str = "jobs.json";
/// The format this build writes and the newest it reads.
pub const JOBS_FORMAT_VERSION: u32 = 1;
/// Bounds of `timeout_secs`.
pub const TIMEOUT_RANGE: (u64, u64) = (1, 86_400);

/// Errors loading or saving the jobs file.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("cannot read jobs file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write jobs file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("invalid jobs file {path}\n  at {json_path}: {problem}")]
    Invalid { path: PathBuf, json_path: String, problem: String },
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    pub format_version: u32,
    /// Directories (besides `HERMES_HOME/scripts`) script jobs may live in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_roots: Vec<String>,
    #[serde(default)]
    pub jobs: Vec<Job>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { format_version: JOBS_FORMAT_VERSION, allowed_roots: Vec::new(), jobs: Vec::new() }
    }
}

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// The built-in upgrade cycle (`hermes cycle`).
    UpgradeCycle,
    /// An executable file, run with structured argv.
    Script,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::UpgradeCycle => "upgrade-cycle",
            JobKind::Script => "script",
        }
    }
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    pub schedule: String,
    pub kind: JobKind,
    /// Script jobs: the executable (relative paths from `HERMES_HOME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Script jobs: the arguments, passed as they are (no shell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Script jobs: seconds before the script and its children are killed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_timeout() -> u64 {
    300
}

fn default_enabled() -> bool {
    true
}

/// Path of the jobs file of the workspace at `home`.
pub fn jobs_path(home: &Path) -> PathBuf {
    home.join("config").join(JOBS_FILE)
}

/// Loads and validates the jobs file; a missing file is an empty one.
pub fn load(home: &Path) -> Result<JobsConfig, JobsError> {
    let path = jobs_path(home);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JobsConfig::default()),
        Err(source) => return Err(JobsError::Read { path, source }),
    };
    parse(&text, &path)
}

/// Parses and validates the text of a jobs file at `path` (for messages).
pub fn parse(text: &str, path: &Path) -> Result<JobsConfig, JobsError> {
    let invalid = |json_path: &str, problem: String| JobsError::Invalid {
        path: path.to_owned(),
        json_path: json_path.to_owned(),
        problem,
    };
    // The version first, so a newer file is reported as such, not as unknown fields.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(version) = value.get("format_version").and_then(serde_json::Value::as_u64)
        && version > u64::from(JOBS_FORMAT_VERSION)
    {
        return Err(invalid(
            "format_version",
            format!("unsupported format version {version}; expected {JOBS_FORMAT_VERSION} (or lower)"),
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let config: JobsConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." { "(top level)".to_owned() } else { at };
        invalid(&at, format!("{}; the format is described in docs/scheduler.md", e.inner()))
    })?;
    validate(&config).map_err(|(at, problem)| invalid(&at, problem))?;
    Ok(config)
}

/// Checks what the types cannot: the problem's JSON path and description.
pub fn validate(config: &JobsConfig) -> Result<(), (String, String)> {
    if config.format_version == 0 {
        return Err(("format_version".into(), format!("0 is not a format version; expected {JOBS_FORMAT_VERSION}")));
    }
    for (i, root) in config.allowed_roots.iter().enumerate() {
        if root.trim().is_empty() {
            return Err((format!("allowed_roots[{i}]"), "empty; expected a directory path".into()));
        }
    }
    let mut ids = BTreeSet::new();
    for (i, job) in config.jobs.iter().enumerate() {
        let at = |field: &str| format!("jobs[{i}].{field}");
        check_id(&job.id).map_err(|e| (at("id"), e))?;
        if !ids.insert(job.id.as_str()) {
            return Err((at("id"), format!("duplicate id {:?}; expected each job id once", job.id)));
        }
        Schedule::parse(&job.schedule).map_err(|e| (at("schedule"), e))?;
        let (lo, hi) = TIMEOUT_RANGE;
        if !(lo..=hi).contains(&job.timeout_secs) {
            return Err((
                at("timeout_secs"),
                format!("{} is out of range; expected {lo} to {hi} seconds", job.timeout_secs),
            ));
        }
        match job.kind {
            JobKind::Script => match &job.path {
                None => return Err((at("path"), "missing; expected the script's path for a script job".into())),
                Some(p) if p.trim().is_empty() => {
                    return Err((at("path"), "empty; expected the script's path for a script job".into()));
                }
                Some(_) => {}
            },
            JobKind::UpgradeCycle => {
                if job.path.is_some() {
                    return Err((
                        at("path"),
                        "set on an upgrade-cycle job; expected no path (only script jobs have one)".into(),
                    ));
                }
                if !job.args.is_empty() {
                    return Err((
                        at("args"),
                        "set on an upgrade-cycle job; expected no args (only script jobs have them)".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A job id: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['.', '-'])
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a job id; expected 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        ))
    }
}

/// Validates and atomically writes the jobs file.
pub fn save(home: &Path, config: &JobsConfig) -> Result<(), JobsError> {
    let path = jobs_path(home);
    if let Err((json_path, problem)) = validate(config) {
        return Err(JobsError::Invalid { path, json_path, problem });
    }
    let write_err = |source| JobsError::Write { path: path.clone(), source };
    let config_dir = home.join("config");
    std::fs::create_dir_all(&config_dir).map_err(write_err)?;
    let dir = Dir::open_ambient_dir(&config_dir, ambient_authority()).map_err(write_err)?;
    let mut bytes = serde_json::to_vec_pretty(config).map_err(|e| write_err(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    crate::fsx::write_atomic(&dir, JOBS_FILE, &bytes).map_err(write_err)
}

/// Resolves a configured path against `HERMES_HOME`.
pub fn resolve(home: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_owned() } else { home.join(p) }
}

/// The allowed roots of script jobs: `HERMES_HOME/scripts` and the listed ones.
pub fn allowed_roots(home: &Path, config: &JobsConfig) -> Vec<PathBuf> {
    std::iter::once(home.join("scripts")).chain(config.allowed_roots.iter().map(|r| resolve(home, r))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("/h/config/jobs.json")).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_expectation() {
        assert_eq!(
            err(r#"{"format_version":1,"jobs":[{"id":"a","schedule":"soon","kind":"upgrade-cycle"}]}"#),
            "invalid jobs file /h/config/jobs.json\n  at jobs[0].schedule: \"soon\" is not a schedule; expected a 5-field cron expression (e.g. \"*/15 * * * *\"), a macro (@hourly, @daily, @weekly, @monthly, @yearly) or an interval (e.g. \"15m\", \"1h\", \"1d\")"
        );
        assert!(err(r#"{"format_version":2}"#).contains("at format_version: unsupported format version 2; expected 1"));
        assert!(
            err(r#"{"format_version":1,"jobs":[{"id":"a","schedule":"1h","kind":"script"}]}"#)
                .contains("at jobs[0].path: missing; expected the script's path")
        );
        assert!(
            err(r#"{"format_version":1,"jobs":[{"id":"a","schedule":"1h","kind":"shell"}]}"#)
                .contains("at jobs[0].kind: unknown variant `shell`, expected `upgrade-cycle` or `script`")
        );
        assert!(err(r#"{"format_version":1,"jobs":[{"id":"a","schedule":"1h","kind":"upgrade-cycle"},{"id":"a","schedule":"1h","kind":"upgrade-cycle"}]}"#)
            .contains("at jobs[1].id: duplicate id \"a\""));
        assert!(
            err(r#"{"format_version":1,"jobs":[{"id":"a","schedule":"1h","kind":"upgrade-cycle","timeout_secs":0}]}"#)
                .contains("at jobs[0].timeout_secs: 0 is out of range; expected 1 to 86400 seconds")
        );
    }

    #[test]
    fn a_valid_file_round_trips() {
        let text = r#"{"format_version":1,"allowed_roots":["/opt/s"],"jobs":[
            {"id":"up","schedule":"*/15 * * * *","kind":"upgrade-cycle"},
            {"id":"b","schedule":"1h","kind":"script","path":"scripts/b.sh","args":["a b"],"timeout_secs":5,"enabled":false}]}"#;
        let config = parse(text, Path::new("jobs.json")).unwrap();
        assert_eq!(config.jobs[0].timeout_secs, 300);
        assert!(config.jobs[0].enabled && !config.jobs[1].enabled);
        let again = parse(&serde_json::to_string(&config).unwrap(), Path::new("jobs.json")).unwrap();
        assert_eq!(again, config);
    }
}
