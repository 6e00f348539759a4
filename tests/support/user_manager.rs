//! A private, real `systemd --user` for end-to-end tests of the systemd backend.
//!
//! PID 1 here is not systemd, and `systemd --user` refuses to start unless
//! `/run/systemd/system` exists; so, as root, the manager runs in its own mount namespace
//! where a tmpfs over `/run/systemd` holds that directory, with the test's HOME and a
//! private `XDG_RUNTIME_DIR` (0700). The machine's own user manager (if any) is never
//! reached: every `systemctl` here, and every run of the binary given [`UserManager::env`],
//! points at this one. Dropping it stops the manager (and so its units) by pid, then
//! kills whatever OpenClaw process under the home is still alive.

use super::real_openclaw::processes_under;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SYSTEMD: &str = "/usr/lib/systemd/systemd";

/// Mounts the tmpfs in the new namespace and becomes the manager.
const SCRIPT: &str = "set -e
if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; else mount -t tmpfs tmpfs /run; fi
mkdir -p /run/systemd/system
exec \"$0\" --user";

/// A running private user manager.
pub struct UserManager {
    child: Child,
    home: PathBuf,
    runtime: tempfile::TempDir,
    /// The running manager's version (`systemctl --user show -p Version`).
    pub version: String,
}

impl UserManager {
    /// Starts a manager for `home` with `env` added to its own (otherwise minimal)
    /// environment, and waits until it answers. `Err` says why this machine cannot.
    pub fn start(home: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        preconditions()?;
        let runtime = tempfile::Builder::new().prefix("xdg-runtime-").tempdir().map_err(|e| e.to_string())?;
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let log = std::fs::File::create(runtime.path().join("manager.log")).unwrap();
        let mut cmd = Command::new("unshare");
        // Should the test process be killed outright, the manager gets SIGTERM (and stops its units).
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        let child = cmd
            .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT, SYSTEMD])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("LANG", "C.UTF-8")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut manager = Self { child, home: home.to_path_buf(), runtime, version: String::new() };
        manager.wait_ready(Duration::from_secs(30))?;
        manager.version = manager.show_manager("Version");
        Ok(manager)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if self.systemctl(&["show-environment"]).status.success() {
                return Ok(());
            }
            let log = || std::fs::read_to_string(self.runtime.path().join("manager.log")).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the private systemd --user exited ({status}):\n{}", log()));
            }
            if started.elapsed() > limit {
                return Err(format!("the private systemd --user did not answer within {limit:?}:\n{}", log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The environment that points `systemctl --user` (and the binary) at this manager.
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![("HOME".into(), self.home.clone().into()), ("XDG_RUNTIME_DIR".into(), self.runtime.path().into())]
    }

    /// `systemctl --user args...` against this manager.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("systemctl")
            .arg("--user")
            .args(args)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("run systemctl")
    }

    /// One property of a unit (`systemctl --user show -p NAME --value`).
    pub fn show(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", unit, "-p", property, "--value"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// One property of the manager itself.
    pub fn show_manager(&self, property: &str) -> String {
        let out = self.systemctl(&["show", "-p", property, "--value"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `systemctl --user is-active|is-enabled UNIT`, what it printed.
    pub fn is(&self, what: &str, unit: &str) -> String {
        String::from_utf8_lossy(&self.systemctl(&[what, unit]).stdout).trim().to_string()
    }

    /// Every unit the manager has loaded, in any state.
    pub fn loaded_units(&self) -> String {
        String::from_utf8_lossy(&self.systemctl(&["list-units", "--all", "--no-legend", "--plain"]).stdout).into_owned()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        // SIGTERM makes a user manager start exit.target: it stops every unit, then exits.
        let pid = self.child.id();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_under(&self.home) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// Why this machine cannot run a private user manager, if it cannot.
fn preconditions() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root (a private mount namespace for systemd --user needs it)".into());
    }
    if !Path::new(SYSTEMD).is_file() {
        return Err(format!("{SYSTEMD} is missing (install Debian's `systemd` package)"));
    }
    for tool in ["unshare", "systemctl"] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !found {
            return Err(format!("`{tool}` is not on PATH"));
        }
    }
    Ok(())
}
