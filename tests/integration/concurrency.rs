//! Cycles that overlap on one workspace: the second one does not queue, it
//! records that it skipped (naming the running cycle) and exits 0; both
//! appenders share the ledger without breaking its chain.

use crate::common::{TestEnv, hermes_bin, row};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `app`, one commit behind, with a canary that keeps a cycle busy.
fn behind_with_slow_canary() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env.edit_policy(|p| p["checks"]["canary"] = json!({ "argv": ["sleep", "5"], "timeout_secs": 60 }));
    env
}

/// Waits until `pid` is recorded as the holder of the cycle lock.
fn wait_for_holder(env: &TestEnv, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder: Option<Value> = std::fs::read_to_string(env.state_path(".cycle.lock"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        if holder.is_some_and(|h| h["pid"] == pid) {
            return;
        }
        assert!(Instant::now() < deadline, "the first cycle never took the cycle lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_cycle_started_while_another_runs_records_that_it_skipped() {
    let env = behind_with_slow_canary();
    let target = env.upstream_head("app");
    let first = env
        .command(hermes_bin())
        .args(["cycle", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first_pid = first.id();
    wait_for_holder(&env, first_pid);

    let second = env.hermes(&["cycle", "--json"]);
    second.assert_status(0);
    let skipped = second.json();
    assert_eq!(skipped["skipped"]["holder"]["pid"], first_pid, "{skipped:#}");
    assert_eq!(skipped["repos"], json!([]));
    let text = env.hermes(&["cycle"]);
    text.assert_status(0);
    assert!(
        text.stdout.contains(&format!("skipped: another cycle holds the workspace (pid {first_pid}")),
        "{}",
        text.stdout
    );

    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    assert_eq!(env.head("app"), target);

    let events = env.ledger_events();
    let skips: Vec<&Value> = events.iter().filter(|e| e["kind"] == "cycle-skipped").collect();
    assert_eq!(skips.len(), 2, "both late cycles recorded themselves");
    assert!(skips.iter().all(|e| e["payload"]["holder"]["pid"] == first_pid));
    assert_eq!(events.iter().filter(|e| e["kind"] == "repo-upgraded").count(), 1);
    // The skips landed in the middle of the running cycle's events and the
    // chain still verifies end to end.
    let finished = events.iter().position(|e| e["kind"] == "cycle-finished").unwrap();
    assert!(events.iter().position(|e| e["kind"] == "cycle-skipped").unwrap() < finished);
    env.hermes(&["verify"]).assert_status(0);

    // The lock went with the first cycle: the next one runs.
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert!(report.get("skipped").is_none(), "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "noop");
}

#[test]
fn a_lock_left_by_a_killed_cycle_does_not_stop_the_next() {
    let env = behind_with_slow_canary();
    let mut first =
        env.command(hermes_bin()).args(["cycle"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_holder(&env, first.id());
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock file still names the dead process; the OS lock died with it.
    env.edit_policy(|p| p["checks"] = json!({}));
    let (code, report) = env.cycle_json();
    assert!(report.get("skipped").is_none(), "{report:#}");
    assert_ne!(code, 3, "{report:#}");
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn a_broken_telemetry_override_is_caught_before_anything_is_recorded() {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.edit_policy(|p| p["resources"] = json!({ "telemetry_override": "missing.json" }));
    let check = env.hermes(&["policy", "check"]);
    check.assert_status(3);
    assert!(check.stderr.contains("missing.json"), "{}", check.stderr);
    let before = env.ledger_events().len();
    env.hermes(&["cycle"]).assert_status(3);
    assert_eq!(env.ledger_events().len(), before, "nothing was appended");

    std::fs::write(env.home().join("missing.json"), r#"{ "mem_free_mb": 10 }"#).unwrap();
    let check = env.hermes(&["policy", "check"]);
    check.assert_status(3);
    assert!(check.stderr.contains("mem_free_mb"), "{}", check.stderr);
}

/// Eight processes at once on one workspace, ticks and cycles mixed, over
/// several rounds of upstream changes: every repository is upgraded exactly
/// once per change, every process's events are in the ledger, and the
/// chain verifies.
#[test]
fn eight_ticks_and_cycles_at_once_upgrade_each_change_once_and_lose_no_event() {
    let env = TestEnv::init();
    let repos = ["alpha", "beta", "gamma", "delta"];
    for name in repos {
        env.make_upstream(name);
        env.add_repo(name, &[]);
    }
    std::fs::write(
        env.home().join("config/jobs.json"),
        r#"{ "format_version": 1, "jobs": [ { "id": "up", "schedule": "1m", "kind": "upgrade-cycle" } ] }"#,
    )
    .unwrap();
    for round in 0..3 {
        let targets: Vec<String> =
            repos.iter().map(|name| env.push_upstream_commit(name, "round.txt", &format!("{round}\n"))).collect();
        // Each round an hour after the last, so the interval job is due again.
        let now = format!("2026-11-25T1{round}:00:00Z");
        let children: Vec<_> = (0..8)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 { &["tick", "--json"] } else { &["cycle", "--json"] };
                let child = env
                    .command(hermes_bin())
                    .env("HERMES_NOW", &now)
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (args[0], child)
            })
            .collect();
        let mut reports = Vec::new();
        for (what, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{what} failed ({:?}): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            reports.push((what, report));
        }
        // Whatever ran or skipped: nobody left a change unapplied for long.
        // A round may end with every runner skipped while another finished;
        // one more cycle settles it and must find nothing left to do twice.
        let settle = env
            .command(hermes_bin())
            .env("HERMES_NOW", format!("2026-11-25T1{round}:05:00Z"))
            .args(["cycle", "--json"])
            .output()
            .unwrap();
        assert!(settle.status.success(), "{}", String::from_utf8_lossy(&settle.stderr));
        for (name, target) in repos.iter().zip(&targets) {
            assert_eq!(&env.head(name), target, "round {round}: {name} is at the new upstream head");
        }

        let events = env.ledger_events();
        for name in repos {
            let upgrades = events.iter().filter(|e| e["kind"] == "repo-upgraded" && e["subject"] == name).count();
            assert_eq!(upgrades, round + 1, "{name}: exactly one upgrade per upstream change");
        }
        // No lost event: every process's start-or-skip and finish is there.
        let has = |tick: &Value, kind: &str| events.iter().any(|e| &e["tick"] == tick && e["kind"] == kind);
        for (what, report) in &reports {
            let tick = &report["tick"];
            let (skip, start, finish) = match *what {
                "tick" => ("tick-skipped", "tick-started", "tick-finished"),
                _ => ("cycle-skipped", "cycle-started", "cycle-finished"),
            };
            if report["skipped"].is_null() {
                assert!(has(tick, start) && has(tick, finish), "{what} {tick}: its events are in the ledger");
            } else {
                assert!(has(tick, skip), "{what} {tick}: its skip is in the ledger");
            }
            for job in report["jobs"].as_array().into_iter().flatten() {
                if let Some(cycle) = job.get("cycle_tick") {
                    assert!(has(cycle, "cycle-finished") || has(cycle, "cycle-skipped"), "{cycle:?}");
                }
            }
        }
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");
        env.hermes(&["verify"]).assert_status(0);
    }
}
