//! The WebAssembly plugin runtime.
//!
//! Repo probes, risk scorers and federation selectors are components built
//! against the WIT package `hermes:plugin@0.1.0` (`wit/0.1.0/`), one world
//! per [`PluginKind`]. The host:
//!
//! - loads a component ([`engine::PluginEngine::load`]), precompiled code
//!   cached on disk by digest ([`cache`]), rejects imports outside the
//!   sandbox ([`imports`]) and type-checks its exports against the world
//!   ([`bindings`]);
//! - runs every call in a fresh instance under deterministic fuel, a memory
//!   cap and an epoch deadline, with WASI reduced to fixed clocks, seeded
//!   randomness, no environment, no network and (for probes only) a
//!   read-only worktree ([`sandbox`]);
//! - passes inputs and outputs as JSON mapped onto the WIT types
//!   ([`wit`]), lowered and lifted by typed calls, and returns a
//!   [`call::CallRecord`] for the ledger.
//!
//! Default plugins ship inside the binary ([`builtin`]).

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod call;
pub mod engine;
pub mod fixture;
pub mod imports;
pub mod sandbox;
pub mod set;
pub mod wit;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use wasmtime::component::{ComponentType, Lift, Lower};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// The wasmtime version plugins run on (from Cargo.lock, by build.rs).
pub const WASMTIME_VERSION: &str = env!("HERMES_WASMTIME_VERSION");

/// The three kinds of plugin, one WIT world each (also the WIT enum
/// `plugin-kind`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ComponentType, Lift, Lower,
)]
#[serde(rename_all = "kebab-case")]
#[component(enum)]
#[repr(u8)]
pub enum PluginKind {
    #[component(name = "repo-probe")]
    RepoProbe,
    #[component(name = "risk-scorer")]
    RiskScorer,
    #[component(name = "federation-selector")]
    FederationSelector,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::RepoProbe, PluginKind::RiskScorer, PluginKind::FederationSelector];

    /// WIT world name (also the kind's name in policy and CLI).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::RepoProbe => "repo-probe",
            PluginKind::RiskScorer => "risk-scorer",
            PluginKind::FederationSelector => "federation-selector",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The exported operation of the world.
    pub fn operation(self) -> &'static str {
        match self {
            PluginKind::RepoProbe => "probe",
            PluginKind::RiskScorer => "score",
            PluginKind::FederationSelector => "select",
        }
    }

    /// Default fuel per call. Fuel counts wasm operations, so the same input
    /// always exhausts it at the same point.
    pub fn default_fuel(self) -> u64 {
        match self {
            PluginKind::RepoProbe => 200_000_000,
            PluginKind::RiskScorer => 20_000_000,
            PluginKind::FederationSelector => 20_000_000,
        }
    }
}

/// Errors loading a plugin. Failures of a call are not errors: they are
/// outcomes in the [`call::CallRecord`].
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {source_name} is not a valid component: {detail}")]
    Invalid { source_name: String, detail: String },
    #[error("plugin {source_name} imports {import}, which the Hermes sandbox does not provide (allowed: {allowed})")]
    ForbiddenImport { source_name: String, import: String, allowed: String },
    #[error("plugin {source_name} does not implement world {world} of hermes:plugin@{WIT_VERSION}: {detail}")]
    WrongWorld { source_name: String, world: &'static str, detail: String },
    #[error(
        "plugin {source_name} exports no known world (expected one of repo-probe, risk-scorer, federation-selector): {detail}"
    )]
    UnknownWorld { source_name: String, detail: String },
    #[error("plugin {source_name}: metadata() failed: {detail}")]
    Metadata { source_name: String, detail: String },
    #[error("plugin engine: {0}")]
    Engine(String),
}
