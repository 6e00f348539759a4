//! The host's own record of what it made: which sibling homes it let a component create
//! (for which lead), and which service definitions it wrote (path, content hash and the
//! gateway port the host put into it).
//!
//! It lives in `<home>/.local/state/agent-provisioner/siblings.json`, a place no grant
//! reaches, so a component cannot forge it: this record, not the family registry the
//! component writes, decides which `~/.openclaw-<handle>` homes are sibling homes and
//! which definitions the host may start, stop or remove. Beside it, `components.json`
//! (the same kind of record, with only `artifacts`) holds the SHA-256 of each
//! compiled-component artifact the host wrote ([`crate::runtime::component_cache`]); any command
//! may write that one, so it is kept apart. Changes are made under an exclusive lock
//! (`<name>.lock`), re-reading the file first, and written atomically (0600) into a
//! directory only this user reaches ([`crate::sys::private_dir`]).

use crate::record::program::RecordedProgram;
use anyhow::{Context as _, Result};
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const VERSION: u32 = 1;

/// A service definition the host wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenDefinition {
    pub path: PathBuf,
    /// SHA-256 of the bytes written, hex.
    pub sha256: String,
    /// The gateway port the host derived the definition for (the loopback HTTP grant).
    /// `None` in records written before ports were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// One sibling home the host let a component create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// The lead whose run created it; other leads' runs get no grant on it.
    pub lead_home: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<WrittenDefinition>,
    /// The program its service runs, as it was when the definition was written; `None` in
    /// records written before programs were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<RecordedProgram>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    version: u32,
    siblings: BTreeMap<String, Sibling>,
    /// The SHA-256 (hex) of each compiled-component artifact the host wrote, by file name
    /// ([`crate::runtime::component_cache`]); only in `components.json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    artifacts: BTreeMap<String, String>,
}

impl Record {
    /// The sibling `handle`, recorded as made for `lead_home` if it is new.
    fn entry(&mut self, handle: &str, lead_home: &Path) -> &mut Sibling {
        self.siblings.entry(handle.to_string()).or_insert_with(|| Sibling { lead_home: lead_home.to_path_buf(), definition: None, program: None })
    }
}

/// The record, read once and kept current by every change.
pub struct HostState {
    path: PathBuf,
    record: Mutex<Record>,
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl HostState {
    /// The record of `home` (empty when the file does not exist yet).
    pub fn open(home: &Path) -> Result<Self> {
        Self::open_file(home, "siblings.json")
    }

    /// The record of the compiled-component artifacts the host wrote for `home`.
    pub fn components(home: &Path) -> Result<Self> {
        Self::open_file(home, "components.json")
    }

    fn open_file(home: &Path, name: &str) -> Result<Self> {
        let path = PathBuf::from(naming::host_state_dir(&home.display().to_string())).join(name);
        let record = read(&path)?;
        Ok(Self { path, record: Mutex::new(record) })
    }

    /// An empty record that lives only in memory (unit tests).
    #[cfg(test)]
    pub fn in_memory() -> Self {
        Self { path: PathBuf::new(), record: Mutex::new(Record { version: VERSION, ..Record::default() }) }
    }

    /// The sibling `handle`, when the host made its home for `lead_home`.
    pub fn sibling(&self, handle: &str, lead_home: &Path) -> Option<Sibling> {
        self.record.lock().expect("state lock").siblings.get(handle).filter(|s| s.lead_home == lead_home).cloned()
    }

    /// The definition the host wrote for `handle`, whichever lead it was for.
    pub fn definition(&self, handle: &str) -> Option<WrittenDefinition> {
        self.record.lock().expect("state lock").siblings.get(handle).and_then(|s| s.definition.clone())
    }

    /// Every definition the host wrote, by handle.
    pub fn definitions(&self) -> Vec<(String, WrittenDefinition)> {
        let record = self.record.lock().expect("state lock");
        record.siblings.iter().filter_map(|(handle, s)| Some((handle.clone(), s.definition.clone()?))).collect()
    }

    /// Records that a run of `lead_home` creates the home of `handle`.
    pub fn claim_home(&self, handle: &str, lead_home: &Path) -> Result<()> {
        self.update(|r| {
            r.entry(handle, lead_home);
        })
    }

    /// Forgets the home of `handle` (removed), keeping it while a definition or its
    /// program is recorded.
    pub fn release_home(&self, handle: &str) -> Result<()> {
        self.update(|r| {
            if r.siblings.get(handle).is_some_and(|s| s.definition.is_none() && s.program.is_none()) {
                r.siblings.remove(handle);
            }
        })
    }

    /// Records the definition written for `handle`.
    pub fn record_definition(&self, handle: &str, lead_home: &Path, definition: WrittenDefinition) -> Result<()> {
        self.update(|r| {
            r.entry(handle, lead_home).definition = Some(definition);
        })
    }

    /// Records the program the service of `handle` runs (with its definition).
    pub fn record_program(&self, handle: &str, lead_home: &Path, program: RecordedProgram) -> Result<()> {
        self.update(|r| {
            r.entry(handle, lead_home).program = Some(program);
        })
    }

    /// Forgets the definition of `handle` and its program (removed).
    pub fn forget_definition(&self, handle: &str) -> Result<()> {
        self.update(|r| {
            if let Some(s) = r.siblings.get_mut(handle) {
                s.definition = None;
                s.program = None;
            }
        })
    }

    /// Forgets `handle` altogether: its home, definition and program (an adoption undone).
    pub fn forget_sibling(&self, handle: &str) -> Result<()> {
        self.update(|r| {
            r.siblings.remove(handle);
        })
    }

    /// The SHA-256 the host recorded for the compiled-component artifact `name`.
    pub fn artifact(&self, name: &str) -> Option<String> {
        self.record.lock().expect("state lock").artifacts.get(name).cloned()
    }

    /// Records the SHA-256 of the artifact `name` the host has just written.
    pub fn record_artifact(&self, name: &str, sha256: &str) -> Result<()> {
        self.update(|r| {
            r.artifacts.insert(name.to_string(), sha256.to_string());
        })
    }

    /// Applies `change` to the current file's contents under an exclusive lock.
    fn update(&self, change: impl FnOnce(&mut Record)) -> Result<()> {
        let mut cached = self.record.lock().expect("state lock");
        if self.path.as_os_str().is_empty() {
            change(&mut cached);
            return Ok(());
        }
        let dir = self.path.parent().expect("the state file has a directory");
        let handle = crate::sys::private_dir::open(dir)?;
        let lock_path = self.path.with_extension("lock");
        let mut options = cap_std::fs::OpenOptions::new();
        cap_std::fs::OpenOptionsExt::mode(options.write(true).create(true).truncate(false), 0o600);
        let lock = crate::sys::safe_open::open_no_follow(&options, &lock_path, "the host's state lock")?;
        flock(&lock, FlockOperation::LockExclusive).with_context(|| format!("locking {}", lock_path.display()))?;
        let mut record = read(&self.path)?;
        change(&mut record);
        let mut text = serde_json::to_string_pretty(&record).expect("the record serializes");
        text.push('\n');
        let name = Path::new(self.path.file_name().expect("the state file has a name"));
        crate::sys::atomic::write(&handle, name, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", self.path.display()))?;
        *cached = record;
        Ok(())
    }
}

/// The largest record the host reads (a few hundred bytes per sibling).
const MAX_RECORD: u64 = 16 << 20;

/// The record at `path` (empty when there is none), read as every host file is: not
/// through a link, not blocking on a FIFO, bounded.
fn read(path: &Path) -> Result<Record> {
    match crate::sys::safe_open::read_path(path, MAX_RECORD)? {
        Some(bytes) => {
            let record: Record = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt; the host cannot tell which siblings it made", path.display()))?;
            anyhow::ensure!(record.version == VERSION, "{}: version {} is not {VERSION}", path.display(), record.version);
            Ok(record)
        }
        None => Ok(Record { version: VERSION, ..Record::default() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_definitions_persist_per_lead() {
        let temp = tempfile::tempdir().unwrap();
        let lead = temp.path().join(".openclaw");
        let state = HostState::open(temp.path()).unwrap();
        state.claim_home("nova", &lead).unwrap();
        let def = WrittenDefinition { path: "/x/openclaw-sibling-nova.service".into(), sha256: sha256(b"unit"), port: Some(18930) };
        state.record_definition("nova", &lead, def.clone()).unwrap();
        let again = HostState::open(temp.path()).unwrap();
        assert!(again.sibling("nova", &lead).is_some());
        assert!(again.sibling("nova", &temp.path().join(".openclaw-other")).is_none(), "another lead gets nothing");
        assert_eq!(again.definition("nova"), Some(def.clone()));
        assert_eq!(again.definitions(), [("nova".to_string(), def)]);
        again.release_home("nova").unwrap();
        assert!(again.sibling("nova", &lead).is_some(), "kept while its definition is recorded");
        again.forget_definition("nova").unwrap();
        again.release_home("nova").unwrap();
        assert!(HostState::open(temp.path()).unwrap().sibling("nova", &lead).is_none());
        let file = temp.path().join(".local/state/agent-provisioner/siblings.json");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let components = HostState::components(temp.path()).unwrap();
        components.record_artifact("a.cwasm", "ab12").unwrap();
        assert_eq!(HostState::components(temp.path()).unwrap().artifact("a.cwasm").as_deref(), Some("ab12"));
        assert!(!std::fs::read_to_string(&file).unwrap_or_default().contains("a.cwasm"), "kept apart from the siblings");
    }

    #[test]
    fn records_written_before_ports_were_kept_still_read() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(".local/state/agent-provisioner");
        std::fs::create_dir_all(&dir).unwrap();
        let old = r#"{"version": 1, "siblings": {"nova": {"lead_home": "/h/.openclaw",
            "definition": {"path": "/h/.config/systemd/user/openclaw-sibling-nova.service", "sha256": "ab"}}}}"#;
        std::fs::write(dir.join("siblings.json"), old).unwrap();
        let state = HostState::open(temp.path()).unwrap();
        let def = state.definition("nova").unwrap();
        assert_eq!((def.sha256.as_str(), def.port), ("ab", None));
        state.record_definition("nova", Path::new("/h/.openclaw"), WrittenDefinition { port: Some(18930), ..def }).unwrap();
        let text = std::fs::read_to_string(dir.join("siblings.json")).unwrap();
        assert!(text.contains("\"port\": 18930"), "{text}");
    }

    #[test]
    fn a_planted_fifo_or_link_is_refused_without_blocking() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(".local/state/agent-provisioner");
        std::fs::create_dir_all(&dir).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, dir.join("siblings.json"), rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let started = std::time::Instant::now();
        let err = format!("{:#}", HostState::open(temp.path()).err().expect("a FIFO is no record"));
        assert!(err.contains("FIFO") && started.elapsed() < std::time::Duration::from_secs(1), "{err}");
        std::fs::remove_file(dir.join("siblings.json")).unwrap();
        std::os::unix::fs::symlink(temp.path().join("elsewhere"), dir.join("siblings.lock")).unwrap();
        let state = HostState::open(temp.path()).unwrap();
        let err = format!("{:#}", state.claim_home("nova", &temp.path().join(".openclaw")).unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!temp.path().join("elsewhere").exists(), "the link was not followed");
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_it() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(".local/state/agent-provisioner");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("siblings.json"), "{oops").unwrap();
        let err = format!("{:#}", HostState::open(temp.path()).err().unwrap());
        assert!(err.contains("siblings.json is corrupt"), "{err}");
    }
}
