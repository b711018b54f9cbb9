//! `hermes replay [--out DIR]` and `hermes replay --plugin KIND=FILE.wasm [--cycles RANGE]`.

use super::render::{short, table};
use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::plugin::PluginKind;
use crate::plugin::cache::ComponentCache;
use crate::plugin::engine::PluginEngine;
use crate::replay::ReplayError;
use crate::replay::plugin::{CycleRange, PluginReplay, PluginReplayOptions, replay_plugin};
use crate::replay::views::{Derivation, StateReplay, Status, replay_state};
use crate::workspace::Workspace;
use serde_json::Value;
use std::path::PathBuf;

/// Rebuild every view the ledger determines (in a scratch directory) and
/// compare it with state/, recompute every recorded decision hash, and report
/// each difference with its file and JSON path. Exits 0 when everything
/// agrees, 5 on any difference or when the ledger does not verify.
///
/// With --plugin: run every recorded call of KIND again against another
/// component and report, cycle by cycle, which decisions would change.
///
/// Never writes to state/ and never touches a repository.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replay the recorded calls of KIND (repo-probe, risk-scorer,
    /// federation-selector) against the component FILE instead
    #[arg(long, value_name = "KIND=FILE.wasm", value_parser = parse_plugin)]
    plugin: Option<(PluginKind, PathBuf)>,
    /// With --plugin: the cycles to replay, numbered from 1 in ledger order:
    /// `7`, `3..5` (3 to 5, both included), `3..`, `..4` [default: all]
    #[arg(long, value_name = "RANGE", requires = "plugin")]
    cycles: Option<CycleRange>,
    /// Keep the rebuilt views in DIR (which must not be in state/) instead of
    /// a temporary directory
    #[arg(long, value_name = "DIR", conflicts_with = "plugin")]
    out: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn parse_plugin(text: &str) -> Result<(PluginKind, PathBuf), String> {
    let (kind, path) = text.split_once('=').ok_or("expected KIND=FILE.wasm")?;
    let kind = PluginKind::parse(kind).ok_or_else(|| {
        format!("unknown plugin kind {kind:?}; expected repo-probe, risk-scorer or federation-selector")
    })?;
    if path.is_empty() {
        return Err("expected KIND=FILE.wasm: the file is missing".into());
    }
    Ok((kind, PathBuf::from(path)))
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    match &args.plugin {
        Some((kind, component)) => run_plugin(workspace, *kind, component, &args),
        None => run_state(workspace, &args),
    }
}

fn error(e: ReplayError) -> CliError {
    match e {
        ReplayError::NoState(dir) => CliError::new(ErrorKind::Config, format!("no state directory at {dir}"))
            .hint("create a workspace with `hermes init`"),
        ReplayError::State(e) => e.into(),
        ReplayError::Ledger(e) => e.into(),
        ReplayError::Scratch(message) => CliError::new(ErrorKind::Internal, message),
        ReplayError::Component(message) => {
            CliError::new(ErrorKind::Config, message).hint("check the component with `hermes plugin test FILE`")
        }
    }
}

fn run_state(workspace: &Workspace, args: &Args) -> Result<ExitStatus, CliError> {
    let mut report = replay_state(&workspace.state_dir(), args.out.as_deref()).map_err(error)?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", render_state(&report));
    }
    if let Some(e) = report.chain_error.take() {
        return Err(e.into());
    }
    if !report.ok {
        let n = report.differences.len();
        return Err(CliError::new(
            ErrorKind::Integrity,
            format!("replay found {n} difference{} between state/ and the ledger", if n == 1 { "" } else { "s" }),
        )
        .hint(
            "the ledger is the source of truth: a view that disagrees was changed outside hermes or written by a bug; \
             `hermes replay --out DIR` writes what the derivable views should hold, and a cycle rebuilds a missing fold \
             from the ledger",
        ));
    }
    Ok(ExitStatus::Success)
}

fn value_text(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 120 { format!("{}…", text.chars().take(120).collect::<String>()) } else { text }
        }
    }
}

fn render_state(report: &StateReplay) -> String {
    let mut out = String::new();
    let l = &report.ledger;
    match &l.broken {
        None => out.push_str(&format!("ledger ok: {} events, head {} {}\n", l.events, l.head.seq, l.head.hash)),
        Some(broken) => out.push_str(&format!(
            "ledger BROKEN at line {}: first bad sequence number {}: {}\nreplayed through sequence number {} only; \
             nothing past it\n",
            broken["line"],
            broken["first_bad_seq"],
            broken["problem"].as_str().unwrap_or_default(),
            l.replayed_through
        )),
    }
    let d = &report.decision_hashes;
    out.push_str(&format!(
        "decision hashes: {} plans recomputed, {} agree; {} outcome and cycle-finished references checked\n",
        d.plans, d.plans_agree, d.references
    ));
    let rows: Vec<[String; 3]> = report
        .views
        .iter()
        .map(|v| {
            let status = serde_json::to_value(v.status).ok().and_then(|s| s.as_str().map(str::to_owned));
            let what = match (v.derivation, &v.rebuilt_head) {
                (Derivation::NotDerivable, _) => "not derivable: envelope and ledger position checked".to_owned(),
                (Derivation::Unknown, _) => v.note.clone(),
                (_, Some(head)) => format!("{} at seq {}", derivation_name(v.derivation), head.seq),
                (_, None) => derivation_name(v.derivation).to_owned(),
            };
            [status.unwrap_or_default(), v.file.clone(), what]
        })
        .collect();
    out.push_str("views (rebuilt from the ledger, written_at ignored):\n");
    for line in table(["status", "file", "derivation"], &rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if !report.differences.is_empty() {
        out.push_str("differences:\n");
        for diff in &report.differences {
            let path = if diff.path.is_empty() { String::new() } else { format!(" {}", diff.path) };
            let problem = serde_json::to_value(diff.problem).ok().and_then(|p| p.as_str().map(str::to_owned));
            match diff.problem {
                crate::replay::views::Problem::Missing | crate::replay::views::Problem::Unexpected => {
                    out.push_str(&format!("  {}{path}: {}\n", diff.file, problem.unwrap_or_default()));
                }
                _ => out.push_str(&format!(
                    "  {}{path}: expected {}, found {}\n",
                    diff.file,
                    value_text(diff.expected.as_ref()),
                    value_text(diff.found.as_ref())
                )),
            }
        }
    }
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if report.views.iter().any(|v| v.derivation == Derivation::NotDerivable) {
        out.push_str("(why a view is not derivable: `hermes replay --json`, or docs/replay_and_determinism.md)\n");
    }
    if let Some(dir) = &report.rebuilt_in {
        out.push_str(&format!("rebuilt views kept in {}\n", dir.display()));
    }
    let compared = report.views.iter().filter(|v| !matches!(v.status, Status::NotCompared | Status::Absent)).count();
    if report.ledger.ok {
        out.push_str(&format!(
            "replay: {} difference{} in {compared} files checked\n",
            report.differences.len(),
            if report.differences.len() == 1 { "" } else { "s" }
        ));
    }
    out
}

fn derivation_name(d: Derivation) -> &'static str {
    match d {
        Derivation::Fold => "fold",
        Derivation::Snapshot => "snapshot",
        Derivation::Partial => "partial",
        Derivation::NotDerivable => "not derivable",
        Derivation::Unknown => "unknown",
    }
}

fn run_plugin(
    workspace: &Workspace,
    kind: PluginKind,
    component: &std::path::Path,
    args: &Args,
) -> Result<ExitStatus, CliError> {
    // The production engine, with the workspace's compile cache when it exists.
    let cache = workspace
        .home()
        .is_dir()
        .then(|| ComponentCache::open(&workspace.home().join("cache").join("plugins")).ok())
        .flatten();
    let engine = PluginEngine::new(cache).map_err(|e| CliError::new(ErrorKind::Internal, e.to_string()))?;
    let policy = workspace.load_policy().ok();
    let options =
        PluginReplayOptions { kind, component, cycles: args.cycles, policy: policy.as_ref(), home: workspace.home() };
    let report = replay_plugin(&workspace.state_dir(), &engine, &options).map_err(error)?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", render_plugin(&report));
    }
    Ok(ExitStatus::Success)
}

fn outcome_name(o: crate::plugin::call::CallOutcome) -> String {
    serde_json::to_value(o).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn render_plugin(r: &PluginReplay) -> String {
    let mut out = String::new();
    let c = &r.component;
    out.push_str(&format!(
        "{} {} {} (sha256 {}) against {} of {} recorded cycles{}; fuel limit {} ({})\n",
        r.kind.as_str(),
        c.plugin,
        c.version,
        short(Some(&c.digest)),
        r.cycles.len(),
        r.cycles_in_ledger,
        r.range.as_ref().map(|range| format!(" (cycles {range})")).unwrap_or_default(),
        r.limits.fuel,
        r.limits.from,
    ));
    for cycle in &r.cycles {
        let hash = match (&cycle.recorded_hash, &cycle.new_hash) {
            (None, _) => "no plan recorded".to_owned(),
            (Some(old), None) => format!("decision hash {} -> undetermined", short(Some(old))),
            (Some(old), Some(new)) if old == new => format!("decision hash {} unchanged", short(Some(old))),
            (Some(old), Some(new)) => format!("decision hash {} -> {}", short(Some(old)), short(Some(new))),
        };
        out.push_str(&format!("cycle {}  {}  {hash}\n", cycle.cycle, cycle.tick));
        if !cycle.changes.is_empty() {
            let rows: Vec<[String; 4]> = cycle
                .changes
                .iter()
                .map(|ch| {
                    let remote = if ch.remote.old == ch.remote.new {
                        String::new()
                    } else {
                        format!("  remote {} -> {}", ch.remote.old, ch.remote.new)
                    };
                    [
                        ch.repo.clone(),
                        format!("{} -> {}", ch.recommendation.old.as_str(), ch.recommendation.new.as_str()),
                        format!("{} -> {} ({:+})", ch.risk.old, ch.risk.new, ch.risk.delta),
                        format!("{} -> {}{remote}", ch.reason_code.old, ch.reason_code.new),
                    ]
                })
                .collect();
            for line in table(["repo", "recommendation", "risk", "reason code"], &rows).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        } else if cycle.order_changed {
            out.push_str("  the same decisions in another order\n");
        }
        for u in &cycle.undetermined {
            out.push_str(&format!("  {}: undetermined: {}\n", u.repo, u.why));
        }
        for note in &cycle.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    let failing: Vec<_> = r.calls.iter().filter(|c| c.now_fails || c.over_recorded_fuel_limit).collect();
    if !failing.is_empty() {
        out.push_str("calls that now fail or need more fuel than recorded:\n");
        for call in failing {
            out.push_str(&format!(
                "  cycle {} seq {} {}: {} (fuel {} of {}, recorded {} of {}){}\n",
                call.cycle,
                call.seq,
                call.repo,
                outcome_name(call.replayed.outcome),
                call.replayed.fuel_used,
                call.replayed.fuel_limit,
                call.recorded.fuel_used,
                call.recorded.fuel_limit,
                call.replayed
                    .error
                    .as_ref()
                    .and_then(|e| e.lines().next())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
            ));
        }
    }
    let t = &r.totals;
    out.push_str(&format!(
        "{} calls re-run: {} outputs changed, {} now fail, {} over the recorded fuel limit; {} of {} cycles would \
         plan differently ({} decisions changed, {} undetermined)\n",
        t.calls,
        t.outputs_changed,
        t.now_fail,
        t.over_recorded_fuel_limit,
        t.cycles_changed,
        t.cycles,
        t.decisions_changed,
        t.undetermined
    ));
    out
}
