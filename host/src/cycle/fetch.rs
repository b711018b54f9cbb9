//! Fetching from a repository's selected remote, and classifying failures.
//!
//! A fetch never prompts: credentials come only from a running ssh-agent or
//! a configured git credential helper, and a request for anything else fails
//! as `auth`. A fetch is bounded by the policy's timeout, enforced both by
//! libgit2's server timeouts and by aborting the transfer once the deadline
//! has passed.

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, RemoteCallbacks, Repository};
use serde::{Deserialize, Serialize};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Why a fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchFailureClass {
    /// Credentials missing or refused (permanent).
    Auth,
    /// The remote repository does not exist (permanent).
    NotFound,
    /// Connection refused, host unreachable, name resolution failed (transient).
    Network,
    /// The fetch took longer than the policy allows (transient).
    Timeout,
    /// The remote sent data that is corrupt or breaks the protocol (permanent).
    Corrupt,
    /// Anything libgit2 reports that fits none of the above (permanent, so an
    /// operator looks at it).
    Other,
    /// Not fetched at all: every candidate remote of the repository has an
    /// open circuit (transient: a later tick tries again once a cool-down
    /// has passed). Never produced by libgit2, only by the probe.
    CircuitOpen,
}

impl FetchFailureClass {
    /// Transient failures are retried on a later tick; permanent ones block.
    pub fn is_transient(self) -> bool {
        matches!(self, FetchFailureClass::Network | FetchFailureClass::Timeout | FetchFailureClass::CircuitOpen)
    }

    /// Stable name, as used in reason codes.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchFailureClass::Auth => "auth",
            FetchFailureClass::NotFound => "not-found",
            FetchFailureClass::Network => "network",
            FetchFailureClass::Timeout => "timeout",
            FetchFailureClass::Corrupt => "corrupt",
            FetchFailureClass::Other => "other",
            FetchFailureClass::CircuitOpen => "circuit-open",
        }
    }
}

/// A failed fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchFailure {
    pub class: FetchFailureClass,
    pub transient: bool,
    /// libgit2's message.
    pub message: String,
}

impl FetchFailure {
    /// The failure of a fetch that was not attempted because every candidate
    /// remote has an open circuit; `message` names them.
    pub fn circuit_open(message: String) -> Self {
        let class = FetchFailureClass::CircuitOpen;
        Self { class, transient: class.is_transient(), message }
    }
}

/// What a successful fetch learned about the upstream branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Upstream branch head, or `None` when the remote does not have it.
    pub upstream: Option<git2::Oid>,
}

/// Fetches `refs/heads/<branch>` of `remote` into its remote-tracking ref.
pub fn fetch_branch(repo: &Repository, remote: &str, branch: &str, timeout: Duration) -> Result<Fetched, FetchFailure> {
    set_server_timeouts(timeout);
    let deadline = Instant::now() + timeout;
    let mut remote = repo.find_remote(remote).map_err(|e| failure(&e, false))?;
    let url = remote.url().unwrap_or_default().to_owned();
    let config = repo.config().ok();
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0u32;
    callbacks.credentials(move |_url, username, allowed| {
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::new(ErrorCode::Auth, ErrorClass::Net, "credentials were refused"));
        }
        if allowed.contains(CredentialType::SSH_KEY) && std::env::var_os("SSH_AUTH_SOCK").is_some() {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(config) = &config
            && let Ok(cred) = Cred::credential_helper(config, &url, username)
        {
            return Ok(cred);
        }
        Err(git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Net,
            "authentication required; hermes never prompts (use an ssh-agent key or a git credential helper)",
        ))
    });
    callbacks.transfer_progress(move |_| Instant::now() < deadline);
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks);
    let refspec =
        format!("+refs/heads/{branch}:refs/remotes/{}/{branch}", remote.name().ok().flatten().unwrap_or("origin"));
    remote
        .fetch(&[refspec.as_str()], Some(&mut options), Some("hermes: fetch"))
        .map_err(|e| failure(&e, Instant::now() >= deadline))?;
    let wanted = format!("refs/heads/{branch}");
    let upstream =
        remote.list().map_err(|e| failure(&e, false))?.iter().find(|head| head.name() == wanted).map(|head| head.oid());
    Ok(Fetched { upstream })
}

fn set_server_timeouts(timeout: Duration) {
    static ONCE: Once = Once::new();
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    ONCE.call_once(|| {
        // SAFETY: libgit2 global options are set once, before any fetch of
        // this process runs (the `Once` orders it before every caller).
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis);
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis);
        }
    });
}

fn failure(error: &git2::Error, past_deadline: bool) -> FetchFailure {
    let class = classify(error, past_deadline);
    FetchFailure { class, transient: class.is_transient(), message: error.message().to_owned() }
}

/// Sorts a libgit2 error into a [`FetchFailureClass`].
pub fn classify(error: &git2::Error, past_deadline: bool) -> FetchFailureClass {
    let message = error.message().to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| message.contains(n));
    if past_deadline || has(&["timed out", "timeout"]) {
        return FetchFailureClass::Timeout;
    }
    if matches!(error.code(), ErrorCode::Auth | ErrorCode::Certificate)
        || has(&["authentication", "credentials", "permission denied", "401", "403", "certificate"])
    {
        return FetchFailureClass::Auth;
    }
    if has(&[
        "not found",
        "could not find repository",
        "does not appear to be a git repository",
        "failed to resolve path",
        "no such file or directory",
        "unsupported url protocol",
        "404",
    ]) {
        return FetchFailureClass::NotFound;
    }
    if has(&[
        "connection refused",
        "could not resolve",
        "failed to resolve address",
        "failed to connect",
        "network is unreachable",
        "no route to host",
        "connection reset",
    ]) {
        return FetchFailureClass::Network;
    }
    match error.class() {
        ErrorClass::Odb | ErrorClass::Zlib | ErrorClass::Object | ErrorClass::Indexer | ErrorClass::Sha1 => {
            FetchFailureClass::Corrupt
        }
        _ if has(&["corrupt", "protocol", "invalid pack", "unexpected", "bad packet"]) => FetchFailureClass::Corrupt,
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Ssl | ErrorClass::Os => {
            FetchFailureClass::Network
        }
        _ => FetchFailureClass::Other,
    }
}
