//! Property tests for the scenario parser, in the style of
//! `parse_properties.rs`: a valid scenario (every shipped one) mutated at
//! random (a value replaced at a random JSON node, a member added or
//! removed, bytes flipped, inserted or cut) is either accepted whole (it
//! validates, and round-trips to the same scenario) or refused with an error
//! naming the file and a JSON path. The parser never panics.
//!
//! 64 cases per property by default so `cargo test` stays quick; set
//! `PROPTEST_CASES` for a longer run.

use super::scenario::{self, Scenario};
use crate::json_mutation::{arb_mutation, mutate};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

/// Words of the scenario format, so damage reaches past the first enum check.
const WORDS: &[&str] = &["upstream-commit", "remote-down", "pressure", "upgraded", "core", "apply-after-checkout"];

#[test]
fn every_shipped_scenario_parses_and_round_trips() {
    for (name, text) in super::SHIPPED {
        let path = Path::new("config/scenarios/x.json");
        let parsed = scenario::parse(text.as_bytes(), path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&parsed.name, name, "a shipped scenario's name is its file name");
        let again = scenario::parse(&serde_json::to_vec(&parsed).unwrap(), path).unwrap();
        assert_eq!(again, parsed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

    #[test]
    fn a_damaged_scenario_is_accepted_whole_or_refused_with_its_path(
        which in 0..super::SHIPPED.len(),
        mutation in arb_mutation(WORDS),
    ) {
        let path = Path::new("/srv/scenarios/damaged.json");
        let doc: Value = serde_json::from_str(super::SHIPPED[which].1).unwrap();
        let bytes = mutate(&doc, &mutation);
        match scenario::parse(&bytes, path) {
            Ok(parsed) => {
                // Accepted whole: valid, and the same scenario after a round trip.
                prop_assert!(scenario::validate(&parsed).is_ok());
                let again: Scenario = scenario::parse(&serde_json::to_vec(&parsed).unwrap(), path).unwrap();
                prop_assert_eq!(again, parsed);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with(&format!("invalid scenario {}\n  at ", path.display())), "{}", text);
                let json_path = text.split("\n  at ").nth(1).unwrap_or_default();
                prop_assert!(json_path.contains(": "), "names a JSON path and the problem: {}", text);
            }
        }
    }
}
