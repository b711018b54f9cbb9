//! `hermes simulate`: the runtime simulation lab. A scenario file
//! ([`scenario`], JSON, `format_version` 1) declares repositories and their
//! remotes, the steps taken between ticks (upstream commits, remote outages,
//! divergence, failing checks, foreign leases, resource pressure, crashes at
//! failpoints) and what must hold after each tick. [`run`] builds a
//! throw-away workspace of real git repositories ([`world`]), drives the
//! real cron path (`hermes tick` as a child process) once per tick, and
//! judges the expectations against the state files and git; [`report`]
//! prints the per-tick table of how runtime intelligence evolved.
//!
//! The shipped scenarios live in `config/scenarios/*.json` and are compiled
//! into the binary ([`SHIPPED`]), so an installed `hermes` runs them by
//! name. Nothing is written outside the simulation's own directory.
//! Format and scenarios: docs/runtime_simulation_lab.md.

pub mod report;
pub mod run;
pub mod scenario;
pub mod world;

#[cfg(test)]
mod scenario_properties;

use scenario::{Scenario, ScenarioError};
use std::path::{Path, PathBuf};

/// The scenarios shipped in `config/scenarios/`, by name, in the order
/// `--all` runs them.
pub const SHIPPED: &[(&str, &str)] = &[
    ("steady-upstream", include_str!("../../../config/scenarios/steady-upstream.json")),
    ("flaky-mirror", include_str!("../../../config/scenarios/flaky-mirror.json")),
    ("canary-regression", include_str!("../../../config/scenarios/canary-regression.json")),
    ("blocked-root", include_str!("../../../config/scenarios/blocked-root.json")),
    ("lease-contention", include_str!("../../../config/scenarios/lease-contention.json")),
    ("pressure-spike", include_str!("../../../config/scenarios/pressure-spike.json")),
    ("crash-mid-apply", include_str!("../../../config/scenarios/crash-mid-apply.json")),
    ("crash-mid-checkout", include_str!("../../../config/scenarios/crash-mid-checkout.json")),
];

/// A scenario ready to run, and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    /// `config/scenarios/NAME.json (built in)` or the file's path.
    pub source: String,
}

/// Why a scenario argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no scenario named {name:?}; the built-in scenarios are {}", names().join(", "))]
    Unknown { name: String },
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

/// The names of the shipped scenarios.
pub fn names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

/// The shipped scenario `name`.
pub fn shipped(name: &str) -> Result<Loaded, ResolveError> {
    let (name, text) =
        SHIPPED.iter().find(|(n, _)| *n == name).ok_or_else(|| ResolveError::Unknown { name: name.to_owned() })?;
    let path = PathBuf::from(format!("config/scenarios/{name}.json"));
    let scenario = scenario::parse(text.as_bytes(), &path)?;
    Ok(Loaded { scenario, source: format!("{} (built in)", path.display()) })
}

/// `NAME` of a shipped scenario, or a scenario file: an argument that
/// contains `/`, ends in `.json` or names an existing file is a file.
pub fn resolve(arg: &str) -> Result<Loaded, ResolveError> {
    let path = Path::new(arg);
    if arg.contains('/') || arg.ends_with(".json") || path.is_file() {
        let scenario = scenario::load(path)?;
        return Ok(Loaded { scenario, source: arg.to_owned() });
    }
    shipped(arg)
}

/// Every shipped scenario, in [`SHIPPED`] order.
pub fn all() -> Result<Vec<Loaded>, ResolveError> {
    SHIPPED.iter().map(|(name, _)| shipped(name)).collect()
}
