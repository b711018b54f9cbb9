//! `hermes tick` and `hermes job`: the scheduler through the real binary,
//! with real scripts (processes, process groups, timeouts) and a pinned
//! clock (`HERMES_NOW`).

use crate::common::{Output, TestEnv, hermes_bin};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Runs `hermes args` with the clock pinned at `now`.
fn hermes_at(env: &TestEnv, now: &str, args: &[&str]) -> Output {
    let out = env.command(hermes_bin()).env("HERMES_NOW", now).args(args).output().expect("run hermes");
    Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes an executable `#!/bin/sh` script `HERMES_HOME/scripts/<name>`.
fn script(env: &TestEnv, name: &str, body: &str, mode: u32) -> PathBuf {
    let dir = env.home().join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn write_jobs(env: &TestEnv, jobs: Value) {
    let file = json!({ "format_version": 1, "jobs": jobs });
    std::fs::write(env.home().join("config/jobs.json"), serde_json::to_string_pretty(&file).unwrap()).unwrap();
}

fn events_of(env: &TestEnv, kind: &str) -> Vec<Value> {
    env.ledger_events().into_iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn job_commands_edit_a_validated_jobs_file() {
    let env = TestEnv::init_cold();
    hermes_at(&env, "2026-11-25T10:00:00Z", &["job", "list"]).assert_status(0);
    env.hermes(&["job", "add", "up", "--schedule", "*/15 * * * *", "--kind", "upgrade-cycle"]).assert_status(0);
    env.hermes(&[
        "job",
        "add",
        "backup",
        "--schedule",
        "1h",
        "--kind",
        "script",
        "--path",
        "scripts/b.sh",
        "--arg",
        "--to",
        "--arg",
        "a b",
        "--timeout-secs",
        "60",
        "--disabled",
    ])
    .assert_status(0);
    let out = env.hermes(&["job", "add", "bad", "--schedule", "soon", "--kind", "upgrade-cycle"]);
    out.assert_status(2);
    assert!(out.stderr.contains("--schedule: \"soon\" is not a schedule; expected a 5-field cron"), "{}", out.stderr);
    env.hermes(&["job", "add", "up", "--schedule", "1h", "--kind", "upgrade-cycle"]).assert_status(2);
    let listed = env.hermes(&["job", "list", "--json"]).assert_status(0).json();
    let jobs = listed["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1]["args"], json!(["--to", "a b"]));
    assert_eq!((jobs[1]["enabled"].clone(), jobs[1]["timeout_secs"].clone()), (json!(false), json!(60)));
    env.hermes(&["job", "remove", "up"]).assert_status(0);
    env.hermes(&["job", "remove", "up"]).assert_status(2);
    let text = env.hermes(&["job", "list"]).assert_status(0).stdout.clone();
    assert!(text.contains("backup") && !text.contains("upgrade-cycle"), "{text}");

    // An invalid file: exit 3, naming the file, the field and what was expected.
    write_jobs(&env, json!([{ "id": "x", "schedule": "1h", "kind": "script" }]));
    for args in [&["tick"][..], &["job", "list"]] {
        let out = env.hermes(args);
        out.assert_status(3);
        let stderr = out.stderr.replace(env.home().to_str().unwrap(), "$HERMES_HOME");
        assert!(
            stderr.starts_with(
                "error: invalid jobs file $HERMES_HOME/config/jobs.json\n  at jobs[0].path: missing; expected the script's path for a script job\nhint: "
            ),
            "{stderr}"
        );
    }
    std::fs::write(env.home().join("config/jobs.json"), r#"{"format_version": 2, "jobs": []}"#).unwrap();
    let out = env.hermes(&["tick"]);
    out.assert_status(3);
    assert!(out.stderr.contains("at format_version: unsupported format version 2; expected 1"), "{}", out.stderr);
}

#[test]
fn two_ticks_at_once_one_runs_and_one_records_that_it_skipped() {
    let env = TestEnv::init_cold();
    let started = env.root().join("started");
    script(&env, "slow.sh", &format!("touch '{}'\nsleep 3", started.display()), 0o755);
    write_jobs(&env, json!([{ "id": "slow", "schedule": "1m", "kind": "script", "path": "scripts/slow.sh" }]));
    let mut first =
        env.command(hermes_bin()).arg("tick").stdout(std::process::Stdio::null()).spawn().expect("spawn first tick");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the first tick never started its job");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = env.hermes(&["tick", "--json"]);
    second.assert_status(0);
    let report = second.json();
    assert_eq!(report["skipped"]["holder"]["pid"], json!(first.id()), "{report}");
    assert_eq!(report["jobs"], json!([]));
    assert!(first.wait().unwrap().success());
    let skipped = events_of(&env, "tick-skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["payload"]["holder"]["pid"], json!(first.id()));
    assert_eq!(events_of(&env, "job-started").len(), 1, "only the first tick ran the job");
    assert_eq!(events_of(&env, "tick-finished").len(), 1);
    let text = env.hermes(&["events", "--kind", "tick-skipped"]).assert_status(0).stdout.clone();
    assert!(text.contains(&format!("another tick holds the workspace (pid {}", first.id())), "{text}");
}

#[test]
fn the_preflight_refuses_bad_scripts_and_runs_none_of_them() {
    let env = TestEnv::init_cold();
    let ran = env.root().join("ran");
    let body = format!("touch '{}'", ran.display());
    script(&env, "noexec.sh", &body, 0o644);
    script(&env, "ww.sh", &body, 0o757);
    let outside = env.root().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("out.sh"), format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(outside.join("out.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let job = |id: &str, path: &str| json!({ "id": id, "schedule": "1h", "kind": "script", "path": path });
    write_jobs(
        &env,
        json!([
            job("missing", "scripts/missing.sh"),
            job("noexec", "scripts/noexec.sh"),
            job("ww", "scripts/ww.sh"),
            job("outside", outside.join("out.sh").to_str().unwrap()),
        ]),
    );
    let out = env.hermes(&["tick", "--json"]);
    out.assert_status(11);
    let report = out.json();
    let details: Vec<(String, String)> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["outcome"].as_str().unwrap().to_owned(), j["detail"].as_str().unwrap().to_owned()))
        .collect();
    let expect = ["does not exist", "is not executable", "is world-writable", "is outside the allowed roots"];
    assert_eq!(details.len(), 4);
    for ((outcome, detail), want) in details.iter().zip(expect) {
        assert_eq!(outcome, "refused");
        assert!(detail.starts_with("refused: script ") && detail.contains(want), "{detail} / {want}");
    }
    assert!(!ran.exists(), "a refused script ran");
    let finished = events_of(&env, "job-finished");
    assert!(finished.iter().all(|e| e["payload"]["outcome"] == "refused"));
    assert_eq!(events_of(&env, "tick-finished")[0]["payload"]["exit_code"], json!(11));

    // Listed in allowed_roots, the outside script passes the preflight.
    let file = json!({ "format_version": 1, "allowed_roots": [outside], "jobs": [job("outside", outside.join("out.sh").to_str().unwrap())] });
    std::fs::write(env.home().join("config/jobs.json"), file.to_string()).unwrap();
    env.hermes(&["job", "run", "outside"]).assert_status(0);
    assert!(ran.exists());
}

#[test]
fn a_hanging_script_is_killed_at_its_timeout_with_its_children() {
    let env = TestEnv::init_cold();
    let survived = env.root().join("child-survived");
    script(&env, "hang.sh", &format!("(sleep 3; touch '{}') &\necho started\nsleep 60", survived.display()), 0o755);
    write_jobs(
        &env,
        json!([{ "id": "hang", "schedule": "1m", "kind": "script", "path": "scripts/hang.sh", "timeout_secs": 1 }]),
    );
    let begun = Instant::now();
    let out = env.hermes(&["tick", "--json"]);
    out.assert_status(11);
    assert!(begun.elapsed() < Duration::from_secs(20), "the tick waited for the script");
    let run = &out.json()["jobs"][0];
    assert_eq!(run["outcome"], "timed-out");
    assert_eq!(run["command"]["timed_out"], json!(true));
    assert_eq!(run["command"]["signal"], json!(9));
    assert_eq!(run["command"]["stdout_tail"], "started\n");
    let finished = &events_of(&env, "job-finished")[0]["payload"];
    assert_eq!((finished["outcome"].clone(), finished["timed_out"].clone()), (json!("timed-out"), json!(true)));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!survived.exists(), "the script's child outlived the timeout");
}

#[test]
fn exit_codes_signals_and_arguments_are_recorded_as_they_were() {
    let env = TestEnv::init_cold();
    script(&env, "echo.sh", "printf '%s|' \"$@\"", 0o755);
    script(&env, "fail.sh", "echo oops >&2\nexit 7", 0o700);
    script(&env, "killed.sh", "kill -TERM $$", 0o755);
    let pwned = env.root().join("pwned");
    let substitution = format!("$(touch {})", pwned.display());
    let args = ["a b", "\"quoted\" 'single'", &substitution, "`id`", "*", "; echo x"];
    write_jobs(
        &env,
        json!([
            { "id": "echo", "schedule": "1m", "kind": "script", "path": "scripts/echo.sh", "args": args },
            { "id": "fail", "schedule": "1m", "kind": "script", "path": "scripts/fail.sh" },
            { "id": "killed", "schedule": "1m", "kind": "script", "path": "scripts/killed.sh" },
        ]),
    );
    let out = env.hermes(&["tick", "--json"]);
    out.assert_status(11);
    let report = out.json();
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["outcome"], "succeeded");
    assert_eq!(jobs[0]["command"]["stdout_tail"], format!("{}|", args.join("|")));
    assert_eq!(jobs[1]["outcome"], "failed");
    assert_eq!(jobs[1]["command"]["exit_code"], json!(7));
    assert_eq!(jobs[1]["command"]["stderr_tail"], "oops\n");
    assert_eq!(jobs[1]["detail"], "exited with code 7");
    assert_eq!(jobs[2]["outcome"], "failed");
    assert_eq!(jobs[2]["command"]["signal"], json!(15));
    assert!(!pwned.exists(), "an argument reached a shell");
    let started = events_of(&env, "job-started");
    assert_eq!(started[0]["payload"]["argv"].as_array().unwrap()[1..], json!(args).as_array().unwrap()[..]);
}

#[test]
fn a_missed_run_catches_up_once_and_nothing_due_runs_nothing() {
    let env = TestEnv::init_cold();
    let count = env.root().join("count");
    script(&env, "count.sh", &format!("echo run >> '{}'", count.display()), 0o755);
    write_jobs(
        &env,
        json!([
            { "id": "hourly", "schedule": "0 * * * *", "kind": "script", "path": "scripts/count.sh" },
            { "id": "off", "schedule": "1m", "kind": "script", "path": "scripts/count.sh", "enabled": false },
        ]),
    );
    let runs = || std::fs::read_to_string(&count).map(|t| t.lines().count()).unwrap_or(0);
    // First sight at 09:30: the next slot is 10:00, nothing is due.
    let out = hermes_at(&env, "2026-11-25T09:30:00Z", &["tick"]);
    out.assert_status(0);
    assert_eq!(out.stdout, "no job due\n");
    hermes_at(&env, "2026-11-25T09:59:59Z", &["tick"]).assert_status(0);
    assert_eq!(runs(), 0);
    assert!(events_of(&env, "job-started").is_empty());
    assert_eq!(events_of(&env, "tick-started").len(), 2);
    // The host was down from 10:00 to 14:30: five slots missed, one run.
    let out = hermes_at(&env, "2026-11-25T14:30:00Z", &["tick", "--json"]);
    out.assert_status(0);
    assert_eq!(out.json()["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(runs(), 1);
    hermes_at(&env, "2026-11-25T14:31:00Z", &["tick"]).assert_status(0);
    hermes_at(&env, "2026-11-25T14:59:00Z", &["tick"]).assert_status(0);
    assert_eq!(runs(), 1, "caught up once, not once per missed slot");
    hermes_at(&env, "2026-11-25T15:00:00Z", &["tick"]).assert_status(0);
    assert_eq!(runs(), 2);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state_path("scheduler_state.json")).unwrap()).unwrap();
    assert_eq!(state["data"]["jobs"]["hourly"]["last_started"], "2026-11-25T15:00:00.000Z");
    assert_eq!(state["data"]["jobs"]["hourly"]["last_outcome"], "succeeded");
    // The disabled job never ran on a tick; `job run` runs it now.
    assert!(events_of(&env, "job-started").iter().all(|e| e["subject"] == "hourly"));
    hermes_at(&env, "2026-11-25T15:00:30Z", &["job", "run", "off"]).assert_status(0);
    assert_eq!(runs(), 3);
    assert_eq!(events_of(&env, "job-started").last().unwrap()["payload"]["trigger"], "manual");

    // A lost scheduler view is rebuilt from the ledger: no rerun.
    std::fs::remove_file(env.state_path("scheduler_state.json")).unwrap();
    hermes_at(&env, "2026-11-25T15:30:00Z", &["tick"]).assert_status(0);
    assert_eq!(runs(), 3);
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn an_upgrade_cycle_job_runs_the_cycle() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.add_repo("core", &[]);
    let upstream = env.push_upstream_commit("core", "new.txt", "new\n");
    write_jobs(&env, json!([{ "id": "upgrade", "schedule": "*/15 * * * *", "kind": "upgrade-cycle" }]));
    // First seen at 10:05: due at 10:15.
    hermes_at(&env, "2026-11-25T10:05:00Z", &["tick"]).assert_status(0);
    assert!(events_of(&env, "cycle-started").is_empty());
    let out = hermes_at(&env, "2026-11-25T10:15:00Z", &["tick", "--json"]);
    out.assert_status(0);
    let run = &out.json()["jobs"][0];
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(events_of(&env, "cycle-started").len(), 1);
    assert_eq!(env.head("core"), upstream);
    assert_eq!(events_of(&env, "job-finished")[0]["payload"]["cycle_tick"], run["cycle_tick"]);
}

#[test]
fn status_and_job_list_name_the_next_due_job() {
    let env = TestEnv::init_cold();
    let status = hermes_at(&env, "2026-11-25T10:20:00Z", &["status", "--json"]);
    assert_eq!(status.assert_status(0).json()["next_job"], Value::Null);
    let text = hermes_at(&env, "2026-11-25T10:20:00Z", &["status"]).stdout;
    assert!(text.contains("next job: none scheduled"), "{text}");
    write_jobs(
        &env,
        json!([
            { "id": "nightly", "schedule": "@daily", "kind": "script", "path": "scripts/n.sh" },
            { "id": "hourly", "schedule": "0 * * jan-dec mon-sat,sun", "kind": "upgrade-cycle" },
            { "id": "off", "schedule": "1m", "kind": "upgrade-cycle", "enabled": false },
        ]),
    );
    // A tick at 10:20 sees both jobs first; neither has a slot before 11:00.
    hermes_at(&env, "2026-11-25T10:20:00Z", &["tick"]).assert_status(0);
    let status = hermes_at(&env, "2026-11-25T10:30:00Z", &["status", "--json"]).json();
    assert_eq!(status["next_job"], json!({ "id": "hourly", "at": "2026-11-25T11:00:00Z", "due_now": false }));
    let text = hermes_at(&env, "2026-11-25T10:30:00Z", &["status"]).stdout;
    assert!(text.contains("next job: hourly (2026-11-25T11:00:00Z)"), "{text}");
    let listed = hermes_at(&env, "2026-11-25T11:05:00Z", &["job", "list", "--json"]).json();
    let next: Vec<Value> = listed["jobs"].as_array().unwrap().iter().map(|j| j["next_run"].clone()).collect();
    assert_eq!(
        next,
        vec![
            json!({ "id": "nightly", "at": "2026-11-26T00:00:00Z", "due_now": false }),
            json!({ "id": "hourly", "at": "2026-11-25T11:05:00Z", "due_now": true }),
            Value::Null,
        ]
    );
    let text = hermes_at(&env, "2026-11-25T11:05:00Z", &["job", "list"]).stdout;
    assert!(text.contains("NEXT RUN") && text.contains("due now"), "{text}");
}
