//! Phase 1, step 2: the GlobalOrchestrationPlanner.
//!
//! Turns probes into one [`Decision`] per repository and orders them totally
//! and stably: dependency depth, recommendation priority, repository name.
//! A repository whose dependency is blocked is blocked; one whose dependency
//! is deferred or held and which would otherwise upgrade is deferred.
//!
//! The plan is persisted as `state/global_orchestration_plan.json` (data: a
//! serialized [`Plan`]). Its `decision_hash` is the SHA-256 of the canonical
//! JSON of [`DecisionPayload`]: the ordered decisions without their
//! human-readable `reason` text (which may quote paths and URLs). Tick ids,
//! times, durations, pids and paths are never part of it, so the same
//! repositories and policy give the same hash on any machine, from any
//! working directory, in any run.

use super::assess::Assessment;
use super::probe::{ProbeProblem, RepoProbe};
use crate::canonical;
use crate::plugin::PluginKind;
use crate::policy::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the planner recommends for a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recommendation {
    /// Fast-forward to upstream.
    Upgrade,
    /// Held back by the risk scorer; not an error, retried later.
    Hold,
    /// Not now; retried on a later cycle without anyone acting.
    Defer,
    /// Not until someone acts (diverged, auth, misconfigured...).
    Block,
    /// Nothing to do.
    Noop,
}

impl Recommendation {
    /// Position in the plan among repos of equal depth (lower runs first).
    pub fn priority(self) -> u8 {
        match self {
            Recommendation::Upgrade => 0,
            Recommendation::Hold => 1,
            Recommendation::Defer => 2,
            Recommendation::Block => 3,
            Recommendation::Noop => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Upgrade => "upgrade",
            Recommendation::Hold => "hold",
            Recommendation::Defer => "defer",
            Recommendation::Block => "block",
            Recommendation::Noop => "noop",
        }
    }
}

/// The planner's verdict on one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub repo: String,
    /// Longest chain of dependencies below this repo (0: none).
    pub depth: u32,
    pub recommendation: Recommendation,
    pub priority: u8,
    /// Risk from the risk-scorer plugin, 0 to 1000 (0 when not scored).
    pub risk: u32,
    /// Stable, machine-readable reason (e.g. `behind-upstream`, `fetch-network`).
    pub reason_code: String,
    /// Human-readable reason; not hashed.
    pub reason: String,
    pub remote: String,
    pub branch: Option<String>,
    pub head: Option<String>,
    pub target: Option<String>,
    pub ahead: u64,
    pub behind: u64,
    pub depends_on: Vec<String>,
}

/// The ordered plan of one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub tick: String,
    pub policy_digest: String,
    /// SHA-256 of the component of each plugin kind the plan was made with.
    pub plugin_digests: BTreeMap<PluginKind, String>,
    pub decision_hash: String,
    pub decisions: Vec<Decision>,
}

/// What `decision_hash` is computed over.
#[derive(Debug, Serialize)]
pub struct DecisionPayload<'a> {
    pub format: u32,
    pub decisions: Vec<HashedDecision<'a>>,
}

/// A decision minus its free-text reason.
#[derive(Debug, Serialize)]
pub struct HashedDecision<'a> {
    pub repo: &'a str,
    pub depth: u32,
    pub recommendation: Recommendation,
    pub priority: u8,
    pub risk: u32,
    pub reason_code: &'a str,
    pub remote: &'a str,
    pub branch: Option<&'a str>,
    pub head: Option<&'a str>,
    pub target: Option<&'a str>,
    pub ahead: u64,
    pub behind: u64,
    pub depends_on: &'a [String],
}

/// SHA-256 of the canonical decision payload of `decisions` (in plan order).
pub fn decision_hash(decisions: &[Decision]) -> String {
    let payload = DecisionPayload {
        format: 1,
        decisions: decisions
            .iter()
            .map(|d| HashedDecision {
                repo: &d.repo,
                depth: d.depth,
                recommendation: d.recommendation,
                priority: d.priority,
                risk: d.risk,
                reason_code: &d.reason_code,
                remote: &d.remote,
                branch: d.branch.as_deref(),
                head: d.head.as_deref(),
                target: d.target.as_deref(),
                ahead: d.ahead,
                behind: d.behind,
                depends_on: &d.depends_on,
            })
            .collect(),
    };
    canonical::digest(&payload).unwrap_or_default()
}

/// Plans one cycle. `policy` has been validated (no cycles, known deps).
pub fn plan(
    policy: &Policy,
    assessments: &[Assessment],
    tick: &str,
    plugin_digests: BTreeMap<PluginKind, String>,
) -> Plan {
    let by_name: BTreeMap<&str, &Assessment> = assessments.iter().map(|a| (a.probe.repo.as_str(), a)).collect();
    let depths = depths(policy);
    let mut decisions: Vec<Decision> = policy
        .repos
        .iter()
        .filter_map(|repo| {
            let assessment = by_name.get(repo.name.as_str())?;
            let probe = &assessment.probe;
            let (recommendation, reason_code, reason) = weigh(assessment, judge(probe));
            let mut depends_on = repo.depends_on.clone();
            depends_on.sort();
            Some(Decision {
                repo: repo.name.clone(),
                depth: depths[repo.name.as_str()],
                recommendation,
                priority: recommendation.priority(),
                risk: assessment.score.as_ref().map_or(0, |s| s.risk),
                reason_code,
                reason,
                remote: probe.remote.clone(),
                branch: probe.branch.clone(),
                head: probe.head.clone(),
                target: probe.upstream_head.clone(),
                ahead: probe.ahead,
                behind: probe.behind,
                depends_on,
            })
        })
        .collect();
    // Dependencies first (by depth), so propagation sees final verdicts.
    decisions.sort_by(|a, b| (a.depth, &a.repo).cmp(&(b.depth, &b.repo)));
    let mut verdicts: BTreeMap<String, Recommendation> = BTreeMap::new();
    for decision in &mut decisions {
        propagate(decision, &verdicts);
        verdicts.insert(decision.repo.clone(), decision.recommendation);
    }
    decisions.sort_by(|a, b| (a.depth, a.priority, a.risk, &a.repo).cmp(&(b.depth, b.priority, b.risk, &b.repo)));
    let decision_hash = decision_hash(&decisions);
    Plan { tick: tick.to_owned(), policy_digest: policy.digest(), plugin_digests, decision_hash, decisions }
}

/// Applies plugin results to the git verdict: a failed plugin defers a repo
/// that would upgrade or had nothing to do; the risk scorer decides whether
/// an upgrade goes ahead.
fn weigh(assessment: &Assessment, verdict: (Recommendation, String, String)) -> (Recommendation, String, String) {
    use Recommendation::{Block, Defer, Hold, Noop, Upgrade};
    if let Some(f) = &assessment.plugin_failure {
        if matches!(verdict.0, Upgrade | Noop) {
            let reason = format!("{} plugin {:?} failed ({:?}): {}", f.kind.as_str(), f.plugin, f.outcome, f.error);
            return (Defer, "plugin-failed".to_owned(), reason);
        }
        return verdict;
    }
    match (&assessment.score, verdict.0) {
        (Some(score), Upgrade) => {
            let (rec, code) = match score.recommendation.as_str() {
                "upgrade" => (Upgrade, "behind-upstream"),
                "hold" => (Hold, "risk-hold"),
                "defer" => (Defer, "risk-deferred"),
                "block" => (Block, "risk-blocked"),
                _ => (Noop, "risk-noop"),
            };
            let reasons =
                if score.reasons.is_empty() { String::new() } else { format!(": {}", score.reasons.join("; ")) };
            (rec, code.to_owned(), format!("{} (risk {}{reasons})", verdict.2, score.risk))
        }
        _ => verdict,
    }
}

/// Applies the dependency rules to `decision` given its dependencies' verdicts.
fn propagate(decision: &mut Decision, verdicts: &BTreeMap<String, Recommendation>) {
    let blocked = decision.depends_on.iter().find(|d| verdicts.get(*d) == Some(&Recommendation::Block));
    if let Some(dep) = blocked {
        let (code, reason) = ("dependency-blocked", format!("dependency {dep:?} is blocked"));
        set(decision, Recommendation::Block, code, reason);
        return;
    }
    if decision.recommendation == Recommendation::Upgrade {
        let waiting = |d: &&String| matches!(verdicts.get(*d), Some(Recommendation::Defer | Recommendation::Hold));
        if let Some(dep) = decision.depends_on.iter().find(waiting) {
            let reason = format!("dependency {dep:?} is deferred or held");
            set(decision, Recommendation::Defer, "dependency-deferred", reason);
        }
    }
}

fn set(decision: &mut Decision, recommendation: Recommendation, code: &str, reason: String) {
    decision.recommendation = recommendation;
    decision.priority = recommendation.priority();
    decision.reason_code = code.to_owned();
    decision.reason = reason;
}

/// The verdict for one probe on its own, before dependencies are considered.
fn judge(probe: &RepoProbe) -> (Recommendation, String, String) {
    use Recommendation::{Block, Defer, Noop, Upgrade};
    let verdict = |r: Recommendation, code: &str, reason: String| (r, code.to_owned(), reason);
    if let Some(problem) = &probe.problem {
        return match problem {
            ProbeProblem::NotARepository { detail } => {
                verdict(Block, "not-a-repository", format!("cannot open as a git repository: {detail}"))
            }
            ProbeProblem::BareRepository => {
                verdict(Block, "bare-repository", "bare repository; expected a working tree".into())
            }
            ProbeProblem::UnbornHead => verdict(Block, "unborn-head", "HEAD has no commit yet".into()),
            ProbeProblem::DetachedHead => {
                verdict(Block, "detached-head", "HEAD is detached; check out a branch".into())
            }
            ProbeProblem::WrongBranch { expected, actual } => {
                verdict(Block, "wrong-branch", format!("on branch {actual:?}, policy expects {expected:?}"))
            }
            ProbeProblem::MissingRemote { remote } => {
                verdict(Block, "missing-remote", format!("no git remote named {remote:?}"))
            }
            ProbeProblem::MissingRef { remote, branch } => {
                verdict(Block, "missing-ref", format!("remote {remote:?} has no branch {branch:?}"))
            }
            ProbeProblem::FetchFailed(failure) => {
                let code = format!("fetch-{}", failure.class.as_str());
                let (rec, kind) = if failure.transient { (Defer, "transient") } else { (Block, "permanent") };
                verdict(
                    rec,
                    &code,
                    format!(
                        "fetch from {:?} failed ({kind}, {}): {}",
                        probe.remote,
                        failure.class.as_str(),
                        failure.message
                    ),
                )
            }
        };
    }
    match (probe.ahead, probe.behind) {
        (a, b) if a > 0 && b > 0 => {
            verdict(Block, "diverged", format!("diverged from upstream: {a} local, {b} upstream commits"))
        }
        (0, 0) => verdict(Noop, "up-to-date", "up to date with upstream".into()),
        (a, 0) => verdict(Noop, "ahead-only", format!("{a} local commits not upstream; nothing to pull")),
        (_, b) => {
            if let Some(op) = &probe.operation {
                verdict(Defer, "operation-in-progress", format!("a {op} is in progress"))
            } else if probe.dirty_paths > 0 {
                verdict(Defer, "dirty-worktree", format!("{} uncommitted changes in the worktree", probe.dirty_paths))
            } else {
                verdict(Upgrade, "behind-upstream", format!("{b} commits behind upstream; fast-forward"))
            }
        }
    }
}

/// Dependency depth of every repo: 0 without dependencies, else one more
/// than the deepest dependency.
fn depths(policy: &Policy) -> BTreeMap<&str, u32> {
    let mut depths: BTreeMap<&str, u32> = BTreeMap::new();
    // A validated policy is acyclic, so at most `n` rounds settle every depth.
    for _ in 0..=policy.repos.len() {
        let mut changed = false;
        for repo in &policy.repos {
            let depth = repo.depends_on.iter().map(|d| depths.get(d.as_str()).map_or(1, |x| x + 1)).max().unwrap_or(0);
            if depths.insert(repo.name.as_str(), depth) != Some(depth) {
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::assess::{Assessment, Score};
    use crate::policy::{Policy, RepoPolicy};
    use proptest::prelude::*;

    fn repo(name: String, depends_on: Vec<String>) -> RepoPolicy {
        RepoPolicy {
            comment: None,
            name,
            path: ".".into(),
            branch: None,
            depends_on,
            remotes: Vec::new(),
            canary: None,
            health: None,
        }
    }

    fn assessment(name: &str, ahead: u64, behind: u64, dirty: u64, risk: Option<u32>) -> Assessment {
        Assessment {
            remote_urls: BTreeMap::new(),
            probe: RepoProbe {
                repo: name.to_owned(),
                remote: "origin".into(),
                failed_over: Vec::new(),
                branch: Some("main".into()),
                upstream_branch: Some("main".into()),
                head: Some(format!("{:040x}", name.len())),
                upstream_head: Some(format!("{:040x}", name.len() + 1)),
                ahead,
                behind,
                dirty_paths: dirty,
                untracked_paths: 0,
                operation: None,
                problem: None,
                incoming: Vec::new(),
                fetch_ms: Some(1),
            },
            signals: Vec::new(),
            score: risk.map(|risk| Score {
                risk,
                recommendation: if risk > 600 { "defer".into() } else { "upgrade".into() },
                priority: 1000 - risk,
                reasons: Vec::new(),
            }),
            plugin_failure: None,
            calls: Vec::new(),
        }
    }

    /// (deps by earlier index, ahead, behind, dirty, risk) per repo.
    fn world() -> impl Strategy<Value = Vec<(Vec<usize>, u64, u64, u64, u32)>> {
        prop::collection::vec((prop::collection::vec(0usize..8, 0..3), 0u64..2, 0u64..3, 0u64..2, 0u32..1000), 1..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

        /// Any order of the policy's repositories (and of the probes) gives
        /// the same ordered decisions and the same decision hash.
        #[test]
        fn plan_is_independent_of_input_order(spec in world(), seed in any::<u64>()) {
            let names: Vec<String> = (0..spec.len()).map(|i| format!("repo-{i}")).collect();
            let repos: Vec<RepoPolicy> = spec
                .iter()
                .enumerate()
                .map(|(i, (deps, ..))| {
                    let mut d: Vec<String> = deps.iter().filter(|&&j| j < i).map(|&j| names[j].clone()).collect();
                    d.dedup();
                    d.sort();
                    d.dedup();
                    repo(names[i].clone(), d)
                })
                .collect();
            let assessments: Vec<Assessment> = spec
                .iter()
                .enumerate()
                .map(|(i, (_, ahead, behind, dirty, risk))| assessment(&names[i], *ahead, *behind, *dirty, Some(*risk)))
                .collect();
            let mut policy = Policy::starter();
            policy.repos = repos.clone();
            let first = plan(&policy, &assessments, "t1", BTreeMap::new());

            // A deterministic shuffle from the seed.
            let mut order: Vec<usize> = (0..repos.len()).collect();
            let mut state = seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            policy.repos = order.iter().map(|&i| repos[i].clone()).collect();
            let shuffled: Vec<Assessment> = order.iter().rev().map(|&i| assessments[i].clone()).collect();
            let second = plan(&policy, &shuffled, "t2", BTreeMap::new());

            prop_assert_eq!(&first.decisions, &second.decisions);
            prop_assert_eq!(&first.decision_hash, &second.decision_hash);
            // The order is total and by (depth, priority, risk, name).
            for pair in first.decisions.windows(2) {
                let key = |d: &Decision| (d.depth, d.priority, d.risk, d.repo.clone());
                prop_assert!(key(&pair[0]) < key(&pair[1]));
            }
            // Every dependency comes before its dependent.
            for (i, d) in first.decisions.iter().enumerate() {
                for dep in &d.depends_on {
                    prop_assert!(first.decisions[..i].iter().any(|e| &e.repo == dep));
                }
            }
        }
    }
}
