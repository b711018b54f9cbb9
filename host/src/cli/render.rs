//! Human-readable rendering: aligned tables and cycle reports.

use crate::cycle::{CycleReport, Mode};

/// The first 8 characters of an object id, or `-`.
pub fn short(oid: Option<&str>) -> String {
    oid.map(|o| o.chars().take(8).collect()).unwrap_or_else(|| "-".to_owned())
}

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

/// Rows under a header, columns aligned; the last column is not padded.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// The report as an aligned table, with a summary line.
pub fn cycle_table(report: &CycleReport) -> String {
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
    let mut out = table(["REPO", "DECISION", "OUTCOME", "HEAD", "TARGET", "REASON"], &rows);
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
