//! The direct backend's two files per service, both in the host's own state directory
//! (`~/.local/state/agent-provisioner/services`, outside every grant and every home):
//! `<label>.json`, the record the host writes at install (what to run), and
//! `<label>.supervisor.json`, the supervisor's account of what runs. Both are read as
//! every host file is (no link followed, no FIFO waited on, size capped) and written
//! atomically (0600).

use super::process::Proc;
use crate::runtime::bindings::{ServiceError, ServiceSpec};
use crate::caps::service::policy::{Definition, Policy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the host records about a direct service: the definition it derived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub definition: Definition,
}

/// What a supervisor says about its service; written by the supervisor while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    /// The supervisor itself.
    pub supervisor: Option<Proc>,
    /// The gateway it runs now, if any.
    pub gateway: Option<Proc>,
    /// Unix seconds when the current gateway started.
    pub started_at: Option<u64>,
    /// Gateway starts tried so far (the first, then each restart).
    pub attempts: u32,
    /// The exit code of the last gateway that ended (128 + the signal for a signal).
    pub last_exit_code: Option<i32>,
    /// Why the last start did not happen.
    pub last_error: Option<String>,
    /// Unix seconds when the next start is due, while waiting to restart.
    pub restart_at: Option<u64>,
    /// Why the supervisor ended, once it has: it gave up, or was told to stop.
    pub ended: Option<String>,
    /// Whether it ended by giving up (nothing will restart the gateway).
    #[serde(default)]
    pub gave_up: bool,
}

impl Supervision {
    /// Restarts made after the first start.
    pub fn restarts(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }
}

/// The record's file name.
pub fn record_name(label: &str) -> String {
    format!("{label}.json")
}

/// The supervisor's file name (never a record's: a handle has no `.`).
pub fn supervision_name(label: &str) -> String {
    format!("{label}.supervisor.json")
}

/// Reads `name` in `dir` as a host file; `None` when it does not exist.
fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, ServiceError> {
    let path = dir.join(name);
    match crate::sys::safe_open::read_path(&path, crate::caps::service::MAX_DEFINITION) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ServiceError::Failed(format!("{} is not what agent-provisioner writes there: {e}", path.display()))),
        Err(e) => Err(ServiceError::Failed(format!("{e:#}"))),
    }
}

/// The record of `label`, checked to be exactly what the host's policy derives for it
/// (see [`check_record`]); `NotInstalled` when there is none.
pub fn load_record(dir: &Path, label: &str) -> Result<Record, ServiceError> {
    let record: Record = read(dir, &record_name(label))?.ok_or_else(|| crate::caps::service::not_installed(label))?;
    check_record(&record.definition, label)
        .map_err(|why| ServiceError::Failed(format!("{}: {why}; refusing to run it", dir.join(record_name(label)).display())))?;
    Ok(record)
}

/// The record at `path` if it is a readable one (for the ports it claims).
pub fn read_record(path: &Path) -> Option<Record> {
    let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
    read(dir, name).ok()?
}

/// Whether `def` is the definition the host's policy derives for `label` from its own
/// home, `PATH` and program: the label and handle, the arguments, the working directory
/// (a real directory), the environment, the logs, restart always. A record planted or
/// edited by anything else (another program, other arguments or variables, logs
/// elsewhere) is refused; only the program can differ, as it does between hosts.
pub fn check_record(def: &Definition, label: &str) -> Result<(), String> {
    let value = |name: &str| def.environment.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (Some(home), Some(path)) = (value("HOME"), value("PATH")) else {
        return Err("it names no HOME or PATH".into());
    };
    if !def.program.is_absolute() {
        return Err(format!("its program {} is not an absolute path", def.program.display()));
    }
    let policy = Policy { home: PathBuf::from(home), lead_handles: Vec::new(), openclaw_bin: def.program.clone(), path };
    let derived = policy.check(&ServiceSpec { label: label.to_string(), port: def.port }).map_err(|e| e.to_string())?;
    if &derived != def {
        return Err(format!("it is not the definition agent-provisioner derives for {label}"));
    }
    Ok(())
}

/// The supervisor's account of `label`, if any.
pub fn load_supervision(dir: &Path, label: &str) -> Result<Option<Supervision>, ServiceError> {
    read(dir, &supervision_name(label))
}

/// Removes the supervisor's account of `label` (the link itself, should one be there).
pub fn forget_supervision(dir: &Path, label: &str) -> Result<(), ServiceError> {
    let path = dir.join(supervision_name(label));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ServiceError::Failed(format!("removing {}: {e}", path.display()))),
        _ => Ok(()),
    }
}

/// Writes `value` as `name` into the directory `dir` atomically (0600).
pub fn write<T: Serialize>(dir: &cap_std::fs::Dir, name: &str, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("the direct backend's files serialize");
    crate::sys::atomic::write(dir, Path::new(name), &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::service::policy::tests::{fixture, spec};

    #[test]
    fn only_the_definition_the_policy_derives_is_a_record() {
        let (t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        assert_eq!(check_record(&def, "com.openclaw.nova"), Ok(()));
        type Edit = fn(&mut Definition);
        let edits: [(&str, Edit); 7] = [
            ("arguments", |d| d.args = vec!["-c".into(), "touch /tmp/owned".into()]),
            ("an extra variable", |d| d.environment.push(("NODE_OPTIONS".into(), "--require /tmp/x.js".into()))),
            ("logs elsewhere", |d| d.stdout_log = "/tmp/stdout.log".into()),
            ("another home", |d| d.working_directory = "/tmp".into()),
            ("a relative program", |d| d.program = "openclaw".into()),
            ("no restart", |d| d.keep_alive = false),
            ("another port in the arguments", |d| d.port += 1),
        ];
        for (what, edit) in edits {
            let mut forged = def.clone();
            edit(&mut forged);
            assert!(check_record(&forged, "com.openclaw.nova").is_err(), "{what}");
        }
        assert!(check_record(&def, "com.openclaw.atlas").is_err(), "a record under another label");
        let elsewhere = Policy { openclaw_bin: t.path().join("elsewhere/openclaw"), ..policy.clone() }.check(&spec("nova")).unwrap();
        assert_eq!(check_record(&elsewhere, "com.openclaw.nova"), Ok(()), "another program is fine: the host chose it");
    }

    #[test]
    fn a_fifo_or_link_planted_as_the_supervisors_file_is_refused_without_blocking() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let fifo = dir.join(supervision_name("com.openclaw.nova"));
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let started = std::time::Instant::now();
        let err = load_supervision(dir, "com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("FIFO")), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        std::fs::write(dir.join("elsewhere.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere.json"), dir.join(supervision_name("com.openclaw.vega"))).unwrap();
        let err = load_supervision(dir, "com.openclaw.vega").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("symlink")), "{err:?}");
        forget_supervision(dir, "com.openclaw.vega").unwrap();
        assert!(dir.join("elsewhere.json").exists(), "forgetting removes the link, not its target");
        assert_eq!(load_supervision(dir, "com.openclaw.vega").unwrap(), None);
    }
}
