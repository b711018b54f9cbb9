//! Per-call sandbox state: what a plugin instance can see and use.
//!
//! Each call gets a new [`PluginState`] in a new store:
//! - WASI with no arguments, no environment variables, empty stdin, no
//!   network (sockets and name lookup disabled, and refused at load time);
//! - wall and monotonic clocks frozen at the tick's logical time;
//! - `random`, `insecure` and `insecure-seed` seeded from the SHA-256 of
//!   the call's canonical input, so output is a pure function of input;
//! - stdout and stderr captured in memory, [`OUTPUT_CAP`] bytes each
//!   (writing more traps the call);
//! - probes only: the repository's worktree preopened read-only at
//!   `/worktree`; scorers and selectors get no filesystem at all;
//! - memory growth capped by [`PluginState`]'s `ResourceLimiter`, which also
//!   records the peak and whether the cap was hit;
//! - `hermes:plugin/host.log` keeps at most [`LOG_LINES`] lines of at most
//!   [`LOG_LINE_BYTES`] bytes.
//!
//! A component that imports nothing from WASI (decided at load time) gets no
//! WASI context: building one per call would cost more than the call. Since
//! nothing of WASI is linked into such an instance, its context is never
//! asked for; if it were, it would be the same sandbox without a worktree.

use super::bindings::host::{self, LogLevel};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Bytes of stdout and of stderr kept per call.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Log lines kept per call.
pub const LOG_LINES: usize = 64;
/// Bytes kept of one log line.
pub const LOG_LINE_BYTES: usize = 1024;
/// Guest path of the read-only worktree preopen.
pub const WORKTREE_GUEST_PATH: &str = "/worktree";

/// One line the plugin logged through the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Store data of one plugin call.
pub struct PluginState {
    /// `None` until asked for when the component imports no WASI.
    wasi: Option<Box<WasiSandbox>>,
    logical_time: u64,
    input_digest: [u8; 32],
    memory_cap: usize,
    /// Largest linear memory size granted, in bytes.
    pub peak_memory: usize,
    /// Set when a growth beyond the cap was refused.
    pub memory_exhausted: bool,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
}

/// The WASI side of a call's sandbox.
struct WasiSandbox {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

/// What a call's sandbox is built from.
pub struct SandboxSpec<'a> {
    /// Unix seconds of the tick, seen by the plugin's clocks.
    pub logical_time: u64,
    /// SHA-256 of the canonical input; seeds randomness.
    pub input_digest: [u8; 32],
    pub memory_cap: usize,
    /// Worktree to preopen read-only (probes only).
    pub worktree: Option<&'a Path>,
    /// Whether the component imports WASI (else no WASI context is built).
    pub wasi: bool,
}

struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FixedMonotonicClock(u64);

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        self.0
    }
}

impl WasiSandbox {
    /// WASI with pinned clocks, seeded randomness, captured stdio and no
    /// network or filesystem.
    fn new(logical_time: u64, seed: [u8; 32]) -> Self {
        Self::build(logical_time, seed, |_| Ok(())).unwrap_or_else(|never: std::convert::Infallible| match never {})
    }

    /// The same, with `worktree` preopened read-only.
    fn with_worktree(logical_time: u64, seed: [u8; 32], worktree: &Path) -> Result<Self, String> {
        Self::build(logical_time, seed, |builder| {
            builder
                .preopened_dir(worktree, WORKTREE_GUEST_PATH, FsPerms::ReadOnly)
                .map(drop)
                .map_err(|e| format!("cannot preopen {}: {e}", worktree.display()))
        })
    }

    fn build<E>(
        logical_time: u64,
        seed: [u8; 32],
        preopen: impl FnOnce(&mut WasiCtxBuilder) -> Result<(), E>,
    ) -> Result<Self, E> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAP);
        let mut derived = seed;
        derived[0] ^= 0xa5;
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock(Duration::from_secs(logical_time)))
            .monotonic_clock(FixedMonotonicClock(logical_time.saturating_mul(1_000_000_000)))
            .secure_random(StdRng::from_seed(seed))
            .insecure_random(StdRng::from_seed(derived))
            .insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().unwrap_or_default()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        preopen(&mut builder)?;
        Ok(Self { ctx: builder.build(), table: ResourceTable::new(), stdout, stderr })
    }
}

impl PluginState {
    /// Builds the sandbox for one call.
    pub fn new(spec: &SandboxSpec<'_>) -> Result<Self, String> {
        let wasi = match (spec.wasi, spec.worktree) {
            (false, _) => None,
            (true, None) => Some(Box::new(WasiSandbox::new(spec.logical_time, spec.input_digest))),
            (true, Some(worktree)) => {
                Some(Box::new(WasiSandbox::with_worktree(spec.logical_time, spec.input_digest, worktree)?))
            }
        };
        Ok(Self {
            wasi,
            logical_time: spec.logical_time,
            input_digest: spec.input_digest,
            memory_cap: spec.memory_cap,
            peak_memory: 0,
            memory_exhausted: false,
            logs: Vec::new(),
            logs_dropped: 0,
        })
    }

    /// Captured stdout and stderr, lossily decoded.
    pub fn output(&self) -> (String, String) {
        let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
        self.wasi.as_ref().map(|w| (text(&w.stdout), text(&w.stderr))).unwrap_or_default()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (logical_time, seed) = (self.logical_time, self.input_digest);
        let wasi = self.wasi.get_or_insert_with(|| Box::new(WasiSandbox::new(logical_time, seed)));
        WasiCtxView { ctx: &mut wasi.ctx, table: &mut wasi.table }
    }
}

impl ResourceLimiter for PluginState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exhausted = true;
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} bytes exceeded (asked for {desired})",
                self.memory_cap
            )));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.logs.len() >= LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        let mut message = message;
        if message.len() > LOG_LINE_BYTES {
            let mut end = LOG_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        self.logs.push(LogLine { level: level.to_owned(), message });
    }
}
