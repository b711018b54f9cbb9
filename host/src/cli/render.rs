//! Human-readable rendering of cycle reports.

use crate::cycle::{CycleReport, Mode};

fn short(oid: Option<&str>) -> String {
    oid.map(|o| o.chars().take(8).collect()).unwrap_or_else(|| "-".to_owned())
}

/// The report as an aligned table, with a summary line.
/// The one line printed for a cycle that skipped.
pub fn skipped_line(skipped: &crate::cycle::Skipped) -> String {
    match &skipped.holder {
        Some(h) => format!(
            "skipped: another cycle holds the workspace (pid {} on {}, started {}); recorded in the ledger",
            h.pid, h.host, h.started_at
        ),
        None => "skipped: another cycle holds the workspace; recorded in the ledger".to_owned(),
    }
}

pub fn cycle_table(report: &CycleReport) -> String {
    let header = ["REPO", "DECISION", "OUTCOME", "HEAD", "TARGET", "REASON"];
    let rows: Vec<[String; 6]> = report
        .repos
        .iter()
        .map(|r| {
            [
                r.repo.clone(),
                r.recommendation.as_str().to_owned(),
                r.outcome.map_or("-", |o| o.as_str()).to_owned(),
                short(r.head_after.as_deref().or(r.head_before.as_deref())),
                short(r.target.as_deref()),
                format!("{}: {}", r.reason_code, r.reason),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    let what = match report.mode {
        Mode::Plan => "plan".to_owned(),
        Mode::Execute => {
            let counts: Vec<String> = report.counts().iter().map(|(o, n)| format!("{n} {}", o.as_str())).collect();
            format!(
                "cycle {}: {}",
                report.tick,
                if counts.is_empty() { "no repositories".into() } else { counts.join(", ") }
            )
        }
    };
    out.push_str(&format!("\n{what}\ndecision hash {}\n", report.decision_hash));
    out
}
