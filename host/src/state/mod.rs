//! The state store: the `state/*.json` views and `*.jsonl` histories.
//!
//! A view is derived from the ledger and written whole, atomically (see
//! [`crate::fsx::write_atomic`]). On disk every view is one JSON object:
//!
//! ```json
//! { "format_version": 1, "view": "<file stem>", "written_at": "<RFC 3339>",
//!   "ledger_head": { "seq": 42, "hash": "<hex>" }, "data": { ... } }
//! ```
//!
//! `ledger_head` is the last ledger event the view reflects, so a reader (and
//! the integrity gate) can tell a stale view from a current one. History files
//! (`*.jsonl`) hold one such object per line and are only ever appended.
//!
//! A view that does not parse is reported as [`StateError::Corrupt`]; one
//! written by a newer Hermes as [`StateError::FutureVersion`]. Neither is ever
//! silently overwritten: the caller decides to quarantine and rebuild
//! ([`StateStore::quarantine`]) or to stop.

use crate::fsx;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The view format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open state directory {path}: {source}")]
    OpenDir { path: PathBuf, source: io::Error },
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("state file {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state file {path} has format version {found}; this hermes reads versions up to {supported}")]
    FutureVersion { path: PathBuf, found: u32, supported: u32 },
}

/// Position in the ledger that a view reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHead {
    /// Sequence number of the last event (0 for an empty ledger).
    pub seq: u64,
    /// Hash of that event (the genesis hash for an empty ledger).
    pub hash: String,
}

/// A view as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    pub format_version: u32,
    pub view: String,
    pub written_at: String,
    pub ledger_head: LedgerHead,
    pub data: T,
}

#[derive(Deserialize)]
struct VersionProbe {
    format_version: u32,
}

/// Handle on `HERMES_HOME/state`.
#[derive(Debug)]
pub struct StateStore {
    dir: Dir,
    path: PathBuf,
}

impl StateStore {
    /// Opens the state directory, creating it if needed.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let open_err = |source| StateError::OpenDir { path: path.to_owned(), source };
        std::fs::create_dir_all(path).map_err(open_err)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(open_err)?;
        Ok(Self { dir, path: path.to_owned() })
    }

    /// The directory handle (shared with the ledger).
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Absolute path of a file in the state directory, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads a view; `Ok(None)` when it does not exist yet.
    pub fn read<T: DeserializeOwned>(&self, view: ViewName) -> Result<Option<Envelope<T>>, StateError> {
        let name = view.file_name();
        let path = self.path_of(name);
        let bytes = match self.dir.read(name) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let corrupt = |detail: String| StateError::Corrupt { path: path.clone(), detail };
        let version: VersionProbe = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if version.format_version > FORMAT_VERSION {
            return Err(StateError::FutureVersion { path, found: version.format_version, supported: FORMAT_VERSION });
        }
        let envelope: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if envelope.view != view.stem() {
            return Err(corrupt(format!("it says it is view {:?}, expected {:?}", envelope.view, view.stem())));
        }
        Ok(Some(envelope))
    }

    /// Checks that a view can be replaced or appended to: every line of a
    /// history (or the whole view) parses and is not from a newer Hermes.
    pub fn check(&self, view: ViewName) -> Result<(), StateError> {
        if !view.is_history() {
            return self.read::<serde_json::Value>(view).map(drop);
        }
        let name = view.file_name();
        let path = self.path_of(name);
        let text = match self.dir.read_to_string(name) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(StateError::Corrupt { path, detail: "not UTF-8".into() });
            }
            Err(source) => return Err(StateError::Read { path, source }),
        };
        for (i, line) in text.lines().enumerate() {
            let version: VersionProbe = serde_json::from_str(line)
                .map_err(|e| StateError::Corrupt { path: path.clone(), detail: format!("line {}: {e}", i + 1) })?;
            if version.format_version > FORMAT_VERSION {
                return Err(StateError::FutureVersion {
                    path,
                    found: version.format_version,
                    supported: FORMAT_VERSION,
                });
            }
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(StateError::Corrupt { path, detail: "the last line is incomplete".into() });
        }
        Ok(())
    }

    /// Atomically writes a view.
    pub fn write<T: Serialize>(
        &self,
        view: ViewName,
        written_at: &str,
        ledger_head: &LedgerHead,
        data: &T,
    ) -> Result<(), StateError> {
        let bytes = self.envelope_bytes(view, written_at, ledger_head, data, true)?;
        fsx::write_atomic(&self.dir, view.file_name(), &bytes)
            .map_err(|source| StateError::Write { path: self.path_of(view.file_name()), source })
    }

    /// Appends one envelope line to a `*.jsonl` history and fsyncs it.
    pub fn append_history<T: Serialize>(
        &self,
        view: ViewName,
        written_at: &str,
        ledger_head: &LedgerHead,
        data: &T,
    ) -> Result<(), StateError> {
        self.append_history_all(view, [(written_at, ledger_head, data)])
    }

    /// Appends several lines to a history view with one write and one
    /// fsync (a replay rebuilding a history of thousands of cycles).
    pub fn append_history_all<'a, T: Serialize + 'a>(
        &self,
        view: ViewName,
        lines: impl IntoIterator<Item = (&'a str, &'a LedgerHead, &'a T)>,
    ) -> Result<(), StateError> {
        let mut bytes = Vec::new();
        for (written_at, ledger_head, data) in lines {
            bytes.extend(self.envelope_bytes(view, written_at, ledger_head, data, false)?);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        fsx::append_durable(&self.dir, view.file_name(), &bytes)
            .map_err(|source| StateError::Write { path: self.path_of(view.file_name()), source })
    }

    /// The envelope of `data` as JSON (pretty for views, one line for
    /// histories), ending in a newline.
    fn envelope_bytes<T: Serialize>(
        &self,
        view: ViewName,
        written_at: &str,
        ledger_head: &LedgerHead,
        data: &T,
        pretty: bool,
    ) -> Result<Vec<u8>, StateError> {
        let envelope = Envelope {
            format_version: FORMAT_VERSION,
            view: view.stem().to_owned(),
            written_at: written_at.to_owned(),
            ledger_head: ledger_head.clone(),
            data,
        };
        let serialized = if pretty { serde_json::to_vec_pretty(&envelope) } else { serde_json::to_vec(&envelope) };
        let mut bytes = serialized
            .map_err(|e| StateError::Write { path: self.path_of(view.file_name()), source: io::Error::other(e) })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Moves an unreadable view aside to `<name>.corrupt-<seq>` (kept for the
    /// operator) so it can be rebuilt; returns the new name.
    pub fn quarantine(&self, view: ViewName, seq: u64) -> Result<String, StateError> {
        let name = view.file_name();
        let aside = format!("{name}.corrupt-{seq}");
        self.dir
            .rename(name, &self.dir, &aside)
            .and_then(|()| fsx::sync_dir(&self.dir))
            .map_err(|source| StateError::Write { path: self.path_of(name), source })?;
        Ok(aside)
    }
}

/// The files of the state directory this build writes. Each view's owner and
/// meaning is documented in `docs/runtime_state_files.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViewName {
    /// The plan of the last cycle (`cycle::plan`).
    GlobalOrchestrationPlan,
    /// Counts and outcome of the last cycle (`cycle::finalize`).
    UpgradeSummary,
    /// Per-repository upgrade state folded from the ledger (`cycle::finalize`).
    UpgradeState,
    /// One summary line per cycle, append-only (`cycle::finalize`).
    UpgradeStateHistory,
    /// Per-remote health: success rate, latency, failures, circuit (`federation`).
    RemoteHealth,
    /// Per-repository outcome statistics derived from the ledger (`intelligence`).
    RuntimeIntelligence,
    /// The pressure level and lanes of the last cycle (`resource`).
    RuntimeResourceState,
    /// The last resource sample: load, memory, disk (`resource`).
    RuntimeResourceTelemetry,
    /// Grants, conflicts and takeovers of the last cycle (`coordinate`).
    AgentCoordinationState,
    /// Active leases and the fencing high-water mark (`coordinate`).
    CoordinationLeases,
    /// Single-host "consensus": who holds what, no quorum claimed (`coordinate`).
    RuntimeConsensusState,
    /// The topology snapshot of the last cycle (`topology`).
    RuntimeTopologyGraph,
    /// Selected endpoint per repository, logical promotions (`federation`).
    RemoteFederationState,
    /// Repositories, remotes and roles as a graph (`federation`).
    FederationTopologyState,
    /// Result of each integrity check of the last gate (`gate`).
    ControlPlaneIntegrity,
    /// Rollback plans and rollbacks (`cycle::rollback`).
    RollbackIntelligence,
    /// What the control plane is doing now (`cycle`).
    LiveRuntimeControlPlane,
    /// The graph projection at a ledger position, for readers (`projection`).
    GraphCheckpoint,
    /// Per-job first sighting, last start and last outcome (`scheduler`).
    SchedulerState,
}

impl ViewName {
    /// File name inside `state/`.
    pub fn file_name(self) -> &'static str {
        match self {
            ViewName::GlobalOrchestrationPlan => "global_orchestration_plan.json",
            ViewName::UpgradeSummary => "auto_safe_upgrade_summary.json",
            ViewName::UpgradeState => "auto_safe_upgrade_state.json",
            ViewName::UpgradeStateHistory => "auto_safe_upgrade_state_history.jsonl",
            ViewName::RemoteHealth => "remote_health.json",
            ViewName::RuntimeIntelligence => "runtime_intelligence.json",
            ViewName::RuntimeResourceState => "runtime_resource_state.json",
            ViewName::RuntimeResourceTelemetry => "runtime_resource_telemetry.json",
            ViewName::AgentCoordinationState => "agent_coordination_state.json",
            ViewName::CoordinationLeases => "coordination_leases.json",
            ViewName::RuntimeConsensusState => "runtime_consensus_state.json",
            ViewName::RuntimeTopologyGraph => "runtime_topology_graph.json",
            ViewName::RemoteFederationState => "remote_federation_state.json",
            ViewName::FederationTopologyState => "federation_topology_state.json",
            ViewName::ControlPlaneIntegrity => "control_plane_integrity.json",
            ViewName::RollbackIntelligence => "rollback_intelligence.json",
            ViewName::LiveRuntimeControlPlane => "live_runtime_control_plane.json",
            ViewName::GraphCheckpoint => "graph_checkpoint.json",
            ViewName::SchedulerState => "scheduler_state.json",
        }
    }

    /// Whether the file is an append-only `*.jsonl` history.
    pub fn is_history(self) -> bool {
        self == ViewName::UpgradeStateHistory
    }

    /// File name without its extension; stored in the envelope's `view` field.
    pub fn stem(self) -> &'static str {
        let name = self.file_name();
        name.rsplit_once('.').map_or(name, |(stem, _)| stem)
    }
}
