//! `hermes plugin test COMPONENT [--fixtures FILE]`.

use super::{engine, read_component};
use crate::cli::{CliError, ErrorKind, ExitStatus, print_json};
use crate::plugin::call::CallSpec;
use crate::plugin::engine::{DEFAULT_DEADLINE, DEFAULT_MEMORY_CAP};
use crate::plugin::fixture::{self, CaseReport};
use crate::workspace::Workspace;
use serde_json::json;
use std::path::PathBuf;

/// Load COMPONENT with the production engine and sandbox (world detection,
/// import check, type check, metadata), then run each fixture case twice in
/// fresh instances: a case fails on a wrong result or on any difference in
/// output or fuel between the runs. Exits 6 if anything failed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm)
    component: PathBuf,
    /// Fixture file: a JSON array of { "name", "input", "expect" }
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Fuel per call [default: the kind's default]
    #[arg(long)]
    fuel: Option<u64>,
    /// Logical time (unix seconds) seen by the plugin's clocks [default: the
    /// case input's `logical-time`, else 0]
    #[arg(long)]
    logical_time: Option<u64>,
    /// Worktree to preopen read-only for a probe
    #[arg(long)]
    worktree: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let bytes = read_component(&args.component)?;
    let engine = engine(workspace)?;
    let source = args.component.display().to_string();
    let cases = match &args.fixtures {
        Some(path) => fixture::load(path).map_err(|e| CliError::new(ErrorKind::Config, e.to_string()))?,
        None => Vec::new(),
    };
    let plugin = match engine.load(&bytes, &source) {
        Ok(plugin) => plugin,
        Err(e) => {
            if args.json {
                print_json(
                    &json!({ "component": source, "loaded": false, "error": e.to_string(), "passed": 0, "failed": 1 }),
                )?;
            } else {
                println!("FAIL load: {e}\n\n0 passed, 1 failed");
            }
            return Ok(ExitStatus::PluginTestFailed);
        }
    };
    // The workspace policy's limits for this kind, when there is one.
    let limits =
        workspace.load_policy().ok().and_then(|p| p.plugins.get(plugin.kind.as_str()).cloned()).unwrap_or_default();
    let base = CallSpec {
        fuel: args.fuel.or(limits.fuel).unwrap_or_else(|| plugin.kind.default_fuel()),
        memory_cap: limits.memory_mib.map_or(DEFAULT_MEMORY_CAP, |m| (m as usize) << 20),
        deadline: limits.deadline_ms.map_or(DEFAULT_DEADLINE, std::time::Duration::from_millis),
        logical_time: 0,
        worktree: args.worktree.as_deref(),
    };
    let reports: Vec<CaseReport> = cases
        .iter()
        .map(|case| {
            let from_input = case.input.get("logical-time").and_then(serde_json::Value::as_u64);
            let spec = CallSpec { logical_time: args.logical_time.or(from_input).unwrap_or(0), ..base };
            fixture::run_case(&engine, &plugin, case, &spec)
        })
        .collect();
    let failed = reports.iter().filter(|r| !r.passed).count();
    let passed = reports.len() - failed;
    if args.json {
        print_json(&json!({
            "component": source,
            "loaded": true,
            "digest": plugin.digest,
            "world": plugin.kind,
            "wit_version": plugin.wit_version,
            "metadata": plugin.metadata,
            "imports": plugin.imports,
            "cases": reports,
            "passed": passed,
            "failed": failed,
        }))?;
    } else {
        let m = &plugin.metadata;
        println!(
            "{} {} ({}, hermes:plugin@{}), sha256 {}",
            m.name,
            m.version,
            plugin.kind.as_str(),
            plugin.wit_version,
            plugin.digest
        );
        println!("imports ok: {}", plugin.imports.len());
        for r in &reports {
            let status = if r.passed { "PASS" } else { "FAIL" };
            println!(
                "{status} {}  fuel {}/{} ({:.2}%), peak memory {} KiB",
                r.name,
                r.fuel_used,
                r.fuel_limit,
                r.fuel_used as f64 * 100.0 / r.fuel_limit.max(1) as f64,
                r.peak_memory / 1024
            );
            for failure in &r.failures {
                println!("     {failure}");
            }
        }
        println!("\n{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 { ExitStatus::Success } else { ExitStatus::PluginTestFailed })
}
