//! Running external commands: structured argv (never a shell), a timeout
//! that kills the whole process group, bounded captured output, and a
//! truthful account of how the command ended (exit code, signal, timeout).
//!
//! Used for canary and health checks, and for script jobs.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes kept of stdout and of stderr (the last ones).
pub const OUTPUT_TAIL: usize = 8 * 1024;

/// A command to run, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments; the program is looked up on PATH when it has
    /// no `/`. No shell is involved: spaces, quotes and `$(...)` reach the
    /// program unchanged.
    pub argv: Vec<String>,
    /// Seconds before the command and all its children are killed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    300
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub argv: Vec<String>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Could not be started at all (message).
    pub spawn_error: Option<String>,
    pub duration_ms: u64,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

impl CommandOutcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line for reasons and logs.
    pub fn describe(&self) -> String {
        match (&self.spawn_error, self.timed_out, self.exit_code, self.signal) {
            (Some(e), ..) => format!("could not start {:?}: {e}", self.argv.first().map_or("", String::as_str)),
            (None, true, ..) => format!("timed out after {} ms and was killed", self.duration_ms),
            (None, false, Some(code), _) => format!("exited with code {code}"),
            (None, false, None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "ended in an unknown way".to_owned(),
        }
    }
}

/// Runs `spec` in `dir` with extra environment `env`; never fails, the
/// outcome says what happened.
pub fn run(spec: &CommandSpec, dir: &Path, env: &[(&str, &str)]) -> CommandOutcome {
    let started = Instant::now();
    let mut outcome = CommandOutcome {
        argv: spec.argv.clone(),
        exit_code: None,
        signal: None,
        timed_out: false,
        spawn_error: None,
        duration_ms: 0,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
    };
    let Some((program, args)) = spec.argv.split_first() else {
        outcome.spawn_error = Some("empty argv".into());
        return outcome;
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            outcome.spawn_error = Some(e.to_string());
            return outcome;
        }
    };
    let pgid = child.id() as i32;
    let readers = [child.stdout.take().map(tail_reader), None, child.stderr.take().map(tail_reader)];
    let deadline = started + Duration::from_secs(spec.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                outcome.timed_out = true;
                // SAFETY: signalling our own child's process group.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    // Children that outlived the leader keep the pipes open; end them too.
    // SAFETY: as above; a group that no longer exists is harmless.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    if let Some(status) = status {
        outcome.exit_code = status.code();
        outcome.signal = status.signal();
    }
    let [stdout, _, stderr] = readers;
    outcome.stdout_tail = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    outcome.stderr_tail = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    outcome
}

fn tail_reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * OUTPUT_TAIL {
                kept.drain(..kept.len() - OUTPUT_TAIL);
            }
        }
        if kept.len() > OUTPUT_TAIL {
            kept.drain(..kept.len() - OUTPUT_TAIL);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], timeout_secs: u64) -> CommandSpec {
        CommandSpec { argv: argv.iter().map(|s| (*s).to_owned()).collect(), timeout_secs }
    }

    #[test]
    fn arguments_reach_the_program_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&spec(&["printf", "%s|", "a b", "\"q\"", "$(id)"], 10), dir.path(), &[]);
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout_tail, "a b|\"q\"|$(id)|");
    }

    #[test]
    fn exit_codes_and_signals_are_truthful() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&spec(&["sh", "-c", "exit 3"], 10), dir.path(), &[]);
        assert_eq!((out.exit_code, out.signal, out.success()), (Some(3), None, false));
        let out = run(&spec(&["sh", "-c", "kill -TERM $$"], 10), dir.path(), &[]);
        assert_eq!((out.exit_code, out.signal), (None, Some(libc::SIGTERM)));
        let out = run(&spec(&["/nonexistent/program"], 10), dir.path(), &[]);
        assert!(out.spawn_error.is_some() && !out.success());
    }

    #[test]
    fn a_hanging_command_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        let script = format!("(sleep 3; touch {}) & sleep 60", marker.display());
        let out = run(&spec(&["sh", "-c", &script], 1), dir.path(), &[]);
        assert!(out.timed_out && !out.success(), "{out:?}");
        std::thread::sleep(Duration::from_secs(4));
        assert!(!marker.exists(), "the background child outlived the timeout");
    }
}
