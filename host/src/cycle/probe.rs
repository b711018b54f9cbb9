//! Phase 1, step 1: probe one repository.
//!
//! Opens the working tree with git2, reads branch, HEAD, in-progress
//! operations and worktree status, fetches the upstream branch from the
//! selected remote and counts ahead/behind. Probing never touches the
//! worktree, the index or local branches; a fetch updates only the
//! remote-tracking ref.

use super::fetch::{self, FetchFailure};
use crate::policy::RepoPolicy;
use git2::{Repository, RepositoryState, StatusOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

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
    /// Duration of the successful fetch, in milliseconds (none without one).
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
/// order: a transient failure falls over to the next one.
pub fn probe(policy: &RepoPolicy, path: &Path, options: ProbeOptions, remotes: &[String]) -> RepoProbe {
    let mut probe = RepoProbe {
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
    };
    for (i, remote) in remotes.iter().enumerate() {
        probe.remote = remote.clone();
        match inspect(policy, path, remote, options, &mut probe) {
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
    probe
}

fn inspect(
    policy: &RepoPolicy,
    path: &Path,
    remote: &str,
    options: ProbeOptions,
    probe: &mut RepoProbe,
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
    if let Some(expected) = &policy.branch {
        if expected != &branch {
            return Err(ProbeProblem::WrongBranch { expected: expected.clone(), actual: branch });
        }
    }
    if repo.find_remote(remote).is_err() {
        return Err(ProbeProblem::MissingRemote { remote: remote.to_owned() });
    }
    let upstream_branch = upstream_branch_name(&repo, &branch, remote);
    probe.upstream_branch = Some(upstream_branch.clone());
    let missing_ref = || ProbeProblem::MissingRef { remote: remote.to_owned(), branch: upstream_branch.clone() };
    let upstream_oid = if options.fetch {
        let started = std::time::Instant::now();
        let fetched = fetch::fetch_branch(&repo, remote, &upstream_branch, options.fetch_timeout)
            .map_err(ProbeProblem::FetchFailed)?;
        probe.fetch_ms = Some(started.elapsed().as_millis() as u64);
        fetched.upstream.ok_or_else(missing_ref)?
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
    if configured_remote.as_deref() == Some(remote) {
        if let Some(merge) = repo.branch_upstream_merge(&refname).ok().and_then(|b| b.as_str().ok().map(str::to_owned))
        {
            if let Some(name) = merge.strip_prefix("refs/heads/") {
                return name.to_owned();
            }
        }
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
