//! Canary and health checks around the guarded apply, and rollback.

use crate::common::{TestEnv, row};
use serde_json::json;

/// `app`, two commits behind; the second incoming commit adds `b.txt`.
fn behind() -> (TestEnv, String, String) {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    let target = env.push_upstream_commit("app", "b.txt", "two\n");
    let before = env.head("app");
    (env, before, target)
}

fn kinds(env: &TestEnv) -> Vec<String> {
    env.ledger_events().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

fn leftover_canary_dirs(env: &TestEnv) -> usize {
    std::fs::read_dir(env.home().join("tmp")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_passing_canary_sees_the_candidate_and_the_upgrade_goes_ahead() {
    let (env, _, target) = behind();
    env.edit_policy(|p| p["checks"] = json!({ "canary": { "argv": ["sh", "-c", "test -f b.txt && test \"$HERMES_REPO\" = app"], "timeout_secs": 30 } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    assert_eq!(env.head("app"), target);
    let kinds = kinds(&env);
    let planned = kinds.iter().position(|k| k == "rollback-planned").expect("rollback plan recorded");
    let canary = kinds.iter().position(|k| k == "canary-run").expect("canary recorded");
    let upgraded = kinds.iter().position(|k| k == "repo-upgraded").unwrap();
    assert!(planned < canary && canary < upgraded, "{kinds:?}");
    assert_eq!(leftover_canary_dirs(&env), 0, "the temporary checkout is removed");
}

#[test]
fn a_failing_canary_blocks_without_touching_the_repo() {
    let (env, before, _) = behind();
    env.edit_policy(|p| p["repos"][0]["canary"] = json!({ "argv": ["sh", "-c", "echo broken >&2; exit 7"] }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10, "{report:#}");
    let app = row(&report, "app");
    assert_eq!(app["outcome"], "blocked");
    assert_eq!(app["reason_code"], "canary-failed");
    assert!(app["reason"].as_str().unwrap().contains("exited with code 7"), "{app:#}");
    assert_eq!(env.head("app"), before);
    assert_eq!(env.git(&env.repo_path("app"), &["status", "--porcelain"]), "");
    let canary = env.ledger_events().into_iter().find(|e| e["kind"] == "canary-run").unwrap();
    assert_eq!(canary["payload"]["result"]["exit_code"], 7, "{canary:#}");
    assert!(canary["payload"]["result"]["stderr_tail"].as_str().unwrap().contains("broken"));
    assert_eq!(leftover_canary_dirs(&env), 0);
}

#[test]
fn a_hanging_canary_is_killed_at_its_timeout() {
    let (env, before, _) = behind();
    env.edit_policy(|p| p["checks"] = json!({ "canary": { "argv": ["sleep", "30"], "timeout_secs": 1 } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10);
    assert!(row(&report, "app")["reason"].as_str().unwrap().contains("timed out"), "{report:#}");
    assert_eq!(env.head("app"), before);
}

#[test]
fn a_failing_health_check_rolls_back_to_the_recorded_head() {
    let (env, before, target) = behind();
    env.edit_policy(|p| p["checks"] = json!({ "health": { "argv": ["sh", "-c", "test -f b.txt && exit 1"] } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10, "{report:#}");
    let app = row(&report, "app");
    assert_eq!(app["outcome"], "failed");
    assert_eq!(app["reason_code"], "health-check-failed");
    assert_eq!(app["head_after"], before.as_str());
    assert_eq!(env.head("app"), before, "rolled back");
    assert_eq!(env.git(&env.repo_path("app"), &["status", "--porcelain"]), "");
    assert!(!env.repo_path("app").join("b.txt").exists());
    let rolled = env.ledger_events().into_iter().find(|e| e["kind"] == "rolled-back").expect("rollback recorded");
    assert_eq!(rolled["payload"]["ok"], true);
    assert_eq!(rolled["payload"]["from"], target.as_str());
    assert_eq!(rolled["payload"]["to"], before.as_str());
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn a_passing_health_check_keeps_the_upgrade() {
    let (env, _, target) = behind();
    env.edit_policy(|p| p["checks"] = json!({ "health": { "argv": ["test", "-f", "b.txt"] } }));
    let (code, _) = env.cycle_json();
    assert_eq!(code, 0);
    assert_eq!(env.head("app"), target);
}

#[test]
fn an_empty_check_command_is_a_config_error() {
    let (env, _, _) = behind();
    env.edit_policy(|p| p["checks"] = json!({ "canary": { "argv": [] } }));
    let out = env.hermes(&["cycle"]);
    out.assert_status(3);
    assert!(out.stderr.contains("checks.canary.argv"), "{}", out.stderr);
}

#[test]
fn the_rollback_plan_is_in_its_view_before_the_apply() {
    let (env, before, target) = behind();
    // The canary runs after the plan is recorded and before the apply: it
    // sees the plan in rollback_intelligence.json.
    let view = env.state_path("rollback_intelligence.json");
    let script = format!("grep -q '\"previous_head\": \"{before}\"' {}", view.display());
    env.edit_policy(|p| p["checks"] = json!({ "canary": { "argv": ["sh", "-c", script] } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(env.head("app"), target);
}

#[test]
fn a_dependency_failing_after_its_apply_blocks_its_dependents() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("api");
    env.add_repo("core", &[]);
    env.add_repo("api", &["core"]);
    env.push_upstream_commit("core", "c.txt", "c\n");
    env.push_upstream_commit("api", "a.txt", "a\n");
    let api_before = env.head("api");
    env.edit_policy(|p| p["repos"][0]["health"] = json!({ "argv": ["false"] }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10);
    assert_eq!(row(&report, "core")["outcome"], "failed");
    assert_eq!(row(&report, "api")["outcome"], "blocked");
    assert_eq!(row(&report, "api")["reason_code"], "dependency-failed");
    assert_eq!(env.head("api"), api_before);
}

#[test]
fn a_remote_budget_of_one_serializes_the_lanes() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    for name in names {
        env.make_upstream(name);
        env.add_repo(name, &[]);
        env.push_upstream_commit(name, "x.txt", "x\n");
    }
    let log = env.root().join("intervals.log");
    // Each health check records when it starts and ends; with a budget of 1
    // on `origin` no two may overlap, though four lanes are available.
    let script = format!("echo start $(date +%s%N) >> {0}; sleep 0.3; echo end $(date +%s%N) >> {0}", log.display());
    env.edit_policy(|p| {
        p["checks"] = json!({ "health": { "argv": ["sh", "-c", script] } });
        p["coordination"] = json!({ "remote_budgets": { "origin": 1 } });
        p["resources"] = json!({ "max_lanes": 4, "load_milli_per_core": { "elevated": 999998, "high": 999999, "critical": 1000000 } });
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for pair in lines.chunks(2) {
        assert!(pair[0].starts_with("start") && pair[1].starts_with("end"), "overlapping use of one remote:\n{text}");
    }
}
