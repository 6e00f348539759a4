//! The snapshot an adoption is undone from: the bytes and modes of every file it may
//! change (or that the file did not exist), what the sibling home held (its entries'
//! names, so that whatever the attempt's gateway created there is removed again), and
//! the old service definition with whether it was loaded and running. It lives in the host's state
//! (`<home>/.local/state/agent-provisioner/adopting/<handle>/`, 0700, blobs 0600), which
//! no grant reaches, so neither the component nor a sibling can alter what is put back;
//! and on disk, so a run killed part-way is undone by the next one.

use super::legacy_service::Found;
use crate::runtime::bindings::openclaw::provisioner::adoption::LegacyDefinition;
use crate::record::state::sha256;
use anyhow::{Context as _, Result, bail};
use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// The record's file name; it is written last, so a directory without it holds nothing
/// that was acted on.
const RECORD: &str = "record.json";

/// A file adoption may change: `relative` under the directory `root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub root: PathBuf,
    pub relative: PathBuf,
}

/// A saved file's bytes (in the blob `blob`) and mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub blob: String,
    pub mode: u32,
    pub sha256: String,
}

/// One file, as it was: `None` when it did not exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    pub place: Place,
    pub saved: Option<Saved>,
}

/// The old service definition, as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDefinition {
    pub path: String,
    pub name: String,
    pub loaded: bool,
    pub running: bool,
    pub command: String,
    pub saved: Saved,
}

impl SavedDefinition {
    pub fn definition(&self) -> LegacyDefinition {
        LegacyDefinition { path: self.path.clone(), name: self.name.clone(), loaded: self.loaded, running: self.running, command: self.command.clone() }
    }
}

/// What a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The process that took it (a live one's snapshot is not touched by another run).
    pub pid: u32,
    pub handle: String,
    pub lead_home: PathBuf,
    pub files: Vec<SavedFile>,
    /// The sibling home and every entry it held (relative; directories end with `/`).
    pub home: PathBuf,
    pub home_entries: Vec<String>,
    pub definition: Option<SavedDefinition>,
}

/// A snapshot on disk.
pub struct Snapshot {
    pub dir: PathBuf,
    pub record: Record,
}

impl Snapshot {
    /// The snapshot directory of `handle` in the host state directory `state_dir`.
    pub fn dir_of(state_dir: &Path, handle: &str) -> PathBuf {
        state_dir.join("adopting").join(handle)
    }

    /// Saves `places`, the names of what `home` holds and `definition` into a new
    /// directory `dir` (which must not exist).
    pub fn take(dir: &Path, handle: &str, lead_home: &Path, home: &Path, places: &[Place], definition: Option<&Found>) -> Result<Snapshot> {
        let home_entries = entries(home).with_context(|| format!("listing {}", home.display()))?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.parent().expect("has a parent"))?;
        std::fs::DirBuilder::new().mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
        let blobs = Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
        let mut count = 0;
        let mut save = |bytes: &[u8], mode: u32| -> Result<Saved> {
            count += 1;
            let blob = format!("blob-{count}");
            crate::sys::atomic::write(&blobs, Path::new(&blob), bytes, 0o600).with_context(|| format!("saving {blob} in {}", dir.display()))?;
            Ok(Saved { blob, mode, sha256: sha256(bytes) })
        };
        let mut files = Vec::new();
        for place in places {
            let saved = match read_place(place)? {
                Some((bytes, mode)) => Some(save(&bytes, mode)?),
                None => None,
            };
            files.push(SavedFile { place: place.clone(), saved });
        }
        let definition = match definition {
            Some(found) => {
                let d = &found.definition;
                let saved = save(&found.bytes, found.mode)?;
                Some(SavedDefinition { path: d.path.clone(), name: d.name.clone(), loaded: d.loaded, running: d.running, command: d.command.clone(), saved })
            }
            None => None,
        };
        let record = Record { pid: std::process::id(), handle: handle.into(), lead_home: lead_home.into(), files, home: home.into(), home_entries, definition };
        let text = serde_json::to_vec_pretty(&record).expect("the record serializes");
        crate::sys::atomic::write(&blobs, Path::new(RECORD), &text, 0o600).with_context(|| format!("writing {}/{RECORD}", dir.display()))?;
        Ok(Snapshot { dir: dir.to_path_buf(), record })
    }

    /// The snapshot in `dir`: `Ok(None)` when there is none, or only the start of one
    /// (its record was never written, so nothing was changed after it).
    pub fn load(dir: &Path) -> Result<Option<Snapshot>> {
        match crate::sys::safe_open::read_path(&dir.join(RECORD), 1 << 20)? {
            Some(bytes) => {
                let record = serde_json::from_slice(&bytes).with_context(|| format!("{}/{RECORD} is corrupt", dir.display()))?;
                Ok(Some(Snapshot { dir: dir.to_path_buf(), record }))
            }
            None => Ok(None),
        }
    }

    /// A saved blob's bytes, checked against its hash.
    pub fn bytes(&self, saved: &Saved) -> Result<Vec<u8>> {
        let bytes = crate::sys::safe_open::read_path(&self.dir.join(&saved.blob), 64 << 20)?.with_context(|| format!("{} lost {}", self.dir.display(), saved.blob))?;
        if sha256(&bytes) != saved.sha256 {
            bail!("{}/{} does not match its hash", self.dir.display(), saved.blob);
        }
        Ok(bytes)
    }

    /// Puts every saved file back as it was (a file that did not exist is removed);
    /// returns one line per file, `Err` for one that could not be.
    pub fn restore_files(&self) -> Vec<Result<String, String>> {
        self.record
            .files
            .iter()
            .map(|file| {
                let shown = file.place.root.join(&file.place.relative).display().to_string();
                let result = match &file.saved {
                    Some(saved) => self.bytes(saved).and_then(|bytes| write_place(&file.place, &bytes, saved.mode)).map(|()| format!("{shown} put back")),
                    None => remove_place(&file.place).map(|gone| if gone { format!("{shown} removed (it did not exist)") } else { format!("{shown} still absent") }),
                };
                result.map_err(|e| format!("{shown}: {e:#}"))
            })
            .collect()
    }

    /// Removes from the home what was not there when the snapshot was taken (what the
    /// attempt's gateway created: its database, scratch files...), never through a link.
    pub fn remove_new_entries(&self) -> Result<String, String> {
        let shown = self.record.home.display().to_string();
        let now = entries(&self.record.home).map_err(|e| format!("listing {shown}: {e:#}"))?;
        let before: std::collections::BTreeSet<&str> = self.record.home_entries.iter().map(String::as_str).collect();
        let new: Vec<&String> = now.iter().filter(|e| !before.contains(e.as_str())).collect();
        // A new directory goes with what is in it.
        let tops: Vec<&String> = new.iter().copied().filter(|e| !new.iter().any(|d| d.ends_with('/') && *e != *d && e.starts_with(d.as_str()))).collect();
        if tops.is_empty() {
            return Ok(format!("{shown} holds nothing the attempt created"));
        }
        let dir = open_root(&self.record.home).map_err(|e| format!("{e:#}"))?;
        for entry in &tops {
            let relative = Path::new(entry.trim_end_matches('/'));
            crate::caps::fs::remove(&dir, relative, &format!("{shown}/{entry}")).map_err(|e| format!("removing {shown}/{entry}: {e:?}"))?;
        }
        let names: Vec<&str> = tops.iter().map(|e| e.as_str()).collect();
        Ok(format!("removed what the attempt created in {shown}: {} ({} entries)", names.join(", "), new.len()))
    }

    /// Removes the snapshot.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))
    }
}

/// Every entry under `home` (relative, sorted, directories ending with `/`), within the
/// walk's caps; entered without following links.
fn entries(home: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    crate::caps::fs::walk(&open_root(home)?, &mut out, crate::caps::fs::WALK_CAPS)?;
    Ok(out)
}

/// The directory `root`, opened without following a link at its last component.
pub(super) fn open_root(root: &Path) -> Result<Dir> {
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else { bail!("{} is not a directory path", root.display()) };
    let parent = Dir::open_ambient_dir(parent, cap_std::ambient_authority()).with_context(|| format!("opening {}", parent.display()))?;
    parent.open_dir_nofollow(name).with_context(|| format!("opening {} without following a link", root.display()))
}

/// The bytes and mode of a place, `None` when nothing is there; never through a link.
fn read_place(place: &Place) -> Result<Option<(Vec<u8>, u32)>> {
    use cap_std::fs::PermissionsExt as _;
    let root = match open_root(&place.root) {
        Ok(root) => root,
        Err(_) if !place.root.exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let shown = || place.root.join(&place.relative).display().to_string();
    match crate::sys::safe_open::open_regular(&root, &place.relative) {
        Ok(file) => {
            let mode = file.metadata()?.permissions().mode() & 0o7777;
            let bytes = crate::sys::safe_open::read_regular(&root, &place.relative, 64 << 20).with_context(|| format!("reading {}", shown()))?;
            Ok(Some((bytes, mode)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("saving {}", shown())),
    }
}

fn write_place(place: &Place, bytes: &[u8], mode: u32) -> Result<()> {
    let root = open_root(&place.root)?;
    if let Some(parent) = place.relative.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.create_dir_all(parent)?;
    }
    crate::sys::atomic::write(&root, &place.relative, bytes, mode)?;
    Ok(())
}

/// Removes a place; whether there was something to remove.
fn remove_place(place: &Place) -> Result<bool> {
    let Ok(root) = open_root(&place.root) else { return Ok(false) };
    match root.remove_file(&place.relative) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn files_come_back_byte_for_byte_and_new_ones_go() {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join(".openclaw-nova");
        std::fs::create_dir_all(home.join("agents/main/agent")).unwrap();
        std::fs::write(home.join("agents/main/agent/auth.json"), b"{\"anthropic\":{}}\n").unwrap();
        std::fs::set_permissions(home.join("agents/main/agent/auth.json"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let places: Vec<Place> =
            ["agents/main/agent/auth.json", ".env"].iter().map(|r| Place { root: home.clone(), relative: r.into() }).collect();
        let dir = Snapshot::dir_of(&temp.path().join("state"), "nova");
        Snapshot::take(&dir, "nova", &temp.path().join(".openclaw"), &home, &places, None).unwrap();
        std::fs::remove_file(home.join("agents/main/agent/auth.json")).unwrap();
        std::fs::write(home.join(".env"), b"ANTHROPIC_API_KEY=x\n").unwrap();

        let snapshot = Snapshot::load(&dir).unwrap().expect("a snapshot");
        assert_eq!(snapshot.record.pid, std::process::id());
        let lines = snapshot.restore_files();
        assert!(lines.iter().all(Result::is_ok), "{lines:?}");
        assert_eq!(std::fs::read(home.join("agents/main/agent/auth.json")).unwrap(), b"{\"anthropic\":{}}\n");
        assert_eq!(std::fs::metadata(home.join("agents/main/agent/auth.json")).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!home.join(".env").exists());
        std::fs::create_dir_all(home.join("state/db")).unwrap();
        std::fs::write(home.join("state/db/openclaw.sqlite"), b"written by the attempt's gateway").unwrap();
        std::os::unix::fs::symlink(temp.path().join("state"), home.join("link")).unwrap();
        let removed = snapshot.remove_new_entries().unwrap();
        assert!(removed.ends_with("link, state/ (4 entries)"), "{removed}");
        assert!(!home.join("state").exists() && home.join("agents/main/agent/auth.json").exists());
        assert!(temp.path().join("state/adopting/nova/record.json").exists(), "a link's target is never removed");
        snapshot.remove().unwrap();
        assert!(Snapshot::load(&dir).unwrap().is_none());
    }

    #[test]
    fn a_link_planted_in_the_home_is_not_saved_through() {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join(".openclaw-nova");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(temp.path().join("secret"), b"lead key").unwrap();
        std::os::unix::fs::symlink(temp.path().join("secret"), home.join(".env")).unwrap();
        let places = [Place { root: home.clone(), relative: ".env".into() }];
        let err = Snapshot::take(&temp.path().join("state/adopting/nova"), "nova", temp.path(), &home, &places, None).err().expect("refused");
        assert!(format!("{err:#}").contains(".env"), "{err:#}");
    }
}
