//! Projection benchmarks (figures in docs/performance.md):
//!
//! - `replay/1M-events`: verify the hash chain of, and project, a ledger of
//!   1,000,000 synthetic events with no checkpoint (what `hermes replay` and
//!   a first `hermes status` do);
//! - `status/{10k,100k,1M}`: resume the projection from a checkpoint at the
//!   ledger's end (what `hermes status` does after a cycle): the cost should
//!   not depend on the ledger's length.
//!
//! The synthetic history repeats one realistic cycle of 20 events over 8
//! repositories (probe, plan, lease, outcome, release...), hash-chained
//! exactly as `EventLedger` writes it (payloads of 100-600 bytes).
//!
//! Run: `cargo bench -p hermes --bench projection`.

use criterion::{Criterion, criterion_group, criterion_main};
use hermes::ledger::{EVENT_FORMAT_VERSION, EventKind, GENESIS_HASH, HermesEvent, LEDGER_FILE};
use hermes::projection::checkpoint;
use hermes::state::StateStore;
use serde_json::{Value, json};
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::Path;

const REPOS: [&str; 8] = ["api", "core", "docs", "infra", "tools", "vendor", "web", "worker"];

/// The `i`-th event of the synthetic history.
fn synthetic(i: u64) -> (EventKind, String, Value) {
    let cycle = i / 20;
    let repo = REPOS[(i % 8) as usize].to_owned();
    let head = format!("{:040x}", cycle * 8 + i % 8);
    match i % 20 {
        0 => (
            EventKind::CycleStarted,
            "cycle".into(),
            json!({ "mode": "execute", "policy_digest": "0".repeat(64), "repos": 8 }),
        ),
        1..=8 => (
            EventKind::RepoProbed,
            repo.clone(),
            json!({ "probe": { "repo": repo, "branch": "main", "head": head, "upstream_head": head, "ahead": 0, "behind": 2,
                    "remote": "origin", "failed_over": [], "dirty_paths": 0, "untracked_paths": 0, "fetch_ms": 12 },
                    "signals": [], "score": null, "plugin_failure": null }),
        ),
        9 => (
            EventKind::PlanMade,
            "cycle".into(),
            json!({ "decision_hash": format!("{cycle:064x}"), "decisions": REPOS.iter().map(|r| json!({
                "repo": r, "recommendation": "upgrade", "risk": 120, "reason_code": "behind-upstream", "depends_on": [] })).collect::<Vec<_>>() }),
        ),
        10..=12 => (
            EventKind::LeaseGranted,
            repo.clone(),
            json!({ "lease": { "key": repo, "fencing_token": i, "expires_at": "2026-11-25T10:15:00Z", "holder": { "tick": format!("t{cycle}"), "pid": 1, "host": "h" } } }),
        ),
        13..=15 => (
            EventKind::RepoUpgraded,
            repo.clone(),
            json!({ "repo": repo, "outcome": "upgraded", "reason_code": "behind-upstream", "reason": "fast-forwarded 2 commits", "head_after": head }),
        ),
        16..=18 => {
            (EventKind::LeaseReleased, REPOS[((i - 6) % 8) as usize].to_owned(), json!({ "fencing_token": i - 6 }))
        }
        _ => (
            EventKind::CycleFinished,
            "cycle".into(),
            json!({ "counts": { "upgraded": 3 }, "decision_hash": format!("{cycle:064x}") }),
        ),
    }
}

/// Writes a ledger of `n` chained events into `state_dir`.
fn write_ledger(state_dir: &Path, n: u64) {
    let file = std::fs::File::create(state_dir.join(LEDGER_FILE)).expect("ledger file");
    let mut out = BufWriter::new(file);
    let mut prev = GENESIS_HASH.to_owned();
    for i in 0..n {
        let (kind, subject, payload) = synthetic(i);
        let mut event = HermesEvent {
            v: EVENT_FORMAT_VERSION,
            seq: i + 1,
            time: "2026-11-25T10:00:00.000Z".into(),
            tick: format!("t{}", i / 20),
            kind: kind.as_str().into(),
            subject,
            payload,
            prev_hash: prev,
            hash: String::new(),
        };
        out.write_all(&event.seal()).expect("write");
        prev = event.hash;
    }
    out.flush().expect("flush");
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    let big = tempfile::tempdir().expect("temp dir");
    write_ledger(big.path(), 1_000_000);
    let store = StateStore::open(big.path()).expect("store");
    group.bench_function("1M-events", |b| {
        b.iter(|| {
            let projection = checkpoint::project(&store).expect("project");
            assert_eq!(projection.events_read, 1_000_000);
            black_box(projection)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("status");
    let mut dirs = Vec::new();
    for (name, n) in [("10k", 10_000u64), ("100k", 100_000), ("1M", 1_000_000)] {
        let (store, _dir) = if n == 1_000_000 {
            (StateStore::open(big.path()).expect("store"), None)
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            write_ledger(dir.path(), n);
            (StateStore::open(dir.path()).expect("store"), Some(dir))
        };
        checkpoint::write(&store, "2026-11-25T10:00:00.000Z", &checkpoint::project(&store).expect("project"))
            .expect("checkpoint");
        group.bench_function(name, |b| {
            b.iter(|| {
                let projection = checkpoint::project(&store).expect("project");
                assert_eq!((projection.resumed_at, projection.events_read), (n, 0));
                black_box(projection)
            })
        });
        dirs.push(_dir);
    }
    group.finish();
}

criterion_group!(projection_benches, benches);
criterion_main!(projection_benches);
