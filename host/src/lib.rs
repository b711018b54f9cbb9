//! Hermes: a single-host control plane that plans, gates, executes, observes
//! and replays upgrade cycles over the git repositories of one workspace.
//!
//! The modules mirror the pipeline: [`workspace`] and [`policy`] say what to
//! upgrade; [`cycle`] probes, plans and executes; [`ledger`] records every
//! step in a hash chain; [`state`] writes the views derived from it.

pub mod canonical;
pub mod cli;
pub mod clock;
pub mod coordinate;
pub mod cycle;
pub mod demo;
pub mod failpoint;
pub mod federation;
pub mod fsx;
pub mod intelligence;
pub mod ledger;
pub mod plugin;
pub mod policy;
pub mod process;
pub mod projection;
pub mod replay;
pub mod resource;
pub mod scheduler;
pub mod simulate;
pub mod state;
pub mod topology;
pub mod workspace;

/// The memory allocator of every binary built from this crate: the CLI, its
/// tests and its benchmarks (so the figures in docs/performance.md are the
/// CLI's). A plugin call allocates and frees a store, an instance and its
/// input and output records; glibc's malloc spent about a fifth of a call
/// in consolidating and unlinking free chunks, mimalloc's size-class pages
/// do not. `no_thp`: mimalloc does not ask for transparent huge pages for
/// its regions, which it purges and which would come back as freshly
/// zeroed 2 MiB pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod json_mutation;
#[cfg(test)]
mod parse_properties;

/// Cases per property test: `default`, or `PROPTEST_CASES` when set (for
/// the longer runs in docs/testing.md; an explicit case count in a
/// `proptest_config` would otherwise ignore the variable).
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}
