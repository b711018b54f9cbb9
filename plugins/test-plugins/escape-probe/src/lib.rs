//! Test plugin `escape-probe`: tries to get out of the sandbox and reports
//! every attempt as a signal: `key` = attempt, `value` = `"denied"` or
//! `"allowed"` (`"skipped"` when there was nothing to try), `message` = the
//! error or what happened. An escape that was allowed is `critical`, anything
//! else `info`.
//!
//! Attempts, in this order (all must be `denied` except `list-worktree`, the
//! control, which must be `allowed`):
//! - `list-worktree`: list `/worktree` (read access is granted);
//! - `write-worktree`: create `/worktree/.hermes-escape-probe`;
//! - `mkdir-worktree`: create directory `/worktree/.hermes-escape-probe-dir`;
//! - `append-existing-file`: open the first regular file of `/worktree` (by
//!   name) for appending (`skipped` if there is none);
//! - `read-etc-passwd`: read `/etc/passwd`;
//! - `list-root`: list `/`;
//! - `list-worktree-parent`: list `/worktree/..`;
//! - `read-dotdot-passwd`: read `/worktree/../../etc/passwd`;
//! - `read-relative-dotdot`: read `../etc/passwd` (relative to the cwd);
//! - `read-symlink:<name>`: for every symlink at the top of `/worktree` (by
//!   name), read through it (a host test can plant `/worktree/x -> /etc/passwd`).
use hermes_plugin_sdk::{ProbeInput, RepoProbe, Severity, Signal};
use std::io::Read;

struct EscapeProbe;

const WORKTREE: &str = "/worktree";

fn outcome(key: &str, escape: bool, result: Result<String, std::io::Error>) -> Signal {
    match result {
        Ok(detail) => Signal {
            key: key.to_string(),
            value: "allowed".to_string(),
            severity: if escape { Severity::Critical } else { Severity::Info },
            message: detail,
        },
        Err(e) => Signal {
            key: key.to_string(),
            value: "denied".to_string(),
            severity: Severity::Info,
            message: format!("{:?}: {e}", e.kind()),
        },
    }
}

fn read_head(path: &str) -> Result<String, std::io::Error> {
    let mut buf = [0u8; 64];
    let n = std::fs::File::open(path)?.read(&mut buf)?;
    Ok(format!("read {n} bytes from {path}"))
}

fn list(path: &str) -> Result<String, std::io::Error> {
    let n = std::fs::read_dir(path)?.count();
    Ok(format!("listed {n} entries of {path}"))
}

/// Top-level worktree entries sorted by name: (name, is_symlink, is_file).
fn worktree_entries() -> Vec<(String, bool, bool)> {
    let mut entries: Vec<(String, bool, bool)> = match std::fs::read_dir(WORKTREE) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| {
                let ft = e.file_type().ok();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    ft.is_some_and(|t| t.is_symlink()),
                    ft.is_some_and(|t| t.is_file()),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

impl RepoProbe for EscapeProbe {
    const NAME: &'static str = "escape-probe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test plugin: tries to escape the read-only worktree";

    fn probe(_input: ProbeInput) -> Result<Vec<Signal>, String> {
        let mut s = Vec::new();
        s.push(outcome("list-worktree", false, list(WORKTREE)));
        s.push(outcome(
            "write-worktree",
            true,
            std::fs::write(format!("{WORKTREE}/.hermes-escape-probe"), b"escaped")
                .map(|()| "created /worktree/.hermes-escape-probe".to_string()),
        ));
        s.push(outcome(
            "mkdir-worktree",
            true,
            std::fs::create_dir(format!("{WORKTREE}/.hermes-escape-probe-dir"))
                .map(|()| "created /worktree/.hermes-escape-probe-dir".to_string()),
        ));
        let entries = worktree_entries();
        match entries.iter().find(|(_, _, is_file)| *is_file) {
            Some((name, _, _)) => s.push(outcome(
                "append-existing-file",
                true,
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(format!("{WORKTREE}/{name}"))
                    .map(|_| format!("opened /worktree/{name} for appending")),
            )),
            None => s.push(Signal {
                key: "append-existing-file".to_string(),
                value: "skipped".to_string(),
                severity: Severity::Info,
                message: "no regular file at the top of /worktree".to_string(),
            }),
        }
        s.push(outcome("read-etc-passwd", true, read_head("/etc/passwd")));
        s.push(outcome("list-root", true, list("/")));
        s.push(outcome("list-worktree-parent", true, list("/worktree/..")));
        s.push(outcome("read-dotdot-passwd", true, read_head("/worktree/../../etc/passwd")));
        s.push(outcome("read-relative-dotdot", true, read_head("../etc/passwd")));
        for (name, is_symlink, _) in &entries {
            if *is_symlink {
                s.push(outcome(&format!("read-symlink:{name}"), true, read_head(&format!("{WORKTREE}/{name}"))));
            }
        }
        Ok(s)
    }
}

hermes_plugin_sdk::export_repo_probe!(EscapeProbe);
