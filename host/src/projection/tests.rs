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

/// The fold of `steps` with each payload handed over as raw JSON text (as
/// a long scan does) or as a parsed value (as a cycle does).
fn fold_payloads(steps: &[(EventKind, String, Value)], raw: bool) -> GraphSnapshot {
    let mut snapshot = GraphSnapshot::default();
    for (i, (kind, subject, payload)) in steps.iter().enumerate() {
        let text = serde_json::to_string(payload).unwrap();
        let raw_value = serde_json::value::RawValue::from_string(text).unwrap();
        let hash = format!("{i:064x}");
        let event = crate::ledger::EventRef {
            v: 1,
            seq: i as u64 + 1,
            time: "2026-11-25T10:00:00Z",
            tick: "t1",
            kind: kind.as_str(),
            subject,
            payload: if raw {
                crate::ledger::Payload::Raw(&raw_value)
            } else {
                crate::ledger::Payload::Value(std::borrow::Cow::Borrowed(payload))
            },
            prev_hash: "",
            hash: &hash,
        };
        snapshot.apply_step(super::Step::of(event));
    }
    snapshot
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

    /// Whatever shape a payload has (members missing, added, or of another
    /// type), reading it from its raw text folds exactly as reading it
    /// from a parsed value.
    #[test]
    fn raw_and_parsed_payloads_fold_alike(
        steps in prop::collection::vec(step_strategy(), 1..12),
        damage in prop::collection::vec(crate::json_mutation::arb_mutation(&["remote", "ok", "lease", "probe"]), 1..12),
    ) {
        let damaged: Vec<(EventKind, String, Value)> = steps
            .iter()
            .zip(damage.iter().cycle())
            .map(|((kind, subject, payload), mutation)| {
                let bytes = crate::json_mutation::mutate(payload, mutation);
                (*kind, subject.clone(), serde_json::from_slice(&bytes).unwrap_or_else(|_| payload.clone()))
            })
            .collect();
        prop_assert_eq!(fold_payloads(&damaged, true), fold_payloads(&damaged, false));
    }
}

#[test]
fn mistyped_payload_members_read_as_absent() {
    let steps = vec![
        (
            EventKind::RepoProbed,
            "api".to_owned(),
            json!({ "probe": { "branch": 5, "head": "a1", "ahead": -1, "behind": 2.5, "remote": null,
                               "failed_over": [{ "remote": "mirror" }, "backup", 3, { "remote": 4 }] } }),
        ),
        (
            EventKind::PlanMade,
            "cycle".to_owned(),
            json!({ "decision_hash": 7, "decisions": [{ "repo": "api", "risk": "high", "depends_on": ["core", 1] }, { "repo": 2 }, "x"] }),
        ),
        (EventKind::CycleStarted, "cycle".to_owned(), json!([])),
        (EventKind::CycleFinished, "cycle".to_owned(), json!({ "counts": { "upgraded": 1, "deferred": -1 } })),
        (EventKind::GateChecked, "g".to_owned(), json!({ "ok": "false" })),
        (EventKind::LeaseGranted, "api".to_owned(), json!({ "lease": "api" })),
        (EventKind::RolledBack, "api".to_owned(), json!({ "ok": 1, "to": "a0" })),
    ];
    for raw in [true, false] {
        let snapshot = fold_payloads(&steps, raw);
        let api = &snapshot.repos["api"];
        assert_eq!((api.branch.as_deref(), api.head.as_deref(), api.ahead, api.behind), (None, Some("a1"), 0, 0));
        assert_eq!(api.remote, None);
        let remotes: Vec<&str> = snapshot.remotes.keys().map(String::as_str).collect();
        assert_eq!(remotes, ["api/backup", "api/mirror"], "names as strings or as objects' `remote`");
        assert_eq!(api.depends_on, ["core"]);
        let decision = api.last_decision.as_ref().unwrap();
        assert_eq!((decision.risk, decision.decision_hash.as_str()), (None, ""));
        assert_eq!(snapshot.repos.len(), 1, "a decision without a repo name is skipped");
        let tick = snapshot.last_tick.as_ref().unwrap();
        assert!(tick.counts.is_empty(), "counts with a non-count member read as none");
        let integrity = snapshot.integrity.as_ref().unwrap();
        assert!(integrity.ok, "only a boolean false fails a gate check");
        assert!(snapshot.leases.is_empty(), "a lease that is not an object names no key");
        assert_eq!((api.rollbacks, snapshot.counters.rollbacks_failed), (0, 1), "only a boolean true rolled back");
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
