//! The wasmtime engine and loading a component through the precompiled-component cache.
//!
//! Compiling the component with Cranelift costs ~0.2 s; loading a precompiled artifact
//! costs a few milliseconds. Artifacts are keyed by the component's SHA-256 and the
//! engine's compatibility hash (wasmtime version, configuration, CPU features), and only
//! ever loaded as [`crate::runtime::component_cache`] allows: bytes this host wrote, in a
//! directory only this user reaches.

use crate::runtime::component_cache::Cache;
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
    /// Compiled now (and cached, when a cache is set).
    Compiled,
    /// Loaded from a precompiled artifact.
    Cached,
}

/// Loads `wasm` as a component, through `cache` when given.
pub fn load(engine: &Engine, wasm: &[u8], cache: Option<&Cache>) -> Result<(Component, Loaded)> {
    let Some(cache) = cache else {
        let component = Component::new(engine, wasm).context("compiling the component")?;
        return Ok((component, Loaded::Compiled));
    };
    let name = artifact_name(engine, wasm);
    match cached(engine, cache, &name) {
        (_, Some(component)) => return Ok((component, Loaded::Cached)),
        (Cached::Unusable(why), None) => crate::sys::secret::eprint_line(&format!(
            "agent-provisioner: compiling again instead of loading the cache entry {}: {why:#}",
            cache.path(&name).display()
        )),
        _ => {}
    }
    Ok((compile_into(engine, wasm, cache, &name)?, Loaded::Compiled))
}

/// What the cache holds for one component.
pub enum Cached {
    Usable,
    Missing,
    /// There is an entry, and the host will not load it (a check failed, or this engine
    /// cannot).
    Unusable(anyhow::Error),
}

/// What the cache holds for the artifact `name`, and the component when it is usable.
fn cached(engine: &Engine, cache: &Cache, name: &str) -> (Cached, Option<Component>) {
    let bytes = match cache.entry(name) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return (Cached::Missing, None),
        Err(e) => return (Cached::Unusable(e), None),
    };
    // SAFETY: these bytes are the ones this host wrote from `precompile_component` of an
    // engine with the same compatibility hash (it is in the name): their SHA-256 is the
    // one it recorded, in its own state, when it wrote them.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => (Cached::Usable, Some(component)),
        Err(e) => (Cached::Unusable(e.into()), None),
    }
}

/// Compiles `wasm` and stores the artifact (a failure to store is reported, not fatal).
fn compile_into(engine: &Engine, wasm: &[u8], cache: &Cache, name: &str) -> Result<Component> {
    let bytes = engine.precompile_component(wasm).context("compiling the component")?;
    if let Err(e) = cache.store(name, &bytes) {
        crate::sys::secret::eprint_line(&format!("agent-provisioner: cannot cache the compiled component at {}: {e:#}", cache.path(name).display()));
    }
    // SAFETY: `bytes` was just produced by `precompile_component` on this engine.
    Ok(unsafe { Component::deserialize(engine, &bytes) }.context("loading the compiled component")?)
}

/// The cache entry of the embedded component for this machine's engine, and what it
/// holds (`skill install --check`).
pub fn embedded_entry(cache: &Cache) -> Result<(PathBuf, Cached)> {
    let engine = engine()?;
    let name = artifact_name(&engine, EMBEDDED_COMPONENT);
    Ok((cache.path(&name), cached(&engine, cache, &name).0))
}

/// Compiles the embedded component into the cache unless a usable entry is there
/// (`skill install`), so that the first command after an install needs no compile.
/// Returns the entry and what it held before.
pub fn warm(cache: &Cache) -> Result<(PathBuf, Cached)> {
    let engine = engine()?;
    let name = artifact_name(&engine, EMBEDDED_COMPONENT);
    let before = cached(&engine, cache, &name).0;
    if !matches!(before, Cached::Usable) {
        compile_into(&engine, EMBEDDED_COMPONENT, cache, &name)?;
        let usable = matches!(cached(&engine, cache, &name).0, Cached::Usable);
        anyhow::ensure!(usable, "the compiled component could not be cached at {}", cache.path(&name).display());
    }
    Ok((cache.path(&name), before))
}

/// `<sha256 of wasm>-<engine hash>.cwasm`.
fn artifact_name(engine: &Engine, wasm: &[u8]) -> String {
    let wasm_hash = Sha256::digest(wasm);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let wasm_hex = crate::record::state::hex(&wasm_hash[..16]);
    format!("{wasm_hex}-{:016x}.cwasm", hasher.finish())
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
    use std::os::unix::fs::PermissionsExt as _;

    /// A cache in a fresh home: (the temporary home, the cache, its directory).
    fn fresh() -> (tempfile::TempDir, Cache, PathBuf) {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".cache/agent-provisioner");
        let cache = Cache::new(dir.clone(), home.path().to_path_buf());
        (home, cache, dir)
    }

    fn load_embedded(cache: &Cache) -> Loaded {
        load(&engine().unwrap(), EMBEDDED_COMPONENT, Some(cache)).unwrap().1
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn second_load_comes_from_the_cache_a_private_directory() {
        let (_home, cache, dir) = fresh();
        assert_eq!((load_embedded(&cache), load_embedded(&cache)), (Loaded::Compiled, Loaded::Cached));
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1);
        assert_eq!((mode(&dir), mode(&entries[0])), (0o700, 0o600));
    }

    #[test]
    fn warming_fills_the_entry_a_load_then_uses_and_replaces_an_unusable_one() {
        let (_home, cache, _) = fresh();
        let (artifact, before) = warm(&cache).unwrap();
        assert!(matches!(before, Cached::Missing));
        assert!(matches!(embedded_entry(&cache).unwrap(), (a, Cached::Usable) if a == artifact));
        assert_eq!(load_embedded(&cache), Loaded::Cached, "the first load after warming compiles nothing");
        std::fs::write(&artifact, b"not an artifact").unwrap();
        assert!(matches!(embedded_entry(&cache).unwrap().1, Cached::Unusable(_)));
        assert!(matches!(warm(&cache).unwrap().1, Cached::Unusable(_)));
        assert!(matches!(embedded_entry(&cache).unwrap().1, Cached::Usable), "re-warmed");
    }

    #[test]
    fn a_planted_valid_artifact_of_another_component_is_compiled_over_never_loaded() {
        let (home, cache, _) = fresh();
        let (artifact, _) = warm(&cache).unwrap();
        let planted = engine().unwrap().precompile_component(include_bytes!(env!("HOSTILE_GUEST_WASM"))).unwrap();
        std::fs::write(&artifact, &planted).unwrap();
        let why = match embedded_entry(&cache).unwrap().1 {
            Cached::Unusable(why) => format!("{why:#}"),
            _ => panic!("a planted artifact is not usable"),
        };
        assert!(why.contains("not the one the host recorded"), "{why}");
        assert_eq!(load_embedded(&cache), Loaded::Compiled);
        assert_ne!(std::fs::read(&artifact).unwrap(), planted, "replaced");
        assert_eq!(load_embedded(&cache), Loaded::Cached);
        // The same bytes, in a home whose state never recorded them.
        let other = Cache::new(artifact.parent().unwrap().to_path_buf(), home.path().join("other"));
        assert!(matches!(embedded_entry(&other).unwrap().1, Cached::Unusable(e) if format!("{e:#}").contains("no record")));
    }

    #[test]
    fn an_entry_that_is_a_link_loose_or_anothers_is_compiled_over() {
        let (home, cache, _) = fresh();
        let (artifact, _) = warm(&cache).unwrap();
        let copy = home.path().join("copy.cwasm");
        std::fs::copy(&artifact, &copy).unwrap();
        std::fs::remove_file(&artifact).unwrap();
        std::os::unix::fs::symlink(&copy, &artifact).unwrap();
        assert_eq!(load_embedded(&cache), Loaded::Compiled, "a link to the very bytes recorded is not followed");
        assert!(std::fs::symlink_metadata(&artifact).unwrap().is_file() && copy.exists(), "the link was replaced, its target left");
        std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_embedded(&cache), Loaded::Compiled, "an entry others may read or write");
        if std::os::unix::fs::lchown(&artifact, Some(65534), None).is_ok() {
            assert_eq!(load_embedded(&cache), Loaded::Compiled, "an entry of another user");
        }
        assert_eq!(load_embedded(&cache), Loaded::Cached);
    }

    #[test]
    fn a_linked_or_loose_cache_directory_is_not_used_as_it_is() {
        let (_home, cache, dir) = fresh();
        let elsewhere = dir.parent().unwrap().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink("elsewhere", &dir).unwrap();
        assert_eq!(load_embedded(&cache), Loaded::Compiled);
        assert_eq!(load_embedded(&cache), Loaded::Compiled, "nothing is cached through a link");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing was written through the link");
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(load_embedded(&cache), Loaded::Compiled);
        assert_eq!(mode(&dir), 0o700, "a 0755 cache directory is made private");
        assert_eq!(load_embedded(&cache), Loaded::Cached);
    }
}
