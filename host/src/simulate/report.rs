//! What a simulation found: per tick, per repository and per remote, as
//! `hermes simulate --json` prints it, and the per-tick text table of how
//! runtime intelligence evolved. Nothing here is written to disk.

use serde::Serialize;
use std::fmt::Write as _;

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Every expectation of every tick held.
    Passed,
    /// Some expectation did not hold ([`ScenarioReport::failures`]).
    Failed,
    /// Not run (a release build cannot crash at failpoints); `note` says why.
    Skipped,
}

/// One scenario's run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    /// Where the scenario came from (`config/scenarios/NAME.json (built in)` or the file given).
    pub source: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The workspace, when it was kept (`--keep`, `--dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub ticks: Vec<TickRecord>,
    pub failures: Vec<Failure>,
}

/// What one tick did and left behind.
#[derive(Debug, Clone, Serialize)]
pub struct TickRecord {
    /// 1-based.
    pub tick: usize,
    /// Logical time (`HERMES_NOW`) of the tick.
    pub at: String,
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_at: Option<String>,
    /// Exit code of `hermes tick`; `None` when it was killed.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Tick id of the upgrade cycle the tick ran, when it finished.
    pub cycle_tick: Option<String>,
    pub pressure: Option<String>,
    pub integrity_ok: Option<bool>,
    pub ledger_verifies: bool,
    pub repos: Vec<RepoRow>,
    pub remotes: Vec<RemoteRow>,
    /// The last lines of the tick's stderr, when it did not exit 0 or 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

/// One repository after one tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoRow {
    pub repo: String,
    pub decision: Option<String>,
    pub outcome: Option<String>,
    pub reason_code: Option<String>,
    pub risk: Option<u64>,
    pub head: Option<String>,
    pub head_before: Option<String>,
    pub upstream: Option<String>,
    pub worktree_clean: bool,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub rollbacks: u64,
    pub rollback_rate_ppm: u64,
    pub failure_probability_ppm: u64,
    pub confidence_ppm: u64,
    /// The remote federation selected.
    pub remote: Option<String>,
}

/// One remote after one tick (health of its current URL).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteRow {
    pub repo: String,
    pub remote: String,
    pub url: String,
    pub attempts: u64,
    pub consecutive_failures: u64,
    pub success_rate_ppm: u64,
    pub circuit: String,
}

/// An expectation that did not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub tick: usize,
    /// `repo core`, `remote core/mirror` or `tick`.
    pub subject: String,
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tick {}, {}, {}: expected {}, actual {}",
            self.tick, self.subject, self.field, self.expected, self.actual
        )
    }
}

fn pct(ppm: u64) -> String {
    format!("{:.1}%", ppm as f64 / 10_000.0)
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// The per-tick table of one scenario.
pub fn render(report: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {} ({})", report.name, report.source);
    let _ = writeln!(out, "  {}", report.description);
    if let Some(note) = &report.note {
        let _ = writeln!(out, "  note: {note}");
    }
    if !report.ticks.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<4} {:<6} {:<8} {:<8} {:<9} {:<24} {:>5} {:>4} {:>3} {:>4} {:>3} {:>7} {:>7}  {:<9} remote",
            "tick",
            "time",
            "repo",
            "decision",
            "outcome",
            "reason",
            "risk",
            "att",
            "ok",
            "fail",
            "rb",
            "rb-rate",
            "p(fail)",
            "head",
        );
    }
    for tick in &report.ticks {
        let time = tick.at.get(11..16).unwrap_or(&tick.at);
        for step in &tick.steps {
            let _ = writeln!(out, "{:<4} {:<6} step: {step}", tick.tick, time);
        }
        if let Some(point) = &tick.crash_at {
            let _ = writeln!(out, "{:<4} {:<6} crash at failpoint {point}", tick.tick, time);
        }
        for r in &tick.repos {
            let head = match (&r.head, &r.upstream) {
                (Some(h), Some(u)) if h == u => "upstream".to_owned(),
                (Some(h), _) if r.head_before.as_ref() == Some(h) => "unchanged".to_owned(),
                (Some(h), _) => super::world::short(h),
                (None, _) => "-".to_owned(),
            };
            let head = if r.worktree_clean { head } else { format!("{head}*") };
            let _ = writeln!(
                out,
                "{:<4} {:<6} {:<8} {:<8} {:<9} {:<24} {:>5} {:>4} {:>3} {:>4} {:>3} {:>7} {:>7}  {:<9} {}",
                tick.tick,
                time,
                r.repo,
                or_dash(&r.decision),
                or_dash(&r.outcome),
                or_dash(&r.reason_code),
                r.risk.map_or("-".to_owned(), |v| v.to_string()),
                r.attempts,
                r.successes,
                r.failures,
                r.rollbacks,
                pct(r.rollback_rate_ppm),
                pct(r.failure_probability_ppm),
                head,
                or_dash(&r.remote),
            );
        }
        for m in &tick.remotes {
            let _ = writeln!(
                out,
                "{:<4} {:<6} remote {}/{}: circuit {}, {} attempts, {} consecutive failures, {} success ({})",
                tick.tick,
                time,
                m.repo,
                m.remote,
                m.circuit,
                m.attempts,
                m.consecutive_failures,
                pct(m.success_rate_ppm),
                m.url
            );
        }
        let exit = match (tick.exit_code, tick.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_owned(),
        };
        let integrity = match tick.integrity_ok {
            Some(true) => "integrity ok",
            Some(false) => "INTEGRITY FAILED",
            None => "no gate this tick",
        };
        let ledger = if tick.ledger_verifies { "ledger verifies" } else { "LEDGER DOES NOT VERIFY" };
        let _ = writeln!(
            out,
            "{:<4} {:<6} {exit}, pressure {}, {integrity}, {ledger}",
            tick.tick,
            time,
            or_dash(&tick.pressure)
        );
    }
    for failure in &report.failures {
        let _ = writeln!(out, "FAILED {failure}");
    }
    if let Some(dir) = &report.workspace {
        let _ = writeln!(out, "workspace kept: {dir}");
    }
    let verdict = match report.status {
        Status::Passed => format!("passed: {} ticks, every expectation met", report.ticks.len()),
        Status::Failed => format!("FAILED: {} expectation(s) not met", report.failures.len()),
        Status::Skipped => "skipped".to_owned(),
    };
    let _ = writeln!(out, "result: {verdict}\n");
    out
}
