//! `hermes explain REPO`: why a repository was upgraded, deferred, blocked
//! or left alone in one cycle, from the ledger alone.

use super::events::{check_not_cut, compact, recorded_head, summary};
use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::ledger::read::LedgerReader;
use crate::ledger::{EventKind, HermesEvent, LEDGER_FILE, LedgerError};
use crate::workspace::Workspace;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// Explain what one cycle did with a repository and why: the probe facts,
/// every plugin call (name, version, digest, output, fuel), signals, score,
/// the plan's recommendation with its reason code and reason, the lease,
/// the integrity gate, canary, health check and rollback, the outcome, and
/// the cycle's decision hash. Read from the ledger, whose hash chain is
/// verified on the way (exit 5 if it does not verify).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository, by its name in the policy
    repo: String,
    /// The cycle: its tick id, or the number at the end of it (the sequence
    /// number the cycle started at) [default: the last cycle that made a
    /// decision about REPO]
    #[arg(long, value_name = "N|TICK")]
    cycle: Option<String>,
    /// Print the explanation as JSON
    #[arg(long)]
    json: bool,
}

/// What pass one learns about one cycle (one tick id).
#[derive(Debug)]
struct CycleInfo {
    tick: String,
    /// Whether its plan made a decision about the repository.
    decided: bool,
}

/// The explanation, as printed with --json.
#[derive(Debug, Serialize)]
struct Explanation {
    repo: String,
    /// Tick id of the cycle.
    tick: String,
    /// Whether the cycle recorded `cycle-finished`.
    finished: bool,
    /// `upgraded`, `deferred`, `blocked`, `noop` or `failed`; null if the
    /// cycle recorded no outcome for the repository (it stopped early).
    outcome: Option<String>,
    /// Reason code and reason of the outcome (of the plan's decision when
    /// there is no outcome).
    reason_code: Option<String>,
    reason: Option<String>,
    /// The cycle's decision hash (from `plan-made`).
    decision_hash: Option<String>,
    policy_digest: Option<String>,
    /// The plan's decision about the repository (recommendation, reason
    /// code, reason, risk, priority, depth, remote, heads, ahead, behind).
    decision: Value,
    /// The outcome event's payload.
    result: Value,
    /// The probe facts (`repo-probed`): remote, branch, head, upstream
    /// head, ahead, behind, dirty and untracked paths, operation, problem.
    probe: Value,
    /// The fetches the probe made (remote, URL, ok, failure class).
    fetches: Value,
    /// The repo-probe plugin's signals.
    signals: Value,
    /// The risk scorer's output (null when the scorer was not asked).
    score: Value,
    /// A plugin that failed during the probe, if any.
    plugin_failure: Value,
    /// Every plugin call for the repository in the cycle.
    plugin_calls: Vec<Value>,
    /// The integrity gate: `ok` (null if it did not run) and its checks.
    gate: Value,
    /// Every event of the chain, in order: the repository's own events and
    /// the cycle's (`cycle-started`, `plan-made`, `gate-checked`,
    /// `integrity-failed`, `cycle-finished`).
    events: Vec<HermesEvent>,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let state_dir = workspace.state_dir();
    let store = super::open_state(workspace)?;
    let recorded = recorded_head(&store);
    let repo = args.repo.as_str();

    // Pass one: which cycles decided about the repository, and which
    // repositories the ledger knows.
    let mut cycles: Vec<CycleInfo> = Vec::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut tick_of_seq: Option<String> = None;
    let wanted_seq: Option<u64> = args.cycle.as_deref().and_then(|c| c.parse().ok());
    let last_seq = read_all(store.dir(), &state_dir, |event| {
        let index = match cycles.iter().rposition(|c| c.tick == event.tick) {
            Some(index) => index,
            None => {
                cycles.push(CycleInfo { tick: event.tick.clone(), decided: false });
                cycles.len() - 1
            }
        };
        if wanted_seq == Some(event.seq) {
            tick_of_seq = Some(event.tick.clone());
        }
        if event.kind == EventKind::PlanMade.as_str() {
            for name in decisions(event).filter_map(|d| d.get("repo").and_then(Value::as_str)) {
                if name == repo {
                    cycles[index].decided = true;
                }
                if !known.contains(name) {
                    known.insert(name.to_owned());
                }
            }
        } else if event.kind == EventKind::RepoProbed.as_str() && !known.contains(&event.subject) {
            known.insert(event.subject.clone());
        }
    })?;
    check_not_cut(&state_dir.join(LEDGER_FILE), recorded.as_ref(), last_seq)?;

    if !known.contains(repo) {
        return Err(unknown_repo(workspace, repo, &known));
    }
    let deciding = || cycles.iter().filter(|c| c.decided).map(|c| c.tick.as_str());
    let tick = match args.cycle.as_deref() {
        None => deciding().next_back().map(str::to_owned).ok_or_else(|| {
            CliError::new(ErrorKind::Usage, format!("no cycle has made a decision about {repo:?} yet"))
                .hint("run `hermes cycle`")
        })?,
        Some(wanted) => {
            let tick = find_cycle(&cycles, wanted, tick_of_seq.as_deref()).ok_or_else(|| {
                CliError::new(ErrorKind::Usage, format!("there is no cycle {wanted:?} in the ledger"))
                    .hint(recent_hint(repo, deciding()))
            })?;
            if !cycles.iter().any(|c| c.tick == tick && c.decided) {
                return Err(CliError::new(ErrorKind::Usage, format!("cycle {tick} made no decision about {repo:?}"))
                    .hint(recent_hint(repo, deciding())));
            }
            tick
        }
    };

    // Pass two: the events of that cycle that tell the repository's story.
    let mut events = Vec::new();
    read_all(store.dir(), &state_dir, |event| {
        if event.tick == tick && relevant(event, repo) {
            events.push(event.clone());
        }
    })?;
    let explanation = explain(repo, &tick, events);
    if args.json {
        print_json(&explanation)?;
    } else {
        print!("{}", render(&explanation));
    }
    Ok(ExitStatus::Success)
}

/// Reads and verifies the whole ledger, including a final event that only
/// lacks its newline; returns the last event's sequence number.
fn read_all(dir: &cap_std::fs::Dir, state_dir: &Path, mut visit: impl FnMut(&HermesEvent)) -> Result<u64, LedgerError> {
    let mut reader = LedgerReader::new(dir, state_dir)?;
    if let Some(torn) = reader.read_to_end(|event, _| visit(event))?
        && let Some(event) = &torn.complete_event
    {
        visit(event);
        return Ok(event.seq);
    }
    Ok(reader.position().head.seq)
}

/// The decisions of a `plan-made` event.
fn decisions(event: &HermesEvent) -> impl Iterator<Item = &Value> {
    event.payload.get("decisions").and_then(Value::as_array).into_iter().flatten()
}

/// The cycle `wanted` names: a tick id, the number in a tick id, or
/// (failing those) the cycle of the event with that sequence number.
fn find_cycle(cycles: &[CycleInfo], wanted: &str, tick_of_seq: Option<&str>) -> Option<String> {
    if let Some(c) = cycles.iter().find(|c| c.tick == wanted) {
        return Some(c.tick.clone());
    }
    let number = |tick: &str| tick.split('-').nth(1).map(str::to_owned);
    let numbered: Vec<&CycleInfo> = cycles.iter().filter(|c| number(&c.tick).as_deref() == Some(wanted)).collect();
    // A skipped cycle's tick can carry a number too; prefer one that decided.
    if let Some(c) = numbered.iter().find(|c| c.decided).or(numbered.first()) {
        return Some(c.tick.clone());
    }
    tick_of_seq.map(str::to_owned)
}

fn recent_hint<'a>(repo: &str, deciding: impl Iterator<Item = &'a str>) -> String {
    let ticks: Vec<&str> = deciding.collect();
    if ticks.is_empty() {
        return format!("no cycle has made a decision about {repo:?} yet");
    }
    let recent = &ticks[ticks.len().saturating_sub(5)..];
    format!("the last cycles that decided about {repo:?}: {}", recent.join(", "))
}

fn unknown_repo(workspace: &Workspace, repo: &str, known: &BTreeSet<String>) -> CliError {
    let in_policy = workspace.load_policy().is_ok_and(|p| p.repos.iter().any(|r| r.name == repo));
    let listed = if known.is_empty() {
        "the ledger records no repository yet".to_owned()
    } else {
        format!("repositories in the ledger: {}", known.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
    };
    if in_policy {
        CliError::new(ErrorKind::Usage, format!("no cycle has made a decision about {repo:?} yet"))
            .hint(format!("it is in the policy; run `hermes cycle` ({listed})"))
    } else {
        CliError::new(ErrorKind::Usage, format!("unknown repository {repo:?}")).hint(listed)
    }
}

/// Whether `event` (of the chosen cycle) belongs in the repository's story.
fn relevant(event: &HermesEvent, repo: &str) -> bool {
    if event.subject == repo {
        return true;
    }
    [
        EventKind::CycleStarted,
        EventKind::PlanMade,
        EventKind::GateChecked,
        EventKind::IntegrityFailed,
        EventKind::CycleFinished,
    ]
    .iter()
    .any(|k| k.as_str() == event.kind)
}

fn is_outcome(kind: &str) -> bool {
    [
        EventKind::RepoUpgraded,
        EventKind::RepoDeferred,
        EventKind::RepoBlocked,
        EventKind::RepoNoop,
        EventKind::ApplyFailed,
    ]
    .iter()
    .any(|k| k.as_str() == kind)
}

fn explain(repo: &str, tick: &str, events: Vec<HermesEvent>) -> Explanation {
    let of_kind = |kind: EventKind| events.iter().filter(move |e| e.kind == kind.as_str());
    let plan = of_kind(EventKind::PlanMade).next_back();
    let decision = plan
        .and_then(|p| decisions(p).find(|d| d.get("repo").and_then(Value::as_str) == Some(repo)))
        .cloned()
        .unwrap_or(Value::Null);
    let result = events
        .iter()
        .rfind(|e| e.subject == repo && is_outcome(&e.kind))
        .map(|e| {
            let mut payload = e.payload.clone();
            if payload.get("outcome").is_none()
                && let Some(map) = payload.as_object_mut()
            {
                let outcome = e.kind.strip_prefix("repo-").unwrap_or("failed");
                map.insert("outcome".to_owned(), json!(outcome));
            }
            payload
        })
        .unwrap_or(Value::Null);
    let from_result_or_decision =
        |key: &str| result.get(key).or_else(|| decision.get(key)).and_then(Value::as_str).map(str::to_owned);
    let probe = of_kind(EventKind::RepoProbed).rfind(|e| e.subject == repo);
    let probed = |key: &str| probe.and_then(|e| e.payload.get(key)).cloned().unwrap_or(Value::Null);
    let plugin_calls = of_kind(EventKind::PluginCalled)
        .filter(|e| e.subject == repo)
        .map(|e| {
            let p = &e.payload;
            json!({
                "seq": e.seq,
                "kind": p.get("kind"),
                "plugin": p.get("plugin"),
                "version": p.get("version"),
                "digest": p.get("digest"),
                "outcome": p.get("outcome"),
                "output": p.get("output"),
                "error": p.get("error"),
                "fuel_used": p.get("fuel_used"),
                "fuel_limit": p.get("fuel_limit"),
            })
        })
        .collect();
    let checks: Vec<Value> = of_kind(EventKind::GateChecked)
        .map(|e| json!({ "name": e.payload.get("name").cloned().unwrap_or(json!(e.subject)), "ok": e.payload.get("ok"), "detail": e.payload.get("detail") }))
        .collect();
    let failed = of_kind(EventKind::IntegrityFailed).next().is_some()
        || checks.iter().any(|c| c.get("ok").and_then(Value::as_bool) == Some(false));
    let gate_ok = if checks.is_empty() && !failed { Value::Null } else { json!(!failed) };
    Explanation {
        repo: repo.to_owned(),
        tick: tick.to_owned(),
        finished: of_kind(EventKind::CycleFinished).next().is_some(),
        outcome: result.get("outcome").and_then(Value::as_str).map(str::to_owned),
        reason_code: from_result_or_decision("reason_code"),
        reason: from_result_or_decision("reason"),
        decision_hash: plan.and_then(|p| p.payload.get("decision_hash")).and_then(Value::as_str).map(str::to_owned),
        policy_digest: plan
            .and_then(|p| p.payload.get("policy_digest"))
            .or_else(|| of_kind(EventKind::CycleStarted).next().and_then(|e| e.payload.get("policy_digest")))
            .and_then(Value::as_str)
            .map(str::to_owned),
        decision,
        result,
        probe: probed("probe"),
        fetches: probed("fetches"),
        signals: probed("signals"),
        score: probed("score"),
        plugin_failure: probed("plugin_failure"),
        plugin_calls,
        gate: json!({ "ok": gate_ok, "checks": checks }),
        events,
    }
}

fn render(x: &Explanation) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let verdict = match &x.outcome {
        Some(outcome) => outcome.clone(),
        None if x.finished => "no outcome recorded".to_owned(),
        None => "no outcome recorded (the cycle did not finish)".to_owned(),
    };
    line(format!(
        "{}: {verdict} in cycle {} ({}: {})",
        x.repo,
        x.tick,
        x.reason_code.as_deref().unwrap_or("-"),
        x.reason.as_deref().unwrap_or("-")
    ));
    let d = &x.decision;
    if d.is_object() {
        let field = |key: &str| d.get(key).map_or("-".to_owned(), |v| v.as_str().map_or(v.to_string(), str::to_owned));
        line(format!(
            "decision: {} ({}), risk {}, priority {}, depth {}, remote {}",
            field("recommendation"),
            field("reason_code"),
            field("risk"),
            field("priority"),
            field("depth"),
            field("remote")
        ));
        line(format!("  {}", field("reason")));
    }
    line(format!("decision hash {}", x.decision_hash.as_deref().unwrap_or("-")));
    line(String::new());
    line("events:".to_owned());
    for event in &x.events {
        let head = format!("  {:>5} {:<21}", event.seq, event.kind);
        let pad = " ".repeat(head.chars().count() + 1);
        for (i, text) in details(event, &x.repo).into_iter().enumerate() {
            line(if i == 0 { format!("{head} {text}") } else { format!("{pad}{text}") });
        }
    }
    out
}

/// The lines that describe `event` in an explanation of `repo`.
fn details(event: &HermesEvent, repo: &str) -> Vec<String> {
    let p = &event.payload;
    match EventKind::parse(&event.kind) {
        Some(EventKind::PlanMade) => {
            let mine = decisions(event).find(|d| d.get("repo").and_then(Value::as_str) == Some(repo));
            let mut lines = vec![summary(event)];
            if let Some(d) = mine {
                let text =
                    |k: &str| d.get(k).map_or("-".to_owned(), |v| v.as_str().map_or(v.to_string(), str::to_owned));
                lines.push(format!("{}: {} {}: {}", repo, text("recommendation"), text("reason_code"), text("reason")));
            }
            lines
        }
        Some(EventKind::PluginCalled) => {
            let mut lines = vec![summary(event)];
            if let Some(limit) = p.get("fuel_limit").filter(|v| v.is_number()) {
                lines[0].push_str(&format!(" of {limit}"));
            }
            if let Some(output) = p.get("output").filter(|v| !v.is_null()) {
                lines.push(format!("output {}", compact(output, 200)));
            }
            lines
        }
        Some(EventKind::RepoProbed) => {
            let mut lines = vec![summary(event)];
            if let Some(probe) = p.get("probe") {
                let text = |k: &str| probe.get(k).and_then(Value::as_str);
                if let Some(branch) = text("branch") {
                    lines.push(format!(
                        "branch {branch}, upstream branch {}, {} dirty, {} untracked paths{}",
                        text("upstream_branch").unwrap_or("-"),
                        probe.get("dirty_paths").map_or("?".to_owned(), Value::to_string),
                        probe.get("untracked_paths").map_or("?".to_owned(), Value::to_string),
                        text("operation").map_or(String::new(), |op| format!(", {op} in progress"))
                    ));
                }
                if let Some(failed_over) = probe.get("failed_over").and_then(Value::as_array).filter(|f| !f.is_empty())
                {
                    lines.push(format!("failed over from {}", compact(&Value::Array(failed_over.clone()), 200)));
                }
            }
            for fetch in p.get("fetches").and_then(Value::as_array).into_iter().flatten() {
                let ok = fetch.get("ok").and_then(Value::as_bool);
                let remote = fetch.get("remote").and_then(Value::as_str).unwrap_or("?");
                let url = fetch.get("url").and_then(Value::as_str).unwrap_or("?");
                lines.push(match ok {
                    Some(true) => format!("fetch from {remote} ({url}): ok"),
                    _ => format!(
                        "fetch from {remote} ({url}): FAILED ({})",
                        fetch.get("failure").and_then(Value::as_str).unwrap_or("?")
                    ),
                });
            }
            if let Some(signals) = p.get("signals").and_then(Value::as_array).filter(|s| !s.is_empty()) {
                lines.push(format!("signals {}", compact(&Value::Array(signals.clone()), 200)));
            }
            if let Some(score) = p.get("score").filter(|s| s.is_object()) {
                lines.push(format!(
                    "score: risk {}, recommendation {}",
                    score.get("risk").map_or("?".to_owned(), Value::to_string),
                    score.get("recommendation").and_then(Value::as_str).unwrap_or("?")
                ));
            }
            if let Some(failure) = p.get("plugin_failure").filter(|f| f.is_object()) {
                lines.push(format!("plugin failure {}", compact(failure, 200)));
            }
            lines
        }
        Some(EventKind::GateChecked) => {
            let name = p.get("name").and_then(Value::as_str).unwrap_or(&event.subject);
            vec![format!("{name}: {}", summary(event))]
        }
        _ => vec![summary(event)],
    }
    .into_iter()
    .map(|l| tidy(&l))
    .collect()
}

/// One line of text: control characters as spaces, at most 400 characters.
fn tidy(text: &str) -> String {
    let mut line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(400).collect();
    if text.chars().count() > 400 {
        line.push('…');
    }
    let line = line.trim_end();
    if line.is_empty() { "-".to_owned() } else { line.to_owned() }
}
