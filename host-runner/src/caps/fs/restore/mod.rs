//! Restoring a sibling home from an archive that deprovision wrote (`fs.restore-archive`).
//!
//! The host, never the component, reads the archive: every entry is checked before any of
//! it is written ([`entries`]: names under `.openclaw-<handle>/`, no links, devices or
//! FIFOs, no pax headers, no duplicates, modes at most 0777), within caps on entries,
//! decompressed size and compression ratio ([`RestoreCaps`]). What passes is unpacked into
//! a temporary directory next to the home ([`unpack`]) when it is on the list of what a
//! sibling home may hold ([`crate::caps::fs::sibling_files::LIST`]: the config, the workspace's notes
//! and memory, the agent directories, the credential files); everything else is left out
//! and reported (OpenClaw's code, caches and scratch among it; the host copies the lead's
//! plugins and skills instead). The tree is then checked as the file system sees it
//! ([`tree`]: `openclaw.json` in the provisioner's shape, `.env` with provider keys only,
//! credential files 0600), finished (modes, times, fsync) and
//! renamed into place without replacing anything. On any error the temporary directory
//! is removed: nothing is written.

pub mod choice;
mod entries;
mod tree;
mod unpack;

use crate::caps::fs::archive::{CapReached, ListCaps, ReadError};
use crate::caps::fs::grants::create_dir_exact;
use crate::caps::fs::sibling_files::SiblingRules;
use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;
use std::io::{self, Read};


/// What a restore reads at most.
#[derive(Clone, Copy, Debug)]
pub struct RestoreCaps {
    /// Headers (extension headers included), bytes per name, and decompressed bytes:
    /// the caps an archive is listed with, which deprovision verified it within.
    pub list: ListCaps,
    /// Entries (files, directories, links): a deprovision walks at most
    /// [`crate::caps::fs::MAX_WALK_ENTRIES`], plus the home itself.
    pub entries: usize,
    /// Decompressed bytes per compressed byte at most. Deprovision compresses at gzip's
    /// fastest level, which gets at most about 230:1 even from zeros; the best level gets
    /// about 1030:1, which is what a gzip bomb uses.
    pub ratio: u64,
    /// The ratio is checked once this many bytes are decompressed.
    pub ratio_after: u64,
}

impl RestoreCaps {
    /// The caps `fs.restore-archive` applies.
    pub const DEFAULT: RestoreCaps =
        RestoreCaps { list: ListCaps::DEFAULT, entries: crate::caps::fs::MAX_WALK_ENTRIES + 1, ratio: 500, ratio_after: 64 << 20 };
}

/// Why nothing was restored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The home exists; a restore never writes over one.
    #[error("{0}")]
    Exists(String),
    /// The archive holds what a sibling home may not: the message names the entry, the cap
    /// or the rule.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing failed (with the path and the system's reason).
    #[error("{0}")]
    Io(String),
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Cap(what) => Error::Refused(format!("{what} (a restore cap)")),
            ReadError::Refused(why) => Error::Refused(why),
            ReadError::Io(e) => match e.get_ref().and_then(|r| r.downcast_ref::<CapReached>()) {
                Some(reached) => Error::Refused(format!("{reached} (a restore cap)")),
                None => Error::Refused(format!("the archive is not a readable .tar.gz ({e})")),
            },
        }
    }
}

/// What was restored, for the component and the audit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u32,
    pub directories: u32,
    pub bytes: u64,
    /// `node-host/ (12 entries)`, ...: what was not on the list, by place.
    pub left_out: Vec<String>,
    /// Credential files and `openclaw.json`, set to 0600.
    pub private: Vec<String>,
    /// Temporary directories of earlier restores, killed part-way, that were removed.
    pub stale_removed: Vec<String>,
}

/// A home unpacked and checked in a temporary directory next to where it goes. Dropped
/// without [`Staged::commit`], the temporary directory is removed.
pub struct Staged<'a> {
    parent: &'a Dir,
    temp: String,
    home: String,
    committed: bool,
    pub summary: Summary,
}

/// Unpacks `archive` (a `.tar.gz` of the home of `handle`) into a new temporary
/// directory in `parent`, checking every entry and then the tree against `rules`.
pub fn stage<'a>(parent: &'a Dir, handle: &str, archive: impl Read, rules: &SiblingRules, caps: &RestoreCaps) -> Result<Staged<'a>, Error> {
    let home = naming::home_name(handle);
    if parent.symlink_metadata(&home).is_ok() {
        return Err(Error::Exists(format!("{home} exists; a restore never writes over a home")));
    }
    let stale_removed = remove_stale(parent, &home);
    let temp = format!("{home}.restoring-{}", std::process::id());
    create_dir_exact(parent, temp.as_ref(), 0o700).map_err(|e| Error::Io(format!("creating {temp}: {e}")))?;
    let mut staged = Staged { parent, temp, home, committed: false, summary: Summary { stale_removed, ..Summary::default() } };
    let dir = parent.open_dir_nofollow(&staged.temp).map_err(|e| Error::Io(format!("opening {}: {e}", staged.temp)))?;
    let unpacked = unpack::unpack(&dir, handle, archive, caps)?;
    let private = tree::check(&dir, rules)?;
    unpack::finish(&dir, &unpacked).map_err(|e| Error::Io(format!("finishing {}: {e}", staged.temp)))?;
    let stale_removed = std::mem::take(&mut staged.summary.stale_removed);
    staged.summary = Summary { private, stale_removed, ..unpacked.summary() };
    Ok(staged)
}

impl Staged<'_> {
    /// Renames the temporary directory to the home, never over something that appeared
    /// there meanwhile, and syncs the parent directory.
    pub fn commit(mut self) -> io::Result<()> {
        rename_exclusive(self.parent, &self.temp, &self.home)?;
        self.committed = true;
        self.parent.open(".")?.sync_all()
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.parent.remove_dir_all(&self.temp);
        }
    }
}

/// Renames `from` to `to` in `dir` unless `to` exists (`renameat2` with
/// `RENAME_NOREPLACE`, `renameatx_np` with `RENAME_EXCL` on macOS); where the file system
/// cannot, the existence check and the rename are separate.
fn rename_exclusive(dir: &Dir, from: &str, to: &str) -> io::Result<()> {
    use rustix::fs::{RenameFlags, renameat, renameat_with};
    use rustix::io::Errno;
    match renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS => {
            if dir.symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            renameat(dir, from, dir, to).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a process `pid` exists.
pub fn process_alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| !matches!(rustix::process::test_kill_process(pid), Err(e) if e == rustix::io::Errno::SRCH))
}

/// Removes the temporary directories (`<home>.restoring-<pid>`) of restores whose process
/// is gone (killed part-way); returns their names.
fn remove_stale(parent: &Dir, home: &str) -> Vec<String> {
    let prefix = format!("{home}.restoring-");
    let Ok(entries) = parent.entries() else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid != std::process::id() as i32 && process_alive(pid as u32) {
            continue;
        }
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => parent.remove_dir_all(&name),
            _ => parent.remove_file(&name),
        };
        if gone.is_ok() {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests;
