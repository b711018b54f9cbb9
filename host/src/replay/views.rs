//! `hermes replay` (without `--plugin`): rebuild every view the ledger
//! determines and compare it with the file in `state/`.
//!
//! One pass over the ledger verifies the chain and folds it. The cycle
//! writes its views at known points, so each derivable view is rebuilt as
//! of that point:
//!
//! | file | derivation | rebuilt from |
//! |------|------------|--------------|
//! | `runtime_intelligence.json` | fold | every outcome event up to the last `cycle-finished` |
//! | `rollback_intelligence.json` | fold | every `rollback-planned` / `rolled-back` up to the last `cycle-finished` |
//! | `auto_safe_upgrade_state.json` | fold | every outcome event up to the last `cycle-finished` |
//! | `auto_safe_upgrade_state_history.jsonl` | fold | one line per `cycle-finished` |
//! | `global_orchestration_plan.json` | snapshot | the last `plan-made` |
//! | `auto_safe_upgrade_summary.json` | partial | the last finished cycle's `cycle-started`, `plan-made` and outcome events (`started_at` is not recorded) |
//! | `runtime_resource_telemetry.json`, `runtime_resource_state.json` | snapshot | the last finished cycle's `resource-pressure` |
//! | `control_plane_integrity.json` | snapshot | the last cycle's `gate-checked` events |
//! | `live_runtime_control_plane.json` | partial | the last `cycle-finished` (`pid`, `started_at` are not recorded) |
//!
//! Each is written with the production writer ([`StateStore::write`] and the
//! views' own `write` functions) into a scratch directory, read back and
//! compared with `state/`, ignoring `written_at` (and the fields listed as
//! not recorded). The other views are not derivable from the ledger; for
//! them only the envelope is checked: it parses, names its view, and its
//! `ledger_head` is an event of the ledger with the same hash.
//!
//! Every `plan-made` payload's `decision_hash` is recomputed from its
//! decisions ([`crate::cycle::plan::decision_hash`]), and every outcome and
//! `cycle-finished` event of the cycle must carry the plan's hash.

use super::{ReplayError, ledger_len, open_state, scan_ledger};
use crate::cycle::finalize::{self, HistoryLine, UpgradeState};
use crate::cycle::gate::{Check, GateReport};
use crate::cycle::outcome::{Outcome, RepoOutcome};
use crate::cycle::plan::{Plan, decision_hash};
use crate::cycle::rollback::RollbackIntelligence;
use crate::cycle::{CycleReport, Mode, RepoReport};
use crate::intelligence::RuntimeIntelligence;
use crate::ledger::{EventKind, GENESIS_HASH, HermesEvent, LEDGER_FILE, LedgerError};
use crate::state::{FORMAT_VERSION, LedgerHead, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Differences listed per file at most; the rest are counted.
pub const MAX_LISTED_PER_FILE: usize = 100;

/// How a view relates to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Derivation {
    /// A fold of the ledger's events: rebuilt and compared whole.
    Fold,
    /// A snapshot of one cycle that the ledger records whole: rebuilt and
    /// compared whole.
    Snapshot,
    /// A snapshot of which the ledger records only some fields: those are
    /// compared, the others are listed in `ignored`.
    Partial,
    /// Not derivable from the ledger: only its envelope and ledger position
    /// are checked.
    NotDerivable,
    /// A file this build does not know: not compared.
    Unknown,
}

/// What the comparison of one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The rebuilt view and the file agree.
    Agrees,
    /// They differ (see the differences).
    Differs,
    /// The ledger says the view was written, but the file is missing.
    Missing,
    /// The file exists, but nothing in the ledger writes it.
    Unexpected,
    /// The file is not JSON (or a history line is not).
    Unreadable,
    /// Neither the ledger nor `state/` has it.
    Absent,
    /// Not derivable; its envelope and ledger position agree with the ledger.
    PositionAgrees,
    /// Not compared (unknown file, or the ledger does not verify).
    NotCompared,
}

/// The kind of a [`Difference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The file is missing.
    Missing,
    /// The file exists though the ledger writes no such view.
    Unexpected,
    /// The file (or a line of it) is not JSON.
    Unreadable,
    /// A value differs, or is present on one side only.
    Differs,
    /// A recorded decision hash does not match.
    DecisionHash,
}

/// One difference between what the ledger implies and what is on disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// File name in `state/` (the ledger for decision hashes).
    pub file: String,
    /// JSON path in the file (`""`: the whole file). In the history, `[i]` is
    /// line i (from 0); in the ledger, `seq N: payload...`.
    pub path: String,
    pub problem: Problem,
    /// What the ledger implies; absent when the value should not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// What was found; absent when the value does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Value>,
}

/// The verdict on one file of `state/`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewReport {
    pub file: String,
    pub derivation: Derivation,
    pub status: Status,
    /// The ledger position the rebuilt view reflects (derivable views).
    pub rebuilt_head: Option<LedgerHead>,
    /// The ledger position the file records.
    pub found_head: Option<LedgerHead>,
    /// Number of differences (all of them, also those not listed).
    pub differences: usize,
    /// JSON paths not compared because the ledger does not record them.
    pub ignored: Vec<String>,
    pub note: String,
}

/// The chain check.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub ok: bool,
    /// Verified events.
    pub events: u64,
    /// The last verified event.
    pub head: LedgerHead,
    /// Events folded: every verified one, never one past a break.
    pub replayed_through: u64,
    /// A final line without its newline (not replayed).
    pub torn_tail: Option<Value>,
    /// Where the chain breaks: `{line, first_bad_seq, problem}`.
    pub broken: Option<Value>,
}

/// The decision-hash checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanChecks {
    /// `plan-made` events whose hash was recomputed.
    pub plans: u64,
    /// Of those, how many agree with their recorded `decision_hash`.
    pub plans_agree: u64,
    /// Outcome and `cycle-finished` events whose `decision_hash` was compared
    /// with their cycle's plan.
    pub references: u64,
}

/// The result of `hermes replay`.
#[derive(Debug, Serialize)]
pub struct StateReplay {
    /// The chain verifies and there is no difference.
    pub ok: bool,
    pub ledger: LedgerReport,
    pub decision_hashes: PlanChecks,
    /// Every known view, then any other file of `state/`.
    pub views: Vec<ViewReport>,
    /// Every difference (at most [`MAX_LISTED_PER_FILE`] per file).
    pub differences: Vec<Difference>,
    /// Things that do not fail the replay but may explain a difference.
    pub warnings: Vec<String>,
    /// Where the rebuilt views were written (only when asked to keep them).
    pub rebuilt_in: Option<PathBuf>,
    /// The chain error, when the ledger does not verify.
    #[serde(skip)]
    pub chain_error: Option<LedgerError>,
}

/// The views of `state/` this replay knows, in report order.
fn known_views() -> Vec<(ViewName, Derivation, &'static str)> {
    use Derivation::{Fold, NotDerivable, Partial, Snapshot};
    vec![
        (ViewName::RuntimeIntelligence, Fold, "outcome events up to the last finished cycle"),
        (ViewName::RollbackIntelligence, Fold, "rollback-planned and rolled-back events up to the last finished cycle"),
        (ViewName::UpgradeState, Fold, "outcome events up to the last finished cycle"),
        (ViewName::UpgradeStateHistory, Fold, "one line per cycle-finished event"),
        (ViewName::GlobalOrchestrationPlan, Snapshot, "the last plan-made event"),
        (
            ViewName::UpgradeSummary,
            Partial,
            "the last finished cycle: cycle-started, plan-made, outcome and cycle-finished events",
        ),
        (ViewName::RuntimeResourceTelemetry, Snapshot, "the last finished cycle's resource-pressure event"),
        (ViewName::RuntimeResourceState, Snapshot, "the last finished cycle's resource-pressure event"),
        (ViewName::ControlPlaneIntegrity, Snapshot, "the last cycle's gate-checked events"),
        (ViewName::LiveRuntimeControlPlane, Partial, "the last cycle-finished event"),
        (
            ViewName::RemoteHealth,
            NotDerivable,
            "read-modify-written from each fetch's result and latency; the ledger records the fetches \
             (repo-probed) and circuit changes (remote-health-changed), but replay does not recompute the health book",
        ),
        (
            ViewName::RemoteFederationState,
            NotDerivable,
            "read-modify-written selections; the ledger records only changes (remote-promoted)",
        ),
        (
            ViewName::FederationTopologyState,
            NotDerivable,
            "built from the policy and the repositories' git remote URLs, which the ledger does not record",
        ),
        (
            ViewName::RuntimeTopologyGraph,
            NotDerivable,
            "built from the policy, the git remote URLs and the lane assignment, which the ledger does not record",
        ),
        (
            ViewName::CoordinationLeases,
            NotDerivable,
            "the lease table is shared: it also holds other holders' leases and the fencing high-water mark; \
             lease events record only this workspace's cycles' changes",
        ),
        (
            ViewName::AgentCoordinationState,
            NotDerivable,
            "the last cycle's reservation table (clearances, grants), recorded only in part by lease and outcome events",
        ),
        (ViewName::RuntimeConsensusState, NotDerivable, "a snapshot of the lease table (see coordination_leases.json)"),
    ]
}

/// Fields of a partial view that the ledger does not record.
fn ignored_paths(view: ViewName) -> &'static [&'static str] {
    match view {
        ViewName::UpgradeSummary => &["data.started_at"],
        ViewName::LiveRuntimeControlPlane => &["data.pid", "data.started_at"],
        _ => &[],
    }
}

/// A file of `state/` as read.
#[derive(Debug, Clone)]
enum Found {
    Missing,
    Unreadable(String),
    Json(Value),
    /// A `.jsonl` history: each line parsed.
    Lines(Vec<Result<Value, String>>),
}

impl Found {
    fn read(store: &StateStore, name: &str, history: bool) -> Result<Self, ReplayError> {
        let bytes = match store.dir().read(name) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(source) => {
                return Err(crate::state::StateError::Read { path: store.path_of(name), source }.into());
            }
        };
        if history {
            let Ok(text) = String::from_utf8(bytes) else { return Ok(Found::Unreadable("not UTF-8".into())) };
            let lines = text.lines().map(|l| serde_json::from_str::<Value>(l).map_err(|e| e.to_string())).collect();
            return Ok(Found::Lines(lines));
        }
        Ok(match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => Found::Json(value),
            Err(e) => Found::Unreadable(e.to_string()),
        })
    }

    /// The `ledger_head` the file records (the last line's, for a history).
    fn head(&self) -> Option<LedgerHead> {
        let value = match self {
            Found::Json(v) => v,
            Found::Lines(lines) => lines.last()?.as_ref().ok()?,
            _ => return None,
        };
        serde_json::from_value(value.get("ledger_head")?.clone()).ok()
    }
}

/// What one finished cycle leaves in the end-of-cycle views.
#[derive(Debug, Clone)]
struct Finished {
    head: LedgerHead,
    time: String,
    tick: String,
    intelligence: RuntimeIntelligence,
    rollbacks: RollbackIntelligence,
    state: UpgradeState,
    summary: Option<CycleReport>,
    resource: Option<Value>,
    counts: Value,
}

/// The cycle being read.
#[derive(Debug, Clone, Default)]
struct OpenCycle {
    tick: String,
    started_seq: u64,
    started_time: String,
    policy_digest: String,
    resource: Option<Value>,
    plan: Option<Plan>,
    outcomes: BTreeMap<String, RepoOutcome>,
}

/// The last integrity gate: the position before its first check, and the checks.
#[derive(Debug, Clone)]
struct GateSeen {
    tick: String,
    head: LedgerHead,
    time: String,
    checks: Vec<Check>,
}

/// The fold of the ledger, event by event.
#[derive(Debug, Default)]
struct Fold {
    prev: LedgerHead,
    prev_time: String,
    intelligence: RuntimeIntelligence,
    rollbacks: RollbackIntelligence,
    state: UpgradeState,
    open: Option<OpenCycle>,
    /// Whether the open cycle has finished.
    open_finished: bool,
    finished: Option<Finished>,
    history: Vec<(LedgerHead, String, HistoryLine)>,
    last_plan: Option<(LedgerHead, String, Plan)>,
    gate: Option<GateSeen>,
    checks: PlanChecks,
    ledger_diffs: Vec<Difference>,
    /// Hashes of the events at the positions the files record.
    wanted: BTreeMap<u64, Option<String>>,
}

impl Fold {
    fn new(wanted: impl IntoIterator<Item = u64>) -> Self {
        Self {
            prev: LedgerHead { seq: 0, hash: GENESIS_HASH.to_owned() },
            wanted: wanted.into_iter().map(|seq| (seq, None)).collect(),
            ..Self::default()
        }
    }

    fn ledger_diff(&mut self, event: &HermesEvent, path: &str, problem: Problem, expected: Value, found: Value) {
        self.ledger_diffs.push(Difference {
            file: LEDGER_FILE.to_owned(),
            path: format!("seq {}: {path}", event.seq),
            problem,
            expected: Some(expected),
            found: Some(found),
        });
    }

    /// The plan hash of `event`'s cycle, if that cycle's plan was read.
    fn plan_hash(&self, event: &HermesEvent) -> Option<String> {
        let open = self.open.as_ref().filter(|o| o.tick == event.tick)?;
        open.plan.as_ref().map(|p| p.decision_hash.clone())
    }

    /// Checks the `decision_hash` an outcome or `cycle-finished` event carries.
    fn check_reference(&mut self, event: &HermesEvent) {
        let Some(expected) = self.plan_hash(event) else { return };
        self.checks.references += 1;
        let found = event.payload.get("decision_hash").cloned().unwrap_or(Value::Null);
        if found != Value::String(expected.clone()) {
            self.ledger_diff(event, "payload.decision_hash", Problem::DecisionHash, json!(expected), found);
        }
    }

    fn apply(&mut self, event: &HermesEvent) {
        if let Some(slot) = self.wanted.get_mut(&event.seq) {
            *slot = Some(event.hash.clone());
        }
        self.intelligence.apply(event);
        self.rollbacks.apply(event);
        self.state.apply(event);
        let head = LedgerHead { seq: event.seq, hash: event.hash.clone() };
        let in_open = self.open.as_ref().is_some_and(|o| o.tick == event.tick);
        match EventKind::parse(&event.kind) {
            Some(EventKind::CycleStarted) => {
                self.open = Some(OpenCycle {
                    tick: event.tick.clone(),
                    started_seq: event.seq,
                    started_time: event.time.clone(),
                    policy_digest: event.payload.get("policy_digest").and_then(Value::as_str).unwrap_or("").to_owned(),
                    ..OpenCycle::default()
                });
                self.open_finished = false;
            }
            Some(EventKind::ResourcePressure) if in_open => {
                if let Some(open) = &mut self.open {
                    open.resource = Some(event.payload.clone());
                }
            }
            Some(EventKind::PlanMade) => self.plan_made(event, &head, in_open),
            Some(EventKind::GateChecked) => {
                let check = Check::deserialize(&event.payload).unwrap_or_else(|_| Check {
                    name: event.subject.clone(),
                    ok: false,
                    detail: "unreadable gate-checked payload".into(),
                });
                match &mut self.gate {
                    Some(gate) if gate.tick == event.tick => gate.checks.push(check),
                    _ => {
                        self.gate = Some(GateSeen {
                            tick: event.tick.clone(),
                            head: self.prev.clone(),
                            time: self.prev_time.clone(),
                            checks: vec![check],
                        });
                    }
                }
            }
            Some(EventKind::CycleFinished) => {
                self.check_reference(event);
                self.cycle_finished(event, &head, in_open);
            }
            _ if Outcome::from_event_kind(&event.kind).is_some() => {
                self.check_reference(event);
                if let (true, Ok(outcome), Some(open)) =
                    (in_open, RepoOutcome::deserialize(&event.payload), &mut self.open)
                {
                    open.outcomes.insert(outcome.repo.clone(), outcome);
                }
            }
            _ => {}
        }
        self.prev = head;
        self.prev_time = event.time.clone();
    }

    fn plan_made(&mut self, event: &HermesEvent, head: &LedgerHead, in_open: bool) {
        let plan = match Plan::deserialize(&event.payload) {
            Ok(plan) => plan,
            Err(e) => {
                let found = json!(format!("unreadable plan: {e}"));
                self.ledger_diff(event, "payload", Problem::Unreadable, json!("a plan"), found);
                return;
            }
        };
        self.checks.plans += 1;
        let recomputed = decision_hash(&plan.decisions);
        if recomputed == plan.decision_hash {
            self.checks.plans_agree += 1;
        } else {
            let found = json!(plan.decision_hash);
            self.ledger_diff(event, "payload.decision_hash", Problem::DecisionHash, json!(recomputed), found);
        }
        if in_open && let Some(open) = &mut self.open {
            open.plan = Some(plan.clone());
        }
        self.last_plan = Some((head.clone(), event.time.clone(), plan));
    }

    fn cycle_finished(&mut self, event: &HermesEvent, head: &LedgerHead, in_open: bool) {
        let open = if in_open { self.open.clone() } else { None };
        let summary = open.as_ref().and_then(|open| summary_of(open, event, head));
        let counts = event.payload.get("counts").cloned().unwrap_or_else(|| json!({}));
        let line = HistoryLine {
            tick: event.tick.clone(),
            decision_hash: event.payload.get("decision_hash").and_then(Value::as_str).unwrap_or("").to_owned(),
            counts: serde_json::from_value(counts.clone()).unwrap_or_default(),
        };
        self.history.push((head.clone(), event.time.clone(), line));
        self.finished = Some(Finished {
            head: head.clone(),
            time: event.time.clone(),
            tick: event.tick.clone(),
            intelligence: self.intelligence.clone(),
            rollbacks: self.rollbacks.clone(),
            state: self.state.clone(),
            summary,
            resource: open.and_then(|o| o.resource),
            counts,
        });
        self.open_finished = true;
    }
}

/// The summary (`CycleReport`) a finished cycle wrote, from its events.
fn summary_of(open: &OpenCycle, finished: &HermesEvent, head: &LedgerHead) -> Option<CycleReport> {
    let plan = open.plan.as_ref()?;
    let repos = plan
        .decisions
        .iter()
        .map(|d| {
            let outcome = open.outcomes.get(&d.repo);
            RepoReport {
                repo: d.repo.clone(),
                depth: d.depth,
                recommendation: d.recommendation,
                outcome: outcome.map(|o| o.outcome),
                reason_code: outcome.map_or_else(|| d.reason_code.clone(), |o| o.reason_code.clone()),
                reason: outcome.map_or_else(|| d.reason.clone(), |o| o.reason.clone()),
                head_before: d.head.clone(),
                head_after: outcome.and_then(|o| o.head_after.clone()),
                target: d.target.clone(),
                ahead: d.ahead,
                behind: d.behind,
            }
        })
        .collect();
    Some(CycleReport {
        tick: finished.tick.clone(),
        mode: Mode::Execute,
        // Not recorded; the cycle-started event's time stands in (equal under HERMES_NOW).
        started_at: open.started_time.clone(),
        policy_digest: open.policy_digest.clone(),
        decision_hash: plan.decision_hash.clone(),
        ledger_head: Some(head.clone()),
        repos,
        skipped: None,
    })
}

/// Where the rebuilt views go: a temporary directory, or `out`.
enum Scratch {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Temp(dir) => dir.path(),
            Scratch::Kept(path) => path,
        }
    }
}

/// Prepares `out` for the rebuilt views; refuses `state/` and anything in
/// it (checked before anything is created).
fn prepare_out(out: &Path, state_dir: &Path) -> Result<PathBuf, ReplayError> {
    let bad =
        |detail: String| ReplayError::Scratch(format!("cannot use {} for the rebuilt views: {detail}", out.display()));
    let absolute = std::path::absolute(out).map_err(|e| bad(e.to_string()))?;
    // The longest part that exists, resolved; the rest are plain names.
    let mut existing = absolute.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) if name != ".." => rest.push(name.to_owned()),
            _ => return Err(bad("name an existing directory or a path of plain names under one".into())),
        }
        existing.pop();
    }
    let mut resolved = existing.canonicalize().map_err(|e| bad(e.to_string()))?;
    resolved.extend(rest.iter().rev());
    let state = state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_owned());
    if resolved.starts_with(&state) {
        return Err(ReplayError::Scratch(format!(
            "{} is inside the state directory {}; replay never writes there",
            out.display(),
            state.display()
        )));
    }
    std::fs::create_dir_all(&resolved).map_err(|e| bad(e.to_string()))?;
    Ok(resolved)
}

/// Rebuilds and compares every view of the workspace whose state directory
/// is `state_dir`. With `out`, the rebuilt views are kept there (it must not
/// be in `state_dir`); otherwise they go to a temporary directory.
pub fn replay_state(state_dir: &Path, out: Option<&Path>) -> Result<StateReplay, ReplayError> {
    let store = open_state(state_dir)?;
    let scratch = match out {
        Some(out) => Scratch::Kept(prepare_out(out, state_dir)?),
        None => Scratch::Temp(
            tempfile::Builder::new()
                .prefix("hermes-replay-")
                .tempdir()
                .map_err(|e| ReplayError::Scratch(format!("cannot create a temporary directory: {e}")))?,
        ),
    };
    let rebuilt_store = StateStore::open(scratch.path())?;
    // A kept directory may hold an earlier replay's views: start afresh.
    for (view, _, _) in known_views() {
        match rebuilt_store.dir().remove_file(view.file_name()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ReplayError::Scratch(format!("cannot replace {}: {e}", view.file_name()))),
        }
    }
    let ledger_before = ledger_len(&store);

    // The files as they are now, then the ledger.
    let views = known_views();
    let mut found: BTreeMap<&'static str, Found> = BTreeMap::new();
    for (view, _, _) in &views {
        found.insert(view.file_name(), Found::read(&store, view.file_name(), view.is_history())?);
    }
    let mut fold = Fold::new(found.values().filter_map(Found::head).map(|h| h.seq));
    let scanned = scan_ledger(&store, |event| fold.apply(event));

    let mut report = StateReplay {
        ok: false,
        ledger: LedgerReport {
            ok: true,
            events: fold.prev.seq,
            head: fold.prev.clone(),
            replayed_through: fold.prev.seq,
            torn_tail: None,
            broken: None,
        },
        decision_hashes: fold.checks.clone(),
        views: Vec::new(),
        differences: std::mem::take(&mut fold.ledger_diffs),
        warnings: Vec::new(),
        rebuilt_in: matches!(scratch, Scratch::Kept(_)).then(|| scratch.path().to_owned()),
        chain_error: None,
    };
    match scanned {
        Ok(scan) => {
            if let Some(torn) = &scan.torn_tail {
                report.ledger.torn_tail = Some(json!({ "offset": torn.offset, "length": torn.bytes.len() }));
                report.warnings.push(format!(
                    "a torn final line ({} bytes at offset {}) is not replayed; the next cycle repairs it",
                    torn.bytes.len(),
                    torn.offset
                ));
            }
        }
        Err(error) => {
            if let LedgerError::Broken { line, first_bad_seq, problem, .. } = &error {
                report.ledger.broken =
                    Some(json!({ "line": line, "first_bad_seq": first_bad_seq, "problem": problem }));
            }
            report.ledger.ok = false;
            report.chain_error = Some(error);
            for (view, derivation, _) in &views {
                report.views.push(ViewReport {
                    file: view.file_name().to_owned(),
                    derivation: *derivation,
                    status: Status::NotCompared,
                    rebuilt_head: None,
                    found_head: found[view.file_name()].head(),
                    differences: 0,
                    ignored: Vec::new(),
                    note: format!("not compared: the ledger does not verify past sequence number {}", fold.prev.seq),
                });
            }
            return Ok(report);
        }
    }
    if fold.open.is_some() && !fold.open_finished {
        let open = fold.open.as_ref().map(|o| (o.tick.clone(), o.started_seq)).unwrap_or_default();
        report.warnings.push(format!(
            "the ledger ends inside cycle {} (from sequence number {}), which did not finish (stopped, or still \
             running): views it wrote before stopping may differ; the next cycle rewrites them",
            open.0, open.1
        ));
    }

    let rebuilt = write_rebuilt(&rebuilt_store, &fold)?;
    for (view, derivation, note) in &views {
        let name = view.file_name();
        let found = &found[name];
        let mut diffs = Vec::new();
        let (status, rebuilt_head, ignored) = match derivation {
            Derivation::NotDerivable => (check_position(name, *view, found, &fold, &mut diffs), None, Vec::new()),
            _ if view.is_history() => {
                let lines = read_rebuilt_lines(&rebuilt_store, name)?;
                let head = fold.history.last().map(|(h, _, _)| h.clone());
                (compare_history(name, lines.as_deref(), found, &mut diffs), head, Vec::new())
            }
            _ => {
                let ignored = ignored_paths(*view);
                let value = match rebuilt.get(name) {
                    Some(_) => Some(read_rebuilt(&rebuilt_store, name)?),
                    None => None,
                };
                let head = rebuilt.get(name).cloned();
                let status = compare_view(name, value.as_ref(), found, ignored, &mut diffs);
                (status, head, ignored.iter().map(|s| (*s).to_owned()).collect())
            }
        };
        let note = match status {
            Status::Missing => format!("missing; rebuilt from {note}"),
            Status::Unexpected => "present, but the ledger records nothing that writes it".to_owned(),
            _ if *derivation == Derivation::NotDerivable => format!("not derivable: {note}"),
            _ => format!("rebuilt from {note}"),
        };
        let count = diffs.len();
        if count > MAX_LISTED_PER_FILE {
            report.warnings.push(format!("{name}: {count} differences, the first {MAX_LISTED_PER_FILE} listed"));
            diffs.truncate(MAX_LISTED_PER_FILE);
        }
        report.differences.extend(diffs);
        report.views.push(ViewReport {
            file: name.to_owned(),
            derivation: *derivation,
            status,
            rebuilt_head,
            found_head: found.head(),
            differences: count,
            ignored,
            note,
        });
    }
    report.views.extend(other_files(&store, &views)?);
    if ledger_len(&store) != ledger_before {
        report.warnings.push(
            "the ledger grew while replaying (a cycle was running): differences may come from it; run hermes replay again"
                .to_owned(),
        );
    }
    report.ok = report.differences.is_empty();
    Ok(report)
}

/// Writes every derivable view into `store` with the production writers;
/// returns the ledger head of each file written.
fn write_rebuilt(store: &StateStore, fold: &Fold) -> Result<BTreeMap<&'static str, LedgerHead>, ReplayError> {
    let mut written = BTreeMap::new();
    let mut mark = |view: ViewName, head: &LedgerHead| {
        written.insert(view.file_name(), head.clone());
    };
    // The history's earlier lines; finalize::write_views appends the last one.
    let earlier = fold.history.len().saturating_sub(1);
    let lines = fold.history[..earlier].iter().map(|(head, time, line)| (time.as_str(), head, line));
    store.append_history_all(ViewName::UpgradeStateHistory, lines)?;
    if let Some(f) = &fold.finished {
        f.intelligence.write(store, &f.time, &f.head)?;
        mark(ViewName::RuntimeIntelligence, &f.head);
        f.rollbacks.write(store, &f.time, &f.head)?;
        mark(ViewName::RollbackIntelligence, &f.head);
        match &f.summary {
            Some(summary) => {
                finalize::write_views(store, &f.state, summary, &f.time, &f.head)?;
                mark(ViewName::UpgradeSummary, &f.head);
            }
            None => {
                // No plan in the finished cycle: the state and its history line only.
                store.write(ViewName::UpgradeState, &f.time, &f.head, &f.state)?;
                if let Some((head, time, line)) = fold.history.last() {
                    store.append_history(ViewName::UpgradeStateHistory, time, head, line)?;
                }
            }
        }
        mark(ViewName::UpgradeState, &f.head);
        if let Some(resource) = &f.resource {
            let telemetry = resource.get("telemetry").cloned().unwrap_or(Value::Null);
            let pressure = resource.get("pressure").cloned().unwrap_or(Value::Null);
            store.write(ViewName::RuntimeResourceTelemetry, &f.time, &f.head, &telemetry)?;
            mark(ViewName::RuntimeResourceTelemetry, &f.head);
            store.write(ViewName::RuntimeResourceState, &f.time, &f.head, &pressure)?;
            mark(ViewName::RuntimeResourceState, &f.head);
        }
        // As the cycle writes it when it ends; pid and started_at are not recorded.
        let live = json!({
            "phase": "idle",
            "lanes": 0,
            "leases": {},
            "counts": f.counts,
            "tick": f.tick,
            "pid": null,
            "started_at": f.summary.as_ref().map(|s| s.started_at.clone()),
        });
        store.write(ViewName::LiveRuntimeControlPlane, &f.time, &f.head, &live)?;
        mark(ViewName::LiveRuntimeControlPlane, &f.head);
    }
    if let Some((head, time, plan)) = &fold.last_plan {
        store.write(ViewName::GlobalOrchestrationPlan, time, head, plan)?;
        mark(ViewName::GlobalOrchestrationPlan, head);
    }
    if let Some(gate) = &fold.gate {
        let report =
            GateReport { tick: gate.tick.clone(), ok: gate.checks.iter().all(|c| c.ok), checks: gate.checks.clone() };
        store.write(ViewName::ControlPlaneIntegrity, &gate.time, &gate.head, &report)?;
        mark(ViewName::ControlPlaneIntegrity, &gate.head);
    }
    Ok(written)
}

fn read_rebuilt(store: &StateStore, name: &str) -> Result<Value, ReplayError> {
    match Found::read(store, name, false)? {
        Found::Json(value) => Ok(value),
        _ => Err(ReplayError::Scratch(format!("cannot read back the rebuilt {name}"))),
    }
}

fn read_rebuilt_lines(store: &StateStore, name: &str) -> Result<Option<Vec<Value>>, ReplayError> {
    match Found::read(store, name, true)? {
        Found::Missing => Ok(None),
        Found::Lines(lines) => lines
            .into_iter()
            .map(|l| l.map_err(|e| ReplayError::Scratch(format!("cannot read back the rebuilt {name}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(ReplayError::Scratch(format!("cannot read back the rebuilt {name}"))),
    }
}

/// Compares a rebuilt view (`None`: the ledger writes none) with the file.
fn compare_view(
    file: &str,
    rebuilt: Option<&Value>,
    found: &Found,
    ignored: &[&str],
    diffs: &mut Vec<Difference>,
) -> Status {
    let whole = |problem: Problem, expected: Option<Value>, found: Option<Value>| Difference {
        file: file.to_owned(),
        path: String::new(),
        problem,
        expected,
        found,
    };
    match (rebuilt, found) {
        (None, Found::Missing) => Status::Absent,
        (Some(_), Found::Missing) => {
            diffs.push(whole(Problem::Missing, Some(json!("the file")), None));
            Status::Missing
        }
        (_, Found::Unreadable(detail)) => {
            diffs.push(whole(Problem::Unreadable, Some(json!("a JSON view")), Some(json!(detail))));
            Status::Unreadable
        }
        (None, _) => {
            diffs.push(whole(Problem::Unexpected, None, Some(json!("the file"))));
            Status::Unexpected
        }
        (Some(rebuilt), Found::Json(value)) => {
            let (mut expected, mut actual) = (rebuilt.clone(), value.clone());
            for path in std::iter::once(&"written_at").chain(ignored) {
                remove_path(&mut expected, path);
                remove_path(&mut actual, path);
            }
            let before = diffs.len();
            diff_values(file, "", &expected, &actual, diffs);
            if diffs.len() == before { Status::Agrees } else { Status::Differs }
        }
        (Some(_), Found::Lines(_)) => Status::NotCompared,
    }
}

/// Compares the history line by line (`written_at` ignored).
fn compare_history(file: &str, rebuilt: Option<&[Value]>, found: &Found, diffs: &mut Vec<Difference>) -> Status {
    let lines = match (rebuilt, found) {
        (None, Found::Missing) => return Status::Absent,
        (Some(_), Found::Missing) => {
            diffs.push(Difference {
                file: file.to_owned(),
                path: String::new(),
                problem: Problem::Missing,
                expected: Some(json!("the file")),
                found: None,
            });
            return Status::Missing;
        }
        (_, Found::Unreadable(detail)) => {
            diffs.push(Difference {
                file: file.to_owned(),
                path: String::new(),
                problem: Problem::Unreadable,
                expected: Some(json!("JSON lines")),
                found: Some(json!(detail)),
            });
            return Status::Unreadable;
        }
        (_, Found::Lines(lines)) => lines,
        (_, Found::Json(_)) => return Status::NotCompared,
    };
    let expected = rebuilt.unwrap_or(&[]);
    let before = diffs.len();
    let mut unreadable = false;
    for i in 0..expected.len().max(lines.len()) {
        let path = format!("[{i}]");
        let strip = |v: &Value| {
            let mut v = v.clone();
            remove_path(&mut v, "written_at");
            v
        };
        match (expected.get(i), lines.get(i)) {
            (Some(e), Some(Ok(f))) => diff_values(file, &path, &strip(e), &strip(f), diffs),
            (e, Some(Err(detail))) => {
                unreadable = true;
                diffs.push(Difference {
                    file: file.to_owned(),
                    path,
                    problem: Problem::Unreadable,
                    expected: e.map(strip),
                    found: Some(json!(detail)),
                });
            }
            (e, f) => diffs.push(Difference {
                file: file.to_owned(),
                path,
                problem: Problem::Differs,
                expected: e.map(strip),
                found: f.and_then(|f| f.as_ref().ok()).map(strip),
            }),
        }
    }
    match (diffs.len() == before, unreadable) {
        (true, _) => Status::Agrees,
        (false, true) => Status::Unreadable,
        (false, false) => Status::Differs,
    }
}

/// For a view that is not derivable: the envelope parses, names its view,
/// is not from a newer Hermes, and its `ledger_head` is a ledger event.
fn check_position(file: &str, view: ViewName, found: &Found, fold: &Fold, diffs: &mut Vec<Difference>) -> Status {
    let value = match found {
        Found::Missing => return Status::Absent,
        Found::Unreadable(detail) => {
            diffs.push(Difference {
                file: file.to_owned(),
                path: String::new(),
                problem: Problem::Unreadable,
                expected: Some(json!("a JSON view")),
                found: Some(json!(detail)),
            });
            return Status::Unreadable;
        }
        Found::Json(value) => value,
        Found::Lines(_) => return Status::NotCompared,
    };
    let before = diffs.len();
    let mut differ = |path: &str, expected: Value, found: Option<&Value>| {
        diffs.push(Difference {
            file: file.to_owned(),
            path: path.to_owned(),
            problem: Problem::Differs,
            expected: Some(expected),
            found: found.cloned(),
        });
    };
    let version = value.get("format_version").and_then(Value::as_u64);
    if version.is_none_or(|v| v > u64::from(FORMAT_VERSION)) {
        differ("format_version", json!(FORMAT_VERSION), value.get("format_version"));
    }
    if value.get("view").and_then(Value::as_str) != Some(view.stem()) {
        differ("view", json!(view.stem()), value.get("view"));
    }
    match found.head() {
        None => differ("ledger_head", json!("{seq, hash}"), value.get("ledger_head")),
        Some(head) if head.seq == 0 => {
            if head.hash != GENESIS_HASH {
                differ("ledger_head.hash", json!(GENESIS_HASH), Some(&json!(head.hash)));
            }
        }
        Some(head) if head.seq > fold.prev.seq => {
            let expected = json!(format!("at most {} (the ledger's last event)", fold.prev.seq));
            differ("ledger_head.seq", expected, Some(&json!(head.seq)));
        }
        Some(head) => {
            if let Some(Some(hash)) = fold.wanted.get(&head.seq)
                && hash != &head.hash
            {
                differ("ledger_head.hash", json!(hash), Some(&json!(head.hash)));
            }
        }
    }
    if diffs.len() == before { Status::PositionAgrees } else { Status::Differs }
}

/// Files of `state/` that are neither the ledger nor a known view.
fn other_files(
    store: &StateStore,
    views: &[(ViewName, Derivation, &'static str)],
) -> Result<Vec<ViewReport>, ReplayError> {
    let known: BTreeSet<&str> = views.iter().map(|(v, _, _)| v.file_name()).collect();
    let entries =
        store.dir().entries().map_err(|source| crate::state::StateError::Read { path: store.path_of(""), source })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != LEDGER_FILE && !known.contains(n.as_str()))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let note = if name.contains(".corrupt-") {
                "a corrupt view kept aside by a cycle; not compared".to_owned()
            } else {
                "not a view this replay knows; not compared".to_owned()
            };
            ViewReport {
                file: name,
                derivation: Derivation::Unknown,
                status: Status::NotCompared,
                rebuilt_head: None,
                found_head: None,
                differences: 0,
                ignored: Vec::new(),
                note,
            }
        })
        .collect())
}

/// Removes the member at dotted `path` (plain keys only), if present.
fn remove_path(value: &mut Value, path: &str) {
    let mut parts = path.split('.').peekable();
    let mut current = value;
    while let Some(part) = parts.next() {
        let Value::Object(map) = current else { return };
        if parts.peek().is_none() {
            map.remove(part);
            return;
        }
        let Some(next) = map.get_mut(part) else { return };
        current = next;
    }
}

/// `path` extended by object member `key`: `a.b`, or `a["x.y"]` for a key
/// that is not a plain word.
fn member_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", Value::String(key.to_owned())),
    }
}

/// Appends a [`Difference`] for every leaf where `expected` and `found` differ.
fn diff_values(file: &str, path: &str, expected: &Value, found: &Value, out: &mut Vec<Difference>) {
    let mut push = |path: String, expected: Option<&Value>, found: Option<&Value>| {
        out.push(Difference {
            file: file.to_owned(),
            path,
            problem: Problem::Differs,
            expected: expected.cloned(),
            found: found.cloned(),
        });
    };
    match (expected, found) {
        (Value::Object(e), Value::Object(f)) => {
            let keys: BTreeSet<&String> = e.keys().chain(f.keys()).collect();
            for key in keys {
                let p = member_path(path, key);
                match (e.get(key), f.get(key)) {
                    (Some(a), Some(b)) => diff_values(file, &p, a, b, out),
                    (a, b) => out.push(Difference {
                        file: file.to_owned(),
                        path: p,
                        problem: Problem::Differs,
                        expected: a.cloned(),
                        found: b.cloned(),
                    }),
                }
            }
        }
        (Value::Array(e), Value::Array(f)) => {
            for i in 0..e.len().max(f.len()) {
                let p = format!("{path}[{i}]");
                match (e.get(i), f.get(i)) {
                    (Some(a), Some(b)) => diff_values(file, &p, a, b, out),
                    (a, b) => out.push(Difference {
                        file: file.to_owned(),
                        path: p,
                        problem: Problem::Differs,
                        expected: a.cloned(),
                        found: b.cloned(),
                    }),
                }
            }
        }
        _ if expected == found => {}
        _ => push(path.to_owned(), Some(expected), Some(found)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_their_paths() {
        let expected = json!({ "data": { "repos": { "app": { "attempts": 1, "hours": [0, 1] }, "a.b": 1 } } });
        let found = json!({ "data": { "repos": { "app": { "attempts": 2, "hours": [0] }, "extra": true } } });
        let mut out = Vec::new();
        diff_values("f.json", "", &expected, &found, &mut out);
        let paths: Vec<(&str, Option<Value>, Option<Value>)> =
            out.iter().map(|d| (d.path.as_str(), d.expected.clone(), d.found.clone())).collect();
        assert_eq!(
            paths,
            vec![
                ("data.repos[\"a.b\"]", Some(json!(1)), None),
                ("data.repos.app.attempts", Some(json!(1)), Some(json!(2))),
                ("data.repos.app.hours[1]", Some(json!(1)), None),
                ("data.repos.extra", None, Some(json!(true))),
            ]
        );
    }

    #[test]
    fn written_at_and_ignored_paths_are_not_compared() {
        let rebuilt = json!({ "written_at": "a", "data": { "pid": null, "tick": "t" } });
        let found = Found::Json(json!({ "written_at": "b", "data": { "pid": 42, "tick": "t" } }));
        let mut diffs = Vec::new();
        assert_eq!(compare_view("v.json", Some(&rebuilt), &found, &["data.pid"], &mut diffs), Status::Agrees);
        assert!(diffs.is_empty());
        assert_eq!(compare_view("v.json", Some(&rebuilt), &found, &[], &mut diffs), Status::Differs);
        assert_eq!(diffs[0].path, "data.pid");
    }
}
