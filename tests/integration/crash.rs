//! The crash matrix: a cycle over ten real repositories is killed with
//! SIGKILL at each named failpoint in turn (`HERMES_FAILPOINT`, compiled
//! into test builds only; see `host/src/failpoint.rs`), then the next tick
//! runs. After it: the ledger verifies (a torn tail repaired and recorded),
//! every repository is at its old or its new HEAD with a clean worktree and
//! no stray git lock, no temporary checkout or temp file is left, no lease
//! outlives its TTL, and every view matches a replay of the ledger.

use crate::common::{TestEnv, hermes_bin};
use hermes::failpoint;
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;

const REPOS: usize = 10;
/// The crashed cycle runs at this time, the recovering tick an hour later
/// (past the lease TTL of 10 minutes).
const CRASH_AT: &str = "2026-11-25T10:00:00Z";
const RECOVER_AT: &str = "2026-11-25T11:00:00Z";

struct Setup {
    env: TestEnv,
    names: Vec<String>,
    old: Vec<String>,
    new: Vec<String>,
}

/// Ten repositories, each one commit behind; a canary for all; the last one
/// has a failing health check, so its apply is rolled back.
fn setup() -> Setup {
    let env = TestEnv::init();
    let names: Vec<String> = (0..REPOS).map(|i| format!("r{i:02}")).collect();
    let mut old = Vec::new();
    let mut new = Vec::new();
    for name in &names {
        old.push(env.make_upstream(name));
        env.add_repo(name, &[]);
        new.push(env.push_upstream_commit(name, "change.txt", &format!("{name}\n")));
    }
    let last = names.last().unwrap().clone();
    env.edit_policy(|p| {
        p["checks"]["canary"] = json!({ "argv": ["true"], "timeout_secs": 30 });
        p["coordination"] = json!({ "lease_ttl_secs": 600 });
        // One lane: the kill lands exactly at the failpoint, never in the
        // middle of another lane's file or lock write (such a half-written
        // file is no apply's version and is left for the operator; see
        // docs/testing.md).
        p["resources"] = json!({ "max_lanes": 1 });
        for repo in p["repos"].as_array_mut().unwrap() {
            if repo["name"] == last.as_str() {
                repo["health"] = json!({ "argv": ["false"], "timeout_secs": 30 });
            }
        }
    });
    std::fs::write(
        env.home().join("config/jobs.json"),
        r#"{ "format_version": 1, "jobs": [ { "id": "up", "schedule": "1m", "kind": "upgrade-cycle" } ] }"#,
    )
    .unwrap();
    Setup { env, names, old, new }
}

fn hermes_at(env: &TestEnv, now: &str, failpoint: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = env.command(hermes_bin());
    cmd.env("HERMES_NOW", now).args(args);
    if let Some(name) = failpoint {
        cmd.env(failpoint::ENV, name);
    }
    cmd.output().expect("run hermes")
}

/// Files under `dir` (recursively) whose name says they are temporary.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp-") || name.starts_with("canary-") {
            found.push(path.display().to_string());
        } else if path.is_dir() {
            found.extend(leftovers(&path));
        }
    }
    found
}

fn check_recovered(s: &Setup, point: &str) {
    let env = &s.env;
    let out = hermes_at(env, RECOVER_AT, None, &["tick", "--json"]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 10)),
        "{point}: the tick after the crash failed ({code:?})\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = env.hermes(&["verify"]);
    assert_eq!(verify.status, 0, "{point}: the ledger verifies\n{}", verify.stderr);
    let events = env.ledger_events();
    if point.split(':').next() == Some(failpoint::LEDGER_APPEND_TORN) {
        assert!(events.iter().any(|e| e["kind"] == "ledger-repaired"), "{point}: the torn tail is recorded");
    }
    for (i, name) in s.names.iter().enumerate() {
        let repo = env.repo_path(name);
        let head = env.head(name);
        assert!(head == s.old[i] || head == s.new[i], "{point}: {name} is at {head}, neither old nor new HEAD");
        let status = env.git(&repo, &["status", "--porcelain", "--untracked-files=all"]);
        assert_eq!(status, "", "{point}: {name} has a clean worktree");
        for lock in ["index.lock", "HEAD.lock", "refs/heads/main.lock"] {
            assert!(!repo.join(".git").join(lock).exists(), "{point}: {name} has a stray .git/{lock}");
        }
    }
    // The repositories without a failing health check reached the new HEAD
    // (in the crashed cycle or in the recovering one).
    for (i, name) in s.names.iter().enumerate().take(REPOS - 1) {
        assert_eq!(env.head(name), s.new[i], "{point}: {name} was upgraded after the recovery");
    }
    assert_eq!(env.head(s.names.last().unwrap()), *s.old.last().unwrap(), "{point}: the failing one rolled back");
    let stray = [leftovers(&env.home().join("tmp")), leftovers(&env.home().join("state"))].concat();
    assert!(stray.is_empty(), "{point}: temporary files left behind: {stray:?}");
    let leases: Value =
        serde_json::from_slice(&std::fs::read(env.state_path("coordination_leases.json")).unwrap()).unwrap();
    for (key, lease) in leases["data"]["leases"].as_object().into_iter().flatten() {
        let expires = lease["expires_at"].as_str().unwrap();
        assert!(expires <= RECOVER_AT, "{point}: the lease on {key} outlives its TTL (expires {expires})");
    }
    let replay = env.hermes(&["replay"]);
    assert_eq!(replay.status, 0, "{point}: the views match a replay\n{}{}", replay.stdout, replay.stderr);
}

/// Kills a cycle at `point` (`NAME` or `NAME:N`), then checks the recovery.
fn crash_and_recover(point: &str) {
    let s = setup();
    let out = hermes_at(&s.env, CRASH_AT, Some(point), &["cycle"]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{point}: the cycle was not killed there (exit {:?}): the failpoint is never reached\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    check_recovered(&s, point);
}

#[test]
fn a_cycle_killed_at_the_first_passage_of_any_failpoint_is_recovered_by_the_next_tick() {
    for point in failpoint::ALL {
        crash_and_recover(point);
    }
}

/// Later passages: the cycle dies with some repositories done, one in
/// flight and the rest not started.
#[test]
fn a_cycle_killed_in_the_middle_of_its_work_is_recovered_by_the_next_tick() {
    for point in [
        "ledger-append-torn:15",
        "ledger-append-before-sync:22",
        "view-write-before-rename:4",
        "lease-renew-after-write:5",
        "apply-during-checkout:4",
        "apply-after-checkout:6",
        "apply-after-ref-update:3",
        "canary-checkout:7",
    ] {
        crash_and_recover(point);
    }
}
