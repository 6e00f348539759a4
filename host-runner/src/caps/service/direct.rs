//! No service manager (containers): each gateway runs under a supervisor of its own,
//! the host binary itself in a hidden mode (`agent-provisioner __supervise`, see
//! [`supervisor`]), started in a session of its own with an empty environment. The
//! supervisor runs what the host's record says (the validated definition, in the host's
//! state directory, outside every grant and every home), restarts the gateway when it
//! ends (1 s doubling; five failures within two minutes give up: [`restarts`]) and keeps
//! its account next to the record ([`state`]). `stop` ends the supervisor, which stops
//! the gateway's process group first; the host then makes sure of both. No pid is ever
//! signalled unless its identity (its start time on Linux) still matches the account, so
//! a stale or reused pid is never hit. Linux only: identities come from `/proc`.

pub mod process;
mod restarts;
mod state;
pub mod supervisor;

pub use state::read_record;

use super::Backend;
use super::policy::Definition;
use crate::runtime::bindings::{RunState, ServiceError, ServiceStatus};
use process::Proc;
use rustix::process::Signal;
use state::Supervision;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a new supervisor gets to start its gateway once.
const FIRST_START: Duration = Duration::from_secs(10);

/// How long `status` waits for a live supervisor to account for a gateway that ended.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The hidden subcommand that runs a supervisor.
pub const SUPERVISE: &str = "__supervise";

/// The direct backend.
pub struct Direct {
    pub dir: PathBuf,
    /// Supervisors this host process started, reaped once they end.
    children: HashMap<String, Child>,
}

impl Direct {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, children: HashMap::new() }
    }

    /// `NotInstalled` unless `label` has a record (of any content: stopping and removing
    /// act only on what the supervisor's account proves, never on the record).
    fn require_record(&self, label: &str) -> Result<(), ServiceError> {
        match std::fs::symlink_metadata(self.dir.join(state::record_name(label))) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(super::not_installed(label)),
            Err(e) => Err(ServiceError::Failed(format!("the record of {label}: {e}"))),
        }
    }

    /// Starts a supervisor for `label` and waits until it has tried the first start.
    fn spawn_supervisor(&mut self, label: &str) -> Result<(), ServiceError> {
        let fail = |what: String| ServiceError::Failed(format!("{what} (the supervisor of {label})"));
        let exe = std::env::current_exe().map_err(|e| fail(format!("finding agent-provisioner itself: {e}")))?;
        let child = Command::new(&exe)
            .arg(SUPERVISE)
            .arg("--services")
            .arg(&self.dir)
            .arg(label)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("starting {}: {e}", exe.display())))?;
        let pid = child.id();
        self.children.insert(label.to_string(), child);
        let deadline = Instant::now() + crate::runtime::deadline::bound(FIRST_START);
        loop {
            let account = state::load_supervision(&self.dir, label)?.filter(|a| a.supervisor.as_ref().is_some_and(|s| s.pid == pid));
            match account {
                Some(a) if a.gave_up => return Err(ServiceError::Failed(a.ended.unwrap_or_default())),
                Some(a) if a.attempts >= 1 => return Ok(()),
                _ => {}
            }
            if let Some(status) = self.children.get_mut(label).and_then(|c| c.try_wait().ok().flatten()) {
                return Err(fail(format!("it exited ({status}) before starting the gateway")));
            }
            if Instant::now() >= deadline {
                let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).expect("pids are positive"), Signal::TERM);
                return Err(fail(format!("it did not start the gateway within {} s", FIRST_START.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the supervision `account` describes: the supervisor (SIGTERM; it stops its
    /// gateway first), then any gateway still recorded and alive. Only live processes
    /// with the recorded identities are signalled.
    fn end_supervision(&mut self, label: &str, account: &Supervision) -> Result<(), ServiceError> {
        if let Some(supervisor) = account.supervisor.as_ref().filter(|s| s.is_alive()) {
            // SIGCONT too: a stopped supervisor would otherwise see SIGTERM only when resumed.
            supervisor.signal(Signal::TERM);
            supervisor.signal(Signal::CONT);
            let patience = crate::runtime::deadline::bound(supervisor::GRACE + Duration::from_secs(5));
            if !process::wait_gone(supervisor, patience) {
                supervisor.signal(Signal::KILL);
                process::wait_gone(supervisor, Duration::from_secs(5));
            }
        }
        if let Some(mut child) = self.children.remove(label) {
            let _ = child.try_wait();
        }
        // The newest account: the supervisor may have started another gateway meanwhile.
        let latest = state::load_supervision(&self.dir, label)?.unwrap_or_else(|| account.clone());
        for gateway in [latest.gateway, account.gateway.clone()].into_iter().flatten() {
            process::terminate_group(&gateway, crate::runtime::deadline::bound(supervisor::GRACE))
                .map_err(|e| ServiceError::Failed(format!("{label}: the gateway {e}")))?;
        }
        Ok(())
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The status an account describes, given which of its processes are alive.
fn status_of(account: &Supervision, supervisor_alive: bool, gateway: Option<u32>, now: u64) -> ServiceStatus {
    let base = ServiceStatus {
        state: RunState::Stopped,
        pid: gateway,
        last_exit_code: account.last_exit_code,
        uptime_seconds: None,
        restarts: Some(account.restarts()),
        detail: String::new(),
    };
    let supervisor = account.supervisor.as_ref().map(|s| s.pid).unwrap_or_default();
    if account.gave_up {
        // Final, even in the moment between its last word and its exit.
        return ServiceStatus { state: RunState::Failed, detail: account.ended.clone().unwrap_or_default(), ..base };
    }
    match (supervisor_alive, gateway) {
        (true, Some(pid)) => ServiceStatus {
            state: RunState::Running,
            last_exit_code: None,
            uptime_seconds: account.started_at.map(|t| now.saturating_sub(t)),
            detail: format!("gateway {pid} supervised by {supervisor}"),
            ..base
        },
        (true, None) => ServiceStatus { detail: waiting(account, now), ..base },
        (false, None) if account.ended.is_some() => ServiceStatus { detail: account.ended.clone().unwrap_or_default(), ..base },
        (false, Some(pid)) => ServiceStatus {
            state: RunState::Failed,
            detail: format!("its supervisor (pid {supervisor}) is gone; the gateway (pid {pid}) runs unsupervised; `agent-provisioner start` supervises it again"),
            ..base
        },
        (false, None) => ServiceStatus {
            state: RunState::Failed,
            detail: format!("its supervisor (pid {supervisor}) is gone and the gateway is not running; `agent-provisioner start` starts it again"),
            ..base
        },
    }
}

/// A live supervisor's gateway is not running: why, and when it restarts.
fn waiting(account: &Supervision, now: u64) -> String {
    let why = match (&account.last_error, account.last_exit_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "not started yet".into(),
    };
    match account.restart_at {
        Some(at) => format!("the gateway ended ({why}); restart {} in {} s", account.attempts, at.saturating_sub(now)),
        None => format!("the gateway is not running ({why})"),
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

    /// Writes the record; a running supervisor uses it from its next restart on.
    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        let bytes = serde_json::to_vec_pretty(&state::Record { definition: def.clone() }).expect("records serialize");
        super::write_definition(&self.dir, &state::record_name(&def.label), &bytes, 0o600)?;
        Ok(self.dir.join(state::record_name(&def.label)))
    }

    /// A running gateway under a live supervisor stays as it is; anything else (never
    /// started, waiting to restart, given up, supervisor gone) is started afresh.
    fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        state::load_record(&self.dir, label)?;
        if let Some(account) = state::load_supervision(&self.dir, label)? {
            let alive = |p: &Option<Proc>| p.as_ref().is_some_and(Proc::is_alive);
            if alive(&account.supervisor) && alive(&account.gateway) {
                return Ok(());
            }
            self.end_supervision(label, &account)?;
        }
        state::forget_supervision(&self.dir, label)?;
        self.spawn_supervisor(label)
    }

    fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        self.require_record(label)?;
        if let Some(account) = state::load_supervision(&self.dir, label)? {
            self.end_supervision(label, &account)?;
        }
        state::forget_supervision(&self.dir, label)
    }

    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        self.stop(label)?;
        let path = self.dir.join(state::record_name(label));
        std::fs::remove_file(&path).map_err(|e| ServiceError::Failed(format!("removing the record of {label}: {e}")))
    }

    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        match state::load_record(&self.dir, label) {
            Err(ServiceError::NotInstalled(_)) => return Ok(super::status(RunState::NotInstalled, "no record")),
            other => other?,
        };
        // A gateway that has just ended is the live supervisor's to account for (it looks
        // every 50 ms): its word, with the exit code, is awaited briefly rather than
        // reporting an end without one.
        let catch_up = Instant::now() + crate::runtime::deadline::bound(CATCH_UP);
        loop {
            let Some(account) = state::load_supervision(&self.dir, label)? else {
                return Ok(super::status(RunState::Stopped, "not running"));
            };
            let supervisor_alive = account.supervisor.as_ref().is_some_and(Proc::is_alive);
            let gateway = account.gateway.as_ref().filter(|g| g.is_alive()).map(|g| g.pid);
            let unaccounted = supervisor_alive && gateway.is_none() && account.gateway.is_some();
            if !unaccounted || Instant::now() >= catch_up {
                return Ok(status_of(&account, supervisor_alive, gateway, now_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn installed_ports(&self) -> Vec<u16> {
        super::definitions(&self.dir, |name| name.strip_suffix(".json").and_then(naming::handle_of_label))
            .filter_map(|p| read_record(&p))
            .map(|r| r.definition.port)
            .collect()
    }
}

#[cfg(test)]
mod tests;
