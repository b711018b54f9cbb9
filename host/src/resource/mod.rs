//! Resource telemetry and pressure: load, free memory and free disk, the
//! pressure level and the number of parallel lanes it allows.
//!
//! This module owns two state views, both written whole through the
//! [`StateStore`] envelope (`format_version`, `view`, `written_at`,
//! `ledger_head`, `data`):
//!
//! * `state/runtime_resource_telemetry.json` ([`ViewName::RuntimeResourceTelemetry`]):
//!   the last [`Telemetry`] sample. Its `data`:
//!
//!   ```json
//!   { "load_milli_per_core": 1605, "cores": 2, "mem_free_mib": 5630,
//!     "mem_total_mib": 7941, "disk_free_mib": 40112, "disk_path": "/",
//!     "overridden": [] }
//!   ```
//!
//! * `state/runtime_resource_state.json` ([`ViewName::RuntimeResourceState`]):
//!   the [`Pressure`] assessed from it. Its `data`:
//!
//!   ```json
//!   { "level": "elevated", "lanes": 2,
//!     "reasons": ["load_milli_per_core 1605 >= elevated threshold 1500"] }
//!   ```
//!
//! Every figure is an integer (load in thousandths per logical core, memory
//! and disk in MiB), so the views and any decision that includes them hash
//! the same on every machine.
//!
//! [`sample`] reads the machine through `sysinfo`: the 1-minute load average
//! divided by the number of logical cores, available memory (clamped to the
//! root cgroup's limit when that is tighter, as in a container), and the free
//! space of the disk whose mount point is the longest prefix of the
//! canonicalized `HERMES_HOME`. A policy may name a telemetry override file
//! ([`ResourcePolicy::telemetry_override`]) whose fields replace the sampled
//! ones; simulations use it to inject pressure. Its format is any subset of
//! the telemetry fields (plus an optional `"$comment"`):
//!
//! ```json
//! { "load_milli_per_core": 5000, "disk_free_mib": 100 }
//! ```
//!
//! Fields are replaced one by one and nothing is recomputed (overriding
//! `cores` does not change `load_milli_per_core`). The replaced names are
//! listed in [`Telemetry::overridden`]. A missing or invalid override file is
//! an error naming the file (and the field, when one is at fault): a
//! simulation that asked for pressure must not silently run without it.
//!
//! [`assess`] turns a sample into a [`PressureLevel`] and a lane count:
//! every lane at normal, half of them (at least one) at elevated, one at
//! high, none at critical (every lane is deferred). Each metric is compared
//! with its own thresholds and the worst level wins; every threshold crossed
//! is named in [`Pressure::reasons`].

mod sample;

pub use sample::{check_override, sample};

use crate::state::{Envelope, LedgerHead, StateError, StateStore, ViewName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Resource settings of the policy (its `resources` member).
///
/// Load thresholds are crossed when the load per core is at or above them;
/// free memory and free disk thresholds when the free amount is below them.
/// Set a load threshold to 4294967295 or a free threshold to 0 to disable it.
///
/// ```json
/// "resources": {
///   "max_lanes": 4,
///   "load_milli_per_core": { "elevated": 1500, "high": 3000, "critical": 1000000 },
///   "mem_free_mib": { "elevated": 1024, "high": 512, "critical": 256 },
///   "disk_free_mib": { "elevated": 5120, "high": 2048, "critical": 512 }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicy {
    /// Repositories processed in parallel when there is no pressure, 1 to 64.
    /// Elevated pressure halves it (at least 1), high pressure allows 1,
    /// critical pressure defers every repository.
    #[serde(default = "default_max_lanes")]
    #[schemars(range(min = 1, max = 64))]
    pub max_lanes: u32,
    /// Thresholds on the 1-minute load average per logical core, in
    /// thousandths (1000 = a load average of 1.0 per core). Crossed at or
    /// above; each must be at least the previous level's.
    #[serde(default)]
    pub load_milli_per_core: LoadThresholds,
    /// Thresholds on available memory in MiB. Crossed below; each must be at
    /// most the previous level's.
    #[serde(default)]
    pub mem_free_mib: MemThresholds,
    /// Thresholds on free space of the volume holding HERMES_HOME, in MiB.
    /// Crossed below; each must be at most the previous level's.
    #[serde(default)]
    pub disk_free_mib: DiskThresholds,
    /// JSON file (absolute or relative to HERMES_HOME) whose members replace
    /// sampled telemetry fields, for simulations and tests: any of
    /// `load_milli_per_core`, `cores`, `mem_free_mib`, `mem_total_mib`,
    /// `disk_free_mib`, `disk_path`. The file must exist and be valid when
    /// set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_override: Option<String>,
}

/// Load-per-core thresholds in thousandths per logical core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadThresholds {
    /// Elevated at or above this (default 1500: load 1.5 per core).
    #[serde(default = "default_load_elevated")]
    pub elevated: u32,
    /// High at or above this (default 3000).
    #[serde(default = "default_load_high")]
    pub high: u32,
    /// Critical at or above this (default 1000000, i.e. off: a busy CPU
    /// slows upgrades down through fewer lanes but does not stop them; set
    /// e.g. 6000 to defer everything at a load of 6 per core).
    #[serde(default = "default_load_critical")]
    pub critical: u32,
}

/// Available-memory thresholds in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemThresholds {
    /// Elevated below this (default 1024).
    #[serde(default = "default_mem_elevated")]
    pub elevated: u64,
    /// High below this (default 512).
    #[serde(default = "default_mem_high")]
    pub high: u64,
    /// Critical below this (default 256).
    #[serde(default = "default_mem_critical")]
    pub critical: u64,
}

/// Free-disk thresholds in MiB, on the volume holding HERMES_HOME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskThresholds {
    /// Elevated below this (default 5120).
    #[serde(default = "default_disk_elevated")]
    pub elevated: u64,
    /// High below this (default 2048).
    #[serde(default = "default_disk_high")]
    pub high: u64,
    /// Critical below this (default 512).
    #[serde(default = "default_disk_critical")]
    pub critical: u64,
}

fn default_max_lanes() -> u32 {
    4
}
fn default_load_elevated() -> u32 {
    1500
}
fn default_load_high() -> u32 {
    3000
}
fn default_load_critical() -> u32 {
    1_000_000
}
fn default_mem_elevated() -> u64 {
    1024
}
fn default_mem_high() -> u64 {
    512
}
fn default_mem_critical() -> u64 {
    256
}
fn default_disk_elevated() -> u64 {
    5120
}
fn default_disk_high() -> u64 {
    2048
}
fn default_disk_critical() -> u64 {
    512
}

impl Default for LoadThresholds {
    fn default() -> Self {
        Self { elevated: default_load_elevated(), high: default_load_high(), critical: default_load_critical() }
    }
}

impl Default for MemThresholds {
    fn default() -> Self {
        Self { elevated: default_mem_elevated(), high: default_mem_high(), critical: default_mem_critical() }
    }
}

impl Default for DiskThresholds {
    fn default() -> Self {
        Self { elevated: default_disk_elevated(), high: default_disk_high(), critical: default_disk_critical() }
    }
}

impl Default for ResourcePolicy {
    fn default() -> Self {
        Self {
            max_lanes: default_max_lanes(),
            load_milli_per_core: LoadThresholds::default(),
            mem_free_mib: MemThresholds::default(),
            disk_free_mib: DiskThresholds::default(),
            telemetry_override: None,
        }
    }
}

/// A policy setting that is out of range; `field` is its JSON path relative
/// to the `resources` member (e.g. `max_lanes`, `mem_free_mib.high`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SettingError {
    pub field: String,
    pub problem: String,
}

impl ResourcePolicy {
    /// Checks what the types cannot: `max_lanes` in 1..=64, thresholds
    /// ordered by level, a non-empty override path.
    pub fn validate(&self) -> Result<(), SettingError> {
        let fail = |field: &str, problem: String| Err(SettingError { field: field.to_owned(), problem });
        if !(1..=64).contains(&self.max_lanes) {
            return fail("max_lanes", format!("{} is out of range; expected 1 to 64", self.max_lanes));
        }
        let l = self.load_milli_per_core;
        if l.high < l.elevated {
            return fail(
                "load_milli_per_core.high",
                format!("{} is below elevated ({}); expected elevated <= high <= critical", l.high, l.elevated),
            );
        }
        if l.critical < l.high {
            return fail(
                "load_milli_per_core.critical",
                format!("{} is below high ({}); expected elevated <= high <= critical", l.critical, l.high),
            );
        }
        for (name, elevated, high, critical) in [
            ("mem_free_mib", self.mem_free_mib.elevated, self.mem_free_mib.high, self.mem_free_mib.critical),
            ("disk_free_mib", self.disk_free_mib.elevated, self.disk_free_mib.high, self.disk_free_mib.critical),
        ] {
            if high > elevated {
                return fail(
                    &format!("{name}.high"),
                    format!("{high} is above elevated ({elevated}); expected elevated >= high >= critical"),
                );
            }
            if critical > high {
                return fail(
                    &format!("{name}.critical"),
                    format!("{critical} is above high ({high}); expected elevated >= high >= critical"),
                );
            }
        }
        if self.telemetry_override.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return fail(
                "telemetry_override",
                "empty; expected the path of a JSON file or no `telemetry_override` member".to_owned(),
            );
        }
        Ok(())
    }
}

/// One resource sample. Every figure is an integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    /// 1-minute load average per logical core, in thousandths.
    pub load_milli_per_core: u32,
    /// Logical cores.
    pub cores: u32,
    /// Available memory in MiB.
    pub mem_free_mib: u64,
    /// Total memory in MiB.
    pub mem_total_mib: u64,
    /// Free space in MiB on the volume holding HERMES_HOME.
    pub disk_free_mib: u64,
    /// Mount point of that volume.
    pub disk_path: String,
    /// Names of the fields taken from the telemetry override file, in field
    /// order; empty when nothing was overridden.
    #[serde(default)]
    pub overridden: Vec<String>,
}

/// How loaded the host is; ordered from `Normal` to `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PressureLevel {
    Normal,
    Elevated,
    High,
    Critical,
}

impl PressureLevel {
    /// Stable name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Elevated => "elevated",
            PressureLevel::High => "high",
            PressureLevel::Critical => "critical",
        }
    }

    /// Lanes allowed at this level out of `max_lanes` (clamped to 1..=64):
    /// all at normal, half (at least 1) at elevated, 1 at high, 0 at
    /// critical.
    pub fn lanes(self, max_lanes: u32) -> u32 {
        let max = max_lanes.clamp(1, 64);
        match self {
            PressureLevel::Normal => max,
            PressureLevel::Elevated => (max / 2).max(1),
            PressureLevel::High => 1,
            PressureLevel::Critical => 0,
        }
    }
}

impl std::fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pressure assessed from a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pressure {
    /// The worst level any metric reached.
    pub level: PressureLevel,
    /// Every threshold crossed, one line per metric (load, memory, disk),
    /// e.g. `mem_free_mib 300 < high threshold 512`. Empty at normal.
    pub reasons: Vec<String>,
    /// Repositories that may be processed in parallel; 0 defers every lane.
    pub lanes: u32,
}

impl Pressure {
    /// Whether every lane must be deferred.
    pub fn defers_all(&self) -> bool {
        self.lanes == 0
    }
}

/// Errors sampling telemetry.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A metric could not be sampled and the override file does not supply it.
    #[error("cannot sample {field}: {detail}")]
    Sample { field: &'static str, detail: String },
    /// The telemetry override file cannot be read.
    #[error("cannot read telemetry override {path}: {source}")]
    OverrideRead { path: PathBuf, source: std::io::Error },
    /// The telemetry override file is not valid.
    #[error("invalid telemetry override {path}\n  at {field}: {problem}")]
    OverrideInvalid { path: PathBuf, field: String, problem: String },
}

/// Compares a sample with the policy's thresholds.
pub fn assess(telemetry: &Telemetry, policy: &ResourcePolicy) -> Pressure {
    let mut level = PressureLevel::Normal;
    let mut reasons = Vec::new();
    let load = policy.load_milli_per_core;
    let value = telemetry.load_milli_per_core;
    let crossed = [
        (PressureLevel::Critical, load.critical),
        (PressureLevel::High, load.high),
        (PressureLevel::Elevated, load.elevated),
    ]
    .into_iter()
    .find(|&(_, threshold)| value >= threshold);
    if let Some((at, threshold)) = crossed {
        level = level.max(at);
        reasons.push(format!("load_milli_per_core {value} >= {at} threshold {threshold}"));
    }
    for (name, value, t) in [
        (
            "mem_free_mib",
            telemetry.mem_free_mib,
            (policy.mem_free_mib.elevated, policy.mem_free_mib.high, policy.mem_free_mib.critical),
        ),
        (
            "disk_free_mib",
            telemetry.disk_free_mib,
            (policy.disk_free_mib.elevated, policy.disk_free_mib.high, policy.disk_free_mib.critical),
        ),
    ] {
        let crossed = [(PressureLevel::Critical, t.2), (PressureLevel::High, t.1), (PressureLevel::Elevated, t.0)]
            .into_iter()
            .find(|&(_, threshold)| value < threshold);
        if let Some((at, threshold)) = crossed {
            level = level.max(at);
            reasons.push(format!("{name} {value} < {at} threshold {threshold}"));
        }
    }
    Pressure { level, reasons, lanes: level.lanes(policy.max_lanes) }
}

/// Writes `state/runtime_resource_telemetry.json`.
pub fn write_telemetry(
    store: &StateStore,
    ledger_head: &LedgerHead,
    written_at: &str,
    telemetry: &Telemetry,
) -> Result<(), StateError> {
    store.write(ViewName::RuntimeResourceTelemetry, written_at, ledger_head, telemetry)
}

/// Writes `state/runtime_resource_state.json`.
pub fn write_pressure(
    store: &StateStore,
    ledger_head: &LedgerHead,
    written_at: &str,
    pressure: &Pressure,
) -> Result<(), StateError> {
    store.write(ViewName::RuntimeResourceState, written_at, ledger_head, pressure)
}

/// Reads `state/runtime_resource_telemetry.json`; `None` when absent.
pub fn read_telemetry(store: &StateStore) -> Result<Option<Envelope<Telemetry>>, StateError> {
    store.read(ViewName::RuntimeResourceTelemetry)
}

/// Reads `state/runtime_resource_state.json`; `None` when absent.
pub fn read_pressure(store: &StateStore) -> Result<Option<Envelope<Pressure>>, StateError> {
    store.read(ViewName::RuntimeResourceState)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Telemetry {
        Telemetry {
            load_milli_per_core: 100,
            cores: 8,
            mem_free_mib: 16_000,
            mem_total_mib: 32_000,
            disk_free_mib: 100_000,
            disk_path: "/".to_owned(),
            overridden: Vec::new(),
        }
    }

    fn policy(max_lanes: u32) -> ResourcePolicy {
        ResourcePolicy { max_lanes, ..ResourcePolicy::default() }
    }

    #[test]
    fn calm_host_is_normal_with_every_lane() {
        let p = assess(&calm(), &policy(4));
        assert_eq!(p, Pressure { level: PressureLevel::Normal, reasons: vec![], lanes: 4 });
    }

    #[test]
    fn load_thresholds_give_level_and_lanes() {
        let pol = policy(8);
        let cases = [
            (1499, PressureLevel::Normal, 8),
            (1500, PressureLevel::Elevated, 4),
            (2999, PressureLevel::Elevated, 4),
            (3000, PressureLevel::High, 1),
            (999_999, PressureLevel::High, 1),
            (1_000_000, PressureLevel::Critical, 0),
            (u32::MAX, PressureLevel::Critical, 0),
        ];
        for (load, level, lanes) in cases {
            let t = Telemetry { load_milli_per_core: load, ..calm() };
            let p = assess(&t, &pol);
            assert_eq!((p.level, p.lanes), (level, lanes), "load {load}");
            if level == PressureLevel::Normal {
                assert!(p.reasons.is_empty());
            } else {
                assert_eq!(p.reasons.len(), 1);
                assert!(
                    p.reasons[0].starts_with(&format!("load_milli_per_core {load} >= {level} threshold")),
                    "{:?}",
                    p.reasons
                );
            }
        }
    }

    #[test]
    fn memory_thresholds_give_level_and_lanes() {
        let pol = policy(4);
        for (free, level, lanes) in [
            (1024, PressureLevel::Normal, 4),
            (1023, PressureLevel::Elevated, 2),
            (511, PressureLevel::High, 1),
            (255, PressureLevel::Critical, 0),
            (0, PressureLevel::Critical, 0),
        ] {
            let p = assess(&Telemetry { mem_free_mib: free, ..calm() }, &pol);
            assert_eq!((p.level, p.lanes), (level, lanes), "mem {free}");
            if level != PressureLevel::Normal {
                assert_eq!(
                    p.reasons,
                    vec![format!(
                        "mem_free_mib {free} < {level} threshold {}",
                        match level {
                            PressureLevel::Elevated => 1024,
                            PressureLevel::High => 512,
                            _ => 256,
                        }
                    )]
                );
            }
        }
    }

    #[test]
    fn disk_thresholds_give_level_and_lanes() {
        let pol = policy(4);
        for (free, level, lanes) in [
            (5120, PressureLevel::Normal, 4),
            (5119, PressureLevel::Elevated, 2),
            (2047, PressureLevel::High, 1),
            (511, PressureLevel::Critical, 0),
        ] {
            let p = assess(&Telemetry { disk_free_mib: free, ..calm() }, &pol);
            assert_eq!((p.level, p.lanes), (level, lanes), "disk {free}");
            if level != PressureLevel::Normal {
                assert!(p.reasons[0].starts_with(&format!("disk_free_mib {free} < {level} threshold")));
            }
        }
    }

    #[test]
    fn worst_metric_wins_and_every_crossing_is_named() {
        let t = Telemetry { load_milli_per_core: 1600, mem_free_mib: 100, disk_free_mib: 3000, ..calm() };
        let p = assess(&t, &policy(4));
        assert_eq!(p.level, PressureLevel::Critical);
        assert_eq!(p.lanes, 0);
        assert!(p.defers_all());
        assert_eq!(
            p.reasons,
            vec![
                "load_milli_per_core 1600 >= elevated threshold 1500".to_owned(),
                "mem_free_mib 100 < critical threshold 256".to_owned(),
                "disk_free_mib 3000 < elevated threshold 5120".to_owned(),
            ]
        );
    }

    #[test]
    fn lanes_per_level() {
        assert_eq!(PressureLevel::Elevated.lanes(1), 1);
        assert_eq!(PressureLevel::Elevated.lanes(5), 2);
        assert_eq!(PressureLevel::High.lanes(64), 1);
        assert_eq!(PressureLevel::Normal.lanes(0), 1, "max_lanes is clamped to at least 1");
        assert_eq!(PressureLevel::Normal.lanes(1000), 64);
        assert_eq!(PressureLevel::Critical.lanes(64), 0);
        assert!(PressureLevel::Normal < PressureLevel::Elevated);
        assert!(PressureLevel::High < PressureLevel::Critical);
    }

    #[test]
    fn policy_defaults_and_validation() {
        let parsed: ResourcePolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, ResourcePolicy::default());
        assert_eq!(parsed.max_lanes, 4);
        let partial: ResourcePolicy = serde_json::from_str(r#"{"mem_free_mib":{"critical":100}}"#).unwrap();
        assert_eq!(partial.mem_free_mib, MemThresholds { elevated: 1024, high: 512, critical: 100 });
        assert!(parsed.validate().is_ok());
        let err = serde_json::from_str::<ResourcePolicy>(r#"{"lanes":2}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `lanes`"), "{err}");

        let bad = ResourcePolicy { max_lanes: 0, ..ResourcePolicy::default() };
        assert_eq!(bad.validate().unwrap_err().field, "max_lanes");
        let bad = ResourcePolicy { max_lanes: 65, ..ResourcePolicy::default() };
        assert_eq!(bad.validate().unwrap_err().field, "max_lanes");
        let mut bad = ResourcePolicy::default();
        bad.load_milli_per_core.critical = 10;
        assert_eq!(bad.validate().unwrap_err().field, "load_milli_per_core.critical");
        let mut bad = ResourcePolicy::default();
        bad.disk_free_mib.high = 999_999;
        assert_eq!(bad.validate().unwrap_err().field, "disk_free_mib.high");
        let bad = ResourcePolicy { telemetry_override: Some(" ".into()), ..ResourcePolicy::default() };
        assert_eq!(bad.validate().unwrap_err().field, "telemetry_override");
    }

    #[test]
    fn policy_schema_has_range_and_docs() {
        let schema = serde_json::to_value(schemars::schema_for!(ResourcePolicy)).unwrap();
        let lanes = &schema["properties"]["max_lanes"];
        assert_eq!(lanes["minimum"], 1);
        assert_eq!(lanes["maximum"], 64);
        assert_eq!(lanes["default"], 4);
        assert!(lanes["description"].as_str().unwrap().contains("parallel"));
    }

    #[test]
    fn pressure_serializes_kebab_case_without_floats() {
        let p = assess(&Telemetry { load_milli_per_core: 3500, ..calm() }, &policy(4));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["level"], "high");
        assert_eq!(v["lanes"], 1);
        let text = serde_json::to_string(&calm()).unwrap();
        assert!(!text.contains('.'), "{text}");
    }

    #[test]
    fn views_round_trip_through_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state")).unwrap();
        assert!(read_telemetry(&store).unwrap().is_none());
        assert!(read_pressure(&store).unwrap().is_none());
        let head = LedgerHead { seq: 7, hash: "ab".repeat(32) };
        let t = Telemetry { overridden: vec!["disk_free_mib".into()], disk_free_mib: 10, ..calm() };
        let p = assess(&t, &policy(4));
        write_telemetry(&store, &head, "2030-01-01T00:00:00.000Z", &t).unwrap();
        write_pressure(&store, &head, "2030-01-01T00:00:00.000Z", &p).unwrap();
        let back_t = read_telemetry(&store).unwrap().unwrap();
        let back_p = read_pressure(&store).unwrap().unwrap();
        assert_eq!(back_t.data, t);
        assert_eq!(back_t.ledger_head, head);
        assert_eq!(back_t.view, "runtime_resource_telemetry");
        assert_eq!(back_p.data, p);
        assert_eq!(back_p.written_at, "2030-01-01T00:00:00.000Z");
        assert!(dir.path().join("state/runtime_resource_state.json").is_file());
    }
}
