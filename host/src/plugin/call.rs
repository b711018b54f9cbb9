//! One plugin call: fresh instance, limits, JSON in and out, and the
//! [`CallRecord`] that goes into the ledger.

use super::engine::{LoadedPlugin, PluginEngine, PluginMetadata};
use super::sandbox::{LogLine, PluginState, SandboxSpec};
use super::wit::{self, Operation, Probe, Score, Select};
use super::{PluginKind, WASMTIME_VERSION};
use crate::canonical;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use wasmtime::component::{Func, TypedFunc};
use wasmtime::{AsContextMut, Store, StoreContextMut, Trap};

/// Limits and context of one call.
#[derive(Debug, Clone, Copy)]
pub struct CallSpec<'a> {
    pub fuel: u64,
    pub memory_cap: usize,
    pub deadline: Duration,
    /// Unix seconds of the tick (the plugin's clocks read this).
    pub logical_time: u64,
    /// Probes only: the worktree, preopened read-only.
    pub worktree: Option<&'a Path>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    Ok,
    /// The plugin returned `err(..)`.
    PluginError,
    /// Fuel ran out (deterministic).
    OutOfFuel,
    /// Linear memory would have grown past the cap.
    MemoryExhausted,
    /// The wall-clock backstop fired.
    Deadline,
    /// Any other trap (panic, unreachable, host-call error).
    Trap,
    /// The output does not satisfy the contract (e.g. risk > 1000).
    InvalidOutput,
    /// The input did not fit the WIT types, or instantiation failed.
    BadCall,
}

/// Everything recorded about a call: enough to replay it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub plugin: String,
    pub version: String,
    pub kind: PluginKind,
    pub source: String,
    pub digest: String,
    pub wit_version: String,
    pub wasmtime_version: String,
    /// The input (object keys in sorted order: serde_json maps are ordered).
    pub input: Value,
    pub input_digest: String,
    pub outcome: CallOutcome,
    /// The operation's `ok` value, when the call succeeded.
    pub output: Option<Value>,
    pub error: Option<String>,
    pub fuel_used: u64,
    pub fuel_limit: u64,
    pub peak_memory: u64,
    pub stdout: String,
    pub stderr: String,
    pub logs: Vec<LogLine>,
    /// Log lines beyond the per-call cap, counted but not kept.
    pub logs_dropped: u64,
}

/// Raw result of calling one export.
pub(crate) struct Raw {
    /// The `metadata` record, or the operation's `ok` value; `Err` holds the
    /// operation's `err` message.
    pub output: Result<Value, String>,
    pub fuel_used: u64,
    pub peak_memory: usize,
    pub state: Option<PluginState>,
}

/// A failed export call.
pub(crate) struct Failure {
    pub outcome: CallOutcome,
    pub message: String,
    pub fuel_used: u64,
    pub peak_memory: usize,
    /// Boxed: the sandbox state is large and failures are rare.
    pub state: Option<Box<PluginState>>,
}

/// Calls the plugin's operation with `input` and records everything (the
/// input moves into the record).
pub fn invoke(engine: &PluginEngine, plugin: &LoadedPlugin, input: Value, spec: &CallSpec<'_>) -> CallRecord {
    let input_digest = canonical::sha256(&input);
    let result = call_with_digest(engine, plugin, Some(&input), spec, input_digest);
    let mut record = CallRecord {
        plugin: plugin.metadata.name.clone(),
        version: plugin.metadata.version.clone(),
        kind: plugin.kind,
        source: plugin.source.clone(),
        digest: plugin.digest.clone(),
        wit_version: plugin.wit_version.clone(),
        wasmtime_version: WASMTIME_VERSION.to_owned(),
        input,
        input_digest: canonical::hex(&input_digest),
        outcome: CallOutcome::Ok,
        output: None,
        error: None,
        fuel_used: 0,
        fuel_limit: spec.fuel,
        peak_memory: 0,
        stdout: String::new(),
        stderr: String::new(),
        logs: Vec::new(),
        logs_dropped: 0,
    };
    let state = match result {
        Ok(raw) => {
            record.fuel_used = raw.fuel_used;
            record.peak_memory = raw.peak_memory as u64;
            match raw.output {
                Ok(output) => match validate_output(plugin.kind, &record.input, &output) {
                    Ok(()) => record.output = Some(output),
                    Err(problem) => {
                        record.outcome = CallOutcome::InvalidOutput;
                        record.error = Some(problem);
                    }
                },
                Err(message) => {
                    record.outcome = CallOutcome::PluginError;
                    record.error = Some(message);
                }
            }
            raw.state
        }
        Err(failure) => {
            record.outcome = failure.outcome;
            record.error = Some(failure.message);
            record.fuel_used = failure.fuel_used;
            record.peak_memory = failure.peak_memory as u64;
            failure.state.map(|state| *state)
        }
    };
    if let Some(state) = state {
        (record.stdout, record.stderr) = state.output();
        record.logs = state.logs;
        record.logs_dropped = state.logs_dropped;
    }
    record
}

/// Calls the operation with `input`, or `metadata` when there is no input,
/// in a fresh instance. Randomness is seeded from `input`'s canonical digest.
pub(crate) fn call_export(
    engine: &PluginEngine,
    plugin: &LoadedPlugin,
    input: Option<&Value>,
    spec: &CallSpec<'_>,
) -> Result<Raw, Failure> {
    let digest = input.map_or_else(|| Sha256::digest([]).into(), canonical::sha256);
    call_with_digest(engine, plugin, input, spec, digest)
}

fn call_with_digest(
    engine: &PluginEngine,
    plugin: &LoadedPlugin,
    input: Option<&Value>,
    spec: &CallSpec<'_>,
    input_digest: [u8; 32],
) -> Result<Raw, Failure> {
    let bad =
        |message: String| Failure { outcome: CallOutcome::BadCall, message, fuel_used: 0, peak_memory: 0, state: None };
    let sandbox = SandboxSpec {
        logical_time: spec.logical_time,
        input_digest,
        memory_cap: spec.memory_cap,
        worktree: spec.worktree,
        wasi: plugin.imports_wasi,
    };
    let state = PluginState::new(&sandbox).map_err(bad)?;
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| state);
    store.set_fuel(spec.fuel).map_err(|e| bad(format!("{e:#}")))?;
    let ticks = (spec.deadline.as_millis() / super::engine::EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    let outcome = call_world(plugin, store.as_context_mut(), input);
    let fuel_used = spec.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let mut state = store.into_data();
    let peak_memory = state.peak_memory;
    match outcome {
        Ok(output) => Ok(Raw { output, fuel_used, peak_memory, state: Some(state) }),
        Err((mut outcome, message)) => {
            if state.memory_exhausted {
                outcome = CallOutcome::MemoryExhausted;
            }
            state.memory_exhausted = false;
            Err(Failure { outcome, message: truncate(message), fuel_used, peak_memory, state: Some(Box::new(state)) })
        }
    }
}

/// What a typed call returns: the JSON of the result, or how it failed.
type Called = Result<Result<Value, String>, (CallOutcome, String)>;

/// Instantiates the component and calls its operation with `input` (read
/// from JSON into the world's input type), or `metadata`.
fn call_world(plugin: &LoadedPlugin, mut store: StoreContextMut<'_, PluginState>, input: Option<&Value>) -> Called {
    let callable = &plugin.callable;
    let instance = callable
        .pre
        .instantiate(&mut store)
        .map_err(|e| (CallOutcome::Trap, format!("instantiation failed: {e:#}")))?;
    let index = if input.is_some() { &callable.operation } else { &callable.metadata };
    let func = instance
        .get_func(&mut store, index)
        .ok_or_else(|| (CallOutcome::BadCall, "the instance lacks an export its component has".to_owned()))?;
    let Some(json) = input else {
        // SAFETY: `Callable::check` type-checked `metadata` with exactly
        // these types when the component was loaded, and every instance of
        // a component has its types.
        let metadata = unsafe { TypedFunc::<(), (PluginMetadata,)>::new_unchecked(func) };
        let (metadata,) = metadata.call(&mut store, ()).map_err(|e| classify(&e))?;
        return Ok(Ok(to_json(metadata)));
    };
    match plugin.kind {
        PluginKind::RepoProbe => operation::<Probe>(json, store, func),
        PluginKind::RiskScorer => operation::<Score>(json, store, func),
        PluginKind::FederationSelector => operation::<Select>(json, store, func),
    }
}

/// Reads the input, makes the call, and writes its `ok` value as JSON.
fn operation<O: Operation>(json: &Value, store: StoreContextMut<'_, PluginState>, func: Func) -> Called {
    let input: O::Input<'_> = wit::from_json(json, "input")
        .map_err(|e| (CallOutcome::BadCall, format!("input does not fit the WIT types: {e}")))?;
    // SAFETY: `Callable::check` type-checked the operation with exactly these
    // types when the component was loaded, and every instance of a component
    // has its types.
    let operation = unsafe { TypedFunc::<(&O::Input<'_>,), (Result<O::Output, String>,)>::new_unchecked(func) };
    let (output,) = operation.call(store, (&input,)).map_err(|e| classify(&e))?;
    Ok(output.map(to_json))
}

fn to_json(output: impl Serialize) -> Value {
    serde_json::to_value(output).unwrap_or(Value::Null)
}

fn classify(error: &wasmtime::Error) -> (CallOutcome, String) {
    let outcome = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallOutcome::OutOfFuel,
        Some(Trap::Interrupt) => CallOutcome::Deadline,
        _ => CallOutcome::Trap,
    };
    (outcome, format!("{error:#}"))
}

fn truncate(mut message: String) -> String {
    const MAX: usize = 4096;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" [truncated]");
    }
    message
}

/// Contract checks the WIT types cannot express.
pub fn validate_output(kind: PluginKind, input: &Value, output: &Value) -> Result<(), String> {
    match kind {
        PluginKind::RepoProbe => {
            let signals = output.as_array().ok_or("expected a list of signals")?;
            if signals.len() > 256 {
                return Err(format!("{} signals; at most 256 are accepted", signals.len()));
            }
            Ok(())
        }
        PluginKind::RiskScorer => {
            let risk = output.get("risk").and_then(Value::as_u64).ok_or("missing risk")?;
            if risk > 1000 {
                return Err(format!("risk {risk} is out of range; expected 0 to 1000"));
            }
            Ok(())
        }
        PluginKind::FederationSelector => {
            let chosen = output.get("chosen").and_then(Value::as_str).ok_or("missing chosen")?;
            let candidates: Vec<&str> = input
                .get("candidates")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect())
                .unwrap_or_default();
            if !candidates.contains(&chosen) {
                return Err(format!("chose {chosen:?}, which is not among the candidates {}", candidates.join(", ")));
            }
            Ok(())
        }
    }
}
