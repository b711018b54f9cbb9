//! Plugin fixtures and the runner behind `hermes plugin test`.
//!
//! A fixture file is a JSON array of cases `{ "name", "input", "expect" }`:
//! `input` is the operation's argument in the JSON mapping of
//! [`super::value`], `expect` the expected result, `{"ok": ..}` or
//! `{"err": ".."}`, matched as a subset ([`matches`]). Every case runs twice,
//! each time in a fresh instance; any difference in output or fuel between
//! the two runs fails the case.

use super::call::{self, CallOutcome, CallRecord, CallSpec};
use super::engine::{LoadedPlugin, PluginEngine};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// One fixture case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub input: Value,
    pub expect: Value,
}

/// Errors reading a fixture file.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read fixtures {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid fixtures {path}\n  at {json_path}: {problem}")]
    Invalid { path: String, json_path: String, problem: String },
}

/// Parses a fixture file, naming the JSON path of any error.
pub fn load(path: &Path) -> Result<Vec<Case>, FixtureError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| FixtureError::Read { path: shown.clone(), source })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let cases: Vec<Case> = serde_path_to_error::deserialize(&mut de).map_err(|e| FixtureError::Invalid {
        path: shown.clone(),
        json_path: e.path().to_string(),
        problem: e.inner().to_string(),
    })?;
    for (i, case) in cases.iter().enumerate() {
        let shape_ok =
            case.expect.as_object().is_some_and(|o| o.len() == 1 && (o.contains_key("ok") || o.contains_key("err")));
        if !shape_ok {
            return Err(FixtureError::Invalid {
                path: shown,
                json_path: format!("[{i}].expect"),
                problem: "expected {\"ok\": VALUE} or {\"err\": \"message\"}".into(),
            });
        }
        if cases[..i].iter().any(|c| c.name == case.name) {
            return Err(FixtureError::Invalid {
                path: shown,
                json_path: format!("[{i}].name"),
                problem: format!("duplicate case name {:?}", case.name),
            });
        }
    }
    Ok(cases)
}

/// Result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub name: String,
    pub passed: bool,
    /// Why it failed, if it did.
    pub failures: Vec<String>,
    pub outcome: CallOutcome,
    /// The result as `{"ok": ..}` / `{"err": ..}` (or the failure outcome).
    pub actual: Value,
    pub fuel_used: u64,
    pub fuel_limit: u64,
    pub peak_memory: u64,
}

/// Whether `actual` matches `expected` (objects: subset of keys; arrays:
/// same length, element-wise; scalars: equal).
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| matches(ev, av)),
        _ => expected == actual,
    }
}

/// The result of a call as fixtures write it.
pub fn result_value(record: &CallRecord) -> Value {
    match (record.outcome, &record.output) {
        (CallOutcome::Ok, Some(output)) => json!({ "ok": output }),
        (CallOutcome::PluginError, _) => json!({ "err": record.error }),
        (outcome, _) => json!({ "failed": outcome, "error": record.error }),
    }
}

/// Runs one case twice and compares.
pub fn run_case(engine: &PluginEngine, plugin: &LoadedPlugin, case: &Case, spec: &CallSpec<'_>) -> CaseReport {
    let first = call::invoke(engine, plugin, case.input.clone(), spec);
    let second = call::invoke(engine, plugin, case.input.clone(), spec);
    let actual = result_value(&first);
    let mut failures = Vec::new();
    if !matches!(first.outcome, CallOutcome::Ok | CallOutcome::PluginError) {
        failures.push(format!("call failed ({:?}): {}", first.outcome, first.error.clone().unwrap_or_default()));
    } else if !matches(&case.expect, &actual) {
        failures.push(format!("expected {}, got {}", case.expect, actual));
    }
    if result_value(&second) != actual {
        failures.push(format!("not deterministic: a second run returned {}", result_value(&second)));
    }
    if second.fuel_used != first.fuel_used {
        failures.push(format!("not deterministic: fuel {} then {}", first.fuel_used, second.fuel_used));
    }
    CaseReport {
        name: case.name.clone(),
        passed: failures.is_empty(),
        failures,
        outcome: first.outcome,
        actual,
        fuel_used: first.fuel_used,
        fuel_limit: first.fuel_limit,
        peak_memory: first.peak_memory,
    }
}
