//! Writing the checked entries of an archive into the temporary directory, and finishing
//! the tree once it has been checked (directory modes and times, fsync).

use super::entries::{Planned, Verifier};
use super::{Error, RestoreCaps, Summary};
use crate::caps::fs::archive::{self, Capped, Counted, PaxHeaders, Ratio, ReadError};
use crate::caps::fs::grants::create_dir_exact;
use crate::caps::fs::sibling_files::ALLOWED_MODE;
use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::{self, Read, Write as _};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// What was written, and the directories to finish.
#[derive(Default)]
pub struct Unpacked {
    files: u32,
    bytes: u64,
    /// Every directory (the home first, as `""`), with its mode and time, in archive
    /// order: parents before their children.
    dirs: Vec<(PathBuf, u32, u64)>,
    /// Entries left out, by the first place on their path that is not on the list.
    left_out: BTreeMap<String, usize>,
}

impl Unpacked {
    /// The counts, for the component and the audit.
    pub fn summary(&self) -> Summary {
        Summary {
            files: self.files,
            directories: self.dirs.len() as u32,
            bytes: self.bytes,
            left_out: left_out(&self.left_out),
            ..Summary::default()
        }
    }
}

/// The places shown in a summary at most; the rest are counted in one line.
const MAX_LEFT_OUT_SHOWN: usize = 50;

/// `node-host/ (12 entries)`, ... for each left-out place, at most
/// [`MAX_LEFT_OUT_SHOWN`] of them.
fn left_out(places: &BTreeMap<String, usize>) -> Vec<String> {
    let entries = |n: usize| format!("{n} {}", if n == 1 { "entry" } else { "entries" });
    let mut shown: Vec<String> = places.iter().take(MAX_LEFT_OUT_SHOWN).map(|(place, n)| format!("{place} ({})", entries(*n))).collect();
    if places.len() > MAX_LEFT_OUT_SHOWN {
        let rest: usize = places.values().skip(MAX_LEFT_OUT_SHOWN).sum();
        shown.push(format!("{} other places ({})", places.len() - MAX_LEFT_OUT_SHOWN, entries(rest)));
    }
    shown
}

/// Reads `archive` as a stream within `caps` and writes each entry into `dir` as soon as
/// it passed the [`Verifier`]: directories 0700 for now, files with their mode (narrowed
/// to at most 0755), time and contents, synced.
pub fn unpack(dir: &Dir, handle: &str, archive: impl Read, caps: &RestoreCaps) -> Result<Unpacked, Error> {
    let compressed = std::rc::Rc::default();
    let counted = Counted { inner: archive, count: std::rc::Rc::clone(&compressed) };
    let ratio = Ratio { compressed, max: caps.ratio, after: caps.ratio_after };
    let decompressed = Capped::new(GzDecoder::new(counted), caps.list.decompressed_bytes, Some(ratio));
    let mut tar = tar::Archive::new(decompressed);
    let mut verifier = Verifier::new(handle, caps.entries);
    let mut unpacked = Unpacked::default();
    let mut buffer = vec![0u8; 64 << 10];
    archive::read_entries(&mut tar, &caps.list, PaxHeaders::Refuse, |name, entry| -> Result<(), Error> {
        match verifier.check(&name, entry.header()).map_err(Error::Refused)? {
            Planned::Dir { relative, mode, mtime } => {
                if !relative.as_os_str().is_empty() {
                    create_dir_exact(dir, &relative, 0o700).map_err(|e| written(&relative, e))?;
                }
                unpacked.dirs.push((relative, mode, mtime));
            }
            Planned::File { relative, mode, mtime, .. } => {
                unpacked.bytes += write_file(dir, &relative, (mode, mtime), entry, &mut buffer)?;
                unpacked.files += 1;
            }
            Planned::LeftOut { place } => *unpacked.left_out.entry(place).or_default() += 1,
        }
        Ok(())
    })?;
    if unpacked.dirs.is_empty() {
        return Err(Error::Refused("the archive is empty".into()));
    }
    Ok(unpacked)
}

/// The error for writing `relative`: an entry the file system takes for one written
/// before (on a case-insensitive one, `A` and `a`) is refused; the rest is I/O.
fn written(relative: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::AlreadyExists => Error::Refused(format!(
            "entry {:?} names the same file as an earlier entry on this file system",
            relative.display().to_string()
        )),
        _ => Error::Io(format!("writing {}: {e}", relative.display())),
    }
}

/// Writes one file (created exclusively, never through a link) from `data`, a tar entry;
/// returns its size.
fn write_file(dir: &Dir, relative: &Path, (mode, mtime): (u32, u64), data: &mut impl Read, buffer: &mut [u8]) -> Result<u64, Error> {
    let fail = |e| written(relative, e);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut file = dir.open_with(relative, &options).map_err(fail)?;
    let mut size = 0u64;
    loop {
        // A read error is the archive's (a cap, a corrupt stream); a write error is ours.
        let n = data.read(buffer).map_err(|e| Error::from(ReadError::Io(e)))?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n]).map_err(fail)?;
        size += n as u64;
    }
    let fd = file.as_fd();
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode((mode & ALLOWED_MODE) as rustix::fs::RawMode)).map_err(|e| fail(e.into()))?;
    rustix::fs::futimens(fd, &timestamps(mtime)).map_err(|e| fail(e.into()))?;
    file.sync_all().map_err(fail)?;
    Ok(size)
}

fn timestamps(mtime: u64) -> rustix::fs::Timestamps {
    let at = rustix::fs::Timespec { tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    rustix::fs::Timestamps { last_access: at, last_modification: at }
}

/// Gives every directory its mode (narrowed to at most 0755) and time, children before
/// parents (so a parent's time is not changed afterwards), and syncs it.
pub fn finish(dir: &Dir, unpacked: &Unpacked) -> io::Result<()> {
    for (relative, mode, mtime) in unpacked.dirs.iter().rev() {
        // Opened as a file: a directory capability's descriptor cannot be synced.
        let opened = match relative.as_os_str().is_empty() {
            true => dir.open(".")?,
            false => dir.open_dir_nofollow(relative)?.open(".")?,
        };
        rustix::fs::fchmod(&opened, rustix::fs::Mode::from_raw_mode((mode & ALLOWED_MODE) as rustix::fs::RawMode))?;
        rustix::fs::futimens(&opened, &timestamps(*mtime))?;
        rustix::fs::fsync(&opened)?;
    }
    Ok(())
}
