//! `hermes replay --plugin KIND=FILE.wasm`: recorded history against
//! another component.
//!
//! Every `plugin-called` event of KIND in the selected cycles is run again
//! against the component, with the production engine and the policy's
//! limits for KIND, through [`call::invoke`] (the call path of the cycle and
//! of `hermes plugin test`): a fresh instance per call, the recorded input,
//! the clocks at the input's `logical-time`, randomness seeded from the
//! input's digest. Probes get no worktree (as `plugin test` without
//! `--worktree`): the files the recorded call saw are not recorded.
//!
//! Each cycle with a `plan-made` event is then planned again
//! ([`crate::cycle::plan::plan`]) from its recorded assessments (the
//! `repo-probed` events), with the new outputs in place of the recorded ones
//! and everything else as recorded:
//!
//! - **risk-scorer**: the new output is the repository's score (or, if the
//!   call fails, its plugin failure).
//! - **repo-probe**: new signals feed the scorer, so a repository whose
//!   signals change and that was scored is scored again with the recorded
//!   scorer input, new signals in place, against the *recorded* scorer
//!   component (the built-in one or the policy's file, whichever has the
//!   recorded digest). A failing probe means the scorer is not called.
//! - **federation-selector**: the new ranking is walked the way the probe
//!   falls over, using what the recorded probe found: a remote it fetched
//!   from (or that failed transiently) gives the same result again. A
//!   ranking that would fetch from a remote the recorded cycle never
//!   fetched from cannot be replayed without fetching, so that repository
//!   (and the cycle's new plan) is reported as undetermined.
//!
//! The recorded assessments are first planned as they are: if that does
//! not give the recorded decisions (the planner changed since), the cycle is
//! flagged (`baseline_matches: false`) so that a difference is not blamed on
//! the plugin. Nothing is written anywhere but the plugin compile cache.

use super::{ReplayError, open_state, scan_ledger};
use crate::canonical::sha256_hex;
use crate::cycle::assess::{Assessment, PluginFailure, Score};
use crate::cycle::fetch::FetchFailure;
use crate::cycle::plan::{self, Decision, Plan, Recommendation};
use crate::cycle::probe::{FetchAttempt, ProbeProblem, RepoProbe};
use crate::ledger::{EventKind, HermesEvent};
use crate::plugin::PluginKind;
use crate::plugin::builtin::builtin;
use crate::plugin::call::{self, CallOutcome, CallRecord, CallSpec};
use crate::plugin::engine::{DEFAULT_DEADLINE, DEFAULT_MEMORY_CAP, LoadedPlugin, PluginEngine};
use crate::policy::{Policy, RepoPolicy};
use crate::state::LedgerHead;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Cycles to replay: numbers (from 1, in ledger order) from `first` to
/// `last`, both included; `None`: to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CycleRange {
    pub first: u64,
    pub last: Option<u64>,
}

impl CycleRange {
    pub fn contains(&self, n: u64) -> bool {
        n >= self.first && self.last.is_none_or(|last| n <= last)
    }
}

impl FromStr for CycleRange {
    type Err = String;

    /// `7`, `3..5` (3, 4 and 5), `3..=5` (the same), `3..`, `..4`.
    fn from_str(text: &str) -> Result<Self, String> {
        let number = |s: &str| -> Result<u64, String> {
            let n: u64 = s.trim().parse().map_err(|_| format!("{s:?} is not a cycle number"))?;
            if n == 0 { Err("cycles are numbered from 1".to_owned()) } else { Ok(n) }
        };
        let range = match text.split_once("..") {
            None => {
                let n = number(text)?;
                CycleRange { first: n, last: Some(n) }
            }
            Some((from, to)) => {
                let to = to.strip_prefix('=').unwrap_or(to);
                let first = if from.trim().is_empty() { 1 } else { number(from)? };
                let last = if to.trim().is_empty() { None } else { Some(number(to)?) };
                CycleRange { first, last }
            }
        };
        if range.last.is_some_and(|last| last < range.first) {
            return Err(format!("empty range {text:?}: the first cycle comes after the last"));
        }
        Ok(range)
    }
}

impl std::fmt::Display for CycleRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last {
            Some(last) if last == self.first => write!(f, "{last}"),
            Some(last) => write!(f, "{}..{last}", self.first),
            None => write!(f, "{}..", self.first),
        }
    }
}

/// What to replay.
pub struct PluginReplayOptions<'a> {
    pub kind: PluginKind,
    /// The component file.
    pub component: &'a Path,
    pub cycles: Option<CycleRange>,
    /// The workspace policy, for the limits (`None`: the defaults).
    pub policy: Option<&'a Policy>,
    /// `HERMES_HOME`, where the policy's plugin paths are relative to.
    pub home: &'a Path,
}

/// The component replayed against.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    pub path: String,
    pub digest: String,
    pub plugin: String,
    pub version: String,
    pub kind: PluginKind,
    pub wit_version: String,
}

/// Limits each call ran under.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub fuel: u64,
    pub memory_mib: u64,
    pub deadline_ms: u64,
    /// `policy` or `defaults` (no readable policy).
    pub from: &'static str,
}

/// One side of a call, as recorded or as replayed.
#[derive(Debug, Clone, Serialize)]
pub struct CallSide {
    pub plugin: String,
    pub version: String,
    pub digest: String,
    pub outcome: CallOutcome,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub fuel_used: u64,
    pub fuel_limit: u64,
}

impl From<&CallRecord> for CallSide {
    fn from(r: &CallRecord) -> Self {
        Self {
            plugin: r.plugin.clone(),
            version: r.version.clone(),
            digest: r.digest.clone(),
            outcome: r.outcome,
            error: r.error.clone(),
            output: r.output.clone(),
            fuel_used: r.fuel_used,
            fuel_limit: r.fuel_limit,
        }
    }
}

/// One recorded call run again.
#[derive(Debug, Clone, Serialize)]
pub struct CallReplay {
    pub cycle: u64,
    pub tick: String,
    /// Sequence number of the `plugin-called` event.
    pub seq: u64,
    pub repo: String,
    pub input_digest: String,
    pub recorded: CallSide,
    pub replayed: CallSide,
    /// Outcome or output differ.
    pub output_changed: bool,
    /// The recorded call succeeded and the replayed one does not.
    pub now_fails: bool,
    /// The replayed call used more fuel than the recorded call was allowed.
    pub over_recorded_fuel_limit: bool,
}

/// Old and new value of a decision field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

/// Old and new risk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskChange {
    pub old: u32,
    pub new: u32,
    pub delta: i64,
}

/// A decision that would change.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionChange {
    pub repo: String,
    pub recommendation: Change<Recommendation>,
    pub risk: RiskChange,
    pub reason_code: Change<String>,
    pub remote: Change<String>,
    /// Position in the plan (from 0).
    pub position: Change<usize>,
    /// The new decision's reason.
    pub reason: String,
}

/// A repository whose new decision cannot be told without doing more than
/// replaying recorded calls.
#[derive(Debug, Clone, Serialize)]
pub struct Undetermined {
    pub repo: String,
    pub why: String,
}

/// One recorded cycle, planned again.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReplay {
    /// Number of the cycle (from 1, in ledger order).
    pub cycle: u64,
    pub tick: String,
    /// `plan-made` of the cycle, if it got that far.
    pub plan_seq: Option<u64>,
    pub recorded_hash: Option<String>,
    /// `None` when no plan was recorded or a decision is undetermined.
    pub new_hash: Option<String>,
    pub hash_changed: bool,
    /// The same decisions in another order.
    pub order_changed: bool,
    /// Whether the recorded assessments plan to the recorded decisions.
    pub baseline_matches: Option<bool>,
    /// Calls of the kind re-run in this cycle.
    pub calls: usize,
    pub changes: Vec<DecisionChange>,
    pub undetermined: Vec<Undetermined>,
    pub notes: Vec<String>,
}

/// Totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub cycles: usize,
    pub cycles_changed: usize,
    pub decisions_changed: usize,
    pub undetermined: usize,
    pub calls: usize,
    pub outputs_changed: usize,
    pub now_fail: usize,
    pub over_recorded_fuel_limit: usize,
}

/// The result of `hermes replay --plugin`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReplay {
    pub kind: PluginKind,
    pub component: ComponentInfo,
    pub limits: Limits,
    pub ledger_head: LedgerHead,
    /// Cycles (`cycle-started` events) in the ledger.
    pub cycles_in_ledger: u64,
    pub range: Option<String>,
    pub cycles: Vec<CycleReplay>,
    pub calls: Vec<CallReplay>,
    pub totals: Totals,
}

/// A `plugin-called` event.
#[derive(Debug, Clone)]
struct RecordedCall {
    seq: u64,
    repo: String,
    record: CallRecord,
}

/// What the ledger holds about one cycle.
#[derive(Debug, Clone, Default)]
struct RecordedCycle {
    number: u64,
    tick: String,
    calls: Vec<RecordedCall>,
    probed: BTreeMap<String, Value>,
    plan: Option<(u64, Plan)>,
    finished: bool,
    notes: Vec<String>,
}

/// Collects the cycles of `range` while the ledger is scanned.
#[derive(Default)]
struct Collector {
    range: Option<CycleRange>,
    count: u64,
    cycles: Vec<RecordedCycle>,
    /// Whether the last cycle started is being collected.
    collecting: bool,
}

impl Collector {
    fn apply(&mut self, event: &HermesEvent) {
        if event.kind == EventKind::CycleStarted.as_str() {
            self.count += 1;
            self.collecting = self.range.is_none_or(|r| r.contains(self.count));
            if self.collecting {
                self.cycles.push(RecordedCycle {
                    number: self.count,
                    tick: event.tick.clone(),
                    ..RecordedCycle::default()
                });
            }
            return;
        }
        if !self.collecting {
            return;
        }
        let Some(cycle) = self.cycles.last_mut().filter(|c| c.tick == event.tick) else { return };
        match EventKind::parse(&event.kind) {
            Some(EventKind::PluginCalled) => match CallRecord::deserialize(&event.payload) {
                Ok(record) => cycle.calls.push(RecordedCall { seq: event.seq, repo: event.subject.clone(), record }),
                Err(e) => cycle.notes.push(format!("seq {}: unreadable plugin-called payload: {e}", event.seq)),
            },
            Some(EventKind::RepoProbed) => {
                cycle.probed.insert(event.subject.clone(), event.payload.clone());
            }
            Some(EventKind::PlanMade) => match Plan::deserialize(&event.payload) {
                Ok(plan) => cycle.plan = Some((event.seq, plan)),
                Err(e) => cycle.notes.push(format!("seq {}: unreadable plan: {e}", event.seq)),
            },
            Some(EventKind::CycleFinished) => cycle.finished = true,
            _ => {}
        }
    }
}

/// Everything a cycle's replay needs.
struct Replayer<'a> {
    engine: &'a PluginEngine,
    plugin: LoadedPlugin,
    kind: PluginKind,
    limits: Limits,
    policy: Option<&'a Policy>,
    home: &'a Path,
    /// The recorded scorer components, by digest (`None`: not available).
    scorers: BTreeMap<String, Option<LoadedPlugin>>,
}

/// Replays the recorded calls of `options.kind` of the workspace whose state
/// directory is `state_dir` against `options.component`.
pub fn replay_plugin(
    state_dir: &Path,
    engine: &PluginEngine,
    options: &PluginReplayOptions<'_>,
) -> Result<PluginReplay, ReplayError> {
    let store = open_state(state_dir)?;
    let shown = options.component.display().to_string();
    let bytes = std::fs::read(options.component)
        .map_err(|e| ReplayError::Component(format!("cannot read component {shown}: {e}")))?;
    let plugin = engine.load(&bytes, &shown).map_err(|e| ReplayError::Component(e.to_string()))?;
    if plugin.kind != options.kind {
        return Err(ReplayError::Component(format!(
            "{shown} implements {}, not {}",
            plugin.kind.as_str(),
            options.kind.as_str()
        )));
    }
    let settings = options.policy.and_then(|p| p.plugins.get(options.kind.as_str()));
    let limits = Limits {
        fuel: settings.and_then(|s| s.fuel).unwrap_or_else(|| options.kind.default_fuel()),
        memory_mib: settings.and_then(|s| s.memory_mib).map_or((DEFAULT_MEMORY_CAP >> 20) as u64, u64::from),
        deadline_ms: settings
            .and_then(|s| s.deadline_ms)
            .unwrap_or(u64::try_from(DEFAULT_DEADLINE.as_millis()).unwrap_or(5000)),
        from: if options.policy.is_some() { "policy" } else { "defaults" },
    };
    let mut collector = Collector { range: options.cycles, ..Collector::default() };
    let scan = scan_ledger(&store, |event| collector.apply(event))?;

    let component = ComponentInfo {
        path: shown,
        digest: plugin.digest.clone(),
        plugin: plugin.metadata.name.clone(),
        version: plugin.metadata.version.clone(),
        kind: plugin.kind,
        wit_version: plugin.wit_version.clone(),
    };
    let mut replayer = Replayer {
        engine,
        plugin,
        kind: options.kind,
        limits: limits.clone(),
        policy: options.policy,
        home: options.home,
        scorers: BTreeMap::new(),
    };
    let mut cycles = Vec::new();
    let mut calls = Vec::new();
    for recorded in &collector.cycles {
        let (cycle, cycle_calls) = replayer.cycle(recorded);
        cycles.push(cycle);
        calls.extend(cycle_calls);
    }
    let totals = Totals {
        cycles: cycles.len(),
        cycles_changed: cycles.iter().filter(|c| c.hash_changed || !c.changes.is_empty()).count(),
        decisions_changed: cycles.iter().map(|c| c.changes.len()).sum(),
        undetermined: cycles.iter().map(|c| c.undetermined.len()).sum(),
        calls: calls.len(),
        outputs_changed: calls.iter().filter(|c| c.output_changed).count(),
        now_fail: calls.iter().filter(|c| c.now_fails).count(),
        over_recorded_fuel_limit: calls.iter().filter(|c| c.over_recorded_fuel_limit).count(),
    };
    Ok(PluginReplay {
        kind: options.kind,
        component,
        limits,
        ledger_head: scan.head,
        cycles_in_ledger: collector.count,
        range: options.cycles.map(|r| r.to_string()),
        cycles,
        calls,
        totals,
    })
}

impl Replayer<'_> {
    fn spec(&self, input: &Value, fuel: u64) -> CallSpec<'static> {
        CallSpec {
            fuel,
            memory_cap: usize::try_from(self.limits.memory_mib).unwrap_or(64) << 20,
            deadline: Duration::from_millis(self.limits.deadline_ms),
            // As recorded: the cycle's clock is the input's logical time.
            logical_time: input.get("logical-time").and_then(Value::as_u64).unwrap_or(0),
            worktree: None,
        }
    }

    /// Runs `input` against the component being replayed.
    fn invoke(&self, input: &Value) -> CallRecord {
        call::invoke(self.engine, &self.plugin, input.clone(), &self.spec(input, self.limits.fuel))
    }

    /// The recorded scorer with `digest`, when this host has it: the built-in
    /// one, or the policy's file with that digest.
    fn scorer(&mut self, digest: &str) -> Option<&LoadedPlugin> {
        if !self.scorers.contains_key(digest) {
            let mut found = None;
            let b = builtin(PluginKind::RiskScorer);
            if sha256_hex(b.bytes) == digest {
                found = self.engine.load(b.bytes, b.name).ok();
            } else if let Some(path) =
                self.policy.and_then(|p| p.plugins.get("risk-scorer")).and_then(|s| s.path.as_ref())
            {
                let file = self.home.join(path);
                if let Ok(bytes) = std::fs::read(&file)
                    && sha256_hex(&bytes) == digest
                {
                    found = self.engine.load(&bytes, &file.display().to_string()).ok();
                }
            }
            self.scorers.insert(digest.to_owned(), found);
        }
        self.scorers.get(digest).and_then(Option::as_ref)
    }

    fn cycle(&mut self, recorded: &RecordedCycle) -> (CycleReplay, Vec<CallReplay>) {
        let mut report = CycleReplay {
            cycle: recorded.number,
            tick: recorded.tick.clone(),
            plan_seq: recorded.plan.as_ref().map(|(seq, _)| *seq),
            recorded_hash: recorded.plan.as_ref().map(|(_, p)| p.decision_hash.clone()),
            new_hash: None,
            hash_changed: false,
            order_changed: false,
            baseline_matches: None,
            calls: 0,
            changes: Vec::new(),
            undetermined: Vec::new(),
            notes: recorded.notes.clone(),
        };
        if !recorded.finished {
            report.notes.push("the cycle did not finish".to_owned());
        }
        // Re-run every call of the kind, in ledger order.
        let mut replays = Vec::new();
        let mut new_records: BTreeMap<&str, CallRecord> = BTreeMap::new();
        for call in recorded.calls.iter().filter(|c| c.record.kind == self.kind) {
            let new = self.invoke(&call.record.input);
            if new.input_digest != call.record.input_digest {
                report.notes.push(format!(
                    "seq {}: the input's digest is {} now, {} when recorded (canonical JSON changed?)",
                    call.seq, new.input_digest, call.record.input_digest
                ));
            }
            let old = &call.record;
            replays.push(CallReplay {
                cycle: recorded.number,
                tick: recorded.tick.clone(),
                seq: call.seq,
                repo: call.repo.clone(),
                input_digest: old.input_digest.clone(),
                recorded: CallSide::from(old),
                replayed: CallSide::from(&new),
                output_changed: old.outcome != new.outcome || old.output != new.output,
                now_fails: old.outcome == CallOutcome::Ok && new.outcome != CallOutcome::Ok,
                over_recorded_fuel_limit: new.fuel_used > old.fuel_limit,
            });
            new_records.insert(call.repo.as_str(), new);
        }
        report.calls = replays.len();
        let Some((_, plan)) = &recorded.plan else {
            report.notes.push("no plan recorded (the cycle stopped before planning): no decision to compare".into());
            return (report, replays);
        };

        // The recorded assessments, planned as they are.
        let policy = match policy_of(plan) {
            Ok(policy) => policy,
            Err(e) => {
                report.notes.push(format!("cannot rebuild the plan's dependency graph: {e}"));
                return (report, replays);
            }
        };
        let mut baseline = Vec::new();
        for decision in &plan.decisions {
            match recorded.probed.get(&decision.repo).map(assessment_of) {
                Some(Ok(a)) => baseline.push(a),
                Some(Err(e)) => report.undetermined.push(Undetermined {
                    repo: decision.repo.clone(),
                    why: format!("its repo-probed event cannot be read: {e}"),
                }),
                None => report
                    .undetermined
                    .push(Undetermined { repo: decision.repo.clone(), why: "no repo-probed event recorded".into() }),
            }
        }
        if !report.undetermined.is_empty() {
            return (report, replays);
        }
        let replanned = plan::plan(&policy, &baseline, &plan.tick, plan.plugin_digests.clone());
        let baseline_ok = replanned.decisions == plan.decisions;
        report.baseline_matches = Some(baseline_ok);
        if !baseline_ok {
            let repo = plan
                .decisions
                .iter()
                .zip(&replanned.decisions)
                .find(|(a, b)| a != b)
                .map_or_else(|| "the number of decisions".to_owned(), |(a, _)| a.repo.clone());
            report.notes.push(format!(
                "the recorded assessments do not plan to the recorded decisions (first difference: {repo}); the \
                 planner changed since, so changes below are not all the plugin's"
            ));
        }

        // The new assessments.
        let mut assessments = Vec::new();
        for assessment in baseline {
            let repo = assessment.probe.repo.clone();
            let recorded_calls: Vec<&CallRecord> =
                recorded.calls.iter().filter(|c| c.repo == repo).map(|c| &c.record).collect();
            match self.reassess(assessment, &recorded_calls, new_records.get(repo.as_str())) {
                Ok(a) => assessments.push(a),
                Err(why) => report.undetermined.push(Undetermined { repo, why }),
            }
        }
        if !report.undetermined.is_empty() {
            report.notes.push("the new plan is undetermined: see `undetermined`".into());
            return (report, replays);
        }
        let mut digests = plan.plugin_digests.clone();
        digests.insert(self.kind, self.plugin.digest.clone());
        let new_plan = plan::plan(&policy, &assessments, &plan.tick, digests);
        report.hash_changed = new_plan.decision_hash != plan.decision_hash;
        report.new_hash = Some(new_plan.decision_hash.clone());
        report.changes = changes(&plan.decisions, &new_plan.decisions);
        report.order_changed = report.changes.is_empty()
            && plan.decisions.iter().map(|d| &d.repo).ne(new_plan.decisions.iter().map(|d| &d.repo));
        (report, replays)
    }

    /// The assessment of one repository with the new call in place of the
    /// recorded one (`new`: the replayed call of the kind, if there was one).
    fn reassess(
        &mut self,
        mut a: Assessment,
        recorded: &[&CallRecord],
        new: Option<&CallRecord>,
    ) -> Result<Assessment, String> {
        let Some(new) = new else { return Ok(a) };
        let old = recorded.iter().find(|c| c.kind == self.kind).copied();
        let same = old.is_some_and(|old| old.outcome == new.outcome && old.output == new.output);
        match self.kind {
            PluginKind::RiskScorer => {
                apply_score(&mut a, new);
                Ok(a)
            }
            PluginKind::RepoProbe => {
                if same {
                    if new.outcome != CallOutcome::Ok {
                        a.plugin_failure = Some(PluginFailure::of(new));
                    }
                    return Ok(a);
                }
                a.score = None;
                a.plugin_failure = None;
                a.signals = Vec::new();
                match new.output.clone() {
                    Some(Value::Array(signals)) => a.signals = signals,
                    _ => {
                        a.plugin_failure = Some(PluginFailure::of(new));
                        return Ok(a);
                    }
                }
                let could_upgrade = a.probe.behind > 0 && a.probe.ahead == 0;
                if !could_upgrade {
                    return Ok(a);
                }
                let scorer_call = recorded.iter().find(|c| c.kind == PluginKind::RiskScorer).ok_or_else(|| {
                    "its signals change and the recorded cycle did not score it (its probe failed), so there is no \
                     recorded scorer input to score the new signals with"
                        .to_owned()
                })?;
                let mut input = scorer_call.input.clone();
                input["signals"] = Value::Array(a.signals.clone());
                let spec = self.spec(&input, scorer_call.fuel_limit);
                let engine = self.engine;
                let scorer = self.scorer(&scorer_call.digest).ok_or_else(|| {
                    format!(
                        "its signals change, so it must be scored again, but the recorded scorer ({} {}, sha256 {}) \
                         is neither the built-in one nor the policy's file",
                        scorer_call.plugin, scorer_call.version, scorer_call.digest
                    )
                })?;
                let rescored = call::invoke(engine, scorer, input, &spec);
                apply_score(&mut a, &rescored);
                Ok(a)
            }
            PluginKind::FederationSelector => {
                if same {
                    if new.outcome != CallOutcome::Ok {
                        a.plugin_failure = Some(PluginFailure::of(new));
                    }
                    return Ok(a);
                }
                let old = old.ok_or("no recorded selector call")?;
                let candidates = candidates_of(&new.input);
                let primary = primary_of(&new.input);
                let old_failed = old.outcome != CallOutcome::Ok;
                let new_order = new.output.as_ref().map_or_else(|| vec![primary.clone()], |o| ranking(o, &candidates));
                let (probe, reached_recorded) = walk(&a.probe, &new_order)?;
                a.probe = probe;
                if new.output.is_none() {
                    // The selector failed: no probe or scorer plugin is called.
                    a.plugin_failure = Some(PluginFailure::of(new));
                    a.signals = Vec::new();
                    a.score = None;
                    return Ok(a);
                }
                if !reached_recorded {
                    // Ends in a transient fetch failure: no plugin after the probe runs.
                    a.plugin_failure = None;
                    a.signals = Vec::new();
                    a.score = None;
                    return Ok(a);
                }
                if old_failed {
                    if a.probe.problem.is_some() || a.probe.head.is_none() {
                        a.plugin_failure = None;
                        return Ok(a);
                    }
                    return Err("its recorded selector call failed, so the probe and scorer plugins were not called; \
                                with the new selection they would be, and their outputs are not recorded"
                        .to_owned());
                }
                // The same fetch result as recorded: the probe and scorer saw the same facts.
                Ok(a)
            }
        }
    }
}

/// The score (or plugin failure) a scorer call gives, as the cycle applies it.
fn apply_score(a: &mut Assessment, record: &CallRecord) {
    match record.output.as_ref().map(Score::deserialize) {
        Some(Ok(score)) => {
            a.score = Some(score);
            a.plugin_failure = None;
        }
        _ => {
            a.score = None;
            a.plugin_failure = Some(PluginFailure::of(record));
        }
    }
}

/// The plugin failure a failed call records (as the cycle's assessment does).
/// The recorded assessment of a repository (its `repo-probed` payload).
fn assessment_of(payload: &Value) -> Result<Assessment, String> {
    let field = |name: &str| payload.get(name).cloned().unwrap_or(Value::Null);
    let probe: RepoProbe = serde_json::from_value(field("probe")).map_err(|e| format!("probe: {e}"))?;
    let signals = match field("signals") {
        Value::Array(signals) => signals,
        _ => Vec::new(),
    };
    let score: Option<Score> = serde_json::from_value(field("score")).map_err(|e| format!("score: {e}"))?;
    let plugin_failure: Option<PluginFailure> =
        serde_json::from_value(field("plugin_failure")).map_err(|e| format!("plugin_failure: {e}"))?;
    Ok(Assessment { remote_urls: BTreeMap::new(), probe, signals, score, plugin_failure, calls: Vec::new() })
}

/// A policy with the plan's repositories and dependencies, in plan order:
/// all the planner reads besides the assessments.
fn policy_of(plan: &Plan) -> Result<Policy, String> {
    let repos: Vec<Value> =
        plan.decisions.iter().map(|d| json!({ "name": d.repo, "path": "", "depends_on": d.depends_on })).collect();
    let repos: Vec<RepoPolicy> = serde_json::from_value(Value::Array(repos)).map_err(|e| e.to_string())?;
    Ok(Policy { repos, ..Policy::starter() })
}

/// The candidate remote names of a selector input.
fn candidates_of(input: &Value) -> Vec<String> {
    input
        .get("candidates")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The remote fetched from when the selector fails: the primary candidate,
/// else the first, else `origin` (as `RepoPolicy::primary_remote`).
fn primary_of(input: &Value) -> String {
    let candidates = input.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
    let name = |c: &Value| c.get("name").and_then(Value::as_str).map(str::to_owned);
    candidates
        .iter()
        .find(|c| c.get("role").and_then(Value::as_str) == Some("primary"))
        .and_then(name)
        .or_else(|| candidates.first().and_then(name))
        .unwrap_or_else(|| "origin".to_owned())
}

/// The fetch order a selector output gives: `chosen`, then the rest of the
/// ranking that are candidates (as the cycle reads it).
fn ranking(output: &Value, candidates: &[String]) -> Vec<String> {
    let chosen = output.get("chosen").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut order: Vec<String> = output
        .get("ranking")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    order.retain(|name| name != &chosen && candidates.contains(name));
    order.insert(0, chosen);
    order
}

/// The probe a fetch along `order` gives, from what the recorded probe
/// found: each remote it fetched from gives the same result again. Returns
/// the probe and whether it ends on the recorded final result (same facts);
/// an error when `order` reaches a remote the recorded probe never tried.
fn walk(recorded: &RepoProbe, order: &[String]) -> Result<(RepoProbe, bool), String> {
    let remote_dependent = matches!(
        recorded.problem,
        None | Some(
            ProbeProblem::MissingRemote { .. } | ProbeProblem::MissingRef { .. } | ProbeProblem::FetchFailed(_)
        )
    );
    if !remote_dependent {
        // Found before any remote matters: the same on the first remote.
        let mut probe = recorded.clone();
        probe.remote = order.first().cloned().unwrap_or_default();
        probe.failed_over = Vec::new();
        return Ok((probe, true));
    }
    let transient: BTreeMap<&str, &FetchFailure> =
        recorded.failed_over.iter().map(|f| (f.remote.as_str(), &f.failure)).collect();
    let mut failed_over = Vec::new();
    for (i, remote) in order.iter().enumerate() {
        let last = i + 1 == order.len();
        if remote == &recorded.remote {
            match &recorded.problem {
                Some(ProbeProblem::FetchFailed(f)) if f.transient && !last => {
                    failed_over.push(FetchAttempt { remote: remote.clone(), failure: f.clone() });
                }
                _ => {
                    let mut probe = recorded.clone();
                    probe.failed_over = failed_over;
                    return Ok((probe, true));
                }
            }
        } else if let Some(failure) = transient.get(remote.as_str()) {
            if !last {
                failed_over.push(FetchAttempt { remote: remote.clone(), failure: (*failure).clone() });
                continue;
            }
            let mut probe = recorded.clone();
            probe.remote = remote.clone();
            probe.failed_over = failed_over;
            probe.problem = Some(ProbeProblem::FetchFailed((*failure).clone()));
            probe.upstream_head = None;
            probe.ahead = 0;
            probe.behind = 0;
            probe.incoming = Vec::new();
            probe.fetch_ms = None;
            return Ok((probe, false));
        } else {
            return Err(format!(
                "the new selection fetches from {remote:?}, which the recorded cycle did not fetch from; what \
                 that fetch would find is not recorded (replay never fetches)"
            ));
        }
    }
    Err("the new selection names no remote".to_owned())
}

/// The decisions whose hashed fields change, in new plan order.
fn changes(old: &[Decision], new: &[Decision]) -> Vec<DecisionChange> {
    let key = |d: &Decision| {
        (
            d.depth,
            d.recommendation,
            d.priority,
            d.risk,
            d.reason_code.clone(),
            d.remote.clone(),
            d.branch.clone(),
            d.head.clone(),
            d.target.clone(),
            d.ahead,
            d.behind,
            d.depends_on.clone(),
        )
    };
    new.iter()
        .enumerate()
        .filter_map(|(new_pos, n)| {
            let (old_pos, o) = old.iter().enumerate().find(|(_, o)| o.repo == n.repo)?;
            (key(o) != key(n)).then(|| DecisionChange {
                repo: n.repo.clone(),
                recommendation: Change { old: o.recommendation, new: n.recommendation },
                risk: RiskChange { old: o.risk, new: n.risk, delta: i64::from(n.risk) - i64::from(o.risk) },
                reason_code: Change { old: o.reason_code.clone(), new: n.reason_code.clone() },
                remote: Change { old: o.remote.clone(), new: n.remote.clone() },
                position: Change { old: old_pos, new: new_pos },
                reason: n.reason.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::fetch::FetchFailureClass;

    #[test]
    fn ranges_parse_inclusively() {
        let r = |s: &str| s.parse::<CycleRange>();
        assert_eq!(r("7"), Ok(CycleRange { first: 7, last: Some(7) }));
        assert_eq!(r("3..5"), Ok(CycleRange { first: 3, last: Some(5) }));
        assert_eq!(r("3..=5"), Ok(CycleRange { first: 3, last: Some(5) }));
        assert_eq!(r("..4"), Ok(CycleRange { first: 1, last: Some(4) }));
        assert_eq!(r("2.."), Ok(CycleRange { first: 2, last: None }));
        assert!(r("5..3").is_err());
        assert!(r("0").is_err());
        assert!(r("x").is_err());
        let range = r("3..5").unwrap();
        assert!(!range.contains(2) && range.contains(3) && range.contains(5) && !range.contains(6));
        assert_eq!(range.to_string(), "3..5");
    }

    fn probe(remote: &str, failed_over: &[&str], problem: Option<ProbeProblem>) -> RepoProbe {
        let network = FetchFailure { class: FetchFailureClass::Network, transient: true, message: "refused".into() };
        RepoProbe {
            repo: "app".into(),
            remote: remote.into(),
            failed_over: failed_over
                .iter()
                .map(|r| FetchAttempt { remote: (*r).to_owned(), failure: network.clone() })
                .collect(),
            branch: Some("main".into()),
            upstream_branch: Some("main".into()),
            head: Some("a".into()),
            upstream_head: Some("b".into()),
            ahead: 0,
            behind: 2,
            dirty_paths: 0,
            untracked_paths: 0,
            operation: None,
            problem,
            incoming: Vec::new(),
            fetch_ms: Some(3),
        }
    }

    #[test]
    fn a_new_ranking_is_walked_over_what_the_recorded_probe_found() {
        let recorded = probe("mirror", &["origin"], None);
        let order = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        // Straight to the remote that answered: same facts, no fail-over.
        let (p, same) = walk(&recorded, &order(&["mirror", "origin"])).unwrap();
        assert!(same && p.failed_over.is_empty() && p.remote == "mirror" && p.behind == 2);
        // Only the remote that failed: a transient fetch failure.
        let (p, same) = walk(&recorded, &order(&["origin"])).unwrap();
        assert!(!same && p.remote == "origin" && p.behind == 0 && p.upstream_head.is_none());
        assert!(matches!(p.problem, Some(ProbeProblem::FetchFailed(_))));
        // A remote never fetched from: unknown.
        assert!(walk(&recorded, &order(&["cache", "mirror"])).is_err());
    }
}
