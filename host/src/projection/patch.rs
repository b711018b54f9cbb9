//! `GraphPatch`: the difference between two [`GraphSnapshot`]s, and applying
//! it. `diff(a, b).apply(a) == b` for any two snapshots; applying a patch to
//! a snapshot other than the one it was made from is refused.
//!
//! Serialized form (JSON, deterministic: ordered maps only):
//! `{"from": {"seq", "hash"}, "to": {"seq", "hash"}, "set": {field: value},
//!   "upsert": {section: {key: node}}, "remove": {section: [key]},
//!   "edges_added": [edge], "edges_removed": [edge]}`
//! where `set` holds the whole-value fields that changed (`last_tick`,
//! `integrity`, `skipped_ticks`, `counters`) and sections are `repos`, `remotes`,
//! `leases`, `jobs`.

use super::{Edge, GraphSnapshot};
use crate::state::LedgerHead;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What changed between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphPatch {
    pub from: LedgerHead,
    pub to: LedgerHead,
    pub set: BTreeMap<String, Value>,
    pub upsert: BTreeMap<String, BTreeMap<String, Value>>,
    pub remove: BTreeMap<String, Vec<String>>,
    pub edges_added: Vec<Edge>,
    pub edges_removed: Vec<Edge>,
}

/// A patch that does not fit the snapshot it is applied to.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the patch starts at event {expected}, the snapshot is at event {found}")]
    WrongBase { expected: u64, found: u64 },
    #[error("the patched snapshot is not valid: {0}")]
    Invalid(String),
}

const SECTIONS: [&str; 4] = ["repos", "remotes", "leases", "jobs"];
const WHOLE: [&str; 4] = ["last_tick", "integrity", "skipped_ticks", "counters"];

fn head(snapshot: &GraphSnapshot) -> LedgerHead {
    LedgerHead { seq: snapshot.seq, hash: snapshot.hash.clone() }
}

fn to_object(snapshot: &GraphSnapshot) -> serde_json::Map<String, Value> {
    match serde_json::to_value(snapshot) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

impl GraphPatch {
    /// The patch that turns `old` into `new`.
    pub fn diff(old: &GraphSnapshot, new: &GraphSnapshot) -> Self {
        let (a, b) = (to_object(old), to_object(new));
        let mut patch = GraphPatch { from: head(old), to: head(new), ..GraphPatch::default() };
        for field in WHOLE {
            if a.get(field) != b.get(field) {
                patch.set.insert(field.to_owned(), b.get(field).cloned().unwrap_or(Value::Null));
            }
        }
        for section in SECTIONS {
            let empty = serde_json::Map::new();
            let before = a.get(section).and_then(Value::as_object).unwrap_or(&empty);
            let after = b.get(section).and_then(Value::as_object).unwrap_or(&empty);
            let upserts: BTreeMap<String, Value> = after
                .iter()
                .filter(|(key, node)| before.get(key.as_str()) != Some(node))
                .map(|(key, node)| (key.clone(), node.clone()))
                .collect();
            let removals: Vec<String> =
                before.keys().filter(|key| !after.contains_key(key.as_str())).cloned().collect();
            if !upserts.is_empty() {
                patch.upsert.insert(section.to_owned(), upserts);
            }
            if !removals.is_empty() {
                patch.remove.insert(section.to_owned(), removals);
            }
        }
        patch.edges_added = new.edges.difference(&old.edges).cloned().collect();
        patch.edges_removed = old.edges.difference(&new.edges).cloned().collect();
        patch
    }

    /// Whether nothing but the position changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.upsert.is_empty()
            && self.remove.is_empty()
            && self.edges_added.is_empty()
            && self.edges_removed.is_empty()
    }

    /// Applies the patch to `base`, which must be the snapshot it was made from.
    pub fn apply(&self, base: &GraphSnapshot) -> Result<GraphSnapshot, PatchError> {
        if head(base) != self.from {
            return Err(PatchError::WrongBase { expected: self.from.seq, found: base.seq });
        }
        let mut object = to_object(base);
        object.insert("seq".into(), Value::from(self.to.seq));
        object.insert("hash".into(), Value::from(self.to.hash.clone()));
        for (field, value) in &self.set {
            object.insert(field.clone(), value.clone());
        }
        for section in SECTIONS {
            let Some(Value::Object(map)) = object.get_mut(section) else { continue };
            for key in self.remove.get(section).into_iter().flatten() {
                map.remove(key);
            }
            for (key, node) in self.upsert.get(section).into_iter().flatten() {
                map.insert(key.clone(), node.clone());
            }
        }
        let mut snapshot: GraphSnapshot =
            serde_json::from_value(Value::Object(object)).map_err(|e| PatchError::Invalid(e.to_string()))?;
        for edge in &self.edges_removed {
            snapshot.edges.remove(edge);
        }
        snapshot.edges.extend(self.edges_added.iter().cloned());
        Ok(snapshot)
    }
}
