//! The wasmtime engine and the precompiled-component cache.
//!
//! Compiling the component with Cranelift costs ~0.2 s; loading a precompiled artifact
//! costs well under a millisecond. Artifacts are keyed by the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version, configuration, CPU features), written
//! atomically, and only ever loaded from the cache directory this host writes.

use anyhow::Result;
use wasmtime::error::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The component built into this binary.
pub const EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("GUEST_WASM"));

/// An engine configured for the sandbox: async (for `wasi:http`) with epoch interruption
/// (for the wall-clock deadline).
pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    Ok(Engine::new(&config).context("creating the wasmtime engine")?)
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Compiled now (and cached, when a cache directory is set).
    Compiled,
    /// Loaded from a precompiled artifact.
    Cached,
}

/// Loads `wasm` as a component, through the cache in `cache_dir` when given.
pub fn load(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<(Component, Loaded)> {
    let Some(cache_dir) = cache_dir else {
        let component = Component::new(engine, wasm).context("compiling the component")?;
        return Ok((component, Loaded::Compiled));
    };
    let artifact = artifact_path(engine, wasm, cache_dir);
    if artifact.is_file() {
        // SAFETY: the artifact was written by `precompile_component` of an engine with
        // the same compatibility hash (it is in the file name), into our own cache dir.
        match unsafe { Component::deserialize_file(engine, &artifact) } {
            Ok(component) => return Ok((component, Loaded::Cached)),
            Err(e) => crate::secret::eprint_line(&format!("agent-provisioner: ignoring unusable cache entry {}: {e}", artifact.display())),
        }
    }
    let bytes = engine.precompile_component(wasm).context("compiling the component")?;
    if let Err(e) = store_artifact(&artifact, &bytes) {
        crate::secret::eprint_line(&format!("agent-provisioner: cannot cache the compiled component in {}: {e:#}", cache_dir.display()));
    }
    // SAFETY: `bytes` was just produced by `precompile_component` on this engine.
    let component = unsafe { Component::deserialize(engine, &bytes) }.context("loading the compiled component")?;
    Ok((component, Loaded::Compiled))
}

/// `<cache_dir>/<sha256 of wasm>-<engine hash>.cwasm`.
fn artifact_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let wasm_hash = Sha256::digest(wasm);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let wasm_hex: String = wasm_hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{wasm_hex}-{:016x}.cwasm", hasher.finish()))
}

fn store_artifact(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("artifact paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path)?;
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/agent-provisioner` or
/// `<home>/.cache/agent-provisioner`.
pub fn default_cache_dir(home: &Path) -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".cache"))
        .join("agent-provisioner")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_load_comes_from_the_cache() {
        let engine = engine().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = load(&engine, EMBEDDED_COMPONENT, Some(dir.path())).unwrap();
        let (_, second) = load(&engine, EMBEDDED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!((first, second), (Loaded::Compiled, Loaded::Cached));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
