//! Phase 1 per repository: select a remote, probe, collect signals, score.
//!
//! ```text
//! federation-selector plugin -> ranked remotes
//! git probe (fetch with fail-over along the ranking)
//! repo-probe plugin (read-only worktree) -> signals
//! risk-scorer plugin -> risk, recommendation, reasons   (only for repos that could upgrade)
//! ```
//!
//! Plugin inputs are JSON in the WIT shapes of `hermes:plugin@0.1.0`
//! (kebab-case keys). Every call's [`CallRecord`] is kept for the ledger.
//! A plugin that fails (trap, fuel, memory, deadline, invalid output)
//! never stops the cycle: the repository is deferred with the failure as
//! the reason.

use super::probe::{self, ProbeOptions, RepoProbe};
use crate::federation::{HealthBook, HealthPolicy};
use crate::intelligence::RuntimeIntelligence;
use crate::plugin::PluginKind;
use crate::plugin::call::{CallOutcome, CallRecord};
use crate::plugin::set::PluginSet;
use crate::policy::RepoPolicy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

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

/// Assesses one repository.
pub fn assess(
    ctx: &AssessContext<'_>,
    repo: &RepoPolicy,
    path: &Path,
    intelligence: &RuntimeIntelligence,
) -> Assessment {
    let mut calls = Vec::new();
    let mut plugin_failure = None;

    let remote_urls = remote_urls(repo, path);
    let remotes = select_remotes(ctx, repo, &remote_urls, &mut calls).unwrap_or_else(|record| {
        plugin_failure = Some(fail(&record));
        vec![repo.primary_remote().name]
    });
    let probe = probe::probe(repo, path, ctx.probe_options, &remotes);
    let mut assessment = Assessment { remote_urls, probe, signals: Vec::new(), score: None, plugin_failure, calls };
    if assessment.plugin_failure.is_some() || assessment.probe.problem.is_some() || assessment.probe.head.is_none() {
        return assessment;
    }

    let facts = repo_facts(&assessment.probe, repo);
    let record = ctx.plugins.call(
        PluginKind::RepoProbe,
        &json!({ "repo": facts, "logical-time": ctx.logical_time }),
        ctx.logical_time,
        Some(path),
    );
    match record.output.clone() {
        Some(Value::Array(signals)) => assessment.signals = signals,
        _ => assessment.plugin_failure = Some(fail(&record)),
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
    let record = ctx.plugins.call(PluginKind::RiskScorer, &input, ctx.logical_time, None);
    match record.output.as_ref().map(|o| serde_json::from_value::<Score>(o.clone())) {
        Some(Ok(score)) => assessment.score = Some(score),
        _ => assessment.plugin_failure = Some(fail(&record)),
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

fn fail(record: &CallRecord) -> PluginFailure {
    PluginFailure {
        kind: record.kind,
        plugin: if record.plugin.is_empty() { record.source.clone() } else { record.plugin.clone() },
        outcome: record.outcome,
        error: record.error.clone().unwrap_or_default(),
    }
}

/// Remote names ranked by the selector plugin; the failing call on error.
fn select_remotes(
    ctx: &AssessContext<'_>,
    repo: &RepoPolicy,
    urls: &BTreeMap<String, String>,
    calls: &mut Vec<CallRecord>,
) -> Result<Vec<String>, CallRecord> {
    let mut specs = repo.remotes.clone();
    if specs.is_empty() {
        specs.push(repo.primary_remote());
    }
    let candidates: Vec<Value> = specs
        .iter()
        .map(|r| {
            ctx.health.candidate(&health_key(&repo.name, &r.name, urls), &r.name, r.role, ctx.now, ctx.health_policy)
        })
        .collect();
    let input = json!({ "repo": repo.name, "candidates": candidates, "logical-time": ctx.logical_time });
    let record = ctx.plugins.call(PluginKind::FederationSelector, &input, ctx.logical_time, None);
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
