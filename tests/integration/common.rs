//! The test harness: a [`TestEnv`] is a temporary directory holding a Hermes
//! workspace (`HERMES_HOME`), bare upstream repositories, scratch clones used
//! to push upstream commits, and a `HOME` for child processes. Every child
//! process (`hermes` and `git`) runs with a cleared, pinned environment, so
//! neither the developer's git configuration nor `RUST_LOG` leaks in, and
//! commit ids are the same on every run.

#![allow(dead_code)]

use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Fixed author and committer date (git's raw format), so commit ids are reproducible.
pub const GIT_DATE: &str = "1700000000 +0000";

/// The `hermes` binary under test.
pub fn hermes_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hermes")
}

/// Whether golden files should be rewritten instead of compared.
pub fn blessing() -> bool {
    std::env::var_os("HERMES_BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Compares `actual` with the golden file `golden` (or rewrites it when
/// blessing); a difference or a missing file is pushed onto `failures`.
pub fn check_golden(name: &str, golden: &Path, actual: &str, failures: &mut Vec<String>) {
    if blessing() {
        std::fs::write(golden, actual).expect("bless golden file");
        return;
    }
    match std::fs::read_to_string(golden) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{name}: stderr differs from {}\n--- expected ---\n{expected}--- actual ---\n{actual}",
            golden.display()
        )),
        Err(e) => failures.push(format!(
            "{name}: cannot read {} ({e}); run with HERMES_BLESS=1\n--- actual ---\n{actual}",
            golden.display()
        )),
    }
}

/// The result of a child process, with its output decoded.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 if killed by a signal).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from_std(output: std::process::Output) -> Self {
        Self {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn assert_status(&self, code: i32) -> &Self {
        assert_eq!(
            self.status, code,
            "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e})\n--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
        })
    }
}

/// One isolated test world.
pub struct TestEnv {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

impl TestEnv {
    /// A fresh environment without a workspace.
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("it-").tempdir().expect("create temp dir");
        let root = tmp.path().canonicalize().expect("canonicalize temp dir");
        for sub in ["home", "upstream", "scratch"] {
            std::fs::create_dir_all(root.join(sub)).expect("create harness dir");
        }
        let home = root.join("hermes");
        Self { _tmp: tmp, root, home }
    }

    /// A fresh environment after `hermes init`, with the default plugins'
    /// precompile cache already filled (see [`warm_plugin_cache`]).
    pub fn init() -> Self {
        let env = Self::init_cold();
        let cache = env.home.join("cache").join("plugins");
        std::fs::create_dir_all(&cache).expect("create plugin cache dir");
        for entry in std::fs::read_dir(warm_plugin_cache()).expect("read warm plugin cache") {
            let entry = entry.expect("dir entry");
            std::fs::copy(entry.path(), cache.join(entry.file_name())).expect("copy plugin cache entry");
        }
        env
    }

    /// A fresh environment after `hermes init`, with an empty plugin cache.
    pub fn init_cold() -> Self {
        let env = Self::new();
        env.hermes(&["init"]).assert_status(0);
        env
    }

    /// The temporary directory everything lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `HERMES_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The working tree Hermes upgrades: `HERMES_HOME/repos/<name>`.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.home.join("repos").join(name)
    }

    /// The bare upstream of `name`.
    pub fn upstream_path(&self, name: &str) -> PathBuf {
        self.root.join("upstream").join(format!("{name}.git"))
    }

    fn scratch_path(&self, name: &str) -> PathBuf {
        self.root.join("scratch").join(name)
    }

    pub fn policy_path(&self) -> PathBuf {
        self.home.join("config").join("runtime_upgrade_policies.json")
    }

    pub fn state_path(&self, file: &str) -> PathBuf {
        self.home.join("state").join(file)
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.state_path("runtime_events.jsonl")
    }

    /// A command with the pinned environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("HERMES_HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Hermes Test")
            .env("GIT_AUTHOR_EMAIL", "test@hermes.invalid")
            .env("GIT_COMMITTER_NAME", "Hermes Test")
            .env("GIT_COMMITTER_EMAIL", "test@hermes.invalid")
            .env("GIT_AUTHOR_DATE", GIT_DATE)
            .env("GIT_COMMITTER_DATE", GIT_DATE)
            .env("LC_ALL", "C")
            .current_dir(&self.root);
        cmd
    }

    /// Runs `hermes args` from the environment's root directory.
    pub fn hermes(&self, args: &[&str]) -> Output {
        self.hermes_in(&self.root, args)
    }

    /// Runs `hermes args` with `cwd` as current directory.
    pub fn hermes_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(hermes_bin());
        cmd.args(args).current_dir(cwd);
        run(cmd)
    }

    /// Runs `git args` in `dir` without judging the result.
    pub fn git_output(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command("git");
        cmd.args(args).current_dir(dir);
        run(cmd)
    }

    /// Runs `git args` in `dir`, asserts success, returns trimmed stdout.
    #[track_caller]
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_output(dir, args);
        assert_eq!(out.status, 0, "git {args:?} in {} failed\n{}{}", dir.display(), out.stdout, out.stderr);
        out.stdout.trim_end().to_owned()
    }

    /// Creates a bare upstream `name` with one commit on `main` (README.md),
    /// and its clone in `HERMES_HOME/repos/<name>`. Returns the commit id.
    pub fn make_upstream(&self, name: &str) -> String {
        let bare = self.upstream_path(name);
        let scratch = self.scratch_path(name);
        let bare_s = bare.to_str().expect("utf-8 path");
        self.git(&self.root, &["init", "--quiet", "--bare", "-b", "main", bare_s]);
        self.git(&self.root, &["init", "--quiet", "-b", "main", scratch.to_str().expect("utf-8 path")]);
        std::fs::write(scratch.join("README.md"), format!("# {name}\n")).expect("write README");
        self.git(&scratch, &["add", "README.md"]);
        self.git(&scratch, &["commit", "--quiet", "-m", "initial commit"]);
        self.git(&scratch, &["remote", "add", "origin", bare_s]);
        self.git(&scratch, &["push", "--quiet", "-u", "origin", "main"]);
        std::fs::create_dir_all(self.home.join("repos")).expect("create repos dir");
        let clone = self.repo_path(name);
        self.git(&self.root, &["clone", "--quiet", bare_s, clone.to_str().expect("utf-8 path")]);
        self.git(&scratch, &["rev-parse", "HEAD"])
    }

    /// Commits `file` = `contents` upstream (through the scratch clone) and
    /// pushes it. Returns the new upstream head.
    pub fn push_upstream_commit(&self, name: &str, file: &str, contents: &str) -> String {
        let scratch = self.scratch_path(name);
        commit_file(self, &scratch, file, contents, &format!("upstream: {file}"));
        self.git(&scratch, &["push", "--quiet", "origin", "main"]);
        self.upstream_head(name)
    }

    /// Commits `file` = `contents` in the working tree of `name` (not pushed).
    pub fn commit_local(&self, name: &str, file: &str, contents: &str) -> String {
        commit_file(self, &self.repo_path(name), file, contents, &format!("local: {file}"))
    }

    /// `hermes repo add HERMES_HOME/repos/<name> --depends-on ...`.
    pub fn add_repo(&self, name: &str, depends_on: &[&str]) {
        let path = self.repo_path(name);
        let mut args = vec!["repo", "add", path.to_str().expect("utf-8 path")];
        for dep in depends_on {
            args.extend(["--depends-on", dep]);
        }
        self.hermes(&args).assert_status(0);
    }

    /// `git rev-parse HEAD` in the working tree of `name`.
    pub fn head(&self, name: &str) -> String {
        self.git(&self.repo_path(name), &["rev-parse", "HEAD"])
    }

    /// `main` of the bare upstream of `name`.
    pub fn upstream_head(&self, name: &str) -> String {
        self.git(&self.upstream_path(name), &["rev-parse", "refs/heads/main"])
    }

    /// `hermes cycle --json`: exit code and report.
    pub fn cycle_json(&self) -> (i32, Value) {
        let out = self.hermes(&["cycle", "--json"]);
        assert!(
            matches!(out.status, 0 | 10),
            "hermes cycle failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        (out.status, out.json())
    }

    /// The policy file as JSON.
    pub fn policy(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.policy_path()).expect("read policy")).expect("policy is JSON")
    }

    /// Rewrites the policy file after `edit`.
    pub fn edit_policy(&self, edit: impl FnOnce(&mut Value)) {
        let mut policy = self.policy();
        edit(&mut policy);
        std::fs::write(self.policy_path(), serde_json::to_string_pretty(&policy).expect("serialize policy"))
            .expect("write policy");
    }

    /// The ledger's raw bytes (empty if it does not exist).
    pub fn ledger_bytes(&self) -> Vec<u8> {
        std::fs::read(self.ledger_path()).unwrap_or_default()
    }

    /// The ledger's complete lines, without their newlines.
    pub fn ledger_lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.ledger_bytes()).expect("ledger is UTF-8");
        text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(|l| l.trim_end_matches('\n').to_owned()).collect()
    }

    /// The ledger's complete lines as JSON events.
    #[track_caller]
    pub fn ledger_events(&self) -> Vec<Value> {
        self.ledger_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("malformed ledger line ({e}): {l}")))
            .collect()
    }

    /// Writes the ledger from lines (each gets its newline back).
    pub fn write_ledger_lines(&self, lines: &[String]) {
        let mut text = String::new();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(self.ledger_path(), text).expect("write ledger");
    }
}

/// A directory holding the precompiled default plugins, as `hermes` itself
/// writes them to `HERMES_HOME/cache/plugins` on a first cycle. Compiling the
/// three components takes seconds; doing it once per test process instead
/// of once per test keeps the suite fast. The entries are real: written by
/// the binary under test, checked by it on load.
pub fn warm_plugin_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("warm-plugin-cache");
        std::fs::create_dir_all(&base).expect("create warm cache base");
        // Remove the caches of test processes that are gone.
        if Path::new("/proc/self").exists() {
            for entry in std::fs::read_dir(&base).expect("read warm cache base").flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.parse::<u32>().is_ok() && !Path::new("/proc").join(&name).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let env = TestEnv::init_cold();
        env.make_upstream("warm");
        env.add_repo("warm", &[]);
        env.hermes(&["plan"]).assert_status(0);
        let dir = base.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create warm cache dir");
        let mut copied = 0;
        for entry in std::fs::read_dir(env.home().join("cache").join("plugins")).expect("plan filled the plugin cache")
        {
            let entry = entry.expect("dir entry");
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy plugin cache entry");
            copied += 1;
        }
        assert!(copied > 0, "`hermes plan` wrote no plugin cache entry");
        dir
    })
}

fn commit_file(env: &TestEnv, dir: &Path, file: &str, contents: &str, message: &str) -> String {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent dir");
    }
    std::fs::write(&path, contents).expect("write file");
    env.git(dir, &["add", "--", file]);
    env.git(dir, &["commit", "--quiet", "-m", message]);
    env.git(dir, &["rev-parse", "HEAD"])
}

fn run(mut cmd: Command) -> Output {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Output::from_std(output)
}

/// The row of repository `name` in a cycle or plan report.
#[track_caller]
pub fn row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["repos"]
        .as_array()
        .expect("report has repos[]")
        .iter()
        .find(|r| r["repo"] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {report:#}"))
}

/// The repository names of a report, in report (plan) order.
pub fn repo_order(report: &Value) -> Vec<String> {
    report["repos"]
        .as_array()
        .expect("report has repos[]")
        .iter()
        .map(|r| r["repo"].as_str().expect("repo name").to_owned())
        .collect()
}

/// `report["decision_hash"]` as a string.
#[track_caller]
pub fn decision_hash(report: &Value) -> String {
    let hash = report["decision_hash"].as_str().expect("decision_hash").to_owned();
    assert_eq!(hash.len(), 64, "decision_hash is a SHA-256 hex digest: {hash}");
    hash
}
