//! `hermes plan`: phase 1 only.

use super::{CliError, ExitStatus, print_json, progress, render};
use crate::clock::Clock;
use crate::cycle::{self, CycleOptions, Mode};
use crate::workspace::Workspace;

/// Probe and plan every repository without changing anything: no worktree,
/// branch, ledger or state view is touched. Fetching updates only
/// remote-tracking refs; --no-fetch plans from what was fetched last.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Compare with the remote-tracking refs as they are, without fetching
    #[arg(long)]
    no_fetch: bool,
    /// Print the plan as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let clock = Clock::from_env().map_err(|e| CliError::new(super::ErrorKind::Config, e))?;
    let options = CycleOptions { mode: Mode::Plan, fetch: !args.no_fetch, clock, before_gate: None };
    let report = cycle::run(workspace, options, &progress())?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", render::cycle_table(&report));
    }
    Ok(ExitStatus::Success)
}
