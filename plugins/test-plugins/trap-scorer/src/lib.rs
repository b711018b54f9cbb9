//! Test plugin `trap-scorer`: `score` panics. Built with `panic = "abort"`, the
//! panic message goes to stderr and the instance traps (`unreachable`); the
//! host must defer the repository.
use hermes_plugin_sdk::{RiskScorer, ScoreInput, ScoreOutput};

struct TrapScorer;

impl RiskScorer for TrapScorer {
    const NAME: &'static str = "trap-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: panics (trap)";

    fn score(input: ScoreInput) -> Result<ScoreOutput, String> {
        panic!("trap-scorer: deliberate panic while scoring {}", input.repo.name);
    }
}

hermes_plugin_sdk::export_risk_scorer!(TrapScorer);
