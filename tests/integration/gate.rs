//! The integrity gate: each check, broken between phase 1 and phase 2 (by
//! the cycle's `before_gate` seam, in process), blocks every mutation of the
//! cycle and is named in `control_plane_integrity.json`.

use crate::common::TestEnv;
use hermes::clock::Clock;
use hermes::cycle::{self, CycleError, CycleOptions, CycleReport, Mode};
use hermes::ledger::LedgerError;
use hermes::workspace::Workspace;
use serde_json::Value;

/// `app`, one commit behind.
fn behind() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env
}

fn run_with(env: &TestEnv, hook: fn(&Workspace)) -> CycleReport {
    let options = CycleOptions { mode: Mode::Execute, fetch: true, clock: Clock::System, before_gate: Some(hook) };
    cycle::run(&Workspace::new(env.home()), options, &|_| {}).expect("the cycle runs to its end")
}

fn assert_blocked_by(env: &TestEnv, report: &CycleReport, check: &str) {
    let app = report.repos.iter().find(|r| r.repo == "app").unwrap();
    assert_eq!(app.reason_code, "integrity-gate", "{app:?}");
    assert!(app.reason.contains(check), "{app:?}");
    let integrity: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("control_plane_integrity.json")).unwrap())
            .unwrap();
    assert_eq!(integrity["data"]["ok"], false);
    let failed: Vec<&str> = integrity["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&check), "{failed:?}");
}

#[test]
fn a_clean_cycle_passes_every_check() {
    let env = behind();
    let report = run_with(&env, |_| {});
    assert_eq!(report.repos[0].reason_code, "behind-upstream");
    let integrity: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("control_plane_integrity.json")).unwrap())
            .unwrap();
    assert_eq!(integrity["data"]["ok"], true, "{integrity:#}");
    let names: Vec<&str> =
        integrity["data"]["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "leases-match-reservations",
            "leases-unique",
            "ledger-chain",
            "views-agree-with-ledger",
            "policy-digest",
            "plugin-digests"
        ]
    );
}

#[test]
fn a_policy_changed_after_planning_blocks_the_cycle() {
    let env = behind();
    let before = env.head("app");
    let report = run_with(&env, |ws| {
        let path = ws.policy_path();
        let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        policy["fetch"] = serde_json::json!({ "timeout_secs": 7 });
        std::fs::write(&path, policy.to_string()).unwrap();
    });
    assert_blocked_by(&env, &report, "policy-digest");
    assert_eq!(env.head("app"), before);
    assert!(env.ledger_events().iter().any(|e| e["kind"] == "integrity-failed"));
}

#[test]
fn a_plugin_swapped_after_planning_blocks_the_cycle() {
    let env = behind();
    let dir = env.home().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let scorer = std::path::PathBuf::from(env!("HERMES_PLUGIN_DIR")).join("baseline_scorer.wasm");
    std::fs::copy(&scorer, dir.join("scorer.wasm")).unwrap();
    let digest = hermes::canonical::sha256_hex(&std::fs::read(&scorer).unwrap());
    env.edit_policy(|p| {
        p["plugins"] = serde_json::json!({ "risk-scorer": { "path": "plugins/scorer.wasm", "sha256": digest } })
    });
    let before = env.head("app");
    let report = run_with(&env, |ws| {
        let v2 = std::path::PathBuf::from(env!("HERMES_PLUGIN_DIR")).join("scorer_v2.wasm");
        std::fs::copy(v2, ws.home().join("plugins/scorer.wasm")).unwrap();
    });
    assert_blocked_by(&env, &report, "plugin-digests");
    assert_eq!(env.head("app"), before);
}

#[test]
fn a_ledger_damaged_after_planning_blocks_the_cycle() {
    let env = behind();
    let before = env.head("app");
    let options = CycleOptions {
        mode: Mode::Execute,
        fetch: true,
        clock: Clock::System,
        before_gate: Some(|ws| {
            use std::io::Write;
            let mut file =
                std::fs::OpenOptions::new().append(true).open(ws.state_dir().join("runtime_events.jsonl")).unwrap();
            file.write_all(b"{\"not\": \"an event\"}\n").unwrap();
        }),
    };
    // Nothing can be chained onto the damaged ledger: the cycle stops with
    // the first bad sequence number, after the gate wrote its verdict.
    let error = cycle::run(&Workspace::new(env.home()), options, &|_| {}).expect_err("the cycle stops");
    assert!(matches!(error, CycleError::Ledger(LedgerError::Broken { .. })), "{error}");
    let integrity: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("control_plane_integrity.json")).unwrap())
            .unwrap();
    let chain = integrity["data"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "ledger-chain").unwrap();
    assert_eq!(chain["ok"], false, "{integrity:#}");
    assert_eq!(env.head("app"), before);
    env.hermes(&["verify"]).assert_status(5);
}

#[test]
fn a_view_disagreeing_with_the_ledger_blocks_the_cycle() {
    let env = behind();
    let before = env.head("app");
    let report = run_with(&env, |ws| {
        let path = ws.state_dir().join("global_orchestration_plan.json");
        let mut view: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        view["ledger_head"]["hash"] = Value::String("0".repeat(64));
        std::fs::write(&path, view.to_string()).unwrap();
    });
    assert_blocked_by(&env, &report, "views-agree-with-ledger");
    assert_eq!(env.head("app"), before);
}

#[test]
fn a_lease_lost_after_reserving_blocks_the_cycle() {
    let env = behind();
    let before = env.head("app");
    let report = run_with(&env, |ws| {
        let path = ws.state_dir().join("coordination_leases.json");
        let mut view: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        view["data"]["leases"] = serde_json::json!({});
        std::fs::write(&path, view.to_string()).unwrap();
    });
    assert_blocked_by(&env, &report, "leases-match-reservations");
    assert_eq!(env.head("app"), before);
}
