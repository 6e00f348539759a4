//! The supervisor of one direct service: `agent-provisioner __supervise --services DIR
//! LABEL`, started by the direct backend in a session of its own. It runs the gateway
//! that the host's record names (read afresh, and checked, before every start; nothing in
//! the sibling's home says what runs), restarts it when it ends, with the backoff and the
//! give-up of [`super::restarts`], and keeps its account of all that in the host's state
//! directory ([`Supervision`]). On SIGTERM (or SIGINT, SIGHUP) it stops the gateway's
//! process group — SIGTERM, SIGKILL after the grace period — and exits.

use super::process::{self, POLL, Proc};
use super::restarts::{Next, Policy, Restarts};
use super::state::{self, Supervision};
use crate::runtime::bindings::ServiceError;
use crate::caps::service::policy::Definition;
use cap_fs_ext::DirExt as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a stopping gateway gets before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// The signal that asked the supervisor to stop (0 while none has).
pub type StopFlag = Arc<AtomicUsize>;

/// The process entry: a new session, the stop signals, then [`supervise`]. Returns the
/// exit code (0 when it stopped or gave up as designed).
pub fn main(services: &Path, label: &str) -> i32 {
    close_inherited_descriptors();
    // Its own session: no terminal's hangup or Ctrl-C reaches it, nor its gateway.
    let _ = rustix::process::setsid();
    let stop = StopFlag::default();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        if signal_hook::flag::register_usize(signal, stop.clone(), signal as usize).is_err() {
            return 2;
        }
    }
    match supervise(services, label, &Policy::DEFAULT, &stop) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Closes every descriptor above stderr that the process inherited from whoever ran the
/// host: a caller reading the host's output until every writer has closed it (an agent's
/// exec tool, a shell's `$(...)`) would otherwise wait for as long as the supervisor, and
/// its gateways, live. Called first, while the process is single-threaded and nothing in
/// it owns a descriptor; best effort where there is no `/proc`.
pub fn close_inherited_descriptors() {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(mut listing) = rustix::fs::open("/proc/self/fd", flags, Mode::empty()).and_then(rustix::fs::Dir::new) else {
        return;
    };
    let own = listing.fd().map(|fd| fd.as_raw_fd()).ok();
    let inherited: Vec<i32> = std::iter::from_fn(|| listing.read())
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().ok()?.parse().ok())
        .filter(|fd| *fd > 2 && Some(*fd) != own)
        .collect();
    drop(listing);
    for fd in inherited {
        // SAFETY: `fd` was listed as open just now; the process is single-threaded and no
        // object in it owns the descriptor (it came across exec), so closing it here is
        // its only use and cannot close anything another owner still uses.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// A supervisor's state while it runs.
struct Supervisor<'a> {
    dir: Dir,
    dir_path: &'a Path,
    label: &'a str,
    policy: &'a Policy,
    stop: &'a StopFlag,
    started: Instant,
    restarts: Restarts,
    account: Supervision,
}

/// Supervises `label` until told to stop or until it gives up. `Err` when it could not
/// even record itself (then it started nothing).
pub fn supervise(services: &Path, label: &str, policy: &Policy, stop: &StopFlag) -> Result<(), String> {
    let dir = Dir::open_ambient_dir(services, ambient_authority()).map_err(|e| format!("{}: {e}", services.display()))?;
    let me = Proc::of(std::process::id());
    let account = Supervision { supervisor: me, ..Supervision::default() };
    let mut s = Supervisor { dir, dir_path: services, label, policy, stop, started: Instant::now(), restarts: Restarts::default(), account };
    s.save().map_err(|e| format!("recording the supervisor of {label}: {e}"))?;
    s.run();
    Ok(())
}

impl Supervisor<'_> {
    fn save(&self) -> std::io::Result<()> {
        state::write(&self.dir, &state::supervision_name(self.label), &self.account)
    }

    /// Saves the account; a failure to write it is not a reason to stop supervising (the
    /// next event writes it again).
    fn note(&self) {
        let _ = self.save();
    }

    fn stop_signal(&self) -> Option<usize> {
        Some(self.stop.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Start, watch, decide; until stopped or given up.
    fn run(&mut self) {
        loop {
            let ended = match self.start() {
                Ok(gateway) => self.watch(gateway),
                Err(why) if self.account.attempts == 1 => return self.give_up(format!("the gateway could not be started: {why}")),
                Err(why) => {
                    self.account.last_error = Some(why);
                    Ended::Failed
                }
            };
            if let Ended::Stopped(signal) = ended {
                return self.end(format!("stopped by signal {signal}"), false);
            }
            let failed_at = self.started.elapsed();
            match self.restarts.failed(self.policy, failed_at) {
                Next::GiveUp => return self.give_up(self.give_up_reason()),
                Next::RestartAfter(wait) => {
                    if let Some(signal) = self.wait_to_restart(wait) {
                        return self.end(format!("stopped by signal {signal}"), false);
                    }
                }
            }
        }
    }

    /// Starts the gateway the record names now; why not, otherwise.
    fn start(&mut self) -> Result<Child, String> {
        self.account.attempts += 1;
        self.account.restart_at = None;
        let record = state::load_record(self.dir_path, self.label).map_err(|e| match e {
            ServiceError::Denied(why) | ServiceError::NotInstalled(why) | ServiceError::Failed(why) => why,
        })?;
        let child = spawn(&record.definition)?;
        self.account.gateway = Proc::of(child.id());
        self.account.started_at = Some(super::now_secs());
        self.account.last_error = None;
        self.note();
        Ok(child)
    }

    /// Waits until the gateway ends or a stop signal comes (then stops the gateway).
    fn watch(&mut self, mut gateway: Child) -> Ended {
        loop {
            if let Some(signal) = self.stop_signal() {
                let code = process::terminate_child_group(&mut gateway, GRACE).ok();
                self.gateway_ended(code);
                return Ended::Stopped(signal);
            }
            if process::has_exited(&gateway) {
                // Whatever the gateway left in its group goes with it, before the group id can be reused.
                process::signal_group_of_child(&gateway, rustix::process::Signal::KILL);
                let code = gateway.wait().ok().map(process::exit_code);
                self.gateway_ended(code);
                return Ended::Failed;
            }
            std::thread::sleep(POLL);
        }
    }

    fn gateway_ended(&mut self, code: Option<i32>) {
        self.account.gateway = None;
        self.account.started_at = None;
        self.account.last_exit_code = code;
        self.note();
    }

    /// Waits `wait` before the next start; the stop signal, if one came meanwhile.
    fn wait_to_restart(&mut self, wait: Duration) -> Option<usize> {
        self.account.restart_at = Some(super::now_secs() + wait.as_secs().max(1));
        self.note();
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(signal) = self.stop_signal() {
                return Some(signal);
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        self.stop_signal()
    }

    fn give_up_reason(&self) -> String {
        let last = match (&self.account.last_error, self.account.last_exit_code) {
            (Some(error), _) => error.clone(),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "no exit code".into(),
        };
        format!("the supervisor gave up after {} (last: {last}); `agent-provisioner start` starts it again", self.policy.describe())
    }

    fn give_up(&mut self, why: String) {
        self.end(why, true)
    }

    fn end(&mut self, why: String, gave_up: bool) {
        self.account.ended = Some(why);
        self.account.gave_up = gave_up;
        self.account.restart_at = None;
        self.note();
    }
}

/// How a gateway's run ended.
enum Ended {
    /// By itself (or it never started).
    Failed,
    /// By the supervisor, on this stop signal.
    Stopped(usize),
}

/// Starts `def`'s program in a process group of its own, with only the definition's
/// environment, in its working directory, appending to its logs.
fn spawn(def: &Definition) -> Result<Child, String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} for {}: {e}", def.label);
    let stdout = open_log(def, &def.stdout_log).map_err(|e| fail("opening stdout.log", e))?;
    let stderr = open_log(def, &def.stderr_log).map_err(|e| fail("opening stderr.log", e))?;
    Command::new(&def.program)
        .args(&def.args)
        .env_clear()
        .envs(def.environment.iter().map(|(k, v)| (k, v)))
        .current_dir(&def.working_directory)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| fail(&format!("starting {}", def.program.display()), e))
}

/// Opens a log for appending (0600) in the host's log directory, never through a symlink
/// and never blocking on a FIFO planted there; only a regular file is accepted.
fn open_log(def: &Definition, log: &Path) -> std::io::Result<std::fs::File> {
    let logs = Dir::open_ambient_dir(def.log_dir.parent().expect("log dirs have parents"), ambient_authority())?
        .open_dir_nofollow(def.log_dir.file_name().expect("log dirs have names"))?;
    let mut options = OpenOptions::new();
    options.append(true).create(true).mode(0o600);
    let name = Path::new(log.file_name().expect("logs have names"));
    let file = crate::sys::safe_open::open_checked(&logs, name, &options)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{} {e}", log.display())))?;
    Ok(file.into_std())
}
