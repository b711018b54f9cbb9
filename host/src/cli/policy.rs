//! `hermes policy check|schema`: validate the policy, print its schema.

use super::{CliError, ExitStatus, print_json};
use crate::cycle::CycleError;
use crate::plugin::set::PluginSet;
use crate::policy;
use crate::workspace::Workspace;
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the policy and summarize it
    Check {
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the policy's JSON Schema
    Schema,
}

pub fn run(workspace: &Workspace, command: Command) -> Result<ExitStatus, CliError> {
    match command {
        Command::Schema => print!("{}", policy::schema_json()),
        Command::Check { json } => {
            let policy = workspace.load_policy()?;
            // Loading the plugins checks pins, imports and worlds.
            PluginSet::load(workspace.home(), &workspace.policy_path(), &policy).map_err(CycleError::from)?;
            crate::resource::check_override(workspace.home(), &policy.resources).map_err(CycleError::from)?;
            let repos: Vec<&str> = policy.repos.iter().map(|r| r.name.as_str()).collect();
            if json {
                print_json(&json!({
                    "policy": workspace.policy_path(),
                    "digest": policy.digest(),
                    "repos": repos,
                }))?;
            } else {
                println!(
                    "{}: ok, {} repositories, digest {}",
                    workspace.policy_path().display(),
                    repos.len(),
                    policy.digest()
                );
            }
        }
    }
    Ok(ExitStatus::Success)
}
