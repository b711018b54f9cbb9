//! Phase 2 results: what happened to each repository, as recorded in the
//! ledger (the payload of `repo-upgraded`, `repo-deferred`, `repo-blocked`,
//! `repo-noop` and `apply-failed` events).

use super::plan::Recommendation;
use crate::ledger::EventKind;
use serde::{Deserialize, Serialize};

/// The result of phase 2 for one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Upgraded,
    Deferred,
    Blocked,
    Noop,
    /// An apply was attempted and failed; the repo was left as it was.
    Failed,
}

impl Outcome {
    /// The ledger event that records this outcome.
    pub fn event_kind(self) -> EventKind {
        match self {
            Outcome::Upgraded => EventKind::RepoUpgraded,
            Outcome::Deferred => EventKind::RepoDeferred,
            Outcome::Blocked => EventKind::RepoBlocked,
            Outcome::Noop => EventKind::RepoNoop,
            Outcome::Failed => EventKind::ApplyFailed,
        }
    }

    /// The outcome an event kind records, if it records one.
    pub fn from_event_kind(kind: &str) -> Option<Self> {
        [Outcome::Upgraded, Outcome::Deferred, Outcome::Blocked, Outcome::Noop, Outcome::Failed]
            .into_iter()
            .find(|o| o.event_kind().as_str() == kind)
    }

    /// Whether an operator needs to act (exit code 10).
    pub fn needs_attention(self) -> bool {
        matches!(self, Outcome::Blocked | Outcome::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Upgraded => "upgraded",
            Outcome::Deferred => "deferred",
            Outcome::Blocked => "blocked",
            Outcome::Noop => "noop",
            Outcome::Failed => "failed",
        }
    }
}

/// Ledger payload of an outcome event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoOutcome {
    pub repo: String,
    pub outcome: Outcome,
    pub recommendation: Recommendation,
    pub reason_code: String,
    pub reason: String,
    pub head_before: Option<String>,
    pub head_after: Option<String>,
    pub target: Option<String>,
    pub decision_hash: String,
}

impl RepoOutcome {
    /// Replaces the outcome and its reason.
    pub fn settle(&mut self, outcome: Outcome, code: &str, reason: String) {
        self.outcome = outcome;
        self.reason_code = code.to_owned();
        self.reason = reason;
    }
}
