//! The demo workspace: real repositories, real bare upstreams, real faults.
//!
//! ```text
//! DIR/                        HERMES_HOME of the demo
//!   config/, state/           as after `hermes init`
//!   upstream/<name>.git       bare upstream of each repository
//!   repos/<name>              the working trees Hermes upgrades
//! ```
//!
//! Commits are made with git2 under a fixed author and fixed times, so the
//! demo's commit ids and its first decision hash are the same on every machine.
//! The git helpers ([`init_bare`], [`clone_main`], [`commit`], [`commit_change`])
//! also build the worlds of `hermes simulate` ([`crate::simulate::world`]).

use crate::policy::{self, Policy, RepoPolicy};
use git2::build::{RepoBuilder, TreeUpdateBuilder};
use git2::{FileMode, Oid, Repository, Signature, Time};
use std::path::{Path, PathBuf};

/// Errors building the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} exists and is not empty; the demo needs a new directory")]
    NotEmpty(PathBuf),
    #[error("cannot build the demo in {path}: {message}")]
    Build { path: PathBuf, message: String },
}

/// How one demo repository is set up, and what Hermes should make of it.
pub struct DemoRepo {
    pub name: &'static str,
    pub depends_on: &'static [&'static str],
    pub scenario: Scenario,
    /// What the first cycle is expected to do, for the printed summary.
    pub expect: &'static str,
}

/// The condition a demo repository is left in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `n` upstream commits not yet pulled.
    Behind(u32),
    UpToDate,
    /// Behind, with an uncommitted local change.
    DirtyBehind,
    /// A local commit and an upstream commit.
    Diverged,
    /// A local commit not pushed.
    AheadOnly,
    /// Behind, but `origin` points at a port where nothing listens.
    Unreachable,
}

/// The demo's repositories, in policy order (deliberately not plan order).
pub const DEMO_REPOS: &[DemoRepo] = &[
    DemoRepo { name: "web", depends_on: &["api"], scenario: Scenario::UpToDate, expect: "noop: already up to date" },
    DemoRepo { name: "api", depends_on: &["core"], scenario: Scenario::Behind(1), expect: "upgraded after core" },
    DemoRepo { name: "core", depends_on: &[], scenario: Scenario::Behind(2), expect: "upgraded first (depth 0)" },
    DemoRepo {
        name: "notes",
        depends_on: &[],
        scenario: Scenario::DirtyBehind,
        expect: "deferred: uncommitted change, left untouched",
    },
    DemoRepo { name: "tools", depends_on: &[], scenario: Scenario::Diverged, expect: "blocked: diverged history" },
    DemoRepo {
        name: "deploy",
        depends_on: &["tools"],
        scenario: Scenario::Behind(1),
        expect: "blocked: its dependency tools is blocked",
    },
    DemoRepo {
        name: "vendor",
        depends_on: &[],
        scenario: Scenario::Unreachable,
        expect: "deferred: remote unreachable (transient)",
    },
    DemoRepo {
        name: "docs",
        depends_on: &[],
        scenario: Scenario::AheadOnly,
        expect: "noop: local commit not pushed, nothing to pull",
    },
];

/// URL of a remote nobody serves (TCP port 9, discard, is closed on a normal host).
pub const UNREACHABLE_URL: &str = "http://127.0.0.1:9/vendor.git";

/// Builds the demo workspace in `dir` (which must be missing or empty).
pub fn build(dir: &Path) -> Result<(), DemoError> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(DemoError::NotEmpty(dir.to_owned()));
    }
    let fail = |message: String| DemoError::Build { path: dir.to_owned(), message };
    for sub in ["config", "state", "upstream", "repos"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| fail(e.to_string()))?;
    }
    let mut policy = Policy::starter();
    for (i, spec) in DEMO_REPOS.iter().enumerate() {
        build_repo(dir, spec, i as i64).map_err(|e| fail(format!("repository {}: {}", spec.name, e.message())))?;
        policy.repos.push(RepoPolicy {
            comment: None,
            name: spec.name.to_owned(),
            path: format!("repos/{}", spec.name),
            branch: Some("main".to_owned()),
            depends_on: spec.depends_on.iter().map(|d| (*d).to_owned()).collect(),
            remotes: Vec::new(),
            canary: None,
            health: None,
        });
    }
    policy::save_schema(&dir.join("config")).map_err(|e| fail(e.to_string()))?;
    policy::save(&policy, &dir.join("config")).map_err(|e| fail(e.to_string()))
}

fn build_repo(dir: &Path, spec: &DemoRepo, salt: i64) -> Result<(), git2::Error> {
    let bare_path = dir.join("upstream").join(format!("{}.git", spec.name));
    let bare = init_bare(&bare_path)?;
    let mut clock = 1_700_000_000 + salt * 10_000;
    let mut tick = || {
        clock += 60;
        clock
    };
    let mut head = commit(&bare, None, "README.md", &format!("# {}\n", spec.name), "initial commit", tick())?;
    head = commit(&bare, Some(head), "Cargo.lock", "# lockfile v1\n", "add lockfile", tick())?;
    let work_path = dir.join("repos").join(spec.name);
    let work = clone_main(&bare_path, &work_path)?;
    let upstream_commits = match spec.scenario {
        Scenario::Behind(n) => n,
        Scenario::DirtyBehind | Scenario::Diverged | Scenario::Unreachable => 1,
        Scenario::UpToDate | Scenario::AheadOnly => 0,
    };
    for i in 0..upstream_commits {
        let file = format!("src/change_{i}.txt");
        head = commit(
            &bare,
            Some(head),
            &file,
            &format!("upstream change {i}\n"),
            &format!("upstream change {i}"),
            tick(),
        )?;
    }
    match spec.scenario {
        Scenario::DirtyBehind => {
            std::fs::write(work_path.join("README.md"), format!("# {}\n\nlocal notes, not committed\n", spec.name))
                .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        }
        Scenario::Diverged | Scenario::AheadOnly => {
            let local = work.head()?.peel_to_commit()?.id();
            commit(&work, Some(local), "LOCAL.md", "a local change\n", "local change", tick())?;
            let mut checkout = git2::build::CheckoutBuilder::new();
            work.checkout_head(Some(checkout.force()))?;
        }
        Scenario::Unreachable => work.remote_set_url("origin", UNREACHABLE_URL)?,
        Scenario::Behind(_) | Scenario::UpToDate => {}
    }
    Ok(())
}

/// Creates a bare repository at `path` whose `HEAD` is `main` (no commit yet).
pub fn init_bare(path: &Path) -> Result<Repository, git2::Error> {
    Repository::init_opts(path, git2::RepositoryInitOptions::new().bare(true).initial_head("main"))
}

/// Clones the `main` branch of the repository at `from` (a path) into `to`.
pub fn clone_main(from: &Path, to: &Path) -> Result<Repository, git2::Error> {
    RepoBuilder::new().branch("main").clone(from.to_str().unwrap_or_default(), to)
}

/// Commits `path` = `contents` on top of `parent` and moves the repo's `main`
/// branch there (works for bare and non-bare repositories alike). The
/// author and committer are fixed and dated `time` (Unix seconds), so the
/// commit id depends only on the arguments.
pub fn commit(
    repo: &Repository,
    parent: Option<Oid>,
    path: &str,
    contents: &str,
    message: &str,
    time: i64,
) -> Result<Oid, git2::Error> {
    commit_change(repo, parent, path, Some(contents), message, time)
}

/// As [`commit`], but `contents` `None` removes `path` from the tree.
pub fn commit_change(
    repo: &Repository,
    parent: Option<Oid>,
    path: &str,
    contents: Option<&str>,
    message: &str,
    time: i64,
) -> Result<Oid, git2::Error> {
    let sig = Signature::new("Hermes Demo", "demo@hermes.invalid", &Time::new(time, 0))?;
    let parent_commit = parent.map(|p| repo.find_commit(p)).transpose()?;
    let base_tree = match &parent_commit {
        Some(c) => c.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mut update = TreeUpdateBuilder::new();
    match contents {
        Some(contents) => update.upsert(path, repo.blob(contents.as_bytes())?, FileMode::Blob),
        None => update.remove(path),
    };
    let tree = repo.find_tree(update.create_updated(repo, &base_tree)?)?;
    let parents: Vec<&git2::Commit<'_>> = parent_commit.iter().collect();
    repo.commit(Some("refs/heads/main"), &sig, &sig, message, &tree, &parents)
}
