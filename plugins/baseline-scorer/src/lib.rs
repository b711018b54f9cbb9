//! `baseline-scorer`: Hermes' default risk scorer.
//!
//! Risk 0..=1000 from commits behind, distinct changed paths of the incoming
//! commits, probe signals by severity, rollback rate, failure probability, low
//! confidence and risky hours; weights and thresholds come from the policy
//! settings with the defaults documented in the `scorer-logic` crate
//! (`weight.behind` 10, `weight.changed_path` 2, `weight.signal.info` 0,
//! `weight.signal.warning` 100, `weight.signal.critical` 300,
//! `weight.rollback_rate` 300, `weight.failure_probability` 300,
//! `weight.low_confidence` 50, `threshold.confidence_ppm` 500000,
//! `weight.risky_hour` 150, `threshold.defer` 400, `threshold.block` 800,
//! `hold.local_changes` 1). Priority is `1000 - risk`.
//!
//! `no_std` on wasm32 (the SDK's `no_std_runtime!`): the component imports
//! nothing from WASI, so the host instantiates one core module with nothing
//! to link.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod convert;

pub use convert::{from_logic, score_with, to_logic};

struct BaselineScorer;

impl hermes_plugin_sdk::RiskScorer for BaselineScorer {
    const NAME: &'static str = "baseline-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Baseline risk scorer: behind count, change size, signals, rollback/failure history, confidence, risky hours";

    fn score(input: hermes_plugin_sdk::ScoreInput) -> Result<hermes_plugin_sdk::ScoreOutput, alloc::string::String> {
        Ok(score_with(&input, &scorer_logic::Config::BASELINE))
    }
}

hermes_plugin_sdk::export_risk_scorer!(BaselineScorer);
hermes_plugin_sdk::no_std_runtime!();

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_plugin_sdk::RiskScorer;

    #[test]
    fn fixtures() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/baseline-scorer.json");
        let n = hermes_plugin_sdk::fixtures::run(&path, BaselineScorer::score).unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 5, "only {n} fixture cases");
    }

    #[test]
    fn metadata() {
        let m = BaselineScorer::metadata();
        assert_eq!(m.name, "baseline-scorer");
        assert_eq!(m.kind, hermes_plugin_sdk::PluginKind::RiskScorer);
    }
}
