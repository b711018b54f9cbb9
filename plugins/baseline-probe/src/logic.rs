//! The baseline probe's logic: a pure function of the probe input and a
//! read-only "does this file exist in the worktree" oracle.
//!
//! Signals, always in this order, each at most once:
//!
//! | key                | severity | when                                                                 | value                 |
//! |--------------------|----------|----------------------------------------------------------------------|-----------------------|
//! | `lockfile-changed` | warning  | an incoming commit changes a lockfile ([`LOCKFILES`], by file name)  | number of lockfiles   |
//! | `manifest-changed` | warning  | an incoming commit changes a manifest ([`MANIFESTS`], by file name)  | number of manifests   |
//! | `lockfile-stale`   | info     | a manifest changes, none of its lockfiles in the same directory change, but one exists in the worktree | number of manifests |
//! | `migration-files`  | critical | a changed path contains `migrations/` or `migrate/`, or ends in `.sql` (ASCII case-insensitive) | number of paths |
//! | `large-change`     | warning  | at least [`LARGE_CHANGE_PATHS`] distinct paths change                 | number of paths       |
//!
//! Paths are the distinct changed paths over all incoming commits, sorted.
//! Messages name up to [`LISTED_PATHS`] paths. The worktree is only asked
//! about lockfiles next to changed manifests; an unreadable or absent worktree
//! simply answers "no" and never makes the probe fail.

use hermes_plugin_sdk::{ProbeInput, Severity, Signal};
use std::collections::BTreeSet;

/// Lockfile names (matched against a path's last component).
pub const LOCKFILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "bun.lock",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "pdm.lock",
    "Gemfile.lock",
    "go.sum",
    "composer.lock",
    "mix.lock",
    "pubspec.lock",
    "Podfile.lock",
    "flake.lock",
    "gradle.lockfile",
    "packages.lock.json",
    "Package.resolved",
];

/// Manifest names and the lockfiles that belong next to them.
pub const MANIFESTS: &[(&str, &[&str])] = &[
    ("Cargo.toml", &["Cargo.lock"]),
    (
        "package.json",
        &["package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "bun.lock"],
    ),
    ("pyproject.toml", &["poetry.lock", "uv.lock", "pdm.lock"]),
    ("Pipfile", &["Pipfile.lock"]),
    ("setup.py", &[]),
    ("setup.cfg", &[]),
    ("requirements.txt", &[]),
    ("go.mod", &["go.sum"]),
    ("Gemfile", &["Gemfile.lock"]),
    ("composer.json", &["composer.lock"]),
    ("mix.exs", &["mix.lock"]),
    ("pubspec.yaml", &["pubspec.lock"]),
    ("Podfile", &["Podfile.lock"]),
    ("flake.nix", &["flake.lock"]),
    ("pom.xml", &[]),
    ("build.gradle", &["gradle.lockfile"]),
    ("build.gradle.kts", &["gradle.lockfile"]),
    ("Package.swift", &["Package.resolved"]),
];

/// Distinct changed paths from which `large-change` is reported.
pub const LARGE_CHANGE_PATHS: usize = 100;

/// Paths named in a message at most; the rest are counted.
pub const LISTED_PATHS: usize = 10;

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// A repository-relative path that stays inside the worktree.
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn is_migration(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("migrations/") || lower.contains("migrate/") || lower.ends_with(".sql")
}

fn listing(paths: &[&str]) -> String {
    let mut s = paths.iter().take(LISTED_PATHS).copied().collect::<Vec<_>>().join(", ");
    if paths.len() > LISTED_PATHS {
        s.push_str(&format!(" and {} more", paths.len() - LISTED_PATHS));
    }
    s
}

fn signal(key: &str, severity: Severity, count: usize, message: String) -> Signal {
    Signal { key: key.to_string(), value: count.to_string(), severity, message }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Compute the signals for one repository. `worktree_has_file(rel)` answers
/// whether the repository-relative path `rel` is a regular file in the
/// current worktree (it is only called with safe relative paths).
pub fn probe(input: &ProbeInput, worktree_has_file: &dyn Fn(&str) -> bool) -> Vec<Signal> {
    let paths: BTreeSet<&str> =
        input.repo.incoming.iter().flat_map(|c| c.changed_paths.iter().map(String::as_str)).collect();
    let mut signals = Vec::new();

    let lockfiles: Vec<&str> = paths.iter().copied().filter(|p| LOCKFILES.contains(&file_name(p))).collect();
    if !lockfiles.is_empty() {
        signals.push(signal(
            "lockfile-changed",
            Severity::Warning,
            lockfiles.len(),
            format!(
                "{} in incoming commits: {}",
                plural(lockfiles.len(), "lockfile changes", "lockfiles change"),
                listing(&lockfiles)
            ),
        ));
    }

    let manifests: Vec<(&str, &[&str])> = paths
        .iter()
        .filter_map(|p| MANIFESTS.iter().find(|(m, _)| *m == file_name(p)).map(|(_, locks)| (*p, *locks)))
        .collect();
    if !manifests.is_empty() {
        let names: Vec<&str> = manifests.iter().map(|(p, _)| *p).collect();
        signals.push(signal(
            "manifest-changed",
            Severity::Warning,
            names.len(),
            format!(
                "{} in incoming commits: {}",
                plural(names.len(), "manifest changes", "manifests change"),
                listing(&names)
            ),
        ));
    }

    let stale: Vec<&str> = manifests
        .iter()
        .filter(|(path, locks)| {
            let dir = parent(path);
            let lock_paths: Vec<String> = locks.iter().map(|l| join(dir, l)).collect();
            let lock_changed = lock_paths.iter().any(|l| paths.contains(l.as_str()));
            !lock_changed && lock_paths.iter().any(|l| is_safe_relative(l) && worktree_has_file(l))
        })
        .map(|(p, _)| *p)
        .collect();
    if !stale.is_empty() {
        signals.push(signal(
            "lockfile-stale",
            Severity::Info,
            stale.len(),
            format!(
                "{} without {} lockfile, which exists in the worktree and will be out of date: {}",
                plural(stale.len(), "manifest changes", "manifests change"),
                if stale.len() == 1 { "its" } else { "their" },
                listing(&stale)
            ),
        ));
    }

    let migrations: Vec<&str> = paths.iter().copied().filter(|p| is_migration(p)).collect();
    if !migrations.is_empty() {
        signals.push(signal(
            "migration-files",
            Severity::Critical,
            migrations.len(),
            format!(
                "{} in incoming commits: {}",
                plural(migrations.len(), "migration file changes", "migration files change"),
                listing(&migrations)
            ),
        ));
    }

    if paths.len() >= LARGE_CHANGE_PATHS {
        signals.push(signal(
            "large-change",
            Severity::Warning,
            paths.len(),
            format!(
                "large change: {} paths change in {} incoming commits (threshold {LARGE_CHANGE_PATHS})",
                paths.len(),
                input.repo.incoming.len()
            ),
        ));
    }

    signals
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_plugin_sdk::{CommitSummary, RepoFacts};

    fn input(commits: &[&[&str]]) -> ProbeInput {
        ProbeInput {
            repo: RepoFacts {
                name: "r".into(),
                branch: Some("main".into()),
                head: None,
                upstream_head: None,
                ahead: 0,
                behind: commits.len() as u64,
                dirty_paths: 0,
                untracked_paths: 0,
                operation: None,
                incoming: commits
                    .iter()
                    .enumerate()
                    .map(|(i, paths)| CommitSummary {
                        id: format!("{i:040}"),
                        summary: format!("commit {i}"),
                        changed_paths: paths.iter().map(|p| p.to_string()).collect(),
                    })
                    .collect(),
                depends_on: vec![],
            },
            logical_time: 0,
        }
    }

    fn keys(signals: &[Signal]) -> Vec<(&str, &str)> {
        signals.iter().map(|s| (s.key.as_str(), s.value.as_str())).collect()
    }

    #[test]
    fn nothing_for_plain_changes() {
        assert!(probe(&input(&[&["src/main.rs", "README.md"]]), &|_| true).is_empty());
    }

    #[test]
    fn lockfile_manifest_migration() {
        let s = probe(
            &input(&[&["Cargo.toml", "Cargo.lock"], &["web/package.json", "db/migrations/0002_x.rb", "schema.SQL"]]),
            &|_| false,
        );
        assert_eq!(keys(&s), vec![("lockfile-changed", "1"), ("manifest-changed", "2"), ("migration-files", "2")]);
        assert_eq!(s[0].message, "1 lockfile changes in incoming commits: Cargo.lock");
        assert_eq!(s[2].severity, Severity::Critical);
    }

    #[test]
    fn stale_lockfile_only_when_present_in_worktree() {
        let i = input(&[&["web/package.json", "go.mod", "go.sum"]]);
        assert_eq!(keys(&probe(&i, &|_| false)), vec![("lockfile-changed", "1"), ("manifest-changed", "2")]);
        let s = probe(&i, &|p| p == "web/yarn.lock");
        assert_eq!(keys(&s), vec![("lockfile-changed", "1"), ("manifest-changed", "2"), ("lockfile-stale", "1")]);
        assert_eq!(
            s[2].message,
            "1 manifest changes without its lockfile, which exists in the worktree and will be out of date: web/package.json"
        );
    }

    #[test]
    fn worktree_never_asked_about_unsafe_paths() {
        let i = input(&[&["../x/Cargo.toml", "/abs/Cargo.toml"]]);
        let s = probe(&i, &|p| panic!("asked about {p}"));
        assert_eq!(keys(&s), vec![("manifest-changed", "2")]);
    }

    #[test]
    fn large_change_and_listing() {
        let paths: Vec<String> = (0..120).map(|i| format!("src/f{i:03}.sql")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let s = probe(&input(&[&refs]), &|_| false);
        assert_eq!(keys(&s), vec![("migration-files", "120"), ("large-change", "120")]);
        assert!(s[0].message.ends_with("src/f009.sql and 110 more"));
    }
}
