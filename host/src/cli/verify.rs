//! `hermes verify`: check the ledger's hash chain.

use super::{CliError, ExitStatus, print_json};
use crate::ledger;
use crate::state::{StateError, ViewName};
use crate::workspace::Workspace;
use serde_json::json;

/// Verify every event of the ledger: sequence numbers, hash chain, and that
/// the state views' recorded ledger head is still in the ledger (which
/// catches lines cut from its end). Exits 5 naming the first bad sequence
/// number. Read-only: a torn final line is reported, and repaired by the
/// next command that writes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, args: Args) -> Result<ExitStatus, CliError> {
    let state_dir = workspace.state_dir();
    let store = super::open_state(workspace)?;
    let scan = ledger::verify(store.dir(), &state_dir)?;
    let summary = match store.read::<serde_json::Value>(ViewName::UpgradeSummary) {
        Ok(envelope) => envelope,
        Err(StateError::Corrupt { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let last_seq = scan.torn_tail.as_ref().and_then(|t| t.complete_event.as_ref()).map_or(scan.head.seq, |e| e.seq);
    if let Some(view_head) = summary.map(|e| e.ledger_head) {
        let ledger_path = state_dir.join(ledger::LEDGER_FILE);
        ledger::check_view_head(&ledger_path, last_seq, ViewName::UpgradeSummary.file_name(), &view_head)?;
    }
    let torn = scan.torn_tail.as_ref().map(|t| json!({ "offset": t.offset, "length": t.bytes.len() }));
    if args.json {
        print_json(&json!({
            "ok": true,
            "events": scan.events,
            "head": scan.head,
            "torn_tail": torn,
        }))?;
    } else {
        println!("ledger ok: {} events, head {} {}", scan.events, scan.head.seq, scan.head.hash);
        if let Some(t) = &scan.torn_tail {
            println!(
                "note: a torn final line ({} bytes at offset {}) from an interrupted write will be repaired by the next cycle",
                t.bytes.len(),
                t.offset
            );
        }
    }
    Ok(ExitStatus::Success)
}
