//! The workspace: `HERMES_HOME` and the paths inside it.
//!
//! ```text
//! HERMES_HOME/
//!   config/runtime_upgrade_policies.json          the policy (crate::policy)
//!   config/runtime_upgrade_policies.schema.json   its JSON Schema
//!   state/                                        ledger and views (crate::state, crate::ledger)
//! ```
//!
//! `HERMES_HOME` comes from `--home`, else the `HERMES_HOME` variable, else
//! `~/.hermes`; a relative value is taken from the current directory.

use crate::policy::{self, Policy, PolicyError};
use std::path::{Path, PathBuf};

/// A Hermes workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    home: PathBuf,
}

impl Workspace {
    /// The workspace at `home` (made absolute against the current directory).
    pub fn new(home: &Path) -> Self {
        let home = if home.is_absolute() {
            home.to_owned()
        } else {
            std::env::current_dir().map(|cwd| cwd.join(home)).unwrap_or_else(|_| home.to_owned())
        };
        Self { home }
    }

    /// `~/.hermes`, if the home directory is known.
    pub fn default_home() -> Option<PathBuf> {
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".hermes"))
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.join("config")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.config_dir().join(policy::POLICY_FILE)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.join("state")
    }

    /// Loads and validates the policy.
    pub fn load_policy(&self) -> Result<Policy, PolicyError> {
        policy::load(&self.policy_path(), &self.home)
    }
}
