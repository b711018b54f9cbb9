//! Plugin runtime benchmarks (figures in docs/performance.md):
//!
//! - `scorer/wasm-fresh-instance`: one call of the built-in baseline scorer
//!   through the production path (`PluginSet::call`: canonical input, seeded
//!   sandbox, fresh instance from the pooling allocator, JSON <-> WIT values,
//!   output validation, call record);
//! - `scorer/native`: the same scoring logic (`scorer-logic`) compiled
//!   natively, on the same input;
//! - `scorer/10k-repos/lanes=N`: 10,000 different inputs scored as the
//!   cycle's phase 1 does, on N lanes (`cycle::lanes::map_in_lanes`; N = 1
//!   and the machine's cores), each a full production call with a fresh
//!   instance and its record (the records are kept, as the cycle keeps them
//!   for the ledger, and freed outside the timed part); criterion's time is
//!   per batch of 10,000 and its throughput per call;
//! - `load/cold` and `load/warm`: loading the component with an empty cache
//!   (compile) and with a warm one (checksum + deserialize).
//!
//! Run: `cargo bench -p hermes --bench plugin_scorer`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hermes::cycle::lanes::map_in_lanes;
use hermes::plugin::PluginKind;
use hermes::plugin::builtin::builtin;
use hermes::plugin::cache::ComponentCache;
use hermes::plugin::engine::PluginEngine;
use hermes::plugin::set::PluginSet;
use hermes::policy::Policy;
use serde_json::json;
use std::hint::black_box;

fn score_input() -> serde_json::Value {
    json!({
        "repo": {
            "name": "api", "branch": "main", "head": "a".repeat(40), "upstream-head": "b".repeat(40),
            "ahead": 0, "behind": 3, "dirty-paths": 0, "untracked-paths": 0, "operation": null,
            "incoming": [
                { "id": "c".repeat(40), "summary": "bump deps", "changed-paths": ["Cargo.lock", "Cargo.toml"] },
                { "id": "d".repeat(40), "summary": "fix", "changed-paths": ["src/lib.rs"] },
                { "id": "e".repeat(40), "summary": "docs", "changed-paths": ["README.md"] }
            ],
            "depends-on": ["core"]
        },
        "signals": [{ "key": "lockfile-changed", "value": "Cargo.lock", "severity": "warning", "message": "lockfile changed" }],
        "intelligence": {
            "attempts": 10, "successes": 9, "failures": 1, "rollbacks": 0, "rollback-rate-ppm": 0,
            "failure-probability-ppm": 166666, "confidence-ppm": 500000, "sample-size": 10, "risky-hours": [2, 3]
        },
        "settings": [],
        "logical-time": 1_700_000_000u64,
        "hour-of-day": 14
    })
}

/// 10,000 repositories' inputs: names, commits behind and signals vary.
fn batch_inputs() -> Vec<serde_json::Value> {
    (0..BATCH)
        .map(|i| {
            let mut input = score_input();
            input["repo"]["name"] = json!(format!("repo-{i:05}"));
            input["repo"]["behind"] = json!(1 + i % 40);
            if i % 3 == 0 {
                input["signals"] = json!([]);
            }
            input
        })
        .collect()
}

const BATCH: usize = 10_000;

fn native_input() -> scorer_logic::Input {
    scorer_logic::Input {
        behind: 3,
        ahead: 0,
        dirty_paths: 0,
        operation: None,
        changed_paths: 4,
        signals: vec![scorer_logic::SignalInput {
            key: "lockfile-changed".into(),
            severity: scorer_logic::Severity::Warning,
        }],
        rollback_rate_ppm: 0,
        failure_probability_ppm: 166_666,
        confidence_ppm: 500_000,
        risky_hours: vec![2, 3],
        hour_of_day: 14,
        settings: Vec::new(),
    }
}

fn benches(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("temp dir");
    let policy = Policy::starter();
    let set = PluginSet::load(home.path(), &home.path().join("policy.json"), &policy).expect("load plugins");
    let input = score_input();
    assert_eq!(
        set.call(PluginKind::RiskScorer, input.clone(), 1_700_000_000, None).outcome,
        hermes::plugin::call::CallOutcome::Ok
    );

    let mut group = c.benchmark_group("scorer");
    group.bench_function("wasm-fresh-instance", |b| {
        // The input moves into the call record, as in the cycle; its copy
        // is made outside the timed part. The record is dropped inside it
        // (as `b.iter` did before calls took their input by value).
        b.iter_batched(
            || input.clone(),
            |input| drop(black_box(set.call(PluginKind::RiskScorer, input, 1_700_000_000, None))),
            BatchSize::SmallInput,
        )
    });
    let native = native_input();
    group.bench_function("native", |b| {
        b.iter(|| black_box(scorer_logic::score(black_box(&native), &scorer_logic::Config::BASELINE)))
    });
    group.finish();

    let inputs = batch_inputs();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let checked =
        map_in_lanes(inputs.clone(), cores, |_, input| set.call(PluginKind::RiskScorer, input, 1_700_000_000, None));
    assert!(checked.iter().all(|r| r.outcome == hermes::plugin::call::CallOutcome::Ok), "every batch call succeeds");
    let mut group = c.benchmark_group("scorer/10k-repos");
    group.sample_size(10).throughput(Throughput::Elements(BATCH as u64));
    for lanes in [1, cores] {
        group.bench_function(format!("lanes={lanes}"), |b| {
            b.iter_batched(
                || inputs.clone(),
                // The 10,000 records are returned (the cycle keeps them for
                // the ledger) and freed outside the timed part.
                |inputs| {
                    black_box(map_in_lanes(inputs, lanes, |_, input| {
                        set.call(PluginKind::RiskScorer, input, 1_700_000_000, None)
                    }))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    let bytes = builtin(PluginKind::RiskScorer).bytes;
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter(|| {
            let engine = PluginEngine::new(None).expect("engine");
            black_box(engine.load(bytes, "bench").expect("load"))
        })
    });
    let cache_dir = home.path().join("cache");
    PluginEngine::new(Some(ComponentCache::open(&cache_dir).expect("cache")))
        .expect("engine")
        .load(bytes, "bench")
        .expect("warm up");
    group.bench_function("warm", |b| {
        b.iter(|| {
            let engine = PluginEngine::new(Some(ComponentCache::open(&cache_dir).expect("cache"))).expect("engine");
            black_box(engine.load(bytes, "bench").expect("load"))
        })
    });
    group.finish();
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
