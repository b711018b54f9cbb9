//! Test plugin `env-scorer`: reads the environment and the arguments and
//! reports what it saw. The host gives none, so the output must be
//! `risk = 0` and reasons `["env-vars=0", "args=0", "arg1=none", "HOME=unset"]`.
use hermes_plugin_sdk::{Recommendation, RiskScorer, ScoreInput, ScoreOutput};

struct EnvScorer;

impl RiskScorer for EnvScorer {
    const NAME: &'static str = "env-scorer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: counts environment variables and arguments";

    fn score(_input: ScoreInput) -> Result<ScoreOutput, String> {
        let vars = std::env::vars_os().count();
        let args = std::env::args_os().count();
        let arg1 = std::env::args_os().nth(1);
        let home = std::env::var_os("HOME");
        let risk = (vars + args).min(1000) as u32;
        Ok(ScoreOutput {
            risk,
            recommendation: if risk == 0 { Recommendation::Noop } else { Recommendation::Block },
            priority: 1000 - risk,
            reasons: vec![
                format!("env-vars={vars}"),
                format!("args={args}"),
                match arg1 {
                    Some(a) => format!("arg1={}", a.to_string_lossy()),
                    None => "arg1=none".to_string(),
                },
                match home {
                    Some(h) => format!("HOME={}", h.to_string_lossy()),
                    None => "HOME=unset".to_string(),
                },
            ],
        })
    }
}

hermes_plugin_sdk::export_risk_scorer!(EnvScorer);
