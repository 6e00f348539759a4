//! The compiled-component cache, which is the host's own: a precompiled artifact is
//! native code that wasmtime runs without checking it, so an artifact is loaded only when
//! every check holds — the cache directory is this user's, 0700 and not a link
//! ([`crate::sys::private_dir`]); the entry, opened without following a link, is a regular
//! file this user owns with no group or other bits; and the SHA-256 of the bytes read is
//! the one the host recorded when it wrote them, in its own state
//! (`~/.local/state/agent-provisioner/components.json`, which no grant reaches). Anything
//! else is compiled again, never run, and the new artifact replaces the entry atomically.
//!
//! What this stops: a file planted (or left stale) under an artifact's name by anything
//! that can write only `~/.cache`-style directories, a link there, a directory another
//! user can write. What it does not stop: a process of this same user that rewrites the
//! host's state as well as the cache — every sibling gateway runs as this user; that
//! boundary comes with confining the siblings themselves.

use crate::record::state::{HostState, sha256};
use anyhow::{Context as _, Result, bail};
use cap_std::fs::Dir;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest artifact read (the provisioner's is a few MB).
const MAX_ARTIFACT: u64 = 256 << 20;

/// The cache directory, and the home whose host state records what was written there.
pub struct Cache {
    dir: PathBuf,
    home: PathBuf,
}

impl Cache {
    /// The cache in `dir`, its artifacts recorded in the host state of `home`.
    pub fn new(dir: PathBuf, home: PathBuf) -> Self {
        Self { dir, home }
    }

    /// The path of the entry `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The bytes of the entry `name` if every check holds; `None` when there is no
    /// entry; an error saying which check failed.
    pub fn entry(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let dir = crate::sys::private_dir::open(&self.dir)?;
        let Some(bytes) = read_own(&dir, name)? else { return Ok(None) };
        let recorded = HostState::components(&self.home).context("reading the host's record of its artifacts")?.artifact(name);
        match recorded {
            Some(hash) if hash == sha256(&bytes) => Ok(Some(bytes)),
            Some(_) => bail!("its SHA-256 is not the one the host recorded when it wrote it"),
            None => bail!("the host has no record of writing it"),
        }
    }

    /// Writes `bytes` as the entry `name` (atomically, 0600) and records their SHA-256.
    pub fn store(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = crate::sys::private_dir::open(&self.dir)?;
        crate::sys::atomic::write(&dir, Path::new(name), bytes, 0o600).with_context(|| format!("writing {}", self.path(name).display()))?;
        HostState::components(&self.home)?.record_artifact(name, &sha256(bytes))
    }
}

/// The bytes of the entry `name` in `dir` (`None` when there is none): opened without
/// following a link, a regular file owned by this user with no group or other bits.
fn read_own(dir: &Dir, name: &str) -> Result<Option<Vec<u8>>> {
    let file = match crate::sys::safe_open::open_regular(dir, Path::new(name)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("it cannot be opened as a regular file without following a link"),
    };
    let stat = rustix::fs::fstat(&file).context("reading its owner")?;
    if stat.st_uid != rustix::process::geteuid().as_raw() {
        bail!("it belongs to uid {}, not to this user", stat.st_uid);
    }
    if stat.st_mode & 0o077 != 0 {
        bail!("its mode {:04o} lets others read or write it", stat.st_mode & 0o7777);
    }
    let mut bytes = Vec::new();
    file.take(MAX_ARTIFACT + 1).read_to_end(&mut bytes).context("reading it")?;
    anyhow::ensure!(bytes.len() as u64 <= MAX_ARTIFACT, "it is larger than {MAX_ARTIFACT} bytes");
    Ok(Some(bytes))
}
