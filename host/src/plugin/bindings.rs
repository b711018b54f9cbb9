//! Host bindings of the `hermes:plugin/host` import (bounded logging),
//! generated from `wit/0.1.0` with `wasmtime::component::bindgen!`.
//!
//! The worlds' exports are not bound here: [`super::wit`] holds their
//! records as Rust types, [`super::engine`] type-checks a component's
//! exports against them once, at load, and [`super::call`] calls them
//! typed.

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    interfaces: "import hermes:plugin/host@0.1.0;",
});

pub use self::hermes::plugin::host;
