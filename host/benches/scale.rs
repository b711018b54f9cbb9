//! The scale benchmark: a workspace of N real repositories, each with a
//! local bare upstream two commits ahead, upgraded by `hermes cycle` (every
//! gate on, no canary command) and, side by side in the same run, by the
//! tools users run from cron today, each on its own identical copy of the
//! working trees:
//!
//! - `shell`: `for d in */; do git -C "$d" pull --ff-only -q; done`
//! - `mr`: myrepos, `mr -j <cores> update` (Debian package `myrepos`)
//! - `gita`: `gita pull` over every repository (PyPI package `gita`)
//!
//! A peer that is not installed is reported as skipped. For each tool it
//! prints wall time, CPU time (user + system, the tool and every process it
//! waited for, from `wait4`) and peak RSS, checks that every repository
//! ended at its upstream head, and then times the no-op `hermes tick`.
//!
//! Run (figures in docs/performance.md):
//!
//! ```sh
//! cargo bench -p hermes --bench scale -- --repos 100,500,1000
//! ```
//!
//! Options: `--repos N[,N...]` (default 100), `--peers shell,mr,gita`,
//! `--keep` (keep the workspaces and print where they are).

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository, Signature, Time};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What one tool's run cost.
struct Measure {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: i64,
    status: i32,
}

struct Options {
    sizes: Vec<usize>,
    peers: Vec<String>,
    keep: bool,
}

fn options() -> Options {
    let mut opts = Options { sizes: vec![100], peers: vec!["shell".into(), "mr".into(), "gita".into()], keep: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repos" => {
                let list = args.next().expect("--repos needs N[,N...]");
                opts.sizes = list.split(',').map(|n| n.trim().parse().expect("--repos: a number")).collect();
            }
            "--peers" => {
                let list = args.next().expect("--peers needs a list");
                opts.peers = list.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect();
            }
            "--keep" => opts.keep = true,
            // `cargo bench` passes `--bench`; criterion-style filters are ignored.
            _ => {}
        }
    }
    opts
}

fn main() {
    let opts = options();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# scale benchmark: {cores} cores, peers {:?}", opts.peers);
    println!();
    println!("| repos | tool | wall | CPU | peak RSS | all at upstream head |");
    println!("|------:|------|-----:|----:|---------:|:--------------------:|");
    for &n in &opts.sizes {
        let root = tempfile::Builder::new().prefix("hermes-scale-").tempdir().expect("temp dir");
        let root_path = root.path().to_owned();
        let heads = build_upstreams(&root_path, n);
        let mut rows = Vec::new();
        rows.push(("hermes", run_hermes(&root_path, n, &heads)));
        for peer in &opts.peers {
            let measured = match peer.as_str() {
                "shell" => Some(run_shell(&root_path, &heads)),
                "mr" => run_mr(&root_path, &heads, cores),
                "gita" => run_gita(&root_path, &heads),
                other => panic!("unknown peer {other:?}; expected shell, mr or gita"),
            };
            match measured {
                Some(m) => rows.push((peer.as_str(), m)),
                None => println!("| {n} | {peer} | skipped: not installed | | | |"),
            }
        }
        for (tool, (m, ok)) in &rows {
            println!(
                "| {n} | {tool} | {:.2} s | {:.2} s | {:.1} MiB | {} |",
                m.wall.as_secs_f64(),
                m.cpu.as_secs_f64(),
                m.peak_rss_kib as f64 / 1024.0,
                if *ok && m.status == 0 { "yes" } else { "NO" }
            );
        }
        let noop = noop_tick(&root_path);
        println!("| {n} | hermes no-op tick (median of 20) | {:.1} ms | | | |", noop.as_secs_f64() * 1000.0);
        if opts.keep {
            println!("kept: {}", root.keep().display());
        }
    }
}

/// Creates `n` bare upstreams (`up/rNNNN.git`) and their clones
/// (`clones/rNNNN`), each clone two commits behind. Returns the upstream heads.
fn build_upstreams(root: &Path, n: usize) -> Vec<Oid> {
    let started = Instant::now();
    let mut heads = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("r{i:04}");
        let bare = Repository::init_bare(root.join("up").join(format!("{name}.git"))).expect("init bare");
        let first = commit(&bare, None, "README.md", &format!("# {name}\n"), 1_700_000_000);
        bare.set_head("refs/heads/main").expect("set HEAD");
        let url = root.join("up").join(format!("{name}.git"));
        let clone = root.join("clones").join(&name);
        Repository::clone(url.to_str().expect("utf-8"), &clone).expect("clone");
        let second = commit(&bare, Some(first), "src/lib.rs", "pub fn one() {}\n", 1_700_000_100);
        heads.push(commit(&bare, Some(second), "CHANGELOG.md", "- two\n", 1_700_000_200));
    }
    eprintln!("built {n} upstreams and clones in {:.1} s", started.elapsed().as_secs_f64());
    heads
}

fn commit(repo: &Repository, parent: Option<Oid>, path: &str, contents: &str, time: i64) -> Oid {
    let sig = Signature::new("Scale Bench", "bench@hermes.invalid", &Time::new(time, 0)).expect("signature");
    let blob = repo.blob(contents.as_bytes()).expect("blob");
    let parent = parent.map(|p| repo.find_commit(p).expect("parent"));
    let base = match &parent {
        Some(c) => c.tree().expect("tree"),
        None => repo.find_tree(repo.treebuilder(None).expect("tb").write().expect("write")).expect("empty tree"),
    };
    let tree_id =
        TreeUpdateBuilder::new().upsert(path, blob, FileMode::Blob).create_updated(repo, &base).expect("tree");
    let tree = repo.find_tree(tree_id).expect("find tree");
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "bench commit", &tree, &parents).expect("commit")
}

/// A fresh copy of the clones for one tool: `work-<tool>/rNNNN`.
fn copy_clones(root: &Path, tool: &str) -> PathBuf {
    let dest = root.join(format!("work-{tool}"));
    let status = Command::new("cp").arg("-a").arg(root.join("clones")).arg(&dest).status().expect("cp");
    assert!(status.success(), "copying the clones failed");
    dest
}

/// Whether every clone in `dir` is at its upstream head.
fn all_at_head(dir: &Path, heads: &[Oid]) -> bool {
    heads.iter().enumerate().all(|(i, head)| {
        Repository::open(dir.join(format!("r{i:04}")))
            .ok()
            .and_then(|repo| repo.head().ok().and_then(|h| h.target()))
            .is_some_and(|at| at == *head)
    })
}

/// Runs `cmd` to completion and measures it with `wait4`.
fn measure(cmd: &mut Command) -> Measure {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let wall = started.elapsed();
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    std::mem::forget(child);
    Measure { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime), peak_rss_kib: usage.ru_maxrss, status: code }
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null())
}

fn hermes_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hermes")
}

fn run_hermes(root: &Path, n: usize, heads: &[Oid]) -> (Measure, bool) {
    let work = copy_clones(root, "hermes");
    let home = root.join("hermes-home");
    let init = Command::new(hermes_bin()).arg("--home").arg(&home).arg("init").output().expect("hermes init");
    assert!(init.status.success(), "hermes init: {}", String::from_utf8_lossy(&init.stderr));
    let repos: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "name": format!("r{i:04}"), "path": work.join(format!("r{i:04}")) }))
        .collect();
    let policy = serde_json::json!({ "format_version": 1, "repos": repos });
    std::fs::write(
        home.join("config").join("runtime_upgrade_policies.json"),
        serde_json::to_vec_pretty(&policy).expect("policy"),
    )
    .expect("write policy");
    let m = measure(quiet(Command::new(hermes_bin()).arg("--home").arg(&home).arg("cycle")));
    // Exit 10 would mean a repository was blocked: that is a failed run here.
    (m, all_at_head(&work, heads))
}

fn run_shell(root: &Path, heads: &[Oid]) -> (Measure, bool) {
    let work = copy_clones(root, "shell");
    let script = "for d in */; do git -C \"$d\" pull --ff-only -q || exit 1; done";
    let m = measure(quiet(Command::new("sh").arg("-c").arg(script).current_dir(&work)));
    (m, all_at_head(&work, heads))
}

fn installed(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success())
}

fn run_mr(root: &Path, heads: &[Oid], cores: usize) -> Option<(Measure, bool)> {
    if !installed("mr") {
        return None;
    }
    let work = copy_clones(root, "mr");
    let mut config = String::new();
    for i in 0..heads.len() {
        let name = format!("r{i:04}");
        let url = root.join("up").join(format!("{name}.git"));
        config.push_str(&format!(
            "[{}]\ncheckout = git clone '{}' '{name}'\n\n",
            work.join(&name).display(),
            url.display()
        ));
    }
    let config_path = root.join("mrconfig");
    std::fs::write(&config_path, config).expect("write mrconfig");
    let mut cmd = Command::new("mr");
    // --trust-all: a config outside ~/.mrtrust may only hold what mr deems
    // safe; this one is ours.
    cmd.arg("--trust-all").arg("-c").arg(&config_path).arg("-j").arg(cores.to_string()).arg("update");
    cmd.current_dir(&work).env("HOME", root);
    let m = measure(quiet(&mut cmd));
    Some((m, all_at_head(&work, heads)))
}

fn run_gita(root: &Path, heads: &[Oid]) -> Option<(Measure, bool)> {
    if !installed("gita") {
        return None;
    }
    let work = copy_clones(root, "gita");
    let config_home = root.join("gita-config");
    let mut add = Command::new("gita");
    add.arg("add").args((0..heads.len()).map(|i| work.join(format!("r{i:04}")))).env("XDG_CONFIG_HOME", &config_home);
    let added = quiet(&mut add).status().expect("gita add");
    assert!(added.success(), "gita add failed");
    let mut pull = Command::new("gita");
    pull.arg("pull").env("XDG_CONFIG_HOME", &config_home);
    let m = measure(quiet(&mut pull));
    Some((m, all_at_head(&work, heads)))
}

/// Median wall time of 20 `hermes tick` runs with nothing due (after a
/// `sync` and three warm-up runs).
fn noop_tick(root: &Path) -> Duration {
    let home = root.join("hermes-home");
    std::fs::write(
        home.join("config").join("jobs.json"),
        r#"{ "format_version": 1, "jobs": [ { "id": "up", "schedule": "@yearly", "kind": "upgrade-cycle" } ] }"#,
    )
    .expect("jobs.json");
    let tick = || measure(quiet(Command::new(hermes_bin()).arg("--home").arg(&home).arg("tick"))).wall;
    // The cycle before left much dirty data for writeback; flush it so the
    // ticks' fsyncs measure the tick, not the cycle's writeback.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    for _ in 0..3 {
        tick();
    }
    let mut times: Vec<Duration> = (0..20).map(|_| tick()).collect();
    times.sort();
    times[times.len() / 2]
}
