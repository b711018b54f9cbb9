//! How the host runs `hermes tick`: a crontab line, or a systemd timer and
//! service pair, for one `HERMES_HOME` (`hermes cron print|install|uninstall`).
//!
//! The crontab line (one per workspace, found again by its trailing marker):
//!
//! ```text
//! * * * * * HERMES_HOME='/home/ops/.hermes' '/usr/local/bin/hermes' tick --quiet >>'/home/ops/.hermes/logs/tick.log' 2>&1 # hermes-tick:/home/ops/.hermes
//! ```
//!
//! Output and logs (`RUST_LOG`, default `warn`) go to `HERMES_HOME/logs/tick.log`
//! under cron; under systemd to the journal. The systemd pair is named
//! `hermes-tick-<first 12 hex digits of SHA-256(HERMES_HOME)>` so that two
//! workspaces on one host get two timers. Installing twice changes nothing;
//! uninstalling removes only this workspace's entry. The `crontab` and
//! `systemctl` programs can be replaced through `HERMES_CRONTAB` and
//! `HERMES_SYSTEMCTL` (tests use recording stand-ins, so that no test edits
//! the real crontab).

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable naming the `crontab` program.
pub const CRONTAB_ENV: &str = "HERMES_CRONTAB";
/// The environment variable naming the `systemctl` program.
pub const SYSTEMCTL_ENV: &str = "HERMES_SYSTEMCTL";

/// Errors installing or removing the entry.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot run `{program} {args}`: {source}")]
    Spawn { program: String, args: String, source: std::io::Error },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed { program: String, args: String, status: String, stderr: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("--every-minutes {0} is out of range; expected 1 to 59")]
    Every(u32),
}

/// What runs the tick, for which workspace, how often.
#[derive(Debug, Clone)]
pub struct TickEntry {
    /// Absolute `HERMES_HOME`.
    pub home: PathBuf,
    /// Absolute path of the `hermes` binary.
    pub binary: PathBuf,
    /// Minutes between ticks, 1-59 (slots at minutes divisible by it, as cron's `*/N`).
    pub every_minutes: u32,
}

/// The systemd pair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemdUnits {
    /// Unit name without suffix.
    pub name: String,
    pub service: String,
    pub timer: String,
}

impl TickEntry {
    pub fn new(home: PathBuf, binary: PathBuf, every_minutes: u32) -> Result<Self, InstallError> {
        if !(1..=59).contains(&every_minutes) {
            return Err(InstallError::Every(every_minutes));
        }
        Ok(Self { home, binary, every_minutes })
    }

    /// Where cron's output goes.
    pub fn log_file(&self) -> PathBuf {
        self.home.join("logs").join("tick.log")
    }

    /// The comment that ends this workspace's crontab line.
    pub fn marker(&self) -> String {
        format!("# hermes-tick:{}", self.home.display())
    }

    /// The crontab line (without newline). `%` is escaped, as cron turns a
    /// bare one into a newline.
    pub fn crontab_line(&self) -> String {
        let minutes = if self.every_minutes == 1 { "*".to_owned() } else { format!("*/{}", self.every_minutes) };
        let command = format!(
            "HERMES_HOME={} {} tick --quiet >>{} 2>&1",
            sh_quote(&self.home),
            sh_quote(&self.binary),
            sh_quote(&self.log_file())
        );
        format!("{minutes} * * * * {} {}", command.replace('%', "\\%"), self.marker())
    }

    /// The crontab with this workspace's line in place of any earlier one
    /// (other lines kept as they are, in order).
    pub fn crontab_with(&self, current: &str) -> String {
        let mut out = self.crontab_without(current);
        out.push_str(&self.crontab_line());
        out.push('\n');
        out
    }

    /// The crontab without this workspace's line.
    pub fn crontab_without(&self, current: &str) -> String {
        let marker = self.marker();
        let mut out = String::new();
        for line in current.lines().filter(|line| !line.trim_end().ends_with(&marker)) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The systemd service and timer.
    pub fn systemd_units(&self) -> SystemdUnits {
        let digest = Sha256::digest(self.home.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let name = format!("hermes-tick-{hex}");
        let home = unit_escape(&self.home.display().to_string());
        let service = format!(
            "[Unit]\n\
             Description=Hermes tick for {home}\n\
             Documentation=https://github.com/hermes/hermes/blob/main/docs/scheduler.md\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             Environment=\"HERMES_HOME={home}\"\n\
             ExecStart=\"{}\" tick\n\
             # 10: the cycle ran and a repository needs attention (recorded in the ledger); 11 stays a failure.\n\
             SuccessExitStatus=10\n",
            unit_escape(&self.binary.display().to_string()).replace('"', "\\\""),
        );
        let timer = format!(
            "[Unit]\n\
             Description=Run the Hermes tick for {home} every {} minute(s)\n\
             \n\
             [Timer]\n\
             OnCalendar=*-*-* *:00/{}:00\n\
             Persistent=true\n\
             AccuracySec=1s\n\
             Unit={name}.service\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            self.every_minutes, self.every_minutes,
        );
        SystemdUnits { name, service, timer }
    }
}

/// What an install or uninstall changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Installed,
    Updated,
    Unchanged,
    Removed,
    NotInstalled,
}

/// Installs (or updates) this workspace's crontab line.
pub fn install_crontab(entry: &TickEntry) -> Result<Change, InstallError> {
    std::fs::create_dir_all(entry.home.join("logs"))
        .map_err(|source| InstallError::Write { path: entry.home.join("logs"), source })?;
    let current = read_crontab()?;
    let wanted = entry.crontab_with(&current);
    if wanted == current {
        return Ok(Change::Unchanged);
    }
    let had = current.lines().any(|l| l.trim_end().ends_with(&entry.marker()));
    write_crontab(&wanted)?;
    Ok(if had { Change::Updated } else { Change::Installed })
}

/// Removes this workspace's crontab line.
pub fn uninstall_crontab(entry: &TickEntry) -> Result<Change, InstallError> {
    let current = read_crontab()?;
    let wanted = entry.crontab_without(&current);
    if wanted == current {
        return Ok(Change::NotInstalled);
    }
    write_crontab(&wanted)?;
    Ok(Change::Removed)
}

/// Writes the systemd pair into `unit_dir` and, when `enable`, reloads
/// systemd and enables the timer (`systemctl --user`).
pub fn install_systemd(entry: &TickEntry, unit_dir: &Path, enable: bool) -> Result<Change, InstallError> {
    let units = entry.systemd_units();
    let write_error = |source| InstallError::Write { path: unit_dir.to_owned(), source };
    std::fs::create_dir_all(unit_dir).map_err(write_error)?;
    let dir = Dir::open_ambient_dir(unit_dir, ambient_authority()).map_err(write_error)?;
    let mut changed = false;
    let mut existed = false;
    for (suffix, text) in [("service", &units.service), ("timer", &units.timer)] {
        let file = format!("{}.{suffix}", units.name);
        let path = unit_dir.join(&file);
        match std::fs::read_to_string(&path) {
            Ok(old) if old == *text => {
                existed = true;
                continue;
            }
            Ok(_) => existed = true,
            Err(_) => {}
        }
        crate::fsx::write_atomic(&dir, &file, text.as_bytes())
            .map_err(|source| InstallError::Write { path, source })?;
        changed = true;
    }
    if enable {
        systemctl(&["--user", "daemon-reload"])?;
        systemctl(&["--user", "enable", "--now", &format!("{}.timer", units.name)])?;
    }
    Ok(match (changed, existed) {
        (false, _) => Change::Unchanged,
        (true, true) => Change::Updated,
        (true, false) => Change::Installed,
    })
}

/// Disables the timer (when `enable`) and removes the pair from `unit_dir`.
pub fn uninstall_systemd(entry: &TickEntry, unit_dir: &Path, enable: bool) -> Result<Change, InstallError> {
    let units = entry.systemd_units();
    let paths = ["timer", "service"].map(|suffix| unit_dir.join(format!("{}.{suffix}", units.name)));
    if !paths.iter().any(|p| p.exists()) {
        return Ok(Change::NotInstalled);
    }
    if enable {
        systemctl(&["--user", "disable", "--now", &format!("{}.timer", units.name)])?;
    }
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(InstallError::Write { path, source }),
        }
    }
    if enable {
        systemctl(&["--user", "daemon-reload"])?;
    }
    Ok(Change::Removed)
}

/// The user's systemd unit directory: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn default_unit_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("systemd").join("user"))
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| default.to_owned())
}

fn read_crontab() -> Result<String, InstallError> {
    let program = program(CRONTAB_ENV, "crontab");
    let output = Command::new(&program)
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| InstallError::Spawn { program: program.clone(), args: "-l".into(), source })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    // `crontab -l` fails with "no crontab for USER" when there is none yet.
    if stderr.contains("no crontab") {
        return Ok(String::new());
    }
    Err(InstallError::Failed { program, args: "-l".into(), status: output.status.to_string(), stderr })
}

fn write_crontab(text: &str) -> Result<(), InstallError> {
    let program = program(CRONTAB_ENV, "crontab");
    let spawn_error = |source| InstallError::Spawn { program: program.clone(), args: "-".into(), source };
    let mut child = Command::new(&program)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(InstallError::Failed {
            program,
            args: "-".into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let program = program(SYSTEMCTL_ENV, "systemctl");
    let shown = args.join(" ");
    let output = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| InstallError::Spawn { program: program.clone(), args: shown.clone(), source })?;
    if !output.status.success() {
        return Err(InstallError::Failed {
            program,
            args: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Quotes a path for `sh` (single quotes; a `'` inside becomes `'\''`).
fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Escapes text for a systemd unit value: `%` is a specifier, `\` an escape.
fn unit_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(home: &str) -> TickEntry {
        TickEntry::new(home.into(), "/usr/local/bin/hermes".into(), 1).unwrap()
    }

    #[test]
    fn the_crontab_line_quotes_paths_and_escapes_percent() {
        let e = entry("/srv/it's 100%");
        let line = e.crontab_line();
        assert!(line.starts_with("* * * * * HERMES_HOME='/srv/it'\\''s 100\\%' '/usr/local/bin/hermes' tick --quiet"));
        assert!(line.contains(">>'/srv/it'\\''s 100\\%/logs/tick.log' 2>&1"), "{line}");
        assert!(line.ends_with("# hermes-tick:/srv/it's 100%"), "{line}");
        let e = TickEntry::new("/h".into(), "/b".into(), 5).unwrap();
        assert!(e.crontab_line().starts_with("*/5 * * * * "));
        assert!(matches!(TickEntry::new("/h".into(), "/b".into(), 60), Err(InstallError::Every(60))));
    }

    #[test]
    fn crontab_edits_touch_only_this_workspace() {
        let a = entry("/srv/a");
        let b = entry("/srv/b");
        let other = "MAILTO=ops\n0 3 * * * /usr/bin/backup\n";
        let with_a = a.crontab_with(other);
        assert_eq!(with_a, format!("{other}{}\n", a.crontab_line()));
        assert_eq!(a.crontab_with(&with_a), with_a, "installing twice changes nothing");
        let both = b.crontab_with(&with_a);
        assert_eq!(a.crontab_without(&both), format!("{other}{}\n", b.crontab_line()));
        assert_eq!(a.crontab_without(other), other);
    }

    #[test]
    fn systemd_units_differ_per_workspace_and_escape_specifiers() {
        let a = entry("/srv/a").systemd_units();
        let b = entry("/srv/b").systemd_units();
        assert_ne!(a.name, b.name);
        assert!(a.name.starts_with("hermes-tick-") && a.name.len() == "hermes-tick-".len() + 12);
        let p = entry("/srv/50%").systemd_units();
        assert!(p.service.contains("Environment=\"HERMES_HOME=/srv/50%%\""), "{}", p.service);
        assert!(
            a.timer.contains("OnCalendar=*-*-* *:00/1:00") && a.timer.contains(&format!("Unit={}.service", a.name))
        );
    }
}
