//! Federation and resource pressure on real repositories: fail-over from an
//! unreachable primary to a mirror, remote health and circuit breaking,
//! logical promotion (git config untouched), and critical pressure deferring
//! every lane through a telemetry override file.

use crate::common::{TestEnv, row};
use serde_json::{Value, json};

const DEAD: &str = "http://127.0.0.1:9/dead.git";

/// `app` behind its upstream; `origin` points nowhere, `mirror` at the upstream.
fn with_dead_primary() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    let repo = env.repo_path("app");
    env.git(&repo, &["remote", "add", "mirror", env.upstream_path("app").to_str().unwrap()]);
    env.git(&repo, &["remote", "set-url", "origin", DEAD]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env.edit_policy(|p| {
        p["repos"][0]["remotes"] =
            json!([{ "name": "origin", "role": "primary" }, { "name": "mirror", "role": "mirror" }]);
    });
    env
}

fn view(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.state_path(name)).unwrap()).unwrap()
}

#[test]
fn a_transient_failure_falls_over_to_the_mirror_and_is_recorded() {
    let env = with_dead_primary();
    let target = env.upstream_head("app");
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    assert_eq!(env.head("app"), target);
    let health = view(&env, "remote_health.json");
    assert_eq!(health["data"]["remotes"][DEAD]["consecutive_failures"], 1, "{health:#}");
    assert_eq!(health["data"]["remotes"][DEAD]["last_failure"], "network");
    let federation = view(&env, "remote_federation_state.json");
    assert_eq!(federation["data"]["selected"]["app"]["remote"], "mirror");
    assert_eq!(federation["data"]["selected"]["app"]["promoted"], true);
    assert!(env.ledger_events().iter().any(|e| e["kind"] == "remote-promoted"));
    // Promotion is logical: git's remote config is unchanged.
    assert_eq!(env.git(&env.repo_path("app"), &["remote", "get-url", "origin"]).trim(), DEAD);
}

#[test]
fn the_circuit_opens_after_repeated_failures_and_the_selector_skips_it() {
    let env = with_dead_primary();
    for _ in 0..3 {
        env.cycle_json();
    }
    let health = view(&env, "remote_health.json");
    assert_eq!(health["data"]["remotes"][DEAD]["circuit"], "open", "{health:#}");
    assert!(env.ledger_events().iter().any(|e| e["kind"] == "remote-health-changed"));
    env.push_upstream_commit("app", "b.txt", "two\n");
    let (_, report) = env.cycle_json();
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    // With the primary's circuit open, the selector ranks the mirror first:
    // the dead remote is not tried again while it cools down.
    let after = view(&env, "remote_health.json");
    assert_eq!(after["data"]["remotes"][DEAD]["attempts"], health["data"]["remotes"][DEAD]["attempts"]);
}

#[test]
fn critical_pressure_defers_every_lane() {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    std::fs::write(env.home().join("telemetry.json"), r#"{ "mem_free_mib": 10 }"#).unwrap();
    env.edit_policy(|p| p["resources"] = json!({ "telemetry_override": "telemetry.json" }));
    let before = env.head("app");
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "deferred");
    assert_eq!(row(&report, "app")["reason_code"], "resource-pressure");
    assert_eq!(env.head("app"), before);
    let state = view(&env, "runtime_resource_state.json");
    assert_eq!(state["data"]["level"], "critical");
    assert_eq!(state["data"]["lanes"], 0);
    let telemetry = view(&env, "runtime_resource_telemetry.json");
    assert_eq!(telemetry["data"]["mem_free_mib"], 10);
    assert_eq!(telemetry["data"]["overridden"], json!(["mem_free_mib"]));
}

#[test]
fn a_broken_telemetry_override_is_a_config_error() {
    let env = TestEnv::init();
    env.edit_policy(|p| p["resources"] = json!({ "telemetry_override": "missing.json" }));
    let out = env.hermes(&["cycle"]);
    out.assert_status(3);
    assert!(out.stderr.contains("missing.json"), "{}", out.stderr);
}

#[test]
fn both_remotes_down_is_transient_and_deferred() {
    let env = with_dead_primary();
    env.git(&env.repo_path("app"), &["remote", "set-url", "mirror", "http://127.0.0.1:9/mirror.git"]);
    let before = env.head("app");
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "deferred");
    assert_eq!(row(&report, "app")["reason_code"], "fetch-network");
    assert_eq!(env.head("app"), before);
}
