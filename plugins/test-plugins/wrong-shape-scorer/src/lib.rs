//! Test plugin `wrong-shape-scorer`: a component that claims to be a
//! `hermes:plugin/risk-scorer@0.1.0` (same world and export names, correct
//! `metadata`) but exports `score: func(x: u32) -> u32`. The host's type check
//! must reject it at load time.

wit_bindgen::generate!({
    world: "risk-scorer",
    path: "wit",
});

use hermes::plugin::types::PluginKind;

struct WrongShapeScorer;

impl Guest for WrongShapeScorer {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "wrong-shape-scorer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kind: PluginKind::RiskScorer,
            description: "Test plugin: score has the wrong signature".to_string(),
        }
    }

    fn score(x: u32) -> u32 {
        x.saturating_mul(2)
    }
}

export!(WrongShapeScorer);
