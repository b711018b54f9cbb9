//! Per-remote concurrency budgets and the `coordination` policy settings.

use super::{MAX_LEASE_TTL_SECS, MAX_LOCK_DELAY_SECS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Largest per-remote budget the policy accepts.
const MAX_REMOTE_BUDGET: u32 = 1024;

/// The `coordination` section of the policy: lease timing and per-remote
/// concurrency caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoordinationPolicy {
    /// Seconds a repository lease lasts unless renewed; a holder that stops
    /// renewing loses it after this long. 1 to 604800 (7 days); default 900.
    #[serde(default = "default_lease_ttl_secs")]
    #[schemars(range(min = 1, max = 604800))]
    pub lease_ttl_secs: u64,
    /// Seconds an expired lease of another holder must stay expired before
    /// it may be taken over. 0 to 3600; default 5.
    #[serde(default = "default_lock_delay_secs")]
    #[schemars(range(max = 3600))]
    pub lock_delay_secs: u64,
    /// Fetches and upgrades that may use one remote URL at the same time,
    /// for URLs not capped in `remote_budgets`. 1 to 1024; default 4.
    #[serde(default = "default_remote_budget")]
    #[schemars(range(min = 1, max = 1024))]
    pub remote_budget_default: u32,
    /// Caps that replace `remote_budget_default`, keyed by a remote URL or
    /// by a remote name (each URL reached through that name gets the cap);
    /// a URL key wins over a name key. Each 1 to 1024.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_budgets: BTreeMap<String, u32>,
}

fn default_lease_ttl_secs() -> u64 {
    900
}

fn default_lock_delay_secs() -> u64 {
    5
}

fn default_remote_budget() -> u32 {
    4
}

impl Default for CoordinationPolicy {
    fn default() -> Self {
        Self {
            lease_ttl_secs: default_lease_ttl_secs(),
            lock_delay_secs: default_lock_delay_secs(),
            remote_budget_default: default_remote_budget(),
            remote_budgets: BTreeMap::new(),
        }
    }
}

impl CoordinationPolicy {
    /// Whether every setting has its default (to leave the section out when
    /// the policy is written).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The first setting out of range, as (JSON path relative to the
    /// section, problem and what was expected); `None` when all are valid.
    pub fn problem(&self) -> Option<(String, String)> {
        if !(1..=MAX_LEASE_TTL_SECS).contains(&self.lease_ttl_secs) {
            return Some((
                "lease_ttl_secs".into(),
                format!("{} is out of range; expected 1 to {MAX_LEASE_TTL_SECS} seconds", self.lease_ttl_secs),
            ));
        }
        if self.lock_delay_secs > MAX_LOCK_DELAY_SECS {
            return Some((
                "lock_delay_secs".into(),
                format!("{} is out of range; expected 0 to {MAX_LOCK_DELAY_SECS} seconds", self.lock_delay_secs),
            ));
        }
        let budget_problem = |value: u32| {
            (!(1..=MAX_REMOTE_BUDGET).contains(&value))
                .then(|| format!("{value} is out of range; expected 1 to {MAX_REMOTE_BUDGET} concurrent lanes"))
        };
        if let Some(problem) = budget_problem(self.remote_budget_default) {
            return Some(("remote_budget_default".into(), problem));
        }
        for (remote, &value) in &self.remote_budgets {
            if remote.trim().is_empty() {
                return Some(("remote_budgets".into(), "an empty key; expected a remote URL or a remote name".into()));
            }
            if let Some(problem) = budget_problem(value) {
                return Some((format!("remote_budgets.{remote}"), problem));
            }
        }
        None
    }

    /// Whether the lease TTL outlasts the checks a lease must cover: it must
    /// be longer than the longest canary plus the longest health check, each
    /// given as (JSON path of its `timeout_secs` in the policy, seconds), or
    /// `None` when none is configured. The problem is reported as (JSON path
    /// relative to the section, problem and what was expected).
    pub fn ttl_problem(
        &self,
        longest_canary: Option<(&str, u64)>,
        longest_health: Option<(&str, u64)>,
    ) -> Option<(String, String)> {
        let covered: u64 = [longest_canary, longest_health].iter().flatten().map(|(_, secs)| secs).sum();
        if covered == 0 || self.lease_ttl_secs > covered {
            return None;
        }
        let parts: Vec<String> = [("the longest canary", longest_canary), ("the longest health check", longest_health)]
            .into_iter()
            .filter_map(|(what, check)| check.map(|(at, secs)| format!("{what} ({at} = {secs} s)")))
            .collect();
        Some((
            "lease_ttl_secs".into(),
            format!(
                "{} s is too short for the checks the lease must cover; expected longer than {covered} s, {}",
                self.lease_ttl_secs,
                parts.join(" plus ")
            ),
        ))
    }

    /// The lease TTL as a [`Duration`] for [`super::LeaseManager::new`].
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }

    /// The lock delay as a [`Duration`] for [`super::LeaseManager::new`].
    pub fn lock_delay(&self) -> Duration {
        Duration::from_secs(self.lock_delay_secs)
    }
}

/// Caps on how many lanes of this process use one remote **endpoint** at once.
///
/// A slot is counted per endpoint: the remote's fetch URL as written in the
/// repository's git config (`remote.<name>.url`, the key remote health uses
/// too), so two repositories whose `origin` points at different URLs never
/// share a budget, and every repository fetching from one URL does, whatever
/// it calls the remote. A remote whose URL cannot be read is counted under
/// `<repo>/<remote>`.
///
/// The cap of one use is `limits[url]`, else `limits[name]` (the remote's
/// name in that repository), else the default: a policy entry keyed by a URL
/// wins over one keyed by a name. A name entry caps every URL reached through
/// a remote of that name, each URL separately. When two names with different
/// caps point at one URL, each use is admitted against its own cap; key the
/// entry by the URL to give the endpoint one cap. A cap of 0 admits nothing.
///
/// In memory only and shared by reference between the parallel lanes (it is
/// `Sync`).
#[derive(Debug)]
pub struct RemoteBudget {
    default_limit: u32,
    limits: BTreeMap<String, u32>,
    in_use: Mutex<BTreeMap<String, u32>>,
}

/// How often a lane waiting for a slot looks again.
const POLL: Duration = Duration::from_millis(5);

impl RemoteBudget {
    /// A budget with `limits` (by URL or remote name) and `default_limit`
    /// for the rest.
    pub fn new(default_limit: u32, limits: BTreeMap<String, u32>) -> Self {
        Self { default_limit, limits, in_use: Mutex::new(BTreeMap::new()) }
    }

    /// The budget the policy configures.
    pub fn from_policy(policy: &CoordinationPolicy) -> Self {
        Self::new(policy.remote_budget_default, policy.remote_budgets.clone())
    }

    /// The cap of endpoint `url` used through a remote named `name`: the
    /// limit listed for the URL, else the one listed for the name, else the
    /// default.
    pub fn limit(&self, url: &str, name: &str) -> u32 {
        self.limits.get(url).or_else(|| self.limits.get(name)).copied().unwrap_or(self.default_limit)
    }

    /// Takes one slot of `url`'s budget, with the cap [`Self::limit`] gives
    /// for `name`; `false` (and nothing taken) when it is used up. Each
    /// `true` must be paired with one [`Self::release`] of `url`.
    pub fn try_reserve(&self, url: &str, name: &str) -> bool {
        let limit = self.limit(url, name);
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        let used = in_use.get(url).copied().unwrap_or(0);
        if used >= limit {
            return false;
        }
        in_use.insert(url.to_owned(), used + 1);
        true
    }

    /// Returns one slot of `url`'s budget. Releasing an endpoint with no
    /// reservation is a caller bug; it is logged and ignored.
    pub fn release(&self, url: &str) {
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        match in_use.get_mut(url) {
            Some(used) if *used > 1 => *used -= 1,
            Some(_) => {
                in_use.remove(url);
            }
            None => tracing::warn!(url, "released a remote budget slot that was not reserved"),
        }
    }

    /// Slots of `url` in use now.
    pub fn in_use(&self, url: &str) -> u32 {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner).get(url).copied().unwrap_or(0)
    }

    /// Waits for a slot of `url` (polling every 5 ms, without a timeout),
    /// runs `work` holding it and returns the slot, also when `work` panics.
    /// A cap of 0 never admits: callers must not pass such an endpoint
    /// (the policy refuses 0).
    pub fn with_slot<R>(&self, url: &str, name: &str, work: impl FnOnce() -> R) -> R {
        while !self.try_reserve(url, name) {
            std::thread::sleep(POLL);
        }
        struct Slot<'a>(&'a RemoteBudget, &'a str);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                self.0.release(self.1);
            }
        }
        let _slot = Slot(self, url);
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    const A: &str = "https://git.example/a.git";
    const B: &str = "https://git.example/b.git";

    fn budget() -> RemoteBudget {
        RemoteBudget::new(2, BTreeMap::from([("mirror".to_owned(), 1), ("closed".to_owned(), 0)]))
    }

    #[test]
    fn the_default_limit_applies_to_unlisted_remotes() {
        let b = budget();
        assert_eq!(b.limit(A, "origin"), 2);
        assert!(b.try_reserve(A, "origin"));
        assert!(b.try_reserve(A, "origin"));
        assert!(!b.try_reserve(A, "origin"));
        assert_eq!(b.in_use(A), 2);
        assert!(b.try_reserve(B, "origin"), "each URL has its own budget");
    }

    #[test]
    fn slots_are_counted_per_url_not_per_name() {
        let b = RemoteBudget::new(1, BTreeMap::new());
        // Two repositories whose `origin` points at different URLs.
        assert!(b.try_reserve(A, "origin"));
        assert!(b.try_reserve(B, "origin"), "same name, other URL: its own budget");
        // One URL reached through two names shares one budget.
        assert!(!b.try_reserve(A, "upstream"));
        b.release(A);
        assert!(b.try_reserve(A, "upstream"));
        assert_eq!((b.in_use(A), b.in_use(B)), (1, 1));
    }

    #[test]
    fn a_listed_limit_replaces_the_default_and_zero_admits_nothing() {
        let b = budget();
        assert_eq!(b.limit(A, "mirror"), 1);
        assert!(b.try_reserve(A, "mirror"));
        assert!(!b.try_reserve(A, "mirror"));
        assert!(b.try_reserve(B, "mirror"), "a name entry caps each URL separately");
        assert!(!b.try_reserve("file:///c", "closed"));
        assert_eq!(b.in_use("file:///c"), 0);
    }

    #[test]
    fn a_url_entry_takes_precedence_over_a_name_entry() {
        let b = RemoteBudget::new(4, BTreeMap::from([(A.to_owned(), 3), ("origin".to_owned(), 1)]));
        assert_eq!(b.limit(A, "origin"), 3, "the URL's entry wins");
        assert_eq!(b.limit(B, "origin"), 1, "else the name's");
        assert_eq!(b.limit(B, "mirror"), 4, "else the default");
        assert_eq!(b.limit(A, "mirror"), 3);
    }

    #[test]
    fn release_frees_a_slot_and_an_unpaired_release_is_ignored() {
        let b = budget();
        assert!(b.try_reserve(A, "mirror"));
        b.release(A);
        assert_eq!(b.in_use(A), 0);
        b.release(A);
        b.release("never-reserved");
        assert_eq!(b.in_use(A), 0);
        assert!(b.try_reserve(A, "mirror"));
        assert!(!b.try_reserve(A, "mirror"), "the extra release did not add a slot");
    }

    #[test]
    fn with_slot_holds_the_slot_while_working_and_returns_it_after_a_panic() {
        let b = RemoteBudget::new(1, BTreeMap::new());
        let seen = b.with_slot(A, "origin", || b.in_use(A));
        assert_eq!((seen, b.in_use(A)), (1, 0));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.with_slot(A, "origin", || panic!())));
        assert!(caught.is_err());
        assert_eq!(b.in_use(A), 0, "the slot came back");
    }

    #[test]
    fn parallel_lanes_never_exceed_the_cap() {
        const LANES: usize = 8;
        const ROUNDS: usize = 200;
        let b = RemoteBudget::new(3, BTreeMap::new());
        let holding = AtomicU32::new(0);
        let peak = AtomicU32::new(0);
        let barrier = Arc::new(Barrier::new(LANES));
        std::thread::scope(|scope| {
            for lane in 0..LANES {
                let barrier = Arc::clone(&barrier);
                let (b, holding, peak) = (&b, &holding, &peak);
                scope.spawn(move || {
                    barrier.wait();
                    // Half the lanes call the remote by another name: same URL, same budget.
                    let name = if lane % 2 == 0 { "origin" } else { "upstream" };
                    for round in 0..ROUNDS {
                        let work = || {
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            holding.fetch_sub(1, Ordering::SeqCst);
                        };
                        if round % 2 == 0 {
                            b.with_slot(A, name, work);
                        } else if b.try_reserve(A, name) {
                            work();
                            b.release(A);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
        assert!(peak.load(Ordering::SeqCst) >= 1);
        assert_eq!(b.in_use(A), 0);
    }

    #[test]
    fn the_policy_section_has_documented_defaults() {
        let policy: CoordinationPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, CoordinationPolicy::default());
        assert_eq!((policy.lease_ttl_secs, policy.lock_delay_secs, policy.remote_budget_default), (900, 5, 4));
        assert!(policy.remote_budgets.is_empty());
        assert!(policy.is_default());
        assert_eq!(policy.problem(), None);
        assert_eq!((policy.lease_ttl(), policy.lock_delay()), (Duration::from_secs(900), Duration::from_secs(5)));
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            serde_json::json!({ "lease_ttl_secs": 900, "lock_delay_secs": 5, "remote_budget_default": 4 })
        );
    }

    #[test]
    fn the_policy_section_round_trips_and_feeds_the_budget() {
        let json =
            r#"{"lease_ttl_secs":60,"lock_delay_secs":0,"remote_budget_default":2,"remote_budgets":{"mirror":1}}"#;
        let policy: CoordinationPolicy = serde_json::from_str(json).unwrap();
        assert!(!policy.is_default());
        assert_eq!(serde_json::to_string(&policy).unwrap(), json);
        let b = RemoteBudget::from_policy(&policy);
        assert_eq!((b.limit(A, "mirror"), b.limit(A, "origin")), (1, 2));
    }

    #[test]
    fn unknown_members_are_refused() {
        let err = serde_json::from_str::<CoordinationPolicy>(r#"{"lease_ttl":60}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `lease_ttl`"), "{err}");
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let with = |edit: fn(&mut CoordinationPolicy)| {
            let mut policy = CoordinationPolicy::default();
            edit(&mut policy);
            policy.problem().map(|(path, _)| path)
        };
        assert_eq!(with(|p| p.lease_ttl_secs = 0).as_deref(), Some("lease_ttl_secs"));
        assert_eq!(with(|p| p.lease_ttl_secs = MAX_LEASE_TTL_SECS + 1).as_deref(), Some("lease_ttl_secs"));
        assert_eq!(with(|p| p.lock_delay_secs = MAX_LOCK_DELAY_SECS + 1).as_deref(), Some("lock_delay_secs"));
        assert_eq!(with(|p| p.remote_budget_default = 0).as_deref(), Some("remote_budget_default"));
        assert_eq!(with(|p| p.remote_budget_default = MAX_REMOTE_BUDGET + 1).as_deref(), Some("remote_budget_default"));
        assert_eq!(
            with(|p| {
                p.remote_budgets.insert("mirror".into(), 0);
            })
            .as_deref(),
            Some("remote_budgets.mirror")
        );
        assert_eq!(
            with(|p| {
                p.remote_budgets.insert(" ".into(), 1);
            })
            .as_deref(),
            Some("remote_budgets")
        );
        assert_eq!(with(|p| p.lock_delay_secs = 0), None);
        let (_, problem) = CoordinationPolicy { lease_ttl_secs: 0, ..CoordinationPolicy::default() }.problem().unwrap();
        assert_eq!(problem, "0 is out of range; expected 1 to 604800 seconds");
    }

    #[test]
    fn the_ttl_must_outlast_the_longest_canary_plus_the_longest_health_check() {
        let ttl = |secs| CoordinationPolicy { lease_ttl_secs: secs, ..CoordinationPolicy::default() };
        let canary = Some(("repos[2].canary.timeout_secs", 500));
        let health = Some(("checks.health.timeout_secs", 100));
        assert_eq!(ttl(601).ttl_problem(canary, health), None);
        assert_eq!(ttl(1).ttl_problem(None, None), None, "no check, nothing to cover");
        let (path, problem) = ttl(600).ttl_problem(canary, health).unwrap();
        assert_eq!(path, "lease_ttl_secs");
        assert_eq!(
            problem,
            "600 s is too short for the checks the lease must cover; expected longer than 600 s, \
             the longest canary (repos[2].canary.timeout_secs = 500 s) \
             plus the longest health check (checks.health.timeout_secs = 100 s)"
        );
        let (_, problem) = ttl(100).ttl_problem(None, health).unwrap();
        assert!(
            problem
                .ends_with("expected longer than 100 s, the longest health check (checks.health.timeout_secs = 100 s)"),
            "{problem}"
        );
        let (_, problem) = ttl(400).ttl_problem(canary, None).unwrap();
        assert!(
            problem.ends_with("expected longer than 500 s, the longest canary (repos[2].canary.timeout_secs = 500 s)"),
            "{problem}"
        );
        // The defaults (900 s) cover a canary and a health check of the default 300 s each.
        assert_eq!(
            CoordinationPolicy::default()
                .ttl_problem(Some(("checks.canary.timeout_secs", 300)), Some(("checks.health.timeout_secs", 300))),
            None
        );
    }

    #[test]
    fn the_schema_documents_every_member_with_its_default_and_range() {
        let schema = serde_json::to_value(schemars::schema_for!(CoordinationPolicy)).unwrap();
        let props = &schema["properties"];
        for member in ["lease_ttl_secs", "lock_delay_secs", "remote_budget_default", "remote_budgets"] {
            let description = props[member]["description"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "{member} has no description: {schema:#}");
        }
        assert_eq!(props["lease_ttl_secs"]["default"], 900);
        assert_eq!(props["lease_ttl_secs"]["minimum"], 1);
        assert_eq!(props["lease_ttl_secs"]["maximum"], 604800);
        assert_eq!(schema["additionalProperties"], false);
    }
}
