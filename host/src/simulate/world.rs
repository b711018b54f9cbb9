//! The throw-away world a scenario runs in, and the steps that change it
//! between ticks. On disk (DIR is the simulation's `HERMES_HOME`):
//!
//! ```text
//! DIR/config/runtime_upgrade_policies.json   generated policy (+ the scenario's `policy` members)
//! DIR/config/jobs.json                       one `upgrade-cycle` job, schedule `1m`
//! DIR/state/                                 written by the real ticks only
//! DIR/upstream/<repo>.git                    bare upstream; upstream commits land here
//! DIR/remotes/<repo>/<remote>.git            one bare repository per remote, synced from upstream
//! DIR/repos/<repo>                           the working tree Hermes upgrades
//! DIR/sim/telemetry.json                     the telemetry override (calm baseline + pressure steps)
//! ```
//!
//! Commits are made with git2 ([`crate::demo::commit`]) at the scenario's
//! logical time, so commit ids are the same on every run. A remote that is
//! "down" has its git URL pointed at a closed local port
//! ([`DOWN_URL_PREFIX`]); remote health is keyed by URL, so the outage is
//! recorded under that URL.

use super::scenario::{Scenario, SimRepo, Step};
use crate::coordinate::{Acquire, Holder, LeaseManager};
use crate::demo;
use crate::ledger::GENESIS_HASH;
use crate::policy::{self, Policy};
use crate::state::{LedgerHead, StateStore, ViewName};
use chrono::{DateTime, Utc};
use git2::{Oid, Repository};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// URL prefix of a remote that is down (TCP port 9 is closed on a normal host).
pub const DOWN_URL_PREFIX: &str = "http://127.0.0.1:9/down";
/// The telemetry override file, relative to the workspace.
pub const TELEMETRY_FILE: &str = "sim/telemetry.json";
/// The holder of a foreign lease.
pub const FOREIGN_HOST: &str = "elsewhere";
pub const FOREIGN_PID: u32 = 4242;

/// Errors building or changing the world.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("{0} exists and is not empty; the simulation needs a new directory")]
    NotEmpty(PathBuf),
    #[error("the scenario's policy is refused: {0}")]
    Policy(#[from] policy::PolicyError),
    #[error("{what}: {message}")]
    Build { what: String, message: String },
}

fn build_err(what: impl Into<String>) -> impl FnOnce(String) -> WorldError {
    let what = what.into();
    move |message| WorldError::Build { what, message }
}

/// The world of one scenario run.
pub struct World {
    home: PathBuf,
    /// Real URL (a path) of each remote, by repository and remote name.
    urls: BTreeMap<String, BTreeMap<String, String>>,
    /// Commits made so far, to name default files and order commit times.
    commits: u64,
    now: DateTime<Utc>,
}

impl World {
    /// Builds the world for `scenario` in `home` (missing or empty).
    pub fn build(home: &Path, scenario: &Scenario) -> Result<Self, WorldError> {
        if home.exists() && std::fs::read_dir(home).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(WorldError::NotEmpty(home.to_owned()));
        }
        for sub in ["config", "state", "upstream", "remotes", "repos", "sim"] {
            std::fs::create_dir_all(home.join(sub)).map_err(|e| build_err(sub)(e.to_string()))?;
        }
        let mut world = World {
            home: home.to_owned(),
            urls: BTreeMap::new(),
            commits: 0,
            now: super::scenario::tick_time(scenario, 0) - chrono::Duration::hours(1),
        };
        for repo in &scenario.repos {
            world
                .build_repo(repo)
                .map_err(|e| build_err(format!("repository {}", repo.name))(e.message().to_owned()))?;
        }
        world.write_policy(scenario)?;
        let jobs =
            json!({ "format_version": 1, "jobs": [ { "id": "upgrade", "schedule": "1m", "kind": "upgrade-cycle" } ] });
        world.write_json("config/jobs.json", &jobs)?;
        world.write_json(TELEMETRY_FILE, &baseline_telemetry())?;
        Ok(world)
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    fn upstream(&self, repo: &str) -> PathBuf {
        self.home.join("upstream").join(format!("{repo}.git"))
    }

    pub fn worktree(&self, repo: &str) -> PathBuf {
        self.home.join("repos").join(repo)
    }

    fn build_repo(&mut self, spec: &SimRepo) -> Result<(), git2::Error> {
        let upstream = demo::init_bare(&self.upstream(&spec.name))?;
        let head =
            demo::commit(&upstream, None, "README.md", &format!("# {}\n", spec.name), "initial commit", self.time())?;
        demo::commit(&upstream, Some(head), "Cargo.lock", "# lockfile v1\n", "add lockfile", self.time())?;
        let names: Vec<String> = if spec.remotes.is_empty() {
            vec!["origin".to_owned()]
        } else {
            spec.remotes.iter().map(|r| r.name.clone()).collect()
        };
        let mut urls = BTreeMap::new();
        for name in &names {
            let path = self.home.join("remotes").join(&spec.name).join(format!("{name}.git"));
            demo::init_bare(&path)?;
            urls.insert(name.clone(), path.display().to_string());
        }
        self.urls.insert(spec.name.clone(), urls);
        self.sync(&spec.name)?;
        let first = &self.urls[&spec.name][&names[0]];
        let work = demo::clone_main(Path::new(first), &self.worktree(&spec.name))?;
        if names[0] != "origin" {
            work.remote_delete("origin")?;
        }
        for name in &names {
            let url = &self.urls[&spec.name][name];
            match work.find_remote(name) {
                Ok(_) => work.remote_set_url(name, url)?,
                Err(_) => drop(work.remote(name, url)?),
            }
        }
        Ok(())
    }

    /// Copies upstream `main` into every remote of `repo`.
    fn sync(&self, repo: &str) -> Result<(), git2::Error> {
        let upstream = self.upstream(repo);
        for url in self.urls[repo].values() {
            let bare = Repository::open_bare(url)?;
            let mut remote = bare.remote_anonymous(upstream.to_str().unwrap_or_default())?;
            remote.fetch(&["+refs/heads/main:refs/heads/main"], None, None)?;
        }
        Ok(())
    }

    /// A strictly increasing commit time near the logical clock.
    fn time(&mut self) -> i64 {
        self.commits += 1;
        self.now.timestamp() + self.commits as i64
    }

    fn write_json(&self, rel: &str, value: &Value) -> Result<(), WorldError> {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
        text.push('\n');
        std::fs::write(self.home.join(rel), text).map_err(|e| build_err(rel)(e.to_string()))
    }

    fn write_policy(&self, scenario: &Scenario) -> Result<(), WorldError> {
        let mut doc = serde_json::to_value(Policy::starter()).unwrap_or_default();
        let repos: Vec<Value> = scenario
            .repos
            .iter()
            .map(|r| {
                let mut repo = json!({ "name": r.name, "path": format!("repos/{}", r.name), "branch": "main",
                                       "depends_on": r.depends_on });
                if !r.remotes.is_empty() {
                    repo["remotes"] = json!(r.remotes);
                }
                if let Some(canary) = &r.canary {
                    repo["canary"] = canary.clone();
                }
                if let Some(health) = &r.health {
                    repo["health"] = health.clone();
                }
                repo
            })
            .collect();
        doc["repos"] = Value::Array(repos);
        for (key, value) in &scenario.policy {
            doc[key.as_str()] = value.clone();
        }
        match doc.get_mut("resources") {
            Some(Value::Object(resources)) => {
                resources.entry("telemetry_override").or_insert_with(|| json!(TELEMETRY_FILE));
            }
            _ => doc["resources"] = json!({ "telemetry_override": TELEMETRY_FILE }),
        }
        let config = self.home.join("config");
        self.write_json(&format!("config/{}", policy::POLICY_FILE), &doc)?;
        policy::save_schema(&config)?;
        // Telemetry file first: the policy check reads it.
        self.write_json(TELEMETRY_FILE, &baseline_telemetry())?;
        policy::load(&config.join(policy::POLICY_FILE), &self.home)?;
        Ok(())
    }

    /// Applies one step at logical time `now`; returns a one-line description.
    pub fn apply(&mut self, step: &Step, now: DateTime<Utc>) -> Result<String, WorldError> {
        self.now = now;
        let what = format!("{step:?}");
        let git = |e: git2::Error| build_err(what.clone())(e.message().to_owned());
        Ok(match step {
            Step::UpstreamCommit { repo, file, contents, delete } => {
                let n = self.commits + 1;
                let file = file.clone().unwrap_or_else(|| format!("src/change_{n}.txt"));
                let contents = contents.clone().unwrap_or_else(|| format!("upstream change {n}\n"));
                let oid = self.upstream_commit(repo, &file, (!delete).then_some(contents.as_str())).map_err(git)?;
                let verb = if *delete { "removes" } else { "writes" };
                format!("{repo}: upstream commit {} {verb} {file}", short(oid))
            }
            Step::RemoteDown { repo, remote } => {
                let url = format!("{DOWN_URL_PREFIX}/{repo}/{remote}.git");
                Repository::open(self.worktree(repo)).and_then(|w| w.remote_set_url(remote, &url)).map_err(git)?;
                format!("{repo}: remote {remote} down")
            }
            Step::RemoteUp { repo, remote } => {
                let url = self.urls[repo][remote].clone();
                Repository::open(self.worktree(repo)).and_then(|w| w.remote_set_url(remote, &url)).map_err(git)?;
                format!("{repo}: remote {remote} up")
            }
            Step::Diverge { repo } => {
                let time = self.time();
                let work = Repository::open(self.worktree(repo)).map_err(git)?;
                let local = work.head().and_then(|h| h.peel_to_commit()).map_err(git)?.id();
                demo::commit(&work, Some(local), "LOCAL.md", "a local change\n", "local change", time).map_err(git)?;
                work.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).map_err(git)?;
                let n = self.commits + 1;
                self.upstream_commit(repo, &format!("src/change_{n}.txt"), Some("upstream change\n")).map_err(git)?;
                format!("{repo}: local commit + upstream commit (diverged)")
            }
            Step::Resolve { repo } => {
                let target = Repository::open_bare(self.upstream(repo))
                    .and_then(|u| u.refname_to_id("refs/heads/main"))
                    .map_err(git)?;
                let work = Repository::open(self.worktree(repo)).map_err(git)?;
                let upstream = self.upstream(repo);
                work.remote_anonymous(upstream.to_str().unwrap_or_default())
                    .and_then(|mut r| r.fetch(&["+refs/heads/main:refs/sim/upstream"], None, None))
                    .map_err(git)?;
                let object = work.find_object(target, None).map_err(git)?;
                work.reset(&object, git2::ResetType::Hard, None).map_err(git)?;
                format!("{repo}: reset to upstream {} by the operator", short(target))
            }
            Step::Dirty { repo } => {
                std::fs::write(self.worktree(repo).join("README.md"), format!("# {repo}\n\nan uncommitted edit\n"))
                    .map_err(|e| build_err(what.clone())(e.to_string()))?;
                format!("{repo}: uncommitted change")
            }
            Step::Clean { repo } => {
                let work = Repository::open(self.worktree(repo)).map_err(git)?;
                work.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).map_err(git)?;
                format!("{repo}: uncommitted change discarded")
            }
            Step::ForeignLease { repo, ttl_minutes } => {
                self.foreign_lease(repo, *ttl_minutes, now)?;
                format!("{repo}: lease held by pid {FOREIGN_PID} on {FOREIGN_HOST} for {ttl_minutes} min")
            }
            Step::Pressure { load_milli_per_core, mem_free_mib, disk_free_mib } => {
                let mut telemetry = baseline_telemetry();
                let mut said = Vec::new();
                if let Some(v) = load_milli_per_core {
                    telemetry["load_milli_per_core"] = json!(v);
                    said.push(format!("load {v}/1000 per core"));
                }
                if let Some(v) = mem_free_mib {
                    telemetry["mem_free_mib"] = json!(v);
                    said.push(format!("{v} MiB free memory"));
                }
                if let Some(v) = disk_free_mib {
                    telemetry["disk_free_mib"] = json!(v);
                    said.push(format!("{v} MiB free disk"));
                }
                self.write_json(TELEMETRY_FILE, &telemetry)?;
                format!("pressure: {}", said.join(", "))
            }
            Step::PressureClear {} => {
                self.write_json(TELEMETRY_FILE, &baseline_telemetry())?;
                "pressure cleared".to_owned()
            }
        })
    }

    fn upstream_commit(&mut self, repo: &str, file: &str, contents: Option<&str>) -> Result<Oid, git2::Error> {
        let time = self.time();
        let upstream = Repository::open_bare(self.upstream(repo))?;
        let parent = upstream.refname_to_id("refs/heads/main")?;
        let message = match contents {
            Some(_) => format!("upstream: write {file}"),
            None => format!("upstream: remove {file}"),
        };
        let oid = demo::commit_change(&upstream, Some(parent), file, contents, &message, time)?;
        self.sync(repo)?;
        Ok(oid)
    }

    /// Grants `repo`'s lease to another process (host [`FOREIGN_HOST`], pid
    /// [`FOREIGN_PID`]) for `ttl_minutes` from `now`, through the lease
    /// manager a cycle uses, so the table is written exactly as a real
    /// holder would leave it. The table keeps the ledger head it records.
    fn foreign_lease(&self, repo: &str, ttl_minutes: u32, now: DateTime<Utc>) -> Result<(), WorldError> {
        let what = format!("state/{}", ViewName::CoordinationLeases.file_name());
        let fail = |message: String| build_err(what.clone())(message);
        let store = StateStore::open(&self.home.join("state")).map_err(|e| fail(e.to_string()))?;
        let head = match store.read::<Value>(ViewName::CoordinationLeases).map_err(|e| fail(e.to_string()))? {
            Some(envelope) => envelope.ledger_head,
            None => LedgerHead { seq: 0, hash: GENESIS_HASH.to_owned() },
        };
        let holder = Holder {
            host: FOREIGN_HOST.to_owned(),
            pid: FOREIGN_PID,
            tick: format!("{}-foreign", now.format("%Y%m%dT%H%M%S%3fZ")),
        };
        let ttl = std::time::Duration::from_secs(u64::from(ttl_minutes) * 60);
        let outcome = LeaseManager::new(&store, holder, ttl, std::time::Duration::ZERO)
            .and_then(|leases| leases.acquire(repo, now, &head))
            .map_err(|e| fail(e.to_string()))?;
        match outcome {
            Acquire::Conflict { held_by } => Err(fail(format!(
                "{repo}'s lease is already held by tick {} until {}",
                held_by.holder.tick, held_by.expires_at
            ))),
            Acquire::Granted { .. } | Acquire::Renewed { .. } => Ok(()),
        }
    }

    /// The URL a remote has now (its down URL while down).
    pub fn current_url(&self, repo: &str, remote: &str) -> Option<String> {
        let work = Repository::open(self.worktree(repo)).ok()?;
        work.find_remote(remote).ok()?.url().ok().map(str::to_owned)
    }

    /// The upstream's `main`.
    pub fn upstream_head(&self, repo: &str) -> Option<String> {
        let upstream = Repository::open_bare(self.upstream(repo)).ok()?;
        upstream.refname_to_id("refs/heads/main").ok().map(|o| o.to_string())
    }

    /// The working tree's HEAD.
    pub fn head(&self, repo: &str) -> Option<String> {
        let work = Repository::open(self.worktree(repo)).ok()?;
        work.head().ok()?.target().map(|o| o.to_string())
    }

    /// Whether the working tree has no change and no untracked file.
    pub fn worktree_clean(&self, repo: &str) -> bool {
        let Ok(work) = Repository::open(self.worktree(repo)) else { return false };
        let mut options = git2::StatusOptions::new();
        options.include_untracked(true).include_ignored(false);
        work.statuses(Some(&mut options)).is_ok_and(|s| s.is_empty())
    }
}

/// Calm telemetry: every figure pinned, so the host's real load never
/// changes a scenario's decisions.
pub fn baseline_telemetry() -> Value {
    json!({ "$comment": "written by hermes simulate: pinned calm telemetry, changed by pressure steps",
            "load_milli_per_core": 200, "cores": 4, "mem_free_mib": 8192, "mem_total_mib": 16384,
            "disk_free_mib": 100000, "disk_path": "/" })
}

/// The first 8 hex digits of a commit id.
pub fn short(oid: impl ToString) -> String {
    oid.to_string().chars().take(8).collect()
}
