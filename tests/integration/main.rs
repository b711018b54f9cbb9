//! Integration tests: real git repositories and bare remotes in temporary
//! directories, driven through the real `hermes` binary. See `common` for the
//! harness and its pinned environment.

mod common;

mod checks;
mod concurrency;
mod crash;
mod cron;
mod cycle;
mod demo;
mod federation;
mod gate;
mod init_repo;
mod leases;
mod ledger;
mod observe;
mod plugins;
mod policy_golden;
mod readers;
mod replay;
mod simulate;
mod state_store;
mod tick;
