//! `hermes init`: create a workspace.

use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::policy::{self, Policy};
use crate::workspace::Workspace;
use serde_json::json;

/// Create a workspace: config/ with a commented starter policy and its
/// schema, and an empty state/ directory. Never overwrites a policy.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what was created as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let policy_path = workspace.policy_path();
    if policy_path.exists() {
        return Err(CliError::new(ErrorKind::Config, format!("policy {} already exists", policy_path.display()))
            .hint("edit it, or add repositories with `hermes repo add PATH`"));
    }
    let io = |what: &str, e: std::io::Error| CliError::new(ErrorKind::Internal, format!("cannot create {what}: {e}"));
    let config_dir = workspace.config_dir();
    std::fs::create_dir_all(&config_dir).map_err(|e| io(&config_dir.display().to_string(), e))?;
    std::fs::create_dir_all(workspace.state_dir()).map_err(|e| io(&workspace.state_dir().display().to_string(), e))?;
    let schema_path = config_dir.join(policy::SCHEMA_FILE);
    policy::save_schema(&config_dir)?;
    policy::save(&Policy::starter(), &config_dir)?;
    if args.json {
        print_json(&json!({
            "home": workspace.home(),
            "policy": policy_path,
            "schema": schema_path,
            "state": workspace.state_dir(),
        }))?;
    } else {
        println!("created workspace {}", workspace.home().display());
        println!("  policy  {}", policy_path.display());
        println!("  state   {}", workspace.state_dir().display());
        println!("next: hermes repo add PATH, then hermes plan");
    }
    Ok(ExitStatus::Success)
}
