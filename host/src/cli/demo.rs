//! `hermes demo`: build a demo workspace and run a cycle on it.

use super::{CliError, ErrorKind, ExitStatus, print_json, progress, render};
use crate::clock::Clock;
use crate::cycle::{self, CycleOptions, Mode};
use crate::demo::{self, DEMO_REPOS};
use crate::workspace::Workspace;
use std::path::PathBuf;

/// Build a demo workspace of real git repositories with bare upstreams
/// (some behind, one dirty, one diverged, one unreachable, dependencies
/// between them), run `hermes cycle` on it, and say where to look.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the demo workspace (must be new or empty) [default: a new temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the cycle report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitStatus, CliError> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("hermes-demo-")
            .tempdir()
            .map_err(|e| CliError::new(ErrorKind::Internal, format!("cannot create a temporary directory: {e}")))?
            .keep(),
    };
    let workspace = Workspace::new(&dir);
    demo::build(workspace.home()).map_err(|e| match e {
        demo::DemoError::NotEmpty(_) => {
            CliError::new(ErrorKind::State, e.to_string()).hint("pass --dir with a new directory")
        }
        demo::DemoError::Build { .. } => CliError::new(ErrorKind::Internal, e.to_string()),
    })?;
    let clock = Clock::from_env().map_err(|e| CliError::new(ErrorKind::Config, e))?;
    let report = cycle::run(
        &workspace,
        CycleOptions { mode: Mode::Execute, fetch: true, clock, before_gate: None },
        &progress(),
    )?;
    if args.json {
        print_json(&report)?;
        return Ok(ExitStatus::Success);
    }
    let home = workspace.home().display();
    println!("Hermes demo workspace: {home}\n");
    println!("It holds {} real git repositories, each with a bare upstream in upstream/:", DEMO_REPOS.len());
    for spec in DEMO_REPOS {
        let deps = if spec.depends_on.is_empty() {
            String::new()
        } else {
            format!(" (depends on {})", spec.depends_on.join(", "))
        };
        println!("  {:<7} {}{deps}", spec.name, spec.expect);
    }
    println!("\nOne `hermes cycle` later:\n");
    print!("{}", render::cycle_table(&report));
    println!("\nWhere to look:");
    println!("  {}/config/runtime_upgrade_policies.json   the policy", home);
    println!("  {}/state/runtime_events.jsonl             the hash-chained event ledger", home);
    println!("  {}/state/global_orchestration_plan.json   the plan and its decision hash", home);
    println!("  {}/state/auto_safe_upgrade_state.json     per-repository state", home);
    println!("\nTry:");
    println!("  hermes --home {home} verify     check the ledger's hash chain");
    println!("  hermes --home {home} plan       plan again (nothing changes)");
    println!(
        "  hermes --home {home} cycle      a second cycle: nothing left to upgrade (a third has the same decision hash)"
    );
    println!("  git -C {home}/repos/core log --oneline");
    Ok(ExitStatus::Success)
}
