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
