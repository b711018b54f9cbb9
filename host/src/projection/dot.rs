//! Graphviz DOT rendering of a [`GraphSnapshot`] (`hermes graph --format
//! dot`): repositories as boxes labelled with their last outcome and HEAD,
//! remotes as ellipses, leases as diamonds, ticks as ovals; one edge per
//! [`super::Edge`], labelled with its kind. Output order follows the
//! snapshot's ordered maps, so equal snapshots render identically.

use super::GraphSnapshot;
use crate::topology::quote;
use std::fmt::Write;

/// The snapshot as a DOT digraph.
pub fn to_dot(snapshot: &GraphSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph hermes {{");
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  label={};", quote(&format!("hermes graph at event {}", snapshot.seq)));
    for (name, repo) in &snapshot.repos {
        let outcome = repo.last_outcome.as_ref().map_or("-", |o| o.outcome.as_str());
        let head = repo.head.as_deref().map_or("-", |h| &h[..h.len().min(7)]);
        let label = format!("{name}\n{outcome}\n{head}");
        let _ = writeln!(out, "  {} [shape=box, label={}];", quote(&format!("repo:{name}")), quote(&label));
    }
    for (key, remote) in &snapshot.remotes {
        let label = format!("{}\nfetches {} / failures {}", remote.name, remote.fetches, remote.failures);
        let _ = writeln!(out, "  {} [shape=ellipse, label={}];", quote(&format!("remote:{key}")), quote(&label));
    }
    for (key, lease) in &snapshot.leases {
        let label = format!("lease {key}\ntoken {}", lease.fencing_token);
        let _ = writeln!(out, "  {} [shape=diamond, label={}];", quote(&format!("lease:{key}")), quote(&label));
    }
    for edge in &snapshot.edges {
        if let Some(tick) = edge.from.strip_prefix("tick:") {
            let _ = writeln!(out, "  {} [shape=oval, label={}];", quote(&edge.from), quote(tick));
        }
    }
    for edge in &snapshot.edges {
        let _ = writeln!(out, "  {} -> {} [label={}];", quote(&edge.from), quote(&edge.to), quote(&edge.kind));
    }
    let _ = writeln!(out, "}}");
    out
}
