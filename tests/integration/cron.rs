//! `hermes cron print|install|uninstall` through the real binary. The
//! crontab and systemctl programs are recording stand-ins (real processes
//! behind `HERMES_CRONTAB` / `HERMES_SYSTEMCTL`), so no test edits the
//! machine's crontab; the installed crontab line itself is run through `sh`,
//! as cron would, and must perform a real tick.

use crate::common::{Output, TestEnv, hermes_bin};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A `crontab` stand-in keeping the table in `<dir>/crontab.txt`, and a
/// `systemctl` stand-in appending its arguments to `<dir>/systemctl.log`.
fn stand_ins(env: &TestEnv) -> (PathBuf, PathBuf) {
    let dir = env.root().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let crontab = dir.join("crontab");
    std::fs::write(
        &crontab,
        "#!/bin/sh\nstore=\"$(dirname \"$0\")/crontab.txt\"\ncase \"$1\" in\n  -l) if [ -f \"$store\" ]; then cat \"$store\"; else echo \"no crontab for tester\" >&2; exit 1; fi ;;\n  -) cat > \"$store\" ;;\n  *) echo \"unexpected arguments: $*\" >&2; exit 2 ;;\nesac\n",
    )
    .unwrap();
    let systemctl = dir.join("systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/systemctl.log\"\n").unwrap();
    for p in [&crontab, &systemctl] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (crontab, systemctl)
}

fn cron(env: &TestEnv, home: &Path, args: &[&str]) -> Output {
    let (crontab, systemctl) = stand_ins(env);
    let out = env
        .command(hermes_bin())
        .env("HERMES_HOME", home)
        .env("HERMES_CRONTAB", &crontab)
        .env("HERMES_SYSTEMCTL", &systemctl)
        .arg("cron")
        .args(args)
        .output()
        .expect("run hermes cron");
    Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn crontab_text(env: &TestEnv) -> String {
    std::fs::read_to_string(env.root().join("bin/crontab.txt")).unwrap_or_default()
}

#[test]
fn crontab_install_is_idempotent_keeps_other_lines_and_runs_a_real_tick() {
    let env = TestEnv::init_cold();
    let home = env.home().to_owned();
    stand_ins(&env);
    std::fs::write(env.root().join("bin/crontab.txt"), "MAILTO=ops\n0 3 * * * /usr/bin/backup\n").unwrap();

    let printed = cron(&env, &home, &["print"]);
    printed.assert_status(0);
    let line = printed.stdout.trim_end().to_owned();
    let bin = std::fs::canonicalize(hermes_bin()).unwrap();
    assert_eq!(
        line,
        format!(
            "* * * * * HERMES_HOME='{h}' '{b}' tick --quiet >>'{h}/logs/tick.log' 2>&1 # hermes-tick:{h}",
            h = home.display(),
            b = bin.display()
        )
    );

    let out = cron(&env, &home, &["install"]);
    out.assert_status(0);
    assert!(out.stdout.contains("installed in the crontab"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("logs: {}/logs/tick.log", home.display())), "{}", out.stdout);
    assert_eq!(crontab_text(&env), format!("MAILTO=ops\n0 3 * * * /usr/bin/backup\n{line}\n"));
    assert!(home.join("logs").is_dir(), "install creates the log directory");
    let again = cron(&env, &home, &["install", "--json"]);
    again.assert_status(0);
    assert_eq!(again.json()["change"], "unchanged");
    assert_eq!(crontab_text(&env).matches("hermes-tick:").count(), 1);

    // A second workspace gets its own line; a new interval updates only ours.
    let other = env.root().join("other home");
    cron(&env, &other, &["install"]).assert_status(0);
    let updated = cron(&env, &home, &["install", "--every-minutes", "5", "--json"]);
    updated.assert_status(0);
    assert_eq!(updated.json()["change"], "updated");
    let table = crontab_text(&env);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains(&format!("*/5 * * * * HERMES_HOME='{}'", home.display())), "{table}");
    assert!(table.contains("HERMES_HOME='") && table.contains(&format!("# hermes-tick:{}", other.display())));

    // The installed line works when cron hands it to sh: a real tick, logged.
    let ours = table.lines().find(|l| l.ends_with(&format!("# hermes-tick:{}", home.display()))).unwrap();
    let command: String = ours.splitn(6, ' ').nth(5).unwrap().to_owned();
    let status = env.command("sh").arg("-c").arg(&command).status().unwrap();
    assert!(status.success());
    let kinds: Vec<String> =
        env.ledger_events().iter().map(|e| e["kind"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(kinds.iter().any(|k| k == "tick-started") && kinds.iter().any(|k| k == "tick-finished"), "{kinds:?}");
    let log = std::fs::read_to_string(home.join("logs/tick.log")).unwrap();
    assert_eq!(log, "", "a quiet tick with nothing due writes nothing");

    // Uninstall removes only this workspace's line; twice is harmless.
    let out = cron(&env, &home, &["uninstall"]);
    out.assert_status(0);
    assert!(out.stdout.contains("removed from the crontab"), "{}", out.stdout);
    let table = crontab_text(&env);
    assert!(table.starts_with("MAILTO=ops\n0 3 * * * /usr/bin/backup\n"), "{table}");
    assert!(!table.contains(&format!("# hermes-tick:{}\n", home.display())), "{table}");
    assert_eq!(table.lines().count(), 3);
    let out = cron(&env, &home, &["uninstall", "--json"]);
    out.assert_status(0);
    assert_eq!(out.json()["change"], "not-installed");
}

#[test]
fn systemd_units_are_written_enabled_and_removed() {
    let env = TestEnv::init_cold();
    let home = env.home().to_owned();
    let units = env.root().join("units");
    let unit_dir = units.to_str().unwrap();
    let out = cron(&env, &home, &["install", "--systemd", "--unit-dir", unit_dir]);
    out.assert_status(0);
    let printed = cron(&env, &home, &["print", "--json"]).json();
    let name = printed["systemd"]["name"].as_str().unwrap().to_owned();
    let service = std::fs::read_to_string(units.join(format!("{name}.service"))).unwrap();
    let timer = std::fs::read_to_string(units.join(format!("{name}.timer"))).unwrap();
    assert_eq!(service, printed["systemd"]["service"].as_str().unwrap());
    assert!(service.contains(&format!("Environment=\"HERMES_HOME={}\"", home.display())), "{service}");
    assert!(service.contains(" tick\n") && service.contains("Type=oneshot"), "{service}");
    assert!(timer.contains("OnCalendar=*-*-* *:00/1:00") && timer.contains("Persistent=true"), "{timer}");
    assert!(out.stdout.contains(&format!("journalctl --user -u {name}.service")), "{}", out.stdout);
    let calls = std::fs::read_to_string(env.root().join("bin/systemctl.log")).unwrap();
    assert_eq!(calls, format!("--user daemon-reload\n--user enable --now {name}.timer\n"));

    let again = cron(&env, &home, &["install", "--systemd", "--unit-dir", unit_dir, "--no-enable", "--json"]);
    assert_eq!(again.json()["change"], "unchanged");
    let out = cron(&env, &home, &["uninstall", "--systemd", "--unit-dir", unit_dir]);
    out.assert_status(0);
    assert!(!units.join(format!("{name}.service")).exists() && !units.join(format!("{name}.timer")).exists());
    let calls = std::fs::read_to_string(env.root().join("bin/systemctl.log")).unwrap();
    assert!(calls.ends_with(&format!("--user disable --now {name}.timer\n--user daemon-reload\n")), "{calls}");
}

#[test]
fn a_missing_crontab_program_is_a_clear_error() {
    let env = TestEnv::init_cold();
    let out = env
        .command(hermes_bin())
        .env("HERMES_CRONTAB", env.root().join("no-such-crontab"))
        .args(["cron", "install"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run `") && stderr.contains("no-such-crontab -l`"), "{stderr}");
    assert!(stderr.contains("hint: install cron"), "{stderr}");
    let out = env.hermes(&["cron", "print", "--every-minutes", "0"]);
    out.assert_status(2);
    assert!(out.stderr.contains("--every-minutes 0 is out of range; expected 1 to 59"), "{}", out.stderr);
}
