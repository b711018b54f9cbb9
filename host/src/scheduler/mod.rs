//! The scheduler: what `hermes tick` (the cron entrypoint) and `hermes job
//! run` do.
//!
//! 1. Take `state/.tick.lock` without waiting (same design as the cycle lock,
//!    [`crate::cycle::lock`]); a tick that finds it held records
//!    `tick-skipped` naming the holder and ends with exit code 0.
//! 2. Record `tick-started`, then select the due jobs of
//!    `config/jobs.json` ([`jobs`]) from the last start times persisted in
//!    `state/scheduler_state.json` ([`SchedulerState`]); missed slots collapse
//!    into one run ([`schedule::Schedule::is_due`]). Time comes from the
//!    [`Clock`], so `HERMES_NOW` pins it.
//! 3. Run each due job in file order between `job-started` and
//!    `job-finished`: a script after its [`preflight`], with structured argv
//!    and a timeout that kills its process group ([`crate::process`]); an
//!    upgrade-cycle job through [`crate::cycle::run`]. A job's start is
//!    persisted before it runs, so a host that dies mid-job does not run it
//!    again before its next slot.
//! 4. Record `tick-finished`; the exit code is the worst job outcome
//!    ([`JobOutcome::exit_code`]).
//!
//! The tick opens the ledger at its last event ([`EventLedger::open_at_tail`]:
//! that event's own hash is checked, the events before it are not read), so
//! a tick with nothing due costs the same on a ledger of a million events as
//! on a new one. Cycles and `hermes verify` verify the whole chain.

pub mod install;
pub mod jobs;
pub mod schedule;

use crate::clock::Clock;
use crate::cycle::lock::{Acquired, CycleHolder, try_acquire_file};
use crate::cycle::{self, CycleOptions, Mode};
use crate::ledger::{EventKind, EventLedger, LedgerError, Pending};
use crate::process::{self, CommandOutcome, CommandSpec};
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use crate::workspace::Workspace;
use chrono::{DateTime, Utc};
use jobs::{Job, JobKind, JobsConfig};
use schedule::Schedule;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// File name of the tick lock inside `state/`.
pub const TICK_LOCK_FILE: &str = ".tick.lock";

/// The scheduler's view: per job, when it was first seen, last started and
/// how it last ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerState {
    pub jobs: BTreeMap<String, JobState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// When a tick first saw the job (RFC 3339).
    pub first_seen: String,
    /// When the job last started (RFC 3339); the due selection reads this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<JobOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_finished: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    /// Exit code 0, or an upgrade cycle with nothing blocked or failed (or
    /// skipped because another cycle held the cycle lock).
    Succeeded,
    /// An upgrade cycle in which some repository is blocked or failed.
    Attention,
    /// The script exited non-zero or was killed by a signal.
    Failed,
    /// The script ran past its timeout and was killed with its children.
    TimedOut,
    /// The preflight refused the script; it was not started.
    Refused,
    /// The job could not run (the script could not be spawned, the cycle
    /// stopped with an error).
    Error,
}

impl JobOutcome {
    /// The exit code this outcome asks for: 0, 10 (attention) or 11 (a job
    /// failed, timed out, was refused or could not run).
    pub fn exit_code(self) -> u8 {
        match self {
            JobOutcome::Succeeded => 0,
            JobOutcome::Attention => 10,
            _ => 11,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Attention => "attention",
            JobOutcome::Failed => "failed",
            JobOutcome::TimedOut => "timed-out",
            JobOutcome::Refused => "refused",
            JobOutcome::Error => "error",
        }
    }
}

/// One job's run.
#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub id: String,
    pub kind: JobKind,
    pub outcome: JobOutcome,
    /// One line: why, or how the command ended.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandOutcome>,
    /// The upgrade cycle's tick id, for upgrade-cycle jobs that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle_tick: Option<String>,
}

/// What a tick did.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    pub tick: String,
    pub started_at: String,
    /// `schedule` for `hermes tick`, `manual` for `hermes job run`.
    pub trigger: String,
    /// Set when another tick held the lock; nothing ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
    pub jobs: Vec<JobRun>,
    pub exit_code: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub holder: Option<CycleHolder>,
}

/// Errors that stop a tick (job failures do not: they are outcomes).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Jobs(#[from] jobs::JobsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("no job {0:?} in the jobs file")]
    UnknownJob(String),
}

/// Which jobs a tick considers.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The enabled jobs that are due (`hermes tick`).
    Due,
    /// This job, now, due or not, enabled or not (`hermes job run ID`).
    Now(String),
}

/// Runs one tick.
pub fn tick(
    workspace: &Workspace,
    clock: Clock,
    selection: Selection,
    progress: cycle::Progress<'_>,
) -> Result<TickReport, TickError> {
    let config = jobs::load(workspace.home())?;
    if let Selection::Now(id) = &selection
        && !config.jobs.iter().any(|j| &j.id == id)
    {
        return Err(TickError::UnknownJob(id.clone()));
    }
    let store = StateStore::open(&workspace.state_dir())?;
    let state_path = workspace.state_dir();
    // A tick runs every minute and usually appends two events: it chains
    // onto the last event without re-reading the ledger, so its cost does
    // not grow with the ledger. Every cycle verifies the whole chain.
    let mut ledger = EventLedger::open_at_tail(store.dir(), &state_path, clock)?;
    let now = clock.now();
    let started_at = clock.now_rfc3339();
    let tick = format!("{}-tick-{}", now.format("%Y%m%dT%H%M%S%3fZ"), std::process::id());
    let trigger = if matches!(selection, Selection::Due) { "schedule" } else { "manual" };
    let mut report = TickReport {
        tick: tick.clone(),
        started_at: started_at.clone(),
        trigger: trigger.to_owned(),
        skipped: None,
        jobs: Vec::new(),
        exit_code: 0,
    };
    let holder = CycleHolder { pid: std::process::id(), host: cycle::host_name(), started_at: started_at.clone() };
    let _lock = match try_acquire_file(store.dir(), &state_path, TICK_LOCK_FILE, &holder)? {
        Acquired::Held(lock) => lock,
        Acquired::Busy(holder) => {
            ledger.append(&tick, EventKind::TickSkipped, "tick", json!({ "trigger": trigger, "holder": holder }))?;
            report.skipped = Some(Skipped { holder });
            return Ok(report);
        }
    };
    let mut state = load_state(&store, &mut ledger, &tick)?;
    let mut seen_changed = false;
    for job in &config.jobs {
        if !state.jobs.contains_key(&job.id) {
            state.jobs.insert(
                job.id.clone(),
                JobState {
                    first_seen: started_at.clone(),
                    last_started: None,
                    last_outcome: None,
                    last_finished: None,
                },
            );
            seen_changed = true;
        }
    }
    let due: Vec<&Job> = match &selection {
        Selection::Now(id) => config.jobs.iter().filter(|j| &j.id == id).collect(),
        Selection::Due => config.jobs.iter().filter(|j| j.enabled && is_due(j, &state, now)).collect(),
    };
    let due_ids: Vec<&str> = due.iter().map(|j| j.id.as_str()).collect();
    let started = json!({ "trigger": trigger, "configured": config.jobs.len(), "due": due_ids });
    // With nothing due, `tick-started` and `tick-finished` share one append
    // (one fsync): the tick that runs every minute stays cheap.
    let mut records = vec![Pending::new(EventKind::TickStarted, "tick", started)];
    if !due.is_empty() {
        ledger.append_all(&tick, std::mem::take(&mut records))?;
    }
    if seen_changed || !due.is_empty() {
        write_state(&store, &ledger, &started_at, &state)?;
    }
    for job in due {
        if let Some(entry) = state.jobs.get_mut(&job.id) {
            entry.last_started = Some(started_at.clone());
        }
        let argv = match job.kind {
            JobKind::Script => {
                let mut argv = vec![
                    jobs::resolve(workspace.home(), job.path.as_deref().unwrap_or_default()).display().to_string(),
                ];
                argv.extend(job.args.iter().cloned());
                Some(argv)
            }
            JobKind::UpgradeCycle => None,
        };
        ledger.append(
            &tick,
            EventKind::JobStarted,
            &job.id,
            json!({ "job": job.id, "kind": job.kind, "schedule": job.schedule, "trigger": trigger, "argv": argv }),
        )?;
        // Persist the start before running, so a crash mid-job does not rerun it.
        write_state(&store, &ledger, &started_at, &state)?;
        progress(&format!("job {}: running", job.id));
        let run = run_job(workspace, &config, job, clock, &tick, progress);
        let mut payload = json!({ "job": run.id, "kind": run.kind, "outcome": run.outcome, "detail": run.detail });
        if let Some(command) = &run.command {
            payload["exit_code"] = json!(command.exit_code);
            payload["signal"] = json!(command.signal);
            payload["timed_out"] = json!(command.timed_out);
            payload["duration_ms"] = json!(command.duration_ms);
            payload["stdout_tail"] = json!(command.stdout_tail);
            payload["stderr_tail"] = json!(command.stderr_tail);
        }
        if let Some(cycle_tick) = &run.cycle_tick {
            payload["cycle_tick"] = json!(cycle_tick);
        }
        ledger.append(&tick, EventKind::JobFinished, &job.id, payload)?;
        let finished_at = clock.now_rfc3339();
        if let Some(entry) = state.jobs.get_mut(&job.id) {
            entry.last_outcome = Some(run.outcome);
            entry.last_finished = Some(finished_at.clone());
        }
        write_state(&store, &ledger, &finished_at, &state)?;
        report.jobs.push(run);
    }
    report.exit_code = report.jobs.iter().map(|r| r.outcome.exit_code()).max().unwrap_or(0);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &report.jobs {
        *counts.entry(run.outcome.as_str()).or_default() += 1;
    }
    let finished =
        json!({ "trigger": trigger, "ran": report.jobs.len(), "outcomes": counts, "exit_code": report.exit_code });
    records.push(Pending::new(EventKind::TickFinished, "tick", finished));
    ledger.append_all(&tick, records)?;
    Ok(report)
}

fn is_due(job: &Job, state: &SchedulerState, now: DateTime<Utc>) -> bool {
    job_timing(job, state, now).is_some_and(|(schedule, last, first_seen)| schedule.is_due(last, first_seen, now))
}

/// When an enabled job next runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextRun {
    pub id: String,
    /// RFC 3339; `None` when the schedule has no slot within a year.
    pub at: Option<String>,
    /// Whether the next tick would run it.
    pub due_now: bool,
}

/// When each enabled job of `config` next runs as seen at `now`, soonest
/// first (ties in file order); jobs with no slot within a year come last.
pub fn next_runs(config: &JobsConfig, state: &SchedulerState, now: DateTime<Utc>) -> Vec<NextRun> {
    let mut runs: Vec<(Option<DateTime<Utc>>, NextRun)> = config
        .jobs
        .iter()
        .filter(|job| job.enabled)
        .filter_map(|job| {
            let (schedule, last, first_seen) = job_timing(job, state, now)?;
            let at = schedule.next_due(last, first_seen, now);
            let run = NextRun {
                id: job.id.clone(),
                at: at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                due_now: at == Some(now),
            };
            Some((at, run))
        })
        .collect();
    runs.sort_by_key(|(at, _)| (at.is_none(), *at));
    runs.into_iter().map(|(_, run)| run).collect()
}

/// A job's schedule, last start and first sighting (now, for a job no tick
/// has seen yet); `None` for a schedule that does not parse (validation
/// refuses those before a tick runs).
fn job_timing(
    job: &Job,
    state: &SchedulerState,
    now: DateTime<Utc>,
) -> Option<(Schedule, Option<DateTime<Utc>>, DateTime<Utc>)> {
    let schedule = Schedule::parse(&job.schedule).ok()?;
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
    let entry = state.jobs.get(&job.id);
    let first_seen = entry.and_then(|e| parse(&e.first_seen)).unwrap_or(now);
    let last = entry.and_then(|e| e.last_started.as_deref()).and_then(parse);
    Some((schedule, last, first_seen))
}

/// The scheduler view as readers see it (`hermes job list`, `hermes
/// status`): a missing or unreadable one reads as empty (the next tick
/// rebuilds it from the ledger).
pub fn saved_state(store: &StateStore) -> SchedulerState {
    store.read::<SchedulerState>(ViewName::SchedulerState).ok().flatten().map(|e| e.data).unwrap_or_default()
}

/// Reads the scheduler view; a missing or corrupt one is rebuilt from the
/// ledger's `job-started` events (a corrupt one is kept aside and the fact
/// recorded), so losing it never reruns jobs.
fn load_state(store: &StateStore, ledger: &mut EventLedger, tick: &str) -> Result<SchedulerState, TickError> {
    match store.read::<SchedulerState>(ViewName::SchedulerState) {
        Ok(Some(envelope)) => return Ok(envelope.data),
        Ok(None) => {}
        Err(StateError::Corrupt { path, detail }) => {
            tracing::warn!(path = %path.display(), %detail, "scheduler state is corrupt; kept aside and rebuilt");
            let aside = store.quarantine(ViewName::SchedulerState, ledger.head().seq)?;
            ledger.append(
                tick,
                EventKind::StateViewRebuilt,
                ViewName::SchedulerState.stem(),
                json!({ "why": "corrupt", "view": ViewName::SchedulerState.file_name(), "detail": detail, "kept_as": aside }),
            )?;
        }
        Err(e) => return Err(e.into()),
    }
    let mut state = SchedulerState::default();
    ledger.scan_locked(|event| {
        if event.kind == EventKind::JobStarted.as_str()
            && let Some(job) = event.payload.get("job").and_then(|j| j.as_str())
        {
            let entry = state.jobs.entry(job.to_owned()).or_insert_with(|| JobState {
                first_seen: event.time.clone(),
                last_started: None,
                last_outcome: None,
                last_finished: None,
            });
            entry.last_started = Some(event.time.clone());
        }
    })?;
    Ok(state)
}

fn write_state(store: &StateStore, ledger: &EventLedger, at: &str, state: &SchedulerState) -> Result<(), StateError> {
    let head: LedgerHead = ledger.head().clone();
    store.write(ViewName::SchedulerState, at, &head, state)
}

fn run_job(
    workspace: &Workspace,
    config: &JobsConfig,
    job: &Job,
    clock: Clock,
    tick: &str,
    progress: cycle::Progress<'_>,
) -> JobRun {
    let mut run = JobRun {
        id: job.id.clone(),
        kind: job.kind,
        outcome: JobOutcome::Error,
        detail: String::new(),
        command: None,
        cycle_tick: None,
    };
    match job.kind {
        JobKind::Script => {
            let roots = jobs::allowed_roots(workspace.home(), config);
            let path = match preflight(workspace.home(), job.path.as_deref().unwrap_or_default(), &roots) {
                Ok(path) => path,
                Err(refusal) => {
                    run.outcome = JobOutcome::Refused;
                    run.detail = refusal;
                    return run;
                }
            };
            let mut argv = vec![path.display().to_string()];
            argv.extend(job.args.iter().cloned());
            let spec = CommandSpec { argv, timeout_secs: job.timeout_secs };
            let outcome = process::run(&spec, workspace.home(), &[("HERMES_JOB_ID", &job.id), ("HERMES_TICK", tick)]);
            run.outcome = if outcome.spawn_error.is_some() {
                JobOutcome::Error
            } else if outcome.timed_out {
                JobOutcome::TimedOut
            } else if outcome.success() {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Failed
            };
            run.detail = outcome.describe();
            run.command = Some(outcome);
        }
        JobKind::UpgradeCycle => {
            let options = CycleOptions { mode: Mode::Execute, fetch: true, clock, before_gate: None };
            match cycle::run(workspace, options, progress) {
                Ok(report) => {
                    run.cycle_tick = Some(report.tick.clone());
                    if let Some(skipped) = &report.skipped {
                        run.outcome = JobOutcome::Succeeded;
                        run.detail = match &skipped.holder {
                            Some(h) => {
                                format!("skipped: another cycle (pid {} on {}) holds the cycle lock", h.pid, h.host)
                            }
                            None => "skipped: another cycle holds the cycle lock".to_owned(),
                        };
                    } else if report.needs_attention() {
                        run.outcome = JobOutcome::Attention;
                        run.detail = "the cycle ran; some repository is blocked or failed to apply".to_owned();
                    } else {
                        run.outcome = JobOutcome::Succeeded;
                        run.detail = format!("the cycle ran over {} repositories", report.repos.len());
                    }
                }
                Err(e) => {
                    run.outcome = JobOutcome::Error;
                    run.detail = format!("the cycle stopped: {e}");
                }
            }
        }
    }
    run
}

/// Checks a script job's file before anything runs: it exists, is a regular
/// file (after symlinks), lies inside one of `roots` (compared after
/// resolving symlinks and `..`), is executable, and neither it nor its
/// directory is world-writable. Returns the resolved path, or the refusal.
pub fn preflight(home: &Path, configured: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let path = jobs::resolve(home, configured);
    let shown = path.display();
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("refused: script {shown} does not exist"),
        _ => format!("refused: cannot inspect script {shown}: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("refused: script {shown} is not a regular file"));
    }
    let real = path.canonicalize().map_err(|e| format!("refused: cannot resolve script {shown}: {e}"))?;
    let inside = roots.iter().filter_map(|r| r.canonicalize().ok()).any(|root| real.starts_with(&root));
    if !inside {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(format!(
            "refused: script {shown} is outside the allowed roots ({}); move it under one or list its directory in allowed_roots of config/jobs.json",
            list.join(", ")
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!("refused: script {shown} is not executable (mode {:o}); chmod +x it", mode & 0o7777));
    }
    if mode & 0o002 != 0 {
        return Err(format!(
            "refused: script {shown} is world-writable (mode {:o}); anyone could change what runs: chmod o-w it",
            mode & 0o7777
        ));
    }
    if let Some(parent) = real.parent()
        && let Ok(dir) = std::fs::metadata(parent)
        && dir.permissions().mode() & 0o002 != 0
        && dir.permissions().mode() & 0o1000 == 0
    {
        return Err(format!(
            "refused: the directory {} of script {shown} is world-writable; anyone could replace the script",
            parent.display()
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn preflight_refuses_what_it_should_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let scripts = home.join("scripts");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let roots = vec![scripts.clone()];
        script(&scripts, "ok.sh", 0o755);
        script(&scripts, "noexec.sh", 0o644);
        script(&scripts, "ww.sh", 0o757);
        script(&outside, "out.sh", 0o755);
        std::os::unix::fs::symlink(outside.join("out.sh"), scripts.join("link.sh")).unwrap();
        assert!(preflight(&home, "scripts/ok.sh", &roots).is_ok());
        let refusal = |p: &str| preflight(&home, p, &roots).unwrap_err();
        assert!(refusal("scripts/missing.sh").contains("does not exist"));
        assert!(refusal("scripts").contains("is not a regular file"));
        assert!(refusal("scripts/noexec.sh").contains("is not executable"));
        assert!(refusal("scripts/ww.sh").contains("is world-writable"));
        assert!(refusal(outside.join("out.sh").to_str().unwrap()).contains("outside the allowed roots"));
        assert!(refusal("scripts/link.sh").contains("outside the allowed roots"), "a symlink out of the root");
        assert!(refusal("scripts/../../outside/out.sh").contains("outside the allowed roots"));
    }

    #[test]
    fn outcomes_rank_by_exit_code() {
        assert_eq!(JobOutcome::Succeeded.exit_code(), 0);
        assert_eq!(JobOutcome::Attention.exit_code(), 10);
        for o in [JobOutcome::Failed, JobOutcome::TimedOut, JobOutcome::Refused, JobOutcome::Error] {
            assert_eq!(o.exit_code(), 11);
        }
    }
}
