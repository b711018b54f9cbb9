//! Federation and resource pressure on real repositories: fail-over from an
//! unreachable primary to a mirror, remote health and circuit breaking,
//! logical promotion (git config untouched), and critical pressure deferring
//! every lane through a telemetry override file. Parallel fetches under
//! per-URL budgets are observed against a real `git daemon` whose
//! `pack-objects` is slowed down; the runtime topology graph's URLs and
//! lanes are checked for determinism.

use crate::common::{TestEnv, hermes_bin, repo_order, row};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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

/// A `git daemon` serving `HARNESS_ROOT/upstream` over `git://127.0.0.1:<port>/`,
/// whose every `pack-objects` first sleeps `delay` (through
/// `uploadpack.packObjectsHook`, given on the command line so it is protected
/// configuration), so a fetch that transfers objects lasts at least that long.
/// Killed when dropped.
struct SlowDaemon {
    child: Child,
    port: u16,
}

impl SlowDaemon {
    fn start(env: &TestEnv, delay: &str) -> Self {
        let hook = env.root().join("slow-pack-objects.sh");
        std::fs::write(&hook, format!("#!/bin/sh\nsleep {delay}\nexec \"$@\"\n")).unwrap();
        let base = env.root().join("upstream");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = env
                .command("git")
                .arg("-c")
                .arg(format!("uploadpack.packObjectsHook=sh {}", hook.display()))
                .args(["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(&base)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start git daemon");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }

    /// The daemon's URL of the bare upstream `name`.
    fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for SlowDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Four lanes whatever the machine's load.
fn four_lanes() -> Value {
    json!({ "max_lanes": 4, "load_milli_per_core": { "elevated": 999998, "high": 999999, "critical": 1000000 } })
}

/// Clones the bare upstream `upstream` as each of `names`, with `origin` at `url`.
fn clone_as(env: &TestEnv, upstream: &str, names: &[&str], url: &str) {
    let bare = env.upstream_path(upstream);
    for name in names {
        let clone = env.repo_path(name);
        env.git(env.root(), &["clone", "--quiet", bare.to_str().unwrap(), clone.to_str().unwrap()]);
        env.git(&clone, &["remote", "set-url", "origin", url]);
        env.add_repo(name, &[]);
    }
}

/// One fetch from the `fetches` of a `repo-probed` event.
#[derive(Debug, Clone)]
struct Fetch {
    repo: String,
    url: String,
    started: u64,
    finished: u64,
}

/// The fetches recorded by the last cycle (the last `cycle-started`'s tick).
fn last_cycle_fetches(env: &TestEnv) -> Vec<Fetch> {
    let events = env.ledger_events();
    let tick = events.iter().rev().find(|e| e["kind"] == "cycle-started").unwrap()["tick"].clone();
    let mut fetches = Vec::new();
    for event in events.iter().filter(|e| e["kind"] == "repo-probed" && e["tick"] == tick) {
        for f in event["payload"]["fetches"].as_array().unwrap_or_else(|| panic!("no fetches in {event:#}")) {
            let started = f["started_ms"].as_u64().unwrap();
            let finished = f["finished_ms"].as_u64().unwrap();
            assert!(finished >= started, "{f}");
            assert!(f["waited_ms"].is_u64(), "{f}");
            fetches.push(Fetch {
                repo: event["subject"].as_str().unwrap().to_owned(),
                url: f["url"].as_str().unwrap().to_owned(),
                started,
                finished,
            });
        }
    }
    fetches
}

/// The largest number of `fetches` in progress at one time.
fn peak_concurrency(fetches: &[&Fetch]) -> usize {
    fetches
        .iter()
        .map(|f| fetches.iter().filter(|g| g.started <= f.started && f.started < g.finished).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn fetches_from_one_url_never_overlap_under_a_budget_of_one() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    env.make_upstream("shared");
    let daemon = SlowDaemon::start(&env, "0.4");
    let url = daemon.url("shared");
    clone_as(&env, "shared", &names, &url);
    let target = env.push_upstream_commit("shared", "x.txt", "x\n");
    env.edit_policy(|p| {
        p["coordination"] = json!({ "remote_budgets": { url.clone(): 1 } });
        p["resources"] = four_lanes();
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    for name in names {
        assert_eq!(row(&report, name)["outcome"], "upgraded", "{report:#}");
        assert_eq!(env.head(name), target, "{name}");
    }
    let fetches = last_cycle_fetches(&env);
    let on_url: Vec<&Fetch> = fetches.iter().filter(|f| f.url == url).collect();
    assert_eq!(on_url.len(), 4, "{fetches:?}");
    // The slow endpoint works: each fetch lasted about the delay...
    assert!(on_url.iter().all(|f| f.finished - f.started >= 300), "{fetches:?}");
    // ...and with a budget of 1 the intervals follow each other.
    let mut sorted = on_url.clone();
    sorted.sort_by_key(|f| f.started);
    for w in sorted.windows(2) {
        assert!(w[1].started >= w[0].finished, "two fetches of one URL overlapped: {sorted:#?}");
    }
    assert_eq!(peak_concurrency(&on_url), 1);

    // The same world with a budget of 4: the fetches do run at the same time
    // (so the assertion above could fail), and the cycle upgrades all four.
    let target = env.push_upstream_commit("shared", "y.txt", "y\n");
    env.edit_policy(|p| p["coordination"] = json!({ "remote_budgets": { url.clone(): 4 } }));
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    for name in names {
        assert_eq!(row(&report, name)["outcome"], "upgraded", "{report:#}");
        assert_eq!(env.head(name), target, "{name}");
    }
    let fetches = last_cycle_fetches(&env);
    let on_url: Vec<&Fetch> = fetches.iter().filter(|f| f.url == url).collect();
    assert_eq!(on_url.len(), 4, "{fetches:?}");
    assert!(peak_concurrency(&on_url) > 1, "with budget 4 and 4 lanes no fetches overlapped: {on_url:#?}");
}

#[test]
fn repos_at_different_urls_fetch_in_parallel_under_a_name_budget() {
    let env = TestEnv::init();
    env.make_upstream("a");
    env.make_upstream("b");
    let daemon = SlowDaemon::start(&env, "0.4");
    let (url_a, url_b) = (daemon.url("a"), daemon.url("b"));
    clone_as(&env, "a", &["a1", "a2"], &url_a);
    clone_as(&env, "b", &["b1"], &url_b);
    env.push_upstream_commit("a", "x.txt", "x\n");
    env.push_upstream_commit("b", "x.txt", "x\n");
    // `origin: 1` caps each URL reached through `origin`: a1 and a2 share
    // one, b1 has its own.
    env.edit_policy(|p| {
        p["coordination"] = json!({ "remote_budgets": { "origin": 1 } });
        p["resources"] = four_lanes();
    });
    let (code, report) = env.cycle_json();
    assert_eq!(code, 0, "{report:#}");
    for name in ["a1", "a2", "b1"] {
        assert_eq!(row(&report, name)["outcome"], "upgraded", "{report:#}");
    }
    let fetches = last_cycle_fetches(&env);
    assert_eq!(fetches.len(), 3, "{fetches:?}");
    let on = |url: &str| fetches.iter().filter(|f| f.url == url).collect::<Vec<_>>();
    assert_eq!(peak_concurrency(&on(&url_a)), 1, "a1 and a2 share {url_a}: {fetches:#?}");
    let all: Vec<&Fetch> = fetches.iter().collect();
    assert_eq!(peak_concurrency(&all), 2, "b1 did not fetch alongside a1/a2: {fetches:#?}");
    assert!(fetches.iter().any(|f| f.repo == "b1" && f.url == url_b));
}

/// `hermes cycle --json` at `now` (HERMES_NOW).
fn cycle_at(env: &TestEnv, now: &str) -> Value {
    let out = env.command(hermes_bin()).env("HERMES_NOW", now).args(["cycle", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 10)),
        "hermes cycle at {now}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

/// Whether the last cycle called the federation selector.
fn selector_called_in_last_cycle(env: &TestEnv) -> bool {
    let events = env.ledger_events();
    let tick = &events.iter().rev().find(|e| e["kind"] == "cycle-started").unwrap()["tick"];
    events
        .iter()
        .any(|e| &e["tick"] == tick && e["kind"] == "plugin-called" && e["payload"]["kind"] == "federation-selector")
}

fn health_of(env: &TestEnv, url: &str) -> Value {
    view(env, "remote_health.json")["data"]["remotes"][url].clone()
}

#[test]
fn an_open_circuit_on_every_remote_defers_without_fetching_until_the_cool_down_ends() {
    let env = TestEnv::init();
    env.make_upstream("app");
    env.add_repo("app", &[]);
    env.git(&env.repo_path("app"), &["remote", "set-url", "origin", DEAD]);
    env.push_upstream_commit("app", "a.txt", "one\n");
    env.edit_policy(|p| p["remote_health"] = json!({ "open_after_failures": 3, "cool_down_secs": 300 }));
    // Three failed fetches, a minute apart, open the circuit at 00:02.
    for now in ["2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z", "2030-01-01T00:02:00Z"] {
        let report = cycle_at(&env, now);
        assert_eq!(row(&report, "app")["reason_code"], "fetch-network", "{report:#}");
        assert!(selector_called_in_last_cycle(&env));
        assert_eq!(last_cycle_fetches(&env).len(), 1);
    }
    let health = health_of(&env, DEAD);
    assert_eq!((health["circuit"].as_str(), health["attempts"].as_u64()), (Some("open"), Some(3)), "{health:#}");
    assert_eq!(health["opened_at"], "2030-01-01T00:02:00.000Z");

    // Still cooling down (until 00:07): deferred, nothing fetched, the
    // selector not asked.
    for now in ["2030-01-01T00:03:00Z", "2030-01-01T00:06:59Z"] {
        let report = cycle_at(&env, now);
        let app = row(&report, "app");
        assert_eq!(app["outcome"], "deferred", "{report:#}");
        assert_eq!(app["reason_code"], "fetch-circuit-open", "{report:#}");
        let reason = app["reason"].as_str().unwrap();
        assert!(reason.contains("origin") && reason.contains(DEAD), "the remotes are named: {reason}");
        assert!(reason.contains("the earliest cool-down ends at 2030-01-01T00:07:00.000Z"), "{reason}");
        assert!(last_cycle_fetches(&env).is_empty());
        assert_eq!(health_of(&env, DEAD)["attempts"], 3, "no fetch was recorded while open");
        assert!(!selector_called_in_last_cycle(&env), "the selector is not called when no remote may be used");
    }

    // Cool-down over: half-open, one trial fetch, which fails and reopens.
    let report = cycle_at(&env, "2030-01-01T00:07:00Z");
    assert_eq!(row(&report, "app")["reason_code"], "fetch-network", "{report:#}");
    let fetches = last_cycle_fetches(&env);
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0].url, DEAD);
    let health = health_of(&env, DEAD);
    assert_eq!(health["attempts"], 4, "{health:#}");
    assert_eq!(health["opened_at"], "2030-01-01T00:07:00.000Z");
    let reopened = env
        .ledger_events()
        .into_iter()
        .rev()
        .find(|e| e["kind"] == "remote-health-changed")
        .expect("the trial's failure is a transition");
    assert_eq!(
        (reopened["payload"]["from"].as_str(), reopened["payload"]["to"].as_str()),
        (Some("half-open"), Some("open"))
    );
    // And open again right after.
    let report = cycle_at(&env, "2030-01-01T00:08:00Z");
    assert_eq!(row(&report, "app")["reason_code"], "fetch-circuit-open", "{report:#}");
    assert!(row(&report, "app")["reason"].as_str().unwrap().contains("2030-01-01T00:12:00.000Z"));
}

/// Lanes (by repository), remote nodes and `uses-remote` edges of the
/// topology graph.
fn lanes_and_remotes(env: &TestEnv) -> (BTreeMap<String, Value>, Vec<Value>, Vec<Value>) {
    let graph = view(env, "runtime_topology_graph.json")["data"].clone();
    let nodes = graph["nodes"].as_array().unwrap();
    let lanes = nodes
        .iter()
        .filter(|n| n["kind"] == "repo")
        .map(|n| (n["label"].as_str().unwrap().to_owned(), n["attrs"]["lane"].clone()))
        .collect();
    let remotes = nodes.iter().filter(|n| n["kind"] == "remote" || n["kind"] == "lane").cloned().collect();
    let edges = graph["edges"].as_array().unwrap().iter().filter(|e| e["kind"] != "holds-lease").cloned().collect();
    (lanes, remotes, edges)
}

#[test]
fn the_topology_graph_has_urls_and_the_same_lanes_on_every_run() {
    let env = TestEnv::init();
    let names = ["r1", "r2", "r3", "r4"];
    let mut before = BTreeMap::new();
    for name in names {
        env.make_upstream(name);
        env.add_repo(name, &[]);
        before.insert(name, env.head(name));
        env.push_upstream_commit(name, "x.txt", "x\n");
    }
    env.edit_policy(|p| {
        p["resources"] = json!({ "max_lanes": 2, "load_milli_per_core": { "elevated": 999998, "high": 999999, "critical": 1000000 } });
        // The first repository's canary keeps its lane busy: a lane taking
        // the next free decision would run the third one in lane 1.
        p["repos"][0]["canary"] = json!({ "argv": ["sleep", "0.5"] });
    });
    let mut runs = Vec::new();
    for run in 0..2 {
        if run > 0 {
            // The same setup again: every repository back where it was.
            for name in names {
                env.git(&env.repo_path(name), &["reset", "--quiet", "--hard", &before[name]]);
            }
        }
        let (code, report) = env.cycle_json();
        assert_eq!(code, 0, "{report:#}");
        let order = repo_order(&report);
        for name in names {
            assert_eq!(row(&report, name)["outcome"], "upgraded", "{report:#}");
        }
        let (lanes, remotes, edges) = lanes_and_remotes(&env);
        // Static round-robin in plan order: decision k runs in lane k % 2.
        for (k, name) in order.iter().enumerate() {
            assert_eq!(lanes[name], json!(k % 2), "lane of {name} (plan position {k}): {lanes:?}");
        }
        // Remote nodes carry the URL of each repository's origin.
        for name in names {
            let url = env.upstream_path(name).to_str().unwrap().to_owned();
            let id = format!("remote:{url}");
            let node =
                remotes.iter().find(|n| n["id"] == id.as_str()).unwrap_or_else(|| panic!("no {id}: {remotes:#?}"));
            assert_eq!(node["attrs"]["url"], url.as_str());
            let edge = edges
                .iter()
                .find(|e| e["kind"] == "uses-remote" && e["from"] == format!("repo:{name}").as_str())
                .unwrap();
            assert_eq!(edge["to"], id.as_str());
            assert_eq!(edge["attrs"]["selected"], true);
        }
        runs.push((order, lanes, remotes, edges));
    }
    assert_eq!(runs[0], runs[1], "two runs of the same setup gave different graphs");
}
