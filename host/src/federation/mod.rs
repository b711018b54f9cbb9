//! Federation: per-remote health with circuit breaking, and the endpoint
//! selected per repository (logical promotion; git config is never changed).
//!
//! Each repository may list remotes with roles (primary, origin, mirror,
//! cache, fallback). The federation-selector plugin ranks them from the
//! figures kept here; this module records the outcome. It owns three state
//! views, each written whole through the [`crate::state::StateStore`]
//! envelope (`format_version`, `view`, `written_at`, `ledger_head`, `data`):
//!
//! | file | type | what |
//! |------|------|------|
//! | `state/remote_health.json` | [`HealthBook`] | success rate, latency, consecutive failures and circuit per remote **URL** ([`health`]) |
//! | `state/remote_federation_state.json` | [`FederationState`] | the remote selected per repository, and whether it is a promotion ([`state`]) |
//! | `state/federation_topology_state.json` | [`FederationTopology`] | repositories, remotes and `uses-remote` edges ([`state`]) |
//!
//! The formats, with examples, are in the submodules' documentation. Every
//! figure is an integer (parts per million, milliseconds, counts) and every
//! map is ordered, so the files are byte-stable for the same history.
//!
//! Promotion is logical: selecting a mirror instead of the primary is
//! recorded in `remote_federation_state.json` (and the ledger) and the next
//! fetch uses that remote by name. Hermes never rewrites a repository's git
//! remote configuration and never creates, provisions or repairs remotes.
//!
//! Nothing here reads the clock: every time is passed in by the caller.

pub mod health;
pub mod state;

pub use health::{Circuit, CircuitTransition, FULL_RATE_PPM, HealthBook, HealthPolicy, RemoteHealth};
pub use state::{
    EdgeKind, FederationState, FederationTopology, NodeKind, Promotion, Selection, TopologyEdge, TopologyNode,
};
