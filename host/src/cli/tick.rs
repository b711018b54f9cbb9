//! `hermes tick`: the cron entrypoint (see [`crate::scheduler`]).

use super::{CliError, ErrorKind, ExitStatus, print_json, progress};
use crate::clock::Clock;
use crate::scheduler::{self, Selection, TickReport};
use crate::workspace::Workspace;

/// Run the jobs of config/jobs.json that are due, one after another, under
/// state/.tick.lock. Exits with the worst job outcome: 0, 10 (an upgrade
/// cycle needs attention) or 11 (a job failed, timed out or was refused).
/// When another tick is running, records that this one skipped and exits 0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the tick report as JSON
    #[arg(long)]
    json: bool,
    /// Print nothing when no job ran (for cron, whose output is logged or mailed)
    #[arg(long, short, conflicts_with = "json")]
    quiet: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let output = if args.json {
        Output::Json
    } else if args.quiet {
        Output::Quiet
    } else {
        Output::Text
    };
    run_selection(workspace, Selection::Due, output)
}

/// How a tick's report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    Text,
    /// Text, but nothing when no job ran.
    Quiet,
    Json,
}

/// Runs a tick over `selection` and prints its report (shared with `hermes job run`).
pub(super) fn run_selection(
    workspace: &Workspace,
    selection: Selection,
    output: Output,
) -> Result<ExitStatus, CliError> {
    let clock = Clock::from_env().map_err(|e| CliError::new(ErrorKind::Config, e))?;
    super::open_state(workspace)?;
    let report = scheduler::tick(workspace, clock, selection, &progress())?;
    match output {
        Output::Json => print_json(&report)?,
        Output::Quiet if report.jobs.is_empty() => {}
        Output::Text | Output::Quiet => print!("{}", render(&report)),
    }
    Ok(match report.exit_code {
        0 => ExitStatus::Success,
        10 => ExitStatus::Attention,
        _ => ExitStatus::JobFailed,
    })
}

fn render(report: &TickReport) -> String {
    if let Some(skipped) = &report.skipped {
        return match &skipped.holder {
            Some(h) => format!(
                "skipped: another tick (pid {} on {}, started {}) holds the tick lock\n",
                h.pid, h.host, h.started_at
            ),
            None => "skipped: another tick holds the tick lock\n".to_owned(),
        };
    }
    if report.jobs.is_empty() {
        return "no job due\n".to_owned();
    }
    let mut out = String::new();
    for run in &report.jobs {
        out.push_str(&format!("{:<24} {:<10} {}\n", run.id, run.outcome.as_str(), run.detail));
    }
    out
}
