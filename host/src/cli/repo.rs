//! `hermes repo add`: register a repository in the policy.

use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::policy::{self, RepoPolicy};
use crate::workspace::Workspace;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register a git working tree in the policy
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Path of the git working tree
    path: PathBuf,
    /// Name in the policy [default: the directory's name]
    #[arg(long)]
    name: Option<String>,
    /// A repository (by name) that must be upgraded first; repeatable
    #[arg(long = "depends-on", value_name = "NAME")]
    depends_on: Vec<String>,
    /// Branch the working tree must be on
    #[arg(long)]
    branch: Option<String>,
    /// Print the new entry as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, command: Command) -> Result<ExitStatus, CliError> {
    let Command::Add(args) = command;
    let mut policy = workspace.load_policy()?;
    let absolute = std::path::absolute(&args.path)
        .and_then(|p| p.canonicalize())
        .map_err(|e| CliError::new(ErrorKind::Config, format!("cannot use {}: {e}", args.path.display())))?;
    let repo = git2::Repository::open(&absolute).map_err(|e| {
        CliError::new(ErrorKind::Config, format!("{} is not a git repository: {}", absolute.display(), e.message()))
            .hint("pass the path of a git working tree")
    })?;
    if repo.is_bare() {
        return Err(CliError::new(ErrorKind::Config, format!("{} is a bare repository", absolute.display()))
            .hint("hermes upgrades working trees; pass a clone with a checkout"));
    }
    let name = match args.name {
        Some(name) => name,
        None => absolute.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let home = workspace.home().canonicalize().unwrap_or_else(|_| workspace.home().to_owned());
    let path = match absolute.strip_prefix(&home) {
        Ok(relative) => relative.to_string_lossy().into_owned(),
        Err(_) => absolute.to_string_lossy().into_owned(),
    };
    let entry = RepoPolicy {
        comment: None,
        name,
        path,
        branch: args.branch,
        depends_on: args.depends_on,
        remotes: Vec::new(),
        canary: None,
        health: None,
    };
    policy.repos.push(entry.clone());
    policy::validate(&policy, &workspace.policy_path(), workspace.home())
        .map_err(|e| CliError::from(e).hint("nothing was changed"))?;
    policy::save(&policy, &workspace.config_dir())?;
    if args.json {
        print_json(&entry)?;
    } else {
        println!("added {} ({}) to {}", entry.name, entry.path, workspace.policy_path().display());
    }
    Ok(ExitStatus::Success)
}
