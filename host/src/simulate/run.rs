//! Driving a scenario: build the [`World`], then per tick apply the steps,
//! run the real cron path (the current executable as `hermes tick --json`,
//! a child process with `HERMES_HOME` and `HERMES_NOW` set, and
//! `HERMES_FAILPOINT` for a crash tick), run `hermes verify`, read what the
//! tick left in `state/` and check the tick's expectations. Reads only;
//! writes nothing but the world (see [`super::world`]).

use super::report::{Failure, RemoteRow, RepoRow, ScenarioReport, Status, TickRecord};
use super::scenario::{Expect, HeadExpect, Range, Scenario, SimTick, tick_time};
use super::world::{World, WorldError};
use crate::state::ViewName;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a scenario is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `hermes` executable the ticks run (the current one).
    pub exe: PathBuf,
    /// Keep the workspace and report its path.
    pub keep: bool,
    /// Build the workspace here (must be missing or empty); implies `keep`.
    pub dir: Option<PathBuf>,
    /// Precompiled plugins shared between scenarios of one run: copied into
    /// each workspace before its first tick and filled from it afterwards.
    pub plugin_cache: Option<PathBuf>,
}

/// Errors that stop a scenario before its expectations can be judged.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("cannot create the simulation's workspace: {0}")]
    TempDir(std::io::Error),
    #[error("cannot run {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
}

/// Whether this build stops at failpoints (debug builds only).
pub fn failpoints_compiled_in() -> bool {
    cfg!(debug_assertions)
}

/// Runs `scenario` (read from `source`) and judges every tick.
pub fn run(scenario: &Scenario, source: &str, options: &RunOptions) -> Result<ScenarioReport, RunError> {
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        description: scenario.description.clone(),
        source: source.to_owned(),
        status: Status::Passed,
        note: None,
        workspace: None,
        ticks: Vec::new(),
        failures: Vec::new(),
    };
    if scenario.needs_failpoints && !failpoints_compiled_in() {
        report.status = Status::Skipped;
        report.note = Some(
            "needs a debug build: it kills ticks at failpoints (HERMES_FAILPOINT), which release builds compile out; \
             run it with a debug build (`cargo run -- simulate NAME`)"
                .to_owned(),
        );
        return Ok(report);
    }
    let (home, _temp) = match &options.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("hermes-sim-{}-", scenario.name))
                .tempdir()
                .map_err(RunError::TempDir)?;
            let home = temp.path().canonicalize().map_err(RunError::TempDir)?;
            // Dropping the TempDir removes the workspace; a kept one is let go.
            let guard = if options.keep {
                let _ = temp.keep();
                None
            } else {
                Some(temp)
            };
            (home, guard)
        }
    };
    let mut world = World::build(&home, scenario)?;
    if let Some(cache) = &options.plugin_cache {
        copy_files(cache, &home.join("cache").join("plugins"));
    }
    for (index, tick) in scenario.ticks.iter().enumerate() {
        let record = run_tick(&mut world, scenario, index, tick, options)?;
        report.failures.extend(judge(tick, &record));
        report.ticks.push(record);
    }
    if let Some(cache) = &options.plugin_cache {
        copy_files(&home.join("cache").join("plugins"), cache);
    }
    if !report.failures.is_empty() {
        report.status = Status::Failed;
    }
    if options.keep || options.dir.is_some() {
        report.workspace = Some(home.display().to_string());
    }
    Ok(report)
}

/// Copies the files of `from` missing in `to` (best effort: a cold cache only costs time).
fn copy_files(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else { return };
    let _ = std::fs::create_dir_all(to);
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_file() && !target.exists() {
            let _ = std::fs::copy(entry.path(), target);
        }
    }
}

fn hermes(options: &RunOptions, home: &Path, now: &str) -> Command {
    let mut cmd = Command::new(&options.exe);
    cmd.env("HERMES_HOME", home)
        .env(crate::clock::NOW_ENV, now)
        .env_remove(crate::failpoint::ENV)
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

fn run_tick(
    world: &mut World,
    scenario: &Scenario,
    index: usize,
    tick: &SimTick,
    options: &RunOptions,
) -> Result<TickRecord, RunError> {
    let now = tick_time(scenario, index);
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut steps = Vec::new();
    for step in &tick.steps {
        steps.push(world.apply(step, now)?);
    }
    let before: Vec<Option<String>> = scenario.repos.iter().map(|r| world.head(&r.name)).collect();
    let spawn_err = |source| RunError::Spawn { exe: options.exe.display().to_string(), source };
    let mut cmd = hermes(options, world.home(), &at);
    cmd.args(["tick", "--json"]);
    if let Some(point) = &tick.crash_at {
        cmd.env(crate::failpoint::ENV, point);
    }
    let output = cmd.output().map_err(spawn_err)?;
    let verify = hermes(options, world.home(), &at)
        .args(["verify", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(spawn_err)?;
    let exit_code = output.status.code();
    let tick_report: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    let cycle_tick = tick_report
        .as_ref()
        .and_then(|r| r["jobs"].as_array()?.iter().find_map(|j| j["cycle_tick"].as_str().map(str::to_owned)));
    let state = State::read(world.home());
    // Views of this tick's cycle only: a crashed tick leaves the last ones.
    let this_cycle = |view: &Value| cycle_tick.is_some() && view["data"]["tick"].as_str() == cycle_tick.as_deref();
    let summary = state.summary.filter(|v| this_cycle(v));
    let plan = state.plan.filter(|v| this_cycle(v));
    let integrity_ok = state.integrity.filter(|v| this_cycle(v)).and_then(|v| v["data"]["ok"].as_bool());
    let pressure =
        cycle_tick.as_ref().and(state.resource.as_ref()).and_then(|v| v["data"]["level"].as_str().map(str::to_owned));
    let mut repos = Vec::new();
    for (spec, head_before) in scenario.repos.iter().zip(before) {
        let name = spec.name.as_str();
        let row = summary.as_ref().and_then(|s| find_repo(&s["data"]["repos"], name));
        let decision = plan.as_ref().and_then(|p| find_repo(&p["data"]["decisions"], name));
        let intel = &state.intelligence["data"]["repos"][name];
        let figure = |key: &str| intel[key].as_u64().unwrap_or(0);
        repos.push(RepoRow {
            repo: name.to_owned(),
            decision: row.and_then(|r| r["recommendation"].as_str().map(str::to_owned)),
            outcome: row.and_then(|r| r["outcome"].as_str().map(str::to_owned)),
            reason_code: row.and_then(|r| r["reason_code"].as_str().map(str::to_owned)),
            risk: decision.and_then(|d| d["risk"].as_u64()),
            head: world.head(name),
            head_before,
            upstream: world.upstream_head(name),
            worktree_clean: world.worktree_clean(name),
            attempts: figure("attempts"),
            successes: figure("successes"),
            failures: figure("failures"),
            rollbacks: figure("rollbacks"),
            rollback_rate_ppm: figure("rollback_rate_ppm"),
            failure_probability_ppm: figure("failure_probability_ppm"),
            confidence_ppm: figure("confidence_ppm"),
            remote: state.federation["data"]["selected"][name]["remote"].as_str().map(str::to_owned),
        });
    }
    let mut remotes = Vec::new();
    for spec in &scenario.repos {
        let named: Vec<&str> = spec.remotes.iter().map(|r| r.name.as_str()).collect();
        let expected = tick.expect.remotes.keys().filter_map(|k| k.strip_prefix(&format!("{}/", spec.name)));
        let mut names: Vec<&str> = named.into_iter().chain(expected).collect();
        names.sort_unstable();
        names.dedup();
        for remote in names {
            let url = world.current_url(&spec.name, remote).unwrap_or_default();
            let health = &state.health["data"]["remotes"][url.as_str()];
            remotes.push(RemoteRow {
                repo: spec.name.clone(),
                remote: remote.to_owned(),
                attempts: health["attempts"].as_u64().unwrap_or(0),
                consecutive_failures: health["consecutive_failures"].as_u64().unwrap_or(0),
                success_rate_ppm: health["success_rate_ppm"].as_u64().unwrap_or(1_000_000),
                circuit: health["circuit"].as_str().unwrap_or("closed").to_owned(),
                url,
            });
        }
    }
    let stderr_tail = (!matches!(exit_code, Some(0 | 10))).then(|| {
        let text = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    });
    Ok(TickRecord {
        tick: index + 1,
        at,
        steps,
        crash_at: tick.crash_at.clone(),
        exit_code,
        signal: output.status.signal(),
        cycle_tick,
        pressure,
        integrity_ok,
        ledger_verifies: verify.success(),
        repos,
        remotes,
        stderr_tail: stderr_tail.filter(|t| !t.is_empty()),
    })
}

fn find_repo<'a>(rows: &'a Value, name: &str) -> Option<&'a Value> {
    rows.as_array()?.iter().find(|r| r["repo"] == name)
}

/// The views a tick is judged by (`Value::Null` when missing or unreadable).
struct State {
    summary: Option<Value>,
    plan: Option<Value>,
    integrity: Option<Value>,
    resource: Option<Value>,
    intelligence: Value,
    health: Value,
    federation: Value,
}

impl State {
    fn read(home: &Path) -> Self {
        let view = |name: ViewName| -> Option<Value> {
            serde_json::from_slice(&std::fs::read(home.join("state").join(name.file_name())).ok()?).ok()
        };
        Self {
            summary: view(ViewName::UpgradeSummary),
            plan: view(ViewName::GlobalOrchestrationPlan),
            integrity: view(ViewName::ControlPlaneIntegrity),
            resource: view(ViewName::RuntimeResourceState),
            intelligence: view(ViewName::RuntimeIntelligence).unwrap_or_default(),
            health: view(ViewName::RemoteHealth).unwrap_or_default(),
            federation: view(ViewName::RemoteFederationState).unwrap_or_default(),
        }
    }
}

/// Every expectation of `tick` that `record` does not meet.
fn judge(tick: &SimTick, record: &TickRecord) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |subject: &str, field: &str, expected: String, actual: String| {
        failures.push(Failure {
            tick: record.tick,
            subject: subject.to_owned(),
            field: field.to_owned(),
            expected,
            actual,
        });
    };
    let Expect { exit_code, crashed, integrity_ok, ledger_verifies, pressure, repos, remotes } = &tick.expect;
    let crashed_expected = crashed.unwrap_or(tick.crash_at.is_some());
    let crashed_actual = record.signal.is_some();
    if crashed_expected != crashed_actual {
        let how = |c: bool| if c { "killed".to_owned() } else { "not killed".to_owned() };
        let actual = match (record.exit_code, record.signal) {
            (Some(code), _) => format!("not killed (exit {code})"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => how(crashed_actual),
        };
        fail("tick", "crashed", how(crashed_expected), actual);
    }
    let exit_actual = record.exit_code.map_or("none (killed)".to_owned(), |c| c.to_string());
    match exit_code {
        Some(code) if record.exit_code != Some(*code) => fail("tick", "exit_code", code.to_string(), exit_actual),
        None if !crashed_actual && !matches!(record.exit_code, Some(0 | 10)) => {
            let stderr = record.stderr_tail.as_deref().unwrap_or("").replace('\n', " | ");
            fail("tick", "exit_code", "0 or 10".to_owned(), format!("{exit_actual} ({stderr})"));
        }
        _ => {}
    }
    let verifies = ledger_verifies.unwrap_or(true);
    if verifies != record.ledger_verifies {
        fail("tick", "ledger_verifies", verifies.to_string(), record.ledger_verifies.to_string());
    }
    let none = || "none (no cycle finished this tick)".to_owned();
    if let Some(ok) = integrity_ok
        && record.integrity_ok != Some(*ok)
    {
        fail("tick", "integrity_ok", ok.to_string(), record.integrity_ok.map_or_else(none, |v| v.to_string()));
    }
    if let Some(level) = pressure {
        let expected = enum_str(level);
        if record.pressure.as_deref() != Some(expected.as_str()) {
            fail("tick", "pressure", expected, record.pressure.clone().unwrap_or_else(none));
        }
    }
    for (name, want) in repos {
        let Some(row) = record.repos.iter().find(|r| &r.repo == name) else { continue };
        let subject = format!("repo {name}");
        let mut text = |field: &str, expected: Option<String>, actual: &Option<String>| {
            if let Some(expected) = expected
                && actual.as_ref() != Some(&expected)
            {
                fail(&subject, field, expected, actual.clone().unwrap_or_else(none));
            }
        };
        text("decision", want.decision.as_ref().map(enum_str), &row.decision);
        text("outcome", want.outcome.as_ref().map(enum_str), &row.outcome);
        text("reason_code", want.reason_code.clone(), &row.reason_code);
        text("remote", want.remote.clone(), &row.remote);
        let mut range = |field: &str, expected: &Option<Range>, actual: Option<u64>| {
            if let Some(r) = expected {
                match actual {
                    Some(v) if r.contains(v) => {}
                    Some(v) => fail(&subject, field, r.to_string(), v.to_string()),
                    None => fail(&subject, field, r.to_string(), none()),
                }
            }
        };
        range("risk", &want.risk, row.risk);
        range("attempts", &want.attempts, Some(row.attempts));
        range("successes", &want.successes, Some(row.successes));
        range("failures", &want.failures, Some(row.failures));
        range("rollbacks", &want.rollbacks, Some(row.rollbacks));
        range("rollback_rate_ppm", &want.rollback_rate_ppm, Some(row.rollback_rate_ppm));
        range("failure_probability_ppm", &want.failure_probability_ppm, Some(row.failure_probability_ppm));
        if let Some(head) = want.head {
            let at_upstream = row.head.is_some() && row.head == row.upstream;
            let unchanged = row.head == row.head_before;
            let ok = match head {
                HeadExpect::Upstream => at_upstream,
                HeadExpect::Unchanged => unchanged,
                HeadExpect::UpstreamOrUnchanged => at_upstream || unchanged,
            };
            if !ok {
                let actual = format!(
                    "{} (before {}, upstream {})",
                    row.head.as_deref().map_or("none".to_owned(), super::world::short),
                    row.head_before.as_deref().map_or("none".to_owned(), super::world::short),
                    row.upstream.as_deref().map_or("none".to_owned(), super::world::short)
                );
                fail(&subject, "head", enum_str(&head), actual);
            }
        }
        if let Some(clean) = want.worktree_clean
            && clean != row.worktree_clean
        {
            fail(&subject, "worktree_clean", clean.to_string(), row.worktree_clean.to_string());
        }
    }
    for (key, want) in remotes {
        let Some((repo, remote)) = key.split_once('/') else { continue };
        let Some(row) = record.remotes.iter().find(|m| m.repo == repo && m.remote == remote) else { continue };
        let subject = format!("remote {key}");
        if let Some(circuit) = &want.circuit
            && enum_str(circuit) != row.circuit
        {
            fail(&subject, "circuit", enum_str(circuit), row.circuit.clone());
        }
        for (field, expected, actual) in [
            ("consecutive_failures", &want.consecutive_failures, row.consecutive_failures),
            ("success_rate_ppm", &want.success_rate_ppm, row.success_rate_ppm),
            ("attempts", &want.attempts, row.attempts),
        ] {
            if let Some(r) = expected
                && !r.contains(actual)
            {
                fail(&subject, field, r.to_string(), actual.to_string());
            }
        }
    }
    failures
}

/// The JSON name of a kebab-case enum value.
fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
