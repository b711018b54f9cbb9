//! The CLI's one user-facing error type and the exit codes.

use crate::cycle::CycleError;
use crate::ledger::LedgerError;
use crate::plugin::set::PluginSetError;
use crate::policy::PolicyError;
use crate::state::StateError;
use std::fmt;
use std::process::ExitCode;

/// Class of error; fixes the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 1: a bug or an I/O failure outside the state directory.
    Internal,
    /// 2: an argument is valid for the parser but not for the workspace
    /// (e.g. a sequence number beyond the ledger's end).
    Usage,
    /// 3: the policy (or other configuration) is missing or invalid.
    Config,
    /// 4: the state directory cannot be used as it is.
    State,
    /// 5: the ledger's hash chain does not verify.
    Integrity,
}

impl ErrorKind {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            ErrorKind::Internal => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Config => 3,
            ErrorKind::State => 4,
            ErrorKind::Integrity => 5,
        })
    }
}

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0.
    Success,
    /// 6: `hermes plugin test` found a failure.
    PluginTestFailed,
    /// 10: the cycle ran, and some repository is blocked or failed.
    Attention,
    /// 11: `hermes tick` / `hermes job run`: a job failed, timed out, was
    /// refused by the preflight or could not run.
    JobFailed,
    /// 12: `hermes simulate`: an expectation of a scenario did not hold.
    ExpectationFailed,
}

impl ExitStatus {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            ExitStatus::Success => 0,
            ExitStatus::PluginTestFailed => 6,
            ExitStatus::Attention => 10,
            ExitStatus::JobFailed => 11,
            ExitStatus::ExpectationFailed => 12,
        })
    }
}

/// An error as the user sees it: what went wrong and what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), hints: Vec::new() }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        for hint in &self.hints {
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<PolicyError> for CliError {
    fn from(e: PolicyError) -> Self {
        let hint = match &e {
            PolicyError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "create a workspace with `hermes init` (or point --home / HERMES_HOME at one)"
            }
            PolicyError::Invalid { .. } => {
                "the policy's format is in config/runtime_upgrade_policies.schema.json; check it with `hermes policy check`"
            }
            _ => "check the file's permissions",
        };
        CliError::new(ErrorKind::Config, e.to_string()).hint(hint)
    }
}

impl From<StateError> for CliError {
    fn from(e: StateError) -> Self {
        let hint = match &e {
            StateError::FutureVersion { .. } => "this workspace was last used by a newer hermes; upgrade hermes",
            StateError::Corrupt { .. } => "move the file aside; hermes rebuilds views from the ledger",
            _ => "check the state directory's permissions and free space",
        };
        CliError::new(ErrorKind::State, e.to_string()).hint(hint)
    }
}

impl From<LedgerError> for CliError {
    fn from(e: LedgerError) -> Self {
        match &e {
            LedgerError::Broken { .. } | LedgerError::Truncated { .. } => CliError::new(ErrorKind::Integrity, e.to_string())
                .hint("the ledger was changed outside hermes; restore it from a backup, nothing will be written until it verifies"),
            LedgerError::FutureVersion { .. } => {
                CliError::new(ErrorKind::State, e.to_string()).hint("upgrade hermes to continue this ledger")
            }
            LedgerError::Io { .. } => CliError::new(ErrorKind::State, e.to_string())
                .hint("check the state directory's permissions and free space"),
        }
    }
}

impl From<crate::projection::checkpoint::ProjectionError> for CliError {
    fn from(e: crate::projection::checkpoint::ProjectionError) -> Self {
        match e {
            crate::projection::checkpoint::ProjectionError::Ledger(e) => e.into(),
            crate::projection::checkpoint::ProjectionError::State(e) => e.into(),
        }
    }
}

impl From<crate::scheduler::TickError> for CliError {
    fn from(e: crate::scheduler::TickError) -> Self {
        use crate::scheduler::{TickError, jobs::JobsError};
        match e {
            TickError::Jobs(e @ JobsError::Invalid { .. }) => CliError::new(ErrorKind::Config, e.to_string())
                .hint("the jobs format is described in docs/scheduler.md; list the jobs with `hermes job list`"),
            TickError::Jobs(e) => CliError::new(ErrorKind::Config, e.to_string()).hint("check the file's permissions"),
            TickError::State(e) => e.into(),
            TickError::Ledger(e) => e.into(),
            TickError::UnknownJob(_) => {
                CliError::new(ErrorKind::Usage, e.to_string()).hint("list the jobs with `hermes job list`")
            }
        }
    }
}

impl From<crate::scheduler::jobs::JobsError> for CliError {
    fn from(e: crate::scheduler::jobs::JobsError) -> Self {
        crate::scheduler::TickError::Jobs(e).into()
    }
}

impl From<CycleError> for CliError {
    fn from(e: CycleError) -> Self {
        match e {
            CycleError::Policy(e) => e.into(),
            CycleError::State(e) => e.into(),
            CycleError::Ledger(e) => e.into(),
            CycleError::Resource(e) => CliError::new(ErrorKind::Config, e.to_string())
                .hint("check `resources.telemetry_override` in the policy and the file it names"),
            CycleError::Coordination(e) => CliError::new(ErrorKind::State, e.to_string()).hint(
                "the lease table is kept in state/coordination_leases.json; a corrupt one is kept for inspection",
            ),
            CycleError::Plugins(PluginSetError::Policy(e)) => e.into(),
            CycleError::Plugins(PluginSetError::Plugin(e)) => CliError::new(ErrorKind::Config, e.to_string())
                .hint("check the plugin with `hermes plugin test FILE`; the policy's `plugins` section selects it"),
        }
    }
}
