//! `hermes cron print|install|uninstall`: the crontab line or systemd timer
//! that runs `hermes tick` for this workspace (see [`crate::scheduler::install`]).

use super::{CliError, ErrorKind, ExitStatus, print_json};
use crate::scheduler::install::{self, Change, InstallError, TickEntry};
use crate::workspace::Workspace;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the crontab line (or, with --systemd, the service and timer units)
    Print(Args),
    /// Install the crontab line (or the systemd pair) for this workspace; installing twice changes nothing
    Install(Args),
    /// Remove this workspace's crontab line (or systemd pair); other entries stay
    Uninstall(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A systemd user timer and service instead of a crontab line
    #[arg(long)]
    systemd: bool,
    /// Where the systemd units go [default: $XDG_CONFIG_HOME/systemd/user or ~/.config/systemd/user]
    #[arg(long, value_name = "DIR", requires = "systemd")]
    unit_dir: Option<PathBuf>,
    /// Write or remove the unit files only; do not run `systemctl --user`
    #[arg(long, requires = "systemd")]
    no_enable: bool,
    /// Minutes between ticks (1-59; jobs keep their own schedules, the tick only looks for due ones)
    #[arg(long, default_value_t = 1, value_name = "N")]
    every_minutes: u32,
    /// The hermes binary cron runs [default: this one]
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(workspace: &Workspace, command: Command) -> Result<ExitStatus, CliError> {
    let (action, args) = match command {
        Command::Print(args) => ("print", args),
        Command::Install(args) => ("install", args),
        Command::Uninstall(args) => ("uninstall", args),
    };
    let entry = entry(workspace, &args)?;
    if action == "print" {
        return print(&entry, &args);
    }
    let (change, target) = if args.systemd {
        let dir = unit_dir(&args)?;
        let change = if action == "install" {
            install::install_systemd(&entry, &dir, !args.no_enable)
        } else {
            install::uninstall_systemd(&entry, &dir, !args.no_enable)
        }
        .map_err(|e| install_error(e, true))?;
        (change, dir.join(format!("{}.timer", entry.systemd_units().name)).display().to_string())
    } else {
        let change =
            if action == "install" { install::install_crontab(&entry) } else { install::uninstall_crontab(&entry) }
                .map_err(|e| install_error(e, false))?;
        (change, "the crontab".to_owned())
    };
    if args.json {
        print_json(&json!({ "change": change, "target": target, "log_file": log_file(&entry, &args) }))?;
    } else {
        let what = match change {
            Change::Installed => "installed in",
            Change::Updated => "updated in",
            Change::Unchanged => "already installed in",
            Change::Removed => "removed from",
            Change::NotInstalled => "was not installed in",
        };
        println!("hermes tick for {}: {what} {target}", entry.home.display());
        if matches!(change, Change::Installed | Change::Updated | Change::Unchanged) {
            println!("logs: {}", log_file(&entry, &args));
        }
    }
    Ok(ExitStatus::Success)
}

fn print(entry: &TickEntry, args: &Args) -> Result<ExitStatus, CliError> {
    let units = entry.systemd_units();
    if args.json {
        print_json(&json!({
            "home": entry.home,
            "binary": entry.binary,
            "every_minutes": entry.every_minutes,
            "crontab_line": entry.crontab_line(),
            "log_file": entry.log_file(),
            "systemd": units,
        }))?;
    } else if args.systemd {
        println!("# {}.service\n{}\n# {}.timer\n{}", units.name, units.service, units.name, units.timer);
    } else {
        println!("{}", entry.crontab_line());
    }
    Ok(ExitStatus::Success)
}

fn entry(workspace: &Workspace, args: &Args) -> Result<TickEntry, CliError> {
    let home = absolute(workspace.home())?;
    let binary = match &args.binary {
        Some(path) => absolute(path)?,
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| CliError::new(ErrorKind::Internal, format!("cannot tell where this hermes binary is: {e}")))?,
    };
    TickEntry::new(home, binary, args.every_minutes)
        .map_err(|e| CliError::new(ErrorKind::Usage, e.to_string()).hint("--every-minutes 5 ticks every five minutes"))
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path)
        .map_err(|e| CliError::new(ErrorKind::Usage, format!("cannot make {} absolute: {e}", path.display())))
}

fn unit_dir(args: &Args) -> Result<PathBuf, CliError> {
    args.unit_dir.clone().or_else(install::default_unit_dir).ok_or_else(|| {
        CliError::new(
            ErrorKind::Usage,
            "cannot tell where systemd user units go: neither XDG_CONFIG_HOME nor HOME is set",
        )
        .hint("pass --unit-dir DIR")
    })
}

fn log_file(entry: &TickEntry, args: &Args) -> String {
    if args.systemd {
        format!("journalctl --user -u {}.service", entry.systemd_units().name)
    } else {
        entry.log_file().display().to_string()
    }
}

fn install_error(e: InstallError, systemd: bool) -> CliError {
    let hint = match (&e, systemd) {
        (InstallError::Spawn { .. }, false) => {
            "install cron (e.g. `apt install cron`), or use `--systemd`; `hermes cron print` shows the line to add by hand"
        }
        (InstallError::Spawn { .. } | InstallError::Failed { .. }, true) => {
            "is there a systemd user session (`loginctl enable-linger $USER`)? `--no-enable` writes the unit files only"
        }
        _ => "`hermes cron print` shows the entry to add by hand",
    };
    CliError::new(ErrorKind::Internal, e.to_string()).hint(hint)
}
