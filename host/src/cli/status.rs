//! `hermes status`: one screen on the workspace, projected from the ledger.

use super::render::{short, table};
use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::clock::Clock;
use crate::projection::checkpoint::{self, Projection};
use crate::scheduler::{self, NextRun, jobs};
use crate::state::ViewName;
use crate::workspace::Workspace;
use serde_json::{Value, json};

/// Show the last cycle, each repository's HEAD, last decision and outcome,
/// active leases, the last integrity gate and the next due job. Reads the graph projection
/// from its checkpoint plus the events appended since (cost independent of
/// the ledger's length); `hermes verify` checks the whole chain.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the status as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let store = super::open_state(workspace)?;
    let projection = checkpoint::project(&store)?;
    let live = store.read::<Value>(ViewName::LiveRuntimeControlPlane).ok().flatten().map(|e| e.data);
    let clock = Clock::from_env().map_err(|e| CliError::new(ErrorKind::Config, e))?;
    let jobs = jobs::load(workspace.home())?;
    let next = scheduler::next_runs(&jobs, &scheduler::saved_state(&store), clock.now()).into_iter().next();
    if args.json {
        print_json(&status_json(&projection, live, next.as_ref()))?;
    } else {
        print!("{}", status_text(&projection, live.as_ref(), next.as_ref()));
    }
    Ok(ExitStatus::Success)
}

fn status_json(projection: &Projection, live: Option<Value>, next: Option<&NextRun>) -> Value {
    let s = &projection.snapshot;
    json!({
        "ledger_head": { "seq": s.seq, "hash": s.hash },
        "last_tick": s.last_tick,
        "skipped_ticks": s.skipped_ticks,
        "integrity": s.integrity,
        "repos": s.repos,
        "leases": s.leases,
        "jobs": s.jobs,
        "next_job": next,
        "live": live,
        "projection": {
            "resumed_at": projection.resumed_at,
            "events_read": projection.events_read,
            "checkpoint_discarded": projection.discarded,
        },
    })
}

fn status_text(projection: &Projection, live: Option<&Value>, next: Option<&NextRun>) -> String {
    let s = &projection.snapshot;
    let mut out = String::new();
    match &s.last_tick {
        None => out.push_str("no cycle has run yet\n"),
        Some(t) => {
            let counts: Vec<String> = t.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let state = match &t.finished_at {
                Some(at) => {
                    format!("finished {at}: {}", if counts.is_empty() { "-".into() } else { counts.join(", ") })
                }
                None => "did not finish (running, or stopped)".to_owned(),
            };
            out.push_str(&format!("last cycle {} (started {}): {state}\n", t.tick, t.started_at));
        }
    }
    if let Some(phase) = live.and_then(|l| l["phase"].as_str()).filter(|p| *p != "idle") {
        out.push_str(&format!("now: phase {phase} (pid {})\n", live.map_or(Value::Null, |l| l["pid"].clone())));
    }
    match &s.integrity {
        Some(i) if i.ok => out.push_str(&format!("integrity gate: ok ({} checks)\n", i.checks)),
        Some(i) => out.push_str(&format!("integrity gate: FAILED ({})\n", i.failed.join(", "))),
        None => {}
    }
    if s.skipped_ticks > 0 {
        out.push_str(&format!("cycles skipped while another ran: {}\n", s.skipped_ticks));
    }
    out.push('\n');
    let rows: Vec<[String; 6]> = s
        .repos
        .iter()
        .map(|(name, r)| {
            let decision = r.last_decision.as_ref();
            [
                name.clone(),
                short(r.head.as_deref()),
                r.behind.to_string(),
                decision.map_or("-".into(), |d| {
                    d.risk.map_or(d.recommendation.clone(), |risk| format!("{} (risk {risk})", d.recommendation))
                }),
                r.last_outcome.as_ref().map_or("-".into(), |o| o.outcome.clone()),
                r.last_outcome.as_ref().map_or(String::new(), |o| format!("{}: {}", o.reason_code, o.reason)),
            ]
        })
        .collect();
    out.push_str(&table(["REPO", "HEAD", "BEHIND", "DECISION", "OUTCOME", "REASON"], &rows));
    if !s.leases.is_empty() {
        let leases: Vec<String> = s
            .leases
            .values()
            .map(|l| format!("{} (token {}, until {})", l.key, l.fencing_token, l.expires_at))
            .collect();
        out.push_str(&format!("\nactive leases: {}\n", leases.join(", ")));
    }
    let next = next.map_or("none scheduled (no enabled job in config/jobs.json)".to_owned(), |run| {
        format!("{} ({})", run.id, super::job::describe_next(run))
    });
    out.push_str(&format!("\nnext job: {next}\nledger head {} {}\n", s.seq, short(Some(&s.hash))));
    out
}
