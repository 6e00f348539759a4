//! Directories only the host's user reaches (the compiled-component cache, the host's
//! state): created 0700, opened without following a link, owned by this user, and with
//! no group or other bits left.

use anyhow::{Context as _, Result, bail};
use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

/// Opens the directory `path`, creating it (0700, and its missing parents 0700) if need
/// be. Its parent is opened as the user set it up (it may be a link); `path` itself is
/// opened without following a link and must be a directory this user owns. Group and
/// other bits it has (a directory an earlier version created 0755) are taken away,
/// through the open descriptor.
pub fn open(path: &Path) -> Result<Dir> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} is not a directory path", path.display());
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).with_context(|| format!("creating {}", parent.display()))?;
    let root = Dir::open_ambient_dir(parent, cap_std::ambient_authority()).with_context(|| format!("opening {}", parent.display()))?;
    match root.create_dir_with(name, DirBuilder::new().mode(0o700)) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e).with_context(|| format!("creating {}", path.display())),
        _ => {}
    }
    let dir = root.open_dir_nofollow(name).with_context(|| format!("{} is not a directory (a link is not followed)", path.display()))?;
    let stat = rustix::fs::fstat(&dir).with_context(|| format!("reading the owner of {}", path.display()))?;
    if stat.st_uid != rustix::process::geteuid().as_raw() {
        bail!("{} belongs to uid {}, not to this user", path.display(), stat.st_uid);
    }
    if stat.st_mode & 0o077 != 0 {
        // The directory descriptor may be `O_PATH`, which `fchmod` refuses; `.` in it is the
        // directory itself.
        rustix::fs::chmodat(&dir, ".", rustix::fs::Mode::from_raw_mode(0o700), rustix::fs::AtFlags::empty()).with_context(|| format!("making {} private (0700)", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_0700_and_a_loose_one_is_made_private() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a/b/private");
        open(&path).unwrap();
        assert_eq!((mode(&path), mode(&temp.path().join("a/b"))), (0o700, 0o700));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        open(&path).unwrap();
        assert_eq!(mode(&path), 0o700, "group and other bits are taken away");
    }

    #[test]
    fn a_link_is_not_followed_and_nothing_is_written_through_it() {
        let temp = tempfile::tempdir().unwrap();
        let elsewhere = temp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = temp.path().join("private");
        // Relative, so that following it would stay inside the parent and succeed.
        std::os::unix::fs::symlink("elsewhere", &path).unwrap();
        let err = format!("{:#}", open(&path).expect_err("a link is refused"));
        assert!(err.contains("a link is not followed"), "{err}");
        assert_eq!(mode(&elsewhere), 0o755, "the link's target was not touched");
    }

    #[test]
    fn another_users_directory_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("private");
        std::fs::create_dir(&path).unwrap();
        if std::os::unix::fs::chown(&path, Some(65534), None).is_err() {
            return crate::sys::secret::eprint_line("SKIPPED: changing a directory's owner needs root");
        }
        let err = format!("{:#}", open(&path).expect_err("another user's directory is refused"));
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
}
