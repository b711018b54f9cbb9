//! Named failpoints for the crash matrix: in test builds (debug assertions
//! on), `HERMES_FAILPOINT=NAME` makes the process kill itself with SIGKILL
//! when it reaches the failpoint `NAME`, the way a power cut or the OOM
//! killer would stop it: no destructor, no flush, no lock released by hand.
//! Release builds compile [`hit`] to nothing and never read the variable.
//!
//! `HERMES_FAILPOINT=NAME:N` dies the `N`th time `NAME` is reached (1 when
//! `:N` is left out), so a test can kill a cycle in the middle of its work
//! rather than at the first repository.
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
    APPLY_DURING_CHECKOUT,
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
/// The apply's checkout has written its first file; the index is not updated.
pub const APPLY_DURING_CHECKOUT: &str = "apply-during-checkout";
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
    if reached(name) {
        die(name);
    }
}

/// Counts one passage through `name` and says whether the process must die
/// here now (for failpoints that must do something first, such as writing
/// half a line, before they call [`die`]). Always `false` in release builds.
#[inline]
pub fn reached(name: &'static str) -> bool {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static PASSED: AtomicU64 = AtomicU64::new(0);
        match armed() {
            Some((armed, nth)) if armed == name => PASSED.fetch_add(1, Ordering::SeqCst) + 1 == nth,
            _ => false,
        }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

/// Kills this process with SIGKILL, as a power cut would stop it.
pub fn die(name: &'static str) {
    tracing::warn!(failpoint = name, "failpoint reached: killing this process");
    // SAFETY: kill(2) on our own pid with SIGKILL; it does not return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// The armed failpoint and the passage (1-based) to die at.
#[cfg(debug_assertions)]
fn armed() -> Option<(&'static str, u64)> {
    static ARMED: std::sync::OnceLock<Option<(&'static str, u64)>> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| {
        let wanted = std::env::var(ENV).ok()?;
        let (wanted, nth) = match wanted.split_once(':') {
            Some((name, nth)) => (name.to_owned(), nth.parse().ok().filter(|n| *n > 0)?),
            None => (wanted, 1),
        };
        ALL.iter().copied().find(|name| *name == wanted).map(|name| (name, nth))
    })
}
