//! Projection tests over real ledger files in temporary directories.

use super::checkpoint::{self, Projection};
use super::patch::GraphPatch;
use super::*;
use crate::clock::Clock;
use crate::ledger::EventLedger;
use crate::state::StateStore;
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn clock() -> Clock {
    Clock::Fixed(chrono::Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap())
}

/// One step of a synthetic history: (kind, subject, payload).
type Step = (EventKind, String, Value);

fn step_strategy() -> impl Strategy<Value = Step> {
    let repo = prop::sample::select(vec!["api", "core", "web"]).prop_map(str::to_owned);
    let outcome = prop::sample::select(vec!["upgraded", "deferred", "blocked", "noop"]);
    (0u8..9, repo, outcome, 0u64..50).prop_map(|(which, repo, outcome, n)| match which {
        0 => (EventKind::CycleStarted, "cycle".into(), json!({ "mode": "execute" })),
        1 => (
            EventKind::RepoProbed,
            repo.clone(),
            json!({ "probe": { "repo": repo, "branch": "main", "head": format!("{n:040x}"), "upstream_head": format!("{:040x}", n + 1),
                    "ahead": 0, "behind": n, "remote": "origin", "failed_over": [{ "remote": "mirror" }] } }),
        ),
        2 => (
            EventKind::PlanMade,
            "cycle".into(),
            json!({ "decision_hash": format!("{n:064x}"), "decisions": [
                { "repo": repo, "recommendation": "upgrade", "risk": n, "reason_code": "behind-upstream",
                  "depends_on": if repo == "api" { vec!["core"] } else { vec![] } } ] }),
        ),
        3 => {
            let kind = match outcome {
                "upgraded" => EventKind::RepoUpgraded,
                "deferred" => EventKind::RepoDeferred,
                "blocked" => EventKind::RepoBlocked,
                _ => EventKind::RepoNoop,
            };
            (kind, repo.clone(), json!({ "repo": repo, "outcome": outcome, "reason_code": "x", "reason": "y", "head_after": format!("{:040x}", n + 1) }))
        }
        4 => (
            EventKind::LeaseGranted,
            repo.clone(),
            json!({ "lease": { "key": repo, "fencing_token": n, "expires_at": "2026-11-25T10:15:00Z", "holder": { "tick": "t" } } }),
        ),
        5 => (EventKind::LeaseReleased, repo, json!({ "fencing_token": n })),
        6 => (EventKind::GateChecked, "ledger-chain".into(), json!({ "ok": n % 2 == 0 })),
        7 => (EventKind::CycleFinished, "cycle".into(), json!({ "counts": { outcome: n }, "decision_hash": "h" })),
        _ => (EventKind::CycleSkipped, "cycle".into(), json!({ "holder": null })),
    })
}

/// Appends the steps; each `cycle-started` begins a new tick.
fn append_all(ledger: &mut EventLedger, steps: &[Step]) {
    let mut tick = ledger.appended().iter().filter(|e| e.kind == "cycle-started").count();
    for (kind, subject, payload) in steps {
        if *kind == EventKind::CycleStarted {
            tick += 1;
        }
        ledger.append(&format!("t{tick}"), *kind, subject, payload.clone()).unwrap();
    }
}

fn fold(ledger: &EventLedger) -> GraphSnapshot {
    let mut snapshot = GraphSnapshot::default();
    for event in ledger.appended() {
        snapshot.apply(event);
    }
    snapshot
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(24)))]

    /// Resuming from a checkpoint written after any prefix gives the same
    /// snapshot as folding every event from the first; the patch between
    /// the two positions turns one snapshot into the other.
    #[test]
    fn checkpoint_resume_equals_a_fresh_fold(steps in prop::collection::vec(step_strategy(), 1..40), split in 0usize..40) {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        let mut ledger = EventLedger::open(store.dir(), tmp.path(), clock()).unwrap();
        let split = split.min(steps.len());
        append_all(&mut ledger, &steps[..split]);
        let first: Projection = checkpoint::project(&store).unwrap();
        checkpoint::write(&store, "2026-11-25T10:00:00Z", &first).unwrap();
        append_all(&mut ledger, &steps[split..]);

        let resumed = checkpoint::project(&store).unwrap();
        prop_assert_eq!(resumed.discarded.clone(), None);
        prop_assert_eq!(resumed.events_read, (steps.len() - split) as u64);
        let fresh = fold(&ledger);
        prop_assert_eq!(&resumed.snapshot, &fresh);

        let patch = GraphPatch::diff(&first.snapshot, &fresh);
        prop_assert_eq!(patch.apply(&first.snapshot).unwrap(), fresh);
    }
}

#[test]
fn a_history_projects_repos_leases_and_edges() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StateStore::open(tmp.path()).unwrap();
    let mut ledger = EventLedger::open(store.dir(), tmp.path(), clock()).unwrap();
    let steps: Vec<Step> = vec![
        (EventKind::CycleStarted, "cycle".into(), json!({})),
        (
            EventKind::RepoProbed,
            "api".into(),
            json!({ "probe": { "branch": "main", "head": "a1", "behind": 2, "remote": "origin", "failed_over": [] } }),
        ),
        (
            EventKind::PlanMade,
            "cycle".into(),
            json!({ "decision_hash": "h1", "decisions": [{ "repo": "api", "recommendation": "upgrade", "risk": 120, "reason_code": "behind-upstream", "depends_on": ["core"] }] }),
        ),
        (
            EventKind::LeaseGranted,
            "api".into(),
            json!({ "lease": { "key": "api", "fencing_token": 7, "expires_at": "e", "holder": { "tick": "t0" } } }),
        ),
        (
            EventKind::RepoUpgraded,
            "api".into(),
            json!({ "outcome": "upgraded", "reason_code": "behind-upstream", "reason": "r", "head_after": "b2" }),
        ),
        (EventKind::LeaseReleased, "api".into(), json!({ "fencing_token": 7 })),
        (EventKind::CycleFinished, "cycle".into(), json!({ "counts": { "upgraded": 1 }, "decision_hash": "h1" })),
    ];
    append_all(&mut ledger, &steps);
    let snapshot = checkpoint::project(&store).unwrap().snapshot;
    let api = &snapshot.repos["api"];
    assert_eq!(api.head.as_deref(), Some("b2"));
    assert_eq!(api.last_decision.as_ref().unwrap().risk, Some(120));
    assert_eq!(api.last_outcome.as_ref().unwrap().outcome, "upgraded");
    assert!(snapshot.leases.is_empty(), "released");
    assert_eq!(snapshot.last_tick.as_ref().unwrap().counts["upgraded"], 1);
    let kinds: Vec<&str> = snapshot.edges.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["uses-remote", "depends-on"], "ordered by (from, to, kind)");
    assert!(super::dot::to_dot(&snapshot).contains("\"repo:api\" -> \"repo:core\" [label=\"depends-on\"];"));
}

#[test]
fn a_checkpoint_that_disagrees_with_the_ledger_is_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = StateStore::open(tmp.path()).unwrap();
    let mut ledger = EventLedger::open(store.dir(), tmp.path(), clock()).unwrap();
    let step = (EventKind::CycleSkipped, "cycle".to_owned(), json!({}));
    append_all(&mut ledger, &[step.clone(), step.clone()]);
    checkpoint::write(&store, "w", &checkpoint::project(&store).unwrap()).unwrap();
    drop(ledger);
    // A different ledger of the same length: the checkpoint's head is not in it.
    std::fs::remove_file(tmp.path().join(crate::ledger::LEDGER_FILE)).unwrap();
    let mut other = EventLedger::open(store.dir(), tmp.path(), clock()).unwrap();
    append_all(&mut other, &[(EventKind::CycleSkipped, "other".to_owned(), json!({})), step]);
    let projection = checkpoint::project(&store).unwrap();
    assert!(
        projection.discarded.as_deref().is_some_and(|why| why.contains("checkpoint expects event 2")),
        "{projection:?}"
    );
    assert_eq!(projection.events_read, 2);
    assert_eq!(projection.snapshot, fold(&other));
}
