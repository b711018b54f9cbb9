//! Prometheus text exposition (format 0.0.4) of the projection's
//! [`Counters`](super::Counters): what `hermes metrics` prints and what a
//! cycle writes to the node_exporter textfile collector path set in the
//! policy (`metrics.textfile`). Every series is a counter or gauge named
//! `hermes_*`; label values come from the ledger, escaped as the format
//! requires; series are written in a fixed order.

use super::GraphSnapshot;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Where each cycle also writes its metrics.
///
/// ```json
/// "metrics": { "textfile": "/var/lib/node_exporter/textfile_collector/hermes.prom" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsPolicy {
    /// A file for node_exporter's textfile collector, rewritten atomically
    /// at the end of every cycle. Must end in `.prom`; a relative path is
    /// resolved against HERMES_HOME. No file is written when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile: Option<String>,
}

impl MetricsPolicy {
    /// The field at fault (relative to `metrics`) and the problem, if any.
    pub fn problem(&self) -> Option<(String, String)> {
        let path = self.textfile.as_deref()?;
        if !path.ends_with(".prom") || path.trim() == ".prom" {
            return Some((
                "textfile".into(),
                format!("{path:?}; expected a file name ending in `.prom` (node_exporter reads only those)"),
            ));
        }
        None
    }

    /// The textfile's path, resolved against `home`.
    pub fn textfile_path(&self, home: &Path) -> Option<PathBuf> {
        self.textfile.as_deref().map(|p| home.join(p))
    }
}

/// Writes `text` to `path` atomically (a temporary file in the same
/// directory, then a rename), so a scraper never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(std::io::Error::other(format!("{} is not a file path", path.display())));
    };
    let dir = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
    crate::fsx::write_atomic(&dir, name, text.as_bytes())
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

/// The exposition for `snapshot`; `ledger_bytes` is the ledger file's size.
pub fn exposition(snapshot: &GraphSnapshot, ledger_bytes: u64) -> String {
    let c = &snapshot.counters;
    let mut out = Out(String::new());
    out.counter("hermes_cycles_total", "Upgrade cycles started.", c.cycles);
    out.counter(
        "hermes_cycles_skipped_total",
        "Cycles that skipped because another one was running.",
        snapshot.skipped_ticks,
    );
    out.family("hermes_repo_outcomes_total", "counter", "Repository outcomes of phase 2, by outcome.");
    for (outcome, n) in &c.outcomes {
        out.sample("hermes_repo_outcomes_total", &[("outcome", outcome)], *n);
    }
    out.counter("hermes_rollbacks_total", "Repositories rolled back to their recorded HEAD.", c.rollbacks);
    out.counter("hermes_rollbacks_failed_total", "Rollbacks that could not be made.", c.rollbacks_failed);
    out.family("hermes_plugin_calls_total", "counter", "Plugin calls, by plugin kind and outcome.");
    for (key, n) in &c.plugin_calls {
        let (kind, outcome) = key.split_once('/').unwrap_or((key, ""));
        out.sample("hermes_plugin_calls_total", &[("kind", kind), ("outcome", outcome)], *n);
    }
    out.family("hermes_plugin_fuel_used_total", "counter", "Fuel consumed by plugin calls, by plugin kind.");
    for (kind, n) in &c.plugin_fuel {
        out.sample("hermes_plugin_fuel_used_total", &[("kind", kind)], *n);
    }
    out.counter("hermes_lease_conflicts_total", "Leases refused because another holder had them.", c.lease_conflicts);
    out.counter("hermes_lease_takeovers_total", "Expired leases taken over.", c.lease_takeovers);
    out.counter("hermes_fence_rejections_total", "Mutations stopped by a stale fencing token.", c.fence_rejections);
    out.counter("hermes_integrity_failures_total", "Cycles whose integrity gate failed.", c.integrity_failures);
    out.counter("hermes_ledger_events_total", "Events in the ledger.", c.events);
    out.family("hermes_ledger_bytes", "gauge", "Size of the ledger file in bytes.");
    out.sample("hermes_ledger_bytes", &[], ledger_bytes);
    out.family("hermes_active_leases", "gauge", "Leases held now.");
    out.sample("hermes_active_leases", &[], snapshot.leases.len() as u64);
    out.0
}
