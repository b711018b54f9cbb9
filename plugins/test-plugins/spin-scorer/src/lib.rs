//! Test plugin `spin-scorer`: `score` never returns. The host must stop it by
//! fuel exhaustion (deterministically: the same input exhausts at the same
//! point) and defer the repository.
use hermes_plugin_sdk::{RiskScorer, ScoreInput, ScoreOutput};

struct SpinScorer;

impl RiskScorer for SpinScorer {
    const NAME: &'static str = "spin-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: loops forever (fuel exhaustion)";

    fn score(input: ScoreInput) -> Result<ScoreOutput, String> {
        let mut x = input.repo.behind;
        loop {
            // black_box keeps the loop body (and the loop) from being optimized away.
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

hermes_plugin_sdk::export_risk_scorer!(SpinScorer);
