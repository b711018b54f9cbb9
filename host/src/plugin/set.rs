//! The active plugin of each kind for a workspace, as the policy says.
//!
//! `plugins.<kind>.path` + `sha256` select a component file (pinned: a
//! digest mismatch is a configuration error naming both digests); a kind
//! left out uses the built-in default. Limits come from the policy or the
//! kind's defaults. Precompiled code is cached in `HERMES_HOME/cache/plugins`.

use super::builtin::builtin;
use super::cache::ComponentCache;
use super::call::{self, CallRecord, CallSpec};
use super::engine::{DEFAULT_DEADLINE, DEFAULT_MEMORY_CAP, LoadedPlugin, PluginEngine};
use super::{PluginError, PluginKind};
use crate::canonical::sha256_hex;
use crate::policy::{Policy, PolicyError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Errors resolving the policy's plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginSetError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// SHA-256 of the component the policy configures for `kind` now (the file
/// is hashed again; a built-in's bytes are hashed).
pub fn configured_digest(home: &Path, policy: &Policy, kind: PluginKind) -> Result<String, String> {
    match policy.plugins.get(kind.as_str()).and_then(|p| p.path.as_ref()) {
        Some(path) => {
            let file = home.join(path);
            std::fs::read(&file)
                .map(|bytes| sha256_hex(&bytes))
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
        }
        None => Ok(sha256_hex(builtin(kind).bytes)),
    }
}

/// One kind's plugin with its limits.
#[derive(Debug, Clone)]
pub struct ActivePlugin {
    pub plugin: LoadedPlugin,
    pub fuel: u64,
    pub memory_cap: usize,
    pub deadline: Duration,
    pub settings: BTreeMap<String, i64>,
}

/// The engine and the active plugin of every kind.
pub struct PluginSet {
    engine: PluginEngine,
    active: BTreeMap<PluginKind, ActivePlugin>,
}

impl PluginSet {
    /// Loads the plugins `policy` (read from `policy_path`) names.
    pub fn load(home: &Path, policy_path: &Path, policy: &Policy) -> Result<Self, PluginSetError> {
        let cache = ComponentCache::open(&home.join("cache").join("plugins"))
            .map_err(|e| tracing::warn!(error = %e, "plugin cache unavailable; compiling every load"))
            .ok();
        let engine = PluginEngine::new(cache)?;
        let mut active = BTreeMap::new();
        for kind in PluginKind::ALL {
            let settings = policy.plugins.get(kind.as_str()).cloned().unwrap_or_default();
            let (bytes, source) = match (&settings.path, &settings.sha256) {
                (Some(path), Some(pinned)) => {
                    let file = home.join(path);
                    let bytes = std::fs::read(&file).map_err(|source| PolicyError::Invalid {
                        path: policy_path.to_owned(),
                        json_path: format!("plugins.{}.path", kind.as_str()),
                        problem: format!("cannot read {}: {source}", file.display()),
                    })?;
                    let actual = sha256_hex(&bytes);
                    if &actual != pinned {
                        return Err(PolicyError::Invalid {
                            path: policy_path.to_owned(),
                            json_path: format!("plugins.{}.sha256", kind.as_str()),
                            problem: format!("{} has SHA-256 {actual}, but the policy pins {pinned}", file.display()),
                        }
                        .into());
                    }
                    (bytes, file.display().to_string())
                }
                _ => {
                    let b = builtin(kind);
                    (b.bytes.to_vec(), b.name.to_owned())
                }
            };
            let plugin = engine.load(&bytes, &source)?;
            if plugin.kind != kind {
                return Err(PolicyError::Invalid {
                    path: policy_path.to_owned(),
                    json_path: format!("plugins.{}.path", kind.as_str()),
                    problem: format!("{source} implements {}, expected {}", plugin.kind.as_str(), kind.as_str()),
                }
                .into());
            }
            active.insert(
                kind,
                ActivePlugin {
                    plugin,
                    fuel: settings.fuel.unwrap_or_else(|| kind.default_fuel()),
                    memory_cap: settings.memory_mib.map_or(DEFAULT_MEMORY_CAP, |m| (m as usize) << 20),
                    deadline: settings.deadline_ms.map_or(DEFAULT_DEADLINE, Duration::from_millis),
                    settings: settings.settings,
                },
            );
        }
        Ok(Self { engine, active })
    }

    /// The active plugin of `kind`.
    pub fn get(&self, kind: PluginKind) -> &ActivePlugin {
        &self.active[&kind]
    }

    /// Component digest of each kind, for the plan.
    pub fn digests(&self) -> BTreeMap<PluginKind, String> {
        self.active.iter().map(|(k, a)| (*k, a.plugin.digest.clone())).collect()
    }

    /// Calls the plugin of `kind` with its policy limits; `input` moves into
    /// the record.
    pub fn call(&self, kind: PluginKind, input: Value, logical_time: u64, worktree: Option<&Path>) -> CallRecord {
        let active = self.get(kind);
        let spec = CallSpec {
            fuel: active.fuel,
            memory_cap: active.memory_cap,
            deadline: active.deadline,
            logical_time,
            worktree,
        };
        call::invoke(&self.engine, &active.plugin, input, &spec)
    }
}
