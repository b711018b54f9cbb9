//! Test plugin `bad-output-scorer`: returns `risk = 5000`, outside 0..=1000.
//! The host must treat this as invalid output and defer the repository.
//!
//! It also logs one message through the host import (`hermes:plugin/host.log`,
//! level `warn`): "bad-output-scorer: returning risk 5000 on purpose".
use hermes_plugin_sdk::{LogLevel, Recommendation, RiskScorer, ScoreInput, ScoreOutput};

struct BadOutputScorer;

impl RiskScorer for BadOutputScorer {
    const NAME: &'static str = "bad-output-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: returns risk 5000 (invalid output)";

    fn score(_input: ScoreInput) -> Result<ScoreOutput, String> {
        hermes_plugin_sdk::log(LogLevel::Warn, "bad-output-scorer: returning risk 5000 on purpose");
        Ok(ScoreOutput {
            risk: 5000,
            recommendation: Recommendation::Upgrade,
            priority: 0,
            reasons: vec!["risk 5000 is out of range on purpose".to_string()],
        })
    }
}

hermes_plugin_sdk::export_risk_scorer!(BadOutputScorer);
