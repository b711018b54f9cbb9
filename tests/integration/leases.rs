//! Leases across processes: a foreign active lease wins, an expired one is
//! taken over after the lock delay, dependents of a refused repo are blocked,
//! and every lease of a cycle is released at its end.

use crate::common::{TestEnv, row};
use serde_json::{Value, json};

fn behind_pair() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("api");
    env.add_repo("core", &[]);
    env.add_repo("api", &["core"]);
    env.push_upstream_commit("core", "c.txt", "c\n");
    env.push_upstream_commit("api", "a.txt", "a\n");
    env
}

/// Writes a lease table holding `core` for another process until `expires_at`.
fn foreign_lease(env: &TestEnv, expires_at: &str) {
    let lease = json!({
        "key": "core",
        "holder": { "host": "elsewhere", "pid": 4242, "tick": "20260101T000000000Z-1" },
        "acquired_at": "2026-01-01T00:00:00Z",
        "renewed_at": "2026-01-01T00:00:00Z",
        "expires_at": expires_at,
        "ttl_secs": 900,
        "transitions": 1,
        "fencing_token": 41
    });
    let view = json!({
        "format_version": 1,
        "view": "coordination_leases",
        "written_at": "2026-01-01T00:00:00Z",
        "ledger_head": { "seq": 0, "hash": "0".repeat(64) },
        "data": { "leases": { "core": lease }, "fencing_high_water": 41 }
    });
    std::fs::create_dir_all(env.home().join("state")).unwrap();
    std::fs::write(env.state_path("coordination_leases.json"), serde_json::to_string_pretty(&view).unwrap()).unwrap();
}

fn leases_view(env: &TestEnv) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.state_path("coordination_leases.json")).unwrap()).unwrap()
}

#[test]
fn a_foreign_active_lease_wins_and_dependents_are_blocked() {
    let env = behind_pair();
    foreign_lease(&env, "2999-01-01T00:00:00Z");
    let (core_before, api_before) = (env.head("core"), env.head("api"));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(row(&report, "core")["outcome"], "deferred");
    assert_eq!(row(&report, "core")["reason_code"], "lease-held");
    assert!(row(&report, "core")["reason"].as_str().unwrap().contains("pid 4242"));
    assert_eq!(row(&report, "api")["outcome"], "blocked");
    assert_eq!(row(&report, "api")["reason_code"], "dependency-not-granted");
    assert_eq!((env.head("core"), env.head("api")), (core_before, api_before));
    assert!(env.ledger_events().iter().any(|e| e["kind"] == "lease-conflict" && e["subject"] == "core"));
    // The foreign lease is untouched.
    assert_eq!(leases_view(&env)["data"]["leases"]["core"]["fencing_token"], 41);
}

#[test]
fn an_expired_lease_is_taken_over_with_a_higher_token_and_released() {
    let env = behind_pair();
    foreign_lease(&env, "2000-01-01T00:00:00Z");
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "core")["outcome"], "upgraded");
    assert_eq!(row(&report, "api")["outcome"], "upgraded");
    let events = env.ledger_events();
    let takeover = events.iter().find(|e| e["kind"] == "lease-takeover").expect("takeover recorded");
    assert_eq!(takeover["payload"]["took_over"]["holder"]["pid"], 4242);
    assert!(takeover["payload"]["lease"]["fencing_token"].as_u64().unwrap() > 41);
    let released: Vec<&Value> = events.iter().filter(|e| e["kind"] == "lease-released").collect();
    assert_eq!(released.len(), 2);
    let view = leases_view(&env);
    assert_eq!(view["data"]["leases"], json!({}), "no lease outlives the cycle");
    assert!(view["data"]["fencing_high_water"].as_u64().unwrap() >= 43);
    let consensus: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("runtime_consensus_state.json")).unwrap())
            .unwrap();
    assert_eq!(consensus["data"]["quorum"], false);
}

#[test]
fn two_cycles_started_together_upgrade_each_repo_exactly_once() {
    let env = behind_pair();
    let targets = (env.upstream_head("core"), env.upstream_head("api"));
    let spawn = || {
        let mut cmd = env.command(crate::common::hermes_bin());
        cmd.args(["cycle", "--json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut upgraded = 0;
    for out in &outputs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        upgraded += report["repos"].as_array().unwrap().iter().filter(|r| r["outcome"] == "upgraded").count();
    }
    assert_eq!(upgraded, 2, "each repo upgraded exactly once across both cycles");
    assert_eq!((env.head("core"), env.head("api")), targets);
    let upgrades = env.ledger_events().iter().filter(|e| e["kind"] == "repo-upgraded").count();
    assert_eq!(upgrades, 2);
    env.hermes(&["verify"]).assert_status(0);
}
