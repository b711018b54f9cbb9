//! `baseline-probe`: Hermes' default repo probe. Reports lockfile, manifest
//! and migration changes in the incoming commits and large changes; see
//! [`logic`] for the exact signals. Reads the worktree (preopened read-only at
//! `/worktree`) only to check whether a lockfile exists; never fails because
//! of it.

pub mod logic;

/// Guest path of the preopened, read-only worktree.
pub const WORKTREE: &str = "/worktree";

struct BaselineProbe;

fn worktree_has_file(rel: &str) -> bool {
    std::fs::metadata(format!("{WORKTREE}/{rel}")).map(|m| m.is_file()).unwrap_or(false)
}

impl hermes_plugin_sdk::RepoProbe for BaselineProbe {
    const NAME: &'static str = "baseline-probe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Baseline probe: lockfile, manifest and migration changes and large changes in incoming commits";

    fn probe(input: hermes_plugin_sdk::ProbeInput) -> Result<Vec<hermes_plugin_sdk::Signal>, String> {
        Ok(logic::probe(&input, &worktree_has_file))
    }
}

hermes_plugin_sdk::export_repo_probe!(BaselineProbe);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures() {
        // Fixtures are worktree-independent: no worktree file exists.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/baseline-probe.json");
        let n = hermes_plugin_sdk::fixtures::run(&path, |input| Ok(super::logic::probe(&input, &|_| false)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 5, "only {n} fixture cases");
    }
}
