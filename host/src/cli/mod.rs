//! The command line: one file per subcommand, each with its args struct and
//! `run` function; [`error::CliError`] is the one user-facing error, with a
//! kind that fixes the exit code and hints that say what to do.
//!
//! Exit codes (also in the README):
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | internal or I/O error |
//! | 2    | usage error (bad flags or arguments, or an argument the workspace refuses, e.g. `--at` beyond the ledger) |
//! | 3    | configuration error (policy invalid or missing) |
//! | 4    | state error (unreadable or newer-format state, workspace exists) |
//! | 5    | integrity error (the ledger's hash chain does not verify; `hermes replay` found a difference) |
//! | 6    | `hermes plugin test`: a check or fixture case failed |
//! | 10   | the cycle ran, and some repository is blocked or failed to apply (also `hermes tick` / `hermes job run` when an upgrade-cycle job ended so) |
//! | 11   | `hermes tick` / `hermes job run`: a job failed (non-zero exit or signal), timed out, was refused by the script preflight or could not run |
//! | 12   | `hermes simulate`: an expectation of a scenario did not hold (a bad scenario file is 3, an unknown scenario name 2) |
//!
//! `hermes tick` exits with the worst outcome of the jobs it ran (11 over
//! 10 over 0); a tick that found another tick running exits 0.

mod cron;
mod cycle;
mod demo;
mod error;
mod events;
mod explain;
mod graph;
mod init;
mod job;
mod metrics;
mod plan;
mod plugin;
mod policy;
mod render;
mod replay;
mod repo;
mod simulate;
mod status;
mod tick;
mod verify;

pub use error::{CliError, ErrorKind, ExitStatus};

use crate::workspace::Workspace;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Hermes: plan, gate, execute and replay upgrade cycles over the git
/// repositories of one workspace.
#[derive(Debug, Parser)]
#[command(name = "hermes", version, about, long_about = None)]
pub struct Cli {
    /// Workspace directory [default: ~/.hermes]
    #[arg(long, env = "HERMES_HOME", global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Log format on stderr (level from RUST_LOG, default warn)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::Args),
    #[command(subcommand)]
    Repo(repo::Command),
    #[command(subcommand)]
    Policy(policy::Command),
    Plan(plan::Args),
    #[command(subcommand)]
    Plugin(plugin::Command),
    Cycle(cycle::Args),
    Verify(verify::Args),
    Replay(replay::Args),
    Events(events::Args),
    Explain(explain::Args),
    Status(status::Args),
    Graph(graph::Args),
    Metrics(metrics::Args),
    Demo(demo::Args),
    Tick(tick::Args),
    #[command(subcommand)]
    Job(job::Command),
    #[command(subcommand)]
    Cron(cron::Command),
    Simulate(simulate::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`hermes events | head`), as Unix tools do,
    // instead of panicking in `println!`.
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(status) => status.exit_code(),
        Err(error) => {
            eprint!("{error}");
            error.kind.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<ExitStatus, CliError> {
    let workspace = || -> Result<Workspace, CliError> {
        let home = cli.home.clone().or_else(Workspace::default_home).ok_or_else(|| {
            CliError::new(ErrorKind::Config, "cannot tell where the workspace is: HOME is not set")
                .hint("pass --home DIR or set HERMES_HOME")
        })?;
        Ok(Workspace::new(&home))
    };
    match cli.command {
        Command::Init(args) => init::run(&workspace()?, args),
        Command::Repo(command) => repo::run(&workspace()?, command),
        Command::Policy(command) => policy::run(&workspace()?, command),
        Command::Plan(args) => plan::run(&workspace()?, args),
        Command::Plugin(command) => plugin::run(&workspace()?, command),
        Command::Cycle(args) => cycle::run(&workspace()?, args),
        Command::Verify(args) => verify::run(&workspace()?, args),
        Command::Replay(args) => replay::run(&workspace()?, args),
        Command::Events(args) => events::run(&workspace()?, args),
        Command::Explain(args) => explain::run(&workspace()?, args),
        Command::Status(args) => status::run(&workspace()?, args),
        Command::Graph(args) => graph::run(&workspace()?, args),
        Command::Metrics(args) => metrics::run(&workspace()?, args),
        Command::Demo(args) => demo::run(args),
        Command::Tick(args) => tick::run(&workspace()?, args),
        Command::Job(command) => job::run(&workspace()?, command),
        Command::Cron(command) => cron::run(&workspace()?, command),
        Command::Simulate(args) => simulate::run(args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A progress printer: lines on stderr when it is a terminal, silence under
/// cron or when stderr is redirected.
fn progress() -> impl Fn(&str) {
    let interactive = std::io::stderr().is_terminal();
    move |message: &str| {
        if interactive {
            eprintln!("  {message}");
        }
    }
}

/// Opens the workspace's state directory for a reader; a workspace that was
/// never initialized is a configuration error with a hint.
fn open_state(workspace: &Workspace) -> Result<crate::state::StateStore, CliError> {
    let state_dir = workspace.state_dir();
    if !state_dir.is_dir() {
        return Err(CliError::new(ErrorKind::Config, format!("no state directory at {}", state_dir.display()))
            .hint("create a workspace with `hermes init`"));
    }
    Ok(crate::state::StateStore::open(&state_dir)?)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(ErrorKind::Internal, format!("cannot serialize output: {e}")))?;
    println!("{text}");
    Ok(())
}
