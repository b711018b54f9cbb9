//! Phase 1, step 1: probe one repository.
//!
//! Opens the working tree with git2, reads branch, HEAD, in-progress
//! operations and worktree status, fetches the upstream branch from the
//! selected remote and counts ahead/behind. Probing never touches the
//! worktree, the index or local branches; a fetch updates only the
//! remote-tracking ref.
//!
//! Each fetch holds one slot of the [`RemoteBudget`] of the URL it fetches
//! from, for the duration of that fetch only (a fail-over releases the first
//! remote's slot and takes the next one's), and is recorded as a
//! [`FetchRecord`] with its interval on the cycle's monotonic clock.

use super::assess::health_key;
use super::fetch::{self, FetchFailure, FetchFailureClass, Fetched};
use crate::coordinate::RemoteBudget;
use crate::policy::RepoPolicy;
use git2::{Repository, RepositoryState, StatusOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A condition found while probing that stops the repository from being
/// upgraded; the planner turns it into a block or a defer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProbeProblem {
    NotARepository { detail: String },
    BareRepository,
    UnbornHead,
    DetachedHead,
    WrongBranch { expected: String, actual: String },
    MissingRemote { remote: String },
    FetchFailed(FetchFailure),
    MissingRef { remote: String, branch: String },
}

/// One incoming commit (upstream, not yet on HEAD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSummary {
    pub id: String,
    pub summary: String,
    /// Paths changed relative to the first parent (at most [`MAX_PATHS`]).
    pub changed_paths: Vec<String>,
}

/// A fetch from one remote that failed transiently, before falling over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchAttempt {
    pub remote: String,
    pub failure: FetchFailure,
}

/// One fetch as it happened: which endpoint, when, and how it ended. Times
/// are milliseconds since the cycle's phase 1 started (a monotonic clock, so
/// intervals of one cycle can be compared; they mean nothing across cycles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// The remote's name in the repository.
    pub remote: String,
    /// The endpoint: the remote's URL, or `<repo>/<remote>` when it cannot be
    /// read. The budget slot and the health record are kept under it.
    pub url: String,
    /// Time spent waiting for a budget slot of `url` before the fetch.
    pub waited_ms: u64,
    /// When the fetch started (the slot was held from here...).
    pub started_ms: u64,
    /// ...to here, when it ended.
    pub finished_ms: u64,
    pub ok: bool,
    /// Class of the failure, for a failed fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FetchFailureClass>,
}

/// Fetches for one repository's probe: each under a slot of the budget of
/// its URL, timed from the cycle's `origin`.
pub struct Fetcher<'a> {
    pub budget: &'a RemoteBudget,
    /// Phase 1's start; [`FetchRecord`] times are offsets from it.
    pub origin: Instant,
    /// The repository's name (for the `<repo>/<remote>` fallback key).
    pub repo: &'a str,
    /// Fetch URL of each remote of the repository.
    pub urls: &'a BTreeMap<String, String>,
}

impl Fetcher<'_> {
    /// Fetches `branch` of `remote` holding a slot of its URL's budget, and
    /// appends what happened to `records`.
    fn fetch(
        &self,
        repo: &Repository,
        remote: &str,
        branch: &str,
        timeout: Duration,
        records: &mut Vec<FetchRecord>,
    ) -> Result<Fetched, FetchFailure> {
        let url = health_key(self.repo, remote, self.urls);
        let ms = |at: Instant| u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX);
        let asked = Instant::now();
        let (started, finished, result) = self.budget.with_slot(&url, remote, || {
            let started = Instant::now();
            let result = fetch::fetch_branch(repo, remote, branch, timeout);
            (started, Instant::now(), result)
        });
        records.push(FetchRecord {
            remote: remote.to_owned(),
            url,
            waited_ms: ms(started).saturating_sub(ms(asked)),
            started_ms: ms(started),
            finished_ms: ms(finished),
            ok: result.is_ok(),
            failure: result.as_ref().err().map(|f| f.class),
        });
        result
    }
}

/// Incoming commits listed per probe (the newest ones, oldest first).
pub const MAX_COMMITS: usize = 50;
/// Changed paths listed per commit.
pub const MAX_PATHS: usize = 200;

/// Everything the planner needs to know about one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoProbe {
    pub repo: String,
    /// Remote fetched from (the first that did not fail transiently).
    pub remote: String,
    /// Earlier remotes that failed transiently.
    pub failed_over: Vec<FetchAttempt>,
    /// Checked-out branch, if on one.
    pub branch: Option<String>,
    /// Upstream branch name on the remote.
    pub upstream_branch: Option<String>,
    pub head: Option<String>,
    pub upstream_head: Option<String>,
    /// Commits on HEAD not upstream.
    pub ahead: u64,
    /// Commits upstream not on HEAD.
    pub behind: u64,
    /// Tracked files modified, staged or conflicted.
    pub dirty_paths: u64,
    /// Untracked, not ignored files (kept safe by the checkout, not a reason to defer).
    pub untracked_paths: u64,
    /// Merge, rebase, cherry-pick... in progress.
    pub operation: Option<String>,
    pub problem: Option<ProbeProblem>,
    /// Upstream commits not on HEAD.
    pub incoming: Vec<CommitSummary>,
    /// Duration of the successful fetch, in milliseconds, not counting the
    /// wait for a budget slot (none without one).
    pub fetch_ms: Option<u64>,
}

/// Probe settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// Fetch before comparing with upstream (`hermes plan --no-fetch` clears it).
    pub fetch: bool,
    pub fetch_timeout: Duration,
}

/// Probes `policy`'s repository at `path`, fetching from `remotes` in
/// order: a transient failure falls over to the next one. Returns the probe
/// and every fetch made, in order.
pub fn probe(
    policy: &RepoPolicy,
    path: &Path,
    options: ProbeOptions,
    remotes: &[String],
    fetcher: &Fetcher<'_>,
) -> (RepoProbe, Vec<FetchRecord>) {
    let mut probe = empty(policy);
    let mut records = Vec::new();
    for (i, remote) in remotes.iter().enumerate() {
        probe.remote = remote.clone();
        let mut fetch = |repo: &Repository, remote: &str, branch: &str| {
            fetcher.fetch(repo, remote, branch, options.fetch_timeout, &mut records)
        };
        match inspect(policy, path, remote, options, &mut probe, &mut fetch) {
            Err(ProbeProblem::FetchFailed(failure)) if failure.transient && i + 1 < remotes.len() => {
                probe.failed_over.push(FetchAttempt { remote: remote.clone(), failure });
            }
            Err(problem) => {
                probe.problem = Some(problem);
                break;
            }
            Ok(()) => break,
        }
    }
    // The successful fetch is the last one; its time excludes the wait for a slot.
    probe.fetch_ms = records.last().filter(|r| r.ok).map(|r| r.finished_ms - r.started_ms);
    (probe, records)
}

/// Probes the repository without fetching, because `failure` (a
/// [`FetchFailureClass::CircuitOpen`]) says no remote may be fetched from:
/// everything a probe reads locally is filled in, and the fetch from
/// `remote` fails with `failure` where it would have happened.
pub fn probe_unfetched(
    policy: &RepoPolicy,
    path: &Path,
    options: ProbeOptions,
    remote: &str,
    failure: FetchFailure,
) -> RepoProbe {
    let mut probe = empty(policy);
    probe.remote = remote.to_owned();
    let mut fetch = |_: &Repository, _: &str, _: &str| Err(failure.clone());
    if let Err(problem) = inspect(policy, path, remote, options, &mut probe, &mut fetch) {
        probe.problem = Some(problem);
    }
    probe
}

/// The probe of `policy`'s repository before anything is known.
fn empty(policy: &RepoPolicy) -> RepoProbe {
    RepoProbe {
        repo: policy.name.clone(),
        remote: String::new(),
        failed_over: Vec::new(),
        branch: None,
        upstream_branch: None,
        head: None,
        upstream_head: None,
        ahead: 0,
        behind: 0,
        dirty_paths: 0,
        untracked_paths: 0,
        operation: None,
        problem: None,
        incoming: Vec::new(),
        fetch_ms: None,
    }
}

/// How [`inspect`] fetches: `(repository, remote, branch)`.
type FetchFn<'a> = dyn FnMut(&Repository, &str, &str) -> Result<Fetched, FetchFailure> + 'a;

fn inspect(
    policy: &RepoPolicy,
    path: &Path,
    remote: &str,
    options: ProbeOptions,
    probe: &mut RepoProbe,
    fetch: &mut FetchFn<'_>,
) -> Result<(), ProbeProblem> {
    let repo = Repository::open(path).map_err(|e| ProbeProblem::NotARepository { detail: e.message().to_owned() })?;
    if repo.is_bare() {
        return Err(ProbeProblem::BareRepository);
    }
    probe.operation = operation_name(repo.state()).map(str::to_owned);
    let (dirty, untracked) =
        worktree_status(&repo).map_err(|e| ProbeProblem::NotARepository { detail: e.message().to_owned() })?;
    probe.dirty_paths = dirty;
    probe.untracked_paths = untracked;
    let head = match repo.head() {
        Ok(head) => head,
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => return Err(ProbeProblem::UnbornHead),
        Err(e) => return Err(ProbeProblem::NotARepository { detail: e.message().to_owned() }),
    };
    let head_oid = head.target().ok_or(ProbeProblem::UnbornHead)?;
    probe.head = Some(head_oid.to_string());
    if !head.is_branch() {
        return Err(ProbeProblem::DetachedHead);
    }
    let branch = head.shorthand().unwrap_or_default().to_owned();
    probe.branch = Some(branch.clone());
    if let Some(expected) = &policy.branch
        && expected != &branch
    {
        return Err(ProbeProblem::WrongBranch { expected: expected.clone(), actual: branch });
    }
    if repo.find_remote(remote).is_err() {
        return Err(ProbeProblem::MissingRemote { remote: remote.to_owned() });
    }
    let upstream_branch = upstream_branch_name(&repo, &branch, remote);
    probe.upstream_branch = Some(upstream_branch.clone());
    let missing_ref = || ProbeProblem::MissingRef { remote: remote.to_owned(), branch: upstream_branch.clone() };
    let upstream_oid = if options.fetch {
        fetch(&repo, remote, &upstream_branch).map_err(ProbeProblem::FetchFailed)?.upstream.ok_or_else(missing_ref)?
    } else {
        repo.refname_to_id(&format!("refs/remotes/{remote}/{upstream_branch}")).map_err(|_| missing_ref())?
    };
    probe.upstream_head = Some(upstream_oid.to_string());
    let (ahead, behind) = repo
        .graph_ahead_behind(head_oid, upstream_oid)
        .map_err(|e| ProbeProblem::NotARepository { detail: e.message().to_owned() })?;
    probe.ahead = ahead as u64;
    probe.behind = behind as u64;
    probe.incoming = incoming(&repo, head_oid, upstream_oid).unwrap_or_default();
    Ok(())
}

/// Commits reachable from `upstream` but not from `head`: the newest
/// [`MAX_COMMITS`] of them, listed oldest first.
fn incoming(repo: &Repository, head: git2::Oid, upstream: git2::Oid) -> Result<Vec<CommitSummary>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(upstream)?;
    walk.hide(head)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    let mut commits = Vec::new();
    for oid in walk.take(MAX_COMMITS) {
        let commit = repo.find_commit(oid?)?;
        let tree = commit.tree()?;
        let parent_tree = commit.parents().next().map(|p| p.tree()).transpose()?;
        let diff = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)?;
        let changed_paths = diff
            .deltas()
            .filter_map(|d| {
                d.new_file().path().or_else(|| d.old_file().path()).map(|p| p.to_string_lossy().into_owned())
            })
            .take(MAX_PATHS)
            .collect();
        commits.push(CommitSummary {
            id: commit.id().to_string(),
            summary: commit.summary().ok().flatten().unwrap_or_default().to_owned(),
            changed_paths,
        });
    }
    commits.reverse();
    Ok(commits)
}

/// The branch's configured upstream on `remote`, else a branch of the same name.
fn upstream_branch_name(repo: &Repository, branch: &str, remote: &str) -> String {
    let refname = format!("refs/heads/{branch}");
    let configured_remote = repo.branch_upstream_remote(&refname).ok().and_then(|b| b.as_str().ok().map(str::to_owned));
    if configured_remote.as_deref() == Some(remote)
        && let Some(merge) = repo.branch_upstream_merge(&refname).ok().and_then(|b| b.as_str().ok().map(str::to_owned))
        && let Some(name) = merge.strip_prefix("refs/heads/")
    {
        return name.to_owned();
    }
    branch.to_owned()
}

/// Counts of (tracked changes, untracked files) in the worktree.
pub fn worktree_status(repo: &Repository) -> Result<(u64, u64), git2::Error> {
    let mut options = StatusOptions::new();
    options.include_untracked(true).include_ignored(false).exclude_submodules(false);
    let statuses = repo.statuses(Some(&mut options))?;
    let (mut dirty, mut untracked) = (0, 0);
    for entry in statuses.iter() {
        if entry.status() == git2::Status::WT_NEW {
            untracked += 1;
        } else if !entry.status().is_ignored() {
            dirty += 1;
        }
    }
    Ok((dirty, untracked))
}

/// Name of an operation in progress, or `None` when the repository is clean.
pub fn operation_name(state: RepositoryState) -> Option<&'static str> {
    match state {
        RepositoryState::Clean => None,
        RepositoryState::Merge => Some("merge"),
        RepositoryState::Revert | RepositoryState::RevertSequence => Some("revert"),
        RepositoryState::CherryPick | RepositoryState::CherryPickSequence => Some("cherry-pick"),
        RepositoryState::Bisect => Some("bisect"),
        RepositoryState::Rebase | RepositoryState::RebaseInteractive | RepositoryState::RebaseMerge => Some("rebase"),
        RepositoryState::ApplyMailbox | RepositoryState::ApplyMailboxOrRebase => Some("am"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RemoteRole, RemoteSpec};

    const DEAD: &str = "http://127.0.0.1:9/dead.git";

    fn commit(repo: &Repository, file: &str) -> git2::Oid {
        let workdir = repo.workdir().unwrap();
        std::fs::write(workdir.join(file), file).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new(file)).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, file, &tree, &parents).unwrap()
    }

    /// An upstream one commit ahead of `work`, whose `origin` is dead and
    /// `mirror` is the upstream.
    fn world(dir: &Path) -> (RepoPolicy, String) {
        let upstream_path = dir.join("upstream");
        let upstream =
            Repository::init_opts(&upstream_path, git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
        commit(&upstream, "a.txt");
        let work = Repository::clone(upstream_path.to_str().unwrap(), dir.join("work")).unwrap();
        commit(&upstream, "b.txt");
        work.remote_set_url("origin", DEAD).unwrap();
        work.remote("mirror", upstream_path.to_str().unwrap()).unwrap();
        let policy = RepoPolicy {
            comment: None,
            name: "work".into(),
            path: "work".into(),
            branch: None,
            depends_on: Vec::new(),
            remotes: vec![
                RemoteSpec { name: "origin".into(), role: RemoteRole::Primary },
                RemoteSpec { name: "mirror".into(), role: RemoteRole::Mirror },
            ],
            canary: None,
            health: None,
        };
        (policy, upstream_path.to_str().unwrap().to_owned())
    }

    #[test]
    fn every_fetch_is_recorded_under_its_url_and_a_fail_over_takes_the_next_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (policy, mirror_url) = world(dir.path());
        let urls = BTreeMap::from([("origin".to_owned(), DEAD.to_owned()), ("mirror".to_owned(), mirror_url.clone())]);
        let budget = RemoteBudget::new(1, BTreeMap::new());
        let fetcher = Fetcher { budget: &budget, origin: Instant::now(), repo: "work", urls: &urls };
        let options = ProbeOptions { fetch: true, fetch_timeout: Duration::from_secs(30) };
        let remotes = ["origin".to_owned(), "mirror".to_owned()];
        let (probe, records) = probe(&policy, &dir.path().join("work"), options, &remotes, &fetcher);
        assert_eq!(probe.problem, None, "{probe:#?}");
        assert_eq!((probe.remote.as_str(), probe.behind), ("mirror", 1));
        assert_eq!(probe.failed_over.len(), 1);
        assert_eq!(records.len(), 2, "{records:#?}");
        assert_eq!((records[0].remote.as_str(), records[0].url.as_str(), records[0].ok), ("origin", DEAD, false));
        assert_eq!(records[0].failure, Some(FetchFailureClass::Network));
        assert_eq!(
            (records[1].remote.as_str(), records[1].url.as_str(), records[1].ok),
            ("mirror", &*mirror_url, true)
        );
        assert!(records[1].started_ms >= records[0].finished_ms, "one after the other: {records:#?}");
        assert_eq!(probe.fetch_ms, Some(records[1].finished_ms - records[1].started_ms));
        assert_eq!((budget.in_use(DEAD), budget.in_use(&mirror_url)), (0, 0), "every slot was returned");
    }

    #[test]
    fn an_unfetched_probe_reads_the_worktree_and_fails_where_the_fetch_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let (policy, _) = world(dir.path());
        let options = ProbeOptions { fetch: true, fetch_timeout: Duration::from_secs(30) };
        let failure = FetchFailure::circuit_open("every remote is open".into());
        let probe = probe_unfetched(&policy, &dir.path().join("work"), options, "origin", failure.clone());
        assert_eq!(probe.problem, Some(ProbeProblem::FetchFailed(failure)));
        assert_eq!((probe.remote.as_str(), probe.branch.as_deref(), probe.fetch_ms), ("origin", Some("main"), None));
        assert!(probe.head.is_some());
    }
}
