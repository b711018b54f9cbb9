//! RuntimeTopologyGraph: the per-cycle snapshot of repos, remotes, leases,
//! lanes and jobs and the edges between them, persisted as the
//! `runtime_topology_graph.json` view and rendered as Graphviz DOT.
//!
//! This module owns the graph's shape, its deterministic construction
//! ([`RuntimeTopologyGraph::build`]), its DOT rendering
//! ([`RuntimeTopologyGraph::to_dot`]) and its view. It takes plain inputs
//! ([`RepoInput`], [`RemoteInput`], [`LeaseInput`]) so that the cycle can fill
//! them from the plan, the policy, federation and coordination without this
//! module depending on them.
//!
//! # Nodes and edges
//!
//! | node id | kind | from |
//! |---------|------|------|
//! | `repo:<name>` | `repo` | each repository; a dependency that is not among the repositories gets a node with `"missing": true` |
//! | `remote:<url>` or `remote:<repo>/<remote>` | `remote` | each remote of a repository: by URL when it is known (repositories sharing a URL share the node), else per repository |
//! | `lease:<key>` | `lease` | each lease (one per key: the highest fencing token wins) |
//! | `lane:<n>` | `lane` | each lane some repository is scheduled in |
//! | `job:<id>` | `job` | the job the cycle runs, always present |
//!
//! | edge | meaning |
//! |------|---------|
//! | `repo:a` -`depends-on`-> `repo:b` | `a` lists `b` in `depends_on` |
//! | `repo:a` -`uses-remote`-> `remote:…` | a remote of `a`; attrs `names`, `roles` (sorted) and `selected` (federation picked it) |
//! | `repo:a` -`holds-lease`-> `lease:a` | the lease on `a`'s key (no edge for a lease whose key is no repository) |
//! | `repo:a` -`scheduled-in`-> `lane:n` | `a` runs in lane `n` this cycle |
//! | `lane:n` -`scheduled-in`-> `job:<id>` | the lane belongs to the cycle's job |
//!
//! **Determinism.** Inputs are normalized first (every list sorted, exact
//! duplicates removed; a repository named twice keeps the first in sorted
//! order, a lease key listed twice keeps the highest fencing token), so any
//! permutation of the input gives an identical graph. Nodes are sorted by
//! kind (repo, remote, lease, lane, job), then lane number, then id; edges by
//! kind (depends-on, uses-remote, holds-lease, scheduled-in), then the
//! positions of their endpoints. Node ids and `(from, to, kind)` are unique,
//! and every edge ends at a node. Attributes are JSON objects with sorted keys.
//!
//! # On disk
//!
//! `state/runtime_topology_graph.json`, in the [`crate::state`] envelope;
//! `data` is a serialized [`RuntimeTopologyGraph`]:
//!
//! ```json
//! { "format": 1, "tick": "20250304T130500Z-1234",
//!   "nodes": [
//!     { "id": "repo:api", "kind": "repo", "label": "api", "attrs": { "lane": 0, "recommendation": "upgrade" } },
//!     { "id": "repo:lib", "kind": "repo", "label": "lib", "attrs": { "recommendation": "noop" } },
//!     { "id": "remote:https://git.example/api.git", "kind": "remote", "label": "https://git.example/api.git",
//!       "attrs": { "url": "https://git.example/api.git" } },
//!     { "id": "lease:api", "kind": "lease", "label": "api #7",
//!       "attrs": { "fencing_token": 7, "held_by_this_tick": true, "holder_tick": "20250304T130500Z-1234", "key": "api" } },
//!     { "id": "lane:0", "kind": "lane", "label": "lane 0", "attrs": { "index": 0 } },
//!     { "id": "job:upgrade-cycle", "kind": "job", "label": "upgrade-cycle", "attrs": {} } ],
//!   "edges": [
//!     { "from": "repo:api", "to": "repo:lib", "kind": "depends-on" },
//!     { "from": "repo:api", "to": "remote:https://git.example/api.git", "kind": "uses-remote",
//!       "attrs": { "names": ["origin"], "roles": ["primary"], "selected": true } },
//!     { "from": "repo:api", "to": "lease:api", "kind": "holds-lease" },
//!     { "from": "repo:api", "to": "lane:0", "kind": "scheduled-in" },
//!     { "from": "lane:0", "to": "job:upgrade-cycle", "kind": "scheduled-in" } ] }
//! ```
//!
//! [`RuntimeTopologyGraph::to_dot`] renders the same graph as a Graphviz
//! `digraph` (every id quoted and escaped; shapes: repo `box`, remote
//! `cylinder`, lease `diamond`, lane `hexagon`, job `doubleoctagon`), e.g.
//! for `hermes graph --dot | dot -Tsvg`.

use crate::state::{Envelope, LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The graph format this build writes.
pub const GRAPH_FORMAT: u32 = 1;

/// The topology snapshot of one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeTopologyGraph {
    /// Graph format version ([`GRAPH_FORMAT`]).
    pub format: u32,
    /// The tick the snapshot was taken in.
    pub tick: String,
    /// Sorted, unique by id.
    pub nodes: Vec<Node>,
    /// Sorted, unique by `(from, to, kind)`; both ends are nodes.
    pub edges: Vec<Edge>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `<kind>:<name>`, e.g. `repo:api`, `lane:0`.
    pub id: String,
    pub kind: NodeKind,
    /// Human-readable name.
    pub label: String,
    /// Kind-specific details (see the module docs).
    pub attrs: BTreeMap<String, Value>,
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Repo,
    Remote,
    Lease,
    Lane,
    Job,
}

/// One directed edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// Kind-specific details; only `uses-remote` edges have any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, Value>,
}

/// What an edge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    DependsOn,
    UsesRemote,
    HoldsLease,
    ScheduledIn,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Repo => "repo",
            NodeKind::Remote => "remote",
            NodeKind::Lease => "lease",
            NodeKind::Lane => "lane",
            NodeKind::Job => "job",
        }
    }

    /// Graphviz node shape.
    pub fn dot_shape(self) -> &'static str {
        match self {
            NodeKind::Repo => "box",
            NodeKind::Remote => "cylinder",
            NodeKind::Lease => "diamond",
            NodeKind::Lane => "hexagon",
            NodeKind::Job => "doubleoctagon",
        }
    }
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::DependsOn => "depends-on",
            EdgeKind::UsesRemote => "uses-remote",
            EdgeKind::HoldsLease => "holds-lease",
            EdgeKind::ScheduledIn => "scheduled-in",
        }
    }

    /// Graphviz edge style.
    pub fn dot_style(self) -> &'static str {
        match self {
            EdgeKind::DependsOn => "bold",
            EdgeKind::UsesRemote => "dashed",
            EdgeKind::HoldsLease => "dotted",
            EdgeKind::ScheduledIn => "solid",
        }
    }
}

/// A repository as the cycle sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepoInput {
    pub name: String,
    /// Names of the repositories it depends on.
    pub depends_on: Vec<String>,
    pub remotes: Vec<RemoteInput>,
    /// The plan's recommendation (`upgrade`, `hold`, `defer`, `block`, `noop`), if planned.
    pub recommendation: Option<String>,
    /// The lane it is scheduled in this cycle, if any.
    pub lane: Option<u32>,
}

/// One remote of a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteInput {
    /// Name in the repository's git config.
    pub name: String,
    /// Fetch URL, when known.
    pub url: Option<String>,
    /// Role: primary, origin, mirror, cache, fallback.
    pub role: String,
    /// Whether federation selected it for this cycle.
    pub selected: bool,
}

/// One active lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseInput {
    /// The lease key (a repository name for repository leases).
    pub key: String,
    /// Tick id of the holder.
    pub holder_tick: String,
    pub fencing_token: u64,
}

/// Sort key of a node: kind, lane number, id.
type NodeKey = (NodeKind, u64, String);

impl RuntimeTopologyGraph {
    /// Builds the snapshot of tick `tick` running job `job` (see the module
    /// docs for the nodes, edges and ordering).
    pub fn build(tick: &str, job: &str, repos: &[RepoInput], leases: &[LeaseInput]) -> Self {
        let mut repos: Vec<RepoInput> = repos
            .iter()
            .cloned()
            .map(|mut r| {
                r.depends_on.sort();
                r.depends_on.dedup();
                r.remotes.sort();
                r.remotes.dedup();
                r
            })
            .collect();
        repos.sort();
        repos.dedup_by(|later, first| later.name == first.name);
        let mut leases = leases.to_vec();
        leases.sort_by(|a, b| {
            (&a.key, Reverse(a.fencing_token), &a.holder_tick).cmp(&(&b.key, Reverse(b.fencing_token), &b.holder_tick))
        });
        leases.dedup_by(|later, first| later.key == first.key);

        let mut nodes: BTreeMap<NodeKey, Node> = BTreeMap::new();
        let mut add_node = |kind: NodeKind, number: u64, id: String, label: String, attrs: BTreeMap<String, Value>| {
            nodes.entry((kind, number, id.clone())).or_insert(Node { id, kind, label, attrs });
        };
        let mut edges: BTreeMap<(EdgeKind, String, String), BTreeMap<String, Value>> = BTreeMap::new();
        let repo_names: BTreeSet<&str> = repos.iter().map(|r| r.name.as_str()).collect();
        let job_id = format!("job:{job}");

        for repo in &repos {
            let id = repo_id(&repo.name);
            let mut attrs = BTreeMap::new();
            if let Some(recommendation) = &repo.recommendation {
                attrs.insert("recommendation".to_owned(), json!(recommendation));
            }
            if let Some(lane) = repo.lane {
                attrs.insert("lane".to_owned(), json!(lane));
            }
            add_node(NodeKind::Repo, 0, id.clone(), repo.name.clone(), attrs);
        }
        for repo in &repos {
            let id = repo_id(&repo.name);
            for dep in &repo.depends_on {
                if !repo_names.contains(dep.as_str()) {
                    add_node(
                        NodeKind::Repo,
                        0,
                        repo_id(dep),
                        dep.clone(),
                        BTreeMap::from([("missing".to_owned(), json!(true))]),
                    );
                }
                edges.entry((EdgeKind::DependsOn, id.clone(), repo_id(dep))).or_default();
            }
            for remote in &repo.remotes {
                let (remote_id, label, attrs) = match &remote.url {
                    Some(url) => {
                        (format!("remote:{url}"), url.clone(), BTreeMap::from([("url".to_owned(), json!(url))]))
                    }
                    None => {
                        let label = format!("{}/{}", repo.name, remote.name);
                        let attrs = BTreeMap::from([
                            ("repo".to_owned(), json!(repo.name)),
                            ("remote".to_owned(), json!(remote.name)),
                        ]);
                        (format!("remote:{label}"), label, attrs)
                    }
                };
                add_node(NodeKind::Remote, 0, remote_id.clone(), label, attrs);
                let edge = edges.entry((EdgeKind::UsesRemote, id.clone(), remote_id)).or_default();
                merge_uses_remote(edge, remote);
            }
            if let Some(lane) = repo.lane {
                let lane_id = format!("lane:{lane}");
                add_node(
                    NodeKind::Lane,
                    u64::from(lane),
                    lane_id.clone(),
                    format!("lane {lane}"),
                    BTreeMap::from([("index".to_owned(), json!(lane))]),
                );
                edges.entry((EdgeKind::ScheduledIn, id.clone(), lane_id.clone())).or_default();
                edges.entry((EdgeKind::ScheduledIn, lane_id, job_id.clone())).or_default();
            }
        }
        for lease in &leases {
            let lease_id = format!("lease:{}", lease.key);
            let attrs = BTreeMap::from([
                ("key".to_owned(), json!(lease.key)),
                ("holder_tick".to_owned(), json!(lease.holder_tick)),
                ("fencing_token".to_owned(), json!(lease.fencing_token)),
                ("held_by_this_tick".to_owned(), json!(lease.holder_tick == tick)),
            ]);
            add_node(NodeKind::Lease, 0, lease_id.clone(), format!("{} #{}", lease.key, lease.fencing_token), attrs);
            if repo_names.contains(lease.key.as_str()) {
                edges.entry((EdgeKind::HoldsLease, repo_id(&lease.key), lease_id)).or_default();
            }
        }
        add_node(NodeKind::Job, 0, job_id, job.to_owned(), BTreeMap::new());

        let nodes: Vec<Node> = nodes.into_values().collect();
        let position: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let mut edges: Vec<(usize, usize, Edge)> = edges
            .into_iter()
            .map(|((kind, from, to), attrs)| {
                (position[from.as_str()], position[to.as_str()], Edge { from, to, kind, attrs })
            })
            .collect();
        edges.sort_by_key(|(from, to, edge)| (edge.kind, *from, *to));
        Self {
            format: GRAPH_FORMAT,
            tick: tick.to_owned(),
            nodes,
            edges: edges.into_iter().map(|(_, _, e)| e).collect(),
        }
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Renders the graph as a Graphviz `digraph`.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        out.push_str("digraph \"hermes-topology\" {\n");
        let _ = writeln!(
            out,
            "  graph [label={}, labelloc=\"t\", rankdir=\"LR\"];",
            quote(&format!("topology of tick {}", self.tick))
        );
        out.push_str("  node [fontname=\"Helvetica\"];\n");
        out.push_str("  edge [fontname=\"Helvetica\", fontsize=\"10\"];\n");
        for node in &self.nodes {
            let mut label = node.label.clone();
            if let Some(Value::String(recommendation)) = node.attrs.get("recommendation") {
                label = format!("{label}\n{recommendation}");
            }
            if node.attrs.get("missing") == Some(&Value::Bool(true)) {
                label = format!("{label}\n(not registered)");
            }
            let _ =
                writeln!(out, "  {} [label={}, shape=\"{}\"];", quote(&node.id), quote(&label), node.kind.dot_shape());
        }
        for edge in &self.edges {
            let mut label = edge.kind.as_str().to_owned();
            let selected = edge.attrs.get("selected") == Some(&Value::Bool(true));
            if selected {
                label.push_str(" (selected)");
            }
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, style=\"{}\"{}];",
                quote(&edge.from),
                quote(&edge.to),
                quote(&label),
                edge.kind.dot_style(),
                if selected { ", penwidth=\"2\"" } else { "" }
            );
        }
        out.push_str("}\n");
        out
    }

    /// Reads the `runtime_topology_graph.json` view; `Ok(None)` if it does not exist.
    pub fn read(store: &StateStore) -> Result<Option<Envelope<Self>>, StateError> {
        store.read::<Self>(ViewName::RuntimeTopologyGraph)
    }

    /// Atomically writes the `runtime_topology_graph.json` view; `head` is
    /// the last ledger event of the cycle the snapshot belongs to.
    pub fn write(&self, store: &StateStore, written_at: &str, head: &LedgerHead) -> Result<(), StateError> {
        store.write(ViewName::RuntimeTopologyGraph, written_at, head, self)
    }
}

fn repo_id(name: &str) -> String {
    format!("repo:{name}")
}

/// Adds one remote entry to a `uses-remote` edge: names and roles are
/// sorted sets, `selected` is true if any entry was selected.
fn merge_uses_remote(attrs: &mut BTreeMap<String, Value>, remote: &RemoteInput) {
    for (key, value) in [("names", &remote.name), ("roles", &remote.role)] {
        let mut set: BTreeSet<String> = attrs
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        set.insert(value.clone());
        attrs.insert(key.to_owned(), json!(set));
    }
    let selected = attrs.get("selected").and_then(Value::as_bool).unwrap_or(false) || remote.selected;
    attrs.insert("selected".to_owned(), json!(selected));
}

/// A DOT double-quoted string: `"` and `\` escaped, line breaks as `\n`,
/// other control characters as spaces. Also used by `projection::dot`.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn remote(name: &str, url: Option<&str>, role: &str, selected: bool) -> RemoteInput {
        RemoteInput { name: name.into(), url: url.map(Into::into), role: role.into(), selected }
    }

    fn repo(name: &str, deps: &[&str], remotes: Vec<RemoteInput>, rec: Option<&str>, lane: Option<u32>) -> RepoInput {
        RepoInput {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            remotes,
            recommendation: rec.map(Into::into),
            lane,
        }
    }

    fn lease(key: &str, tick: &str, token: u64) -> LeaseInput {
        LeaseInput { key: key.into(), holder_tick: tick.into(), fencing_token: token }
    }

    fn sample() -> (Vec<RepoInput>, Vec<LeaseInput>) {
        let repos = vec![
            repo(
                "api",
                &["lib", "core"],
                vec![
                    remote("origin", Some("https://git.example/api.git"), "primary", true),
                    remote("mirror", None, "mirror", false),
                ],
                Some("upgrade"),
                Some(0),
            ),
            repo(
                "lib",
                &[],
                vec![remote("origin", Some("https://git.example/lib.git"), "primary", true)],
                Some("noop"),
                None,
            ),
            repo(
                "web",
                &["api"],
                vec![
                    remote("origin", Some("https://git.example/api.git"), "origin", false),
                    remote("cache", Some("https://git.example/api.git"), "cache", true),
                ],
                Some("upgrade"),
                Some(1),
            ),
        ];
        let leases = vec![lease("api", "tick-1", 7), lease("web", "tick-0", 3), lease("budget:x", "tick-1", 1)];
        (repos, leases)
    }

    fn edge_triples(graph: &RuntimeTopologyGraph) -> Vec<(String, String, &'static str)> {
        graph.edges.iter().map(|e| (e.from.clone(), e.to.clone(), e.kind.as_str())).collect()
    }

    #[test]
    fn a_small_input_gives_the_expected_nodes_and_edges() {
        let (repos, leases) = sample();
        let graph = RuntimeTopologyGraph::build("tick-1", "upgrade-cycle", &repos, &leases);
        assert_eq!(graph.format, 1);
        assert_eq!(graph.tick, "tick-1");
        let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "repo:api",
                "repo:core",
                "repo:lib",
                "repo:web",
                "remote:api/mirror",
                "remote:https://git.example/api.git",
                "remote:https://git.example/lib.git",
                "lease:api",
                "lease:budget:x",
                "lease:web",
                "lane:0",
                "lane:1",
                "job:upgrade-cycle",
            ]
        );
        let s = |a: &str, b: &str, k: &'static str| (a.to_owned(), b.to_owned(), k);
        assert_eq!(
            edge_triples(&graph),
            [
                s("repo:api", "repo:core", "depends-on"),
                s("repo:api", "repo:lib", "depends-on"),
                s("repo:web", "repo:api", "depends-on"),
                s("repo:api", "remote:api/mirror", "uses-remote"),
                s("repo:api", "remote:https://git.example/api.git", "uses-remote"),
                s("repo:lib", "remote:https://git.example/lib.git", "uses-remote"),
                s("repo:web", "remote:https://git.example/api.git", "uses-remote"),
                s("repo:api", "lease:api", "holds-lease"),
                s("repo:web", "lease:web", "holds-lease"),
                s("repo:api", "lane:0", "scheduled-in"),
                s("repo:web", "lane:1", "scheduled-in"),
                s("lane:0", "job:upgrade-cycle", "scheduled-in"),
                s("lane:1", "job:upgrade-cycle", "scheduled-in"),
            ]
        );
        // Attributes.
        assert_eq!(graph.node("repo:core").unwrap().attrs["missing"], json!(true));
        assert_eq!(graph.node("repo:api").unwrap().attrs["recommendation"], json!("upgrade"));
        assert_eq!(graph.node("repo:api").unwrap().attrs["lane"], json!(0));
        assert!(!graph.node("repo:lib").unwrap().attrs.contains_key("lane"));
        let lease_api = graph.node("lease:api").unwrap();
        assert_eq!(lease_api.attrs["fencing_token"], json!(7));
        assert_eq!(lease_api.attrs["held_by_this_tick"], json!(true));
        assert_eq!(graph.node("lease:web").unwrap().attrs["held_by_this_tick"], json!(false));
        let web_remote = graph.edges.iter().find(|e| e.from == "repo:web" && e.kind == EdgeKind::UsesRemote).unwrap();
        assert_eq!(web_remote.attrs["names"], json!(["cache", "origin"]));
        assert_eq!(web_remote.attrs["roles"], json!(["cache", "origin"]));
        assert_eq!(web_remote.attrs["selected"], json!(true));
        // Structural: unique ids and edges, every edge ends at nodes.
        let id_set: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(id_set.len(), ids.len());
        let edge_set: BTreeSet<_> = edge_triples(&graph).into_iter().collect();
        assert_eq!(edge_set.len(), graph.edges.len());
        assert!(graph.edges.iter().all(|e| id_set.contains(e.from.as_str()) && id_set.contains(e.to.as_str())));
    }

    #[test]
    fn the_json_uses_kebab_case_kinds_and_round_trips() {
        let (repos, leases) = sample();
        let graph = RuntimeTopologyGraph::build("tick-1", "upgrade-cycle", &repos, &leases);
        let value = serde_json::to_value(&graph).unwrap();
        assert_eq!(value["nodes"][0]["kind"], json!("repo"));
        let kinds: BTreeSet<&str> =
            value["edges"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, BTreeSet::from(["depends-on", "uses-remote", "holds-lease", "scheduled-in"]));
        // Only uses-remote edges carry attrs.
        for e in value["edges"].as_array().unwrap() {
            assert_eq!(e.get("attrs").is_some(), e["kind"] == "uses-remote", "{e}");
        }
        let back: RuntimeTopologyGraph = serde_json::from_value(value).unwrap();
        assert_eq!(back, graph);
    }

    #[test]
    fn an_empty_input_is_just_the_job() {
        let graph = RuntimeTopologyGraph::build("t", "upgrade-cycle", &[], &[]);
        assert_eq!(graph.nodes.len(), 1);
        assert_eq!(graph.nodes[0].id, "job:upgrade-cycle");
        assert!(graph.edges.is_empty());
    }

    #[test]
    fn duplicates_collapse_deterministically() {
        let a = repo("a", &["b", "b"], vec![remote("o", Some("u"), "primary", false); 2], Some("upgrade"), Some(0));
        let a2 = repo("a", &[], vec![], Some("defer"), None);
        let b = repo("b", &[], vec![], None, None);
        let leases = [lease("a", "t1", 3), lease("a", "t2", 9)];
        for repos in [vec![a.clone(), a2.clone(), b.clone()], vec![b.clone(), a2.clone(), a.clone()]] {
            let graph = RuntimeTopologyGraph::build("t2", "j", &repos, &leases);
            // "a" with recommendation "defer" sorts first (no deps < ["b"]).
            assert_eq!(graph.node("repo:a").unwrap().attrs["recommendation"], json!("defer"));
            assert_eq!(graph.node("lease:a").unwrap().attrs["fencing_token"], json!(9));
            assert_eq!(graph.nodes.iter().filter(|n| n.kind == NodeKind::Lease).count(), 1);
        }
        let graph = RuntimeTopologyGraph::build("t", "j", &[a, b], &[]);
        assert_eq!(graph.edges.iter().filter(|e| e.kind == EdgeKind::DependsOn).count(), 1);
        assert_eq!(graph.edges.iter().filter(|e| e.kind == EdgeKind::UsesRemote).count(), 1);
    }

    #[test]
    fn explicit_permutations_give_the_identical_graph() {
        let (repos, leases) = sample();
        let expected = RuntimeTopologyGraph::build("tick-1", "upgrade-cycle", &repos, &leases);
        let orders: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for order in orders {
            for lease_order in orders {
                let mut rs: Vec<RepoInput> = order.iter().map(|&i| repos[i].clone()).collect();
                for r in &mut rs {
                    r.depends_on.reverse();
                    r.remotes.reverse();
                }
                let ls: Vec<LeaseInput> = lease_order.iter().map(|&i| leases[i].clone()).collect();
                let graph = RuntimeTopologyGraph::build("tick-1", "upgrade-cycle", &rs, &ls);
                assert_eq!(graph, expected);
                assert_eq!(graph.to_dot(), expected.to_dot());
            }
        }
    }

    /// Checks DOT text outside quoted strings: braces and brackets balance,
    /// every string is closed.
    fn dot_structure_ok(dot: &str) -> Result<(), String> {
        let (mut braces, mut brackets, mut in_string, mut escaped) = (0i64, 0i64, false, false);
        for c in dot.chars() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    (false, '\n') => return Err("line break in a string".into()),
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '{' => braces += 1,
                '}' => braces -= 1,
                '[' => brackets += 1,
                ']' => brackets -= 1,
                _ => {}
            }
            if braces < 0 || brackets < 0 {
                return Err("closed before opened".into());
            }
        }
        if in_string || braces != 0 || brackets != 0 {
            return Err(format!("unbalanced: string open {in_string}, braces {braces}, brackets {brackets}"));
        }
        Ok(())
    }

    #[test]
    fn dot_output_is_valid() {
        let (mut repos, leases) = sample();
        // Ids that need escaping.
        repos.push(repo(
            "we\"ird",
            &["back\\slash"],
            vec![remote("o", Some("file:///tmp/a \"b\"\\c\nd{e}"), "fallback", false)],
            Some("block"),
            Some(10),
        ));
        let graph = RuntimeTopologyGraph::build("tick-\"1\"", "upgrade-cycle", &repos, &leases);
        let dot = graph.to_dot();
        assert!(dot.starts_with("digraph \"hermes-topology\" {\n"));
        assert!(dot.ends_with("}\n"));
        dot_structure_ok(&dot).unwrap_or_else(|e| panic!("{e}\n{dot}"));
        for node in &graph.nodes {
            let line = format!("  {} [label=", quote(&node.id));
            assert!(dot.contains(&line), "missing node line {line}");
            assert!(dot.contains(&format!("shape=\"{}\"", node.kind.dot_shape())));
        }
        for edge in &graph.edges {
            let line = format!("  {} -> {} [label=\"{}", quote(&edge.from), quote(&edge.to), edge.kind.as_str());
            assert!(dot.contains(&line), "missing edge line {line}");
        }
        assert_eq!(dot.matches(" -> ").count(), graph.edges.len());
        assert!(dot.contains(r#""repo:we\"ird""#));
        assert!(dot.contains(r#""repo:back\\slash""#));

        match std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(mut child) => {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
                let output = child.wait_with_output().unwrap();
                assert!(
                    output.status.success(),
                    "dot -Tsvg failed: {}\n{dot}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(String::from_utf8_lossy(&output.stdout).contains("<svg"));
            }
            Err(e) => println!("note: graphviz `dot` is not available ({e}); skipped rendering the DOT output"),
        }
    }

    #[test]
    fn the_view_round_trips_through_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(RuntimeTopologyGraph::read(&store).unwrap().is_none());
        let (repos, leases) = sample();
        let graph = RuntimeTopologyGraph::build("tick-1", "upgrade-cycle", &repos, &leases);
        let head = LedgerHead { seq: 12, hash: "ef".repeat(32) };
        graph.write(&store, "2025-03-04T13:05:00.000Z", &head).unwrap();
        assert!(dir.path().join("runtime_topology_graph.json").is_file());
        let envelope = RuntimeTopologyGraph::read(&store).unwrap().unwrap();
        assert_eq!(envelope.view, "runtime_topology_graph");
        assert_eq!(envelope.ledger_head, head);
        assert_eq!(envelope.data, graph);
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(str::to_owned)
    }

    fn arb_remote() -> impl Strategy<Value = RemoteInput> {
        (
            prop::sample::select(vec!["origin", "mirror", "cache"]),
            prop::option::of(prop::sample::select(vec!["u1", "u2", "u3"])),
            prop::sample::select(vec!["primary", "mirror", "fallback"]),
            any::<bool>(),
        )
            .prop_map(|(n, u, r, s)| remote(n, u, r, s))
    }

    fn arb_repo() -> impl Strategy<Value = RepoInput> {
        (
            arb_name(),
            prop::collection::vec(arb_name(), 0..3),
            prop::collection::vec(arb_remote(), 0..3),
            prop::option::of(prop::sample::select(vec!["upgrade", "defer", "noop"])),
            prop::option::of(0u32..3),
        )
            .prop_map(|(name, depends_on, remotes, rec, lane)| RepoInput {
                name,
                depends_on,
                remotes,
                recommendation: rec.map(str::to_owned),
                lane,
            })
    }

    fn arb_lease() -> impl Strategy<Value = LeaseInput> {
        (arb_name(), prop::sample::select(vec!["t1", "t2"]), 0u64..5).prop_map(|(k, t, f)| lease(&k, t, f))
    }

    type Input = (Vec<RepoInput>, Vec<LeaseInput>);

    /// An input and a permutation of it (outer and inner lists shuffled).
    fn arb_input_and_permutation() -> impl Strategy<Value = (Input, Input)> {
        (prop::collection::vec(arb_repo(), 0..6), prop::collection::vec(arb_lease(), 0..4)).prop_flat_map(
            |(repos, leases)| {
                let shuffled_repos = Just(repos.clone()).prop_shuffle().prop_flat_map(|rs| {
                    rs.into_iter()
                        .map(|r| {
                            let deps = Just(r.depends_on.clone()).prop_shuffle();
                            let remotes = Just(r.remotes.clone()).prop_shuffle();
                            (deps, remotes).prop_map(move |(depends_on, remotes)| RepoInput {
                                depends_on,
                                remotes,
                                ..r.clone()
                            })
                        })
                        .collect::<Vec<_>>()
                });
                let shuffled_leases = Just(leases.clone()).prop_shuffle();
                (Just((repos, leases)), (shuffled_repos, shuffled_leases))
            },
        )
    }

    proptest! {
        #[test]
        fn any_permutation_gives_the_identical_graph(((repos, leases), (repos2, leases2)) in arb_input_and_permutation()) {
            let graph = RuntimeTopologyGraph::build("t1", "upgrade-cycle", &repos, &leases);
            let permuted = RuntimeTopologyGraph::build("t1", "upgrade-cycle", &repos2, &leases2);
            prop_assert_eq!(&graph, &permuted);
            // Structural invariants.
            let ids: BTreeSet<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
            prop_assert_eq!(ids.len(), graph.nodes.len());
            let triples: BTreeSet<_> = edge_triples(&graph).into_iter().collect();
            prop_assert_eq!(triples.len(), graph.edges.len());
            for e in &graph.edges {
                prop_assert!(ids.contains(e.from.as_str()) && ids.contains(e.to.as_str()));
            }
            prop_assert!(graph.nodes.windows(2).all(|w| w[0].kind <= w[1].kind));
            prop_assert!(graph.edges.windows(2).all(|w| w[0].kind <= w[1].kind));
            prop_assert!(dot_structure_ok(&graph.to_dot()).is_ok());
        }
    }
}
