//! Host bindings generated from `wit/0.1.0` with `wasmtime::component::bindgen!`.
//!
//! Calls go through [`super::value`] as JSON; these bindings provide the
//! `host` import (bounded logging) and the typed `*Pre` wrappers whose
//! construction type-checks a component's exports against its world.

/// World `repo-probe`; also home of the shared `host` and `types` interfaces.
pub mod probe {
    wasmtime::component::bindgen!({ world: "repo-probe", path: "../wit/0.1.0" });
}

/// World `risk-scorer`.
pub mod scorer {
    wasmtime::component::bindgen!({
        world: "risk-scorer",
        path: "../wit/0.1.0",
        with: {
            "hermes:plugin/host": super::probe::hermes::plugin::host,
            "hermes:plugin/types": super::probe::hermes::plugin::types,
        },
    });
}

/// World `federation-selector`.
pub mod selector {
    wasmtime::component::bindgen!({
        world: "federation-selector",
        path: "../wit/0.1.0",
        with: {
            "hermes:plugin/host": super::probe::hermes::plugin::host,
            "hermes:plugin/types": super::probe::hermes::plugin::types,
        },
    });
}

pub use probe::hermes::plugin::host;
