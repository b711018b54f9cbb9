//! Named failpoints for the crash matrix: in test builds (debug assertions
//! on), `HERMES_FAILPOINT=NAME` makes the process kill itself with SIGKILL
//! when it reaches the failpoint `NAME`, the way a power cut or the OOM
//! killer would stop it: no destructor, no flush, no lock released by hand.
//! Release builds compile [`hit`] to nothing and never read the variable.
//!
//! Every failpoint is listed in [`ALL`], in pipeline order, so the crash
//! matrix test (tests/integration/crash.rs) can walk them and prove each
//! one is reached.

/// The environment variable naming the failpoint to die at.
pub const ENV: &str = "HERMES_FAILPOINT";

/// Every failpoint, in the order a cycle reaches them.
pub const ALL: &[&str] = &[
    LEDGER_APPEND_TORN,
    LEDGER_APPEND_BEFORE_SYNC,
    VIEW_WRITE_BEFORE_RENAME,
    LEASE_ACQUIRE_AFTER_WRITE,
    ROLLBACK_PLAN_WRITTEN,
    CANARY_CHECKOUT,
    LEASE_RENEW_AFTER_WRITE,
    APPLY_AFTER_CHECKOUT,
    APPLY_AFTER_REF_UPDATE,
    ROLLBACK_AFTER_REF_UPDATE,
    LEASE_RELEASE_AFTER_WRITE,
];

/// Half of an event's line is written, the rest never is (a torn tail).
pub const LEDGER_APPEND_TORN: &str = "ledger-append-torn";
/// The whole line is written but not yet fsynced.
pub const LEDGER_APPEND_BEFORE_SYNC: &str = "ledger-append-before-sync";
/// A state view's temp file is written and synced, not yet renamed.
pub const VIEW_WRITE_BEFORE_RENAME: &str = "view-write-before-rename";
/// A lease was granted and the lease table written.
pub const LEASE_ACQUIRE_AFTER_WRITE: &str = "lease-acquire-after-write";
/// The rollback plan is persisted; nothing in the repository changed yet.
pub const ROLLBACK_PLAN_WRITTEN: &str = "rollback-plan-written";
/// The canary's temporary checkout is made; the canary has not run.
pub const CANARY_CHECKOUT: &str = "canary-checkout";
/// The lease was renewed (after the canary) and the table written.
pub const LEASE_RENEW_AFTER_WRITE: &str = "lease-renew-after-write";
/// Index and worktree are at the target; the branch still at the old HEAD.
pub const APPLY_AFTER_CHECKOUT: &str = "apply-after-checkout";
/// The branch moved to the target; nothing recorded yet.
pub const APPLY_AFTER_REF_UPDATE: &str = "apply-after-ref-update";
/// A rollback moved the branch back; nothing recorded yet.
pub const ROLLBACK_AFTER_REF_UPDATE: &str = "rollback-after-ref-update";
/// A lease was released and the table written.
pub const LEASE_RELEASE_AFTER_WRITE: &str = "lease-release-after-write";

/// A place that is no failpoint (for code shared by a path with one and a
/// path without).
pub const NONE: &str = "";

/// Dies here when `HERMES_FAILPOINT` names `name` (test builds only).
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(debug_assertions)]
    {
        if armed() == Some(name) {
            tracing::warn!(failpoint = name, "failpoint reached: killing this process");
            // SAFETY: kill(2) on our own pid with SIGKILL; it does not return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Whether `name` is the armed failpoint (for failpoints that must do
/// something before dying, such as writing half a line).
#[inline]
pub fn armed_is(name: &'static str) -> bool {
    #[cfg(debug_assertions)]
    {
        armed() == Some(name)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

#[cfg(debug_assertions)]
fn armed() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| {
        let wanted = std::env::var(ENV).ok()?;
        ALL.iter().copied().find(|name| *name == wanted)
    })
}
