//! The scoring function of Hermes' baseline risk scorer, as plain Rust.
//!
//! No WIT types, no I/O, no floats, no allocation-order or hash-order
//! dependence: [`score`] is a pure function of its arguments and uses only
//! saturating integer arithmetic. The `baseline-scorer` and `scorer-v2`
//! plugins wrap it; the host may depend on this crate by path to benchmark or
//! cross-check the scorer natively.
//!
//! # Model
//!
//! Risk is the sum of the contributions below, capped at 1000. Every weight is
//! a setting (policy `settings`, key → integer) with a default in
//! [`Config::BASELINE`]; a setting overrides the default of the [`Config`]
//! passed to [`score`]. Negative values count as 0; thresholds are clamped to
//! `0..=1001` (1001 = never), `threshold.confidence_ppm` to `0..=1000000`.
//! Unknown keys are ignored; with duplicate keys the first one wins.
//!
//! | setting key                   | default | contribution                                                    |
//! |-------------------------------|--------:|-----------------------------------------------------------------|
//! | `weight.behind`               |      10 | per commit behind the upstream                                  |
//! | `weight.changed_path`         |       2 | per distinct path changed by the incoming commits               |
//! | `weight.signal.info`          |       0 | per `info` signal                                               |
//! | `weight.signal.warning`       |     100 | per `warning` signal                                            |
//! | `weight.signal.critical`      |     300 | per `critical` signal                                           |
//! | `weight.rollback_rate`        |     300 | × rollback-rate-ppm / 1000000                                   |
//! | `weight.failure_probability`  |     300 | × failure-probability-ppm / 1000000                             |
//! | `weight.low_confidence`       |      50 | × (T − confidence-ppm) / T when confidence-ppm < T              |
//! | `threshold.confidence_ppm`    |  500000 | T above                                                         |
//! | `weight.risky_hour`           |     150 | when hour-of-day is one of the risky hours                      |
//! | `threshold.defer`             |     400 | risk ≥ this → `defer`                                           |
//! | `threshold.block`             |     800 | risk ≥ this → `block` (checked before `defer`)                  |
//! | `hold.local_changes`          |       1 | non-zero: `hold` when dirty, an operation is in progress or ahead > 0 |
//!
//! Recommendation, first match wins:
//! 1. `noop` when `behind == 0` (nothing to upgrade);
//! 2. `hold` when `hold.local_changes` ≠ 0 and the worktree has dirty paths,
//!    an operation (merge, rebase, …) is in progress, or there are local
//!    commits (`ahead > 0`: a fast-forward is impossible);
//! 3. `block` when risk ≥ `threshold.block`;
//! 4. `defer` when risk ≥ `threshold.defer`;
//! 5. `upgrade` otherwise.
//!
//! Priority is `1000 − risk` (lower risk goes first). Reasons list every
//! non-zero contribution in the order of the table, then the decision.
//!
//! `no_std` (only `alloc`), so a plugin built on it can be a WASI-free
//! `#![no_std]` component.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Maximum risk score.
pub const MAX_RISK: u32 = 1000;
/// One million: the denominator of every `*_ppm` value.
pub const PPM: u64 = 1_000_000;

/// Severity of a probe signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Informational.
    Info,
    /// Makes an upgrade riskier.
    Warning,
    /// Should normally stop an automatic upgrade.
    Critical,
}

impl Severity {
    /// The WIT name (`info`, `warning`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Recommendation for one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recommendation {
    /// Fast-forward now.
    Upgrade,
    /// Not this tick.
    Defer,
    /// Not until an operator intervenes or the inputs change.
    Block,
    /// Keep as is on purpose (local work).
    Hold,
    /// Nothing to do.
    Noop,
}

impl Recommendation {
    /// The WIT name (`upgrade`, `defer`, `block`, `hold`, `noop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Upgrade => "upgrade",
            Recommendation::Defer => "defer",
            Recommendation::Block => "block",
            Recommendation::Hold => "hold",
            Recommendation::Noop => "noop",
        }
    }
}

/// One probe signal as far as scoring is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalInput {
    /// Signal key, used in reasons.
    pub key: String,
    /// Signal severity, selects the weight.
    pub severity: Severity,
}

/// Everything [`score`] looks at (a projection of the WIT `score-input`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    /// Commits behind the upstream.
    pub behind: u64,
    /// Local commits not in the upstream.
    pub ahead: u64,
    /// Tracked paths with uncommitted changes.
    pub dirty_paths: u64,
    /// In-progress git operation, if any.
    pub operation: Option<String>,
    /// Distinct paths changed by the incoming commits (see [`count_distinct_paths`]).
    pub changed_paths: u64,
    /// Signals from the probes, in order.
    pub signals: Vec<SignalInput>,
    /// Rollback rate, parts per million.
    pub rollback_rate_ppm: u32,
    /// Failure probability, parts per million.
    pub failure_probability_ppm: u32,
    /// Confidence in the two rates above, parts per million.
    pub confidence_ppm: u32,
    /// Hours of day (0..=23) where failures cluster.
    pub risky_hours: Vec<u8>,
    /// Hour of day (0..=23) of the tick.
    pub hour_of_day: u8,
    /// Settings (key, value), overriding the defaults.
    pub settings: Vec<(String, i64)>,
}

/// Result of [`score`] (the WIT `score-output`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Risk 0..=1000.
    pub risk: u32,
    /// What to do.
    pub recommendation: Recommendation,
    /// `1000 - risk`.
    pub priority: u32,
    /// One line per non-zero contribution, then the decision.
    pub reasons: Vec<String>,
}

/// Weights and thresholds; see the crate documentation for their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `weight.behind`
    pub behind: u64,
    /// `weight.changed_path`
    pub changed_path: u64,
    /// `weight.signal.info`
    pub signal_info: u64,
    /// `weight.signal.warning`
    pub signal_warning: u64,
    /// `weight.signal.critical`
    pub signal_critical: u64,
    /// `weight.rollback_rate`
    pub rollback_rate: u64,
    /// `weight.failure_probability`
    pub failure_probability: u64,
    /// `weight.low_confidence`
    pub low_confidence: u64,
    /// `threshold.confidence_ppm`
    pub confidence_threshold_ppm: u64,
    /// `weight.risky_hour`
    pub risky_hour: u64,
    /// `threshold.defer`
    pub threshold_defer: u64,
    /// `threshold.block`
    pub threshold_block: u64,
    /// `hold.local_changes` (non-zero = true)
    pub hold_local_changes: bool,
}

/// Every setting key [`Config::with_settings`] understands.
pub const SETTING_KEYS: &[&str] = &[
    "weight.behind",
    "weight.changed_path",
    "weight.signal.info",
    "weight.signal.warning",
    "weight.signal.critical",
    "weight.rollback_rate",
    "weight.failure_probability",
    "weight.low_confidence",
    "threshold.confidence_ppm",
    "weight.risky_hour",
    "threshold.defer",
    "threshold.block",
    "hold.local_changes",
];

impl Config {
    /// Defaults of the baseline scorer (`baseline-scorer` 1.x).
    pub const BASELINE: Config = Config {
        behind: 10,
        changed_path: 2,
        signal_info: 0,
        signal_warning: 100,
        signal_critical: 300,
        rollback_rate: 300,
        failure_probability: 300,
        low_confidence: 50,
        confidence_threshold_ppm: 500_000,
        risky_hour: 150,
        threshold_defer: 400,
        threshold_block: 800,
        hold_local_changes: true,
    };

    /// This configuration with `settings` applied (first occurrence of a key
    /// wins, unknown keys are ignored, values clamped as documented).
    pub fn with_settings(&self, settings: &[(String, i64)]) -> Config {
        let get = |key: &str| settings.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        let weight = |key: &str, default: u64| get(key).map_or(default, |v| v.max(0) as u64);
        let threshold =
            |key: &str, default: u64| get(key).map_or(default, |v| v.clamp(0, i64::from(MAX_RISK) + 1) as u64);
        Config {
            behind: weight("weight.behind", self.behind),
            changed_path: weight("weight.changed_path", self.changed_path),
            signal_info: weight("weight.signal.info", self.signal_info),
            signal_warning: weight("weight.signal.warning", self.signal_warning),
            signal_critical: weight("weight.signal.critical", self.signal_critical),
            rollback_rate: weight("weight.rollback_rate", self.rollback_rate),
            failure_probability: weight("weight.failure_probability", self.failure_probability),
            low_confidence: weight("weight.low_confidence", self.low_confidence),
            confidence_threshold_ppm: get("threshold.confidence_ppm")
                .map_or(self.confidence_threshold_ppm, |v| v.clamp(0, PPM as i64) as u64),
            risky_hour: weight("weight.risky_hour", self.risky_hour),
            threshold_defer: threshold("threshold.defer", self.threshold_defer),
            threshold_block: threshold("threshold.block", self.threshold_block),
            hold_local_changes: get("hold.local_changes").map_or(self.hold_local_changes, |v| v != 0),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::BASELINE
    }
}

/// Number of distinct paths over all commits' changed-path lists.
pub fn count_distinct_paths<'a, I, P>(commits: I) -> u64
where
    I: IntoIterator<Item = P>,
    P: IntoIterator<Item = &'a str>,
{
    let mut set = BTreeSet::new();
    for paths in commits {
        for p in paths {
            set.insert(p);
        }
    }
    set.len() as u64
}

/// `value_ppm * weight / 1000000`, exact (ppm values above one million count as one million).
fn scale_ppm(value_ppm: u64, weight: u64) -> u64 {
    let v = u128::from(value_ppm.min(PPM)) * u128::from(weight) / u128::from(PPM);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Score one repository with `defaults` overridden by `input.settings`.
pub fn score(input: &Input, defaults: &Config) -> Output {
    let cfg = defaults.with_settings(&input.settings);
    let mut reasons = Vec::new();
    let mut total: u64 = 0;
    let mut add = |amount: u64, reason: String, reasons: &mut Vec<String>| {
        if amount > 0 {
            total = total.saturating_add(amount);
            reasons.push(reason);
        }
    };

    let behind = input.behind.saturating_mul(cfg.behind);
    add(behind, format!("behind: {} commits x weight.behind {} = +{}", input.behind, cfg.behind, behind), &mut reasons);

    let changed = input.changed_paths.saturating_mul(cfg.changed_path);
    add(
        changed,
        format!("changed paths: {} x weight.changed_path {} = +{}", input.changed_paths, cfg.changed_path, changed),
        &mut reasons,
    );

    for signal in &input.signals {
        let weight = match signal.severity {
            Severity::Info => cfg.signal_info,
            Severity::Warning => cfg.signal_warning,
            Severity::Critical => cfg.signal_critical,
        };
        let sev = signal.severity.as_str();
        add(weight, format!("signal {} ({sev}): weight.signal.{sev} = +{weight}", signal.key), &mut reasons);
    }

    let rollback = scale_ppm(u64::from(input.rollback_rate_ppm), cfg.rollback_rate);
    add(
        rollback,
        format!(
            "rollback-rate-ppm {} x weight.rollback_rate {} / 1000000 = +{rollback}",
            input.rollback_rate_ppm, cfg.rollback_rate
        ),
        &mut reasons,
    );

    let failure = scale_ppm(u64::from(input.failure_probability_ppm), cfg.failure_probability);
    add(
        failure,
        format!(
            "failure-probability-ppm {} x weight.failure_probability {} / 1000000 = +{failure}",
            input.failure_probability_ppm, cfg.failure_probability
        ),
        &mut reasons,
    );

    let confidence = u64::from(input.confidence_ppm).min(PPM);
    if confidence < cfg.confidence_threshold_ppm {
        let t = cfg.confidence_threshold_ppm;
        let low = u64::try_from(u128::from(cfg.low_confidence) * u128::from(t - confidence) / u128::from(t))
            .unwrap_or(u64::MAX);
        add(
            low,
            format!(
                "low confidence: confidence-ppm {confidence} < threshold.confidence_ppm {t}, weight.low_confidence {} = +{low}",
                cfg.low_confidence
            ),
            &mut reasons,
        );
    }

    if input.risky_hours.contains(&input.hour_of_day) {
        add(
            cfg.risky_hour,
            format!(
                "risky hour: hour-of-day {} is a risky hour, weight.risky_hour = +{}",
                input.hour_of_day, cfg.risky_hour
            ),
            &mut reasons,
        );
    }

    let risk = if total > u64::from(MAX_RISK) {
        reasons.push(format!("risk {total} capped at {MAX_RISK}"));
        MAX_RISK
    } else {
        total as u32
    };
    let r = u64::from(risk);

    let local_changes = input.dirty_paths > 0 || input.operation.is_some() || input.ahead > 0;
    let recommendation = if input.behind == 0 {
        reasons.push(format!("behind 0: already up to date, noop (risk {risk})"));
        Recommendation::Noop
    } else if cfg.hold_local_changes && local_changes {
        let mut what = String::new();
        if input.dirty_paths > 0 {
            let _ = write!(what, "dirty-paths {}", input.dirty_paths);
        }
        if let Some(op) = &input.operation {
            if !what.is_empty() {
                what.push_str(", ");
            }
            let _ = write!(what, "operation {op}");
        }
        if input.ahead > 0 {
            if !what.is_empty() {
                what.push_str(", ");
            }
            let _ = write!(what, "ahead {}", input.ahead);
        }
        reasons.push(format!("local changes ({what}) and hold.local_changes: hold (risk {risk})"));
        Recommendation::Hold
    } else if r >= cfg.threshold_block {
        reasons.push(format!("risk {risk} >= threshold.block {}: block", cfg.threshold_block));
        Recommendation::Block
    } else if r >= cfg.threshold_defer {
        reasons.push(format!("risk {risk} >= threshold.defer {}: defer", cfg.threshold_defer));
        Recommendation::Defer
    } else {
        reasons.push(format!("risk {risk} < threshold.defer {}: upgrade", cfg.threshold_defer));
        Recommendation::Upgrade
    };

    Output { risk, recommendation, priority: MAX_RISK - risk, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    fn base() -> Input {
        Input { behind: 3, changed_paths: 5, confidence_ppm: 900_000, hour_of_day: 10, ..Input::default() }
    }

    #[test]
    fn noop_when_not_behind() {
        let out = score(&Input { behind: 0, ..base() }, &Config::BASELINE);
        assert_eq!(out.recommendation, Recommendation::Noop);
        assert_eq!(out.risk, 10);
        assert_eq!(out.priority, 990);
    }

    #[test]
    fn low_risk_upgrade() {
        let out = score(&base(), &Config::BASELINE);
        assert_eq!(out.risk, 3 * 10 + 5 * 2);
        assert_eq!(out.recommendation, Recommendation::Upgrade);
        assert_eq!(out.priority, 960);
        assert_eq!(
            out.reasons,
            vec![
                "behind: 3 commits x weight.behind 10 = +30".to_string(),
                "changed paths: 5 x weight.changed_path 2 = +10".to_string(),
                "risk 40 < threshold.defer 400: upgrade".to_string(),
            ]
        );
    }

    #[test]
    fn signals_and_history_defer_then_block() {
        let mut input = base();
        input.signals = vec![
            SignalInput { key: "lockfile-changed".into(), severity: Severity::Warning },
            SignalInput { key: "migration-files".into(), severity: Severity::Critical },
            SignalInput { key: "note".into(), severity: Severity::Info },
        ];
        let out = score(&input, &Config::BASELINE);
        assert_eq!(out.risk, 40 + 100 + 300);
        assert_eq!(out.recommendation, Recommendation::Defer);
        input.rollback_rate_ppm = 500_000; // +150
        input.failure_probability_ppm = 250_000; // +75
        input.risky_hours = vec![3, 10];
        input.hour_of_day = 10; // +150
        let out = score(&input, &Config::BASELINE);
        assert_eq!(out.risk, 440 + 150 + 75 + 150);
        assert_eq!(out.recommendation, Recommendation::Block);
        assert_eq!(out.priority, 1000 - 815);
    }

    #[test]
    fn low_confidence_scales_linearly() {
        let mut input = base();
        input.confidence_ppm = 0;
        assert_eq!(score(&input, &Config::BASELINE).risk, 40 + 50);
        input.confidence_ppm = 250_000;
        assert_eq!(score(&input, &Config::BASELINE).risk, 40 + 25);
        input.confidence_ppm = 500_000;
        assert_eq!(score(&input, &Config::BASELINE).risk, 40);
    }

    #[test]
    fn saturates_and_caps() {
        let mut input = base();
        input.behind = u64::MAX;
        input.changed_paths = u64::MAX;
        input.rollback_rate_ppm = u32::MAX;
        input.settings = vec![("weight.rollback_rate".into(), i64::MAX)];
        let out = score(&input, &Config::BASELINE);
        assert_eq!(out.risk, 1000);
        assert_eq!(out.priority, 0);
        assert_eq!(out.recommendation, Recommendation::Block);
        assert!(out.reasons.iter().any(|r| r.contains("capped at 1000")));
    }

    #[test]
    fn settings_override_and_clamp() {
        let mut input = base();
        input.settings = vec![
            ("threshold.defer".into(), 30),
            ("weight.behind".into(), -5),
            ("threshold.defer".into(), 999), // duplicate: first wins
            ("unknown".into(), 7),
        ];
        let out = score(&input, &Config::BASELINE);
        assert_eq!(out.risk, 10);
        assert_eq!(out.recommendation, Recommendation::Upgrade);
        input.settings = vec![("threshold.defer".into(), 10)];
        assert_eq!(score(&input, &Config::BASELINE).recommendation, Recommendation::Defer);
        input.settings = vec![("threshold.block".into(), -1)];
        assert_eq!(score(&input, &Config::BASELINE).recommendation, Recommendation::Block);
        let cfg = Config::BASELINE.with_settings(&[("threshold.block".into(), 5000)]);
        assert_eq!(cfg.threshold_block, 1001);
    }

    #[test]
    fn hold_on_local_changes_unless_disabled() {
        let mut input = base();
        input.dirty_paths = 2;
        input.operation = Some("rebase".into());
        let out = score(&input, &Config::BASELINE);
        assert_eq!(out.recommendation, Recommendation::Hold);
        assert_eq!(
            out.reasons.last().unwrap(),
            "local changes (dirty-paths 2, operation rebase) and hold.local_changes: hold (risk 40)"
        );
        input.settings = vec![("hold.local_changes".into(), 0)];
        assert_eq!(score(&input, &Config::BASELINE).recommendation, Recommendation::Upgrade);
        let input = Input { ahead: 1, ..base() };
        assert_eq!(score(&input, &Config::BASELINE).recommendation, Recommendation::Hold);
    }

    #[test]
    fn distinct_paths() {
        let commits = [vec!["a", "b"], vec!["b", "c"], vec![]];
        assert_eq!(count_distinct_paths(commits.iter().map(|c| c.iter().copied())), 3);
    }

    #[test]
    fn deterministic() {
        let mut input = base();
        input.signals = vec![SignalInput { key: "x".into(), severity: Severity::Warning }];
        assert_eq!(score(&input, &Config::BASELINE), score(&input, &Config::BASELINE));
    }
}
