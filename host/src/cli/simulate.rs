//! `hermes simulate`: run scenarios of the runtime simulation lab (see
//! [`crate::simulate`] and docs/runtime_simulation_lab.md).

use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::simulate::report::{self, Status};
use crate::simulate::run::{RunError, RunOptions};
use crate::simulate::{self, Loaded, ResolveError};
use serde_json::json;
use std::path::PathBuf;

/// Run a simulation: build a throw-away workspace of real git repositories,
/// apply the scenario's faults between ticks, drive the real `hermes tick`
/// once per tick and check every expectation. Prints a per-tick table of
/// decisions, outcomes and runtime intelligence. Exits 0 when every
/// expectation held, 12 when one did not, 3 for an invalid scenario file,
/// 2 for an unknown scenario name.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["scenarios", "all", "list"])))]
pub struct Args {
    /// Built-in scenario names or scenario files (a path, or a name ending in .json), run in order
    #[arg(value_name = "SCENARIO")]
    scenarios: Vec<String>,
    /// Run every built-in scenario
    #[arg(long)]
    all: bool,
    /// List the built-in scenarios
    #[arg(long)]
    list: bool,
    /// Keep the workspace and print its path
    #[arg(long)]
    keep: bool,
    /// Build the workspace in DIR (new or empty; with several scenarios, one subdirectory each); implies --keep
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

impl From<ResolveError> for CliError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Unknown { .. } => CliError::new(ErrorKind::Usage, e.to_string())
                .hint("list them with `hermes simulate --list`, or pass a scenario file's path"),
            ResolveError::Scenario(e) => CliError::new(ErrorKind::Config, e.to_string())
                .hint("the scenario format is described in docs/runtime_simulation_lab.md"),
        }
    }
}

pub fn run(args: Args) -> Result<ExitStatus, CliError> {
    if args.list {
        let loaded = simulate::all()?;
        if args.json {
            let list: Vec<_> = loaded
                .iter()
                .map(|l| {
                    json!({ "name": l.scenario.name, "description": l.scenario.description,
                                 "ticks": l.scenario.ticks.len(), "needs_failpoints": l.scenario.needs_failpoints })
                })
                .collect();
            print_json(&json!({ "scenarios": list }))?;
        } else {
            for l in &loaded {
                println!("{:<20} {} ({} ticks)", l.scenario.name, l.scenario.description, l.scenario.ticks.len());
            }
        }
        return Ok(ExitStatus::Success);
    }
    let scenarios: Vec<Loaded> = if args.all {
        simulate::all()?
    } else {
        args.scenarios.iter().map(|arg| simulate::resolve(arg)).collect::<Result<_, _>>()?
    };
    let many = scenarios.len() > 1;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(ErrorKind::Internal, format!("cannot find the running hermes executable: {e}")))?;
    let cache = tempfile::Builder::new()
        .prefix("hermes-sim-plugins-")
        .tempdir()
        .map_err(|e| CliError::new(ErrorKind::Internal, format!("cannot create a temporary directory: {e}")))?;
    let mut reports = Vec::new();
    for loaded in &scenarios {
        let dir = args.dir.as_ref().map(|d| if many { d.join(&loaded.scenario.name) } else { d.clone() });
        let options =
            RunOptions { exe: exe.clone(), keep: args.keep, dir, plugin_cache: Some(cache.path().to_owned()) };
        let report = simulate::run::run(&loaded.scenario, &loaded.source, &options).map_err(|e| match e {
            RunError::World(simulate::world::WorldError::NotEmpty(_)) => {
                CliError::new(ErrorKind::State, e.to_string()).hint("pass --dir with a new directory")
            }
            RunError::World(simulate::world::WorldError::Policy(_)) => {
                CliError::new(ErrorKind::Config, format!("scenario {}: {e}", loaded.source))
                    .hint("the scenario's `policy` members follow docs/policy.md")
            }
            _ => CliError::new(ErrorKind::Internal, format!("scenario {}: {e}", loaded.source)),
        })?;
        if !args.json {
            print!("{}", report::render(&report));
        }
        reports.push(report);
    }
    let count = |status: Status| reports.iter().filter(|r| r.status == status).count();
    let (passed, failed, skipped) = (count(Status::Passed), count(Status::Failed), count(Status::Skipped));
    if args.json {
        print_json(&json!({ "scenarios": reports, "passed": passed, "failed": failed, "skipped": skipped }))?;
    } else if reports.len() > 1 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(if failed > 0 { ExitStatus::ExpectationFailed } else { ExitStatus::Success })
}
