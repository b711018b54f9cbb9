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
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    Add(usize, String, Value),
    Flip(usize, u8),
    Insert(usize, u8),
    Cut(usize),
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "[a-z0-9 ./_-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("upstream-commit"),
            Just("remote-down"),
            Just("pressure"),
            Just("upgraded"),
            Just("core"),
            Just("apply-after-checkout")
        ]
        .prop_map(|s| json!(s)),
        Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), arb_json()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", arb_json()).prop_map(|(n, k, v)| Mutation::Add(n, k, v)),
        2 => (any::<usize>(), 1u8..=255).prop_map(|(n, m)| Mutation::Flip(n, m)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Mutation::Insert(n, b)),
        1 => any::<usize>().prop_map(Mutation::Cut),
    ]
}

fn visit(value: &mut Value, target: usize, counter: &mut usize, apply: &mut dyn FnMut(&mut Value)) {
    if *counter == target {
        apply(value);
    }
    *counter += 1;
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| visit(v, target, counter, apply)),
        Value::Object(map) => map.values_mut().for_each(|v| visit(v, target, counter, apply)),
        _ => {}
    }
}

fn mutate(doc: &Value, mutation: &Mutation) -> Vec<u8> {
    let mut doc = doc.clone();
    let mut nodes = 0;
    visit(&mut doc.clone(), usize::MAX, &mut nodes, &mut |_| {});
    let at = |doc: &mut Value, n: usize, apply: &mut dyn FnMut(&mut Value)| {
        let mut counter = 0;
        visit(doc, n % nodes.max(1), &mut counter, apply);
    };
    match mutation {
        Mutation::Replace(n, v) => at(&mut doc, *n, &mut |node| *node = v.clone()),
        Mutation::Remove(n) => at(&mut doc, *n, &mut |node| {
            if let Value::Object(map) = node
                && let Some(key) = map.keys().next().cloned()
            {
                map.remove(&key);
            }
        }),
        Mutation::Add(n, k, v) => at(&mut doc, *n, &mut |node| {
            if let Value::Object(map) = node {
                map.insert(k.clone(), v.clone());
            }
        }),
        _ => {}
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("serialize");
    match mutation {
        Mutation::Flip(n, mask) => {
            let i = n % bytes.len();
            bytes[i] ^= mask;
        }
        Mutation::Insert(n, b) => bytes.insert(n % (bytes.len() + 1), *b),
        Mutation::Cut(n) => bytes.truncate(n % (bytes.len() + 1)),
        _ => {}
    }
    bytes
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

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
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn a_damaged_scenario_is_accepted_whole_or_refused_with_its_path(
        which in 0..super::SHIPPED.len(),
        mutation in arb_mutation(),
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
