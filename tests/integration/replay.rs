//! `hermes replay`: views rebuilt from the ledger and compared with
//! `state/`, and recorded plugin calls replayed against other components.

use crate::common::TestEnv;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A component built from `plugins/` by the host's build script.
fn component(name: &str) -> PathBuf {
    PathBuf::from(env!("HERMES_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

fn plugin_arg(kind: &str, name: &str) -> String {
    format!("{kind}={}", component(name).display())
}

/// Every file under `dir` with its bytes (git internals included).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// Everything replay must leave alone: `state/` and every repository.
fn untouchable(env: &TestEnv) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = tree(&env.home().join("state"));
    files.extend(tree(&env.home().join("repos")));
    files
}

/// `app` (no dependencies) and `lib` (depends on `app`), three cycles with
/// upstream commits before the first and the third.
fn three_cycles() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.make_upstream("lib");
    env.add_repo("app", &[]);
    env.add_repo("lib", &["app"]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env.push_upstream_commit("lib", "l.txt", "one\n");
    env.cycle_json();
    env.cycle_json();
    env.push_upstream_commit("app", "b.txt", "two\n");
    env.cycle_json();
    env
}

fn replay_json(env: &TestEnv, args: &[&str], status: i32) -> Value {
    let mut all = vec!["replay", "--json"];
    all.extend(args);
    let out = env.hermes(&all);
    out.assert_status(status);
    out.json()
}

fn view<'a>(report: &'a Value, file: &str) -> &'a Value {
    report["views"]
        .as_array()
        .expect("views[]")
        .iter()
        .find(|v| v["file"] == file)
        .unwrap_or_else(|| panic!("no view {file} in {report:#}"))
}

fn differences<'a>(report: &'a Value, file: &str) -> Vec<&'a Value> {
    report["differences"].as_array().expect("differences[]").iter().filter(|d| d["file"] == file).collect()
}

const FOLDS: [&str; 5] = [
    "runtime_intelligence.json",
    "rollback_intelligence.json",
    "auto_safe_upgrade_state.json",
    "auto_safe_upgrade_state_history.jsonl",
    "global_orchestration_plan.json",
];

#[test]
fn after_a_few_cycles_replay_finds_no_difference_and_writes_nothing() {
    let env = three_cycles();
    let before = untouchable(&env);
    let report = replay_json(&env, &[], 0);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["differences"], json!([]), "{report:#}");
    assert_eq!(report["ledger"]["ok"], true);
    let events = env.ledger_events().len() as u64;
    assert_eq!(report["ledger"]["replayed_through"], events);
    // Every plan's decision hash was recomputed and agrees.
    assert_eq!(report["decision_hashes"]["plans"], 3, "{report:#}");
    assert_eq!(report["decision_hashes"]["plans_agree"], 3);
    for file in FOLDS.iter().chain(&[
        "auto_safe_upgrade_summary.json",
        "runtime_resource_telemetry.json",
        "runtime_resource_state.json",
        "control_plane_integrity.json",
        "live_runtime_control_plane.json",
    ]) {
        assert_eq!(view(&report, file)["status"], "agrees", "{file}: {report:#}");
    }
    assert_eq!(view(&report, "auto_safe_upgrade_summary.json")["ignored"], json!(["data.started_at"]));
    for file in ["remote_health.json", "coordination_leases.json", "runtime_topology_graph.json"] {
        let v = view(&report, file);
        assert_eq!(v["derivation"], "not-derivable", "{v:#}");
        assert_eq!(v["status"], "position-agrees", "{v:#}");
    }
    // Text form, same verdict.
    let out = env.hermes(&["replay"]);
    out.assert_status(0);
    assert!(out.stdout.contains("replay: 0 differences"), "{}", out.stdout);
    assert_eq!(untouchable(&env), before, "replay changed state/ or a repository");
}

#[test]
fn a_deleted_view_is_reported_missing_and_rebuilt_as_it_was() {
    let env = three_cycles();
    let out_dir = env.root().join("rebuilt");
    for file in ["runtime_intelligence.json", "auto_safe_upgrade_state.json", "auto_safe_upgrade_state_history.jsonl"] {
        let path = env.state_path(file);
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let report = replay_json(&env, &["--out", out_dir.to_str().unwrap()], 5);
        assert_eq!(report["ok"], false);
        assert_eq!(view(&report, file)["status"], "missing", "{report:#}");
        let diffs = differences(&report, file);
        assert_eq!(diffs.len(), 1, "{report:#}");
        assert_eq!(diffs[0]["problem"], "missing");
        // Only that file differs.
        assert_eq!(report["differences"].as_array().unwrap().len(), 1, "{report:#}");
        // What replay rebuilt is what the cycle had written (but for written_at).
        let rebuilt = std::fs::read_to_string(out_dir.join(file)).unwrap();
        let parse = |text: &str| -> Vec<Value> {
            let values: Vec<Value> = if file.ends_with(".jsonl") {
                text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
            } else {
                vec![serde_json::from_str(text).unwrap()]
            };
            values
                .into_iter()
                .map(|mut v| {
                    v.as_object_mut().unwrap().remove("written_at");
                    v
                })
                .collect()
        };
        assert_eq!(parse(&rebuilt), parse(&original), "{file}: rebuilt\n{rebuilt}\noriginal\n{original}");
        std::fs::write(&path, original).unwrap();
    }
    replay_json(&env, &[], 0);
    // Never into state/.
    let out = env.hermes(&["replay", "--out", env.home().join("state").join("x").to_str().unwrap()]);
    assert_ne!(out.status, 0);
    assert!(out.stderr.contains("replay never writes there"), "{}", out.stderr);
    assert!(!env.state_path("x").exists());
}

#[test]
fn an_edited_number_is_reported_with_its_json_path() {
    let env = three_cycles();
    let path = env.state_path("runtime_intelligence.json");
    let mut view_json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let attempts = view_json["data"]["repos"]["app"]["attempts"].clone();
    assert_eq!(attempts, 2, "app was upgraded twice: {view_json:#}");
    view_json["data"]["repos"]["app"]["attempts"] = json!(42);
    std::fs::write(&path, serde_json::to_string_pretty(&view_json).unwrap()).unwrap();

    let report = replay_json(&env, &[], 5);
    assert_eq!(view(&report, "runtime_intelligence.json")["status"], "differs");
    let diffs = differences(&report, "runtime_intelligence.json");
    assert_eq!(diffs.len(), 1, "{report:#}");
    assert_eq!(diffs[0]["path"], "data.repos.app.attempts");
    assert_eq!(diffs[0]["expected"], 2);
    assert_eq!(diffs[0]["found"], 42);
    let out = env.hermes(&["replay"]);
    out.assert_status(5);
    assert!(
        out.stdout.contains("runtime_intelligence.json data.repos.app.attempts: expected 2, found 42"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("replay found 1 difference between state/ and the ledger"), "{}", out.stderr);
}

#[test]
fn a_tampered_ledger_line_is_reported_and_never_replayed_past() {
    let env = three_cycles();
    let mut lines = env.ledger_lines();
    // Edit an outcome event of the second cycle without re-hashing it.
    let index = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"kind\":\"repo-noop\""))
        .map(|(i, _)| i)
        .nth(1)
        .expect("a second repo-noop event");
    let seq = index as u64 + 1;
    lines[index] = lines[index].replace("\"outcome\":\"noop\"", "\"outcome\":\"upgraded\"");
    env.write_ledger_lines(&lines);

    let report = replay_json(&env, &[], 5);
    assert_eq!(report["ok"], false);
    assert_eq!(report["ledger"]["ok"], false);
    assert_eq!(report["ledger"]["broken"]["first_bad_seq"], seq, "{report:#}");
    assert_eq!(report["ledger"]["replayed_through"], seq - 1);
    for v in report["views"].as_array().unwrap() {
        assert_eq!(v["status"], "not-compared", "{v:#}");
    }
    let out = env.hermes(&["replay"]);
    out.assert_status(5);
    assert!(out.stderr.contains(&format!("first bad sequence number {seq}")), "{}", out.stderr);
    assert!(out.stdout.contains(&format!("replayed through sequence number {} only", seq - 1)), "{}", out.stdout);

    // A deleted line: the chain breaks at the line after the gap.
    let env = three_cycles();
    let mut lines = env.ledger_lines();
    lines.remove(9);
    env.write_ledger_lines(&lines);
    let report = replay_json(&env, &[], 5);
    assert_eq!(report["ledger"]["broken"]["first_bad_seq"], 10, "{report:#}");
    assert_eq!(report["ledger"]["replayed_through"], 9);
}

#[test]
fn a_decision_hash_that_does_not_match_its_decisions_is_reported() {
    let env = three_cycles();
    // Change a plan's decision hash and re-chain the ledger from there, as a
    // writer bug would: the chain verifies, the hash does not.
    let mut events = env.ledger_events();
    let plan_index = events.iter().position(|e| e["kind"] == "plan-made").unwrap();
    events[plan_index]["payload"]["decision_hash"] = json!("0".repeat(64));
    let mut prev = events[plan_index - 1]["hash"].as_str().unwrap().to_owned();
    for event in &mut events[plan_index..] {
        event["prev_hash"] = json!(prev);
        let mut bare = event.clone();
        bare.as_object_mut().unwrap().remove("hash");
        prev = hermes::canonical::sha256_hex(hermes::canonical::to_canonical_string(&bare).as_bytes());
        event["hash"] = json!(prev);
    }
    env.write_ledger_lines(&events.iter().map(|e| e.to_string()).collect::<Vec<_>>());
    let report = replay_json(&env, &[], 5);
    assert_eq!(report["ledger"]["ok"], true, "{report:#}");
    assert_eq!(report["decision_hashes"]["plans_agree"], 2, "{report:#}");
    let diffs = differences(&report, "runtime_events.jsonl");
    let seq = plan_index + 1;
    assert!(
        diffs
            .iter()
            .any(|d| d["path"] == format!("seq {seq}: payload.decision_hash") && d["problem"] == "decision-hash"),
        "{report:#}"
    );
}

/// `app` 5 commits behind (one new file each), `web` 1 behind and depending
/// on `app`, `lib` up to date; one cycle.
///
/// The baseline scorer gives a repository never attempted 10 per commit
/// behind, 2 per changed path, 150 for the failure probability (500000 ppm
/// of 300) and 50 for low confidence: app 50+10+200 = 260, web 10+2+200 =
/// 212, both under `threshold.defer` 400. scorer-v2 weighs a commit 20 and
/// defers from 300: app 100+10+200 = 310 (defer), web 222 (upgrade on its
/// own, but its dependency is deferred).
fn scored_workspace() -> TestEnv {
    let env = TestEnv::init();
    for name in ["app", "web", "lib"] {
        env.make_upstream(name);
    }
    env.add_repo("app", &[]);
    env.add_repo("web", &["app"]);
    env.add_repo("lib", &[]);
    for i in 1..=5 {
        env.push_upstream_commit("app", &format!("f{i}.txt"), &format!("{i}\n"));
    }
    env.push_upstream_commit("web", "w.txt", "w\n");
    env.cycle_json();
    env
}

fn recorded_risks(env: &TestEnv) -> BTreeMap<String, u64> {
    let plan = env.ledger_events().into_iter().find(|e| e["kind"] == "plan-made").unwrap();
    plan["payload"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["repo"].as_str().unwrap().to_owned(), d["risk"].as_u64().unwrap()))
        .collect()
}

#[test]
fn replaying_the_recorded_components_changes_nothing() {
    let env = scored_workspace();
    env.push_upstream_commit("lib", "l.txt", "l\n");
    env.cycle_json();
    let before = untouchable(&env);
    for (kind, name) in [
        ("risk-scorer", "baseline_scorer"),
        ("repo-probe", "baseline_probe"),
        ("federation-selector", "baseline_selector"),
    ] {
        let report = replay_json(&env, &["--plugin", &plugin_arg(kind, name)], 0);
        assert_eq!(report["kind"], kind);
        assert_eq!(report["cycles_in_ledger"], 2);
        let totals = &report["totals"];
        assert!(totals["calls"].as_u64().unwrap() > 0, "{kind}: {report:#}");
        assert_eq!(totals["outputs_changed"], 0, "{kind}: {report:#}");
        assert_eq!(totals["decisions_changed"], 0, "{kind}: {report:#}");
        assert_eq!(totals["undetermined"], 0, "{kind}: {report:#}");
        assert_eq!(totals["now_fail"], 0);
        for cycle in report["cycles"].as_array().unwrap() {
            assert_eq!(cycle["baseline_matches"], true, "{cycle:#}");
            assert_eq!(cycle["new_hash"], cycle["recorded_hash"], "{cycle:#}");
            assert_eq!(cycle["hash_changed"], false);
        }
        for call in report["calls"].as_array().unwrap() {
            assert_eq!(call["replayed"]["output"], call["recorded"]["output"], "{call:#}");
            assert_eq!(call["replayed"]["fuel_used"], call["recorded"]["fuel_used"], "{call:#}");
        }
    }
    assert_eq!(untouchable(&env), before, "replay --plugin changed state/ or a repository");
}

#[test]
fn scorer_v2_changes_exactly_what_its_weights_imply() {
    let env = scored_workspace();
    assert_eq!(recorded_risks(&env), BTreeMap::from([("app".into(), 260), ("lib".into(), 0), ("web".into(), 212)]));
    let before = untouchable(&env);
    let report = replay_json(&env, &["--plugin", &plugin_arg("risk-scorer", "scorer_v2")], 0);
    assert_eq!(untouchable(&env), before);
    assert_eq!(report["component"]["version"], "2.0.0");
    let cycles = report["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1);
    let cycle = &cycles[0];
    assert_eq!(cycle["baseline_matches"], true);
    assert_eq!(cycle["hash_changed"], true, "{cycle:#}");
    assert_ne!(cycle["new_hash"], cycle["recorded_hash"]);
    let changes: Vec<Value> = cycle["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!([
                c["repo"],
                c["recommendation"]["old"],
                c["recommendation"]["new"],
                c["risk"]["old"],
                c["risk"]["new"],
                c["risk"]["delta"],
                c["reason_code"]["old"],
                c["reason_code"]["new"]
            ])
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            json!(["app", "upgrade", "defer", 260, 310, 50, "behind-upstream", "risk-deferred"]),
            json!(["web", "upgrade", "defer", 212, 222, 10, "behind-upstream", "dependency-deferred"]),
        ],
        "{cycle:#}"
    );
    // Every scorer call: 10 more per commit behind, nothing else.
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "lib is up to date and not scored: {report:#}");
    for call in calls {
        let old_risk = call["recorded"]["output"]["risk"].as_u64().unwrap();
        let input_behind = env
            .ledger_events()
            .into_iter()
            .find(|e| e["seq"] == call["seq"])
            .map(|e| e["payload"]["input"]["repo"]["behind"].as_u64().unwrap())
            .unwrap();
        assert_eq!(call["replayed"]["output"]["risk"].as_u64().unwrap(), old_risk + 10 * input_behind, "{call:#}");
        assert_eq!(call["output_changed"], true);
    }
    // The text form says the same.
    let out = env.hermes(&["replay", "--plugin", &plugin_arg("risk-scorer", "scorer_v2")]);
    out.assert_status(0);
    assert!(out.stdout.contains("upgrade -> defer"), "{}", out.stdout);
    assert!(out.stdout.contains("260 -> 310 (+50)"), "{}", out.stdout);
    assert!(out.stdout.contains("behind-upstream -> dependency-deferred"), "{}", out.stdout);
}

#[test]
fn a_replayed_call_gives_what_plugin_test_gives_for_the_same_input() {
    let env = scored_workspace();
    let report = replay_json(&env, &["--plugin", &plugin_arg("risk-scorer", "scorer_v2")], 0);
    let call = &report["calls"][0];
    let input = env.ledger_events().into_iter().find(|e| e["seq"] == call["seq"]).unwrap()["payload"]["input"].clone();
    let fixture = env.root().join("case.json");
    let case = json!([{ "name": "recorded", "input": input, "expect": { "ok": call["replayed"]["output"] } }]);
    std::fs::write(&fixture, case.to_string()).unwrap();
    let scorer = component("scorer_v2");
    let out =
        env.hermes(&["plugin", "test", scorer.to_str().unwrap(), "--fixtures", fixture.to_str().unwrap(), "--json"]);
    out.assert_status(0);
    let tested = out.json();
    assert_eq!(tested["cases"][0]["passed"], true, "{tested:#}");
    assert_eq!(tested["cases"][0]["actual"]["ok"], call["replayed"]["output"]);
    assert_eq!(tested["cases"][0]["fuel_used"], call["replayed"]["fuel_used"]);
}

#[test]
fn cycles_are_selected_by_number_and_failing_calls_are_reported() {
    let env = scored_workspace();
    env.cycle_json(); // cycle 2: everything up to date, nothing scored
    env.push_upstream_commit("lib", "l.txt", "l\n");
    env.cycle_json(); // cycle 3: lib 1 behind
    let report = replay_json(&env, &["--plugin", &plugin_arg("risk-scorer", "scorer_v2"), "--cycles", "2..3"], 0);
    assert_eq!(report["cycles_in_ledger"], 3);
    assert_eq!(report["range"], "2..3");
    let numbers: Vec<u64> = report["cycles"].as_array().unwrap().iter().map(|c| c["cycle"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![2, 3]);
    assert_eq!(report["cycles"][0]["calls"], 0);
    assert_eq!(report["cycles"][0]["hash_changed"], false);
    let lib = &report["cycles"][1]["changes"][0];
    assert_eq!(lib["repo"], "lib", "{report:#}");
    assert_eq!((lib["risk"]["old"].as_u64(), lib["risk"]["delta"].as_i64()), (Some(212), Some(10)), "{lib:#}");
    assert_eq!(lib["recommendation"]["new"], "upgrade");
    let only_first = replay_json(&env, &["--plugin", &plugin_arg("risk-scorer", "scorer_v2"), "--cycles", "..1"], 0);
    assert_eq!(only_first["cycles"].as_array().unwrap().len(), 1);
    assert_eq!(only_first["cycles"][0]["cycle"], 1);
    env.hermes(&["replay", "--plugin", &plugin_arg("risk-scorer", "scorer_v2"), "--cycles", "3..2"]).assert_status(2);
    env.hermes(&["replay", "--cycles", "1"]).assert_status(2);

    // A scorer that spins: every call now runs out of fuel, and the repos it scored are deferred.
    let report = replay_json(&env, &["--plugin", &plugin_arg("risk-scorer", "spin_scorer"), "--cycles", "1"], 0);
    assert_eq!(report["totals"]["now_fail"], 2, "{report:#}");
    for call in report["calls"].as_array().unwrap() {
        assert_eq!(call["replayed"]["outcome"], "out-of-fuel", "{call:#}");
        assert_eq!(call["replayed"]["fuel_used"], call["replayed"]["fuel_limit"]);
    }
    let app = &report["cycles"][0]["changes"][0];
    assert_eq!((app["repo"].as_str(), app["reason_code"]["new"].as_str()), (Some("app"), Some("plugin-failed")));
    assert_eq!(app["recommendation"]["new"], "defer");

    // A component of another kind is refused.
    let out = env.hermes(&["replay", "--plugin", &plugin_arg("repo-probe", "scorer_v2")]);
    out.assert_status(3);
    assert!(out.stderr.contains("implements risk-scorer, not repo-probe"), "{}", out.stderr);
}
