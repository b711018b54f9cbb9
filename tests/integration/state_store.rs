//! The state views in `state/`: a corrupt view is quarantined and rebuilt
//! from the ledger; a view from a newer Hermes stops every writer.

use crate::common::TestEnv;
use serde_json::Value;

const STATE_VIEW: &str = "auto_safe_upgrade_state.json";

fn one_cycle() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    env.hermes(&["cycle"]).assert_status(0);
    env
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn cycle_writes_views_that_reflect_the_ledger_head() {
    let env = one_cycle();
    let head = env.ledger_events().last().unwrap().clone();
    for view in [STATE_VIEW, "auto_safe_upgrade_summary.json"] {
        let json = read_json(&env.state_path(view));
        assert_eq!(json["format_version"], 1, "{view}");
        assert_eq!(json["view"], view.trim_end_matches(".json"));
        assert_eq!(json["ledger_head"]["seq"], head["seq"], "{view}");
        assert_eq!(json["ledger_head"]["hash"], head["hash"], "{view}");
    }
    let state = read_json(&env.state_path(STATE_VIEW));
    assert_eq!(state["data"]["repos"]["core"]["last_outcome"], "upgraded");
    assert_eq!(state["data"]["repos"]["core"]["upgrades"], 1);
    assert_eq!(state["data"]["repos"]["core"]["head"], env.head("core").as_str());
    let plan = read_json(&env.state_path("global_orchestration_plan.json"));
    assert_eq!(plan["data"]["decisions"][0]["repo"], "core");
    let history = std::fs::read_to_string(env.state_path("auto_safe_upgrade_state_history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1);
}

#[test]
fn corrupt_state_view_is_kept_aside_and_rebuilt_from_the_ledger() {
    let env = one_cycle();
    let seq_before = env.ledger_lines().len();
    let garbage = b"{ this is not json \x00\xff".to_vec();
    std::fs::write(env.state_path(STATE_VIEW), &garbage).unwrap();

    env.hermes(&["cycle"]).assert_status(0);

    let aside = env.state_path(&format!("{STATE_VIEW}.corrupt-{seq_before}"));
    assert_eq!(std::fs::read(&aside).unwrap(), garbage, "the bad file is kept as {}", aside.display());
    let rebuilt: Vec<Value> = env.ledger_events().into_iter().filter(|e| e["kind"] == "state-view-rebuilt").collect();
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(rebuilt[0]["payload"]["why"], "corrupt");
    assert_eq!(rebuilt[0]["payload"]["view"], STATE_VIEW);
    assert_eq!(rebuilt[0]["payload"]["kept_as"], format!("{STATE_VIEW}.corrupt-{seq_before}"));

    let view = read_json(&env.state_path(STATE_VIEW));
    assert_eq!(view["format_version"], 1);
    assert_eq!(view["view"], "auto_safe_upgrade_state");
    assert_eq!(view["ledger_head"]["seq"], env.ledger_lines().len());
    let core = &view["data"]["repos"]["core"];
    assert_eq!(core["upgrades"], 1, "the first cycle's upgrade was folded back in from the ledger: {view:#}");
    assert_eq!(core["noops"], 1);
    assert_eq!(core["last_outcome"], "noop");
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn missing_state_view_is_rebuilt_from_the_ledger() {
    let env = one_cycle();
    std::fs::remove_file(env.state_path(STATE_VIEW)).unwrap();
    env.hermes(&["cycle"]).assert_status(0);
    let rebuilt: Vec<Value> = env.ledger_events().into_iter().filter(|e| e["kind"] == "state-view-rebuilt").collect();
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(rebuilt[0]["payload"]["why"], "missing");
    let view = read_json(&env.state_path(STATE_VIEW));
    assert_eq!(view["data"]["repos"]["core"]["upgrades"], 1);
}

#[test]
fn state_view_from_a_newer_hermes_stops_the_cycle_untouched() {
    let env = one_cycle();
    let mut view = read_json(&env.state_path(STATE_VIEW));
    view["format_version"] = 99.into();
    let bytes = serde_json::to_vec_pretty(&view).unwrap();
    std::fs::write(env.state_path(STATE_VIEW), &bytes).unwrap();
    env.push_upstream_commit("core", "src/b.txt", "b\n");
    let ledger_before = env.ledger_bytes();
    let head_before = env.head("core");

    let out = env.hermes(&["cycle"]);
    out.assert_status(4);
    let path = env.state_path(STATE_VIEW);
    assert!(out.stderr.contains(path.to_str().unwrap()), "stderr names the file:\n{}", out.stderr);
    assert!(out.stderr.contains("99"), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the newer file is never overwritten");
    assert_eq!(env.ledger_bytes(), ledger_before, "nothing was appended");
    assert_eq!(env.head("core"), head_before, "no repository was touched");
    assert!(!env.state_path(&format!("{STATE_VIEW}.corrupt-5")).exists());
}

#[test]
fn summary_view_from_a_newer_hermes_stops_the_cycle_untouched() {
    let env = one_cycle();
    let path = env.state_path("auto_safe_upgrade_summary.json");
    let mut view = read_json(&path);
    view["format_version"] = 99.into();
    let bytes = serde_json::to_vec_pretty(&view).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let ledger_before = env.ledger_bytes();

    let out = env.hermes(&["cycle"]);
    out.assert_status(4);
    assert!(out.stderr.contains(path.to_str().unwrap()), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(env.ledger_bytes(), ledger_before);
}

#[test]
fn corrupt_plan_summary_and_history_are_kept_aside_and_rewritten() {
    let env = one_cycle();
    let views =
        ["global_orchestration_plan.json", "auto_safe_upgrade_summary.json", "auto_safe_upgrade_state_history.jsonl"];
    let mut originals = Vec::new();
    for (i, view) in views.iter().enumerate() {
        let garbage = format!("garbage {i} {{\n").into_bytes();
        std::fs::write(env.state_path(view), &garbage).unwrap();
        originals.push(garbage);
    }

    env.hermes(&["cycle"]).assert_status(0);

    let rebuilt: Vec<Value> = env.ledger_events().into_iter().filter(|e| e["kind"] == "state-view-rebuilt").collect();
    for (view, garbage) in views.iter().zip(&originals) {
        let event = rebuilt
            .iter()
            .find(|e| e["payload"]["view"] == *view)
            .unwrap_or_else(|| panic!("no state-view-rebuilt event for {view}: {rebuilt:#?}"));
        assert_eq!(event["payload"]["why"], "corrupt");
        let kept_as = event["payload"]["kept_as"].as_str().unwrap();
        assert!(kept_as.starts_with(&format!("{view}.corrupt-")), "{kept_as}");
        assert_eq!(&std::fs::read(env.state_path(kept_as)).unwrap(), garbage, "{view} kept as {kept_as}");
    }
    for view in &views[..2] {
        let json = read_json(&env.state_path(view));
        assert_eq!(json["format_version"], 1, "{view}");
        let seq = json["ledger_head"]["seq"].as_u64().unwrap();
        assert!(seq > 0 && seq as usize <= env.ledger_lines().len(), "{view}: rewritten within this cycle's ledger");
    }
    // The summary reflects the very end of the cycle.
    assert_eq!(read_json(&env.state_path(views[1]))["ledger_head"]["seq"], env.ledger_lines().len());
    let history = std::fs::read_to_string(env.state_path(views[2])).unwrap();
    assert_eq!(history.lines().count(), 1, "a fresh history with this cycle's line");
    serde_json::from_str::<Value>(history.lines().next().unwrap()).expect("history line is JSON");
    env.hermes(&["verify"]).assert_status(0);
}
