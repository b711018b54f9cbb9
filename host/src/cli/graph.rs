//! `hermes graph`: the graph projection at a ledger position.

use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::projection::checkpoint;
use crate::projection::dot::to_dot;
use crate::workspace::Workspace;

/// Print the graph projection (repositories, remotes, leases, ticks and the
/// edges between them) after event SEQ, or now.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project up to this event's sequence number (default: the last event)
    #[arg(long, value_name = "SEQ")]
    at: Option<u64>,
    /// Output format: `json`, or `dot` for Graphviz (`hermes graph --format dot | dot -Tsvg`)
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Same as `--format json`
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Json,
    Dot,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let store = super::open_state(workspace)?;
    let projection = checkpoint::project_until(&store, args.at)?;
    if let Some(at) = args.at.filter(|at| *at > projection.scan.head.seq) {
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("--at {at}: the ledger ends at event {}", projection.scan.head.seq),
        ));
    }
    match (args.format, args.json) {
        (Format::Dot, false) => print!("{}", to_dot(&projection.snapshot)),
        _ => print_json(&projection.snapshot)?,
    }
    Ok(ExitStatus::Success)
}
