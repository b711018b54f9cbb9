//! Phase 2: the guarded fast-forward.
//!
//! Before anything changes, every guard is checked again on the live
//! repository: HEAD is still the branch and commit the probe saw, no merge
//! or rebase is in progress, no git lock file is held, the tracked worktree
//! is clean, and the target descends from HEAD. Then a safe checkout moves
//! index and worktree (it refuses to overwrite anything it did not expect),
//! and the branch ref is moved with a compare-and-swap on its old value.
//! The caller's fence (the lease's fencing-token check) is the last thing
//! that runs before that compare-and-swap, in the apply and in the rollback;
//! a fence that fails stops the move (`fence-rejected`). If any of these
//! steps fails, the worktree is put back to HEAD. Never a non-fast-forward,
//! never a lost local change.

use super::probe::{operation_name, worktree_status};
use crate::failpoint;
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

/// Refusal code of a fence that failed right before the branch would move.
pub const FENCE_REJECTED: &str = "fence-rejected";

/// Called right before the branch's compare-and-swap, after every guard and
/// the checkout: `Err(why)` stops the move (the caller's lease is no longer
/// current) and the worktree is put back to HEAD.
pub type Fence<'a> = &'a dyn Fn() -> Result<(), String>;

/// Fast-forwards `branch` of the repository at `path` from `expected_head`
/// to `target`; `fence` is checked last, right before the branch moves.
pub fn fast_forward(
    path: &Path,
    branch: &str,
    expected_head: Oid,
    target: Oid,
    reflog: &str,
    fence: Fence<'_>,
) -> Result<(), ApplyRefusal> {
    let repo = Repository::open(path).map_err(|e| refuse(false, "not-a-repository", e.message().to_owned()))?;
    let refname = format!("refs/heads/{branch}");
    check_guards(&repo, &refname, expected_head, target)?;
    let failpoints =
        [failpoint::APPLY_DURING_CHECKOUT, failpoint::APPLY_AFTER_CHECKOUT, failpoint::APPLY_AFTER_REF_UPDATE];
    move_branch(&repo, &refname, expected_head, target, reflog, fence, failpoints)
}

/// Rolls `branch` back from `current` (what Hermes applied) to `previous`,
/// under the same guards: the branch must still be at `current` with a
/// clean worktree, and `fence` must hold right before the branch moves. Used
/// when the post-apply health check fails.
pub fn roll_back(
    path: &Path,
    branch: &str,
    current: Oid,
    previous: Oid,
    reflog: &str,
    fence: Fence<'_>,
) -> Result<(), ApplyRefusal> {
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
    move_branch(
        &repo,
        &refname,
        current,
        previous,
        reflog,
        fence,
        [failpoint::NONE, failpoint::NONE, failpoint::ROLLBACK_AFTER_REF_UPDATE],
    )
}

/// Checks out `to` (safe mode: nothing unexpected is overwritten), checks
/// `fence`, and moves `refname` from `from` to `to` with a compare-and-swap;
/// on failure puts index and worktree back to HEAD. `failpoints` are hit
/// after the checkout's first file, after the checkout and after the ref
/// update.
fn move_branch(
    repo: &Repository,
    refname: &str,
    from: Oid,
    to: Oid,
    reflog: &str,
    fence: Fence<'_>,
    failpoints: [&'static str; 3],
) -> Result<(), ApplyRefusal> {
    let commit = repo
        .find_commit(to)
        .map_err(|e| refuse(false, "missing-target", format!("commit {to} not found: {}", e.message())))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.safe();
    checkout.progress(|_, done, _| {
        if done > 0 {
            failpoint::hit(failpoints[0]);
        }
    });
    if let Err(e) = repo.checkout_tree(commit.as_object(), Some(&mut checkout)) {
        restore(repo);
        return Err(refuse(false, "checkout-failed", format!("checkout of {to} failed: {}", e.message())));
    }
    failpoint::hit(failpoints[1]);
    // The last check before the branch moves: is the lease still ours?
    if let Err(why) = fence() {
        restore(repo);
        return Err(refuse(true, FENCE_REJECTED, why));
    }
    if let Err(e) = repo.reference_matching(refname, to, true, from, reflog) {
        restore(repo);
        return Err(refuse(
            false,
            "ref-update-failed",
            format!("moving {refname} from {from} to {to} failed: {}", e.message()),
        ));
    }
    failpoint::hit(failpoints[2]);
    Ok(())
}

/// Where an apply that was interrupted (its process killed) left a
/// repository, as [`inspect_interrupted`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The branch is at the previous HEAD and the worktree is clean: the
    /// apply never changed anything (or a rollback finished).
    Untouched,
    /// The branch is at the previous HEAD, and every change in index and
    /// worktree is the target's version of a file: the checkout ran (in
    /// part or in full) but the branch never moved.
    CheckoutOnly,
    /// The branch moved to the target with a clean worktree; whether the
    /// health check passed was never recorded.
    RefMoved,
    /// Anything else (the branch elsewhere, changes that are not the
    /// target's): someone else's work, not Hermes' to touch.
    Foreign,
}

impl Interrupted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Untouched => "untouched",
            Self::CheckoutOnly => "checkout-only",
            Self::RefMoved => "ref-moved",
            Self::Foreign => "foreign-changes",
        }
    }
}

/// Finds where an interrupted fast-forward of `branch` from `previous` to
/// `target` left the repository at `path`.
pub fn inspect_interrupted(path: &Path, branch: &str, previous: Oid, target: Oid) -> Result<Interrupted, git2::Error> {
    let repo = Repository::open(path)?;
    let refname = format!("refs/heads/{branch}");
    let head = repo.head()?;
    if head.name().ok() != Some(refname.as_str()) {
        return Ok(Interrupted::Foreign);
    }
    let (dirty, _) = worktree_status(&repo)?;
    match head.target() {
        Some(at) if at == target && dirty == 0 => Ok(Interrupted::RefMoved),
        Some(at) if at == previous => Ok(match changes_toward(&repo, previous, target)? {
            None => Interrupted::Foreign,
            Some(added) if dirty == 0 && added.is_empty() => Interrupted::Untouched,
            Some(_) => Interrupted::CheckoutOnly,
        }),
        _ => Ok(Interrupted::Foreign),
    }
}

/// Removes the git lock files an interrupted apply or rollback of
/// `branch` between `previous` and `target` left behind when its process was
/// killed: the branch's ref lock if it holds one of those two commits, and
/// `index.lock` if it holds an index of one of their trees (what that
/// apply's checkout was writing). Any other lock file belongs to someone
/// else and stays. Returns the removed files, relative to the git directory.
pub fn remove_own_stale_locks(
    path: &Path,
    branch: &str,
    previous: Oid,
    target: Oid,
) -> Result<Vec<String>, git2::Error> {
    let repo = Repository::open(path)?;
    let git_dir = repo.path().to_path_buf();
    let io = |e: std::io::Error| git2::Error::from_str(&e.to_string());
    let mut removed = Vec::new();
    let ref_lock = format!("refs/heads/{branch}.lock");
    if let Ok(text) = std::fs::read_to_string(git_dir.join(&ref_lock))
        && [previous, target].iter().any(|oid| text.trim() == oid.to_string())
    {
        std::fs::remove_file(git_dir.join(&ref_lock)).map_err(io)?;
        removed.push(ref_lock);
    }
    let index_lock = git_dir.join("index.lock");
    if index_lock.exists() {
        let trees = [repo.find_commit(previous)?.tree_id(), repo.find_commit(target)?.tree_id()];
        let ours = git2::Index::open(&index_lock)
            .and_then(|mut index| index.write_tree_to(&repo))
            .is_ok_and(|t| trees.contains(&t));
        if ours {
            std::fs::remove_file(&index_lock).map_err(io)?;
            removed.push("index.lock".to_owned());
        }
    }
    Ok(removed)
}

/// Puts index and worktree of an [`Interrupted::CheckoutOnly`] repository
/// back to `previous` (its HEAD) and removes the files the checkout added;
/// untracked files that are not the target's stay.
pub fn undo_interrupted_checkout(path: &Path, previous: Oid, target: Oid) -> Result<(), git2::Error> {
    let repo = Repository::open(path)?;
    let added = changes_toward(&repo, previous, target)?
        .ok_or_else(|| git2::Error::from_str("the worktree holds changes that are not the target's"))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    repo.checkout_head(Some(&mut checkout))?;
    let workdir = repo.workdir().ok_or_else(|| git2::Error::from_str("bare repository"))?;
    for file in added {
        std::fs::remove_file(workdir.join(&file))
            .map_err(|e| git2::Error::from_str(&format!("cannot remove {}: {e}", file.display())))?;
    }
    Ok(())
}

/// Whether every change in index and worktree is toward `target`: each
/// path that differs holds `previous`'s or `target`'s version in index and
/// worktree. `Some(files)`: yes, and `files` are untracked files the
/// checkout wrote (the target's, not in the index yet); untracked files
/// that are not the target's are the user's and ignored. `None`: no.
fn changes_toward(
    repo: &Repository,
    previous: Oid,
    target: Oid,
) -> Result<Option<Vec<std::path::PathBuf>>, git2::Error> {
    let workdir = repo.workdir().ok_or_else(|| git2::Error::from_str("bare repository"))?.to_path_buf();
    let old_tree = repo.find_commit(previous)?.tree()?;
    let new_tree = repo.find_commit(target)?.tree()?;
    let version = |tree: &git2::Tree<'_>, path: &Path| tree.get_path(path).ok().map(|entry| entry.id());
    let index = repo.index()?;
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
    let mut added = Vec::new();
    for entry in repo.statuses(Some(&mut options))?.iter() {
        let Ok(path) = entry.path().map(Path::new) else { return Ok(None) };
        let new = version(&new_tree, path);
        if entry.status() == git2::Status::WT_NEW && new.is_none() {
            continue;
        }
        let allowed = [version(&old_tree, path), new];
        let file = workdir.join(path);
        let in_worktree = match file.symlink_metadata() {
            Ok(meta) if meta.is_file() => Some(Oid::hash_file(git2::ObjectType::Blob, &file)?),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(git2::Error::from_str(&e.to_string())),
        };
        let in_index = index.get_path(path, 0).map(|e| e.id);
        if !allowed.contains(&in_worktree) || !allowed.contains(&in_index) {
            return Ok(None);
        }
        if entry.status() == git2::Status::WT_NEW {
            added.push(path.to_path_buf());
        }
    }
    Ok(Some(added))
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

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Signature, Time};
    use std::cell::{Cell, RefCell};

    /// A repository on `main` at commit A (`README.md` = "a"), with commit
    /// B (`README.md` = "b", `new.txt`) on top of it but not checked out.
    fn repo_behind() -> (tempfile::TempDir, Oid, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_opts(dir.path(), git2::RepositoryInitOptions::new().initial_head("main")).unwrap();
        let sig = Signature::new("Hermes Test", "test@hermes.invalid", &Time::new(1_700_000_000, 0)).unwrap();
        let commit = |files: &[(&str, &str)], parents: &[&git2::Commit<'_>], update_ref: Option<&str>| {
            let mut builder = repo.treebuilder(None).unwrap();
            for (name, contents) in files {
                let blob = repo.blob(contents.as_bytes()).unwrap();
                builder.insert(name, blob, 0o100644).unwrap();
            }
            let tree = repo.find_tree(builder.write().unwrap()).unwrap();
            repo.commit(update_ref, &sig, &sig, "commit", &tree, parents).unwrap()
        };
        let a = commit(&[("README.md", "a\n")], &[], Some("HEAD"));
        let a_commit = repo.find_commit(a).unwrap();
        let b = commit(&[("README.md", "b\n"), ("new.txt", "new\n")], &[&a_commit], None);
        repo.checkout_head(Some(CheckoutBuilder::new().force())).unwrap();
        (dir, a, b)
    }

    /// Branch, HEAD and worktree of the repository at `path`.
    fn state(path: &Path) -> (Option<Oid>, Option<String>, String, bool, u64) {
        let repo = Repository::open(path).unwrap();
        let branch = repo.find_reference("refs/heads/main").ok().and_then(|r| r.target());
        let head = repo.head().ok().and_then(|h| h.name().ok().map(str::to_owned));
        let readme = std::fs::read_to_string(path.join("README.md")).unwrap();
        let new = path.join("new.txt").exists();
        let (dirty, _) = worktree_status(&repo).unwrap();
        (branch, head, readme, new, dirty)
    }

    #[test]
    fn the_fence_runs_after_the_checkout_right_before_the_branch_moves() {
        let (dir, a, b) = repo_behind();
        let seen = RefCell::new(Vec::new());
        let fence = || {
            // At this point the worktree is at the target, the branch is not.
            seen.borrow_mut().push(state(dir.path()));
            Ok(())
        };
        fast_forward(dir.path(), "main", a, b, "test: fast-forward", &fence).unwrap();
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 1, "the fence is checked exactly once");
        let (branch, _, readme, new, _) = &seen[0];
        assert_eq!((*branch, readme.as_str(), *new), (Some(a), "b\n", true));
        assert_eq!(state(dir.path()), (Some(b), Some("refs/heads/main".into()), "b\n".into(), true, 0));
    }

    #[test]
    fn a_failing_fence_leaves_branch_head_and_worktree_untouched() {
        let (dir, a, b) = repo_behind();
        let before = state(dir.path());
        assert_eq!(before, (Some(a), Some("refs/heads/main".into()), "a\n".into(), false, 0));
        let reflog = |path: &Path| Repository::open(path).unwrap().reflog("refs/heads/main").unwrap().len();
        let reflog_before = reflog(dir.path());
        let calls = Cell::new(0);
        let lost = || {
            calls.set(calls.get() + 1);
            Err("fencing token 2 for lease \"app\" is stale: the active lease has token 3".to_owned())
        };
        let refusal = fast_forward(dir.path(), "main", a, b, "test: fast-forward", &lost).unwrap_err();
        assert_eq!((refusal.code, refusal.transient), (FENCE_REJECTED, true));
        assert!(refusal.message.contains("token 3"), "{refusal:?}");
        assert_eq!(calls.get(), 1);
        assert_eq!(state(dir.path()), before);
        let repo = Repository::open(dir.path()).unwrap();
        assert!(repo.statuses(None).unwrap().is_empty(), "no tracked or untracked change is left behind");
        assert_eq!(reflog(dir.path()), reflog_before, "the branch never moved");
    }

    #[test]
    fn a_failing_fence_stops_the_rollback_and_leaves_the_applied_commit() {
        let (dir, a, b) = repo_behind();
        fast_forward(dir.path(), "main", a, b, "test: fast-forward", &|| Ok(())).unwrap();
        let applied = state(dir.path());
        let refusal =
            roll_back(dir.path(), "main", b, a, "test: roll back", &|| Err("lease lost".to_owned())).unwrap_err();
        assert_eq!((refusal.code, refusal.message.as_str()), (FENCE_REJECTED, "lease lost"));
        assert_eq!(state(dir.path()), applied);
        assert!(Repository::open(dir.path()).unwrap().statuses(None).unwrap().is_empty());
        // With the fence held, the same rollback goes through.
        roll_back(dir.path(), "main", b, a, "test: roll back", &|| Ok(())).unwrap();
        assert_eq!(state(dir.path()), (Some(a), Some("refs/heads/main".into()), "a\n".into(), false, 0));
    }

    #[test]
    fn a_guard_that_fails_does_not_consult_the_fence() {
        let (dir, a, b) = repo_behind();
        std::fs::write(dir.path().join("README.md"), "local edit\n").unwrap();
        let calls = Cell::new(0);
        let fence = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let refusal = fast_forward(dir.path(), "main", a, b, "test: fast-forward", &fence).unwrap_err();
        assert_eq!(refusal.code, "dirty-worktree");
        assert_eq!(calls.get(), 0);
        assert_eq!(std::fs::read_to_string(dir.path().join("README.md")).unwrap(), "local edit\n");
    }

    #[test]
    fn an_interrupted_checkout_is_undone_and_the_users_own_files_stay() {
        let (dir, a, b) = repo_behind();
        let repo = Repository::open(dir.path()).unwrap();
        // Killed after the checkout, before the branch moved.
        repo.checkout_tree(repo.find_commit(b).unwrap().as_object(), Some(CheckoutBuilder::new().safe())).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine\n").unwrap();
        assert_eq!(inspect_interrupted(dir.path(), "main", a, b).unwrap(), Interrupted::CheckoutOnly);
        undo_interrupted_checkout(dir.path(), a, b).unwrap();
        assert_eq!(state(dir.path()), (Some(a), Some("refs/heads/main".into()), "a\n".into(), false, 0));
        assert_eq!(std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(), "mine\n");
        assert_eq!(inspect_interrupted(dir.path(), "main", a, b).unwrap(), Interrupted::Untouched);
    }

    #[test]
    fn a_moved_branch_and_changes_that_are_not_the_targets_are_told_apart() {
        let (dir, a, b) = repo_behind();
        fast_forward(dir.path(), "main", a, b, "test: fast-forward", &|| Ok(())).unwrap();
        assert_eq!(inspect_interrupted(dir.path(), "main", a, b).unwrap(), Interrupted::RefMoved);
        roll_back(dir.path(), "main", b, a, "test: roll back", &|| Ok(())).unwrap();
        // A local edit that is neither A's nor B's README is someone's work.
        std::fs::write(dir.path().join("README.md"), "local edit\n").unwrap();
        assert_eq!(inspect_interrupted(dir.path(), "main", a, b).unwrap(), Interrupted::Foreign);
        assert!(undo_interrupted_checkout(dir.path(), a, b).is_err());
        assert_eq!(std::fs::read_to_string(dir.path().join("README.md")).unwrap(), "local edit\n");
    }

    #[test]
    fn only_the_locks_a_killed_apply_left_are_removed() {
        let (dir, a, b) = repo_behind();
        let git = dir.path().join(".git");
        std::fs::write(git.join("refs/heads/main.lock"), format!("{b}\n")).unwrap();
        std::fs::write(git.join("index.lock"), "not an index").unwrap();
        let removed = remove_own_stale_locks(dir.path(), "main", a, b).unwrap();
        assert_eq!(removed, ["refs/heads/main.lock"]);
        assert!(git.join("index.lock").exists(), "someone else's index.lock stays");
        // An index of the target's tree is what the apply's checkout wrote.
        std::fs::copy(git.join("index"), git.join("index.lock")).unwrap();
        let removed = remove_own_stale_locks(dir.path(), "main", a, b).unwrap();
        assert_eq!(removed, ["index.lock"]);
        // A ref lock naming another commit is not ours.
        std::fs::write(git.join("refs/heads/main.lock"), format!("{}\n", Oid::ZERO_SHA1)).unwrap();
        assert!(remove_own_stale_locks(dir.path(), "main", a, b).unwrap().is_empty());
    }
}
