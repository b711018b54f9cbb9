//! Random damage to valid JSON documents, for the property tests of every
//! parser of outside input (`parse_properties.rs`,
//! `simulate/scenario_properties.rs`): a value replaced at a random node
//! (pre-order), an object member added or removed, or the serialized bytes
//! flipped, inserted or cut.

use proptest::prelude::*;
use serde_json::{Value, json};

/// How a valid document is damaged.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the value at the `n`-th JSON node (pre-order) with `value`.
    Replace(usize, Value),
    /// Remove the first member of the `n`-th node, if it is an object.
    Remove(usize),
    /// Add a member `key` to the `n`-th node, if it is an object.
    Add(usize, String, Value),
    /// Flip byte `n % len` of the serialized text with `mask` (non-zero).
    Flip(usize, u8),
    /// Insert `byte` at `n % (len + 1)`.
    Insert(usize, u8),
    /// Cut the text at `n % (len + 1)`.
    Cut(usize),
}

/// Arbitrary JSON up to three levels deep; strings include `words` (the
/// parser's own vocabulary, so damage reaches past the first enum check).
fn arb_json(words: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let vocabulary: Vec<&'static str> = std::iter::once("").chain(words.iter().copied()).collect();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "[a-z0-9 ./*@_-]{0,12}".prop_map(Value::String),
        proptest::sample::select(vocabulary).prop_map(|s| json!(s)),
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

/// One random mutation; see [`arb_json`] for `words`.
pub fn arb_mutation(words: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), arb_json(words)).prop_map(|(n, v)| Mutation::Replace(n, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", arb_json(words)).prop_map(|(n, k, v)| Mutation::Add(n, k, v)),
        2 => (any::<usize>(), 1u8..=255).prop_map(|(n, m)| Mutation::Flip(n, m)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Mutation::Insert(n, b)),
        1 => any::<usize>().prop_map(Mutation::Cut),
    ]
}

/// Calls `apply` on the `target`-th node (pre-order), counting nodes in
/// `counter`.
fn visit_nodes(value: &mut Value, target: usize, counter: &mut usize, apply: &mut dyn FnMut(&mut Value)) {
    if *counter == target {
        apply(value);
    }
    *counter += 1;
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| visit_nodes(v, target, counter, apply)),
        Value::Object(map) => map.values_mut().for_each(|v| visit_nodes(v, target, counter, apply)),
        _ => {}
    }
}

/// The damaged document's bytes (pretty-printed, then byte damage).
pub fn mutate(doc: &Value, mutation: &Mutation) -> Vec<u8> {
    let mut doc = doc.clone();
    let mut nodes = 0;
    visit_nodes(&mut doc.clone(), usize::MAX, &mut nodes, &mut |_| {});
    let structural = |doc: &mut Value, n: usize, apply: &mut dyn FnMut(&mut Value)| {
        let mut counter = 0;
        visit_nodes(doc, n % nodes.max(1), &mut counter, apply);
    };
    match mutation {
        Mutation::Replace(n, v) => structural(&mut doc, *n, &mut |node| *node = v.clone()),
        Mutation::Remove(n) => structural(&mut doc, *n, &mut |node| {
            if let Value::Object(map) = node
                && let Some(key) = map.keys().next().cloned()
            {
                map.remove(&key);
            }
        }),
        Mutation::Add(n, k, v) => structural(&mut doc, *n, &mut |node| {
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
