//! How the host opens a file wherever it may have been planted by a sibling or a
//! component: never through a symlink at the last component, never blocking on a FIFO or
//! a device (`O_NONBLOCK`), only a regular file, and never reading more than a cap.

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt as _};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, FileType, OpenOptions, OpenOptionsExt as _};
use std::io::{self, Read as _};
use std::path::Path;

/// What a non-regular file is, in words.
pub fn describe(file_type: FileType) -> &'static str {
    use cap_std::fs::FileTypeExt as _;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "a regular file"
    }
}

/// The host's refusal to open a symlink (`O_NOFOLLOW` gave `ELOOP`).
#[derive(Debug, thiserror::Error)]
#[error("is a symlink; not following it")]
pub struct NotFollowed;

/// Opens `relative` in `dir` with `options` plus `O_NOFOLLOW | O_NONBLOCK`, then refuses
/// anything but a regular file (checked on the open descriptor, so a swap after a
/// `stat` changes nothing). A link is `PermissionDenied` ([`NotFollowed`]); a FIFO,
/// socket or device is `InvalidInput` — also a FIFO nobody reads, which a non-blocking
/// open for writing meets as `ENXIO`.
pub fn open_checked(dir: &Dir, relative: &Path, options: &OpenOptions) -> io::Result<File> {
    let mut options = options.clone();
    options.follow(FollowSymlinks::No).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let not_regular = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("is {what}, not a regular file"));
    let file = dir.open_with(relative, &options).map_err(|e| match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => io::Error::new(io::ErrorKind::PermissionDenied, NotFollowed),
        Some(code) if code == rustix::io::Errno::NXIO.raw_os_error() => not_regular("a FIFO nobody reads"),
        _ => e,
    })?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(not_regular(describe(file_type)));
    }
    Ok(file)
}

/// Opens `relative` in `dir` for reading, as [`open_checked`] does.
pub fn open_regular(dir: &Dir, relative: &Path) -> io::Result<File> {
    open_checked(dir, relative, OpenOptions::new().read(true))
}

/// The host's refusal of a regular file with more than one hard link: a sibling (the
/// same Unix user) can give the lead's `.env` a second name inside its own home.
#[derive(Debug, thiserror::Error)]
#[error("{name} has {links} hard links, and another of its names may be a file outside this home (such as the lead's .env); the host neither reads nor archives it for the component")]
pub struct HardLinked {
    /// The file, as the caller names it.
    pub name: String,
    pub links: u64,
}

/// Opens `relative` in `dir` as [`open_regular`] does, and refuses a file with more
/// than one hard link ([`HardLinked`], as `PermissionDenied`); checked on the open
/// descriptor.
pub fn open_sole(dir: &Dir, relative: &Path) -> io::Result<File> {
    use cap_std::fs::MetadataExt as _;
    let file = open_regular(dir, relative)?;
    match file.metadata()?.nlink() {
        1 => Ok(file),
        links => Err(io::Error::new(io::ErrorKind::PermissionDenied, HardLinked { name: relative.display().to_string(), links })),
    }
}

/// Reads a whole regular file of at most `max` bytes (a file that grows past it while
/// being read is refused as well).
pub fn read_regular(dir: &Dir, relative: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_open(open_regular(dir, relative)?, max)
}

/// Reads `relative` as [`read_regular`] does, refusing a hard-linked file as
/// [`open_sole`] does.
pub fn read_sole(dir: &Dir, relative: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_open(open_sole(dir, relative)?, max)
}

/// Reads all of the open `file`, at most `max` bytes.
fn read_open(file: File, max: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_big(len, max));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn too_big(len: u64, max: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{len} bytes is more than the {max}-byte limit"))
}

/// Reads the host file `path` as [`read_regular`] does; `None` when it does not exist.
/// Errors name the path.
pub fn read_path(path: &Path, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context as _;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        anyhow::bail!("{} is not a file path", path.display());
    };
    let result = Dir::open_ambient_dir(parent, ambient_authority()).and_then(|dir| read_regular(&dir, Path::new(name), max));
    match result {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Opens the host file `path` with `options` as [`open_checked`] does (the directories
/// above it may be links; the file itself may not). `what` names the file in errors.
pub fn open_no_follow(options: &OpenOptions, path: &Path, what: &str) -> anyhow::Result<std::fs::File> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        anyhow::bail!("{what} {} is not a file path", path.display());
    };
    let file = Dir::open_ambient_dir(parent, ambient_authority()).and_then(|dir| open_checked(&dir, Path::new(name), options));
    match file {
        Ok(file) => Ok(file.into_std()),
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<NotFollowed>()) => {
            anyhow::bail!("{what} {} is a symbolic link; refusing to follow it", path.display())
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => anyhow::bail!("{what} {} {e}; refusing to use it", path.display()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {what} {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn fifos_links_and_big_files_are_refused_without_blocking() {
        let temp = tempfile::tempdir().unwrap();
        let fifo = temp.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", temp.path().join("link")).unwrap();
        std::fs::write(temp.path().join("big"), vec![b'x'; 100]).unwrap();
        std::fs::write(temp.path().join("ok"), b"fine").unwrap();
        let started = Instant::now();
        let err = format!("{:#}", read_path(&fifo, 1000).unwrap_err());
        assert!(err.contains("is a FIFO") && err.contains("fifo"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = format!("{:#}", read_path(&temp.path().join("link"), 1000).unwrap_err());
        assert!(err.contains("symlink"), "{err}");
        let err = format!("{:#}", read_path(&temp.path().join("big"), 99).unwrap_err());
        assert!(err.contains("99-byte limit"), "{err}");
        assert_eq!(read_path(&temp.path().join("ok"), 4).unwrap().unwrap(), b"fine");
        assert!(read_path(&temp.path().join("missing"), 4).unwrap().is_none());
    }

    #[test]
    fn a_hard_linked_file_is_refused_by_the_sole_reads() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("lead.env"), b"KEY=x").unwrap();
        std::fs::hard_link(temp.path().join("lead.env"), temp.path().join("notes.md")).unwrap();
        let dir = Dir::open_ambient_dir(temp.path(), ambient_authority()).unwrap();
        let err = read_sole(&dir, Path::new("notes.md"), 100).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<HardLinked>()) && err.to_string().contains("notes.md has 2 hard links"), "{err}");
        assert_eq!(read_regular(&dir, Path::new("notes.md"), 100).unwrap(), b"KEY=x", "plain reads are the host's own");
        std::fs::remove_file(temp.path().join("lead.env")).unwrap();
        assert_eq!(read_sole(&dir, Path::new("notes.md"), 100).unwrap(), b"KEY=x");
    }
}
