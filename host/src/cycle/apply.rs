//! Phase 2: the guarded fast-forward.
//!
//! Before anything changes, every guard is checked again on the live
//! repository: HEAD is still the branch and commit the probe saw, no merge
//! or rebase is in progress, no git lock file is held, the tracked worktree
//! is clean, and the target descends from HEAD. Then a safe checkout moves
//! index and worktree (it refuses to overwrite anything it did not expect),
//! and the branch ref is moved with a compare-and-swap on its old value.
//! If either step fails, the worktree is put back to HEAD. Never a
//! non-fast-forward, never a lost local change.

use super::probe::{operation_name, worktree_status};
use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};
use std::path::Path;

/// A guard that did not hold, or a step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRefusal {
    /// `true`: nothing was attempted and a later cycle may succeed (defer).
    /// `false`: the apply failed or can never succeed as planned.
    pub transient: bool,
    pub code: &'static str,
    pub message: String,
}

fn refuse(transient: bool, code: &'static str, message: String) -> ApplyRefusal {
    ApplyRefusal { transient, code, message }
}

/// Fast-forwards `branch` of the repository at `path` from `expected_head`
/// to `target`.
pub fn fast_forward(
    path: &Path,
    branch: &str,
    expected_head: Oid,
    target: Oid,
    reflog: &str,
) -> Result<(), ApplyRefusal> {
    let repo = Repository::open(path).map_err(|e| refuse(false, "not-a-repository", e.message().to_owned()))?;
    let refname = format!("refs/heads/{branch}");
    check_guards(&repo, &refname, expected_head, target)?;
    move_branch(&repo, &refname, expected_head, target, reflog)
}

/// Rolls `branch` back from `current` (what Hermes applied) to `previous`,
/// under the same guards: the branch must still be at `current` with a
/// clean worktree. Used when the post-apply health check fails.
pub fn roll_back(path: &Path, branch: &str, current: Oid, previous: Oid, reflog: &str) -> Result<(), ApplyRefusal> {
    let repo = Repository::open(path).map_err(|e| refuse(false, "not-a-repository", e.message().to_owned()))?;
    let refname = format!("refs/heads/{branch}");
    let head = repo.head().map_err(|e| refuse(false, "head-moved", e.message().to_owned()))?;
    if head.name().ok() != Some(refname.as_str()) || head.target() != Some(current) {
        return Err(refuse(
            false,
            "head-moved",
            format!("{refname} is no longer at {current}; not rolling back over someone else's change"),
        ));
    }
    let (dirty, _) = worktree_status(&repo).map_err(|e| refuse(false, "dirty-worktree", e.message().to_owned()))?;
    if dirty > 0 {
        return Err(refuse(false, "dirty-worktree", format!("{dirty} uncommitted changes appeared after the apply")));
    }
    move_branch(&repo, &refname, current, previous, reflog)
}

/// Checks out `to` (safe mode: nothing unexpected is overwritten) and moves
/// `refname` from `from` to `to` with a compare-and-swap; on failure puts
/// index and worktree back to HEAD.
fn move_branch(repo: &Repository, refname: &str, from: Oid, to: Oid, reflog: &str) -> Result<(), ApplyRefusal> {
    let commit = repo
        .find_commit(to)
        .map_err(|e| refuse(false, "missing-target", format!("commit {to} not found: {}", e.message())))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.safe();
    if let Err(e) = repo.checkout_tree(commit.as_object(), Some(&mut checkout)) {
        restore(repo);
        return Err(refuse(false, "checkout-failed", format!("checkout of {to} failed: {}", e.message())));
    }
    if let Err(e) = repo.reference_matching(refname, to, true, from, reflog) {
        restore(repo);
        return Err(refuse(
            false,
            "ref-update-failed",
            format!("moving {refname} from {from} to {to} failed: {}", e.message()),
        ));
    }
    Ok(())
}

/// Writes the tree of `commit` into `dir` (which is not a git repository),
/// leaving the repository's index, HEAD and worktree untouched.
pub fn checkout_into(path: &Path, commit: Oid, dir: &Path) -> Result<(), git2::Error> {
    let repo = Repository::open(path)?;
    let commit = repo.find_commit(commit)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force().update_index(false).target_dir(dir);
    repo.checkout_tree(commit.as_object(), Some(&mut checkout))
}

fn check_guards(repo: &Repository, refname: &str, expected_head: Oid, target: Oid) -> Result<(), ApplyRefusal> {
    let head = repo.head().map_err(|e| refuse(true, "head-moved", format!("cannot read HEAD: {}", e.message())))?;
    if head.name().ok() != Some(refname) || head.target() != Some(expected_head) {
        return Err(refuse(
            true,
            "head-moved",
            format!(
                "HEAD moved since the probe: expected {refname} at {expected_head}, found {} at {}",
                head.name().unwrap_or("?"),
                head.target().map(|o| o.to_string()).unwrap_or_default()
            ),
        ));
    }
    if let Some(op) = operation_name(repo.state()) {
        return Err(refuse(true, "operation-in-progress", format!("a {op} started since the probe")));
    }
    let git_dir = repo.path();
    for lock in ["index.lock".to_owned(), "HEAD.lock".to_owned(), format!("{refname}.lock")] {
        if git_dir.join(&lock).exists() {
            return Err(refuse(true, "git-lock-held", format!("{lock} exists: another git process is at work")));
        }
    }
    let (dirty, _) = worktree_status(repo).map_err(|e| refuse(true, "dirty-worktree", e.message().to_owned()))?;
    if dirty > 0 {
        return Err(refuse(true, "dirty-worktree", format!("{dirty} uncommitted changes appeared since the probe")));
    }
    let fast_forward = target == expected_head
        || repo
            .graph_descendant_of(target, expected_head)
            .map_err(|e| refuse(false, "not-fast-forward", e.message().to_owned()))?;
    if !fast_forward {
        return Err(refuse(false, "not-fast-forward", format!("{target} does not descend from {expected_head}")));
    }
    Ok(())
}

/// Puts index and worktree back to HEAD after a failed step. The worktree
/// was clean before the apply started, so only Hermes' own changes are undone.
fn restore(repo: &Repository) {
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    if let Err(e) = repo.checkout_head(Some(&mut checkout)) {
        tracing::error!(path = %repo.path().display(), error = e.message(), "could not restore the worktree to HEAD");
    }
}
