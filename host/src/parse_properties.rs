//! Property tests for every parser of outside input: the policy, the jobs
//! file, cron schedules, plugin fixtures and the ledger reader. Inputs are
//! valid documents mutated at random (a value replaced at a random JSON
//! path, a member added or removed, bytes flipped, inserted or cut), plus
//! arbitrary bytes. A parser must never panic; it accepts, or refuses with
//! an error naming the file and the JSON path; the ledger reader never
//! accepts an event that differs from what was written.
//!
//! The default number of cases keeps `cargo test` quick; set
//! `PROPTEST_CASES` for a longer run (docs/performance.md has the command).
//! No cargo-fuzz targets: cargo-fuzz needs a nightly toolchain, and these
//! machines have exactly one (stable) toolchain.

use crate::clock::Clock;
use crate::json_mutation::{arb_mutation, mutate};
use crate::ledger::LedgerError;
use crate::ledger::{EventKind, EventLedger, HermesEvent, scan};
use crate::policy;
use crate::scheduler::jobs;
use crate::scheduler::schedule::Schedule;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;

fn valid_policy() -> Value {
    json!({
        "$comment": "Upgrade policy of the build host.",
        "format_version": 1,
        "fetch": { "timeout_secs": 120 },
        "repos": [
            { "name": "core", "path": "repos/core", "branch": "main" },
            {
                "$comment": ["api is built against core;", "upgrade it only after core."],
                "name": "api", "path": "repos/api", "branch": "main", "depends_on": ["core"],
                "remotes": [{ "name": "upstream", "role": "primary" }, { "name": "origin", "role": "fallback" }]
            },
            {
                "name": "web", "path": "/srv/git/web", "depends_on": ["api"],
                "health": { "argv": ["./scripts/smoke-test", "--quick"], "timeout_secs": 120 }
            }
        ],
        "checks": { "canary": { "argv": ["make", "test"], "timeout_secs": 900 } },
        "coordination": { "lease_ttl_secs": 1800, "remote_budgets": { "upstream": 2 } },
        "resources": { "max_lanes": 2, "mem_free_mib": { "critical": 128 } },
        "remote_health": { "open_after_failures": 5 },
        "plugins": { "federation-selector": { "fuel": 1000000 } }
    })
}

fn valid_jobs() -> Value {
    json!({
        "format_version": 1,
        "allowed_roots": ["/opt/hermes-scripts"],
        "jobs": [
            { "id": "upgrade", "schedule": "*/15 * * * *", "kind": "upgrade-cycle" },
            { "id": "backup", "schedule": "1h", "kind": "script", "path": "scripts/backup.sh",
              "args": ["--to", "/srv/backup"], "timeout_secs": 600, "enabled": true }
        ]
    })
}

fn valid_fixtures() -> Value {
    json!([
        { "name": "one", "input": { "repo": "app", "candidates": [] }, "expect": { "ok": { "chosen": "origin" } } },
        { "name": "two", "input": { "repo": "lib" }, "expect": { "err": "no candidate" } }
    ])
}

/// A real ledger of a dozen events, written by [`EventLedger`].
fn ledger_bytes() -> &'static (Vec<u8>, Vec<HermesEvent>) {
    static LEDGER: OnceLock<(Vec<u8>, Vec<HermesEvent>)> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = crate::state::StateStore::open(&tmp.path().join("state")).expect("state dir");
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").expect("time").with_timezone(&Utc);
        let mut ledger = EventLedger::open(store.dir(), &tmp.path().join("state"), Clock::Fixed(now)).expect("open");
        for i in 0..12u64 {
            let kind = if i % 3 == 0 { EventKind::TickStarted } else { EventKind::JobStarted };
            ledger
                .append(
                    "t-1",
                    kind,
                    &format!("repo-{}", i % 4),
                    json!({ "i": i, "text": "a \"quoted\" é", "list": [i, null] }),
                )
                .expect("append");
        }
        let events = ledger.appended().to_vec();
        let bytes = std::fs::read(ledger.path()).expect("read ledger");
        (bytes, events)
    })
}

/// A byte-level mutation of the ledger: flip, insert, cut, or move a line.
#[derive(Debug, Clone)]
enum LedgerDamage {
    Flip(usize, u8),
    Insert(usize, u8),
    Cut(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    DuplicateLine(usize),
}

fn arb_damage() -> impl Strategy<Value = LedgerDamage> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(n, m)| LedgerDamage::Flip(n, m)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| LedgerDamage::Insert(n, b)),
        1 => any::<usize>().prop_map(LedgerDamage::Cut),
        1 => any::<usize>().prop_map(LedgerDamage::DeleteLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LedgerDamage::SwapLines(a, b)),
        1 => any::<usize>().prop_map(LedgerDamage::DuplicateLine),
    ]
}

fn damage(bytes: &[u8], how: &LedgerDamage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    match how {
        LedgerDamage::Flip(n, mask) => {
            let i = n % out.len();
            out[i] ^= mask;
        }
        LedgerDamage::Insert(n, b) => out.insert(n % (out.len() + 1), *b),
        LedgerDamage::Cut(n) => out.truncate(n % (out.len() + 1)),
        LedgerDamage::DeleteLine(n) => {
            lines.remove(n % lines.len());
            out = lines.concat();
        }
        LedgerDamage::SwapLines(a, b) => {
            let len = lines.len();
            lines.swap(a % len, b % len);
            out = lines.concat();
        }
        LedgerDamage::DuplicateLine(n) => {
            let line = lines[n % lines.len()].clone();
            lines.insert(n % lines.len(), line);
            out = lines.concat();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

    #[test]
    fn a_damaged_policy_is_accepted_whole_or_refused_with_its_path(mutation in arb_mutation(&[])) {
        let path = Path::new("/srv/hermes/config/runtime_upgrade_policies.json");
        let bytes = mutate(&valid_policy(), &mutation);
        match policy::parse(&bytes, path) {
            Ok(parsed) => {
                // Whatever parses validates without panicking, and round-trips.
                let _ = policy::validate(&parsed, path, Path::new("/srv/hermes"));
                let again = policy::parse(&serde_json::to_vec(&parsed).unwrap(), path).unwrap();
                prop_assert_eq!(again, parsed);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with(&format!("invalid policy {}\n  at ", path.display())), "{}", text);
            }
        }
    }

    #[test]
    fn a_damaged_jobs_file_is_accepted_valid_or_refused_with_its_path(mutation in arb_mutation(&[])) {
        let path = Path::new("/srv/hermes/config/jobs.json");
        let text = String::from_utf8_lossy(&mutate(&valid_jobs(), &mutation)).into_owned();
        match jobs::parse(&text, path) {
            Ok(config) => {
                prop_assert!(jobs::validate(&config).is_ok());
                for job in &config.jobs {
                    prop_assert!(Schedule::parse(&job.schedule).is_ok(), "{}", job.schedule);
                }
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with(&format!("invalid jobs file {}\n  at ", path.display())), "{}", text);
            }
        }
    }

    #[test]
    fn damaged_fixtures_are_accepted_or_refused_with_their_path(mutation in arb_mutation(&[])) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("fixtures.json");
        std::fs::write(&path, mutate(&valid_fixtures(), &mutation)).unwrap();
        match crate::plugin::fixture::load(&path) {
            Ok(cases) => prop_assert!(cases.len() <= 3),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with(&format!("invalid fixtures {}\n  at ", path.display())), "{}", text);
            }
        }
    }

    #[test]
    fn any_text_parses_as_a_schedule_or_says_what_was_expected(text in "[0-9a-zA-Z*/,@ -]{0,24}") {
        if let Err(e) = Schedule::parse(&text) {
            prop_assert!(e.contains("expected a 5-field cron expression"), "{}", e);
        }
    }

    #[test]
    fn the_next_cron_slot_matches_and_nothing_matches_before_it(
        minute in "(\\*|[0-5]?[0-9]|\\*/[1-9][0-9]?)",
        hour in "(\\*|1?[0-9]|2[0-3]|[0-9]-1[0-9])",
        dom in "(\\*|[1-9]|[12][0-9]|3[01])",
        month in "(\\*|[1-9]|1[0-2]|jan|Feb|MAR)",
        dow in "(\\*|[0-7]|mon-fri|sun)",
        start in 0i64..(4 * 366 * 24 * 60),
    ) {
        let text = format!("{minute} {hour} {dom} {month} {dow}");
        let Ok(Schedule::Cron(cron)) = Schedule::parse(&text) else {
            return Err(TestCaseError::fail(format!("{text} did not parse")));
        };
        let after = DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z").unwrap().with_timezone(&Utc)
            + Duration::minutes(start);
        if let Some(next) = cron.next_slot(after) {
            prop_assert!(next > after && cron.matches(next), "{text}: {next}");
            prop_assert_eq!(cron.latest_slot(after, next), Some(next));
            prop_assert_eq!(cron.latest_slot(after, next - Duration::minutes(1)), None);
        }
    }

    #[test]
    fn the_ledger_reader_never_accepts_an_event_that_was_not_written(how in arb_damage()) {
        let (bytes, written) = ledger_bytes();
        let damaged = damage(bytes, &how);
        let mut seen: Vec<HermesEvent> = Vec::new();
        let result = scan(std::io::Cursor::new(&damaged), Path::new("runtime_events.jsonl"), |e| seen.push(e.clone()));
        prop_assert!(seen.len() <= written.len());
        for (got, want) in seen.iter().zip(written) {
            prop_assert_eq!(got, want, "an accepted event differs from the one written ({:?})", how);
        }
        match result {
            Ok(scan) => prop_assert_eq!(scan.events as usize, seen.len()),
            Err(LedgerError::Broken { first_bad_seq, .. }) => prop_assert!(first_bad_seq >= 1),
            Err(e) => return Err(TestCaseError::fail(format!("{how:?}: unexpected error {e}"))),
        }
    }
}
