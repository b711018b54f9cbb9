//! `hermes status` and `hermes graph`: the graph projection read from its
//! checkpoint, and equal to a projection from the first event.

use crate::common::TestEnv;
use serde_json::Value;

/// `core` upgraded, `api` (depends on core) upgraded, `tools` blocked.
fn after_a_cycle() -> TestEnv {
    let env = TestEnv::init();
    for name in ["core", "api", "tools"] {
        env.make_upstream(name);
    }
    env.add_repo("core", &[]);
    env.add_repo("api", &["core"]);
    env.add_repo("tools", &[]);
    env.push_upstream_commit("core", "c.txt", "c\n");
    env.push_upstream_commit("api", "a.txt", "a\n");
    env.push_upstream_commit("tools", "t.txt", "upstream\n");
    env.commit_local("tools", "local.txt", "local\n");
    let (code, _) = env.cycle_json();
    assert_eq!(code, 10, "tools is blocked");
    env
}

#[test]
fn status_reads_the_checkpoint_the_cycle_wrote() {
    let env = after_a_cycle();
    let last = env.ledger_events().last().unwrap()["seq"].as_u64().unwrap();
    let status = env.hermes(&["status", "--json"]).assert_status(0).json();
    assert_eq!(status["ledger_head"]["seq"], last);
    assert_eq!(status["projection"]["resumed_at"], last, "the cycle checkpointed its last event");
    assert_eq!(status["projection"]["events_read"], 0);
    assert_eq!(status["repos"]["core"]["last_outcome"]["outcome"], "upgraded");
    assert_eq!(status["repos"]["core"]["head"], env.head("core"));
    assert_eq!(status["repos"]["tools"]["last_outcome"]["reason_code"], "diverged");
    assert_eq!(status["repos"]["api"]["last_decision"]["recommendation"], "upgrade");
    assert_eq!(status["integrity"]["ok"], true);
    assert!(status["last_tick"]["finished_at"].is_string());
    let text = env.hermes(&["status"]).assert_status(0).stdout.clone();
    assert!(text.contains("integrity gate: ok"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("tools") && l.contains("blocked")), "{text}");

    // Without the checkpoint, the same picture from the first event.
    std::fs::remove_file(env.state_path("graph_checkpoint.json")).unwrap();
    let rebuilt = env.hermes(&["status", "--json"]).assert_status(0).json();
    assert_eq!(rebuilt["projection"]["resumed_at"], 0);
    assert_eq!(rebuilt["projection"]["events_read"], last);
    assert_eq!(rebuilt["repos"], status["repos"]);
    assert_eq!(rebuilt["last_tick"], status["last_tick"]);
}

#[test]
fn a_checkpoint_that_disagrees_with_the_ledger_is_rebuilt() {
    let env = after_a_cycle();
    let path = env.state_path("graph_checkpoint.json");
    let mut checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    checkpoint["data"]["head_offset"] = Value::from(0);
    std::fs::write(&path, serde_json::to_string(&checkpoint).unwrap()).unwrap();
    let status = env.hermes(&["status", "--json"]).assert_status(0).json();
    assert!(status["projection"]["checkpoint_discarded"].is_string(), "{status:#}");
    assert_eq!(status["projection"]["resumed_at"], 0);
    assert_eq!(status["repos"]["core"]["last_outcome"]["outcome"], "upgraded");
}

#[test]
fn graph_at_a_sequence_number_and_as_dot() {
    let env = after_a_cycle();
    let events = env.ledger_events();
    let plan_seq = events.iter().find(|e| e["kind"] == "plan-made").unwrap()["seq"].as_u64().unwrap();
    let at_plan = env.hermes(&["graph", "--at", &plan_seq.to_string()]).assert_status(0).json();
    assert_eq!(at_plan["seq"], plan_seq);
    assert_eq!(at_plan["repos"]["core"]["last_decision"]["recommendation"], "upgrade");
    assert!(at_plan["repos"]["core"]["last_outcome"].is_null(), "phase 2 had not run at the plan");

    let now = env.hermes(&["graph", "--json"]).assert_status(0).json();
    let edges = now["edges"].as_array().unwrap();
    assert!(edges.iter().any(|e| e["from"] == "repo:api" && e["to"] == "repo:core" && e["kind"] == "depends-on"));

    let dot = env.hermes(&["graph", "--format", "dot"]).assert_status(0).stdout.clone();
    assert!(dot.starts_with("digraph hermes {"), "{dot}");
    assert!(dot.contains("\"repo:api\" -> \"repo:core\" [label=\"depends-on\"];"), "{dot}");

    let beyond = env.hermes(&["graph", "--at", "999999"]);
    beyond.assert_status(2);
    assert!(beyond.stderr.contains("the ledger ends at event"), "{}", beyond.stderr);
}

#[test]
fn metrics_count_the_ledger_and_the_cycle_writes_the_textfile() {
    let env = after_a_cycle();
    let text = env.hermes(&["metrics"]).assert_status(0).stdout.clone();
    assert!(text.contains("# TYPE hermes_cycles_total counter\nhermes_cycles_total 1\n"), "{text}");
    assert!(text.contains("hermes_repo_outcomes_total{outcome=\"upgraded\"} 2\n"), "{text}");
    assert!(text.contains("hermes_repo_outcomes_total{outcome=\"blocked\"} 1\n"), "{text}");
    let events = env.ledger_events().len();
    assert!(text.contains(&format!("hermes_ledger_events_total {events}\n")), "{text}");
    assert!(text.contains("hermes_plugin_fuel_used_total{kind=\"risk-scorer\"} "), "{text}");
    let json = env.hermes(&["metrics", "--json"]).assert_status(0).json();
    assert_eq!(json["counters"]["cycles"], 1);

    env.edit_policy(|p| p["metrics"] = serde_json::json!({ "textfile": "metrics.txt" }));
    let bad = env.hermes(&["policy", "check"]);
    bad.assert_status(3);
    assert!(bad.stderr.contains("metrics.textfile"), "{}", bad.stderr);

    env.edit_policy(|p| p["metrics"] = serde_json::json!({ "textfile": "hermes.prom" }));
    env.cycle_json();
    let written = std::fs::read_to_string(env.home().join("hermes.prom")).unwrap();
    assert!(written.contains("hermes_cycles_total 2\n"), "{written}");
    assert_eq!(written, env.hermes(&["metrics"]).assert_status(0).stdout, "the same exposition as `hermes metrics`");
}
