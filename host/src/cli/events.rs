//! `hermes events`: the ledger's events, filtered, verified as they are read.

use super::{CliError, ErrorKind, ExitStatus};
use crate::ledger::read::{EventFilter, LedgerReader, Since};
use crate::ledger::{self, EventKind, HermesEvent, TornTail};
use crate::state::{LedgerHead, StateStore, ViewName};
use crate::workspace::Workspace;
use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// How often --follow looks for new events.
const POLL: Duration = Duration::from_millis(200);

/// Print the ledger's events in order, one line each (`seq time tick kind
/// subject summary`), or as JSON Lines with --json (each event exactly as
/// stored). The hash chain is verified while reading: a ledger changed
/// outside hermes stops the output before the first bad event and exits 5.
/// Read-only; takes no lock while reading.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events whose subject is this repository
    #[arg(long, value_name = "REPO")]
    repo: Option<String>,
    /// Only events of this kind; repeatable or comma-separated
    #[arg(
        long = "kind",
        value_name = "KIND",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(EventKind::ALL.iter().map(|k| k.as_str())),
    )]
    kinds: Vec<String>,
    /// Only events from this sequence number, or from this RFC 3339 time, on
    #[arg(long, value_name = "SEQ|TIME", value_parser = Since::parse)]
    since: Option<Since>,
    /// Only the last N matching events (with --follow: the last N so far, then every new one)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Keep printing events as they are appended, until interrupted
    #[arg(long)]
    follow: bool,
    /// Print one JSON object per line (JSON Lines): each event as stored in the ledger
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let state_dir = workspace.state_dir();
    let store = super::open_state(workspace)?;
    let recorded = recorded_head(&store);
    let mut reader = LedgerReader::new(store.dir(), &state_dir)?;
    let filter = EventFilter { repo: args.repo.clone(), kinds: args.kinds.clone(), since: args.since.clone() };
    let mut printer = Printer::new(&args);

    if !args.follow {
        let read = reader.read_to_end(|event, raw| printer.offer(&filter, event, raw));
        let torn = match read {
            Ok(torn) => torn,
            Err(e) => {
                printer.finish()?;
                return Err(e.into());
            }
        };
        let note = torn.as_ref().map(|torn| torn_note(&mut printer, &filter, torn));
        printer.finish()?;
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        let last_seq =
            torn.as_ref().and_then(|t| t.complete_event.as_ref()).map_or(reader.position().head.seq, |e| e.seq);
        check_not_cut(reader.path(), recorded.as_ref(), last_seq)?;
        if let Some(repo) = &args.repo
            && printer.matched == 0
            && !printer.repos.contains(repo)
        {
            let known: Vec<&str> = printer.repos.iter().map(String::as_str).collect();
            eprintln!(
                "note: no cycle has probed a repository named {repo:?}; repositories in the ledger: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            );
        }
        return Ok(ExitStatus::Success);
    }

    // --follow: the backlog (only the last --limit of it), then every new
    // event as it is appended. A torn final line is not shown: it is an
    // append in progress, or a crash's leftover that the next cycle repairs.
    let mut first = true;
    loop {
        let torn = match reader.read_new(|event, raw| printer.offer(&filter, event, raw)) {
            Ok(torn) => torn,
            Err(e) => {
                printer.finish()?;
                return Err(e.into());
            }
        };
        printer.finish()?;
        if std::mem::take(&mut first) {
            let last_seq = torn.and_then(|t| t.complete_event).map_or(reader.position().head.seq, |e| e.seq);
            check_not_cut(reader.path(), recorded.as_ref(), last_seq)?;
        }
        std::thread::sleep(POLL);
    }
}

/// The ledger position `auto_safe_upgrade_summary.json` records. Read before
/// the ledger, so that a cycle finishing meanwhile cannot make it look
/// ahead of it. A summary that cannot be read is no evidence and is skipped.
pub(super) fn recorded_head(store: &StateStore) -> Option<LedgerHead> {
    store.read::<Value>(ViewName::UpgradeSummary).ok().flatten().map(|envelope| envelope.ledger_head)
}

/// Exit 5 when the summary records an event beyond the last one read:
/// lines were cut from the end of the ledger, which the chain cannot show.
pub(super) fn check_not_cut(ledger: &Path, recorded: Option<&LedgerHead>, last_seq: u64) -> Result<(), CliError> {
    if let Some(head) = recorded {
        ledger::check_view_head(ledger, last_seq, ViewName::UpgradeSummary.file_name(), head)?;
    }
    Ok(())
}

/// Prints (or, with --limit, holds back) the events that pass the filter.
struct Printer {
    json: bool,
    /// With --limit: the last N matching events, not printed yet.
    held: Option<(usize, VecDeque<String>)>,
    out: BufWriter<io::Stdout>,
    error: Option<io::Error>,
    /// How many events passed the filter.
    matched: u64,
    /// Every repository a cycle probed, for the note on an unknown --repo.
    repos: BTreeSet<String>,
}

impl Printer {
    fn new(args: &Args) -> Self {
        Self {
            json: args.json,
            held: args.limit.map(|n| (n, VecDeque::new())),
            out: BufWriter::new(io::stdout()),
            error: None,
            matched: 0,
            repos: BTreeSet::new(),
        }
    }

    fn offer(&mut self, filter: &EventFilter, event: &HermesEvent, raw: &str) {
        if event.kind == EventKind::RepoProbed.as_str() && !self.repos.contains(&event.subject) {
            self.repos.insert(event.subject.clone());
        }
        if !filter.matches(event) {
            return;
        }
        self.matched += 1;
        let line = if self.json { raw.to_owned() } else { line(event) };
        match &mut self.held {
            Some((limit, held)) => {
                held.push_back(line);
                if held.len() > *limit {
                    held.pop_front();
                }
            }
            None => self.write(&line),
        }
    }

    fn write(&mut self, line: &str) {
        if self.error.is_none()
            && let Err(e) = writeln!(self.out, "{line}")
        {
            self.error = Some(e);
        }
    }

    /// Prints what was held back and flushes; from now on events are printed
    /// as they come.
    fn finish(&mut self) -> Result<(), CliError> {
        if let Some((_, held)) = self.held.take() {
            for line in held {
                self.write(&line);
            }
        }
        if self.error.is_none()
            && let Err(e) = self.out.flush()
        {
            self.error = Some(e);
        }
        match self.error.take() {
            None => Ok(()),
            Some(e) => Err(CliError::new(ErrorKind::Internal, format!("cannot write to stdout: {e}"))),
        }
    }
}

/// A torn final line: shown if it is a whole event that chains on (the
/// next cycle only adds its newline), noted either way.
fn torn_note(printer: &mut Printer, filter: &EventFilter, torn: &TornTail) -> String {
    match &torn.complete_event {
        Some(event) => {
            printer.offer(filter, event, &String::from_utf8_lossy(&torn.bytes));
            format!(
                "the last event (sequence number {}) lacks its newline, from an interrupted write; the next cycle adds it",
                event.seq
            )
        }
        None => format!(
            "a torn final line ({} bytes at offset {}) from an interrupted write is not shown; the next cycle repairs it",
            torn.bytes.len(),
            torn.offset
        ),
    }
}

/// One event as a line of text: `seq time tick kind subject summary`.
fn line(event: &HermesEvent) -> String {
    format!("{:>5} {} {} {:<21} {} {}", event.seq, event.time, event.tick, event.kind, event.subject, summary(event))
        .trim_end()
        .to_owned()
}

/// The first 8 characters of a hash or commit id.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn number(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer).filter(|v| v.is_number()).map(Value::to_string)
}

/// The payload as compact JSON, cut at `max` characters.
pub(super) fn compact(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

/// What a command run (`canary-run`, `health-checked`) recorded.
fn command_run(payload: &Value) -> Option<String> {
    if let Some(error) = text(payload, "/error") {
        return Some(format!("error: {error}"));
    }
    let result = payload.get("result")?;
    let how = if result.get("timed_out").and_then(Value::as_bool) == Some(true) {
        "timed out".to_owned()
    } else if let Some(error) = text(result, "/spawn_error") {
        format!("could not start: {error}")
    } else if let Some(code) = number(result, "/exit_code") {
        format!("exit {code}")
    } else if let Some(signal) = number(result, "/signal") {
        format!("killed by signal {signal}")
    } else {
        return None;
    };
    Some(match number(result, "/duration_ms") {
        Some(ms) => format!("{how} in {ms} ms"),
        None => how,
    })
}

fn lease(lease: &Value) -> Option<String> {
    let token = number(lease, "/fencing_token")?;
    Some(match text(lease, "/expires_at") {
        Some(expires) => format!("token {token}, expires {expires}"),
        None => format!("token {token}"),
    })
}

fn holder(lease: &Value) -> String {
    let host = text(lease, "/holder/host").unwrap_or("?");
    let pid = number(lease, "/holder/pid").unwrap_or_else(|| "?".to_owned());
    let tick = text(lease, "/holder/tick").unwrap_or("?");
    format!("pid {pid} on {host} (tick {tick})")
}

/// The outcome payload of `repo-upgraded` and the other outcome events.
fn outcome(payload: &Value) -> Option<String> {
    let code = text(payload, "/reason_code")?;
    let reason = text(payload, "/reason").unwrap_or("");
    let mut line = format!("{} {code}: {reason}", text(payload, "/recommendation").unwrap_or("-"));
    if let (Some(before), Some(after)) = (text(payload, "/head_before"), text(payload, "/head_after"))
        && before != after
    {
        line.push_str(&format!(" ({} -> {})", short(before), short(after)));
    }
    Some(line)
}

/// A short description of an event's payload, for one line of text.
pub(super) fn summary(event: &HermesEvent) -> String {
    let p = &event.payload;
    let known = EventKind::parse(&event.kind).and_then(|kind| match kind {
        EventKind::LedgerRepaired => Some(format!(
            "{} a torn final line: {} bytes at offset {}",
            text(p, "/action")?,
            number(p, "/length")?,
            number(p, "/offset")?
        )),
        EventKind::StateViewRebuilt => Some(format!("{} rebuilt: {}", text(p, "/view")?, text(p, "/why")?)),
        EventKind::CycleStarted => Some(format!(
            "{}, {} repositories, policy {}",
            text(p, "/mode")?,
            number(p, "/repos")?,
            short(text(p, "/policy_digest")?)
        )),
        EventKind::CycleSkipped => Some(match p.get("holder").filter(|h| h.is_object()) {
            Some(h) => format!(
                "another cycle holds the workspace (pid {} on {}, started {})",
                number(h, "/pid")?,
                text(h, "/host")?,
                text(h, "/started_at")?
            ),
            None => "another cycle holds the workspace".to_owned(),
        }),
        EventKind::PluginCalled => {
            let mut line = format!(
                "{} {} {} ({}): {}, fuel {}",
                text(p, "/kind")?,
                text(p, "/plugin")?,
                text(p, "/version")?,
                short(text(p, "/digest")?),
                text(p, "/outcome")?,
                number(p, "/fuel_used").unwrap_or_else(|| "-".to_owned())
            );
            if let Some(error) = text(p, "/error") {
                line.push_str(&format!(": {error}"));
            }
            Some(line)
        }
        EventKind::RepoProbed => {
            let probe = p.get("probe")?;
            let mut line = format!(
                "head {}, upstream {}, ahead {}, behind {}",
                text(probe, "/head").map_or("-", short),
                text(probe, "/upstream_head").map_or("-", short),
                number(probe, "/ahead")?,
                number(probe, "/behind")?
            );
            if let Some(remote) = text(probe, "/remote") {
                line.push_str(&format!(", remote {remote}"));
            }
            if let Some(problem) = probe.get("problem").filter(|v| v.is_object()) {
                line.push_str(&format!(
                    "; {}: {}",
                    text(problem, "/kind").unwrap_or("problem"),
                    text(problem, "/message").unwrap_or("")
                ));
            }
            Some(line)
        }
        EventKind::PlanMade => Some(format!(
            "{} decisions, decision hash {}",
            p.get("decisions")?.as_array()?.len(),
            short(text(p, "/decision_hash")?)
        )),
        EventKind::RepoUpgraded
        | EventKind::RepoDeferred
        | EventKind::RepoBlocked
        | EventKind::RepoNoop
        | EventKind::ApplyFailed => outcome(p),
        EventKind::CycleFinished => {
            let counts: Vec<String> =
                p.get("counts")?.as_object()?.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
            Some(format!(
                "{}; decision hash {}",
                if counts.is_empty() { "no repositories".to_owned() } else { counts.join(", ") },
                short(text(p, "/decision_hash")?)
            ))
        }
        EventKind::LeaseGranted | EventKind::LeaseRenewed => lease(p.get("lease")?),
        EventKind::LeaseTakeover => {
            Some(format!("{}, took over from {}", lease(p.get("lease")?)?, holder(p.get("took_over")?)))
        }
        EventKind::LeaseConflict => {
            let held_by = p.get("held_by")?;
            Some(format!("held by {}, token {}", holder(held_by), number(held_by, "/fencing_token")?))
        }
        EventKind::LeaseReleased => Some(format!("token {}", number(p, "/fencing_token")?)),
        EventKind::FenceRejected => {
            let mut line = format!("token {}", number(p, "/token")?);
            if let Some(at) = text(p, "/at") {
                line.push_str(&format!(" at {at}"));
            }
            if let Some(error) = text(p, "/error") {
                line.push_str(&format!(": {error}"));
            }
            Some(line)
        }
        EventKind::ResourcePressure => {
            let pressure = p.get("pressure")?;
            let mut line = format!("{}, {} lanes", text(pressure, "/level")?, number(pressure, "/lanes")?);
            let reasons: Vec<&str> = pressure
                .get("reasons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !reasons.is_empty() {
                line.push_str(&format!(": {}", reasons.join("; ")));
            }
            Some(line)
        }
        EventKind::RemoteHealthChanged => Some(format!(
            "{}: circuit {} -> {}, {} consecutive failures",
            text(p, "/remote")?,
            text(p, "/from")?,
            text(p, "/to")?,
            number(p, "/consecutive_failures").unwrap_or_else(|| "?".to_owned())
        )),
        EventKind::RemotePromoted => Some(format!("{} -> {}", text(p, "/from")?, text(p, "/to")?)),
        EventKind::GateChecked => Some(format!(
            "{}: {}",
            if p.get("ok")?.as_bool()? { "ok" } else { "FAILED" },
            text(p, "/detail").unwrap_or("")
        )),
        EventKind::IntegrityFailed => {
            let failed: Vec<&str> = p
                .get("checks")?
                .as_array()?
                .iter()
                .filter(|c| c.get("ok").and_then(Value::as_bool) == Some(false))
                .filter_map(|c| text(c, "/name"))
                .collect();
            Some(format!("the integrity gate failed: {}", failed.join(", ")))
        }
        EventKind::RollbackPlanned => Some(format!(
            "{} can go back to {} from {}",
            text(p, "/branch")?,
            short(text(p, "/previous_head")?),
            short(text(p, "/target")?)
        )),
        EventKind::CanaryRun => Some(format!("at {}: {}", short(text(p, "/target")?), command_run(p)?)),
        EventKind::HealthChecked => Some(format!("at {}: {}", short(text(p, "/head")?), command_run(p)?)),
        EventKind::TickStarted => {
            let due: Vec<&str> = p.get("due")?.as_array()?.iter().filter_map(|d| d.as_str()).collect();
            Some(format!(
                "{}: {} jobs configured, due: {}",
                text(p, "/trigger")?,
                number(p, "/configured")?,
                if due.is_empty() { "none".to_owned() } else { due.join(", ") }
            ))
        }
        EventKind::TickSkipped => Some(match p.get("holder").filter(|h| h.is_object()) {
            Some(h) => format!(
                "another tick holds the workspace (pid {} on {}, started {})",
                number(h, "/pid")?,
                text(h, "/host")?,
                text(h, "/started_at")?
            ),
            None => "another tick holds the workspace".to_owned(),
        }),
        EventKind::TickFinished => {
            Some(format!("{} jobs run, exit code {}", number(p, "/ran")?, number(p, "/exit_code")?))
        }
        EventKind::JobStarted => {
            Some(format!("{} ({}, {})", text(p, "/kind")?, text(p, "/schedule")?, text(p, "/trigger")?))
        }
        EventKind::JobFinished => Some(format!("{}: {}", text(p, "/outcome")?, text(p, "/detail")?)),
        EventKind::RolledBack => {
            let moved = format!("{} -> {}", short(text(p, "/from")?), short(text(p, "/to")?));
            Some(match p.get("ok")?.as_bool()? {
                true => format!("{moved}: ok"),
                false => format!("{moved}: FAILED: {}", text(p, "/error").unwrap_or("")),
            })
        }
        EventKind::ApplyRecovered => {
            let line = format!(
                "apply of tick {} found {}: {}",
                text(p, "/killed_tick")?,
                text(p, "/found")?,
                text(p, "/action")?
            );
            Some(match p.get("ok")?.as_bool()? {
                true => line,
                false => format!("{line}: FAILED: {}", text(p, "/error").unwrap_or("")),
            })
        }
    });
    // Kinds from a newer hermes, or payloads of another shape: the payload.
    known.unwrap_or_else(|| compact(p, 120))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, payload: Value) -> HermesEvent {
        HermesEvent {
            v: 1,
            seq: 41,
            time: "2026-11-25T06:58:58.000Z".to_owned(),
            tick: "20261125T065858000Z-1".to_owned(),
            kind: kind.to_owned(),
            subject: "core".to_owned(),
            payload,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn lines() {
        let upgraded = event(
            "repo-upgraded",
            json!({"recommendation": "upgrade", "reason_code": "behind-upstream", "reason": "fast-forwarded 2 commits",
                   "head_before": "34e09617b215", "head_after": "98618d915c1e"}),
        );
        assert_eq!(
            line(&upgraded),
            "   41 2026-11-25T06:58:58.000Z 20261125T065858000Z-1 repo-upgraded         core \
             upgrade behind-upstream: fast-forwarded 2 commits (34e09617 -> 98618d91)"
        );
        let gate = event("gate-checked", json!({"name": "ledger-chain", "ok": false, "detail": "broken"}));
        assert_eq!(summary(&gate), "FAILED: broken");
        // A kind from a newer hermes, and a known kind of another shape.
        assert_eq!(summary(&event("repo-teleported", json!({"to": "mars"}))), r#"{"to":"mars"}"#);
        assert_eq!(summary(&event("repo-probed", json!({"facts": 1}))), r#"{"facts":1}"#);
        let long = event("x", json!({ "text": "a".repeat(300) }));
        assert!(summary(&long).ends_with('…'));
    }
}
