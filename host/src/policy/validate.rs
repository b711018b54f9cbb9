//! Checks on a parsed policy that its types cannot express.

use super::{POLICY_FORMAT_VERSION, Policy, PolicyError, RemoteRole};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Validates `policy` (read from `path`, repo paths relative to `home`).
pub fn validate(policy: &Policy, path: &Path, home: &Path) -> Result<(), PolicyError> {
    let fail = |json_path: String, problem: String| PolicyError::Invalid { path: path.to_owned(), json_path, problem };
    if policy.format_version == 0 || policy.format_version > POLICY_FORMAT_VERSION {
        return Err(fail(
            "format_version".into(),
            format!(
                "unsupported format version {}; expected {POLICY_FORMAT_VERSION} (or lower)",
                policy.format_version
            ),
        ));
    }
    if !(1..=3600).contains(&policy.fetch.timeout_secs) {
        return Err(fail(
            "fetch.timeout_secs".into(),
            format!("{} is out of range; expected 1 to 3600 seconds", policy.fetch.timeout_secs),
        ));
    }
    let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, repo) in policy.repos.iter().enumerate() {
        if let Some(problem) = name_problem(&repo.name) {
            return Err(fail(format!("repos[{i}].name"), problem));
        }
        if let Some(first) = first_index.insert(&repo.name, i) {
            return Err(fail(
                format!("repos[{i}].name"),
                format!("duplicate repository name {:?} (first at repos[{first}]); expected unique names", repo.name),
            ));
        }
    }
    for (i, repo) in policy.repos.iter().enumerate() {
        if repo.path.trim().is_empty() {
            return Err(fail(format!("repos[{i}].path"), "empty; expected the path of a git working tree".into()));
        }
        let resolved = repo.resolved_path(home);
        if !resolved.is_dir() {
            return Err(fail(
                format!("repos[{i}].path"),
                format!(
                    "{} does not exist or is not a directory; expected the path of a git working tree (absolute or relative to HERMES_HOME)",
                    resolved.display()
                ),
            ));
        }
        if repo.branch.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err(fail(
                format!("repos[{i}].branch"),
                "empty; expected a branch name or no `branch` member".into(),
            ));
        }
        let mut seen_deps = BTreeSet::new();
        for (k, dep) in repo.depends_on.iter().enumerate() {
            let at = format!("repos[{i}].depends_on[{k}]");
            if dep == &repo.name {
                return Err(fail(
                    at,
                    format!("repository {:?} depends on itself; expected the names of other repositories", repo.name),
                ));
            }
            if !first_index.contains_key(dep.as_str()) {
                let known: Vec<&str> = policy.repos.iter().map(|r| r.name.as_str()).collect();
                return Err(fail(
                    at,
                    format!("unknown repository {dep:?}; expected one of the names in `repos`: {}", known.join(", ")),
                ));
            }
            if !seen_deps.insert(dep) {
                return Err(fail(at, format!("{dep:?} is listed twice")));
            }
        }
        let mut remote_names = BTreeSet::new();
        let mut primaries = 0;
        for (k, remote) in repo.remotes.iter().enumerate() {
            if remote.name.trim().is_empty() {
                return Err(fail(format!("repos[{i}].remotes[{k}].name"), "empty; expected a git remote name".into()));
            }
            if !remote_names.insert(&remote.name) {
                return Err(fail(
                    format!("repos[{i}].remotes[{k}].name"),
                    format!("remote {:?} is listed twice", remote.name),
                ));
            }
            if remote.role == RemoteRole::Primary {
                primaries += 1;
                if primaries > 1 {
                    return Err(fail(
                        format!("repos[{i}].remotes[{k}].role"),
                        "a second `primary` remote; expected at most one primary per repository".into(),
                    ));
                }
            }
        }
    }
    if let Err(e) = policy.resources.validate() {
        return Err(fail(format!("resources.{}", e.field), e.problem));
    }
    if let Err(e) = policy.remote_health.validate() {
        return Err(fail(format!("remote_health.{}", e.field), e.problem));
    }
    if let Some((field, problem)) = policy.coordination.problem() {
        return Err(fail(format!("coordination.{field}"), problem));
    }
    if let Some((field, problem)) = policy.metrics.problem() {
        return Err(fail(format!("metrics.{field}"), problem));
    }
    let mut commands: Vec<(String, &crate::process::CommandSpec)> = Vec::new();
    commands.extend(policy.checks.canary.iter().map(|c| ("checks.canary".to_owned(), c)));
    commands.extend(policy.checks.health.iter().map(|c| ("checks.health".to_owned(), c)));
    for (i, repo) in policy.repos.iter().enumerate() {
        commands.extend(repo.canary.iter().map(|c| (format!("repos[{i}].canary"), c)));
        commands.extend(repo.health.iter().map(|c| (format!("repos[{i}].health"), c)));
    }
    for (at, command) in &commands {
        if command.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(fail(format!("{at}.argv"), "empty; expected [program, args...]".into()));
        }
        if !(1..=86_400).contains(&command.timeout_secs) {
            return Err(fail(
                format!("{at}.timeout_secs"),
                format!("{} is out of range; expected 1 to 86400 seconds", command.timeout_secs),
            ));
        }
    }
    // A lease must outlive the checks it covers (the first of equal
    // timeouts is named).
    let longest = |kind: &str| {
        let mut longest: Option<(String, u64)> = None;
        for (at, command) in commands.iter().filter(|(at, _)| at.ends_with(kind)) {
            if longest.as_ref().is_none_or(|(_, secs)| command.timeout_secs > *secs) {
                longest = Some((format!("{at}.timeout_secs"), command.timeout_secs));
            }
        }
        longest
    };
    let (canary, health) = (longest(".canary"), longest(".health"));
    let (canary, health) =
        (canary.as_ref().map(|(at, s)| (at.as_str(), *s)), health.as_ref().map(|(at, s)| (at.as_str(), *s)));
    if let Some((field, problem)) = policy.coordination.ttl_problem(canary, health) {
        return Err(fail(format!("coordination.{field}"), problem));
    }
    for kind in ["repo-probe", "risk-scorer", "federation-selector"] {
        let Some(plugin) = policy.plugins.get(kind) else { continue };
        let at = |field: &str| format!("plugins.{kind}.{field}");
        match (&plugin.path, &plugin.sha256) {
            (Some(_), None) => {
                return Err(fail(
                    at("sha256"),
                    "missing; a plugin file must be pinned by its SHA-256 (see `hermes plugin inspect FILE`)".into(),
                ));
            }
            (None, Some(_)) => return Err(fail(at("path"), "missing; `sha256` pins a file given by `path`".into())),
            (_, Some(digest))
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
            {
                return Err(fail(
                    at("sha256"),
                    format!("{digest:?} is not a SHA-256; expected 64 lower-case hex digits"),
                ));
            }
            _ => {}
        }
        if plugin.fuel == Some(0) {
            return Err(fail(at("fuel"), "0; expected a positive fuel budget".into()));
        }
        if plugin.memory_mib.is_some_and(|m| !(1..=256).contains(&m)) {
            return Err(fail(
                at("memory_mib"),
                format!("{} is out of range; expected 1 to 256", plugin.memory_mib.unwrap_or(0)),
            ));
        }
        if plugin.deadline_ms.is_some_and(|d| !(1..=600_000).contains(&d)) {
            return Err(fail(at("deadline_ms"), "out of range; expected 1 to 600000 milliseconds".into()));
        }
    }
    if let Some((i, cycle)) = find_cycle(policy) {
        return Err(fail(
            format!("repos[{i}].depends_on"),
            format!("dependency cycle {}; expected dependencies to form no cycle", cycle.join(" -> ")),
        ));
    }
    Ok(())
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty; expected a repository name".into());
    }
    if name.len() > 64 {
        return Some(format!("{name:?} is longer than 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) || name.starts_with('.') {
        return Some(format!(
            "{name:?} is not a valid name; expected letters, digits, '.', '_' and '-', not starting with '.'"
        ));
    }
    None
}

/// The first dependency cycle in policy order: the index of the repo it
/// starts from and the names along it, ending where it began.
fn find_cycle(policy: &Policy) -> Option<(usize, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let index: BTreeMap<&str, usize> = policy.repos.iter().enumerate().map(|(i, r)| (r.name.as_str(), i)).collect();
    let mut marks = vec![Mark::New; policy.repos.len()];
    for start in 0..policy.repos.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: stack of (repo index, next dependency to visit).
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::OnPath;
        while let Some((node, next)) = stack.last_mut() {
            let deps = &policy.repos[*node].depends_on;
            if *next == deps.len() {
                marks[*node] = Mark::Done;
                stack.pop();
                continue;
            }
            let dep = index[deps[*next].as_str()];
            *next += 1;
            match marks[dep] {
                Mark::New => {
                    marks[dep] = Mark::OnPath;
                    stack.push((dep, 0));
                }
                Mark::OnPath => {
                    let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| policy.repos[*n].name.clone()).collect();
                    cycle.push(policy.repos[dep].name.clone());
                    return Some((dep, cycle));
                }
                Mark::Done => {}
            }
        }
    }
    None
}
