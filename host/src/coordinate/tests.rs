//! Lease tests: real files in temp dirs through real `StateStore`s.

use super::*;
use crate::state::{LedgerHead, StateError, StateStore, ViewName};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tempfile::TempDir;

const TTL: u64 = 60;
const DELAY: u64 = 5;
const VIEW_FILE: &str = "coordination_leases.json";

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&Utc) + TimeDelta::seconds(secs)
}

fn stamp(secs: i64) -> String {
    t(secs).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn holder(n: u32) -> Holder {
    Holder { host: "host-a".into(), pid: 1000 + n, tick: format!("tick-{n}") }
}

fn head() -> LedgerHead {
    LedgerHead { seq: 7, hash: "ab".repeat(32) }
}

fn state_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

fn open(dir: &TempDir) -> StateStore {
    StateStore::open(&dir.path().join("state")).unwrap()
}

fn manager(store: &StateStore, n: u32) -> LeaseManager<'_> {
    LeaseManager::new(store, holder(n), Duration::from_secs(TTL), Duration::from_secs(DELAY)).unwrap()
}

fn view_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("state").join(VIEW_FILE)
}

#[track_caller]
fn granted(outcome: Acquire) -> (Lease, Option<Lease>) {
    match outcome {
        Acquire::Granted { lease, takeover_of } => (lease, takeover_of),
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[track_caller]
fn conflict(outcome: Acquire) -> Lease {
    match outcome {
        Acquire::Conflict { held_by } => held_by,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[track_caller]
fn stale<T: std::fmt::Debug>(result: Result<T, CoordError>) -> (String, u64, Option<u64>) {
    match result {
        Err(CoordError::StaleFence { key, presented, current }) => (key, presented, current),
        other => panic!("expected a stale fence, got {other:?}"),
    }
}

#[test]
fn grant_on_a_free_key_is_persisted_with_the_ledger_head() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    let (lease, takeover_of) = granted(a.acquire("api", t(0), &head()).unwrap());
    assert_eq!(takeover_of, None);
    assert_eq!(
        lease,
        Lease {
            key: "api".into(),
            holder: holder(1),
            acquired_at: "2026-03-01T12:00:00.000Z".into(),
            renewed_at: "2026-03-01T12:00:00.000Z".into(),
            expires_at: "2026-03-01T12:01:00.000Z".into(),
            ttl_secs: TTL,
            transitions: 1,
            fencing_token: 1,
        }
    );
    let envelope = store.read::<LeaseTable>(ViewName::CoordinationLeases).unwrap().unwrap();
    assert_eq!(envelope.view, "coordination_leases");
    assert_eq!(envelope.ledger_head, head());
    assert_eq!(envelope.written_at, stamp(0));
    assert_eq!(envelope.data.fencing_high_water, 1);
    assert_eq!(envelope.data.leases.get("api"), Some(&lease));
    assert!(!dir.path().join("state").join(format!(".{VIEW_FILE}.tmp-{}", std::process::id())).exists());
    assert!(dir.path().join("state").join(LOCK_FILE).exists());

    assert_eq!(a.active(t(59)).unwrap(), vec![lease.clone()]);
    assert_eq!(a.active(t(60)).unwrap(), vec![], "a lease is inactive from its expires_at on");
    assert_eq!(a.snapshot().unwrap().leases.len(), 1, "an expired lease stays in the table");
    a.check_fence("api", 1, t(59)).unwrap();
}

#[test]
fn the_stored_ledger_head_is_the_one_of_the_last_write() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    a.acquire("api", t(0), &LedgerHead::default()).unwrap();
    let later = LedgerHead { seq: 9, hash: "cd".repeat(32) };
    a.renew("api", 1, t(1), &later).unwrap();
    let envelope = store.read::<LeaseTable>(ViewName::CoordinationLeases).unwrap().unwrap();
    assert_eq!(envelope.ledger_head, later);
    assert_eq!(envelope.written_at, stamp(1));
}

#[test]
fn a_missing_view_is_an_empty_table_and_refusals_write_nothing() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    assert_eq!(a.active(t(0)).unwrap(), vec![]);
    assert_eq!(a.snapshot().unwrap(), LeaseTable::default());
    assert_eq!(stale(a.check_fence("api", 1, t(0))), ("api".into(), 1, None));
    assert_eq!(stale(a.renew("api", 1, t(0), &head())), ("api".into(), 1, None));
    assert_eq!(stale(a.release("api", 1, t(0), &head())), ("api".into(), 1, None));
    assert!(!view_path(&dir).exists());
}

#[test]
fn an_active_foreign_lease_wins_and_the_conflict_writes_nothing() {
    let dir = state_dir();
    let store = open(&dir);
    let (a, b) = (manager(&store, 1), manager(&store, 2));
    let (lease, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    let before = std::fs::read(view_path(&dir)).unwrap();
    assert_eq!(conflict(b.acquire("api", t(30), &LedgerHead::default()).unwrap()), lease);
    assert_eq!(conflict(b.acquire("api", t(59), &head()).unwrap()), lease);
    assert_eq!(std::fs::read(view_path(&dir)).unwrap(), before);
    assert_eq!(stale(b.check_fence("api", 1, t(30))), ("api".into(), 1, Some(1)), "the token is A's, not B's");
    assert_eq!(stale(b.release("api", 1, t(30), &head())), ("api".into(), 1, Some(1)));
    a.check_fence("api", 1, t(30)).unwrap();
}

#[test]
fn the_holder_reacquiring_its_active_lease_renews_it_with_the_same_token() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    let (first, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    let Acquire::Renewed { lease } = a.acquire("api", t(30), &head()).unwrap() else { panic!("expected a renewal") };
    assert_eq!(lease.fencing_token, first.fencing_token);
    assert_eq!(lease.acquired_at, stamp(0));
    assert_eq!(lease.renewed_at, stamp(30));
    assert_eq!(lease.expires_at, stamp(90));
    assert_eq!(lease.transitions, 1);
    assert_eq!(a.snapshot().unwrap().fencing_high_water, 1);
    a.check_fence("api", 1, t(89)).unwrap();
}

#[test]
fn renew_extends_the_lease_from_now() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    a.acquire("api", t(0), &head()).unwrap();
    let lease = a.renew("api", 1, t(50), &head()).unwrap();
    assert_eq!(
        (lease.fencing_token, lease.renewed_at.as_str(), lease.expires_at.as_str()),
        (1, &*stamp(50), &*stamp(110))
    );
    assert_eq!(a.snapshot().unwrap().leases["api"], lease);
    a.check_fence("api", 1, t(109)).unwrap();
    assert_eq!(stale(a.check_fence("api", 1, t(110))), ("api".into(), 1, None));
}

#[test]
fn a_takeover_waits_for_the_lock_delay_and_is_reported_with_a_higher_token() {
    let dir = state_dir();
    let store = open(&dir);
    let (a, b) = (manager(&store, 1), manager(&store, 2));
    let (old, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    for secs in [59, 60, 64] {
        assert_eq!(conflict(b.acquire("api", t(secs), &head()).unwrap()), old, "at t+{secs}s");
    }
    let (lease, takeover_of) = granted(b.acquire("api", t(65), &head()).unwrap());
    assert_eq!(takeover_of, Some(old.clone()));
    assert_eq!(lease.holder, holder(2));
    assert_eq!(lease.fencing_token, 2);
    assert_eq!(lease.transitions, 2);
    assert_eq!(lease.acquired_at, stamp(65));
    assert_eq!(stale(a.renew("api", 1, t(65), &head())), ("api".into(), 1, Some(2)));
    assert_eq!(stale(a.check_fence("api", 1, t(65))), ("api".into(), 1, Some(2)));
    assert_eq!(conflict(a.acquire("api", t(66), &head()).unwrap()), lease);

    let zero_delay = LeaseManager::new(&store, holder(3), Duration::from_secs(TTL), Duration::ZERO).unwrap();
    let (third, takeover_of) = granted(zero_delay.acquire("api", t(125), &head()).unwrap());
    assert_eq!(takeover_of, Some(lease));
    assert_eq!((third.fencing_token, third.transitions), (3, 3));
}

#[test]
fn the_holder_reacquiring_its_expired_lease_gets_a_new_token_without_delay() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    a.acquire("api", t(0), &head()).unwrap();
    let (lease, takeover_of) = granted(a.acquire("api", t(60), &head()).unwrap());
    assert_eq!(takeover_of, None);
    assert_eq!((lease.fencing_token, lease.transitions, lease.acquired_at.as_str()), (2, 1, &*stamp(60)));
    assert_eq!(stale(a.check_fence("api", 1, t(60))), ("api".into(), 1, Some(2)));
}

#[test]
fn release_frees_the_key_and_the_next_grant_gets_a_higher_token() {
    let dir = state_dir();
    let store = open(&dir);
    let (a, b) = (manager(&store, 1), manager(&store, 2));
    let (lease, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    assert_eq!(a.release("api", 1, t(10), &head()).unwrap(), lease);
    assert_eq!(a.active(t(10)).unwrap(), vec![]);
    assert_eq!(a.snapshot().unwrap(), LeaseTable { leases: BTreeMap::new(), fencing_high_water: 1 });
    assert_eq!(stale(a.release("api", 1, t(10), &head())), ("api".into(), 1, None), "a second release is stale");

    let (next, takeover_of) = granted(b.acquire("api", t(11), &head()).unwrap());
    assert_eq!((next.fencing_token, next.transitions, takeover_of), (2, 1, None));
    assert_eq!(conflict(a.acquire("api", t(12), &head()).unwrap()), next);
    b.release("api", 2, t(13), &head()).unwrap();
    let (again, _) = granted(a.acquire("api", t(14), &head()).unwrap());
    assert_eq!(again.fencing_token, 3);
}

#[test]
fn stale_tokens_are_refused_and_change_nothing() {
    let dir = state_dir();
    let store = open(&dir);
    let (a, b) = (manager(&store, 1), manager(&store, 2));
    let (lease, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    let before = std::fs::read(view_path(&dir)).unwrap();
    // A wrong token of the right holder.
    assert_eq!(stale(a.renew("api", 99, t(1), &head())), ("api".into(), 99, Some(1)));
    assert_eq!(stale(a.release("api", 0, t(1), &head())), ("api".into(), 0, Some(1)));
    assert_eq!(stale(a.check_fence("api", 2, t(1))), ("api".into(), 2, Some(1)));
    // The right token presented by another holder.
    assert_eq!(stale(b.renew("api", 1, t(1), &head())), ("api".into(), 1, Some(1)));
    // A key without a lease.
    assert_eq!(stale(a.check_fence("web", 1, t(1))), ("web".into(), 1, None));
    assert_eq!(std::fs::read(view_path(&dir)).unwrap(), before);
    // The holder's own token once the lease has expired.
    assert_eq!(stale(a.renew("api", 1, t(60), &head())), ("api".into(), 1, None));
    assert_eq!(stale(a.release("api", 1, t(61), &head())), ("api".into(), 1, None));
    assert_eq!(stale(a.check_fence("api", 1, t(62))), ("api".into(), 1, None));
    assert_eq!(std::fs::read(view_path(&dir)).unwrap(), before);
    assert_eq!(a.snapshot().unwrap().leases["api"], lease);

    let message = a.check_fence("api", 1, t(62)).unwrap_err().to_string();
    assert!(message.contains("fencing token 1") && message.contains("\"api\""), "{message}");
}

#[test]
fn fencing_tokens_survive_reopening_the_state_directory() {
    let dir = state_dir();
    {
        let store = open(&dir);
        let a = manager(&store, 1);
        for key in ["a", "b", "c"] {
            let (lease, _) = granted(a.acquire(key, t(0), &head()).unwrap());
            a.release(key, lease.fencing_token, t(1), &head()).unwrap();
        }
    }
    let store = open(&dir);
    let c = manager(&store, 3);
    assert_eq!(c.snapshot().unwrap(), LeaseTable { leases: BTreeMap::new(), fencing_high_water: 3 });
    let (lease, _) = granted(c.acquire("a", t(2), &head()).unwrap());
    assert_eq!(lease.fencing_token, 4);
}

#[test]
fn two_managers_on_one_state_directory_interleave() {
    let dir = state_dir();
    // Two stores: as two processes would open the directory.
    let (store_a, store_b) = (open(&dir), open(&dir));
    let (a, b) = (manager(&store_a, 1), manager(&store_b, 2));
    let (api, _) = granted(a.acquire("api", t(0), &head()).unwrap());
    assert_eq!(conflict(b.acquire("api", t(1), &head()).unwrap()), api);
    let (web, _) = granted(b.acquire("web", t(1), &head()).unwrap());
    assert_eq!(web.fencing_token, 2);
    let api = a.renew("api", 1, t(30), &head()).unwrap();
    b.release("web", 2, t(31), &head()).unwrap();
    let (web, _) = granted(a.acquire("web", t(32), &head()).unwrap());
    assert_eq!(web.fencing_token, 3);
    assert_eq!(conflict(b.acquire("web", t(33), &head()).unwrap()), web);
    assert_eq!(b.active(t(33)).unwrap(), vec![api.clone(), web.clone()]);
    assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
    // A stops renewing; B takes both keys over after expiry plus lock delay.
    let (api_b, from) = granted(b.acquire("api", t(90 + DELAY as i64), &head()).unwrap());
    assert_eq!((api_b.fencing_token, from), (4, Some(api)));
    let (web_b, from) = granted(b.acquire("web", t(92 + DELAY as i64), &head()).unwrap());
    assert_eq!((web_b.fencing_token, from), (5, Some(web)));
    assert_eq!(stale(a.check_fence("web", 3, t(100))), ("web".into(), 3, Some(5)));
}

#[test]
fn concurrent_acquires_grant_each_key_exactly_once() {
    const THREADS: u32 = 8;
    let dir = state_dir();
    let path = dir.path().join("state");
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let outcomes: Vec<(Acquire, Acquire)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|n| {
                let (barrier, path) = (Arc::clone(&barrier), path.clone());
                scope.spawn(move || {
                    let store = StateStore::open(&path).unwrap();
                    let m = manager(&store, n);
                    barrier.wait();
                    let contended = m.acquire("contended", t(0), &head()).unwrap();
                    let own = m.acquire(&format!("own-{n}"), t(0), &head()).unwrap();
                    (contended, own)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&Lease> = outcomes
        .iter()
        .filter_map(|(c, _)| match c {
            Acquire::Granted { lease, .. } => Some(lease),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (contended, _) in &outcomes {
        if let Acquire::Conflict { held_by } = contended {
            assert_eq!(held_by, winners[0]);
        }
    }
    let mut tokens = BTreeSet::from([winners[0].fencing_token]);
    for (_, own) in outcomes {
        assert!(tokens.insert(granted(own).0.fencing_token), "tokens are unique");
    }
    assert_eq!(tokens, (1..=u64::from(THREADS) + 1).collect());
    let store = open(&dir);
    let table = manager(&store, 99).snapshot().unwrap();
    assert_eq!(table.fencing_high_water, u64::from(THREADS) + 1);
    assert_eq!(table.leases.len(), THREADS as usize + 1);
}

fn envelope(format_version: u32, view: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"format_version":{format_version},"view":"{view}","written_at":"2026-03-01T12:00:00.000Z","ledger_head":{{"seq":0,"hash":""}},"data":{data}}}"#
    )
    .into_bytes()
}

fn envelope_with(data: &str) -> Vec<u8> {
    envelope(1, "coordination_leases", data)
}

fn lease_json(key: &str, token: u64, expires_at: &str) -> String {
    format!(
        r#"{{"key":"{key}","holder":{{"host":"h","pid":1,"tick":"x"}},"acquired_at":"2026-03-01T12:00:00.000Z","renewed_at":"2026-03-01T12:00:00.000Z","expires_at":"{expires_at}","ttl_secs":60,"transitions":1,"fencing_token":{token}}}"#
    )
}

#[test]
fn a_valid_hand_written_table_is_read() {
    let dir = state_dir();
    let store = open(&dir);
    let exp = "2026-03-01T12:01:00.000Z";
    std::fs::write(
        view_path(&dir),
        envelope_with(&format!(r#"{{"leases":{{"api":{}}},"fencing_high_water":5}}"#, lease_json("api", 5, exp))),
    )
    .unwrap();
    let b = manager(&store, 2);
    assert_eq!(b.active(t(0)).unwrap()[0].fencing_token, 5);
    let (lease, _) = granted(b.acquire("web", t(0), &head()).unwrap());
    assert_eq!(lease.fencing_token, 6);
}

#[test]
fn corrupt_views_are_errors_naming_the_file_and_are_left_byte_identical() {
    let exp = "2026-03-01T12:01:00.000Z";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{\"format_version\":1, \"view\": \"coordination_le".to_vec()),
        ("empty file", Vec::new()),
        ("wrong view name", envelope(1, "remote_health", r#"{"leases":{},"fencing_high_water":0}"#)),
        ("missing high-water", envelope_with(r#"{"leases":{}}"#)),
        ("unknown field", envelope_with(r#"{"leases":{},"fencing_high_water":0,"extra":1}"#)),
        (
            "token above the high-water mark",
            envelope_with(&format!(r#"{{"leases":{{"api":{}}},"fencing_high_water":2}}"#, lease_json("api", 3, exp))),
        ),
        (
            "token zero",
            envelope_with(&format!(r#"{{"leases":{{"api":{}}},"fencing_high_water":2}}"#, lease_json("api", 0, exp))),
        ),
        (
            "key mismatch",
            envelope_with(&format!(r#"{{"leases":{{"api":{}}},"fencing_high_water":2}}"#, lease_json("web", 1, exp))),
        ),
        (
            "bad time",
            envelope_with(&format!(
                r#"{{"leases":{{"api":{}}},"fencing_high_water":2}}"#,
                lease_json("api", 1, "soon")
            )),
        ),
        (
            "duplicate token",
            envelope_with(&format!(
                r#"{{"leases":{{"api":{},"web":{}}},"fencing_high_water":2}}"#,
                lease_json("api", 2, exp),
                lease_json("web", 2, exp)
            )),
        ),
    ];
    for (what, bytes) in cases {
        let dir = state_dir();
        let store = open(&dir);
        std::fs::write(view_path(&dir), &bytes).unwrap();
        let a = manager(&store, 1);
        let results: Vec<(&str, Result<(), CoordError>)> = vec![
            ("acquire", a.acquire("api", t(0), &head()).map(drop)),
            ("renew", a.renew("api", 1, t(0), &head()).map(drop)),
            ("release", a.release("api", 1, t(0), &head()).map(drop)),
            ("check_fence", a.check_fence("api", 1, t(0))),
            ("active", a.active(t(0)).map(drop)),
            ("snapshot", a.snapshot().map(drop)),
        ];
        for (op, result) in results {
            match result {
                Err(CoordError::State(StateError::Corrupt { ref path, .. })) => {
                    assert_eq!(path, &view_path(&dir), "{what}: {op}");
                    let message = result.unwrap_err().to_string();
                    assert!(message.contains(VIEW_FILE), "{what}: {op}: {message}");
                }
                other => panic!("{what}: {op}: expected a corrupt-state error, got {other:?}"),
            }
        }
        assert_eq!(std::fs::read(view_path(&dir)).unwrap(), bytes, "{what}: the file is left as it was");
    }
}

#[test]
fn a_view_from_a_newer_hermes_is_refused_and_kept() {
    let dir = state_dir();
    let store = open(&dir);
    let bytes = envelope(2, "coordination_leases", r#"{"leases":{},"fencing_high_water":0,"new":true}"#);
    std::fs::write(view_path(&dir), &bytes).unwrap();
    let result = manager(&store, 1).acquire("api", t(0), &head());
    assert!(matches!(result, Err(CoordError::State(StateError::FutureVersion { found: 2, .. }))), "{result:?}");
    assert_eq!(std::fs::read(view_path(&dir)).unwrap(), bytes);
}

#[test]
fn invalid_settings_and_times_are_refused() {
    let dir = state_dir();
    let store = open(&dir);
    let secs = Duration::from_secs;
    for (ttl, delay, setting) in [
        (secs(0), secs(5), "ttl"),
        (Duration::from_millis(1500), secs(5), "ttl"),
        (secs(MAX_LEASE_TTL_SECS + 1), secs(5), "ttl"),
        (secs(60), secs(MAX_LOCK_DELAY_SECS + 1), "lock_delay"),
        (secs(60), Duration::from_millis(10), "lock_delay"),
    ] {
        match LeaseManager::new(&store, holder(1), ttl, delay) {
            Err(CoordError::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting, "{ttl:?} {delay:?}"),
            other => panic!("{ttl:?} {delay:?}: expected an invalid setting, got {other:?}"),
        }
    }
    LeaseManager::new(&store, holder(1), secs(MAX_LEASE_TTL_SECS), secs(MAX_LOCK_DELAY_SECS)).unwrap();

    let a = manager(&store, 1);
    let late = DateTime::parse_from_rfc3339("9999-12-31T23:59:30Z").unwrap().with_timezone(&Utc);
    assert!(matches!(a.acquire("api", late, &head()), Err(CoordError::TimeOutOfRange { secs: TTL, .. })));
    assert!(!view_path(&dir).exists());
}

#[test]
fn sub_millisecond_times_are_truncated_never_extended() {
    let dir = state_dir();
    let store = open(&dir);
    let a = manager(&store, 1);
    let now = t(0) + TimeDelta::microseconds(1_999);
    let (lease, _) = granted(a.acquire("api", now, &head()).unwrap());
    assert_eq!(lease.acquired_at, "2026-03-01T12:00:00.001Z");
    assert_eq!(lease.expires_at, "2026-03-01T12:01:00.001Z");
    assert_eq!(a.active(t(60) + TimeDelta::microseconds(1_000)).unwrap(), vec![]);
}

// ---------------------------------------------------------------------------
// Random interleavings of three holders on three keys, against a model.

const P_TTL: i64 = 10;
const P_DELAY: i64 = 3;
const HOLDERS: usize = 3;
const KEYS: [&str; 3] = ["api", "db", "web"];

#[derive(Debug, Clone, Copy)]
enum Tok {
    /// The last token this holder was granted for the key (0 if none).
    Last,
    /// Any token, usually a stale or foreign one.
    Any(u64),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire(usize, usize),
    Renew(usize, usize, Tok),
    Release(usize, usize, Tok),
    Check(usize, usize, Tok),
    Advance(i64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let hk = (0..HOLDERS, 0..KEYS.len());
    let tok = prop_oneof![3 => Just(Tok::Last), 1 => (0..16u64).prop_map(Tok::Any)];
    prop_oneof![
        4 => hk.clone().prop_map(|(h, k)| Op::Acquire(h, k)),
        2 => (hk.clone(), tok.clone()).prop_map(|((h, k), t)| Op::Renew(h, k, t)),
        2 => (hk.clone(), tok.clone()).prop_map(|((h, k), t)| Op::Release(h, k, t)),
        1 => (hk, tok).prop_map(|((h, k), t)| Op::Check(h, k, t)),
        3 => (0..=2 * (P_TTL + P_DELAY)).prop_map(Op::Advance),
    ]
}

/// The model's view of one lease: holder index, token, expiry (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ModelLease {
    holder: usize,
    token: u64,
    expires: i64,
    transitions: u64,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Granted { token: u64, transitions: u64, takeover_of: Option<u64> },
    Renewed { token: u64 },
    Conflict { token: u64 },
}

#[derive(Debug, Default)]
struct Model {
    leases: BTreeMap<usize, ModelLease>,
    high_water: u64,
}

impl Model {
    fn active(&self, k: usize, now: i64) -> Option<ModelLease> {
        self.leases.get(&k).copied().filter(|l| now < l.expires)
    }

    fn acquire(&mut self, h: usize, k: usize, now: i64) -> Expect {
        let current = self.leases.get(&k).copied();
        let (transitions, takeover_of) = match current {
            Some(l) if now < l.expires && l.holder == h => {
                self.leases.insert(k, ModelLease { expires: now + P_TTL, ..l });
                return Expect::Renewed { token: l.token };
            }
            Some(l) if now < l.expires + if l.holder == h { 0 } else { P_DELAY } => {
                return Expect::Conflict { token: l.token };
            }
            Some(l) if l.holder == h => (l.transitions, None),
            Some(l) => (l.transitions + 1, Some(l.token)),
            None => (1, None),
        };
        self.high_water += 1;
        let token = self.high_water;
        self.leases.insert(k, ModelLease { holder: h, token, expires: now + P_TTL, transitions });
        Expect::Granted { token, transitions, takeover_of }
    }

    /// `Ok` if `token` is current for `h`, else the key's active token.
    fn fence(&self, h: usize, k: usize, token: u64, now: i64) -> Result<(), Option<u64>> {
        match self.active(k, now) {
            Some(l) if l.holder == h && l.token == token => Ok(()),
            active => Err(active.map(|l| l.token)),
        }
    }
}

fn run_interleaving(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = state_dir();
    let stores: Vec<StateStore> = (0..HOLDERS).map(|_| open(&dir)).collect();
    let managers: Vec<LeaseManager<'_>> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            LeaseManager::new(
                store,
                holder(i as u32),
                Duration::from_secs(P_TTL as u64),
                Duration::from_secs(P_DELAY as u64),
            )
            .unwrap()
        })
        .collect();
    let mut model = Model::default();
    let mut now = 0i64;
    let mut last: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut highest_granted = 0u64;
    for (step, &op) in ops.iter().enumerate() {
        let at = t(now);
        let token_of = |h: usize, k: usize, tok: Tok| match tok {
            Tok::Last => last.get(&(h, k)).copied().unwrap_or(0),
            Tok::Any(token) => token,
        };
        // Whether the token is current, judged from the store itself.
        let is_current = |h: usize, k: usize, token: u64| -> Result<bool, TestCaseError> {
            let active = managers[0].active(at).map_err(|e| TestCaseError::fail(e.to_string()))?;
            Ok(active.iter().any(|l| l.key == KEYS[k] && l.holder == holder(h as u32) && l.fencing_token == token))
        };
        match op {
            Op::Advance(secs) => now += secs,
            Op::Acquire(h, k) => {
                let expected = model.acquire(h, k, now);
                let actual =
                    managers[h].acquire(KEYS[k], at, &head()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got = match &actual {
                    Acquire::Granted { lease, takeover_of } => {
                        prop_assert!(
                            lease.fencing_token > highest_granted,
                            "step {step}: token {} not above {highest_granted}",
                            lease.fencing_token
                        );
                        highest_granted = lease.fencing_token;
                        last.insert((h, k), lease.fencing_token);
                        Expect::Granted {
                            token: lease.fencing_token,
                            transitions: lease.transitions,
                            takeover_of: takeover_of.as_ref().map(|l| l.fencing_token),
                        }
                    }
                    Acquire::Renewed { lease } => Expect::Renewed { token: lease.fencing_token },
                    Acquire::Conflict { held_by } => {
                        prop_assert_ne!(&held_by.holder, &holder(h as u32), "step {}: conflict with itself", step);
                        Expect::Conflict { token: held_by.fencing_token }
                    }
                };
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::Renew(h, k, tok) | Op::Release(h, k, tok) | Op::Check(h, k, tok) => {
                let token = token_of(h, k, tok);
                let current = is_current(h, k, token)?;
                let expected = model.fence(h, k, token, now);
                prop_assert_eq!(current, expected.is_ok(), "step {}: model and store disagree", step);
                let result = match op {
                    Op::Renew(..) => managers[h].renew(KEYS[k], token, at, &head()).map(|l| Some(l.fencing_token)),
                    Op::Release(..) => managers[h].release(KEYS[k], token, at, &head()).map(|l| Some(l.fencing_token)),
                    _ => managers[h].check_fence(KEYS[k], token, at).map(|()| None),
                };
                match (result, expected) {
                    (Ok(returned), Ok(())) => {
                        prop_assert!(returned.is_none_or(|t| t == token), "step {step}: returned another lease");
                        match op {
                            Op::Renew(..) => {
                                let l = model.leases.get_mut(&k).unwrap();
                                l.expires = now + P_TTL;
                            }
                            Op::Release(..) => {
                                model.leases.remove(&k);
                                let active = managers[(h + 1) % HOLDERS].active(at).unwrap();
                                prop_assert!(
                                    active.iter().all(|l| l.key != KEYS[k]),
                                    "step {step}: released key still active"
                                );
                            }
                            _ => {}
                        }
                    }
                    (Err(CoordError::StaleFence { key, presented, current }), Err(model_current)) => {
                        prop_assert_eq!(
                            (key.as_str(), presented, current),
                            (KEYS[k], token, model_current),
                            "step {}",
                            step
                        );
                    }
                    (result, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: {op:?}: got {result:?}, expected {expected:?}"
                        )));
                    }
                }
            }
        }
        // Invariants after every step, at the current time.
        let at = t(now);
        let active = managers[step % HOLDERS].active(at).unwrap();
        let keys: BTreeSet<&str> = active.iter().map(|l| l.key.as_str()).collect();
        prop_assert_eq!(keys.len(), active.len(), "step {}: two active leases on one key", step);
        let model_active: Vec<(usize, u64)> =
            (0..KEYS.len()).filter_map(|k| model.active(k, now).map(|l| (k, l.token))).collect();
        let store_active: Vec<(usize, u64)> =
            active.iter().map(|l| (KEYS.iter().position(|k| *k == l.key).unwrap(), l.fencing_token)).collect();
        prop_assert_eq!(store_active, model_active, "step {}", step);
        for (k, key) in KEYS.iter().enumerate() {
            let passing = (0..HOLDERS)
                .filter(|&h| last.get(&(h, k)).is_some_and(|&token| managers[h].check_fence(key, token, at).is_ok()))
                .count();
            prop_assert!(passing <= 1, "step {step}: {passing} holders pass the fence on {key}");
        }
        let table = managers[0].snapshot().unwrap();
        prop_assert_eq!(table.fencing_high_water, model.high_water);
        prop_assert!(table.leases.values().all(|l| l.fencing_token <= table.fencing_high_water));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

    #[test]
    fn random_interleavings_keep_the_lease_invariants(ops in proptest::collection::vec(arb_op(), 1..40)) {
        run_interleaving(&ops)?;
    }
}
