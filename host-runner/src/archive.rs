//! `.tar.gz` archives of directory capabilities (for archiving homes before removal).

use crate::bindings::TreeStats;
use cap_std::fs::{Dir, MetadataExt as _};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Writes the tree of `source` to `out` as a gzip-compressed tar whose entries start
/// with `name/`. Modes and modification times are kept; symlinks are stored as links,
/// never followed.
///
/// Compression is gzip's fastest level: measured on 50 MB of JavaScript it runs at
/// 184 MB/s against 27 MB/s for the default level, for archives 1.45x the size (ratio 0.29
/// against 0.20) — deprovision waits on this, and archives are a safety copy.
pub fn write(source: &Dir, name: &str, out: impl Write) -> io::Result<TreeStats> {
    let mut builder = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
    builder.follow_symlinks(false);
    let mut stats = TreeStats { files: 0, directories: 0, bytes: 0 };
    append_dir(&mut builder, source, Path::new(name), &mut stats)?;
    builder.into_inner()?.finish()?.flush()?;
    Ok(stats)
}

fn header(kind: tar::EntryType, mode: u32, mtime: i64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_mtime(mtime.max(0) as u64);
    header.set_size(size);
    header
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, dir: &Dir, path: &Path, stats: &mut TreeStats) -> io::Result<()> {
    let meta = dir.dir_metadata()?;
    let mut h = header(tar::EntryType::Directory, meta.mode(), meta.mtime(), 0);
    builder.append_data(&mut h, path, io::empty())?;
    stats.directories += 1;
    let mut entries: Vec<(String, cap_std::fs::FileType)> = dir
        .entries()?
        .map(|e| e.and_then(|e| Ok((e.file_name().to_string_lossy().into_owned(), e.file_type()?))))
        .collect::<io::Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        let child: PathBuf = path.join(&name);
        if kind.is_dir() {
            append_dir(builder, &dir.open_dir(&name)?, &child, stats)?;
        } else if kind.is_symlink() {
            let meta = dir.symlink_metadata(&name)?;
            let mut h = header(tar::EntryType::Symlink, 0o777, meta.mtime(), 0);
            builder.append_link(&mut h, &child, dir.read_link_contents(&name)?)?;
        } else if kind.is_file() {
            let file = dir.open(&name)?;
            let meta = file.metadata()?;
            let mut h = header(tar::EntryType::Regular, meta.mode(), meta.mtime(), meta.len());
            builder.append_data(&mut h, &child, file)?;
            stats.files += 1;
            stats.bytes += meta.len();
        }
    }
    Ok(())
}

/// Entry names of a `.tar.gz`, in order, directories ending in `/`. Every entry is read
/// through, so a truncated or corrupt archive is an error.
pub fn list(input: impl Read) -> io::Result<Vec<String>> {
    let mut archive = tar::Archive::new(GzDecoder::new(input));
    let mut names = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut name = entry.path()?.to_string_lossy().into_owned();
        if entry.header().entry_type().is_dir() && !name.ends_with('/') {
            name.push('/');
        }
        io::copy(&mut entry, &mut io::sink())?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("home");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join("openclaw.json"), "{}").unwrap();
        std::fs::set_permissions(root.join("openclaw.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(root.join("logs/stdout.log"), "hello\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        t
    }

    #[test]
    fn round_trips_names_modes_and_links() {
        let t = tree();
        let dir = Dir::open_ambient_dir(t.path().join("home"), ambient_authority()).unwrap();
        let mut bytes = Vec::new();
        let stats = write(&dir, "home", &mut bytes).unwrap();
        assert_eq!((stats.files, stats.directories, stats.bytes), (2, 2, 8));
        assert_eq!(list(&bytes[..]).unwrap(), ["home/", "home/link", "home/logs/", "home/logs/stdout.log", "home/openclaw.json"]);
        let mut archive = tar::Archive::new(GzDecoder::new(&bytes[..]));
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            match entry.path().unwrap().to_str().unwrap() {
                "home/openclaw.json" => assert_eq!(entry.header().mode().unwrap(), 0o600),
                "home/link" => assert_eq!(entry.link_name().unwrap().unwrap().to_str(), Some("/etc/passwd")),
                _ => {}
            }
        }
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let t = tree();
        let dir = Dir::open_ambient_dir(t.path().join("home"), ambient_authority()).unwrap();
        let mut bytes = Vec::new();
        write(&dir, "home", &mut bytes).unwrap();
        assert!(list(&bytes[..bytes.len() / 2]).is_err());
        assert!(list(&b"not gzip"[..]).is_err());
    }
}
