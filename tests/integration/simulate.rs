//! `hermes simulate`: every shipped scenario passes through the real binary
//! (each tick a real `hermes tick` child process on real git repositories);
//! a scenario whose expectation is wrong exits 12 and names the tick, the
//! repository, the field, the expected and the actual value; invalid scenario
//! files match their golden stderr (`tests/golden/scenarios/<case>.json` and
//! `.stderr`, the test directory replaced by `$DIR`; `HERMES_BLESS=1`
//! rewrites them, as for the policy goldens).

use crate::common::{TestEnv, check_golden};
use serde_json::Value;
use std::path::PathBuf;

fn scenarios_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/scenarios"))
}

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/scenarios"))
}

/// Names of the scenario files shipped in config/scenarios.
fn shipped_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scenarios_dir())
        .expect("config/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts every scenario of a `--json` report passed, showing the failures.
#[track_caller]
fn assert_all_passed(report: &Value, expected: usize) {
    let scenarios = report["scenarios"].as_array().expect("scenarios[]");
    assert_eq!(scenarios.len(), expected, "{report:#}");
    for s in scenarios {
        assert_eq!(s["status"], "passed", "scenario {} did not pass: {:#}", s["name"], s["failures"]);
        assert!(!s["ticks"].as_array().unwrap().is_empty());
    }
    assert_eq!((report["failed"].as_u64(), report["skipped"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn every_shipped_file_is_built_in_and_listed() {
    let env = TestEnv::new();
    let listed = env.hermes(&["simulate", "--list", "--json"]).assert_status(0).json();
    let mut names: Vec<String> =
        listed["scenarios"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, shipped_files(), "every config/scenarios file is embedded in the binary, and nothing else");
    for required in [
        "steady-upstream",
        "flaky-mirror",
        "canary-regression",
        "blocked-root",
        "lease-contention",
        "pressure-spike",
        "crash-mid-apply",
        "crash-mid-checkout",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} is shipped");
    }
}

#[test]
fn the_shipped_scenarios_pass() {
    let env = TestEnv::new();
    // The crash scenarios have tests of their own (below).
    let names: Vec<String> = shipped_files().into_iter().filter(|n| !n.starts_with("crash-")).collect();
    let mut args = vec!["simulate", "--json"];
    args.extend(names.iter().map(String::as_str));
    let report = env.hermes(&args).assert_status(0).json();
    assert_all_passed(&report, names.len());
}

/// Runs a crash scenario and checks that its crash tick really was SIGKILLed.
fn crash_scenario_passes(name: &str) {
    let env = TestEnv::new();
    let report = env.hermes(&["simulate", "--json", name]).assert_status(0).json();
    assert_all_passed(&report, 1);
    let ticks = report["scenarios"][0]["ticks"].as_array().unwrap();
    let killed: Vec<&Value> = ticks.iter().filter(|t| t["signal"] == 9).collect();
    assert_eq!(killed.len(), 1, "{ticks:#?}");
    assert_eq!(killed[0]["exit_code"], Value::Null);
}

#[test]
fn crash_mid_apply_after_the_ref_update_recovers() {
    crash_scenario_passes("crash-mid-apply");
}

#[test]
fn crash_mid_apply_after_the_checkout_recovers() {
    crash_scenario_passes("crash-mid-checkout");
}

#[test]
fn a_wrong_expectation_exits_12_and_names_tick_repo_field_expected_and_actual() {
    let env = TestEnv::new();
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(scenarios_dir().join("steady-upstream.json")).unwrap()).unwrap();
    // Tick 2 upgrades core; claim it was deferred.
    doc["ticks"][1]["expect"]["repos"]["core"]["outcome"] = "deferred".into();
    let file = env.root().join("wrong.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let dir = env.root().join("kept");
    let out = env.hermes(&["simulate", file.to_str().unwrap(), "--dir", dir.to_str().unwrap()]);
    out.assert_status(12);
    assert!(
        out.stdout.contains("FAILED tick 2, repo core, outcome: expected deferred, actual upgraded"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("FAILED tick").count(), 1, "only the wrong expectation fails:\n{}", out.stdout);
    // The per-tick table shows how the intelligence evolved.
    assert!(out.stdout.contains("rb-rate") && out.stdout.contains("p(fail)"), "{}", out.stdout);
    // --dir keeps a real workspace, whose ledger verifies.
    assert!(out.stdout.contains(&format!("workspace kept: {}", dir.display())), "{}", out.stdout);
    assert!(dir.join("repos/core/.git").is_dir() && dir.join("state/runtime_events.jsonl").is_file());
    let mut verify = env.command(crate::common::hermes_bin());
    verify.args(["verify"]).env("HERMES_HOME", &dir);
    assert!(verify.status().unwrap().success());

    // The same through --json, as data.
    let out = env.hermes(&["simulate", "--json", file.to_str().unwrap()]);
    out.assert_status(12);
    let report = out.json();
    let failures = report["scenarios"][0]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(
        (&f["tick"], &f["subject"], &f["field"], &f["expected"], &f["actual"]),
        (&2.into(), &"repo core".into(), &"outcome".into(), &"deferred".into(), &"upgraded".into())
    );
    assert_eq!(report["failed"], 1);
}

#[test]
fn an_unknown_scenario_name_is_a_usage_error() {
    let env = TestEnv::new();
    let out = env.hermes(&["simulate", "no-such-scenario"]);
    out.assert_status(2);
    assert!(out.stderr.contains("no scenario named \"no-such-scenario\""), "{}", out.stderr);
    assert!(out.stderr.contains("steady-upstream"), "the message lists the built-in scenarios: {}", out.stderr);
}

#[test]
fn invalid_scenarios_match_their_golden_stderr() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases are missing: {cases:?}");
    let env = TestEnv::new();
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let out = env.hermes(&["simulate", case.to_str().unwrap()]);
        if out.status != 3 {
            failures.push(format!("{name}: exit code {} instead of 3\n{}{}", out.status, out.stdout, out.stderr));
            continue;
        }
        let actual = out
            .stderr
            .replace(golden_dir().canonicalize().unwrap().to_str().unwrap(), "$DIR")
            .replace(golden_dir().to_str().unwrap(), "$DIR");
        check_golden(&name, &case.with_extension("stderr"), &actual, &mut failures);
        if !actual.contains(&format!("$DIR/{name}.json")) || !actual.contains("\n  at ") {
            failures.push(format!("{name}: the message does not name the file and a JSON path:\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn keep_leaves_the_workspace_and_says_where_without_it_nothing_is_left() {
    let env = TestEnv::new();
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = env.command(crate::common::hermes_bin());
    cmd.args(["simulate", "--json", "--keep", "lease-contention"]).env("TMPDIR", &tmp);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept = PathBuf::from(report["scenarios"][0]["workspace"].as_str().expect("the kept workspace is named"));
    assert!(kept.starts_with(tmp.canonicalize().unwrap()), "{}", kept.display());
    assert!(kept.join("state/coordination_leases.json").is_file() && kept.join("repos/api/.git").is_dir());

    // Without --keep the temporary directories are gone afterwards.
    std::fs::remove_dir_all(&kept).unwrap();
    let mut cmd = env.command(crate::common::hermes_bin());
    cmd.args(["simulate", "lease-contention"]).env("TMPDIR", &tmp);
    assert!(cmd.status().unwrap().success());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "nothing is left in TMPDIR");
}
