//! Which archive `restore HANDLE` restores: the operator's `--archive`, which must be in
//! the archives directory, or the newest `<handle>-YYYYmmdd-HHMMSS[-N].tar.gz` there (by
//! the time in its name, which deprovision writes; not by a file time anyone can change).

use std::path::{Path, PathBuf};

/// The archives directory of `home`.
pub fn archives_dir(home: &Path) -> PathBuf {
    home.join(".openclaw-archives")
}

/// The archive to restore `handle` from, or why there is none (for the operator).
pub fn choose(home: &Path, handle: &str, given: Option<&Path>) -> Result<PathBuf, String> {
    let dir = archives_dir(home);
    let Some(given) = given else {
        return newest(&dir, handle)?.ok_or_else(|| {
            format!("there is no archive of {handle} in {} (deprovision writes {handle}-YYYYmmdd-HHMMSS.tar.gz there)", dir.display())
        });
    };
    let path = crate::cli::paths::absolute(given, "--archive").map_err(|e| format!("{e:#}"))?;
    let in_dir = path.parent() == Some(dir.as_path()) && path.to_str().is_some_and(|p| p.ends_with(".tar.gz"));
    if !in_dir {
        return Err(format!("--archive {}: restore takes a .tar.gz in {}, where deprovision writes archives", path.display(), dir.display()));
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("--archive {}: not a regular file", path.display())),
        Err(e) => Err(format!("--archive {}: {e}", path.display())),
    }
}

/// The newest archive of `handle` in `dir`, by the time and sequence in its name.
fn newest(dir: &Path, handle: &str) -> Result<Option<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let newest = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((stamp(&name, handle)?, name))
        })
        .max();
    Ok(newest.map(|(_, name)| dir.join(name)))
}

/// The time and sequence number of an archive name of `handle` (`nova-20261125-102030.tar.gz`
/// is `("20261125-102030", 1)`, `…-2.tar.gz` is 2), or `None` for any other name.
fn stamp(name: &str, handle: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(handle)?.strip_prefix('-')?.strip_suffix(".tar.gz")?;
    let (time, sequence) = match rest.get(15..) {
        Some("") => (rest, 1),
        Some(tail) => (&rest[..15], tail.strip_prefix('-')?.parse().ok()?),
        None => return None,
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let shaped = time.len() == 15 && time.as_bytes()[8] == b'-' && digits(&time[..8]) && digits(&time[9..]);
    shaped.then(|| (time.to_string(), sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_handle_only_and_the_newest_wins() {
        assert_eq!(stamp("nova-20261125-102030.tar.gz", "nova"), Some(("20261125-102030".into(), 1)));
        assert_eq!(stamp("nova-20261125-102030-12.tar.gz", "nova"), Some(("20261125-102030".into(), 12)));
        for other in ["nova-2-20261125-102030.tar.gz", "nova-20261125.tar.gz", "nova-20261125-102030.member.json", "novax-20261125-102030.tar.gz"] {
            assert_eq!(stamp(other, "nova"), None, "{other}");
        }
        let home = tempfile::tempdir().unwrap();
        let dir = archives_dir(home.path());
        assert!(choose(home.path(), "nova", None).unwrap_err().contains("there is no archive of nova"));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["nova-20261125-102030.tar.gz", "nova-20261125-102030-2.tar.gz", "nova-20251231-235959-9.tar.gz", "nova-2-20271125-102030.tar.gz"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(choose(home.path(), "nova", None).unwrap(), dir.join("nova-20261125-102030-2.tar.gz"));
        assert_eq!(choose(home.path(), "nova-2", None).unwrap(), dir.join("nova-2-20271125-102030.tar.gz"));
    }

    #[test]
    fn a_given_archive_must_be_one_in_the_archives_directory() {
        let home = tempfile::tempdir().unwrap();
        let dir = archives_dir(home.path());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nova-20261125-102030.tar.gz"), "").unwrap();
        std::fs::write(home.path().join("elsewhere.tar.gz"), "").unwrap();
        let given = dir.join("nova-20261125-102030.tar.gz");
        assert_eq!(choose(home.path(), "nova", Some(&given)).unwrap(), given);
        let err = choose(home.path(), "nova", Some(&home.path().join("elsewhere.tar.gz"))).unwrap_err();
        assert!(err.contains("restore takes a .tar.gz in"), "{err}");
        let err = choose(home.path(), "nova", Some(&dir.join("nova-1.tar.gz"))).unwrap_err();
        assert!(err.contains("nova-1.tar.gz") && err.contains("No such file"), "{err}");
    }
}
