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

/// Four repositories `names`, each cloned from the one bare upstream
/// `shared` (so their `origin` has one URL), one commit behind it.
fn clones_of_one_upstream(env: &TestEnv, names: &[&str]) -> String {
    env.make_upstream("shared");
    let bare = env.upstream_path("shared");
    for name in names {
        let clone = env.repo_path(name);
        env.git(env.root(), &["clone", "--quiet", bare.to_str().unwrap(), clone.to_str().unwrap()]);
        env.add_repo(name, &[]);
    }
    env.push_upstream_commit("shared", "x.txt", "x\n")
}

/// Four lanes whatever the machine's load.
fn four_lanes() -> serde_json::Value {
    json!({ "max_lanes": 4, "load_milli_per_core": { "elevated": 999998, "high": 999999, "critical": 1000000 } })
}

/// A health check that logs its start and end (ns) to `log`, sleeping between.
fn logging_health_check(log: &std::path::Path) -> serde_json::Value {
    let script = format!("echo start $(date +%s%N) >> {0}; sleep 0.3; echo end $(date +%s%N) >> {0}", log.display());
    json!({ "health": { "argv": ["sh", "-c", script] } })
}

/// (start, end) of each health check logged by [`logging_health_check`].
fn intervals(log: &std::path::Path) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for line in text.lines() {
        let (word, ns) = line.split_once(' ').unwrap();
        let ns: u128 = ns.parse().unwrap();
        if word == "start" { starts.push(ns) } else { ends.push(ns) }
    }
    starts.sort();
    ends.sort();
    assert_eq!(starts.len(), ends.len(), "{text}");
    starts.into_iter().zip(ends).collect()
}

#[test]
fn a_remote_budget_of_one_serializes_the_lanes() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    let target = clones_of_one_upstream(&env, &names);
    let log = env.root().join("intervals.log");
    // Each health check records when it starts and ends; with a budget of 1
    // on `origin` (a name entry: it caps each URL reached through a remote
    // named `origin`, and all four share one URL) no two may overlap, though
    // four lanes are available.
    env.edit_policy(|p| {
        p["checks"] = logging_health_check(&log);
        p["coordination"] = json!({ "remote_budgets": { "origin": 1 } });
        p["resources"] = four_lanes();
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    for name in names {
        assert_eq!(env.head(name), target, "{name}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for pair in lines.chunks(2) {
        assert!(pair[0].starts_with("start") && pair[1].starts_with("end"), "overlapping use of one remote:\n{text}");
    }
}

#[test]
fn remotes_of_one_name_at_different_urls_do_not_share_a_budget() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    for name in names {
        env.make_upstream(name);
        env.add_repo(name, &[]);
        env.push_upstream_commit(name, "x.txt", "x\n");
    }
    let log = env.root().join("intervals.log");
    // `origin: 1` caps each URL reached through `origin`; the four URLs
    // differ, so the four health checks may run at once.
    env.edit_policy(|p| {
        p["checks"] = logging_health_check(&log);
        p["coordination"] = json!({ "remote_budgets": { "origin": 1 } });
        p["resources"] = four_lanes();
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    let intervals = intervals(&log);
    assert_eq!(intervals.len(), 4);
    // Sorted starts and ends: some check started before an earlier one ended.
    let overlapped = intervals.windows(2).any(|w| w[1].0 < w[0].1);
    assert!(overlapped, "different URLs were serialized as if they shared a budget: {intervals:?}");
}

#[test]
fn a_budget_keyed_by_url_wins_over_one_keyed_by_name() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    let target = clones_of_one_upstream(&env, &names);
    let url = env.upstream_path("shared").to_str().unwrap().to_owned();
    let log = env.root().join("intervals.log");
    // The name entry alone would let all four run; the URL entry caps them at 1.
    env.edit_policy(|p| {
        p["checks"] = logging_health_check(&log);
        p["coordination"] = json!({ "remote_budgets": { "origin": 4, url: 1 } });
        p["resources"] = four_lanes();
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    for name in names {
        assert_eq!(env.head(name), target, "{name}");
    }
    let intervals = intervals(&log);
    assert_eq!(intervals.len(), 4);
    for w in intervals.windows(2) {
        assert!(w[1].0 >= w[0].1, "two health checks of one URL overlapped: {intervals:?}");
    }
}
