//! The two-phase upgrade cycle.
//!
//! ```text
//! PHASE 1 (no mutation)  probe every repo -> plan
//! PHASE 2                execute | defer | block in plan order -> finalize
//! ```
//!
//! Every step appends to the ledger before it counts as done; the state
//! views are written last, from the ledger's head. [`Mode::Plan`] runs
//! phase 1 only: it appends nothing, writes no view and touches no worktree
//! or branch (a fetch still updates remote-tracking refs, unless disabled).
//!
//! Later stages plug in here: plugins score and select in phase 1, leases
//! and the integrity gate sit between the phases.

pub mod apply;
pub mod assess;
pub mod execute;
pub mod federate;
pub mod fetch;
pub mod finalize;
pub mod gate;
pub mod lanes;
pub mod lock;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod recover;
pub mod reserve;
pub mod rollback;

use crate::clock::Clock;
use crate::coordinate::RemoteBudget;
use crate::coordinate::{Holder, LeaseManager};
use crate::federation::{FederationState, FederationTopology, HealthBook};
use crate::intelligence::RuntimeIntelligence;
use crate::ledger::{EventKind, EventLedger, LedgerError, Pending};
use crate::plugin::set::{PluginSet, PluginSetError};
use crate::policy::{Policy, PolicyError};
use crate::resource;
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use crate::topology::{LeaseInput, RemoteInput, RepoInput, RuntimeTopologyGraph};
use crate::workspace::Workspace;
use assess::{AssessContext, Assessment};
use finalize::FinalizeError;
use outcome::Outcome;
use plan::{Decision, Recommendation};
use probe::ProbeOptions;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How far a cycle goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Phase 1 only; nothing is recorded or changed.
    Plan,
    /// Both phases.
    Execute,
}

/// Options of one cycle.
#[derive(Debug, Clone, Copy)]
pub struct CycleOptions {
    pub mode: Mode,
    /// Fetch while probing.
    pub fetch: bool,
    pub clock: Clock,
    /// Called after the leases are reserved, right before the integrity
    /// gate: lets tests and simulations change the world between the phases.
    pub before_gate: Option<fn(&Workspace)>,
}

/// Errors that stop a cycle before it finishes. Repository-level problems
/// never do: they become deferred or blocked outcomes.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Plugins(#[from] PluginSetError),
    #[error(transparent)]
    Coordination(#[from] crate::coordinate::CoordError),
    #[error(transparent)]
    Resource(#[from] resource::ResourceError),
}

impl From<reserve::ReserveError> for CycleError {
    fn from(e: reserve::ReserveError) -> Self {
        match e {
            reserve::ReserveError::Coordination(e) => CycleError::Coordination(e),
            reserve::ReserveError::Ledger(e) => CycleError::Ledger(e),
            reserve::ReserveError::State(e) => CycleError::State(e),
        }
    }
}

impl From<crate::projection::checkpoint::ProjectionError> for CycleError {
    fn from(e: crate::projection::checkpoint::ProjectionError) -> Self {
        match e {
            crate::projection::checkpoint::ProjectionError::Ledger(e) => CycleError::Ledger(e),
            crate::projection::checkpoint::ProjectionError::State(e) => CycleError::State(e),
        }
    }
}

impl From<FinalizeError> for CycleError {
    fn from(e: FinalizeError) -> Self {
        match e {
            FinalizeError::State(e) => CycleError::State(e),
            FinalizeError::Ledger(e) => CycleError::Ledger(e),
        }
    }
}

/// What a cycle decided and did, per repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleReport {
    pub tick: String,
    pub mode: Mode,
    pub started_at: String,
    pub policy_digest: String,
    pub decision_hash: String,
    /// Ledger position after the cycle (execute mode only).
    pub ledger_head: Option<LedgerHead>,
    pub repos: Vec<RepoReport>,
    /// Set when the cycle did not run because another held the cycle lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
}

/// Why a cycle did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The cycle that held the lock, when its record could be read.
    pub holder: Option<lock::CycleHolder>,
}

/// One row of a [`CycleReport`], in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoReport {
    pub repo: String,
    pub depth: u32,
    pub recommendation: Recommendation,
    /// `None` in plan mode.
    pub outcome: Option<Outcome>,
    pub reason_code: String,
    pub reason: String,
    pub head_before: Option<String>,
    pub head_after: Option<String>,
    pub target: Option<String>,
    pub ahead: u64,
    pub behind: u64,
}

impl CycleReport {
    /// Number of repositories per outcome.
    pub fn counts(&self) -> BTreeMap<Outcome, u64> {
        let mut counts = BTreeMap::new();
        for outcome in self.repos.iter().filter_map(|r| r.outcome) {
            *counts.entry(outcome).or_insert(0) += 1;
        }
        counts
    }

    /// Whether some repository is blocked or failed.
    pub fn needs_attention(&self) -> bool {
        self.repos.iter().filter_map(|r| r.outcome).any(Outcome::needs_attention)
    }
}

/// Progress messages for an interactive terminal.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Runs one cycle over every repository of the workspace's policy.
pub fn run(workspace: &Workspace, options: CycleOptions, progress: Progress<'_>) -> Result<CycleReport, CycleError> {
    let policy = workspace.load_policy()?;
    let clock = options.clock;
    let started_at = clock.now_rfc3339();
    let stamp = clock.now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let plugins = PluginSet::load(workspace.home(), &workspace.policy_path(), &policy)?;
    let store = StateStore::open(&workspace.state_dir())?;
    // Plan mode reads health as it is; execute mode reloads it under the cycle lock.
    let planning_health = HealthBook::load(&store).unwrap_or_default();
    let ctx = AssessContext {
        plugins: &plugins,
        health: &planning_health,
        health_policy: &policy.remote_health,
        now: clock.now(),
        probe_options: ProbeOptions {
            fetch: options.fetch,
            fetch_timeout: Duration::from_secs(policy.fetch.timeout_secs),
        },
        logical_time: u64::try_from(clock.now().timestamp()).unwrap_or(0),
    };
    if options.mode == Mode::Plan {
        let tick = format!("{stamp}-plan");
        let intelligence = match RuntimeIntelligence::read(&store) {
            Ok(Some(envelope)) => envelope.data,
            _ => RuntimeIntelligence::rebuild_from_ledger(&store).map(|(i, _)| i).unwrap_or_default(),
        };
        // Plan mode samples no pressure: it fetches on up to `max_lanes` lanes.
        let lanes = usize::try_from(policy.resources.max_lanes.clamp(1, 64)).unwrap_or(1);
        let (assessments, _) = assess_all(workspace, &policy, &ctx, &intelligence, lanes, progress);
        let plan = plan::plan(&policy, &assessments, &tick, plugins.digests());
        let repos = plan.decisions.iter().map(|d| report_row(d, None, d.head.clone())).collect();
        return Ok(CycleReport {
            tick,
            mode: Mode::Plan,
            started_at,
            policy_digest: plan.policy_digest,
            decision_hash: plan.decision_hash,
            ledger_head: None,
            repos,
            skipped: None,
        });
    }

    // One executing cycle per workspace; a second one records that it skipped.
    let me = lock::CycleHolder { pid: std::process::id(), host: host_name(), started_at: started_at.clone() };
    let _cycle_lock = match lock::try_acquire(store.dir(), &workspace.state_dir(), &me)? {
        lock::Acquired::Held(held) => held,
        lock::Acquired::Busy(holder) => {
            return skip(&store, workspace, clock, &stamp, started_at, policy.digest(), holder);
        }
    };
    // Sampled before anything is recorded: a bad telemetry override file
    // stops the cycle with nothing appended.
    let telemetry = resource::sample(workspace.home(), &policy.resources)?;
    let pressure = resource::assess(&telemetry, &policy.resources);

    let mut ledger = EventLedger::open(store.dir(), &workspace.state_dir(), clock)?;
    // Tick ids are unique per ledger and reproducible under a pinned clock.
    let tick = format!("{stamp}-{}", ledger.head().seq + 1);
    finalize::prepare_views(&store, &mut ledger, &tick)?;
    let mut state = finalize::load_upgrade_state(&store, &mut ledger, &tick)?;
    // Read-modify-written views are loaded only now, under the cycle lock,
    // so concurrent cycles never lose each other's updates.
    let mut health = HealthBook::load(&store)?;
    let mut federation = FederationState::load(&store)?;
    let health_snapshot = health.clone();
    let ctx = AssessContext { health: &health_snapshot, ..ctx };
    let mut rollbacks = rollback::RollbackIntelligence::load(&store, ledger.head())?;
    let mut intelligence = match RuntimeIntelligence::load_current(&store, ledger.head())? {
        Some(current) => current,
        None => RuntimeIntelligence::rebuild_from_ledger(&store)?.0,
    };
    let policy_digest = policy.digest();
    let stale_canaries = recover::remove_stale_canaries(workspace)
        .map_err(|source| StateError::Write { path: workspace.home().join("tmp"), source })?;
    let mut started = json!({ "mode": Mode::Execute, "policy_digest": policy_digest, "repos": policy.repos.len() });
    if !stale_canaries.is_empty() {
        started["stale_canary_dirs_removed"] = json!(stale_canaries);
    }
    ledger.append(&tick, EventKind::CycleStarted, "cycle", started)?;
    let holder = Holder { host: host_name(), pid: std::process::id(), tick: tick.clone() };
    let leases =
        LeaseManager::new(&store, holder.clone(), policy.coordination.lease_ttl(), policy.coordination.lock_delay())?;
    // Applies a killed cycle left half done are put right before anything
    // is probed, so the probe sees each repository at a HEAD it knows.
    if !rollbacks.unsettled.is_empty() {
        let recovery = recover::Recovery { workspace, policy: &policy, leases: &leases, tick: &tick, clock };
        recovery.settle_all(&mut rollbacks, &mut ledger)?;
        rollbacks.write(&store, &clock.now_rfc3339(), ledger.head())?;
    }
    // What the control plane is doing now, rewritten at each phase.
    let live = |status: &serde_json::Value, head: &LedgerHead| {
        let mut status = status.clone();
        status["tick"] = json!(tick);
        status["pid"] = json!(std::process::id());
        status["started_at"] = json!(started_at);
        store.write(ViewName::LiveRuntimeControlPlane, &clock.now_rfc3339(), head, &status)
    };
    live(&json!({ "phase": "probe-and-plan", "lanes": 0, "leases": {} }), ledger.head())?;
    ledger.append(
        &tick,
        EventKind::ResourcePressure,
        "resources",
        json!({ "telemetry": telemetry, "pressure": pressure }),
    )?;

    // PHASE 1: select, probe, score and plan. Nothing in any repository changes.
    // Fetches run on the pressure's lanes (at least one: critical pressure
    // defers the upgrades, not the probes), each under its URL's budget.
    let phase1_lanes = usize::try_from(pressure.lanes.max(1)).unwrap_or(1);
    let (assessments, fetches) = assess_all(workspace, &policy, &ctx, &intelligence, phase1_lanes, progress);
    // Phase 1 changed nothing but remote-tracking refs: its records share
    // one durability point, before the plan that rests on them.
    let mut records = Vec::new();
    for (assessment, fetches) in assessments.iter().zip(&fetches) {
        let repo = &assessment.probe.repo;
        for call in &assessment.calls {
            let payload = serde_json::to_value(call).unwrap_or_default();
            records.push(Pending::new(EventKind::PluginCalled, repo, payload));
        }
        let payload = json!({
            "probe": assessment.probe,
            "signals": assessment.signals,
            "score": assessment.score,
            "plugin_failure": assessment.plugin_failure,
            "fetches": fetches,
        });
        records.push(Pending::new(EventKind::RepoProbed, repo, payload));
        federate::record(&mut health, &mut federation, &policy, assessment, fetches, &mut records, &tick, clock);
    }
    ledger.append_all(&tick, records)?;
    let plan = plan::plan(&policy, &assessments, &tick, plugins.digests());
    let event = ledger.append(&tick, EventKind::PlanMade, "cycle", serde_json::to_value(&plan).unwrap_or_default())?;
    store.write(ViewName::GlobalOrchestrationPlan, &clock.now_rfc3339(), &event_head(&event), &plan)?;

    // COORDINATE: a lease per planned upgrade.
    let mut reservations = reserve::reserve(&plan, &leases, &mut ledger, &tick, clock)?;
    if pressure.defers_all() {
        reserve::defer_all(&mut reservations, &pressure.reasons.join("; "));
    }

    // GATE: nothing is mutated unless every integrity check holds.
    if let Some(hook) = options.before_gate {
        hook(workspace);
    }
    let active = leases.active(clock.now())?;
    let gate = gate::check(&gate::GateInputs {
        workspace,
        store: &store,
        ledger: &ledger,
        plan: &plan,
        holder: &holder,
        grants: &reservations.grants,
        active: &active,
    });
    // The verdict is on disk before it is appended: a ledger broken under
    // this cycle refuses the appends, and the view still says why.
    store.write(ViewName::ControlPlaneIntegrity, &clock.now_rfc3339(), ledger.head(), &gate)?;
    for check in &gate.checks {
        ledger.append(&tick, EventKind::GateChecked, &check.name, serde_json::to_value(check).unwrap_or_default())?;
    }
    if let Some(failed) = gate.first_failure() {
        ledger.append(
            &tick,
            EventKind::IntegrityFailed,
            &failed.name,
            serde_json::to_value(&gate).unwrap_or_default(),
        )?;
        reserve::refuse_all(&mut reservations, &failed.name, &failed.detail);
    }

    // PHASE 2: execute, defer or block. One dependency depth at a time (a
    // repository's dependencies are all at lower depths); within a depth,
    // up to `pressure.lanes` repositories in parallel, taken in plan order,
    // each remote used by at most its budget at once. Outcomes are recorded
    // in plan order.
    let lanes = usize::try_from(pressure.lanes.max(1)).unwrap_or(1);
    live(&json!({ "phase": "execute", "lanes": lanes, "leases": reservations.grants }), ledger.head())?;
    let rollbacks = Mutex::new(rollbacks);
    let budget = RemoteBudget::from_policy(&policy.coordination);
    let shared_ledger = Mutex::new(ledger);
    let mut repos = Vec::with_capacity(plan.decisions.len());
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut lane_of: BTreeMap<String, u32> = BTreeMap::new();
    let no_renewals = BTreeMap::new();
    for level in plan.decisions.chunk_by(|a, b| a.depth == b.depth) {
        let prepare = execute::Step {
            workspace,
            policy: &policy,
            plan: &plan,
            tick: &tick,
            earlier: &outcomes,
            leases: &leases,
            clock,
            rollbacks: &rollbacks,
            store: &store,
            renewals: &no_renewals,
        };
        let renewals = {
            let mut ledger = shared_ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            execute::prepare_level(&prepare, level, &reservations.clearances, &mut ledger)?
        };
        let step = execute::Step { renewals: &renewals, ..prepare };
        let results = lanes::run_level(level, lanes, &step, &reservations, &budget, &shared_ledger, progress);
        let mut ledger = shared_ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The level's outcomes share one durability point: an outcome lost
        // to a crash leaves its plan unsettled, and the next cycle's
        // recovery inspects the repository (recover.rs).
        let mut results_in_order = Vec::with_capacity(level.len());
        let mut records = Vec::with_capacity(level.len());
        for (decision, (lane, result)) in level.iter().zip(results) {
            let result = result?;
            let payload = serde_json::to_value(&result).unwrap_or_default();
            records.push(Pending::new(result.outcome.event_kind(), &decision.repo, payload));
            results_in_order.push((decision, lane, result));
        }
        let recorded = ledger.append_all(&tick, records)?;
        for ((decision, lane, result), event) in results_in_order.into_iter().zip(&recorded) {
            state.apply(event);
            outcomes.insert(decision.repo.clone(), result.outcome);
            if decision.recommendation == Recommendation::Upgrade {
                lane_of.insert(decision.repo.clone(), lane);
            }
            let mut row = report_row(decision, Some(result.outcome), result.head_after.clone());
            row.reason_code = result.reason_code;
            row.reason = result.reason;
            repos.push(row);
        }
    }
    let mut ledger = shared_ledger.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rollbacks = rollbacks.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);

    reserve::release(&mut reservations, &leases, &mut ledger, &tick, clock)?;
    let head = ledger.head().clone();
    reserve::write_views(&store, &reservations, &leases, &holder, clock, &head)?;

    let mut report = CycleReport {
        tick: tick.clone(),
        mode: Mode::Execute,
        started_at: started_at.clone(),
        policy_digest,
        decision_hash: plan.decision_hash.clone(),
        ledger_head: None,
        repos,
        skipped: None,
    };
    let finished = ledger.append(
        &tick,
        EventKind::CycleFinished,
        "cycle",
        json!({ "decision_hash": report.decision_hash, "counts": report.counts() }),
    )?;
    let head = event_head(&finished);
    report.ledger_head = Some(head.clone());
    for event in ledger.appended() {
        intelligence.apply(event);
        if rollback::RollbackIntelligence::folded_at_end(&event.kind) {
            rollbacks.apply(event);
        }
    }
    rollbacks.write(&store, &clock.now_rfc3339(), &head)?;
    let written_at = clock.now_rfc3339();
    intelligence.write(&store, &written_at, &head)?;
    resource::write_telemetry(&store, &head, &written_at, &telemetry)?;
    resource::write_pressure(&store, &head, &written_at, &pressure)?;
    health.write(&store, &head, &written_at)?;
    federation.retain_repos(&policy.repos);
    federation.write(&store, &head, &written_at)?;
    let urls: BTreeMap<String, BTreeMap<String, String>> =
        assessments.iter().map(|a| (a.probe.repo.clone(), a.remote_urls.clone())).collect();
    FederationTopology::build(
        &policy.repos,
        |repo, remote| urls.get(&repo.name).and_then(|u| u.get(remote)).cloned(),
        &federation,
    )
    .write(&store, &head, &written_at)?;
    topology_of(&policy, &plan, &reservations, &lane_of, &urls, &tick).write(&store, &written_at, &head)?;
    finalize::write_views(&store, &state, &report, &written_at, &head)?;
    // Readers (`hermes status`, `hermes graph`) resume from here.
    let projection = crate::projection::checkpoint::project(&store)?;
    crate::projection::checkpoint::write(&store, &written_at, &projection)?;
    if let Some(path) = policy.metrics.textfile_path(workspace.home()) {
        // Metrics are a courtesy to the scraper: failing to write them never fails the cycle.
        let bytes = projection.scan.end;
        if let Err(e) = crate::projection::metrics::write_textfile(
            &path,
            &crate::projection::metrics::exposition(&projection.snapshot, bytes),
        ) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics textfile");
        }
    }
    live(&json!({ "phase": "idle", "lanes": 0, "leases": {}, "counts": report.counts() }), &head)?;
    Ok(report)
}

/// The topology snapshot of this cycle. Remotes carry the URL phase 1 read
/// (`urls`: per repository, per remote name), so repositories sharing a URL
/// share its node; lanes are the static assignment of [`lanes::run_level`].
fn topology_of(
    policy: &Policy,
    plan: &plan::Plan,
    reservations: &reserve::Reservations,
    lane_of: &BTreeMap<String, u32>,
    urls: &BTreeMap<String, BTreeMap<String, String>>,
    tick: &str,
) -> RuntimeTopologyGraph {
    let repos: Vec<RepoInput> = policy
        .repos
        .iter()
        .map(|repo| {
            let decision = plan.decisions.iter().find(|d| d.repo == repo.name);
            let mut remotes = repo.remotes.clone();
            if remotes.is_empty() {
                remotes.push(repo.primary_remote());
            }
            RepoInput {
                name: repo.name.clone(),
                depends_on: repo.depends_on.clone(),
                remotes: remotes
                    .iter()
                    .map(|r| RemoteInput {
                        name: r.name.clone(),
                        url: urls.get(&repo.name).and_then(|u| u.get(&r.name)).cloned(),
                        role: r.role.as_str().to_owned(),
                        selected: decision.is_some_and(|d| d.remote == r.name),
                    })
                    .collect(),
                recommendation: decision.map(|d| d.recommendation.as_str().to_owned()),
                lane: lane_of.get(&repo.name).copied(),
            }
        })
        .collect();
    let leases: Vec<LeaseInput> = reservations
        .grants
        .values()
        .map(|l| LeaseInput { key: l.key.clone(), holder_tick: l.holder.tick.clone(), fencing_token: l.fencing_token })
        .collect();
    RuntimeTopologyGraph::build(tick, "upgrade-cycle", &repos, &leases)
}

/// Records that this cycle did not run because `holder` holds the cycle
/// lock, and reports it.
fn skip(
    store: &StateStore,
    workspace: &Workspace,
    clock: Clock,
    stamp: &str,
    started_at: String,
    policy_digest: String,
    holder: Option<lock::CycleHolder>,
) -> Result<CycleReport, CycleError> {
    let mut ledger = EventLedger::open(store.dir(), &workspace.state_dir(), clock)?;
    let tick = format!("{stamp}-{}-skipped", ledger.head().seq + 1);
    tracing::info!(?holder, "another cycle holds the cycle lock; skipping");
    let event = ledger.append(
        &tick,
        EventKind::CycleSkipped,
        "cycle",
        json!({ "holder": holder, "pid": std::process::id(), "lock": lock::LOCK_FILE }),
    )?;
    Ok(CycleReport {
        tick,
        mode: Mode::Execute,
        started_at,
        policy_digest,
        decision_hash: String::new(),
        ledger_head: Some(event_head(&event)),
        repos: Vec::new(),
        skipped: Some(Skipped { holder }),
    })
}

/// This host's name, for lease holders.
pub(crate) fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_owned())
}

fn event_head(event: &crate::ledger::HermesEvent) -> LedgerHead {
    LedgerHead { seq: event.seq, hash: event.hash.clone() }
}

/// Phase 1 over every repository of the policy: assessments in policy order,
/// each with the fetches its probe made. Fetches run on up to `lanes`
/// threads; each holds a slot of its URL's budget (`coordination`) while it
/// runs, and is timed from one monotonic origin taken here.
fn assess_all(
    workspace: &Workspace,
    policy: &Policy,
    ctx: &AssessContext<'_>,
    intelligence: &RuntimeIntelligence,
    lanes: usize,
    progress: Progress<'_>,
) -> (Vec<Assessment>, Vec<Vec<probe::FetchRecord>>) {
    let repos: Vec<(&crate::policy::RepoPolicy, std::path::PathBuf)> =
        policy.repos.iter().map(|repo| (repo, repo.resolved_path(workspace.home()))).collect();
    let budget = RemoteBudget::from_policy(&policy.coordination);
    assess::assess_repos(ctx, &repos, intelligence, lanes, &budget, progress).into_iter().unzip()
}

fn report_row(decision: &Decision, outcome: Option<Outcome>, head_after: Option<String>) -> RepoReport {
    RepoReport {
        repo: decision.repo.clone(),
        depth: decision.depth,
        recommendation: decision.recommendation,
        outcome,
        reason_code: decision.reason_code.clone(),
        reason: decision.reason.clone(),
        head_before: decision.head.clone(),
        head_after,
        target: decision.target.clone(),
        ahead: decision.ahead,
        behind: decision.behind,
    }
}
