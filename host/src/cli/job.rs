//! `hermes job list|add|remove|run`: the jobs of config/jobs.json.

use super::render::table;
use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::clock::Clock;
use crate::scheduler::jobs::{self, Job, JobKind};
use crate::scheduler::{self, NextRun, SchedulerState, Selection};
use crate::state::StateStore;
use crate::workspace::Workspace;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the configured jobs with their last run
    List {
        /// Print the jobs as JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a job to config/jobs.json
    Add(AddArgs),
    /// Remove a job from config/jobs.json
    Remove {
        /// The job's id
        id: String,
    },
    /// Run a job now, due or not (recorded like a tick's run)
    Run {
        /// The job's id
        id: String,
        /// Print the tick report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The job's id (letters, digits, '.', '_', '-')
    id: String,
    /// 5-field cron expression (UTC) or an interval such as 15m, 1h, 1d
    #[arg(long)]
    schedule: String,
    /// What the job runs
    #[arg(long, value_enum)]
    kind: JobKind,
    /// Script jobs: the executable (relative to HERMES_HOME)
    #[arg(long)]
    path: Option<String>,
    /// Script jobs: one argument, passed unchanged (repeat for more)
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Seconds before a script and its children are killed
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Add the job disabled (ticks skip it; `hermes job run` still runs it)
    #[arg(long)]
    disabled: bool,
}

pub fn run(workspace: &Workspace, command: Command) -> Result<ExitStatus, CliError> {
    match command {
        Command::List { json } => list(workspace, json),
        Command::Add(args) => add(workspace, args),
        Command::Remove { id } => {
            let mut config = jobs::load(workspace.home())?;
            let before = config.jobs.len();
            config.jobs.retain(|j| j.id != id);
            if config.jobs.len() == before {
                return Err(CliError::new(ErrorKind::Usage, format!("no job {id:?} in the jobs file"))
                    .hint("list the jobs with `hermes job list`"));
            }
            jobs::save(workspace.home(), &config)?;
            println!("removed job {id}");
            Ok(ExitStatus::Success)
        }
        Command::Run { id, json } => {
            let output = if json { super::tick::Output::Json } else { super::tick::Output::Text };
            super::tick::run_selection(workspace, Selection::Now(id), output)
        }
    }
}

fn add(workspace: &Workspace, args: AddArgs) -> Result<ExitStatus, CliError> {
    let mut config = jobs::load(workspace.home())?;
    if config.jobs.iter().any(|j| j.id == args.id) {
        return Err(CliError::new(ErrorKind::Usage, format!("a job {:?} exists already", args.id))
            .hint("remove it first with `hermes job remove`"));
    }
    let id = args.id.clone();
    config.jobs.push(Job {
        id: args.id,
        schedule: args.schedule,
        kind: args.kind,
        path: args.path,
        args: args.args,
        timeout_secs: args.timeout_secs,
        enabled: !args.disabled,
    });
    if let Err((at, problem)) = jobs::validate(&config) {
        let field = at.rsplit_once('.').map_or(at.as_str(), |(_, f)| f).replace('_', "-");
        return Err(CliError::new(ErrorKind::Usage, format!("cannot add job {id:?}: --{field}: {problem}")));
    }
    jobs::save(workspace.home(), &config)?;
    println!("added job {id}");
    Ok(ExitStatus::Success)
}

fn list(workspace: &Workspace, json: bool) -> Result<ExitStatus, CliError> {
    let config = jobs::load(workspace.home())?;
    let state = if workspace.state_dir().is_dir() {
        scheduler::saved_state(&StateStore::open(&workspace.state_dir())?)
    } else {
        SchedulerState::default()
    };
    let clock = Clock::from_env().map_err(|e| CliError::new(ErrorKind::Config, e))?;
    let next: BTreeMap<String, NextRun> =
        scheduler::next_runs(&config, &state, clock.now()).into_iter().map(|run| (run.id.clone(), run)).collect();
    if json {
        let rows: Vec<_> = config
            .jobs
            .iter()
            .map(|job| {
                let mut row = serde_json::to_value(job).unwrap_or_default();
                row["state"] = json!(state.jobs.get(&job.id));
                row["next_run"] = json!(next.get(&job.id));
                row
            })
            .collect();
        print_json(&json!({ "file": jobs::jobs_path(workspace.home()), "jobs": rows }))?;
        return Ok(ExitStatus::Success);
    }
    if config.jobs.is_empty() {
        println!("no jobs in {}", jobs::jobs_path(workspace.home()).display());
        return Ok(ExitStatus::Success);
    }
    let rows: Vec<[String; 7]> = config
        .jobs
        .iter()
        .map(|job| {
            let entry = state.jobs.get(&job.id);
            [
                job.id.clone(),
                job.kind.as_str().to_owned(),
                job.schedule.clone(),
                if job.enabled { "yes" } else { "no" }.to_owned(),
                entry.and_then(|e| e.last_started.clone()).unwrap_or_else(|| "-".into()),
                entry.and_then(|e| e.last_outcome).map_or("-", |o| o.as_str()).to_owned(),
                next.get(&job.id).map_or("-".into(), describe_next),
            ]
        })
        .collect();
    print!("{}", table(["ID", "KIND", "SCHEDULE", "ENABLED", "LAST STARTED", "LAST OUTCOME", "NEXT RUN"], &rows));
    Ok(ExitStatus::Success)
}

/// A job's next run in one cell: its time, `due now`, or `no slot within a year`.
pub(super) fn describe_next(run: &NextRun) -> String {
    match (&run.at, run.due_now) {
        (_, true) => "due now".to_owned(),
        (Some(at), false) => at.clone(),
        (None, false) => "no slot within a year".to_owned(),
    }
}
