//! Minimal example risk scorer: risk grows with the number of commits behind.
use hermes_plugin_sdk::{Recommendation, RiskScorer, ScoreInput, ScoreOutput};

struct TemplateScorer;

impl RiskScorer for TemplateScorer {
    const NAME: &'static str = "template-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn score(input: ScoreInput) -> Result<ScoreOutput, String> {
        let behind = input.repo.behind;
        let risk = behind.saturating_mul(50).min(1000) as u32;
        let recommendation = match behind {
            0 => Recommendation::Noop,
            _ if risk >= 500 => Recommendation::Defer,
            _ => Recommendation::Upgrade,
        };
        Ok(ScoreOutput {
            risk,
            recommendation,
            priority: 1000 - risk,
            reasons: vec![format!("behind {behind} x 50 = {risk}")],
        })
    }
}

hermes_plugin_sdk::export_risk_scorer!(TemplateScorer);
