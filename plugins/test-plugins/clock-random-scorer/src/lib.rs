//! Test plugin `clock-random-scorer`: reads the wall clock, the monotonic
//! clock and random bytes twice each and reports them in `reasons`. The host
//! pins clocks to the tick's logical time and seeds randomness from the input,
//! so two runs on the same input must give identical output.
//!
//! Reasons, in order:
//! `wall1=<secs>.<nanos:09>`, `wall2=...` (SystemTime since the unix epoch),
//! `monotonic1=<Instant debug>`, `monotonic-elapsed-ns=<Instant 2 - Instant 1>`,
//! `random1=<16 bytes hex>`, `random2=...` (getrandom: wasi:random/random),
//! `random-u64=<n>` (getrandom::u64), `hash-order=<keys>` (std HashMap
//! iteration order, seeded by std from WASI randomness).
use hermes_plugin_sdk::{Recommendation, RiskScorer, ScoreInput, ScoreOutput};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct ClockRandomScorer;

fn wall() -> String {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(e) => format!("before-epoch-by-{:?}", e.duration()),
    }
}

fn random_hex() -> String {
    let mut buf = [0u8; 16];
    match getrandom::fill(&mut buf) {
        Ok(()) => buf.iter().map(|b| format!("{b:02x}")).collect(),
        Err(e) => format!("error:{e}"),
    }
}

impl RiskScorer for ClockRandomScorer {
    const NAME: &'static str = "clock-random-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: reports clocks and random bytes (must be deterministic)";

    fn score(_input: ScoreInput) -> Result<ScoreOutput, String> {
        let wall1 = wall();
        let i1 = Instant::now();
        let random1 = random_hex();
        let wall2 = wall();
        let i2 = Instant::now();
        let random2 = random_hex();
        let random_u64 = getrandom::u64().map_or_else(|e| format!("error:{e}"), |v| v.to_string());
        let map: std::collections::HashMap<u32, ()> = (0..16).map(|k| (k, ())).collect();
        let order: Vec<String> = map.keys().map(|k| k.to_string()).collect();
        Ok(ScoreOutput {
            risk: 0,
            recommendation: Recommendation::Noop,
            priority: 1000,
            reasons: vec![
                format!("wall1={wall1}"),
                format!("wall2={wall2}"),
                format!("monotonic1={i1:?}"),
                format!("monotonic-elapsed-ns={}", i2.duration_since(i1).as_nanos()),
                format!("random1={random1}"),
                format!("random2={random2}"),
                format!("random-u64={random_u64}"),
                format!("hash-order={}", order.join(",")),
            ],
        })
    }
}

hermes_plugin_sdk::export_risk_scorer!(ClockRandomScorer);
