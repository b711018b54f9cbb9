//! `hermes cycle` and `hermes plan` on real repositories: what moves, what
//! stays untouched, how each condition is classified, and the decision hash.

use crate::common::{TestEnv, decision_hash, repo_order, row};
use serde_json::json;

#[test]
fn fast_forward_is_applied_and_visible_to_git() {
    let env = TestEnv::init();
    let initial = env.make_upstream("core");
    env.push_upstream_commit("core", "src/one.txt", "one\n");
    let target = env.push_upstream_commit("core", "src/two.txt", "two\n");
    env.add_repo("core", &[]);
    assert_eq!(env.head("core"), initial);

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(0);
    let report = out.json();
    let core = row(&report, "core");
    assert_eq!(core["outcome"], "upgraded", "{report:#}");
    assert_eq!(core["reason_code"], "behind-upstream");
    assert_eq!(core["behind"], 2);
    assert_eq!(core["head_before"], initial.as_str());
    assert_eq!(core["head_after"], target.as_str());

    let repo = env.repo_path("core");
    assert_eq!(env.head("core"), target);
    assert_eq!(env.git(&repo, &["rev-parse", "refs/heads/main"]), target);
    assert_eq!(env.git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(env.git(&repo, &["status", "--porcelain"]), "", "worktree and index match the new HEAD");
    assert_eq!(std::fs::read_to_string(repo.join("src/two.txt")).unwrap(), "two\n");
    let reflog = env.git(&repo, &["reflog", "-1"]);
    assert!(reflog.contains("hermes: fast-forward to"), "HEAD reflog should name hermes: {reflog}");
    let branch_reflog = env.git(&repo, &["reflog", "-1", "main"]);
    assert!(branch_reflog.contains("hermes: fast-forward to"), "{branch_reflog}");
}

#[test]
fn dirty_repo_is_deferred_and_left_byte_for_byte() {
    let env = TestEnv::init();
    env.make_upstream("notes");
    env.push_upstream_commit("notes", "src/a.txt", "a\n");
    env.add_repo("notes", &[]);
    let repo = env.repo_path("notes");
    let before = env.head("notes");
    let edited = b"# notes\n\nlocal edit, not committed\n\xff\x00binary tail".to_vec();
    std::fs::write(repo.join("README.md"), &edited).unwrap();
    std::fs::write(repo.join("scratch.txt"), b"untracked\n").unwrap();
    let status_before = env.git(&repo, &["status", "--porcelain"]);

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(0);
    let report = out.json();
    let notes = row(&report, "notes");
    assert_eq!(notes["recommendation"], "defer");
    assert_eq!(notes["outcome"], "deferred");
    assert_eq!(notes["reason_code"], "dirty-worktree");

    assert_eq!(std::fs::read(repo.join("README.md")).unwrap(), edited);
    assert_eq!(std::fs::read(repo.join("scratch.txt")).unwrap(), b"untracked\n");
    assert!(!repo.join("src/a.txt").exists(), "the upstream change must not be checked out");
    assert_eq!(env.head("notes"), before);
    assert_eq!(env.git(&repo, &["status", "--porcelain"]), status_before);
}

#[test]
fn untracked_file_alone_does_not_stop_an_upgrade_and_survives_it() {
    let env = TestEnv::init();
    env.make_upstream("core");
    let target = env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    let repo = env.repo_path("core");
    std::fs::write(repo.join("local.txt"), b"mine\n").unwrap();

    let (status, report) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(row(&report, "core")["outcome"], "upgraded", "{report:#}");
    assert_eq!(env.head("core"), target);
    assert_eq!(std::fs::read(repo.join("local.txt")).unwrap(), b"mine\n");
}

#[test]
fn diverged_repo_is_blocked_and_untouched() {
    let env = TestEnv::init();
    env.make_upstream("tools");
    env.push_upstream_commit("tools", "src/up.txt", "upstream\n");
    env.add_repo("tools", &[]);
    let local = env.commit_local("tools", "LOCAL.md", "local\n");

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(10);
    let report = out.json();
    let tools = row(&report, "tools");
    assert_eq!(tools["outcome"], "blocked");
    assert_eq!(tools["reason_code"], "diverged");
    assert_eq!(tools["ahead"], 1);
    assert_eq!(tools["behind"], 1);
    assert_eq!(env.head("tools"), local);
    assert_eq!(env.git(&env.repo_path("tools"), &["status", "--porcelain"]), "");
    assert!(!env.repo_path("tools").join("src/up.txt").exists());
}

#[test]
fn unreachable_remote_is_deferred_as_network_failure() {
    let env = TestEnv::init();
    env.make_upstream("vendor");
    env.add_repo("vendor", &[]);
    let before = env.head("vendor");
    env.git(&env.repo_path("vendor"), &["remote", "set-url", "origin", "http://127.0.0.1:9/x.git"]);

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(0);
    let vendor = row(&out.json(), "vendor").clone();
    assert_eq!(vendor["recommendation"], "defer", "{vendor:#}");
    assert_eq!(vendor["outcome"], "deferred");
    assert_eq!(vendor["reason_code"], "fetch-network");
    assert_eq!(env.head("vendor"), before);
}

/// Points `origin` of a fresh repository at `url`; asserts the cycle blocks
/// it with `fetch-not-found` and leaves it alone.
fn assert_remote_not_found(url: &str) {
    let env = TestEnv::init();
    env.make_upstream("gone");
    env.add_repo("gone", &[]);
    let before = env.head("gone");
    env.git(&env.repo_path("gone"), &["remote", "set-url", "origin", url]);

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(10);
    let gone = row(&out.json(), "gone").clone();
    assert_eq!(gone["recommendation"], "block", "{gone:#}");
    assert_eq!(gone["outcome"], "blocked");
    assert_eq!(gone["reason_code"], "fetch-not-found", "{gone:#}");
    assert_eq!(env.head("gone"), before);
}

#[test]
fn missing_remote_path_is_blocked_as_not_found() {
    assert_remote_not_found("/nonexistent/x.git");
}

#[test]
fn missing_remote_file_url_is_blocked_as_not_found() {
    assert_remote_not_found("file:///nonexistent/x.git");
}

#[test]
fn remote_directory_that_is_not_a_repository_is_blocked_as_not_found() {
    let env = TestEnv::new();
    let empty = env.root().join("empty.git");
    std::fs::create_dir(&empty).unwrap();
    assert_remote_not_found(empty.to_str().unwrap());
}

#[test]
fn policy_remote_missing_from_git_config_is_blocked() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    let before = env.head("core");
    env.edit_policy(|policy| {
        policy["repos"][0]["remotes"] = json!([{ "name": "nope", "role": "primary" }]);
    });

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(10);
    let core = row(&out.json(), "core").clone();
    assert_eq!(core["outcome"], "blocked", "{core:#}");
    assert_eq!(core["reason_code"], "missing-remote");
    assert!(core["reason"].as_str().unwrap().contains("nope"), "{core:#}");
    assert_eq!(env.head("core"), before);
}

#[test]
fn downstream_of_a_blocked_repo_is_blocked_and_untouched() {
    let env = TestEnv::init();
    env.make_upstream("tools");
    env.make_upstream("deploy");
    env.push_upstream_commit("tools", "src/up.txt", "upstream\n");
    env.push_upstream_commit("deploy", "src/up.txt", "upstream\n");
    env.add_repo("tools", &[]);
    env.add_repo("deploy", &["tools"]);
    env.commit_local("tools", "LOCAL.md", "local\n");
    let deploy_before = env.head("deploy");

    let out = env.hermes(&["cycle", "--json"]);
    out.assert_status(10);
    let report = out.json();
    assert_eq!(row(&report, "tools")["reason_code"], "diverged");
    let deploy = row(&report, "deploy");
    assert_eq!(deploy["behind"], 1, "deploy is behind on its own: {report:#}");
    assert_eq!(deploy["recommendation"], "block");
    assert_eq!(deploy["outcome"], "blocked");
    assert_eq!(deploy["reason_code"], "dependency-blocked");
    assert_eq!(env.head("deploy"), deploy_before);
    assert!(!env.repo_path("deploy").join("src/up.txt").exists());
}

#[test]
fn downstream_of_a_deferred_repo_is_deferred() {
    let env = TestEnv::init();
    env.make_upstream("lib");
    env.make_upstream("app");
    env.push_upstream_commit("lib", "src/a.txt", "a\n");
    env.push_upstream_commit("app", "src/a.txt", "a\n");
    env.add_repo("lib", &[]);
    env.add_repo("app", &["lib"]);
    std::fs::write(env.repo_path("lib").join("README.md"), "dirty\n").unwrap();
    let app_before = env.head("app");

    let (status, report) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(row(&report, "lib")["reason_code"], "dirty-worktree");
    assert_eq!(row(&report, "app")["outcome"], "deferred", "{report:#}");
    assert_eq!(row(&report, "app")["reason_code"], "dependency-deferred");
    assert_eq!(env.head("app"), app_before);
}

#[test]
fn dependencies_are_planned_and_upgraded_first() {
    let env = TestEnv::init();
    // Names chosen so that name order is the opposite of dependency order.
    for name in ["app", "mid", "zlib", "beta", "delta", "gamma", "alpha"] {
        env.make_upstream(name);
    }
    for name in ["app", "mid", "zlib", "beta", "delta", "gamma"] {
        env.push_upstream_commit(name, "src/new.txt", "new\n");
    }
    env.add_repo("zlib", &[]);
    env.add_repo("mid", &["zlib"]);
    env.add_repo("app", &["mid"]);
    env.add_repo("alpha", &[]); // up to date: noop
    env.add_repo("beta", &[]); // behind: upgrade
    env.add_repo("gamma", &[]); // diverged: block
    env.add_repo("delta", &[]); // dirty: defer
    env.commit_local("gamma", "LOCAL.md", "local\n");
    std::fs::write(env.repo_path("delta").join("README.md"), "dirty\n").unwrap();

    // Plan order is depth, then priority (upgrade, defer, block, noop), then name.
    let expected = ["beta", "zlib", "delta", "gamma", "alpha", "mid", "app"];
    let plan = env.hermes(&["plan", "--json"]);
    plan.assert_status(0);
    let plan = plan.json();
    assert_eq!(repo_order(&plan), expected, "{plan:#}");
    let keys: Vec<(u64, u64, String)> = plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let priority = ["upgrade", "defer", "block", "noop"]
                .iter()
                .position(|p| r["recommendation"] == *p)
                .expect("known recommendation") as u64;
            (r["depth"].as_u64().unwrap(), priority, r["repo"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "plan rows are sorted by (depth, priority, name)");
    assert_eq!(row(&plan, "zlib")["depth"], 0);
    assert_eq!(row(&plan, "mid")["depth"], 1);
    assert_eq!(row(&plan, "app")["depth"], 2);

    let (status, report) = env.cycle_json();
    assert_eq!(status, 10, "gamma is blocked");
    assert_eq!(repo_order(&report), expected);
    for name in ["zlib", "mid", "app", "beta"] {
        assert_eq!(row(&report, name)["outcome"], "upgraded", "{name}: {report:#}");
        assert_eq!(env.head(name), env.upstream_head(name));
    }
    // The ledger shows the order in which the upgrades happened.
    let upgraded: Vec<String> = env
        .ledger_events()
        .iter()
        .filter(|e| e["kind"] == "repo-upgraded")
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(upgraded, ["beta", "zlib", "mid", "app"]);
}

#[test]
fn second_cycle_is_all_noop_and_third_has_the_same_decision_hash() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("api");
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.push_upstream_commit("api", "src/a.txt", "a\n");
    env.add_repo("core", &[]);
    env.add_repo("api", &["core"]);

    let (status, first) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(row(&first, "core")["outcome"], "upgraded");
    assert_eq!(row(&first, "api")["outcome"], "upgraded");
    let heads = (env.head("core"), env.head("api"));

    let (status, second) = env.cycle_json();
    assert_eq!(status, 0);
    for name in ["core", "api"] {
        let r = row(&second, name);
        assert_eq!(r["outcome"], "noop", "{second:#}");
        assert_eq!(r["reason_code"], "up-to-date");
        assert_eq!(r["head_before"], r["head_after"]);
    }
    assert_ne!(decision_hash(&first), decision_hash(&second), "the first cycle had work to do");
    assert_eq!((env.head("core"), env.head("api")), heads);

    let (status, third) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(decision_hash(&third), decision_hash(&second));
    assert_ne!(third["tick"], second["tick"], "each cycle has its own tick");
    assert_eq!((env.head("core"), env.head("api")), heads);
}

#[test]
fn workspace_needing_nothing_has_a_stable_decision_hash() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("docs");
    env.add_repo("core", &[]);
    env.add_repo("docs", &["core"]);
    env.commit_local("docs", "LOCAL.md", "unpushed\n");

    let (status, first) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(row(&first, "core")["reason_code"], "up-to-date");
    assert_eq!(row(&first, "docs")["reason_code"], "ahead-only");
    let (status, second) = env.cycle_json();
    assert_eq!(status, 0);
    assert_eq!(decision_hash(&first), decision_hash(&second));
}

#[test]
fn plan_is_independent_of_the_current_directory_and_changes_nothing() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.make_upstream("api");
    env.add_repo("core", &[]);
    env.add_repo("api", &["core"]);
    // A first cycle creates the ledger and the views.
    env.hermes(&["cycle"]).assert_status(0);
    env.push_upstream_commit("core", "src/a.txt", "a\n");
    env.push_upstream_commit("api", "src/a.txt", "a\n");

    let state_dir = env.home().join("state");
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&state_dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let ledger_lines = env.ledger_lines().len();
    let state_before = snapshot();
    let policy_before = std::fs::read(env.policy_path()).unwrap();
    let heads = (env.head("core"), env.head("api"));

    let from_root = env.hermes_in(env.root(), &["plan", "--json"]);
    from_root.assert_status(0);
    let from_repo = env.hermes_in(&env.repo_path("api"), &["plan", "--json"]);
    from_repo.assert_status(0);
    // A relative --home, resolved against yet another current directory.
    let from_parent = env.hermes_in(env.home().parent().unwrap(), &["--home", "hermes", "plan", "--json"]);
    from_parent.assert_status(0);

    let (a, b, c) = (from_root.json(), from_repo.json(), from_parent.json());
    assert_eq!(row(&a, "core")["recommendation"], "upgrade", "{a:#}");
    assert_eq!(a["mode"], "plan");
    assert!(a["repos"].as_array().unwrap().iter().all(|r| r["outcome"].is_null()));
    assert_eq!(decision_hash(&a), decision_hash(&b));
    assert_eq!(decision_hash(&a), decision_hash(&c));
    assert_eq!(a["repos"], b["repos"]);

    assert_eq!(env.ledger_lines().len(), ledger_lines, "plan appends nothing to the ledger");
    assert_eq!(snapshot(), state_before, "plan writes no state file");
    assert_eq!(std::fs::read(env.policy_path()).unwrap(), policy_before);
    assert_eq!((env.head("core"), env.head("api")), heads);
    assert_eq!(env.git(&env.repo_path("core"), &["status", "--porcelain"]), "");

    // The cycle that follows decides exactly what the plan said.
    let (_, report) = env.cycle_json();
    assert_eq!(decision_hash(&report), decision_hash(&a));
}

#[test]
fn plan_no_fetch_does_not_see_unfetched_upstream_commits() {
    let env = TestEnv::init();
    env.make_upstream("core");
    env.add_repo("core", &[]);
    env.push_upstream_commit("core", "src/a.txt", "a\n");

    let no_fetch = env.hermes(&["plan", "--no-fetch", "--json"]);
    no_fetch.assert_status(0);
    assert_eq!(row(&no_fetch.json(), "core")["reason_code"], "up-to-date");
    let fetched = env.hermes(&["plan", "--json"]);
    fetched.assert_status(0);
    assert_eq!(row(&fetched.json(), "core")["reason_code"], "behind-upstream");
    // The fetch updated the remote-tracking ref, so --no-fetch now sees it too.
    let after = env.hermes(&["plan", "--no-fetch", "--json"]);
    assert_eq!(row(&after.json(), "core")["reason_code"], "behind-upstream");
    assert_eq!(after.json()["decision_hash"], fetched.json()["decision_hash"]);
}
