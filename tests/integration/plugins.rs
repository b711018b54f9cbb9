//! The plugin runtime on real components: the default plugins' fixtures,
//! and the adversarial test plugins of `plugins/test-plugins` contained by
//! the sandbox while the cycle goes on.

use crate::common::{TestEnv, row};
use serde_json::{Value, json};
use std::path::PathBuf;

/// A component built from `plugins/` by the host's build script.
fn component(name: &str) -> PathBuf {
    PathBuf::from(env!("HERMES_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/fixtures").join(format!("{name}.json"))
}

/// Copies `name` into the workspace and points the policy's `kind` at it,
/// pinned by the digest `hermes plugin inspect` reports.
fn install(env: &TestEnv, kind: &str, name: &str, extra: Value) -> String {
    let dir = env.home().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(component(name), dir.join(format!("{name}.wasm"))).unwrap();
    let digest = hermes::canonical::sha256_hex(&std::fs::read(component(name)).unwrap());
    env.edit_policy(|policy| {
        let mut entry = json!({ "path": format!("plugins/{name}.wasm"), "sha256": digest });
        if let (Some(entry), Some(extra)) = (entry.as_object_mut(), extra.as_object()) {
            entry.extend(extra.clone());
        }
        policy["plugins"][kind] = entry;
    });
    digest
}

/// One repo two commits behind (`app`) and one up to date (`lib`).
fn two_repos() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.make_upstream("lib");
    env.add_repo("app", &[]);
    env.add_repo("lib", &[]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env.push_upstream_commit("app", "b.txt", "two\n");
    env
}

fn plugin_calls(env: &TestEnv, kind: &str) -> Vec<Value> {
    env.ledger_events()
        .into_iter()
        .filter(|e| e["kind"] == "plugin-called" && e["payload"]["kind"] == kind)
        .map(|e| e["payload"].clone())
        .collect()
}

/// A failing scorer defers the scored repo with the failure as reason; the
/// up-to-date repo is still processed; HEAD is untouched.
fn assert_contained(env: &TestEnv, outcome: &str) -> Value {
    let before = env.head("app");
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    let app = row(&report, "app");
    assert_eq!(app["outcome"], "deferred", "{app:#}");
    assert_eq!(app["reason_code"], "plugin-failed", "{app:#}");
    assert_eq!(row(&report, "lib")["outcome"], "noop");
    assert_eq!(env.head("app"), before, "a failing plugin must not let the repo move");
    let calls = plugin_calls(env, "risk-scorer");
    let call = calls.last().expect("the scorer call is recorded").clone();
    assert_eq!(call["outcome"], outcome, "{call:#}");
    env.hermes(&["verify"]).assert_status(0);
    call
}

#[test]
fn default_plugins_pass_their_fixtures() {
    let env = TestEnv::init();
    for (name, fixture) in [
        ("baseline_probe", "baseline-probe"),
        ("baseline_scorer", "baseline-scorer"),
        ("baseline_selector", "baseline-selector"),
    ] {
        let out = env.hermes(&[
            "plugin",
            "test",
            component(name).to_str().unwrap(),
            "--fixtures",
            fixtures(fixture).to_str().unwrap(),
            "--json",
        ]);
        out.assert_status(0);
        let report = out.json();
        assert_eq!(report["failed"], 0, "{report:#}");
        assert!(report["passed"].as_u64().unwrap() >= 5, "{report:#}");
        for case in report["cases"].as_array().unwrap() {
            assert!(case["fuel_used"].as_u64().unwrap() > 0);
            assert!(case["fuel_used"].as_u64() < case["fuel_limit"].as_u64());
        }
    }
}

#[test]
fn plugin_test_reports_a_wrong_expectation() {
    let env = TestEnv::init();
    let fixture = env.root().join("wrong.json");
    let text = std::fs::read_to_string(fixtures("baseline-scorer")).unwrap();
    let mut cases: Value = serde_json::from_str(&text).unwrap();
    cases[0]["expect"] = json!({ "ok": { "risk": 999 } });
    std::fs::write(&fixture, cases.to_string()).unwrap();
    let out = env.hermes(&[
        "plugin",
        "test",
        component("baseline_scorer").to_str().unwrap(),
        "--fixtures",
        fixture.to_str().unwrap(),
    ]);
    out.assert_status(6);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    assert!(out.stdout.contains("1 failed"), "{}", out.stdout);
}

#[test]
fn the_cycle_uses_the_default_plugins_and_records_every_call() {
    let env = two_repos();
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    for kind in ["federation-selector", "repo-probe", "risk-scorer"] {
        let calls = plugin_calls(&env, kind);
        assert!(!calls.is_empty(), "no {kind} call recorded");
        for call in calls {
            assert_eq!(call["outcome"], "ok", "{call:#}");
            assert_eq!(call["wit_version"], "0.1.0");
            assert_eq!(call["digest"].as_str().unwrap().len(), 64);
            assert!(call["input"].is_object() && call["fuel_used"].as_u64().unwrap() > 0);
            assert!(call["wasmtime_version"].as_str().unwrap().starts_with("48."));
        }
    }
    let listed = env.hermes(&["plugin", "list", "--json"]);
    listed.assert_status(0);
    let sources: Vec<String> =
        listed.json().as_array().unwrap().iter().map(|p| p["source"].as_str().unwrap().to_owned()).collect();
    assert_eq!(sources, ["builtin:baseline-probe", "builtin:baseline-scorer", "builtin:baseline-selector"]);
}

#[test]
fn fuel_exhaustion_is_contained_and_deterministic() {
    let env = two_repos();
    install(&env, "risk-scorer", "spin_scorer", json!({ "fuel": 2_000_000 }));
    let call = assert_contained(&env, "out-of-fuel");
    assert_eq!(call["fuel_used"], 2_000_000);
    // The same input exhausts the same fuel at the same point.
    let again =
        env.hermes(&["plugin", "test", component("spin_scorer").to_str().unwrap(), "--fuel", "2000000", "--json"]);
    again.assert_status(0);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let env = two_repos();
    install(&env, "risk-scorer", "memory_bomb_scorer", json!({ "fuel": 20_000_000_000u64, "memory_mib": 16 }));
    let call = assert_contained(&env, "memory-exhausted");
    assert!(call["peak_memory"].as_u64().unwrap() <= 16 << 20, "{call:#}");
}

#[test]
fn a_trap_is_contained() {
    let env = two_repos();
    install(&env, "risk-scorer", "trap_scorer", json!({}));
    let call = assert_contained(&env, "trap");
    assert!(call["error"].as_str().unwrap().contains("unreachable"), "{call:#}");
}

#[test]
fn invalid_output_is_rejected() {
    let env = two_repos();
    install(&env, "risk-scorer", "bad_output_scorer", json!({}));
    let call = assert_contained(&env, "invalid-output");
    assert!(call["error"].as_str().unwrap().contains("5000"), "{call:#}");
}

#[test]
fn wrong_shape_and_forbidden_imports_are_refused_at_load() {
    let env = two_repos();
    let out = env.hermes(&["plugin", "test", component("wrong_shape_scorer").to_str().unwrap()]);
    out.assert_status(6);
    assert!(out.stdout.contains("does not implement world risk-scorer"), "{}", out.stdout);
    assert!(out.stdout.contains("type-checking export func `score`"), "{}", out.stdout);

    let out = env.hermes(&["plugin", "inspect", component("socket_scorer").to_str().unwrap()]);
    out.assert_status(3);
    assert!(out.stderr.contains("imports wasi:sockets/"), "{}", out.stderr);
    assert!(out.stderr.contains("socket_scorer.wasm"), "{}", out.stderr);

    // In a policy, a component the sandbox refuses stops the cycle before
    // anything happens, naming the import.
    install(&env, "risk-scorer", "socket_scorer", json!({}));
    let before = env.ledger_bytes();
    let out = env.hermes(&["cycle"]);
    out.assert_status(3);
    assert!(out.stderr.contains("wasi:sockets/"), "{}", out.stderr);
    assert_eq!(env.ledger_bytes(), before);
}

#[test]
fn a_pin_mismatch_names_both_digests() {
    let env = two_repos();
    let digest = install(&env, "risk-scorer", "baseline_scorer", json!({}));
    let wrong = "0".repeat(64);
    env.edit_policy(|p| p["plugins"]["risk-scorer"]["sha256"] = json!(wrong));
    let out = env.hermes(&["cycle"]);
    out.assert_status(3);
    assert!(out.stderr.contains("plugins.risk-scorer.sha256"), "{}", out.stderr);
    assert!(out.stderr.contains(&digest) && out.stderr.contains(&wrong), "{}", out.stderr);
}

#[test]
fn plugins_see_no_environment_and_fixed_clocks_and_randomness() {
    let env = two_repos();
    install(&env, "risk-scorer", "env_scorer", json!({}));
    let (_, report) = env.cycle_json();
    let reason = row(&report, "app")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("env-vars=0") && reason.contains("args=0") && reason.contains("HOME=unset"), "{reason}");

    // Same input twice in fresh instances: identical clocks and random bytes.
    let out = env.hermes(&[
        "plugin",
        "test",
        component("clock_random_scorer").to_str().unwrap(),
        "--fixtures",
        fixtures("baseline-scorer").to_str().unwrap(),
        "--logical-time",
        "1700000000",
        "--json",
    ]);
    let report = out.json();
    for case in report["cases"].as_array().unwrap() {
        let failures: Vec<&str> = case["failures"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(!failures.iter().any(|f| f.contains("not deterministic")), "{failures:?}");
        let reasons = case["actual"]["ok"]["reasons"].as_array().unwrap();
        assert!(reasons.contains(&json!("wall1=1700000000.000000000")), "{reasons:?}");
        assert!(reasons.contains(&json!("monotonic-elapsed-ns=0")), "{reasons:?}");
    }
}

#[test]
fn a_probe_cannot_escape_its_read_only_worktree() {
    let env = two_repos();
    install(&env, "repo-probe", "escape_probe", json!({}));
    let status_before = env.git(&env.repo_path("app"), &["status", "--porcelain", "--ignored"]);
    let (code, _) = env.cycle_json();
    assert_eq!(code, 0);
    let probed: Vec<Value> =
        env.ledger_events().into_iter().filter(|e| e["kind"] == "repo-probed" && e["subject"] == "app").collect();
    let signals = probed[0]["payload"]["signals"].as_array().unwrap().clone();
    assert!(!signals.is_empty());
    for signal in &signals {
        let key = signal["key"].as_str().unwrap();
        let value = signal["value"].as_str().unwrap();
        match key {
            "list-worktree" => assert_eq!(value, "allowed", "the control must work: {signal}"),
            _ => assert_ne!(value, "allowed", "{key} escaped the sandbox: {signal}"),
        }
    }
    // Nothing was written into the worktree (the repo was upgraded, so
    // compare the untracked/ignored set only).
    let status_after = env.git(&env.repo_path("app"), &["status", "--porcelain", "--ignored"]);
    assert_eq!(status_before, status_after);
}

#[test]
fn a_corrupt_cache_entry_is_rebuilt() {
    let env = two_repos();
    env.hermes(&["plan", "--json"]).assert_status(0);
    let cache = env.home().join("cache").join("plugins");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 3, "one precompiled entry per default plugin: {entries:?}");
    let victim = &entries[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "upgraded");
    assert_ne!(std::fs::read(victim).unwrap(), bytes, "the corrupt entry is rewritten");
}
