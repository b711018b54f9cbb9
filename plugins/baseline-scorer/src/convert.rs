//! Conversion between the WIT records and `scorer_logic`'s plain structs.
//! Shared (via `#[path]`) by `baseline-scorer` and the `scorer-v2` test plugin.

use alloc::string::String;
use hermes_plugin_sdk::{Recommendation, ScoreInput, ScoreOutput, Severity};

/// Project a WIT `score-input` onto the scoring function's input.
pub fn to_logic(input: &ScoreInput) -> scorer_logic::Input {
    let repo = &input.repo;
    scorer_logic::Input {
        behind: repo.behind,
        ahead: repo.ahead,
        dirty_paths: repo.dirty_paths,
        operation: repo.operation.clone(),
        changed_paths: scorer_logic::count_distinct_paths(
            repo.incoming.iter().map(|c| c.changed_paths.iter().map(String::as_str)),
        ),
        signals: input
            .signals
            .iter()
            .map(|s| scorer_logic::SignalInput {
                key: s.key.clone(),
                severity: match s.severity {
                    Severity::Info => scorer_logic::Severity::Info,
                    Severity::Warning => scorer_logic::Severity::Warning,
                    Severity::Critical => scorer_logic::Severity::Critical,
                },
            })
            .collect(),
        rollback_rate_ppm: input.intelligence.rollback_rate_ppm,
        failure_probability_ppm: input.intelligence.failure_probability_ppm,
        confidence_ppm: input.intelligence.confidence_ppm,
        risky_hours: input.intelligence.risky_hours.clone(),
        hour_of_day: input.hour_of_day,
        settings: input.settings.iter().map(|s| (s.key.clone(), s.value)).collect(),
    }
}

/// Convert the scoring function's output to the WIT `score-output`.
pub fn from_logic(out: scorer_logic::Output) -> ScoreOutput {
    ScoreOutput {
        risk: out.risk,
        recommendation: match out.recommendation {
            scorer_logic::Recommendation::Upgrade => Recommendation::Upgrade,
            scorer_logic::Recommendation::Defer => Recommendation::Defer,
            scorer_logic::Recommendation::Block => Recommendation::Block,
            scorer_logic::Recommendation::Hold => Recommendation::Hold,
            scorer_logic::Recommendation::Noop => Recommendation::Noop,
        },
        priority: out.priority,
        reasons: out.reasons,
    }
}

/// Score with the given defaults (overridden by the input's settings).
pub fn score_with(input: &ScoreInput, defaults: &scorer_logic::Config) -> ScoreOutput {
    from_logic(scorer_logic::score(&to_logic(input), defaults))
}
