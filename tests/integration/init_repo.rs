//! `hermes init`, `hermes repo add` and `hermes policy schema`.

use crate::common::{TestEnv, blessing};
use std::path::PathBuf;

#[test]
fn init_creates_config_and_state() {
    let env = TestEnv::new();
    assert!(!env.home().exists());
    let out = env.hermes(&["init", "--json"]);
    out.assert_status(0);
    assert_eq!(out.json()["policy"], env.policy_path().to_str().unwrap());
    assert!(env.policy_path().is_file());
    assert!(env.home().join("state").is_dir());
    assert!(env.home().join("config/runtime_upgrade_policies.schema.json").is_file());
    let policy = env.policy();
    assert_eq!(policy["format_version"], 1);
    assert_eq!(policy["repos"].as_array().map(Vec::len).unwrap_or(0), 0);
    env.hermes(&["policy", "check"]).assert_status(0);
    // The schema written next to the policy is the one `policy schema` prints.
    let schema = env.hermes(&["policy", "schema"]);
    schema.assert_status(0);
    assert_eq!(
        std::fs::read_to_string(env.home().join("config/runtime_upgrade_policies.schema.json")).unwrap(),
        schema.stdout
    );
}

#[test]
fn second_init_fails_and_leaves_the_policy_alone() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.add_repo("core", &[]);
    let before = std::fs::read(env.policy_path()).unwrap();
    let out = env.hermes(&["init"]);
    out.assert_status(3);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert!(out.stderr.contains(env.policy_path().to_str().unwrap()), "{}", out.stderr);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), before);
}

#[test]
fn commands_without_a_workspace_exit_3() {
    let env = TestEnv::new();
    for args in [&["policy", "check"][..], &["cycle"], &["plan"]] {
        let out = env.hermes(args);
        out.assert_status(3);
        assert!(out.stderr.contains("hermes init"), "hint at `hermes init`: {}", out.stderr);
    }
    assert!(!env.home().exists(), "nothing was created");
}

#[test]
fn repo_add_rejects_a_directory_that_is_not_a_git_repository() {
    let env = TestEnv::init();
    let plain = env.root().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let before = std::fs::read(env.policy_path()).unwrap();
    let out = env.hermes(&["repo", "add", plain.to_str().unwrap()]);
    out.assert_status(3);
    assert!(out.stderr.contains("not a git repository"), "{}", out.stderr);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), before);

    let missing = env.root().join("missing");
    env.hermes(&["repo", "add", missing.to_str().unwrap()]).assert_status(3);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), before);
}

#[test]
fn repo_add_rejects_a_bare_repository() {
    let env = TestEnv::init();
    env.make_upstream("core");
    let before = std::fs::read(env.policy_path()).unwrap();
    let out = env.hermes(&["repo", "add", env.upstream_path("core").to_str().unwrap()]);
    out.assert_status(3);
    assert!(out.stderr.contains("bare"), "{}", out.stderr);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), before);
}

#[test]
fn repo_add_rejects_an_unknown_dependency_and_a_duplicate_name() {
    let env = TestEnv::init();
    env.make_upstream("core");
    let before = std::fs::read(env.policy_path()).unwrap();
    let path = env.repo_path("core");
    let out = env.hermes(&["repo", "add", path.to_str().unwrap(), "--depends-on", "unknown"]);
    out.assert_status(3);
    assert!(out.stderr.contains("\"unknown\""), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), before);

    env.add_repo("core", &[]);
    let after_add = std::fs::read(env.policy_path()).unwrap();
    let out = env.hermes(&["repo", "add", path.to_str().unwrap()]);
    out.assert_status(3);
    assert!(out.stderr.contains("duplicate"), "{}", out.stderr);
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), after_add);
}

#[test]
fn repo_add_stores_paths_inside_the_workspace_relative_to_it() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("api");
    // Outside HERMES_HOME: a clone elsewhere in the temp dir.
    let outside = env.root().join("elsewhere");
    env.git(env.root(), &["clone", "--quiet", env.upstream_path("core").to_str().unwrap(), outside.to_str().unwrap()]);

    // Inside HERMES_HOME, named with a relative path from a different directory.
    let out = env.hermes_in(&env.home().join("repos"), &["repo", "add", "core", "--json"]);
    out.assert_status(0);
    assert_eq!(out.json()["path"], "repos/core");
    env.add_repo("api", &["core"]);
    env.hermes(&["repo", "add", outside.to_str().unwrap(), "--name", "outside", "--branch", "main"]).assert_status(0);

    let policy = env.policy();
    let repos = policy["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 3);
    assert_eq!(repos[0]["name"], "core");
    assert_eq!(repos[0]["path"], "repos/core");
    assert_eq!(repos[1]["name"], "api");
    assert_eq!(repos[1]["path"], "repos/api");
    assert_eq!(repos[1]["depends_on"], serde_json::json!(["core"]));
    assert_eq!(repos[2]["name"], "outside");
    assert_eq!(repos[2]["path"], outside.to_str().unwrap());
    assert_eq!(repos[2]["branch"], "main");
    // The starter comment survives rewriting.
    assert!(policy["$comment"].is_array());
    env.hermes(&["policy", "check"]).assert_status(0);

    // A relative path keeps working when the workspace moves.
    let moved = env.root().join("moved-home");
    std::fs::rename(env.home(), &moved).unwrap();
    let out = env.hermes(&["--home", moved.to_str().unwrap(), "policy", "check"]);
    out.assert_status(0);
    std::fs::rename(&moved, env.home()).unwrap();
}

#[test]
fn policy_schema_matches_the_committed_schema() {
    let committed =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/runtime_upgrade_policies.schema.json"));
    let env = TestEnv::new();
    let out = env.hermes(&["policy", "schema"]);
    out.assert_status(0);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("the schema is JSON");
    assert!(schema["properties"]["repos"].is_object(), "{schema:#}");
    if blessing() || !committed.exists() {
        std::fs::write(&committed, &out.stdout).expect("write the committed schema");
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap();
    if on_disk != out.stdout {
        let line = on_disk
            .lines()
            .zip(out.stdout.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(on_disk.lines().count().min(out.stdout.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}: committed {:?}, generated {:?}); run the tests with HERMES_BLESS=1 and commit it",
            committed.display(),
            line + 1,
            on_disk.lines().nth(line).unwrap_or("<end>"),
            out.stdout.lines().nth(line).unwrap_or("<end>")
        );
    }
}
