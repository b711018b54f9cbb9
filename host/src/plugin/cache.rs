//! On-disk cache of precompiled components, so a tick does not recompile.
//!
//! Location: `HERMES_HOME/cache/plugins/`. One file per entry, named
//! `<component sha256>-wasmtime<version>-<engine compatibility hash>.cwasm`,
//! holding a line with the hex SHA-256 of the payload, then the payload
//! (wasmtime's serialized component). An entry whose checksum does not match
//! is never handed to wasmtime: it is compiled again and rewritten.

use super::WASMTIME_VERSION;
use crate::canonical::sha256_hex;
use crate::fsx;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheUse {
    /// Compiled now (no cache, or no entry yet).
    Compiled,
    /// Loaded from a valid cache entry.
    Hit,
    /// The entry was corrupt; compiled again and rewritten.
    Rebuilt,
}

/// A directory of precompiled components.
#[derive(Debug)]
pub struct ComponentCache {
    dir: Dir,
    path: PathBuf,
}

impl ComponentCache {
    /// Opens (creating) the cache directory.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self { dir: Dir::open_ambient_dir(path, ambient_authority())?, path: path.to_owned() })
    }

    /// File name of the entry for `digest` on `engine`.
    pub fn entry_name(engine: &Engine, digest: &str) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{digest}-wasmtime{WASMTIME_VERSION}-{:016x}.cwasm", hasher.finish())
    }

    /// The component for `bytes` (whose SHA-256 is `digest`), from the cache
    /// when a valid entry exists, else compiled and stored.
    pub fn load(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, CacheUse)> {
        let name = Self::entry_name(engine, digest);
        let mut use_ = CacheUse::Compiled;
        if let Ok(stored) = self.dir.read(&name) {
            if let Some(payload) = verified_payload(&stored) {
                // SAFETY: the payload was written by `store` below from
                // `Component::serialize` of this engine configuration (the
                // name carries the compatibility hash) and its checksum
                // matches, so it is not truncated or altered.
                if let Ok(component) = unsafe { Component::deserialize(engine, payload) } {
                    return Ok((component, CacheUse::Hit));
                }
            }
            tracing::warn!(entry = %self.path.join(&name).display(), "corrupt plugin cache entry; recompiling");
            use_ = CacheUse::Rebuilt;
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&name, &component.serialize()?) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot write plugin cache entry");
        }
        Ok((component, use_))
    }

    fn store(&self, name: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut bytes = sha256_hex(payload).into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(payload);
        fsx::write_atomic(&self.dir, name, &bytes)
    }
}

fn verified_payload(stored: &[u8]) -> Option<&[u8]> {
    let (checksum, payload) = (stored.get(..64)?, stored.get(65..)?);
    (stored.get(64) == Some(&b'\n') && checksum == sha256_hex(payload).as_bytes()).then_some(payload)
}
