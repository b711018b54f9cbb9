//! The sandbox's import allow-list.
//!
//! A component may import only WASI interfaces that Hermes provides in a
//! deterministic, confined form and the `hermes:plugin/host` interface.
//! Anything else (sockets, HTTP, unknown packages) is refused before the
//! component is instantiated, naming the import.

use super::PluginError;
use wasmtime::Engine;
use wasmtime::component::Component;

/// `namespace:package/interface` prefixes a component may import (any
/// version of WASI 0.2; `hermes:plugin` 0.1.x).
pub const ALLOWED: &[&str] = &[
    "wasi:cli/environment@0.2",
    "wasi:cli/exit@0.2",
    "wasi:cli/stdin@0.2",
    "wasi:cli/stdout@0.2",
    "wasi:cli/stderr@0.2",
    "wasi:cli/terminal-input@0.2",
    "wasi:cli/terminal-output@0.2",
    "wasi:cli/terminal-stdin@0.2",
    "wasi:cli/terminal-stdout@0.2",
    "wasi:cli/terminal-stderr@0.2",
    "wasi:io/error@0.2",
    "wasi:io/poll@0.2",
    "wasi:io/streams@0.2",
    "wasi:clocks/wall-clock@0.2",
    "wasi:clocks/monotonic-clock@0.2",
    "wasi:random/random@0.2",
    "wasi:random/insecure@0.2",
    "wasi:random/insecure-seed@0.2",
    "wasi:filesystem/types@0.2",
    "wasi:filesystem/preopens@0.2",
    "hermes:plugin/host@0.1",
    "hermes:plugin/types@0.1",
];

/// Whether one import name is allowed.
pub fn is_allowed(name: &str) -> bool {
    ALLOWED.iter().any(|prefix| name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

/// Every import of `component`, in the component's order.
pub fn list(engine: &Engine, component: &Component) -> Vec<String> {
    component.component_type().imports(engine).map(|(name, _)| name.to_owned()).collect()
}

/// Fails on the first import outside [`ALLOWED`].
pub fn check(engine: &Engine, component: &Component, source_name: &str) -> Result<(), PluginError> {
    match list(engine, component).into_iter().find(|name| !is_allowed(name)) {
        Some(import) => Err(PluginError::ForbiddenImport {
            source_name: source_name.to_owned(),
            import,
            allowed: "wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem (0.2.x), hermes:plugin/host (0.1.x)"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    #[test]
    fn allows_wasi_versions_and_refuses_sockets() {
        assert!(is_allowed("wasi:cli/environment@0.2.6"));
        assert!(is_allowed("hermes:plugin/host@0.1.0"));
        assert!(!is_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!is_allowed("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_allowed("wasi:cli/environment-extra@0.2.0"));
        assert!(!is_allowed("hermes:plugin/host@0.2.0"));
    }
}
