//! Host bindings generated from `wit/0.1.0` with `wasmtime::component::bindgen!`.
//!
//! The records and enums are [`super::wit`]'s (mapped with `with`), so a
//! call lowers and lifts them directly; these bindings provide the `host`
//! import (bounded logging) and the typed `*Pre` wrappers, whose
//! construction type-checks a component's exports against its world and
//! looks them up once.

/// World `repo-probe`; also home of the shared `host` interface.
pub mod probe {
    wasmtime::component::bindgen!({
        world: "repo-probe",
        path: "../wit/0.1.0",
        with: { "hermes:plugin/types": crate::plugin::wit },
    });
}

/// World `risk-scorer`.
pub mod scorer {
    wasmtime::component::bindgen!({
        world: "risk-scorer",
        path: "../wit/0.1.0",
        with: {
            "hermes:plugin/host": super::probe::hermes::plugin::host,
            "hermes:plugin/types": crate::plugin::wit,
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
            "hermes:plugin/types": crate::plugin::wit,
        },
    });
}

pub use probe::hermes::plugin::host;
