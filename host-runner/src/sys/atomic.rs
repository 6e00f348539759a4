//! Atomic file writes inside a directory capability.

use cap_std::fs::{Dir, OpenOptions, Permissions};
use cap_std::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `relative` inside `dir` atomically: a temporary file in the same
/// directory is created with `mode`, written, synced and renamed over the target, and the
/// directory is synced. Readers see the old file or the new one, never a part.
pub fn write(dir: &Dir, relative: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_as(dir, relative, contents, mode, Replace::Yes)
}

/// As [`write`], but never over an existing entry (whatever appears meanwhile): the
/// temporary file is linked to the target name, which fails with `AlreadyExists` when it
/// is taken, and nothing is written then.
pub fn create(dir: &Dir, relative: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_as(dir, relative, contents, mode, Replace::No)
}

/// Whether a write may replace what is at its target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Yes,
    No,
}

fn write_as(dir: &Dir, relative: &Path, contents: &[u8], mode: u32, replace: Replace) -> io::Result<()> {
    let name = relative
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = relative.parent().filter(|p| !p.as_os_str().is_empty());
    let parent_dir;
    let dir = match parent {
        Some(parent) => {
            parent_dir = dir.open_dir(parent)?;
            &parent_dir
        }
        None => dir,
    };
    let temp_name = format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id());
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    let result = (|| {
        let mut file = dir.open_with(&temp_name, &options)?;
        // The umask may have narrowed the mode at creation; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        match replace {
            Replace::Yes => dir.rename(&temp_name, dir, name)?,
            Replace::No => {
                dir.hard_link(&temp_name, dir, name)?;
                dir.remove_file(&temp_name)?;
            }
        }
        dir.open(".")?.sync_all()
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp_name);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_the_mode_and_leaves_no_temp() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("sub")).unwrap();
        std::fs::write(temp.path().join("sub/f"), "old").unwrap();
        let dir = Dir::open_ambient_dir(temp.path(), ambient_authority()).unwrap();
        write(&dir, Path::new("sub/f"), b"new", 0o600).unwrap();
        let path = temp.path().join("sub/f");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(temp.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn create_never_replaces_and_leaves_no_temp() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("old"), "the only copy").unwrap();
        let dir = Dir::open_ambient_dir(temp.path(), ambient_authority()).unwrap();
        let err = create(&dir, Path::new("old"), b"new", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(temp.path().join("old")).unwrap(), "the only copy");
        create(&dir, Path::new("new"), b"made", 0o600).unwrap();
        let made = temp.path().join("new");
        assert_eq!(std::fs::read_to_string(&made).unwrap(), "made");
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!((std::fs::metadata(&made).unwrap().mode() & 0o777, std::fs::metadata(&made).unwrap().nlink()), (0o600, 1));
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 2, "no temporary file is left");
    }

    #[test]
    fn a_missing_parent_is_an_error_and_writes_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(temp.path(), ambient_authority()).unwrap();
        assert!(write(&dir, Path::new("nope/f"), b"x", 0o644).is_err());
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
    }
}
