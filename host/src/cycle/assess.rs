//! Phase 1 per repository: select a remote, probe, collect signals, score.
//!
//! ```text
//! federation-selector plugin -> ranked remotes   (skipped when every remote's circuit is open)
//! git probe (fetch with fail-over along the ranking)
//! repo-probe plugin (read-only worktree) -> signals
//! risk-scorer plugin -> risk, recommendation, reasons   (only for repos that could upgrade)
//! ```
//!
//! [`assess_repos`] runs these steps for every repository in three passes,
//! each on up to `lanes` threads ([`map_in_lanes`]): the selector calls,
//! then the git probes (fetches), each fetch holding a slot of the
//! [`RemoteBudget`] of the URL it fetches from, then the probe and scorer
//! plugins. Results are in policy order, so plans and decision hashes do
//! not depend on which lane finished first (a plugin's output and fuel
//! depend only on its input).
//!
//! When every candidate remote of a repository has an open circuit (cool-down
//! not over, see [`crate::federation::health`]), nothing is fetched and the
//! selector is not asked: the probe fails with a transient `circuit-open`
//! fetch failure naming the remotes and when the earliest cool-down ends,
//! which defers the repository (`fetch-circuit-open`).
//!
//! Plugin inputs are JSON in the WIT shapes of `hermes:plugin@0.1.0`
//! (kebab-case keys). Every call's [`CallRecord`] is kept for the ledger.
//! A plugin that fails (trap, fuel, memory, deadline, invalid output)
//! never stops the cycle: the repository is deferred with the failure as
//! the reason.

use super::Progress;
use super::fetch::FetchFailure;
use super::lanes::map_in_lanes;
use super::probe::{self, FetchRecord, Fetcher, ProbeOptions, RepoProbe};
use crate::coordinate::RemoteBudget;
use crate::federation::{Circuit, HealthBook, HealthPolicy};
use crate::intelligence::RuntimeIntelligence;
use crate::plugin::PluginKind;
use crate::plugin::call::{CallOutcome, CallRecord};
use crate::plugin::set::PluginSet;
use crate::policy::{RemoteSpec, RepoPolicy};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The risk scorer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub risk: u32,
    pub recommendation: String,
    pub priority: u32,
    pub reasons: Vec<String>,
}

/// A plugin call that failed, which defers the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFailure {
    pub kind: PluginKind,
    pub plugin: String,
    pub outcome: CallOutcome,
    pub error: String,
}

impl PluginFailure {
    /// The failure a call record reports.
    pub fn of(record: &CallRecord) -> Self {
        PluginFailure {
            kind: record.kind,
            plugin: if record.plugin.is_empty() { record.source.clone() } else { record.plugin.clone() },
            outcome: record.outcome,
            error: record.error.clone().unwrap_or_default(),
        }
    }
}

/// Everything phase 1 learned about one repository.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// Fetch URL of each remote of the repository (health is kept per URL).
    pub remote_urls: BTreeMap<String, String>,
    pub probe: RepoProbe,
    pub signals: Vec<Value>,
    pub score: Option<Score>,
    pub plugin_failure: Option<PluginFailure>,
    pub calls: Vec<CallRecord>,
}

/// Inputs of one assessment that are the same for every repository.
pub struct AssessContext<'a> {
    pub plugins: &'a PluginSet,
    pub health: &'a HealthBook,
    pub health_policy: &'a HealthPolicy,
    pub now: DateTime<Utc>,
    pub probe_options: ProbeOptions,
    /// Unix seconds of the tick.
    pub logical_time: u64,
}

/// Assesses every repository of `repos` (policy order), fetching on up to
/// `lanes` threads under `budget`; returns each assessment with the fetches
/// its probe made, in the same order.
pub fn assess_repos(
    ctx: &AssessContext<'_>,
    repos: &[(&RepoPolicy, PathBuf)],
    intelligence: &RuntimeIntelligence,
    lanes: usize,
    budget: &RemoteBudget,
    progress: Progress<'_>,
) -> Vec<(Assessment, Vec<FetchRecord>)> {
    // 1. The selector.
    let selections: Vec<Selection> =
        map_in_lanes(repos.iter().collect(), lanes, |_, (repo, path)| select(ctx, repo, path));
    // 2. The git probes.
    let probes = probe_all(ctx.probe_options, repos, &selections, lanes, budget, progress);
    // 3. The probe and scorer plugins.
    let steps: Vec<_> = repos.iter().zip(selections).zip(probes).collect();
    map_in_lanes(steps, lanes, |_, (((repo, path), selection), (probe, fetches))| {
        (finish(ctx, repo, path, intelligence, selection, probe), fetches)
    })
}

/// Where a repository's probe fetches from.
#[derive(Debug, Clone)]
enum Route {
    /// These remotes, in order (fail-over along the list).
    Fetch(Vec<String>),
    /// Nowhere: every candidate's circuit is open. The probe records
    /// `failure` as the fetch from `remote` (the primary).
    CircuitOpen { remote: String, failure: FetchFailure },
}

/// What the selector step found for one repository.
struct Selection {
    remote_urls: BTreeMap<String, String>,
    route: Route,
    plugin_failure: Option<PluginFailure>,
    calls: Vec<CallRecord>,
}

/// Reads the remotes' URLs and asks the selector for the ranking, unless
/// every candidate's circuit is open (and the probe would fetch).
fn select(ctx: &AssessContext<'_>, repo: &RepoPolicy, path: &Path) -> Selection {
    let remote_urls = remote_urls(repo, path);
    let mut calls = Vec::new();
    let mut plugin_failure = None;
    if ctx.probe_options.fetch
        && let Some(failure) = all_circuits_open(ctx, repo, &remote_urls)
    {
        let route = Route::CircuitOpen { remote: repo.primary_remote().name, failure };
        return Selection { remote_urls, route, plugin_failure, calls };
    }
    let remotes = select_remotes(ctx, repo, &remote_urls, &mut calls).unwrap_or_else(|record| {
        plugin_failure = Some(PluginFailure::of(&record));
        vec![repo.primary_remote().name]
    });
    Selection { remote_urls, route: Route::Fetch(remotes), plugin_failure, calls }
}

/// Probes every repository on up to `lanes` threads; results come back in
/// `repos`' order.
fn probe_all(
    options: ProbeOptions,
    repos: &[(&RepoPolicy, PathBuf)],
    selections: &[Selection],
    lanes: usize,
    budget: &RemoteBudget,
    progress: Progress<'_>,
) -> Vec<(RepoProbe, Vec<FetchRecord>)> {
    let origin = Instant::now();
    let total = repos.len();
    let items: Vec<_> = repos.iter().zip(selections).collect();
    map_in_lanes(items, lanes, |i, ((repo, path), selection)| {
        progress(&format!("probing {} ({}/{total})", repo.name, i + 1));
        match &selection.route {
            Route::Fetch(remotes) => {
                let fetcher = Fetcher { budget, origin, repo: &repo.name, urls: &selection.remote_urls };
                probe::probe(repo, path, options, remotes, &fetcher)
            }
            Route::CircuitOpen { remote, failure } => {
                (probe::probe_unfetched(repo, path, options, remote, failure.clone()), Vec::new())
            }
        }
    })
}

/// The remotes the selector chooses among: the policy's, else the primary.
fn candidates(repo: &RepoPolicy) -> Vec<RemoteSpec> {
    if repo.remotes.is_empty() { vec![repo.primary_remote()] } else { repo.remotes.clone() }
}

/// A `circuit-open` [`FetchFailure`] naming every candidate and
/// when its cool-down ends, if every candidate's circuit is open at the
/// tick's time (a half-open one may be tried, so it does not count).
fn all_circuits_open(
    ctx: &AssessContext<'_>,
    repo: &RepoPolicy,
    urls: &BTreeMap<String, String>,
) -> Option<FetchFailure> {
    // As the health book reads it: at most a week.
    let cool_down =
        chrono::Duration::seconds(i64::try_from(ctx.health_policy.cool_down_secs.min(604_800)).unwrap_or(0));
    let mut open: Vec<(String, String, DateTime<Utc>)> = Vec::new();
    for spec in candidates(repo) {
        let key = health_key(&repo.name, &spec.name, urls);
        if ctx.health.circuit_at(&key, ctx.now, ctx.health_policy) != Circuit::Open {
            return None;
        }
        // Open (not half-open) means `opened_at` parses and the cool-down is ahead.
        let opened = ctx.health.remotes.get(&key).and_then(|h| h.opened_at.as_deref())?;
        let opened = DateTime::parse_from_rfc3339(opened).ok()?.with_timezone(&Utc);
        open.push((spec.name, key, opened + cool_down));
    }
    let earliest = open.iter().map(|(_, _, until)| *until).min()?;
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let names: Vec<String> =
        open.iter().map(|(name, key, until)| format!("{name} ({key}) until {}", time(*until))).collect();
    Some(FetchFailure::circuit_open(format!(
        "not fetched: every candidate remote has an open circuit: {}; the earliest cool-down ends at {}",
        names.join(", "),
        time(earliest)
    )))
}

/// The plugin steps after the probe: signals, then the risk score of a
/// repository that could upgrade.
fn finish(
    ctx: &AssessContext<'_>,
    repo: &RepoPolicy,
    path: &Path,
    intelligence: &RuntimeIntelligence,
    selection: Selection,
    probe: RepoProbe,
) -> Assessment {
    let Selection { remote_urls, plugin_failure, calls, .. } = selection;
    let mut assessment = Assessment { remote_urls, probe, signals: Vec::new(), score: None, plugin_failure, calls };
    if assessment.plugin_failure.is_some() || assessment.probe.problem.is_some() || assessment.probe.head.is_none() {
        return assessment;
    }

    let facts = repo_facts(&assessment.probe, repo);
    let record = ctx.plugins.call(
        PluginKind::RepoProbe,
        json!({ "repo": facts, "logical-time": ctx.logical_time }),
        ctx.logical_time,
        Some(path),
    );
    match record.output.clone() {
        Some(Value::Array(signals)) => assessment.signals = signals,
        _ => assessment.plugin_failure = Some(PluginFailure::of(&record)),
    }
    assessment.calls.push(record);
    let could_upgrade = assessment.probe.behind > 0 && assessment.probe.ahead == 0;
    if assessment.plugin_failure.is_some() || !could_upgrade {
        return assessment;
    }

    let settings: Vec<Value> = ctx
        .plugins
        .get(PluginKind::RiskScorer)
        .settings
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect();
    let input = json!({
        "repo": facts,
        "signals": assessment.signals,
        "intelligence": intelligence.wit_record(&repo.name),
        "settings": settings,
        "logical-time": ctx.logical_time,
        "hour-of-day": (ctx.logical_time / 3600) % 24,
    });
    let record = ctx.plugins.call(PluginKind::RiskScorer, input, ctx.logical_time, None);
    match record.output.as_ref().map(Score::deserialize) {
        Some(Ok(score)) => assessment.score = Some(score),
        _ => assessment.plugin_failure = Some(PluginFailure::of(&record)),
    }
    assessment.calls.push(record);
    assessment
}

/// The URL of each configured remote, from the repository's git config.
fn remote_urls(repo: &RepoPolicy, path: &Path) -> BTreeMap<String, String> {
    let Ok(git) = git2::Repository::open(path) else { return BTreeMap::new() };
    let mut names: Vec<String> = repo.remotes.iter().map(|r| r.name.clone()).collect();
    if names.is_empty() {
        names.push(repo.primary_remote().name);
    }
    names
        .into_iter()
        .filter_map(|name| {
            let remote = git.find_remote(&name).ok()?;
            let url = remote.url().ok()?.to_owned();
            Some((name, url))
        })
        .collect()
}

/// The key remote health is kept under: the URL, else `<repo>/<remote>`.
pub fn health_key(repo: &str, remote: &str, urls: &BTreeMap<String, String>) -> String {
    urls.get(remote).cloned().unwrap_or_else(|| format!("{repo}/{remote}"))
}

/// Remote names ranked by the selector plugin; the failing call on error.
fn select_remotes(
    ctx: &AssessContext<'_>,
    repo: &RepoPolicy,
    urls: &BTreeMap<String, String>,
    calls: &mut Vec<CallRecord>,
) -> Result<Vec<String>, Box<CallRecord>> {
    let specs = candidates(repo);
    let candidates: Vec<Value> = specs
        .iter()
        .map(|r| {
            ctx.health.candidate(&health_key(&repo.name, &r.name, urls), &r.name, r.role, ctx.now, ctx.health_policy)
        })
        .collect();
    let input = json!({ "repo": repo.name, "candidates": candidates, "logical-time": ctx.logical_time });
    let record = ctx.plugins.call(PluginKind::FederationSelector, input, ctx.logical_time, None);
    calls.push(record.clone());
    let output = record.output.as_ref().ok_or_else(|| record.clone())?;
    let mut ranking: Vec<String> = output
        .get("ranking")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let chosen = output.get("chosen").and_then(Value::as_str).unwrap_or_default().to_owned();
    ranking.retain(|name| name != &chosen && specs.iter().any(|s| &s.name == name));
    ranking.insert(0, chosen);
    Ok(ranking)
}

/// The WIT `repo-facts` record for a probe.
pub fn repo_facts(probe: &RepoProbe, repo: &RepoPolicy) -> Value {
    let incoming: Vec<Value> = probe
        .incoming
        .iter()
        .map(|c| json!({ "id": c.id, "summary": c.summary, "changed-paths": c.changed_paths }))
        .collect();
    let mut depends_on = repo.depends_on.clone();
    depends_on.sort();
    json!({
        "name": probe.repo,
        "branch": probe.branch,
        "head": probe.head,
        "upstream-head": probe.upstream_head,
        "ahead": probe.ahead,
        "behind": probe.behind,
        "dirty-paths": probe.dirty_paths,
        "untracked-paths": probe.untracked_paths,
        "operation": probe.operation,
        "incoming": incoming,
        "depends-on": depends_on,
    })
}
