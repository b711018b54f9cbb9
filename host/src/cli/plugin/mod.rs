//! `hermes plugin test|list|inspect`.

mod inspect;
mod list;
mod test;

use super::{CliError, ErrorKind, ExitStatus};
use crate::plugin::cache::ComponentCache;
use crate::plugin::engine::PluginEngine;
use crate::workspace::Workspace;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a component: world, imports, fixtures (each run twice), fuel
    Test(test::Args),
    /// The active plugin of each kind in this workspace
    List(list::Args),
    /// World, WIT version, imports, exports and metadata of a component
    Inspect(inspect::Args),
}

pub fn run(workspace: &Workspace, command: Command) -> Result<ExitStatus, CliError> {
    match command {
        Command::Test(args) => test::run(workspace, args),
        Command::List(args) => list::run(workspace, args),
        Command::Inspect(args) => inspect::run(workspace, args),
    }
}

/// The production engine, with the workspace's component cache when the
/// workspace exists.
fn engine(workspace: &Workspace) -> Result<PluginEngine, CliError> {
    let cache = workspace
        .home()
        .is_dir()
        .then(|| ComponentCache::open(&workspace.home().join("cache").join("plugins")).ok())
        .flatten();
    PluginEngine::new(cache).map_err(|e| CliError::new(ErrorKind::Internal, e.to_string()))
}

fn read_component(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::new(ErrorKind::Config, format!("cannot read component {}: {e}", path.display())))
}
