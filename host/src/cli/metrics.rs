//! `hermes metrics`: Prometheus text exposition of the ledger's totals.

use super::{CliError, ExitStatus, print_json};
use crate::projection::checkpoint;
use crate::projection::metrics::{exposition, write_textfile};
use crate::workspace::Workspace;
use serde_json::json;
use std::path::PathBuf;

/// Print the totals of the ledger (cycles, outcomes by kind, rollbacks,
/// plugin calls and fuel, lease conflicts and takeovers, ledger size) in
/// Prometheus text format, read from the graph projection's checkpoint.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the exposition atomically to this file (for node_exporter's
    /// textfile collector) instead of printing it
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
    /// Print the totals as JSON instead
    #[arg(long, conflicts_with = "textfile")]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let store = super::open_state(workspace)?;
    let projection = checkpoint::project(&store)?;
    let bytes = projection.scan.end;
    if args.json {
        print_json(&json!({
            "counters": projection.snapshot.counters,
            "skipped_cycles": projection.snapshot.skipped_ticks,
            "active_leases": projection.snapshot.leases.len(),
            "ledger_bytes": bytes,
        }))?;
        return Ok(ExitStatus::Success);
    }
    let text = exposition(&projection.snapshot, bytes);
    match &args.textfile {
        Some(path) => write_textfile(path, &text).map_err(|e| {
            CliError::new(super::ErrorKind::Internal, format!("cannot write {}: {e}", path.display()))
                .hint("the directory must exist and be writable")
        })?,
        None => print!("{text}"),
    }
    Ok(ExitStatus::Success)
}
