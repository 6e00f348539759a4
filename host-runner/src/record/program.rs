//! The program a service runs, recorded when the host writes its definition, so that
//! `start` and `restart` use what was provisioned instead of resolving `openclaw` again,
//! and refuse, naming the fix, when that program vanished or changed.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest program the host fingerprints (a Node launcher is a few KiB; a single-file
/// build of Node about 100 MiB).
const MAX_PROGRAM: u64 = 512 << 20;

/// A program as it was when a definition naming it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedProgram {
    /// The path the definition names.
    pub path: PathBuf,
    /// What that path resolved to (links followed).
    pub resolved: PathBuf,
    /// SHA-256 of the resolved file, hex.
    pub sha256: String,
}

/// Why a program is not the one recorded, or cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("{}: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is not executable", .0.display())]
    NotExecutable(PathBuf),
    #[error("{} is larger than {} MiB", .0.display(), MAX_PROGRAM >> 20)]
    TooLarge(PathBuf),
    #[error("{} is gone ({error})", path.display())]
    Vanished { path: PathBuf, error: std::io::Error },
    #[error("{} changed since it was recorded ({what})", path.display())]
    Changed { path: PathBuf, what: String },
}

impl RecordedProgram {
    /// Fingerprints the executable at `path` (an absolute path; links are followed, as the
    /// service manager will follow them). A FIFO there is refused without blocking.
    pub fn of(path: &Path) -> Result<Self, ProgramError> {
        let unreadable = |error| ProgramError::Unreadable { path: path.to_path_buf(), error };
        let resolved = std::fs::canonicalize(path).map_err(unreadable)?;
        let file = open_nonblocking(&resolved).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        use std::os::unix::fs::PermissionsExt as _;
        match () {
            _ if !meta.is_file() => return Err(ProgramError::NotAFile(path.to_path_buf())),
            _ if meta.permissions().mode() & 0o111 == 0 => return Err(ProgramError::NotExecutable(path.to_path_buf())),
            _ if meta.len() > MAX_PROGRAM => return Err(ProgramError::TooLarge(path.to_path_buf())),
            _ => {}
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut file.take(MAX_PROGRAM), &mut hasher).map_err(unreadable)?;
        let sha256 = crate::record::state::hex(&hasher.finalize());
        Ok(Self { path: path.to_path_buf(), resolved, sha256 })
    }

    /// Whether the program at the recorded path is still the one recorded.
    pub fn check(&self) -> Result<(), ProgramError> {
        let now = match Self::of(&self.path) {
            Err(ProgramError::Unreadable { path, error }) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProgramError::Vanished { path, error });
            }
            other => other?,
        };
        let changed = |what: String| Err(ProgramError::Changed { path: self.path.clone(), what });
        if now.resolved != self.resolved {
            return changed(format!("it now leads to {}, not {}", now.resolved.display(), self.resolved.display()));
        }
        if now.sha256 != self.sha256 {
            return changed(format!("SHA-256 {}… is now {}…", &self.sha256[..12], &now.sha256[..12]));
        }
        Ok(())
    }
}

/// Opens `path` for reading without blocking should it be a FIFO.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn executable(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_program_is_the_recorded_one_until_it_vanishes_or_changes() {
        let temp = tempfile::tempdir().unwrap();
        let (real, link) = (temp.path().join("openclaw.mjs"), temp.path().join("openclaw"));
        executable(&real, "#!/bin/sh\necho 1\n");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let recorded = RecordedProgram::of(&link).unwrap();
        assert_eq!((recorded.path.as_path(), recorded.resolved.as_path()), (link.as_path(), real.as_path()));
        recorded.check().unwrap();

        executable(&real, "#!/bin/sh\necho 2\n");
        let err = recorded.check().unwrap_err().to_string();
        assert!(err.contains("changed since it was recorded") && err.contains("SHA-256"), "{err}");

        let other = temp.path().join("openclaw-2.mjs");
        executable(&other, "#!/bin/sh\necho 1\n");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&other, &link).unwrap();
        let err = recorded.check().unwrap_err().to_string();
        assert!(err.contains("now leads to") && err.contains("openclaw-2.mjs"), "{err}");

        std::fs::remove_file(&link).unwrap();
        assert!(matches!(recorded.check(), Err(ProgramError::Vanished { .. })));
    }

    #[test]
    fn a_fifo_or_a_plain_file_is_no_program() {
        let temp = tempfile::tempdir().unwrap();
        let fifo = temp.path().join("openclaw");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(RecordedProgram::of(&fifo), Err(ProgramError::NotAFile(_))));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "no blocking on a FIFO");
        let plain = temp.path().join("plain");
        std::fs::write(&plain, "not executable").unwrap();
        assert!(matches!(RecordedProgram::of(&plain), Err(ProgramError::NotExecutable(_))));
    }
}
