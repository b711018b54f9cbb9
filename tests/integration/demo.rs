//! `hermes demo`: builds real repositories and runs one cycle on them.

use crate::common::{TestEnv, decision_hash, row};
use std::path::Path;

fn git_in(env: &TestEnv, dir: &Path, args: &[&str]) -> String {
    env.git(dir, args)
}

#[test]
fn demo_upgrades_what_is_safe_and_leaves_the_rest() {
    let env = TestEnv::new();
    let demo = env.root().join("demo");
    let out = env.hermes(&["demo", "--dir", demo.to_str().unwrap()]);
    out.assert_status(0);
    assert!(out.stdout.contains("Hermes demo workspace"), "{}", out.stdout);
    let printed_hash = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("decision hash "))
        .unwrap_or_else(|| panic!("no decision hash in\n{}", out.stdout))
        .to_owned();

    let repo = |name: &str| demo.join("repos").join(name);
    let upstream = |name: &str| demo.join("upstream").join(format!("{name}.git"));
    let rev = |dir: &Path, rev: &str| git_in(&env, dir, &["rev-parse", rev]);

    for name in ["core", "api"] {
        assert_eq!(rev(&repo(name), "HEAD"), rev(&upstream(name), "main"), "{name} is at its upstream head");
        assert_eq!(git_in(&env, &repo(name), &["status", "--porcelain"]), "", "{name}");
        assert!(
            git_in(&env, &repo(name), &["reflog", "-1", "main"]).contains("hermes: fast-forward"),
            "{name} was moved by hermes"
        );
    }

    let readme = std::fs::read_to_string(repo("notes").join("README.md")).unwrap();
    assert_eq!(readme, "# notes\n\nlocal notes, not committed\n", "the local edit survives");
    assert_ne!(rev(&repo("notes"), "HEAD"), rev(&upstream("notes"), "main"), "notes was deferred");

    // tools: still its local commit on top of the clone point.
    let tools = repo("tools");
    assert_eq!(git_in(&env, &tools, &["log", "-1", "--format=%s"]), "local change");
    assert_eq!(rev(&tools, "HEAD~1"), rev(&upstream("tools"), "main~1"));
    // deploy: still at the clone point, one behind.
    assert_eq!(rev(&repo("deploy"), "HEAD"), rev(&upstream("deploy"), "main~1"));
    for name in ["tools", "deploy", "notes", "vendor", "web", "docs"] {
        let reflog = git_in(&env, &repo(name), &["reflog", "main"]);
        assert!(!reflog.contains("hermes:"), "{name} must not have been moved:\n{reflog}");
    }

    let verify = env.hermes(&["--home", demo.to_str().unwrap(), "verify"]);
    verify.assert_status(0);

    // The demo's commits are made at fixed times, so its first decision hash
    // is the same in any directory.
    let again = env.root().join("again");
    let out = env.hermes(&["demo", "--dir", again.to_str().unwrap(), "--json"]);
    out.assert_status(0);
    let report = out.json();
    assert_eq!(decision_hash(&report), printed_hash);
    let expect = [
        ("core", "upgraded", "behind-upstream"),
        ("api", "upgraded", "behind-upstream"),
        ("web", "noop", "up-to-date"),
        ("notes", "deferred", "dirty-worktree"),
        ("tools", "blocked", "diverged"),
        ("deploy", "blocked", "dependency-blocked"),
        ("vendor", "deferred", "fetch-network"),
        ("docs", "noop", "ahead-only"),
    ];
    for (name, outcome, code) in expect {
        assert_eq!(row(&report, name)["outcome"], outcome, "{name}: {report:#}");
        assert_eq!(row(&report, name)["reason_code"], code, "{name}");
    }
}

#[test]
fn demo_refuses_a_non_empty_directory() {
    let env = TestEnv::new();
    let dir = env.root().join("occupied");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"mine\n").unwrap();
    let out = env.hermes(&["demo", "--dir", dir.to_str().unwrap()]);
    out.assert_status(4);
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(std::fs::read(dir.join("keep.txt")).unwrap(), b"mine\n");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing was added");
}
