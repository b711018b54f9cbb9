//! `baseline-selector`: Hermes' default federation selector. Skips remotes
//! whose circuit is open and ranks the rest by role, circuit, success rate,
//! latency and name; see [`logic`].

pub mod logic;

struct BaselineSelector;

impl hermes_plugin_sdk::FederationSelector for BaselineSelector {
    const NAME: &'static str = "baseline-selector";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Baseline selector: skip open circuits; rank by role, closed before half-open, success rate, latency, name";

    fn select(input: hermes_plugin_sdk::SelectInput) -> Result<hermes_plugin_sdk::SelectOutput, String> {
        logic::select(&input)
    }
}

hermes_plugin_sdk::export_federation_selector!(BaselineSelector);

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/baseline-selector.json");
        let n = hermes_plugin_sdk::fixtures::run(&path, |input| super::logic::select(&input))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 5, "only {n} fixture cases");
    }
}
