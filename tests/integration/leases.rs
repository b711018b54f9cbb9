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

/// `app`, one commit behind its upstream. Returns the env, HEAD and target.
fn behind_app() -> (TestEnv, String, String) {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    let target = env.push_upstream_commit("app", "b.txt", "two\n");
    let before = env.head("app");
    (env, before, target)
}

/// A lease table in which another holder has `app` with a higher token than
/// any this workspace handed out; a check that copies it over the real table
/// acts as a second writer that took the lease over.
fn stolen_table(env: &TestEnv) -> std::path::PathBuf {
    let lease = json!({
        "key": "app",
        "holder": { "host": "elsewhere", "pid": 4242, "tick": "20260101T000000000Z-1" },
        "acquired_at": "2026-01-01T00:00:00Z",
        "renewed_at": "2026-01-01T00:00:00Z",
        "expires_at": "2999-01-01T00:00:00Z",
        "ttl_secs": 900,
        "transitions": 2,
        "fencing_token": 1000
    });
    let view = json!({
        "format_version": 1,
        "view": "coordination_leases",
        "written_at": "2026-01-01T00:00:00Z",
        "ledger_head": { "seq": 0, "hash": "0".repeat(64) },
        "data": { "leases": { "app": lease }, "fencing_high_water": 1000 }
    });
    let path = env.root().join("stolen-leases.json");
    std::fs::write(&path, serde_json::to_string_pretty(&view).unwrap()).unwrap();
    path
}

/// A shell command that hands the lease of `app` to another holder.
fn steal_lease(env: &TestEnv) -> String {
    format!("cp {} {}", stolen_table(env).display(), env.state_path("coordination_leases.json").display())
}

fn position(events: &[Value], kind: &str, subject: &str) -> usize {
    events
        .iter()
        .position(|e| e["kind"] == kind && e["subject"] == subject)
        .unwrap_or_else(|| panic!("no {kind} event for {subject}"))
}

#[test]
fn the_lease_is_renewed_after_the_canary_and_before_the_rollback() {
    let (env, before, _) = behind_app();
    env.edit_policy(|p| {
        p["checks"] = json!({ "canary": { "argv": ["true"] }, "health": { "argv": ["false"] } });
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10, "{report:#}");
    assert_eq!(row(&report, "app")["outcome"], "failed");
    assert_eq!(env.head("app"), before, "rolled back");
    let events = env.ledger_events();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["subject"] == "app")
        .map(|e| (e["kind"].as_str().unwrap(), e["payload"]["before"].as_str().unwrap_or("")))
        .filter(|(k, _)| !matches!(*k, "repo-probed" | "plugin-called" | "remote-health-changed" | "remote-promoted"))
        .collect();
    assert_eq!(
        kinds,
        [
            ("lease-granted", ""),
            ("rollback-planned", ""),
            ("canary-run", ""),
            ("lease-renewed", "apply"),
            ("health-checked", ""),
            ("lease-renewed", "rollback"),
            ("rolled-back", ""),
            ("apply-failed", ""),
            ("lease-released", ""),
        ]
    );
    let granted = &events[position(&events, "lease-granted", "app")]["payload"]["lease"];
    for renewed in events.iter().filter(|e| e["kind"] == "lease-renewed") {
        assert_eq!(renewed["payload"]["lease"]["fencing_token"], granted["fencing_token"], "renewal keeps the token");
    }
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn a_lease_lost_during_the_canary_stops_the_apply() {
    let (env, before, _) = behind_app();
    let steal = steal_lease(&env);
    env.edit_policy(|p| p["checks"] = json!({ "canary": { "argv": ["sh", "-c", steal] } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "a deferral needs no operator: {report:#}");
    let app = row(&report, "app");
    assert_eq!(app["outcome"], "deferred");
    assert_eq!(app["reason_code"], "fence-rejected");
    assert!(app["reason"].as_str().unwrap().contains("the active lease has token 1000"), "{app:#}");
    assert_eq!(env.head("app"), before);
    assert_eq!(env.git(&env.repo_path("app"), &["status", "--porcelain"]), "");
    let events = env.ledger_events();
    let rejected: Vec<&Value> = events.iter().filter(|e| e["kind"] == "fence-rejected").collect();
    assert_eq!(rejected.len(), 2, "renewal and release: {rejected:#?}");
    assert_eq!(rejected[0]["payload"]["at"], "renew-before-apply");
    assert_eq!(rejected[1]["payload"]["at"], "release");
    assert!(!events.iter().any(|e| e["kind"] == "lease-renewed"));
    // The other holder's lease is left alone.
    assert_eq!(leases_view(&env)["data"]["leases"]["app"]["fencing_token"], 1000);
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn a_lease_lost_during_the_health_check_leaves_the_repo_at_the_target_and_says_so() {
    let (env, before, target) = behind_app();
    let script = format!("{}; exit 1", steal_lease(&env));
    env.edit_policy(|p| p["checks"] = json!({ "health": { "argv": ["sh", "-c", script] } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 10, "{report:#}");
    let app = row(&report, "app");
    assert_eq!(app["outcome"], "failed");
    assert_eq!(app["reason_code"], "health-check-failed");
    assert_eq!(app["head_after"], target.as_str());
    let reason = app["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("NOT ROLLED BACK, still at {target}")), "{reason}");
    assert!(reason.contains("the lease was lost"), "{reason}");
    // Not rolled back: the new holder owns the repository now.
    assert_eq!(env.head("app"), target);
    assert_ne!(env.head("app"), before);
    assert_eq!(env.git(&env.repo_path("app"), &["status", "--porcelain"]), "");
    let reflog = env.git(&env.repo_path("app"), &["reflog", "--format=%gs"]);
    assert!(!reflog.contains("hermes: roll back"), "{reflog}");
    let events = env.ledger_events();
    let rejected = &events[position(&events, "fence-rejected", "app")];
    assert_eq!(rejected["payload"]["at"], "renew-before-rollback");
    let rolled = &events[position(&events, "rolled-back", "app")];
    assert_eq!(rolled["payload"]["ok"], false);
    assert_eq!(rolled["payload"]["code"], "fence-rejected");
    assert!(rolled["payload"]["error"].as_str().unwrap().contains("token 1000"), "{rolled:#}");
    assert!(position(&events, "fence-rejected", "app") < position(&events, "rolled-back", "app"));
    let rollbacks: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("rollback_intelligence.json")).unwrap()).unwrap();
    assert_eq!(
        (rollbacks["data"]["rollbacks_ok"].as_u64(), rollbacks["data"]["rollbacks_failed"].as_u64()),
        (Some(0), Some(1))
    );
    env.hermes(&["verify"]).assert_status(0);
}

fn read_json(path: &std::path::Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[test]
fn the_lease_of_a_killed_cycle_is_taken_over_after_its_ttl() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    let (env, before, target) = behind_app();
    let pidfile = env.root().join("canary.pid");
    let go = env.root().join("canary.go");
    // The first cycle's canary hangs (until it is killed); the second one's
    // passes at once.
    let canary = format!("echo $$ > {}; test -e {} || exec sleep 30", pidfile.display(), go.display());
    env.edit_policy(|p| {
        p["checks"] = json!({ "canary": { "argv": ["sh", "-c", canary], "timeout_secs": 40 } });
        p["coordination"] = json!({ "lease_ttl_secs": 60, "lock_delay_secs": 5 });
    });
    env.hermes(&["policy", "check"]).assert_status(0);

    let mut first = env.command(crate::common::hermes_bin());
    first
        .args(["cycle", "--json"])
        .env("HERMES_NOW", "2026-03-01T12:00:00Z")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let mut first = first.spawn().unwrap();
    let pid = first.id();
    // Wait until it holds the lease and its canary runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let granted = loop {
        let lease = read_json(&env.state_path("coordination_leases.json"))
            .map(|view| view["data"]["leases"]["app"].clone())
            .filter(|lease| lease["holder"]["pid"] == pid);
        if let Some(lease) = lease
            && std::fs::read_to_string(&pidfile).is_ok_and(|p| p.ends_with('\n'))
        {
            break lease;
        }
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the first cycle ended ({status}) before it was killed");
        }
        assert!(Instant::now() < deadline, "the first cycle never held the lease with its canary running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(granted["expires_at"], "2026-03-01T12:01:00.000Z");
    let first_token = granted["fencing_token"].as_u64().unwrap();

    // SIGKILL: no release, no cleanup. The canary runs in its own process
    // group; kill it too so that it does not outlive the test.
    let canary_pgid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    unsafe {
        assert_eq!(libc::kill(-(pid as i32), libc::SIGKILL), 0);
        libc::kill(-canary_pgid, libc::SIGKILL);
    }
    first.wait().unwrap();
    assert_eq!(read_json(&env.state_path("coordination_leases.json")).unwrap()["data"]["leases"]["app"], granted);
    assert_eq!(env.head("app"), before, "killed before its apply");
    let live = read_json(&env.state_path("live_runtime_control_plane.json")).unwrap();
    assert_eq!(live["data"]["pid"], pid, "the live view still shows the killed cycle: {live:#}");
    assert!(std::fs::read_dir(env.home().join("tmp")).unwrap().count() > 0, "the canary directory is left behind");

    // After TTL + lock delay the next cycle takes it over and upgrades once.
    std::fs::write(&go, "").unwrap();
    let out = env
        .command(crate::common::hermes_bin())
        .args(["cycle", "--json"])
        .env("HERMES_NOW", "2026-03-01T12:01:06Z")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row(&report, "app")["outcome"], "upgraded", "{report:#}");
    assert_eq!(env.head("app"), target);
    assert_eq!(env.git(&env.repo_path("app"), &["status", "--porcelain"]), "");

    let events = env.ledger_events();
    let takeovers: Vec<&Value> = events.iter().filter(|e| e["kind"] == "lease-takeover").collect();
    assert_eq!(takeovers.len(), 1, "{takeovers:#?}");
    let takeover = &takeovers[0]["payload"];
    assert_eq!(takeover["took_over"]["holder"]["pid"], pid);
    assert_eq!(takeover["took_over"]["fencing_token"], first_token);
    let new_token = takeover["lease"]["fencing_token"].as_u64().unwrap();
    assert!(new_token > first_token, "the fencing token grew: {first_token} -> {new_token}");
    assert_eq!(takeover["lease"]["transitions"], 2);
    let coordination = read_json(&env.state_path("agent_coordination_state.json")).unwrap();
    let recorded = &coordination["data"]["cycle"]["takeovers"];
    assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{coordination:#}");
    assert_eq!(recorded[0]["took_over"]["holder"]["pid"], pid);
    assert_eq!(recorded[0]["lease"]["fencing_token"], new_token);
    assert_eq!(coordination["data"]["cycle"]["released"], json!(["app"]));

    // Upgraded exactly once: one outcome event, one branch move.
    assert_eq!(events.iter().filter(|e| e["kind"] == "repo-upgraded").count(), 1);
    let reflog = env.git(&env.repo_path("app"), &["reflog", "--format=%gs"]);
    assert_eq!(reflog.lines().filter(|l| l.starts_with("hermes: fast-forward")).count(), 1, "{reflog}");
    let leases = leases_view(&env);
    assert_eq!(leases["data"]["leases"], json!({}));
    assert_eq!(leases["data"]["fencing_high_water"], new_token);
    let live = read_json(&env.state_path("live_runtime_control_plane.json")).unwrap();
    assert_eq!(live["data"]["phase"], "idle");
    env.hermes(&["verify"]).assert_status(0);
}
