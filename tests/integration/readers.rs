//! The ledger readers: `hermes events` (filters, JSON Lines, tamper
//! detection, other format versions, --follow) and `hermes explain REPO`.

use crate::common::{TestEnv, decision_hash, hermes_bin, row};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// `hermes args` with `HERMES_NOW` pinned to `now`.
fn hermes_at(env: &TestEnv, now: &str, args: &[&str]) -> crate::common::Output {
    let mut cmd = env.command(hermes_bin());
    cmd.args(args).env("HERMES_NOW", now);
    let out = cmd.output().expect("run hermes");
    crate::common::Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One repository, `core`: the first cycle (at 2026-01-01) upgrades it, the
/// second (at 2026-01-02) finds nothing to do.
fn two_cycles() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    hermes_at(&env, "2026-01-01T00:00:00Z", &["cycle"]).assert_status(0);
    hermes_at(&env, "2026-01-02T00:00:00Z", &["cycle"]).assert_status(0);
    env
}

/// The events printed by `events --json ...`, parsed.
#[track_caller]
fn events_json(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events", "--json"];
    all.extend_from_slice(args);
    let out = env.hermes(&all);
    out.assert_status(0);
    out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().expect("seq")).collect()
}

#[test]
fn events_prints_the_ledger_as_json_lines_and_as_text() {
    let env = two_cycles();
    let ledger = env.ledger_lines();
    let out = env.hermes(&["events", "--json"]);
    out.assert_status(0);
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ledger, "--json prints each event exactly as stored");

    let out = env.hermes(&["events"]);
    out.assert_status(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), ledger.len());
    for (line, raw) in lines.iter().zip(&ledger) {
        let event: Value = serde_json::from_str(raw).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], event["seq"].to_string(), "{line}");
        assert_eq!(fields[1], event["time"], "{line}");
        assert_eq!(fields[2], event["tick"], "{line}");
        assert_eq!(fields[3], event["kind"], "{line}");
        assert_eq!(fields[4], event["subject"], "{line}");
    }
    let upgraded = lines.iter().find(|l| l.contains(" repo-upgraded ")).expect("a repo-upgraded line");
    assert!(upgraded.contains("upgrade behind-upstream: fast-forwarded 1 commits"), "{upgraded}");
    let finished = lines.iter().rfind(|l| l.contains(" cycle-finished ")).expect("a cycle-finished line");
    assert!(finished.contains("1 noop; decision hash "), "{finished}");
}

#[test]
fn events_filters_by_repo_kind_since_and_limit() {
    let env = two_cycles();
    let all = env.ledger_events();
    let last = all.len() as u64;

    let core = events_json(&env, &["--repo", "core"]);
    assert!(!core.is_empty());
    assert!(core.iter().all(|e| e["subject"] == "core"));
    assert_eq!(core.len(), all.iter().filter(|e| e["subject"] == "core").count());

    let outcomes = events_json(&env, &["--repo", "core", "--kind", "repo-upgraded", "--kind", "repo-noop"]);
    let kinds: Vec<&str> = outcomes.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["repo-upgraded", "repo-noop"]);
    let comma = events_json(&env, &["--kind", "cycle-started,cycle-finished"]);
    assert_eq!(comma.len(), 4);

    let since = events_json(&env, &["--since", "5"]);
    assert_eq!(seqs(&since), (5..=last).collect::<Vec<_>>());
    let second: Vec<u64> = all
        .iter()
        .filter(|e| e["time"].as_str().unwrap() >= "2026-01-02")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(!second.is_empty() && second.len() < all.len());
    assert_eq!(seqs(&events_json(&env, &["--since", "2026-01-02T00:00:00Z"])), second);
    assert_eq!(seqs(&events_json(&env, &["--since", "2026-01-02T01:00:00+01:00"])), second, "offsets are honoured");
    assert!(events_json(&env, &["--since", "2026-01-03T00:00:00Z"]).is_empty());

    assert_eq!(seqs(&events_json(&env, &["--limit", "3"])), [last - 2, last - 1, last], "the last 3, in order");
    let last_outcome = events_json(&env, &["--kind", "repo-upgraded,repo-noop", "--limit", "1"]);
    assert_eq!(last_outcome[0]["kind"], "repo-noop");

    // An unknown repository prints nothing, and says which ones exist.
    let out = env.hermes(&["events", "--repo", "nope"]);
    out.assert_status(0);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("\"nope\"") && out.stderr.contains("core"), "{}", out.stderr);
}

#[test]
fn events_rejects_unknown_kinds_and_bad_starting_points() {
    let env = two_cycles();
    let out = env.hermes(&["events", "--kind", "repo-exploded"]);
    out.assert_status(2);
    assert_eq!(out.stdout, "");
    for valid in ["repo-upgraded", "plan-made", "gate-checked", "cycle-finished"] {
        assert!(out.stderr.contains(valid), "the error lists the valid kinds:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("repo-exploded"), "{}", out.stderr);
    let out = env.hermes(&["events", "--since", "last tuesday"]);
    out.assert_status(2);
    assert!(out.stderr.contains("RFC 3339"), "{}", out.stderr);
    env.hermes(&["events", "--limit", "-1"]).assert_status(2);
}

#[test]
fn events_stops_at_a_tampered_line_and_exits_5() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let victim = lines.iter().position(|l| l.contains("\"kind\":\"repo-upgraded\"")).expect("repo-upgraded line");
    lines[victim] = lines[victim].replace("fast-forwarded 1 commits", "fast-forwarded 9 commits");
    env.write_ledger_lines(&lines);
    let bad = victim as u64 + 1;
    for json in [false, true] {
        let args: &[&str] = if json { &["events", "--json"] } else { &["events"] };
        let out = env.hermes(args);
        out.assert_status(5);
        assert!(out.stderr.contains(&format!("first bad sequence number {bad}")), "{}", out.stderr);
        assert!(out.stderr.contains("the line was edited"), "{}", out.stderr);
        assert!(!out.stdout.contains("9 commits"), "the tampered event is not printed");
        assert_eq!(out.stdout.lines().count() as u64, bad - 1, "only the events before the damage are printed");
    }
    // Filters and --limit do not skip the check.
    let out = env.hermes(&["events", "--kind", "cycle-started", "--limit", "1"]);
    out.assert_status(5);
    assert!(out.stderr.contains(&format!("first bad sequence number {bad}")), "{}", out.stderr);
    let out = env.hermes(&["explain", "core"]);
    out.assert_status(5);
    assert!(out.stderr.contains(&format!("first bad sequence number {bad}")), "{}", out.stderr);
}

#[test]
fn events_reports_lines_cut_from_the_end_and_shows_no_torn_fragment() {
    let env = two_cycles();
    let lines = env.ledger_lines();
    let kept = lines.len() - 2;

    // A torn fragment after the last event: not shown, noted, not an error.
    let mut bytes = env.ledger_bytes();
    bytes.extend_from_slice(&lines[0].as_bytes()[..20]);
    std::fs::write(env.ledger_path(), &bytes).unwrap();
    let out = env.hermes(&["events", "--json"]);
    out.assert_status(0);
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), lines);
    assert!(out.stderr.contains("torn final line (20 bytes"), "{}", out.stderr);

    // The last two events cut: the chain still verifies, the summary view
    // says two events are missing.
    env.write_ledger_lines(&lines[..kept]);
    for args in [&["events"][..], &["events", "--json", "--kind", "plan-made"], &["explain", "core"]] {
        let out = env.hermes(args);
        out.assert_status(5);
        assert!(
            out.stderr.contains(&format!("first bad sequence number {}: events were removed from the end", kept + 1)),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(env.hermes(&["events"]).stdout.lines().count(), kept, "what is there is printed first");
}

/// Appends `event` (without `prev_hash`, `seq` and `hash`) to the ledger,
/// chained and hashed as hermes would.
fn append_raw(env: &TestEnv, mut event: Value) -> String {
    let lines = env.ledger_lines();
    let last: Value = serde_json::from_str(lines.last().expect("a ledger")).unwrap();
    event["seq"] = json!(last["seq"].as_u64().unwrap() + 1);
    event["prev_hash"] = last["hash"].clone();
    event["hash"] = json!(hermes::ledger::event::hash_of(&event));
    let line = serde_json::to_string(&event).unwrap();
    let mut all = lines;
    all.push(line.clone());
    env.write_ledger_lines(&all);
    line
}

#[test]
fn events_reads_every_format_version() {
    let env = two_cycles();
    let old = append_raw(
        &env,
        json!({"v": 0, "time": "2026-01-03T00:00:00.000Z", "tick": "old-1", "kind": "repo-noop", "subject": "core",
               "payload": {"note": "an older payload shape"}}),
    );
    let newer = append_raw(
        &env,
        json!({"v": 2, "time": "2026-01-03T00:00:01.000Z", "tick": "new-1", "kind": "repo-teleported", "subject": "core",
               "payload": {"to": "mars"}, "lamport": 7}),
    );
    env.hermes(&["verify"]).assert_status(0);
    let out = env.hermes(&["events", "--json", "--limit", "2"]);
    out.assert_status(0);
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), [old.as_str(), newer.as_str()], "printed as stored");
    let out = env.hermes(&["events", "--since", "2026-01-03T00:00:00Z"]);
    out.assert_status(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].contains("repo-noop") && lines[0].contains(r#"{"note":"an older payload shape"}"#),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("repo-teleported") && lines[1].contains(r#"{"to":"mars"}"#), "{}", lines[1]);
    // --kind takes only the kinds this build knows, but shows other versions' events of those kinds.
    let noop = events_json(&env, &["--kind", "repo-noop"]);
    assert_eq!(noop.last().unwrap()["v"], 0);
}

#[test]
fn events_follow_prints_new_events_as_they_are_appended() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    assert!(env.ledger_lines().is_empty(), "no cycle has run yet");

    let mut cmd = env.command(hermes_bin());
    cmd.args(["events", "--follow", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hermes events --follow");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let read_until_finished = |seen: &mut Vec<String>| {
        loop {
            let line = rx.recv_timeout(Duration::from_secs(120)).expect("hermes events --follow printed a line");
            let event: Value = serde_json::from_str(&line).expect("a JSON line");
            seen.push(line);
            if event["kind"] == "cycle-finished" {
                break;
            }
        }
    };

    let mut seen = Vec::new();
    let (_, first) = env.cycle_json();
    read_until_finished(&mut seen);
    assert_eq!(seen, env.ledger_lines(), "every event of the first cycle, as stored, in order");
    push_and_cycle(&env);
    read_until_finished(&mut seen);
    let ledger = env.ledger_lines();
    assert_eq!(seen, ledger, "then every event of the second cycle");

    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let finished: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "cycle-finished")
        .collect();
    assert_eq!(finished[0]["payload"]["decision_hash"], decision_hash(&first).as_str());
}

fn push_and_cycle(env: &TestEnv) {
    env.push_upstream_commit("core", "src/b.txt", "b\n");
    let (status, report) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(row(&report, "core")["outcome"], "upgraded");
}

/// Runs `explain REPO [args] --json` and checks it against the cycle report.
#[track_caller]
fn explain_matches(env: &TestEnv, repo: &str, args: &[&str], report: &Value) -> Value {
    let mut all = vec!["explain", repo, "--json"];
    all.extend_from_slice(args);
    let out = env.hermes(&all);
    out.assert_status(0);
    let x = out.json();
    let r = row(report, repo);
    assert_eq!(x["repo"], repo);
    assert_eq!(x["tick"], report["tick"], "{x:#}");
    assert_eq!(x["decision_hash"], decision_hash(report).as_str());
    assert_eq!(x["result"]["decision_hash"], decision_hash(report).as_str());
    assert_eq!(x["outcome"], r["outcome"]);
    assert_eq!(x["reason_code"], r["reason_code"]);
    assert_eq!(x["reason"], r["reason"]);
    assert_eq!(x["decision"]["recommendation"], r["recommendation"]);
    assert_eq!(x["finished"], true);
    let events = x["events"].as_array().expect("events");
    assert!(events.iter().all(|e| e["tick"] == report["tick"]), "only the cycle's events");
    let seq: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "in ledger order: {seq:?}");
    assert!(
        events.iter().all(|e| e["subject"] == repo
            || ["cycle-started", "plan-made", "gate-checked", "integrity-failed", "cycle-finished"]
                .contains(&e["kind"].as_str().unwrap())),
        "only the repository's events and the cycle's"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["cycle-started", "plugin-called", "repo-probed", "plan-made", "cycle-finished"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let outcome_kind = match r["outcome"].as_str().unwrap() {
        "failed" => "apply-failed".to_owned(),
        other => format!("repo-{other}"),
    };
    assert!(kinds.contains(&outcome_kind.as_str()), "{outcome_kind} in {kinds:?}");
    for call in x["plugin_calls"].as_array().expect("plugin_calls") {
        assert!(call["plugin"].is_string() && call["version"].is_string(), "{call}");
        assert_eq!(call["digest"].as_str().unwrap().len(), 64, "{call}");
        assert!(call["fuel_used"].as_u64().unwrap() > 0, "{call}");
        assert!(call["outcome"] == "ok" && !call["output"].is_null(), "{call}");
    }
    assert_eq!(x["probe"]["repo"], repo);

    // The text form says the same.
    let mut text_args = vec!["explain", repo];
    text_args.extend_from_slice(args);
    let out = env.hermes(&text_args);
    out.assert_status(0);
    let first = out.stdout.lines().next().unwrap_or_default();
    let expected = format!(
        "{repo}: {} in cycle {} ({}:",
        r["outcome"].as_str().unwrap(),
        report["tick"].as_str().unwrap(),
        r["reason_code"].as_str().unwrap()
    );
    assert!(first.starts_with(&expected), "{first:?} should start with {expected:?}");
    assert!(out.stdout.contains(&format!("decision hash {}", decision_hash(report))), "{}", out.stdout);
    x
}

#[test]
fn explain_says_why_each_repo_was_upgraded_blocked_or_deferred() {
    let env = TestEnv::init();
    for name in ["up", "div", "far"] {
        env.make_upstream(name);
        env.add_repo(name, &[]);
    }
    let up_target = env.push_upstream_commit("up", "src/a.txt", "a\n");
    env.push_upstream_commit("div", "src/a.txt", "upstream\n");
    env.commit_local("div", "src/b.txt", "local\n");
    env.push_upstream_commit("far", "src/a.txt", "a\n");
    env.git(&env.repo_path("far"), &["remote", "set-url", "origin", "http://127.0.0.1:9/x.git"]);

    let (status, report) = env.cycle_json();
    assert_eq!(status, 10, "a repository is blocked");

    let up = explain_matches(&env, "up", &[], &report);
    assert_eq!(up["outcome"], "upgraded");
    assert_eq!(up["reason_code"], "behind-upstream");
    assert_eq!(up["decision"]["reason_code"], "behind-upstream");
    assert_eq!(up["result"]["head_after"], up_target.as_str());
    assert_eq!(up["probe"]["behind"], 1);
    assert_eq!(up["probe"]["upstream_head"], up_target.as_str());
    assert!(up["score"]["risk"].is_u64(), "the scorer's output: {}", up["score"]);
    assert!(up["decision"]["risk"].is_u64());
    let kinds: Vec<&str> = up["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["lease-granted", "rollback-planned", "repo-upgraded", "lease-released"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert_eq!(up["gate"]["ok"], true);
    assert_eq!(up["gate"]["checks"].as_array().unwrap().len(), 6);
    let plugin_kinds: Vec<&str> =
        up["plugin_calls"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(plugin_kinds.contains(&"risk-scorer") && plugin_kinds.contains(&"repo-probe"), "{plugin_kinds:?}");

    let div = explain_matches(&env, "div", &[], &report);
    assert_eq!(div["outcome"], "blocked");
    assert_eq!(div["reason_code"], "diverged");
    assert_eq!(div["decision"]["recommendation"], "block");
    assert_eq!((div["probe"]["ahead"].as_u64(), div["probe"]["behind"].as_u64()), (Some(1), Some(1)));
    assert!(!div["events"].as_array().unwrap().iter().any(|e| e["kind"] == "lease-granted"), "no lease for a block");

    let far = explain_matches(&env, "far", &[], &report);
    assert_eq!(far["outcome"], "deferred");
    assert!(far["reason_code"].as_str().unwrap().starts_with("fetch-"), "{}", far["reason_code"]);
    assert_eq!(far["decision"]["recommendation"], "defer");
    assert!(far["probe"]["problem"].is_object(), "the fetch failure: {}", far["probe"]);
    let fetches = far["fetches"].as_array().expect("fetches");
    assert!(!fetches.is_empty() && fetches.iter().all(|f| f["ok"] == false), "{fetches:?}");
    let text = env.hermes(&["explain", "far"]).stdout;
    assert!(text.contains("http://127.0.0.1:9/x.git") && text.contains("FAILED"), "{text}");

    // A second cycle: the default is now the last cycle; --cycle picks the first.
    let (_, second) = env.cycle_json();
    let again = explain_matches(&env, "up", &[], &second);
    assert_eq!((again["outcome"].as_str(), again["reason_code"].as_str()), (Some("noop"), Some("up-to-date")));
    let tick = report["tick"].as_str().unwrap();
    explain_matches(&env, "up", &["--cycle", tick], &report);
    let number = tick.rsplit('-').next().unwrap();
    explain_matches(&env, "up", &["--cycle", number], &report);
    let plan_seq = env
        .ledger_events()
        .iter()
        .find(|e| e["tick"] == tick && e["kind"] == "plan-made")
        .map(|e| e["seq"].to_string())
        .unwrap();
    explain_matches(&env, "div", &["--cycle", &plan_seq], &report);

    let out = env.hermes(&["explain", "nope"]);
    out.assert_status(2);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("\"nope\""), "{}", out.stderr);
    assert!(out.stderr.contains("div, far, up"), "the known repositories are listed: {}", out.stderr);
    let out = env.hermes(&["explain", "up", "--cycle", "9999"]);
    out.assert_status(2);
    assert!(out.stderr.contains("9999") && out.stderr.contains(tick), "{}", out.stderr);
}

#[test]
fn explain_a_repo_no_cycle_has_decided_about() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.add_repo("core", &[]);
    let out = env.hermes(&["explain", "core"]);
    out.assert_status(2);
    assert!(out.stderr.contains("no cycle has made a decision about \"core\""), "{}", out.stderr);
    assert!(out.stderr.contains("hermes cycle"), "{}", out.stderr);
}
