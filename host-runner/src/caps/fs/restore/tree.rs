//! The unpacked tree, checked as the file system sees it before it becomes a home: the
//! names looked up here resolve as OpenClaw's will (on a case-insensitive file system
//! `.ENV` is `.env`), so what the entry names alone cannot show is caught.

use super::Error;
use crate::lead::credentials;
use crate::sys::safe_open;
use crate::caps::fs::sibling_files::{self, SiblingRules};
use cap_std::fs::{Dir, Permissions, PermissionsExt as _};
use std::io;
use std::path::{Path, PathBuf};

/// The largest `openclaw.json` a restore reads.
const MAX_CONFIG: u64 = 1 << 20;
/// The largest `.env` a restore reads.
const MAX_ENV: u64 = 64 << 10;

/// The paths in `dir` that `pattern` (relative, `*` for any one name) names, as the file
/// system resolves each name.
fn existing(dir: &Dir, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let mut found = vec![PathBuf::new()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for base in &found {
            if part != "*" {
                let candidate = base.join(part);
                match dir.symlink_metadata(&candidate) {
                    Ok(_) => next.push(candidate),
                    Err(e) if is_absent(&e) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let listing = if base.as_os_str().is_empty() { dir.entries() } else { dir.read_dir(base) };
            match listing {
                Ok(entries) => {
                    for entry in entries {
                        next.push(base.join(entry?.file_name()));
                    }
                }
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(e),
            }
        }
        found = next;
    }
    Ok(found)
}

/// Nothing there, or a file where a directory was looked into.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

fn io_error(what: &Path, e: io::Error) -> Error {
    Error::Io(format!("checking {}: {e}", what.display()))
}

/// Checks the tree in `dir` against `rules`: `openclaw.json` of the provisioner's shape,
/// `.env` with provider keys only, credential files regular; makes `openclaw.json` and the
/// credential files 0600 and returns their paths. (Only listed names were written.)
pub fn check(dir: &Dir, rules: &SiblingRules) -> Result<Vec<String>, Error> {
    let config = Path::new("openclaw.json");
    let bytes = read(dir, config, MAX_CONFIG)?;
    sibling_files::check_write(config, &bytes, rules)
        .map_err(|why| Error::Refused(format!("{why}; restoring it would let the archive decide what OpenClaw loads or where keys go")))?;
    let mut private = vec![config.to_path_buf()];
    for pattern in sibling_files::credential_files() {
        for path in existing(dir, pattern).map_err(|e| io_error(Path::new(pattern), e))? {
            if pattern == ".env" {
                credentials::check_env(&read(dir, &path, MAX_ENV)?).map_err(|why| Error::Refused(format!(".env: {why}")))?;
            } else if !dir.symlink_metadata(&path).map_err(|e| io_error(&path, e))?.is_file() {
                return Err(Error::Refused(format!("{} is not a regular file", path.display())));
            }
            private.push(path);
        }
    }
    for path in &private {
        dir.set_permissions(path, Permissions::from_mode(0o600)).map_err(|e| io_error(path, e))?;
    }
    Ok(private.iter().map(|p| p.display().to_string()).collect())
}

/// Reads the regular file `path` of at most `max` bytes, refusing anything else.
fn read(dir: &Dir, path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    safe_open::read_regular(dir, path, max).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Refused(format!("the archive holds no {}, which every sibling home has", path.display())),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Error::Refused(format!("{}: {e}", path.display())),
        _ => io_error(path, e),
    })
}
