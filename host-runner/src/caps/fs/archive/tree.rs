//! The one walk of a home that both archives it (`fs.archive-tree`) and checks that it can
//! be archived (`fs.check-archivable`, which deprovision asks before it stops anything).
//!
//! The walk holds the home to the caps of everything that follows an archive: the
//! `walk-tree` listing deprovision compares it with (entries, depth) and the listing that
//! re-reads it ([`ListCaps::DEFAULT`]: headers, decompressed bytes, name bytes, listed
//! bytes). Headers and bytes are counted on the tar stream itself ([`Measured`]), so the
//! check counts exactly what the archive writes. A check reads no file's contents.

use super::{ListCaps, MAX_ENTRY_NAME_BYTES, header};
use crate::runtime::bindings::TreeStats;
use crate::sys::safe_open::HardLinked;
use crate::caps::fs::{MAX_WALK_BYTES, MAX_WALK_DEPTH, MAX_WALK_ENTRIES};
use cap_fs_ext::{DirExt as _, FileTypeExt as _};
use cap_std::fs::{Dir, FileType, MetadataExt as _};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

const BLOCK: u64 = 512;

/// A cap of an archive that was reached; it names the cap (and the entry, when one is to
/// blame).
fn over(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what} (an archive cap)"))
}

/// A writer under the tar builder that counts the headers and bytes of the stream as the
/// listing will read them, and fails once either is past [`ListCaps::DEFAULT`].
struct Measured<W> {
    inner: W,
    /// The header block being written.
    block: Vec<u8>,
    /// Bytes of entry data (padded) still to come before the next header.
    data_left: u64,
    headers: usize,
    bytes: u64,
}

impl<W> Measured<W> {
    fn new(inner: W) -> Self {
        Self { inner, block: Vec::with_capacity(BLOCK as usize), data_left: 0, headers: 0, bytes: 0 }
    }

    fn count(&mut self, mut buf: &[u8]) -> io::Result<()> {
        self.add_bytes(buf.len() as u64)?;
        while !buf.is_empty() {
            if self.data_left > 0 {
                let n = self.data_left.min(buf.len() as u64);
                self.data_left -= n;
                buf = &buf[n as usize..];
                continue;
            }
            let n = (BLOCK as usize - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.block.len() == BLOCK as usize {
                self.header()?;
            }
        }
        Ok(())
    }

    /// A whole header block was written: counts it and skips its entry's data.
    fn header(&mut self) -> io::Result<()> {
        let block = std::mem::take(&mut self.block);
        if block.iter().all(|b| *b == 0) {
            return Ok(()); // the end of the archive
        }
        self.headers += 1;
        if self.headers > ListCaps::DEFAULT.entries {
            return Err(over(format!("the archive would hold more than {} tar headers", ListCaps::DEFAULT.entries)));
        }
        let size = tar::Header::from_byte_slice(&block).entry_size()?;
        self.data_left = size.div_ceil(BLOCK) * BLOCK;
        Ok(())
    }

    fn add_bytes(&mut self, n: u64) -> io::Result<()> {
        self.bytes += n;
        let cap = ListCaps::DEFAULT.decompressed_bytes;
        if self.bytes > cap {
            return Err(over(format!("the archive would come to more than {} GiB before compression", cap >> 30)));
        }
        Ok(())
    }

    /// The data of the last header is counted without being written (a check).
    fn skip_data(&mut self) -> io::Result<()> {
        let left = std::mem::take(&mut self.data_left);
        self.add_bytes(left)
    }
}

impl<W: Write> Write for Measured<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tree of `source` as a tar to `out` (ended, not flushed), entries starting with
/// `name/`, within the caps; returns what it holds.
pub fn write(source: &Dir, name: &str, out: impl Write) -> io::Result<TreeStats> {
    walk(source, name, out, true).map(|(stats, _)| stats)
}

/// Walks `source` exactly as [`write`] does, opening every file and reading none: what an
/// archive of it would hold, or the cap it would break (or the entry it would refuse).
pub fn check(source: &Dir, name: &str) -> io::Result<TreeStats> {
    walk(source, name, io::sink(), false).map(|(stats, _)| stats)
}

/// The walk of [`write`] (`contents`) and [`check`], with the stream it measured.
fn walk<W: Write>(source: &Dir, name: &str, out: W, contents: bool) -> io::Result<(TreeStats, Measured<W>)> {
    let mut walk = Walk::new(Measured::new(out), contents);
    walk.dir(source, Path::new(name))?;
    Ok((walk.stats, walk.builder.into_inner()?))
}

/// The most bytes of names an archived home may list: what both the verifying `walk-tree`
/// of the home and the listing of the archive read back (its names are the longer, each
/// with the home's own name in front).
const MAX_LISTED: usize = if MAX_WALK_BYTES < ListCaps::DEFAULT.listed_bytes { MAX_WALK_BYTES } else { ListCaps::DEFAULT.listed_bytes };

struct Walk<W: Write> {
    builder: tar::Builder<Measured<W>>,
    /// Whether file contents are written (an archive) or only counted (a check).
    contents: bool,
    stats: TreeStats,
    /// Entries below the root, as `walk-tree` lists them.
    entries: usize,
    /// Bytes of the names the listing returns.
    listed: usize,
}

/// What a special file is, for the refusal.
fn special(kind: FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "neither a file, a directory nor a link"
    }
}

impl<W: Write> Walk<W> {
    fn new(out: Measured<W>, contents: bool) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        Self { builder, contents, stats: TreeStats { files: 0, directories: 0, bytes: 0 }, entries: 0, listed: 0 }
    }

    /// Counts one more entry at `path` (with `extra` bytes it adds to its listed name, `/`
    /// for a directory) against the caps on entries and names.
    fn admit(&mut self, path: &Path, extra: usize) -> io::Result<()> {
        if path.components().count() > 1 {
            self.entries += 1;
            if self.entries > MAX_WALK_ENTRIES {
                return Err(over(format!("the home holds more than {MAX_WALK_ENTRIES} entries")));
            }
        }
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() + extra > MAX_ENTRY_NAME_BYTES {
            return Err(over(format!("{}: a name longer than {MAX_ENTRY_NAME_BYTES} bytes", shown(path))));
        }
        self.listed += String::from_utf8_lossy(bytes).len() + extra;
        if self.listed > MAX_LISTED {
            return Err(over(format!("the names of the home come to more than {} MiB", MAX_LISTED >> 20)));
        }
        Ok(())
    }

    fn dir(&mut self, dir: &Dir, path: &Path) -> io::Result<()> {
        self.admit(path, 1)?;
        let meta = dir.dir_metadata()?;
        self.builder.append_data(&mut header(tar::EntryType::Directory, meta.mode(), meta.mtime(), 0), path, io::empty())?;
        self.stats.directories += 1;
        let mut entries: Vec<(std::ffi::OsString, FileType)> =
            dir.entries()?.map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?)))).collect::<io::Result<_>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in entries {
            let child: PathBuf = path.join(&name);
            if kind.is_dir() {
                if child.components().count() > MAX_WALK_DEPTH {
                    return Err(over(format!("{}: nested more than {MAX_WALK_DEPTH} directories deep", shown(&child))));
                }
                self.dir(&dir.open_dir_nofollow(&name)?, &child)?;
            } else if kind.is_symlink() {
                self.link(dir, &name, &child)?;
            } else if kind.is_file() {
                self.file(dir, &name, &child)?;
            } else {
                return Err(refused(&child, special(kind)));
            }
        }
        Ok(())
    }

    /// A symlink, stored as a link, never followed.
    fn link(&mut self, dir: &Dir, name: &std::ffi::OsStr, path: &Path) -> io::Result<()> {
        self.admit(path, 0)?;
        let target = dir.read_link_contents(name)?;
        if target.as_os_str().len() > MAX_ENTRY_NAME_BYTES {
            return Err(over(format!("{}: a link target longer than {MAX_ENTRY_NAME_BYTES} bytes", shown(path))));
        }
        let meta = dir.symlink_metadata(name)?;
        self.builder.append_link(&mut header(tar::EntryType::Symlink, 0o777, meta.mtime(), 0), path, target)
    }

    /// A regular file, opened without following a link or blocking on a FIFO swapped in
    /// since the listing; one that cannot be opened so is refused, naming it, and so is a
    /// file with another name (a hard link, perhaps to the lead's `.env`).
    fn file(&mut self, dir: &Dir, name: &std::ffi::OsStr, path: &Path) -> io::Result<()> {
        self.admit(path, 0)?;
        let file = match crate::sys::safe_open::open_sole(dir, Path::new(name)) {
            Err(e) if e.get_ref().is_some_and(|r| r.is::<HardLinked>()) => {
                let links = e.into_inner().and_then(|r| r.downcast::<HardLinked>().ok()).map_or(2, |h| h.links);
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, HardLinked { name: path.display().to_string(), links }));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput) => {
                return Err(refused(path, &format!("a file that cannot be opened for reading ({e})")));
            }
            other => other?,
        };
        let meta = file.metadata()?;
        let mut h = header(tar::EntryType::Regular, meta.mode(), meta.mtime(), meta.len());
        if self.contents {
            // A file that grows meanwhile is cut at the size in its header.
            self.builder.append_data(&mut h, path, file.take(meta.len()))?;
        } else {
            self.builder.append_data(&mut h, path, io::empty())?;
            self.builder.get_mut().skip_data()?;
        }
        self.stats.files += 1;
        self.stats.bytes += meta.len();
        Ok(())
    }
}

/// The entry at `path` that an archive does not take.
fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} is {what}, which an archive does not hold", shown(path)))
}

/// `path` for messages: relative to the home, without the home's own name.
fn shown(path: &Path) -> String {
    let mut components = path.components();
    components.next();
    components.as_path().display().to_string()
}

#[cfg(test)]
mod tests;
