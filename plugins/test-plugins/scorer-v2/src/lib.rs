//! Test plugin `scorer-v2`: the baseline scorer, version 2.0.0, same name
//! ("baseline-scorer"), with different defaults — `weight.behind` doubled
//! (20) and `threshold.defer` lowered to 300 — so replaying recorded history
//! against it changes some decisions.
extern crate alloc;

use hermes_plugin_sdk::{RiskScorer, ScoreInput, ScoreOutput};

// The WIT <-> scorer-logic conversion, shared with baseline-scorer (which
// cannot be linked as a library: it exports the same component functions).
#[path = "../../../baseline-scorer/src/convert.rs"]
mod convert;

/// Defaults of `baseline-scorer` 2.0.0.
pub const V2: scorer_logic::Config =
    scorer_logic::Config { behind: 20, threshold_defer: 300, ..scorer_logic::Config::BASELINE };

struct BaselineScorerV2;

impl RiskScorer for BaselineScorerV2 {
    const NAME: &'static str = "baseline-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Baseline risk scorer 2.0.0 (test plugin): weight.behind 20, threshold.defer 300";

    fn score(input: ScoreInput) -> Result<ScoreOutput, String> {
        Ok(convert::score_with(&input, &V2))
    }
}

hermes_plugin_sdk::export_risk_scorer!(BaselineScorerV2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_defaults() {
        let m = BaselineScorerV2::metadata();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("baseline-scorer", "2.0.0"));
        let input = scorer_logic::Input { behind: 15, confidence_ppm: 1_000_000, ..Default::default() };
        let v1 = scorer_logic::score(&input, &scorer_logic::Config::BASELINE);
        let v2 = scorer_logic::score(&input, &V2);
        assert_eq!((v1.risk, v1.recommendation), (150, scorer_logic::Recommendation::Upgrade));
        assert_eq!((v2.risk, v2.recommendation), (300, scorer_logic::Recommendation::Defer));
    }
}
