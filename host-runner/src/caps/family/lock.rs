//! The lead's family lock, `<lead home>/logs/agent-provisioner.lock`: what changes the
//! family's bookkeeping (the registry, the journals that claim ports, service installs and
//! removals) happens one run at a time per lead, so port planning never sees a half-done
//! change by a concurrent run. Held for whole commands (`stop`, `deprovision`,
//! `rollback`) or, through the `family` capability ([`crate::caps::family`]), only around those
//! changes. A second run waits (saying so), bounded.

use anyhow::{Context as _, Result, bail};
use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Held for as long as it lives.
pub struct HostLock {
    _file: File,
}

/// `<lead home>/logs/agent-provisioner.lock` (beside the audit log: host bookkeeping, not
/// provisioning state).
pub fn path(lead_home: &Path) -> PathBuf {
    lead_home.join("logs/agent-provisioner.lock")
}

/// Takes the lock at [`path`], waiting at most `timeout`. A symbolic link (or anything but
/// a regular file) at the lock's path is refused, not followed.
pub fn acquire(lead_home: &Path, timeout: Duration) -> Result<HostLock> {
    let path = path(lead_home);
    let dir = path.parent().expect("the lock lives in a directory");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut options = cap_std::fs::OpenOptions::new();
    cap_std::fs::OpenOptionsExt::mode(options.read(true).write(true).create(true).truncate(false), 0o600);
    let mut file = crate::sys::safe_open::open_no_follow(&options, &path, "the host lock")?;
    let started = Instant::now();
    let mut told = false;
    while flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        if started.elapsed() >= timeout {
            bail!("another agent-provisioner run ({}) still holds {} after {} s", holder(&mut file), path.display(), timeout.as_secs());
        }
        if !told {
            crate::sys::secret::eprint_line(&format!("agent-provisioner: waiting for another run ({}) to finish", holder(&mut file)));
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}", std::process::id())?;
    Ok(HostLock { _file: file })
}

/// Who holds a lock file, as its holder wrote it (`pid N`).
pub(crate) fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    if text.trim().is_empty() { "pid unknown".into() } else { text.trim().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_times_out() {
        let temp = tempfile::tempdir().unwrap();
        let first = acquire(temp.path(), Duration::from_secs(1)).unwrap();
        let err = acquire(temp.path(), Duration::from_millis(200)).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        acquire(temp.path(), Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_not_followed() {
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::fs::create_dir_all(temp.path().join("logs")).unwrap();
        let path = temp.path().join("logs/agent-provisioner.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = format!("{:#}", acquire(temp.path(), Duration::from_millis(100)).err().expect("refused"));
        assert!(err.contains(&path.display().to_string()) && err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }
}
