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
    match cached(engine, &artifact) {
        Cached::Usable(component) => return Ok((component, Loaded::Cached)),
        Cached::Unusable(e) => crate::sys::secret::eprint_line(&format!("agent-provisioner: ignoring unusable cache entry {}: {e:#}", artifact.display())),
        Cached::Missing => {}
    }
    Ok((compile_into(engine, wasm, &artifact)?, Loaded::Compiled))
}

/// What the cache holds for one component.
pub enum Cached {
    Usable(Component),
    Missing,
    /// There is an entry, and this engine cannot load it.
    Unusable(anyhow::Error),
}

/// The cache entry at `artifact`.
fn cached(engine: &Engine, artifact: &Path) -> Cached {
    if !artifact.is_file() {
        return Cached::Missing;
    }
    // SAFETY: the artifact was written by `precompile_component` of an engine with the
    // same compatibility hash (it is in the file name), into the host's own cache dir.
    match unsafe { Component::deserialize_file(engine, artifact) } {
        Ok(component) => Cached::Usable(component),
        Err(e) => Cached::Unusable(e.into()),
    }
}

/// Compiles `wasm` and stores the artifact (a failure to store is reported, not fatal).
fn compile_into(engine: &Engine, wasm: &[u8], artifact: &Path) -> Result<Component> {
    let bytes = engine.precompile_component(wasm).context("compiling the component")?;
    if let Err(e) = store_artifact(artifact, &bytes) {
        crate::sys::secret::eprint_line(&format!("agent-provisioner: cannot cache the compiled component at {}: {e:#}", artifact.display()));
    }
    // SAFETY: `bytes` was just produced by `precompile_component` on this engine.
    Ok(unsafe { Component::deserialize(engine, &bytes) }.context("loading the compiled component")?)
}

/// The cache entry of the embedded component in `cache_dir` for this machine's engine,
/// and what it holds (`skill install --check`).
pub fn embedded_entry(cache_dir: &Path) -> Result<(PathBuf, Cached)> {
    let engine = engine()?;
    let artifact = artifact_path(&engine, EMBEDDED_COMPONENT, cache_dir);
    let state = cached(&engine, &artifact);
    Ok((artifact, state))
}

/// Compiles the embedded component into `cache_dir` unless a usable entry is there
/// (`skill install`), so that the first command after an install needs no compile.
/// Returns the entry and what it held before.
pub fn warm(cache_dir: &Path) -> Result<(PathBuf, Cached)> {
    let engine = engine()?;
    let artifact = artifact_path(&engine, EMBEDDED_COMPONENT, cache_dir);
    let before = cached(&engine, &artifact);
    if !matches!(before, Cached::Usable(_)) {
        compile_into(&engine, EMBEDDED_COMPONENT, &artifact)?;
        let usable = matches!(cached(&engine, &artifact), Cached::Usable(_));
        anyhow::ensure!(usable, "the compiled component could not be cached at {}", artifact.display());
    }
    Ok((artifact, before))
}

/// `<cache_dir>/<sha256 of wasm>-<engine hash>.cwasm`.
fn artifact_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let wasm_hash = Sha256::digest(wasm);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let wasm_hex = crate::record::state::hex(&wasm_hash[..16]);
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

    #[test]
    fn warming_fills_the_entry_a_load_then_uses_and_replaces_an_unusable_one() {
        let dir = tempfile::tempdir().unwrap();
        let (artifact, before) = warm(dir.path()).unwrap();
        assert!(matches!(before, Cached::Missing));
        assert!(matches!(embedded_entry(dir.path()).unwrap(), (a, Cached::Usable(_)) if a == artifact));
        let (_, loaded) = load(&engine().unwrap(), EMBEDDED_COMPONENT, Some(dir.path())).unwrap();
        assert_eq!(loaded, Loaded::Cached, "the first load after warming compiles nothing");
        std::fs::write(&artifact, b"not an artifact").unwrap();
        assert!(matches!(embedded_entry(dir.path()).unwrap().1, Cached::Unusable(_)));
        assert!(matches!(warm(dir.path()).unwrap().1, Cached::Unusable(_)));
        assert!(matches!(embedded_entry(dir.path()).unwrap().1, Cached::Usable(_)), "re-warmed");
    }
}
