//! The default plugins, compiled from `plugins/` by the build script and
//! embedded in the binary.

use super::PluginKind;

/// A plugin that ships inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub kind: PluginKind,
    /// Name used in `plugin list` and in the ledger's `source`.
    pub name: &'static str,
    pub bytes: &'static [u8],
}

/// One default plugin per kind.
pub const BUILTINS: [Builtin; 3] = [
    Builtin {
        kind: PluginKind::RepoProbe,
        name: "builtin:baseline-probe",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/baseline_probe.wasm")),
    },
    Builtin {
        kind: PluginKind::RiskScorer,
        name: "builtin:baseline-scorer",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/baseline_scorer.wasm")),
    },
    Builtin {
        kind: PluginKind::FederationSelector,
        name: "builtin:baseline-selector",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/baseline_selector.wasm")),
    },
];

/// The default plugin of `kind`.
pub fn builtin(kind: PluginKind) -> Builtin {
    match kind {
        PluginKind::RepoProbe => BUILTINS[0],
        PluginKind::RiskScorer => BUILTINS[1],
        PluginKind::FederationSelector => BUILTINS[2],
    }
}
