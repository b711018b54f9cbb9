//! The plugin engine: one wasmtime `Engine` and `Linker` per process, and
//! loading components into ready-to-instantiate [`LoadedPlugin`]s.
//!
//! Engine configuration (the same for the cycle, `plugin test` and replay):
//! fuel metering on, epoch interruption on (a ticker thread advances the
//! epoch every [`EPOCH_TICK`]), the pooling instance allocator so a fresh
//! instance per call is cheap (a returned slot is reset page by page, only
//! where the call wrote), memories capped at [`MAX_MEMORY`].

use super::bindings::host;
use super::cache::{CacheUse, ComponentCache};
use super::call::{self, CallSpec};
use super::sandbox::PluginState;
use super::wit::{Operation, Probe, Score, Select};
use super::{PluginError, PluginKind, WIT_VERSION, imports};
use crate::canonical::sha256_hex;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, ComponentType, HasSelf, InstancePre, Lift, Linker, Lower,
};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest linear memory any plugin may have; per-call caps are lower.
pub const MAX_MEMORY: usize = 256 << 20;
/// Bytes of each pooled linear memory kept mapped between calls.
const KEEP_RESIDENT: usize = 4 << 20;
/// Default per-call memory cap.
pub const DEFAULT_MEMORY_CAP: usize = 64 << 20;
/// Default wall-clock backstop per call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// Fuel for the `metadata` call made at load time.
const METADATA_FUEL: u64 = 10_000_000;

/// What a plugin says about itself (`metadata()`; the WIT record
/// `plugin-metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ComponentType, Lift, Lower)]
#[component(record)]
pub struct PluginMetadata {
    #[component(name = "name")]
    pub name: String,
    #[component(name = "version")]
    pub version: String,
    #[component(name = "kind")]
    pub kind: PluginKind,
    #[component(name = "description")]
    pub description: String,
}

/// A component that passed every load-time check.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Where it came from: a file path or `builtin:<name>`.
    pub source: String,
    /// SHA-256 of the component bytes.
    pub digest: String,
    pub kind: PluginKind,
    pub metadata: PluginMetadata,
    /// WIT package version of the world it implements.
    pub wit_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub cache: CacheUse,
    /// Whether it imports any WASI interface; a call builds a WASI context
    /// only for a component that does.
    pub imports_wasi: bool,
    /// The component, ready to instantiate, and its two exports.
    pub(crate) callable: Callable,
}

/// A loaded component's `metadata` and operation exports, looked up and
/// type-checked against the Rust types of its world ([`Operation`]) once,
/// at load, so that a call uses them without checking again.
#[derive(Clone)]
pub(crate) struct Callable {
    pub pre: InstancePre<PluginState>,
    pub metadata: ComponentExportIndex,
    pub operation: ComponentExportIndex,
}

impl Callable {
    fn check(pre: InstancePre<PluginState>, kind: PluginKind) -> wasmtime::Result<Self> {
        let metadata = typed_export::<(), (PluginMetadata,)>(&pre, "metadata")?;
        let operation = match kind {
            PluginKind::RepoProbe => operation_export::<Probe>(&pre)?,
            PluginKind::RiskScorer => operation_export::<Score>(&pre)?,
            PluginKind::FederationSelector => operation_export::<Select>(&pre)?,
        };
        Ok(Self { pre, metadata, operation })
    }
}

fn operation_export<O: Operation>(pre: &InstancePre<PluginState>) -> wasmtime::Result<ComponentExportIndex> {
    typed_export::<(&O::Input<'_>,), (Result<O::Output, String>,)>(pre, O::KIND.operation())
}

/// The index of the function export `name`, checked to take `P` and
/// return `R`. `ComponentFunc::typecheck` is the check `bindgen!`'s
/// generated code makes (hidden from wasmtime's docs for that reason; the
/// version is pinned to 48.x).
fn typed_export<P, R>(pre: &InstancePre<PluginState>, name: &str) -> wasmtime::Result<ComponentExportIndex>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    let (item, index) =
        pre.component().get_export(None, name).ok_or_else(|| wasmtime::format_err!("no export `{name}` found"))?;
    match item {
        ComponentItem::ComponentFunc(func) => func
            .typecheck::<P, R>(&pre.instance_type())
            .map_err(|e| e.context(format!("type-checking export func `{name}`")))?,
        _ => wasmtime::bail!("export `{name}` is not a function"),
    }
    Ok(index)
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("source", &self.source)
            .field("digest", &self.digest)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The engine, linker and component cache.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: Option<ComponentCache>,
}

impl PluginEngine {
    /// Creates the engine; `cache` is where precompiled components are kept.
    pub fn new(cache: Option<ComponentCache>) -> Result<Self, PluginError> {
        let engine_err = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(64)
            .total_core_instances(512)
            .total_memories(64)
            .total_tables(256)
            .total_stacks(64)
            .max_memory_size(MAX_MEMORY)
            // Reset a returned slot by re-writing only the pages the call
            // dirtied (found with Linux's PAGEMAP_SCAN where available),
            // instead of `madvise` plus a page fault per page on the next
            // call.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_reservation(MAX_MEMORY as u64)
            .memory_guard_size(64 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        host::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| state).map_err(engine_err)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("hermes-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self { engine, linker, cache })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component from bytes: digest, compile (or cache), import
    /// check, world detection and type check, `metadata()` call.
    pub fn load(&self, bytes: &[u8], source: &str) -> Result<LoadedPlugin, PluginError> {
        let digest = sha256_hex(bytes);
        let invalid =
            |e: wasmtime::Error| PluginError::Invalid { source_name: source.to_owned(), detail: format!("{e:#}") };
        let (component, cache) = match &self.cache {
            Some(cache) => cache.load(&self.engine, &digest, bytes).map_err(invalid)?,
            None => (Component::new(&self.engine, bytes).map_err(invalid)?, CacheUse::Compiled),
        };
        imports::check(&self.engine, &component, source)?;
        let imports = imports::list(&self.engine, &component);
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let kind =
            PluginKind::ALL.into_iter().find(|k| exports.iter().any(|e| e == k.operation())).ok_or_else(|| {
                PluginError::UnknownWorld {
                    source_name: source.to_owned(),
                    detail: format!("exports: {}", exports.join(", ")),
                }
            })?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| PluginError::WrongWorld {
            source_name: source.to_owned(),
            world: kind.as_str(),
            detail: format!("{e:#}"),
        })?;
        let callable = Callable::check(pre, kind).map_err(|e| PluginError::WrongWorld {
            source_name: source.to_owned(),
            world: kind.as_str(),
            detail: format!("{e:#}"),
        })?;
        let wit_version = imports
            .iter()
            .find_map(|i| i.strip_prefix("hermes:plugin/").and_then(|r| r.split_once('@')).map(|(_, v)| v.to_owned()))
            .unwrap_or_else(|| WIT_VERSION.to_owned());
        let mut plugin = LoadedPlugin {
            source: source.to_owned(),
            digest,
            kind,
            metadata: PluginMetadata { name: String::new(), version: String::new(), kind, description: String::new() },
            wit_version,
            imports_wasi: imports.iter().any(|i| i.starts_with("wasi:")),
            imports,
            exports,
            cache,
            callable,
        };
        plugin.metadata = self.metadata(&plugin)?;
        Ok(plugin)
    }

    fn metadata(&self, plugin: &LoadedPlugin) -> Result<PluginMetadata, PluginError> {
        let fail = |detail: String| PluginError::Metadata { source_name: plugin.source.clone(), detail };
        let spec = CallSpec {
            fuel: METADATA_FUEL,
            memory_cap: DEFAULT_MEMORY_CAP,
            deadline: DEFAULT_DEADLINE,
            logical_time: 0,
            worktree: None,
        };
        let raw = call::call_export(self, plugin, None, &spec).map_err(|e| fail(e.message))?;
        let metadata: PluginMetadata =
            serde_json::from_value(raw.output.map_err(fail)?).map_err(|e| fail(format!("unexpected metadata: {e}")))?;
        if metadata.kind != plugin.kind {
            return Err(fail(format!(
                "says it is a {} but implements {}",
                metadata.kind.as_str(),
                plugin.kind.as_str()
            )));
        }
        Ok(metadata)
    }
}
