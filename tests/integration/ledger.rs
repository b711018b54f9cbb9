//! The hash-chained ledger (`state/runtime_events.jsonl`): `hermes verify`,
//! repair of a torn final line, and detection of every kind of tampering.

use crate::common::TestEnv;

/// A workspace with one repository and two finished cycles: the first
/// upgrades `core`, the second is a noop.
fn two_cycles() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    env.hermes(&["cycle"]).assert_status(0);
    env.hermes(&["cycle"]).assert_status(0);
    let kinds = kinds(&env);
    assert_eq!(kinds.first().map(String::as_str), Some("cycle-started"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("cycle-finished"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "cycle-started").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "repo-upgraded").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "repo-noop").count(), 1, "{kinds:?}");
    env
}

/// The `kind` of every ledger event, in order.
fn kinds(env: &TestEnv) -> Vec<String> {
    env.ledger_events().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// Index (0-based line number) of the `nth` (0-based) event of `kind`.
#[track_caller]
fn index_of(env: &TestEnv, kind: &str, nth: usize) -> usize {
    let kinds = kinds(env);
    kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| *k == kind)
        .nth(nth)
        .unwrap_or_else(|| panic!("no event #{nth} of kind {kind} in {kinds:?}"))
        .0
}

/// Asserts that every line of the ledger is a whole event and that the
/// sequence numbers and `prev_hash` links are contiguous.
#[track_caller]
fn assert_well_formed(env: &TestEnv) {
    let bytes = env.ledger_bytes();
    assert!(bytes.ends_with(b"\n"), "the ledger ends with a newline");
    let events = env.ledger_events();
    let mut prev_hash = "0".repeat(64);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1, "seq of line {}", i + 1);
        assert_eq!(event["prev_hash"], prev_hash.as_str(), "prev_hash of line {}", i + 1);
        prev_hash = event["hash"].as_str().expect("hash").to_owned();
        assert_eq!(prev_hash.len(), 64);
    }
}

/// `hermes verify` fails with exit code 5 naming `seq` as the first bad one.
#[track_caller]
fn assert_broken_at(env: &TestEnv, seq: u64) {
    let out = env.hermes(&["verify"]);
    out.assert_status(5);
    let needle = format!("first bad sequence number {seq}");
    assert!(out.stderr.contains(&needle), "stderr should contain {needle:?}:\n{}", out.stderr);
    assert!(out.stderr.contains(env.ledger_path().to_str().unwrap()), "stderr names the ledger file:\n{}", out.stderr);
}

/// A writing command on a broken ledger fails with 5 and appends nothing.
#[track_caller]
fn assert_cycle_refuses(env: &TestEnv) {
    let before = env.ledger_bytes();
    let heads = env.head("core");
    let out = env.hermes(&["cycle"]);
    out.assert_status(5);
    assert!(out.stderr.contains("first bad sequence number"), "{}", out.stderr);
    assert_eq!(env.ledger_bytes(), before, "nothing was appended to a broken ledger");
    assert_eq!(env.head("core"), heads);
}

#[test]
fn verify_accepts_the_ledger_a_cycle_wrote() {
    let env = two_cycles();
    assert_well_formed(&env);
    let events = env.ledger_events();
    let n = events.len();
    let out = env.hermes(&["verify", "--json"]);
    out.assert_status(0);
    let result = out.json();
    assert_eq!(result["ok"], true);
    assert_eq!(result["events"], n);
    assert_eq!(result["head"]["seq"], n);
    assert_eq!(result["head"]["hash"], events[n - 1]["hash"]);
    assert!(result["torn_tail"].is_null());
    let text = env.hermes(&["verify"]);
    text.assert_status(0);
    assert!(text.stdout.contains(&format!("ledger ok: {n} events")), "{}", text.stdout);
}

#[test]
fn verify_accepts_a_workspace_without_a_ledger() {
    let env = TestEnv::init();
    let out = env.hermes(&["verify", "--json"]);
    out.assert_status(0);
    assert_eq!(out.json()["events"], 0);
    assert!(!env.ledger_path().exists(), "verify creates nothing");
}

#[test]
fn torn_tail_is_reported_by_verify_and_repaired_by_the_next_cycle() {
    let env = two_cycles();
    let lines = env.ledger_lines();
    let n = lines.len();
    let fragment = &lines[n - 1].as_bytes()[..40];
    let mut bytes = env.ledger_bytes();
    let torn_offset = bytes.len();
    bytes.extend_from_slice(fragment);
    std::fs::write(env.ledger_path(), &bytes).unwrap();

    let out = env.hermes(&["verify"]);
    out.assert_status(0);
    assert!(out.stdout.contains("torn final line (40 bytes at offset"), "{}", out.stdout);
    assert_eq!(env.ledger_bytes(), bytes, "verify is read-only");
    let json = env.hermes(&["verify", "--json"]);
    json.assert_status(0);
    assert_eq!(json.json()["torn_tail"]["length"], 40);
    assert_eq!(json.json()["torn_tail"]["offset"], torn_offset);

    env.hermes(&["cycle"]).assert_status(0);
    assert_well_formed(&env);
    let events = env.ledger_events();
    let repaired: Vec<_> = events.iter().filter(|e| e["kind"] == "ledger-repaired").collect();
    assert_eq!(repaired.len(), 1, "{events:#?}");
    let repaired = repaired[0];
    assert_eq!(repaired["seq"], n + 1, "the repair is recorded right after the last good event");
    assert_eq!(repaired["payload"]["action"], "truncated");
    assert_eq!(repaired["payload"]["length"], 40);
    assert_eq!(repaired["payload"]["offset"], torn_offset);
    assert_eq!(env.ledger_lines()[..n], lines[..], "the good events are kept as they were");
    let out = env.hermes(&["verify"]);
    out.assert_status(0);
    assert!(!out.stdout.contains("torn"), "{}", out.stdout);
}

/// The state of a crash in the middle of the second cycle's first append:
/// the ledger holds the first cycle's events and the second cycle's
/// `cycle-started` without its newline, and the views are those the first
/// cycle wrote.
fn crashed_during_second_cycle() -> TestEnv {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    env.hermes(&["cycle"]).assert_status(0);
    let state_dir = env.home().join("state");
    let views: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != "runtime_events.jsonl")
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    env.hermes(&["cycle"]).assert_status(0);
    let lines = env.ledger_lines();
    let second = index_of(&env, "cycle-started", 1);
    let mut text = String::new();
    for line in &lines[..second] {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&lines[second]);
    std::fs::write(env.ledger_path(), text).unwrap();
    for (path, bytes) in views {
        std::fs::write(path, bytes).unwrap();
    }
    env
}

#[test]
fn whole_final_event_without_its_newline_is_completed_not_cut() {
    let env = crashed_during_second_cycle();
    let torn_event = env.ledger_bytes()[..].rsplit(|b| *b == b'\n').next().unwrap().to_vec();
    let good = env.ledger_lines().len();

    let out = env.hermes(&["verify"]);
    out.assert_status(0);
    assert!(out.stdout.contains(&format!("ledger ok: {good} events")), "{}", out.stdout);
    assert!(out.stdout.contains("torn final line"), "{}", out.stdout);

    env.hermes(&["cycle"]).assert_status(0);
    assert_well_formed(&env);
    let lines = env.ledger_lines();
    assert_eq!(lines[good].as_bytes(), &torn_event[..], "the whole event was kept, not cut");
    let events = env.ledger_events();
    assert_eq!(events[good + 1]["kind"], "ledger-repaired");
    assert_eq!(events[good + 1]["payload"]["action"], "completed");
    env.hermes(&["verify"]).assert_status(0);
}

#[test]
fn verify_counts_a_whole_unterminated_final_event() {
    let env = two_cycles();
    let mut bytes = env.ledger_bytes();
    assert_eq!(bytes.pop(), Some(b'\n'));
    std::fs::write(env.ledger_path(), &bytes).unwrap();
    let out = env.hermes(&["verify"]);
    out.assert_status(0);
    assert!(out.stdout.contains("torn final line"), "{}", out.stdout);
}

#[test]
fn edited_payload_byte_is_detected_at_its_sequence_number() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let i = index_of(&env, "repo-upgraded", 0);
    assert!(i > 0 && i + 1 < lines.len(), "a middle line");
    let original = lines[i].clone();
    lines[i] = original.replacen("\"reason_code\":\"behind-upstream\"", "\"reason_code\":\"behind-upstreaM\"", 1);
    assert_ne!(lines[i], original, "the edit applied");
    assert_eq!(lines[i].len(), original.len(), "exactly one byte changed");
    env.write_ledger_lines(&lines);

    assert_broken_at(&env, i as u64 + 1);
    let out = env.hermes(&["verify"]);
    assert!(out.stderr.contains(&format!("line {}", i + 1)), "{}", out.stderr);
    assert_cycle_refuses(&env);
}

#[test]
fn reordered_lines_are_detected_at_the_first_position() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let i = index_of(&env, "plan-made", 0);
    lines.swap(i, i + 1);
    env.write_ledger_lines(&lines);
    assert_broken_at(&env, i as u64 + 1);
    assert_cycle_refuses(&env);
}

#[test]
fn deleted_middle_line_is_detected() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let i = index_of(&env, "cycle-started", 1);
    lines.remove(i);
    env.write_ledger_lines(&lines);
    assert_broken_at(&env, i as u64 + 1);
    assert_cycle_refuses(&env);
}

#[test]
fn deleted_final_lines_are_detected_through_the_recorded_head() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let n = lines.len() as u64;
    lines.truncate(lines.len() - 2);
    env.write_ledger_lines(&lines);
    // The chain of the remaining events is intact, but the summary view
    // recorded the last (now deleted) event as the head.
    assert_broken_at(&env, n - 1);
    let out = env.hermes(&["verify"]);
    assert!(out.stderr.contains("auto_safe_upgrade_summary.json"), "{}", out.stderr);
}

#[test]
fn cycle_refuses_to_append_after_deleted_final_lines() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let n = lines.len() as u64;
    lines.truncate(lines.len() - 2);
    env.write_ledger_lines(&lines);
    assert_broken_at(&env, n - 1);
    assert_cycle_refuses(&env);
    assert_broken_at(&env, n - 1);
}

#[test]
fn inserted_line_is_detected() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    let i = index_of(&env, "cycle-finished", 0);
    let copy = lines[i].clone();
    lines.insert(i + 1, copy);
    env.write_ledger_lines(&lines);
    assert_broken_at(&env, i as u64 + 2);
    assert_cycle_refuses(&env);
}

#[test]
fn garbage_middle_line_is_detected() {
    let env = two_cycles();
    let mut lines = env.ledger_lines();
    lines[1] = "this is not json".to_owned();
    env.write_ledger_lines(&lines);
    assert_broken_at(&env, 2);
    assert_cycle_refuses(&env);
}

/// A tick chains onto the last event without reading the ledger before it;
/// a torn tail is still repaired and recorded, and the chain verifies.
#[test]
fn a_tick_repairs_a_torn_tail_and_chains_onto_the_last_event() {
    let env = two_cycles();
    std::fs::write(env.home().join("config/jobs.json"), r#"{ "format_version": 1, "jobs": [] }"#).unwrap();
    let n = env.ledger_lines().len();
    let mut bytes = env.ledger_bytes();
    bytes.extend_from_slice(b"{\"v\":1,\"seq\":");
    std::fs::write(env.ledger_path(), &bytes).unwrap();
    env.hermes(&["tick"]).assert_status(0);
    assert_well_formed(&env);
    let kinds = kinds(&env);
    assert_eq!(kinds[n..], ["ledger-repaired", "tick-started", "tick-finished"], "{kinds:?}");
    env.hermes(&["verify"]).assert_status(0);
}

/// The last event is the one a tick trusts: if it does not verify on its
/// own, the tick reads the whole chain, finds it and appends nothing.
#[test]
fn a_tick_refuses_a_ledger_whose_last_event_was_edited() {
    let env = two_cycles();
    std::fs::write(env.home().join("config/jobs.json"), r#"{ "format_version": 1, "jobs": [] }"#).unwrap();
    let mut lines = env.ledger_lines();
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen("\"cycle-finished\"", "\"cycle-finishe!\"", 1);
    env.write_ledger_lines(&lines);
    let before = env.ledger_bytes();
    let out = env.hermes(&["tick"]);
    assert_ne!(out.status, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&format!("first bad sequence number {}", last + 1)), "{}", out.stderr);
    assert_eq!(env.ledger_bytes(), before, "nothing appended after a broken event");
}
