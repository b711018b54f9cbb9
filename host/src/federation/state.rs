//! The endpoint selected per repository, and the federation topology.
//!
//! [`FederationState`] is persisted as `state/remote_federation_state.json`
//! ([`ViewName::RemoteFederationState`]). It records, per repository, the
//! remote the federation selector chose, its role, the tick since which it
//! has been selected and whether it is a promotion (not the repository's
//! primary). Promotion is **logical**: it lives only in this file and in the
//! ledger. Hermes never rewrites a repository's git remote configuration and
//! never creates or provisions remotes; it fetches from the selected remote
//! by name. The view's `data`:
//!
//! ```json
//! { "selected": {
//!     "api":  { "remote": "origin", "role": "primary", "since_tick": "20300101T000000000Z-1", "promoted": false },
//!     "core": { "remote": "mirror", "role": "mirror",  "since_tick": "20300101T040000000Z-97", "promoted": true } } }
//! ```
//!
//! [`FederationTopology`] is persisted as `state/federation_topology_state.json`
//! ([`ViewName::FederationTopologyState`]): repository and remote nodes and
//! one `uses-remote` edge per remote a repository lists (a repository with
//! none listed uses `origin` as primary), labelled with the remote's name in
//! that repository, its role and whether it is the selected one. Remote nodes
//! are keyed by URL, so a mirror shared by several repositories is one node
//! (as in the health book). Nodes are sorted by kind (repositories first)
//! then id, edges by (from, to, remote): the same inputs in any order give
//! the same file. The view's `data`:
//!
//! ```json
//! { "nodes": [
//!     { "id": "repo:core", "kind": "repo", "name": "core" },
//!     { "id": "remote:https://git.example.com/core.git", "kind": "remote",
//!       "name": "https://git.example.com/core.git", "url": "https://git.example.com/core.git" } ],
//!   "edges": [
//!     { "from": "repo:core", "to": "remote:https://git.example.com/core.git",
//!       "kind": "uses-remote", "remote": "origin", "role": "primary", "selected": true } ] }
//! ```
//!
//! A remote whose URL could not be resolved (missing from the repository's
//! git config) gets the node `remote-unresolved:<repo>/<remote>` with no
//! `url`.

use crate::policy::{RemoteRole, RepoPolicy};
use crate::state::{Envelope, LedgerHead, StateError, StateStore, ViewName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The remote selected for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Name of the remote in the repository's git config (as in the policy).
    pub remote: String,
    /// Its role in the policy.
    pub role: RemoteRole,
    /// Tick id since which this remote has been selected.
    pub since_tick: String,
    /// True when the selected remote is not the repository's primary.
    pub promoted: bool,
}

/// A change of the selected remote of a repository (a logical promotion;
/// git config is not touched). Payload of the `remote-promoted` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub repo: String,
    /// The remote selected before (the primary, for a first selection).
    pub from: String,
    /// The remote selected now.
    pub to: String,
}

/// The selected remote of every repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationState {
    /// By repository name.
    pub selected: BTreeMap<String, Selection>,
}

impl FederationState {
    /// Records that `remote` (with `role`) was selected for `repo` in tick
    /// `tick`; `primary` is the name of the repository's primary remote
    /// ([`RepoPolicy::primary_remote`]). Returns the promotion when the
    /// selection changed. A first selection counts as a change from the
    /// primary (what git would fetch from without Hermes), so selecting the
    /// primary first reports nothing and selecting a mirror first reports
    /// `primary -> mirror`. Re-selecting the same remote keeps `since_tick`.
    pub fn select(
        &mut self,
        repo: &str,
        remote: &str,
        role: RemoteRole,
        primary: &str,
        tick: &str,
    ) -> Option<Promotion> {
        let previous = self.selected.get(repo);
        let since_tick = match previous {
            Some(sel) if sel.remote == remote => sel.since_tick.clone(),
            _ => tick.to_owned(),
        };
        let from = previous.map_or_else(|| primary.to_owned(), |sel| sel.remote.clone());
        let selection = Selection { remote: remote.to_owned(), role, since_tick, promoted: remote != primary };
        self.selected.insert(repo.to_owned(), selection);
        (from != remote).then(|| Promotion { repo: repo.to_owned(), from, to: remote.to_owned() })
    }

    /// The selection of `repo`, if any.
    pub fn selection(&self, repo: &str) -> Option<&Selection> {
        self.selected.get(repo)
    }

    /// Drops the selections of repositories no longer in the policy.
    pub fn retain_repos(&mut self, repos: &[RepoPolicy]) {
        let names: BTreeSet<&str> = repos.iter().map(|r| r.name.as_str()).collect();
        self.selected.retain(|name, _| names.contains(name.as_str()));
    }

    /// Reads `state/remote_federation_state.json`; `None` when absent.
    pub fn read(store: &StateStore) -> Result<Option<Envelope<FederationState>>, StateError> {
        store.read(ViewName::RemoteFederationState)
    }

    /// The persisted state, or an empty one when there is none yet.
    pub fn load(store: &StateStore) -> Result<FederationState, StateError> {
        Ok(Self::read(store)?.map(|e| e.data).unwrap_or_default())
    }

    /// Writes `state/remote_federation_state.json`.
    pub fn write(&self, store: &StateStore, ledger_head: &LedgerHead, written_at: &str) -> Result<(), StateError> {
        store.write(ViewName::RemoteFederationState, written_at, ledger_head, self)
    }
}

/// Kind of a topology node; repositories sort before remotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Repo,
    Remote,
}

/// Kind of a topology edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A repository fetches from a remote.
    UsesRemote,
}

/// A repository or a remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// `repo:<name>`, `remote:<url>` or `remote-unresolved:<repo>/<remote>`.
    pub id: String,
    pub kind: NodeKind,
    /// Repository name, or the remote's URL (`<repo>/<remote>` if unresolved).
    pub name: String,
    /// The remote's URL; absent for repositories and unresolved remotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A `uses-remote` edge from a repository to a remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyEdge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// The remote's name in this repository.
    pub remote: String,
    /// Its role in this repository.
    pub role: RemoteRole,
    /// Whether it is the remote currently selected for this repository.
    pub selected: bool,
}

/// Repositories, remotes and roles as a graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationTopology {
    pub nodes: Vec<TopologyNode>,
    pub edges: Vec<TopologyEdge>,
}

impl FederationTopology {
    /// Builds the graph from the policy's repositories, the URL of each
    /// remote (`url_of(repo, remote_name)`, `None` when git does not know
    /// it) and the current selections. The result does not depend on the
    /// order of `repos` or of their remotes.
    pub fn build(
        repos: &[RepoPolicy],
        mut url_of: impl FnMut(&RepoPolicy, &str) -> Option<String>,
        state: &FederationState,
    ) -> Self {
        let mut nodes: BTreeMap<(NodeKind, String), TopologyNode> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String, String), TopologyEdge> = BTreeMap::new();
        for repo in repos {
            let repo_id = format!("repo:{}", repo.name);
            nodes.insert(
                (NodeKind::Repo, repo_id.clone()),
                TopologyNode { id: repo_id.clone(), kind: NodeKind::Repo, name: repo.name.clone(), url: None },
            );
            let specs = if repo.remotes.is_empty() { vec![repo.primary_remote()] } else { repo.remotes.clone() };
            let selected = state.selection(&repo.name).map(|s| s.remote.as_str());
            for spec in specs {
                let node = match url_of(repo, &spec.name) {
                    Some(url) => TopologyNode {
                        id: format!("remote:{url}"),
                        kind: NodeKind::Remote,
                        name: url.clone(),
                        url: Some(url),
                    },
                    None => {
                        let name = format!("{}/{}", repo.name, spec.name);
                        TopologyNode {
                            id: format!("remote-unresolved:{name}"),
                            kind: NodeKind::Remote,
                            name,
                            url: None,
                        }
                    }
                };
                let edge = TopologyEdge {
                    from: repo_id.clone(),
                    to: node.id.clone(),
                    kind: EdgeKind::UsesRemote,
                    remote: spec.name.clone(),
                    role: spec.role,
                    selected: selected == Some(spec.name.as_str()),
                };
                nodes.entry((NodeKind::Remote, node.id.clone())).or_insert(node);
                // A remote listed twice in one repository (which the policy
                // validator should reject) keeps its smallest role, so the
                // result does not depend on the order of the list.
                edges
                    .entry((edge.from.clone(), edge.to.clone(), edge.remote.clone()))
                    .and_modify(|e| e.role = e.role.min(edge.role))
                    .or_insert(edge);
            }
        }
        Self { nodes: nodes.into_values().collect(), edges: edges.into_values().collect() }
    }

    /// Reads `state/federation_topology_state.json`; `None` when absent.
    pub fn read(store: &StateStore) -> Result<Option<Envelope<FederationTopology>>, StateError> {
        store.read(ViewName::FederationTopologyState)
    }

    /// Writes `state/federation_topology_state.json`.
    pub fn write(&self, store: &StateStore, ledger_head: &LedgerHead, written_at: &str) -> Result<(), StateError> {
        store.write(ViewName::FederationTopologyState, written_at, ledger_head, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RemoteSpec;
    use proptest::prelude::*;

    /// Built from JSON so that new optional policy fields need no change here.
    fn repo(name: &str, remotes: &[(&str, RemoteRole)]) -> RepoPolicy {
        let remotes: Vec<RemoteSpec> =
            remotes.iter().map(|(n, role)| RemoteSpec { name: (*n).to_owned(), role: *role }).collect();
        serde_json::from_value(serde_json::json!({ "name": name, "path": format!("repos/{name}"), "remotes": remotes }))
            .unwrap()
    }

    fn repos() -> Vec<RepoPolicy> {
        vec![
            repo(
                "core",
                &[("origin", RemoteRole::Primary), ("mirror", RemoteRole::Mirror), ("cache", RemoteRole::Cache)],
            ),
            repo("api", &[("upstream", RemoteRole::Primary), ("mirror", RemoteRole::Mirror)]),
            repo("web", &[]),
            repo("docs", &[("gone", RemoteRole::Fallback), ("origin", RemoteRole::Origin)]),
        ]
    }

    /// Every `mirror` remote is the one shared mirror; `gone` has no URL.
    fn url_of(repo: &RepoPolicy, remote: &str) -> Option<String> {
        match remote {
            "mirror" => Some("file:///srv/mirror".to_owned()),
            "gone" => None,
            other => Some(format!("https://git.example.com/{}/{other}.git", repo.name)),
        }
    }

    fn state() -> FederationState {
        let mut s = FederationState::default();
        s.select("core", "mirror", RemoteRole::Mirror, "origin", "t1");
        s.select("api", "upstream", RemoteRole::Primary, "upstream", "t1");
        s
    }

    #[test]
    fn first_selection_of_the_primary_is_no_promotion() {
        let mut s = FederationState::default();
        assert_eq!(s.select("api", "origin", RemoteRole::Primary, "origin", "t1"), None);
        let sel = s.selection("api").unwrap();
        assert_eq!((sel.remote.as_str(), sel.since_tick.as_str(), sel.promoted), ("origin", "t1", false));
    }

    #[test]
    fn selection_change_reports_a_promotion_and_marks_promoted() {
        let mut s = FederationState::default();
        s.select("core", "origin", RemoteRole::Primary, "origin", "t1");
        assert_eq!(s.select("core", "origin", RemoteRole::Primary, "origin", "t2"), None);
        assert_eq!(s.selection("core").unwrap().since_tick, "t1", "re-selection keeps since_tick");

        let p = s.select("core", "mirror", RemoteRole::Mirror, "origin", "t3").expect("a change");
        assert_eq!(p, Promotion { repo: "core".into(), from: "origin".into(), to: "mirror".into() });
        let sel = s.selection("core").unwrap();
        assert_eq!(
            sel,
            &Selection { remote: "mirror".into(), role: RemoteRole::Mirror, since_tick: "t3".into(), promoted: true }
        );

        let back = s.select("core", "origin", RemoteRole::Primary, "origin", "t4").expect("back to primary");
        assert_eq!((back.from.as_str(), back.to.as_str()), ("mirror", "origin"));
        assert!(!s.selection("core").unwrap().promoted);
        assert_eq!(s.selection("core").unwrap().since_tick, "t4");
    }

    #[test]
    fn first_selection_of_a_mirror_is_a_promotion_from_the_primary() {
        let mut s = FederationState::default();
        let p = s.select("core", "mirror", RemoteRole::Mirror, "origin", "t1").unwrap();
        assert_eq!((p.from.as_str(), p.to.as_str()), ("origin", "mirror"));
        assert!(s.selection("core").unwrap().promoted);
    }

    #[test]
    fn retain_drops_repos_no_longer_in_the_policy() {
        let mut s = state();
        s.select("removed", "origin", RemoteRole::Primary, "origin", "t1");
        s.retain_repos(&repos());
        assert_eq!(s.selected.keys().collect::<Vec<_>>(), ["api", "core"]);
    }

    #[test]
    fn topology_nodes_and_edges() {
        let topo = FederationTopology::build(&repos(), url_of, &state());
        let ids: Vec<&str> = topo.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "repo:api",
                "repo:core",
                "repo:docs",
                "repo:web",
                "remote-unresolved:docs/gone",
                "remote:file:///srv/mirror",
                "remote:https://git.example.com/api/upstream.git",
                "remote:https://git.example.com/core/cache.git",
                "remote:https://git.example.com/core/origin.git",
                "remote:https://git.example.com/docs/origin.git",
                "remote:https://git.example.com/web/origin.git",
            ]
        );
        assert_eq!(topo.edges.len(), 8);
        assert!(topo.edges.iter().all(|e| e.kind == EdgeKind::UsesRemote));
        let selected: Vec<(&str, &str)> =
            topo.edges.iter().filter(|e| e.selected).map(|e| (e.from.as_str(), e.remote.as_str())).collect();
        assert_eq!(selected, [("repo:api", "upstream"), ("repo:core", "mirror")]);
        let shared: Vec<&str> =
            topo.edges.iter().filter(|e| e.to == "remote:file:///srv/mirror").map(|e| e.from.as_str()).collect();
        assert_eq!(shared, ["repo:api", "repo:core"], "one node for the shared mirror");
        let web = topo.edges.iter().find(|e| e.from == "repo:web").unwrap();
        assert_eq!((web.remote.as_str(), web.role, web.selected), ("origin", RemoteRole::Primary, false));
        let json = serde_json::to_value(&topo).unwrap();
        assert_eq!(json["edges"][0]["kind"], "uses-remote");
        assert_eq!(json["nodes"][0]["kind"], "repo");
        assert!(json["nodes"][0].get("url").is_none());
    }

    proptest! {
        #[test]
        fn topology_order_does_not_depend_on_input_order(
            order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
            remote_seed in any::<u64>(),
        ) {
            let expected = FederationTopology::build(&repos(), url_of, &state());
            let base = repos();
            let mut shuffled: Vec<RepoPolicy> = order.iter().map(|&i| base[i].clone()).collect();
            for (k, r) in shuffled.iter_mut().enumerate() {
                let n = r.remotes.len();
                if n > 1 {
                    let rot = ((remote_seed >> (k * 8)) as usize) % n;
                    r.remotes.rotate_left(rot);
                    if (remote_seed >> (k + 40)) & 1 == 1 {
                        r.remotes.reverse();
                    }
                }
            }
            let got = FederationTopology::build(&shuffled, url_of, &state());
            prop_assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }

    #[test]
    fn views_round_trip_through_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(FederationState::load(&store).unwrap(), FederationState::default());
        assert!(FederationTopology::read(&store).unwrap().is_none());
        let head = LedgerHead { seq: 11, hash: "f".repeat(64) };
        let s = state();
        let topo = FederationTopology::build(&repos(), url_of, &s);
        s.write(&store, &head, "2030-01-01T00:00:00.000Z").unwrap();
        topo.write(&store, &head, "2030-01-01T00:00:00.000Z").unwrap();
        let env = FederationState::read(&store).unwrap().unwrap();
        assert_eq!((env.view.as_str(), &env.ledger_head, &env.data), ("remote_federation_state", &head, &s));
        assert_eq!(FederationState::load(&store).unwrap(), s);
        let env = FederationTopology::read(&store).unwrap().unwrap();
        assert_eq!((env.view.as_str(), &env.data), ("federation_topology_state", &topo));
        let text = std::fs::read_to_string(dir.path().join("remote_federation_state.json")).unwrap();
        assert!(text.contains(r#""role": "mirror""#) && text.contains(r#""promoted": true"#), "{text}");
    }
}
