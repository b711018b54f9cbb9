//! `hermes cycle`: run both phases once.

use super::{CliError, ErrorKind, ExitStatus, print_json, progress, render};
use crate::clock::Clock;
use crate::cycle::{self, CycleOptions, Mode};
use crate::workspace::Workspace;

/// Run one upgrade cycle over every repository in the policy: probe, plan,
/// then fast-forward, defer or block each one. Exits 10 when a repository
/// is blocked or failed to apply. When another cycle is running on the
/// workspace, records that this one skipped and exits 0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the cycle report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let clock = Clock::from_env().map_err(|e| CliError::new(ErrorKind::Config, e))?;
    let report = cycle::run(
        workspace,
        CycleOptions { mode: Mode::Execute, fetch: true, clock, before_gate: None },
        &progress(),
    )?;
    if args.json {
        print_json(&report)?;
    } else if let Some(skipped) = &report.skipped {
        println!("{}", render::skipped_line(skipped));
    } else {
        print!("{}", render::cycle_table(&report));
    }
    Ok(if report.needs_attention() { ExitStatus::Attention } else { ExitStatus::Success })
}
