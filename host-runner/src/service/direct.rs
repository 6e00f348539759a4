//! No service manager (containers): the gateway runs as a detached process in its own
//! process group, logging into the log directory the host made for it. The host keeps a JSON record per
//! service (the validated definition plus the running pid and its identity) in its own
//! state directory, outside every guest grant. Before any pid is signalled its identity
//! (its start time on Linux) is checked against the record, so a stale pid is never hit.
//! `keep_alive` is recorded but not enforced: nothing supervises the process.

use super::policy::Definition;
use super::{Backend, not_installed};
use crate::bindings::{RunState, ServiceError, ServiceStatus};
use cap_fs_ext::DirExt as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use cap_std::fs::OpenOptionsExt as _;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a stopping gateway gets before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// What the host records about a direct service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub definition: Definition,
    pub pid: Option<u32>,
    /// The process's identity when it was started (Linux: its start time in ticks).
    pub identity: Option<String>,
    /// Unix seconds when it was started.
    pub started_at: Option<u64>,
}

/// The direct backend.
pub struct Direct {
    pub dir: PathBuf,
    /// Processes this host process started, for their exit codes.
    children: HashMap<String, Child>,
    /// Exit codes seen for processes that ended.
    exits: HashMap<String, i32>,
}

impl Direct {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, children: HashMap::new(), exits: HashMap::new() }
    }

    fn path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.json"))
    }

    fn load(&self, label: &str) -> Result<Record, ServiceError> {
        let path = self.path(label);
        let bytes = match crate::safe_open::read_path(&path, super::MAX_DEFINITION) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(not_installed(label)),
            Err(e) => return Err(ServiceError::Failed(format!("{e:#}"))),
        };
        serde_json::from_slice(&bytes).map_err(|e| ServiceError::Failed(format!("{} is not a service record: {e}", path.display())))
    }

    fn save(&self, record: &Record) -> Result<(), ServiceError> {
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        super::write_definition(&self.dir, &format!("{}.json", record.definition.label), &bytes, 0o600)
    }

    /// The recorded process, if it is still the one we started and has not exited.
    fn live_pid(&mut self, label: &str, record: &Record) -> Option<u32> {
        let pid = record.pid?;
        if let Some(child) = self.children.get_mut(label)
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exits.insert(label.to_string(), status.code().unwrap_or(128 + status.signal_number()));
            self.children.remove(label);
            return None;
        }
        (identity(pid).as_ref() == record.identity.as_ref() && record.identity.is_some() && is_alive(pid)).then_some(pid)
    }

    fn spawn(&mut self, record: &mut Record) -> Result<(), ServiceError> {
        let def = &record.definition;
        let fail = |what: &str, e: std::io::Error| ServiceError::Failed(format!("{what} for {}: {e}", def.label));
        let stdout = open_log(def, &def.stdout_log).map_err(|e| fail("opening stdout.log", e))?;
        let stderr = open_log(def, &def.stderr_log).map_err(|e| fail("opening stderr.log", e))?;
        let child = Command::new(&def.program)
            .args(&def.args)
            .env_clear()
            .envs(def.environment.iter().map(|(k, v)| (k, v)))
            .current_dir(&def.working_directory)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| fail(&format!("starting {}", def.program.display()), e))?;
        let pid = child.id();
        record.pid = Some(pid);
        record.identity = identity(pid);
        record.started_at = Some(now_secs());
        self.exits.remove(&def.label);
        self.children.insert(def.label.clone(), child);
        self.save(record)
    }

    /// SIGTERM to the process group, SIGKILL after the grace period; waits for the end.
    fn terminate(&mut self, label: &str, pid: u32) -> Result<(), ServiceError> {
        let group = Pid::from_raw(pid as i32).expect("pids are positive");
        let _ = rustix::process::kill_process_group(group, Signal::TERM);
        let deadline = Instant::now() + crate::deadline::bound(GRACE);
        let mut killed = false;
        loop {
            let gone = match self.children.get_mut(label) {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => {
                        self.exits.insert(label.to_string(), status.code().unwrap_or(128 + status.signal_number()));
                        true
                    }
                    Ok(None) => false,
                    Err(_) => true,
                },
                None => !is_alive(pid),
            };
            if gone {
                self.children.remove(label);
                return Ok(());
            }
            if Instant::now() >= deadline {
                if killed {
                    return Err(ServiceError::Failed(format!("{label}: pid {pid} survived SIGKILL")));
                }
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

trait SignalNumber {
    fn signal_number(&self) -> i32;
}

impl SignalNumber for std::process::ExitStatus {
    fn signal_number(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.signal().unwrap_or(0)
    }
}

/// Opens a log for appending (0600) in the host's log directory, never through a symlink
/// and never blocking on a FIFO planted there; only a regular file is accepted.
fn open_log(def: &Definition, log: &std::path::Path) -> std::io::Result<std::fs::File> {
    let logs = Dir::open_ambient_dir(def.log_dir.parent().expect("log dirs have parents"), ambient_authority())?
        .open_dir_nofollow(def.log_dir.file_name().expect("log dirs have names"))?;
    let mut options = OpenOptions::new();
    options.append(true).create(true).mode(0o600);
    let name = std::path::Path::new(log.file_name().expect("logs have names"));
    let file = crate::safe_open::open_checked(&logs, name, &options)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{} {e}", log.display())))?;
    Ok(file.into_std())
}

/// The record at `path`, when it is a readable record (read as every host file is).
pub(super) fn read_record(path: &std::path::Path) -> Option<Record> {
    let bytes = crate::safe_open::read_path(path, super::MAX_DEFINITION).ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The process's identity: its start time (Linux `/proc/<pid>/stat` field 22). `None`
/// when it does not exist (or is a zombie).
fn identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string())).flatten()
}

fn is_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        identity(pid).is_some()
    } else {
        Pid::from_raw(pid as i32).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
    }
}

impl Backend for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }

    /// The record lives in the host's own state directory, which nothing else writes.
    fn definition_path(&self, _label: &str) -> Option<PathBuf> {
        None
    }

    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        let previous = self.load(&def.label).ok();
        let record = Record {
            definition: def.clone(),
            pid: previous.as_ref().and_then(|r| r.pid),
            identity: previous.as_ref().and_then(|r| r.identity.clone()),
            started_at: previous.and_then(|r| r.started_at),
        };
        self.save(&record)?;
        Ok(self.path(&def.label))
    }

    fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        let mut record = self.load(label)?;
        if self.live_pid(label, &record).is_some() {
            return Ok(());
        }
        self.spawn(&mut record)
    }

    fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        let mut record = self.load(label)?;
        if let Some(pid) = self.live_pid(label, &record) {
            self.terminate(label, pid)?;
        }
        record.pid = None;
        record.identity = None;
        record.started_at = None;
        self.save(&record)
    }

    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        self.stop(label)?;
        std::fs::remove_file(self.path(label)).map_err(|e| ServiceError::Failed(format!("removing the record of {label}: {e}")))
    }

    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        let record = match self.load(label) {
            Ok(record) => record,
            Err(ServiceError::NotInstalled(_)) => return Ok(super::status(RunState::NotInstalled, "no record")),
            Err(e) => return Err(e),
        };
        Ok(match self.live_pid(label, &record) {
            Some(pid) => ServiceStatus {
                state: RunState::Running,
                pid: Some(pid),
                last_exit_code: None,
                uptime_seconds: record.started_at.map(|t| now_secs().saturating_sub(t)),
                restarts: None,
                detail: format!("direct process {pid}"),
            },
            None => ServiceStatus {
                last_exit_code: self.exits.get(label).copied(),
                ..super::status(RunState::Stopped, "no live process")
            },
        })
    }

    fn installed_ports(&self) -> Vec<u16> {
        super::definitions(&self.dir, |name| name.strip_suffix(".json").and_then(naming::handle_of_label))
            .filter_map(|p| read_record(&p))
            .map(|r| r.definition.port)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::policy::tests::{fixture, spec};
    use std::os::unix::fs::PermissionsExt;

    fn installed(script: &str) -> (tempfile::TempDir, Direct, Definition) {
        let (temp, policy) = fixture();
        std::fs::write(&policy.openclaw_bin, script).unwrap();
        std::fs::set_permissions(&policy.openclaw_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let def = policy.check(&spec("nova")).unwrap();
        let mut direct = Direct::new(policy.home.join(".local/state/agent-provisioner/services"));
        crate::service::create_log_dir(&def).unwrap();
        direct.install(&def).unwrap();
        (temp, direct, def)
    }

    const LABEL: &str = "com.openclaw.nova";

    /// Polls `check` until it gives a value (at most 5 s).
    fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "condition not reached within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_containing(path: &std::path::Path, text: &str) -> Option<String> {
        std::fs::read_to_string(path).ok().filter(|log| log.contains(text))
    }

    #[test]
    fn start_stop_restart_a_real_process() {
        let (_t, mut d, def) = installed("#!/bin/sh\necho \"started $*\"\necho \"state $OPENCLAW_STATE_DIR\" >&2\nexec sleep 30\n");
        assert_eq!(d.status(LABEL).unwrap().state, RunState::Stopped);
        d.start(LABEL).unwrap();
        let first = d.status(LABEL).unwrap();
        assert_eq!(first.state, RunState::Running);
        let pid = first.pid.unwrap();
        assert!(is_alive(pid));
        eventually(|| log_containing(&def.stdout_log, "started --profile nova gateway run --port 18930"));
        eventually(|| log_containing(&def.stderr_log, &format!("state {}", def.working_directory.display())));
        d.start(LABEL).unwrap();
        assert_eq!(d.status(LABEL).unwrap().pid, Some(pid), "starting a running service is a no-op");
        d.stop(LABEL).unwrap();
        d.start(LABEL).unwrap();
        let second = d.status(LABEL).unwrap().pid.unwrap();
        assert_ne!(second, pid);
        assert!(!is_alive(pid));
        d.stop(LABEL).unwrap();
        assert!(!is_alive(second));
        assert_eq!(d.status(LABEL).unwrap().state, RunState::Stopped);
        assert_eq!(std::fs::metadata(&def.stdout_log).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_environment_is_only_the_definitions() {
        // The test process has HOME and cargo's variables; none may reach the gateway.
        assert!(std::env::var_os("HOME").is_some());
        let (_t, mut d, def) = installed("#!/bin/sh\nenv\n");
        d.start(LABEL).unwrap();
        eventually(|| (d.status(LABEL).unwrap().state == RunState::Stopped).then_some(()));
        let env = std::fs::read_to_string(&def.stdout_log).unwrap();
        let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        assert!(names.iter().all(|n| crate::service::policy::ENVIRONMENT.contains(n) || ["PWD", "SHLVL", "_"].contains(n)), "{names:?}");
        assert!(env.contains("OPENCLAW_NO_AUTO_UPDATE=1"));
    }

    #[test]
    fn a_process_that_exits_at_once_reports_its_code() {
        let (_t, mut d, _) = installed("#!/bin/sh\necho 'Invalid config' >&2\nexit 78\n");
        d.start(LABEL).unwrap();
        let status = eventually(|| Some(d.status(LABEL).unwrap()).filter(|s| s.state == RunState::Stopped));
        assert_eq!((status.state, status.last_exit_code), (RunState::Stopped, Some(78)));
    }

    #[test]
    fn a_stale_or_forged_pid_is_never_signalled() {
        let (_t, mut d, def) = installed("#!/bin/sh\nexec sleep 30\n");
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        for identity in [None, Some("1".to_string())] {
            d.save(&Record { definition: def.clone(), pid: Some(bystander.id()), identity, started_at: Some(0) }).unwrap();
            assert_eq!(d.status(LABEL).unwrap().state, RunState::Stopped);
            d.stop(LABEL).unwrap();
            assert!(bystander.try_wait().unwrap().is_none(), "the bystander must survive");
        }
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }

    #[test]
    fn unknown_labels_are_not_installed() {
        let (_t, mut d, _) = installed("#!/bin/sh\n");
        assert_eq!(d.status("com.openclaw.ghost").unwrap().state, RunState::NotInstalled);
        assert!(matches!(d.start("com.openclaw.ghost"), Err(ServiceError::NotInstalled(_))));
        d.uninstall(LABEL).unwrap();
        assert_eq!(d.status(LABEL).unwrap().state, RunState::NotInstalled);
        assert!(d.installed_ports().is_empty());
    }
}
