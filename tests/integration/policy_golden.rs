//! Golden-file tests for invalid policies.
//!
//! `tests/golden/policy/<case>.json` is written as the workspace's
//! `config/runtime_upgrade_policies.json`; `hermes policy check` must exit 3
//! with exactly the stderr in `<case>.stderr` (the workspace path replaced by
//! `$HERMES_HOME`). Run with `HERMES_BLESS=1` to rewrite the `.stderr` files
//! after an intended change of wording, and review the diff.

use crate::common::{TestEnv, check_golden};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/policy"))
}

/// Every case: (name, policy file path).
fn cases() -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden/policy exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases are missing: {cases:?}");
    cases
}

/// A fresh workspace whose policy is `case`; `repos/a`, `repos/b` and
/// `repos/c` exist as git repositories so that only the intended error fires.
fn workspace_with_policy(case: &Path) -> TestEnv {
    let env = TestEnv::init();
    for name in ["a", "b", "c"] {
        let path = env.repo_path(name);
        env.git(env.root(), &["init", "--quiet", "-b", "main", path.to_str().unwrap()]);
    }
    std::fs::copy(case, env.policy_path()).expect("write the case's policy");
    env
}

/// Cases whose message does not yet say what was expected (reported as
/// weak messages; remove a case from here once its message improves).
const NO_EXPECTED: &[&str] = &[];

fn normalize(stderr: &str, env: &TestEnv) -> String {
    stderr.replace(env.home().to_str().unwrap(), "$HERMES_HOME")
}

#[test]
fn invalid_policies_match_their_golden_stderr() {
    let mut failures = Vec::new();
    for (name, case) in cases() {
        let env = workspace_with_policy(&case);
        let out = env.hermes(&["policy", "check"]);
        if out.status != 3 {
            failures.push(format!("{name}: exit code {} instead of 3\n{}{}", out.status, out.stdout, out.stderr));
            continue;
        }
        let actual = normalize(&out.stderr, &env);
        check_golden(&name, &case.with_extension("stderr"), &actual, &mut failures);
        // Whatever the wording, every message must say where and what.
        if !actual.contains("$HERMES_HOME/config/runtime_upgrade_policies.json") {
            failures.push(format!("{name}: the message does not name the policy file:\n{actual}"));
        }
        if !actual.contains("\n  at ") {
            failures.push(format!("{name}: the message does not name a JSON path:\n{actual}"));
        }
        if !actual.contains("expected") && !NO_EXPECTED.contains(&name.as_str()) {
            failures.push(format!("{name}: the message does not say what was expected:\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{} golden failures:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn golden_files_have_no_orphans() {
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "stderr") {
            assert!(path.with_extension("json").exists(), "{} has no .json case", path.display());
        }
    }
}

#[test]
fn invalid_policies_stop_every_command_that_reads_the_policy() {
    for (name, case) in cases() {
        let env = workspace_with_policy(&case);
        let policy = std::fs::read(env.policy_path()).unwrap();
        for args in [&["cycle"][..], &["plan"], &["policy", "check", "--json"]] {
            let out = env.hermes(args);
            assert_eq!(out.status, 3, "{name}: hermes {args:?}\n{}{}", out.stdout, out.stderr);
        }
        assert!(!env.ledger_path().exists(), "{name}: a cycle on a bad policy writes no ledger");
        assert_eq!(std::fs::read(env.policy_path()).unwrap(), policy, "{name}: the policy is not rewritten");
    }
}

#[test]
fn valid_policy_passes_the_check() {
    let env = TestEnv::init();
    let out = env.hermes(&["policy", "check", "--json"]);
    out.assert_status(0);
    let json = out.json();
    assert_eq!(json["repos"].as_array().unwrap().len(), 0);
    assert_eq!(json["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn policy_that_is_an_array_is_rejected() {
    // serde would accept a struct written as an array of its fields.
    for text in [r#"[null, null, 1, {"timeout_secs": 60}, []]"#, r#"[]"#] {
        let env = TestEnv::init();
        std::fs::write(env.policy_path(), text).unwrap();
        let out = env.hermes(&["policy", "check"]);
        out.assert_status(3);
        assert!(out.stderr.contains("object"), "the message says an object was expected: {}", out.stderr);
    }
}
