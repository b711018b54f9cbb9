//! `hermes plugin list`.

use crate::cli::{CliError, ExitStatus, print_json};
use crate::cycle::CycleError;
use crate::plugin::PluginKind;
use crate::plugin::set::PluginSet;
use crate::workspace::Workspace;
use serde_json::json;

/// The active plugin of each kind: name, version, source and digest.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let policy = workspace.load_policy()?;
    let set = PluginSet::load(workspace.home(), &workspace.policy_path(), &policy).map_err(CycleError::from)?;
    let rows: Vec<_> = PluginKind::ALL
        .into_iter()
        .map(|kind| {
            let active = set.get(kind);
            let p = &active.plugin;
            json!({
                "kind": kind,
                "name": p.metadata.name,
                "version": p.metadata.version,
                "source": p.source,
                "digest": p.digest,
                "wit_version": p.wit_version,
                "fuel": active.fuel,
                "memory_cap": active.memory_cap,
            })
        })
        .collect();
    if args.json {
        print_json(&rows)?;
    } else {
        for row in &rows {
            println!(
                "{:<20} {} {}  {}  sha256 {}",
                row["kind"].as_str().unwrap_or_default(),
                row["name"].as_str().unwrap_or_default(),
                row["version"].as_str().unwrap_or_default(),
                row["source"].as_str().unwrap_or_default(),
                row["digest"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitStatus::Success)
}
