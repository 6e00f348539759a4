//! systemd user units: `~/.config/systemd/user/openclaw-sibling-<handle>.service` (0644,
//! no secrets: the environment is the host's pinned, non-secret variables), driven with
//! `systemctl --user`. The name cannot meet OpenClaw's own `openclaw-gateway*` units
//! ([`naming::unit_name`]); the unit starts with the host's marker ([`super::MARKER`]).
//!
//! What a real user manager showed (tests/systemd.rs runs one):
//! - a unit gets the manager's whole environment (`systemctl --user show-environment`:
//!   what the session imported, `environment.d`), so the gateway runs under
//!   `/usr/bin/env -i` with exactly the host's variables;
//! - a failed unit stays loaded after its file is gone until `reset-failed`;
//! - `systemctl --user` finds no manager without `XDG_RUNTIME_DIR` ("No medium found");
//! - a gateway killed by a signal has `ExecMainCode=2` and the signal in `ExecMainStatus`.

use super::exec;
use super::policy::Definition;
use super::{Backend, not_installed};
use crate::runtime::bindings::{RunState, ServiceError, ServiceStatus};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The systemd backend.
pub struct Systemd {
    pub dir: PathBuf,
    pub systemctl: PathBuf,
}

/// Clears the environment the user manager would pass on; the gateway gets only the
/// host's variables, given to it as arguments.
const CLEAN_ENV: [&str; 2] = ["/usr/bin/env", "-i"];

/// Seconds a stopping gateway gets before SIGKILL: well inside the time a `systemctl`
/// call may take ([`exec::TIMEOUT`]), so `stop` never outlasts its own command.
const STOP_TIMEOUT_SECS: u64 = 20;

/// OpenClaw's exit status for an invalid config (`EX_CONFIG`): restarting cannot help.
const EXIT_INVALID_CONFIG: u8 = 78;

/// `openclaw-sibling-<handle>.service` for `com.openclaw.<handle>`.
pub fn unit_name(label: &str) -> String {
    naming::unit_name(label.trim_start_matches("com.openclaw."))
}

/// One argument quoted for `ExecStart=`: double quotes, `\` and `"` escaped, `$` and `%`
/// doubled so systemd expands nothing.
fn quote(arg: &str) -> String {
    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "$$").replace('%', "%%");
    format!("\"{escaped}\"")
}

/// A path for `Key=path` lines (specifiers escaped).
fn path_value(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

/// The command line: `env -i NAME=value... program args...`.
fn command_line(def: &Definition) -> Vec<String> {
    let env = def.environment.iter().map(|(name, value)| format!("{name}={value}"));
    let program = std::iter::once(def.program.display().to_string()).chain(def.args.iter().cloned());
    CLEAN_ENV.iter().map(|a| a.to_string()).chain(env).chain(program).collect()
}

/// The unit file for `def`. Restart policy as OpenClaw's own unit: always, 5 s apart,
/// not after an invalid config, and at most 10 starts in 5 minutes (then it stays failed).
pub fn render_unit(def: &Definition) -> String {
    let exec: Vec<String> = command_line(def).iter().map(|a| quote(a)).collect();
    let mut unit = String::new();
    let _ = writeln!(unit, "# {} for sibling {}. Do not edit.", super::MARKER, def.handle);
    let _ = writeln!(unit, "[Unit]\nDescription=OpenClaw gateway {}\nAfter=network-online.target", def.handle);
    let _ = writeln!(unit, "StartLimitIntervalSec=300\nStartLimitBurst=10\n");
    let _ = writeln!(unit, "[Service]\nType=simple");
    let _ = writeln!(unit, "WorkingDirectory={}", path_value(&def.working_directory));
    let _ = writeln!(unit, "ExecStart={}", exec.join(" "));
    let _ = writeln!(unit, "Restart={}", if def.keep_alive { "always" } else { "no" });
    let _ = writeln!(unit, "RestartSec=5\nRestartPreventExitStatus={EXIT_INVALID_CONFIG}");
    let _ = writeln!(unit, "TimeoutStopSec={STOP_TIMEOUT_SECS}");
    let _ = writeln!(unit, "StandardOutput=append:{}", path_value(&def.stdout_log));
    let _ = writeln!(unit, "StandardError=append:{}\n", path_value(&def.stderr_log));
    let _ = writeln!(unit, "[Install]\nWantedBy=default.target");
    unit
}

/// Where `systemctl --user` looks for the manager when `XDG_RUNTIME_DIR` is unset or
/// empty (a `su` or cron shell): `/run/user/<uid>`, as OpenClaw itself assumes.
pub fn runtime_dir_fallback(current: Option<&OsStr>, uid: u32) -> Option<PathBuf> {
    current.is_none_or(|dir| dir.is_empty()).then(|| PathBuf::from(format!("/run/user/{uid}")))
}

/// Runs `systemctl --user args...` (with [`runtime_dir_fallback`] when it exists).
pub fn systemctl_user(systemctl: &Path, args: &[&str]) -> Result<exec::Output, exec::ExecError> {
    let mut all = vec!["--user"];
    all.extend_from_slice(args);
    let uid = rustix::process::getuid().as_raw();
    let fallback = runtime_dir_fallback(std::env::var_os("XDG_RUNTIME_DIR").as_deref(), uid).filter(|dir| dir.is_dir());
    let env: Vec<(&str, &OsStr)> = fallback.iter().map(|dir| ("XDG_RUNTIME_DIR", dir.as_os_str())).collect();
    exec::run_env(systemctl, &all, &env)
}

/// A property from `systemctl show` output (empty when absent).
fn property<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or("")
}

impl Systemd {
    fn unit_path(&self, label: &str) -> PathBuf {
        self.dir.join(unit_name(label))
    }

    fn systemctl(&self, args: &[&str]) -> Result<exec::Output, ServiceError> {
        systemctl_user(&self.systemctl, args).map_err(ServiceError::from)
    }

    fn must(&self, args: &[&str]) -> Result<(), ServiceError> {
        let out = self.systemctl(args)?;
        if out.success {
            Ok(())
        } else {
            Err(ServiceError::Failed(format!("systemctl --user {}: {}", args.join(" "), out.complaint())))
        }
    }

    fn require_unit(&self, label: &str) -> Result<String, ServiceError> {
        if self.unit_path(label).is_file() { Ok(unit_name(label)) } else { Err(not_installed(label)) }
    }

    /// `systemctl --user show UNIT -p PROPS` output.
    fn show(&self, unit: &str, props: &str) -> Result<String, ServiceError> {
        let out = self.systemctl(&["show", unit, "-p", props])?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(ServiceError::Failed(format!("systemctl --user show {unit}: {}", out.complaint())))
        }
    }

    /// Clears the failed state of `unit`, if it has one (systemd unloads an inactive unit
    /// it no longer needs, and `reset-failed` of an unloaded unit is an error).
    fn reset_if_failed(&self, unit: &str) -> Result<(), ServiceError> {
        if property(&self.show(unit, "ActiveState")?, "ActiveState") == "failed" {
            self.must(&["reset-failed", unit])?;
        }
        Ok(())
    }

    /// Refuses to act unless the manager loads `label`'s unit from the file the host wrote:
    /// a manager that does not read this home's unit directory, or a unit of the same name
    /// in a directory it prefers (`user.control`, `transient`), would run something else.
    fn require_loaded_from_ours(&self, label: &str) -> Result<(), ServiceError> {
        let (unit, ours) = (unit_name(label), self.unit_path(label));
        let shown = self.show(&unit, PROOF_PROPS)?;
        match property(&shown, "LoadState") {
            "loaded" => self.runs_only_ours(label, &shown),
            state => Err(ServiceError::Failed(format!(
                "systemd's user manager does not load {} (LoadState={state}): it reads no units from {}; --home must be the home of the user whose manager `systemctl --user` reaches, with XDG_CONFIG_HOME unset or <home>/.config",
                ours.display(),
                self.dir.display()
            ))),
        }
    }

    /// For a loaded unit (`shown` holds [`PROOF_PROPS`]): what the manager runs is the file
    /// the host wrote and nothing else — that file is no link, the manager loaded it from
    /// there, and no drop-in (`<unit>.d/*.conf`, `openclaw-sibling-.service.d/`,
    /// `service.d/`, written by anyone as the user) changes `ExecStart=` or the environment.
    fn runs_only_ours(&self, label: &str, shown: &str) -> Result<(), ServiceError> {
        let (unit, ours) = (unit_name(label), self.unit_path(label));
        if std::fs::symlink_metadata(&ours).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ServiceError::Denied(format!("{} is a link, not the unit file this host wrote; not acting on {unit}", ours.display())));
        }
        let fragment = property(shown, "FragmentPath");
        let same = |a: &Path, b: &Path| a == b || std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b));
        if !same(Path::new(fragment), &ours) {
            return Err(ServiceError::Failed(format!(
                "systemd's user manager loads {unit} from {fragment}, not from the unit this host wrote ({}); not acting on it",
                ours.display()
            )));
        }
        match property(shown, "DropInPaths").split_whitespace().collect::<Vec<_>>() {
            drop_ins if drop_ins.is_empty() => Ok(()),
            drop_ins => Err(ServiceError::Denied(format!(
                "systemd's user manager changes {unit} with drop-ins the host did not write ({}); not acting on it until they are removed",
                drop_ins.join(", ")
            ))),
        }
    }
}

/// What proves a unit is the host's: where it is loaded from, and what changes it.
const PROOF_PROPS: &str = "LoadState,FragmentPath,DropInPaths";

impl Backend for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn definition_path(&self, label: &str) -> Option<PathBuf> {
        Some(self.unit_path(label))
    }

    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        if def.program.as_os_str().as_encoded_bytes().contains(&b'=') {
            return Err(ServiceError::Failed(format!(
                "{}: a program path with '=' cannot follow `env -i` in a unit (env would read it as a variable)",
                def.program.display()
            )));
        }
        super::write_definition(&self.dir, &unit_name(&def.label), render_unit(def).as_bytes(), 0o644)?;
        Ok(self.unit_path(&def.label))
    }

    fn activate(&mut self, label: &str) -> Result<(), ServiceError> {
        self.must(&["daemon-reload"])?;
        self.require_loaded_from_ours(label)?;
        self.must(&["enable", &unit_name(label)])
    }

    /// Clears a failed state first: a unit that gave up (start limit) starts again when asked.
    fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        self.require_loaded_from_ours(label)?;
        self.reset_if_failed(&unit)?;
        self.must(&["start", &unit])
    }

    fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        self.must(&["stop", &unit])
    }

    /// Leaves nothing loaded: a failed unit would stay listed after its file is gone.
    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        let path = self.unit_path(label);
        self.must(&["disable", "--now", &unit])?;
        self.reset_if_failed(&unit)?;
        std::fs::remove_file(&path).map_err(|e| ServiceError::Failed(format!("removing {}: {e}", path.display())))?;
        self.must(&["daemon-reload"])
    }

    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        if !self.unit_path(label).is_file() {
            return Ok(super::status(RunState::NotInstalled, "no unit file"));
        }
        let props = "ActiveState,SubState,Result,MainPID,NRestarts,ExecMainCode,ExecMainStatus,ExecMainStartTimestampMonotonic";
        let shown = self.show(&unit_name(label), &format!("{PROOF_PROPS},{props}"))?;
        if property(&shown, "LoadState") == "loaded" {
            // A unit changed by a drop-in is not reported on: its state is not the host's gateway's.
            self.runs_only_ours(label, &shown)?;
        }
        Ok(parse_show(&shown, monotonic_micros()))
    }

    fn installed_ports(&self) -> Vec<u16> {
        super::definitions(&self.dir, naming::handle_of_definition)
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|unit| {
                let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
                let args: Vec<String> = exec.split("\" \"").map(|a| a.trim_matches('"').to_string()).collect();
                super::port_arg(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect()
    }
}

fn monotonic_micros() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// The state of a unit from `systemctl show` output, `now_us` on the monotonic clock.
/// A main process killed by a signal (`ExecMainCode` 2 or 3) reports 128 + the signal,
/// as a shell (and the direct backend) would.
pub fn parse_show(text: &str, now_us: u64) -> ServiceStatus {
    let value = |key: &str| property(text, key);
    if value("LoadState") == "not-found" {
        return super::status(RunState::NotInstalled, "unit not found");
    }
    let running = value("ActiveState") == "active";
    let pid = value("MainPID").parse::<u32>().ok().filter(|p| *p != 0);
    let started = value("ExecMainStartTimestampMonotonic").parse::<u64>().ok().filter(|t| *t != 0);
    let status = value("ExecMainStatus").parse::<i32>().ok();
    let exit = if matches!(value("ExecMainCode"), "2" | "3") { status.map(|signal| 128 + signal) } else { status };
    let result = match value("Result") {
        "" | "success" => String::new(),
        why => format!(" ({why})"),
    };
    ServiceStatus {
        state: match value("ActiveState") {
            "active" => RunState::Running,
            // systemd gave up on it (its start limit, or a failure it does not restart).
            "failed" => RunState::Failed,
            _ => RunState::Stopped,
        },
        pid: if running { pid } else { None },
        last_exit_code: if running { None } else { exit },
        uptime_seconds: if running { started.map(|s| now_us.saturating_sub(s) / 1_000_000) } else { None },
        restarts: value("NRestarts").parse().ok(),
        detail: format!("systemd {}/{}{result}", value("ActiveState"), value("SubState")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::caps::service::exec::tests::Recorder;
    use crate::caps::service::policy::tests::{fixture, spec};
    use std::os::unix::fs::PermissionsExt;

    fn backend(home: &Path, recorder: &Recorder) -> Systemd {
        Systemd { dir: home.join(".config/systemd/user"), systemctl: recorder.tool.clone() }
    }

    /// Makes the recorder answer `show` of `handle`'s unit as a manager that loaded it from
    /// the file in `home` would.
    pub(crate) fn loads_from_home(recorder: &Recorder, home: &Path, handle: &str) {
        let unit = naming::unit_name(handle);
        let path = home.join(".config/systemd/user").join(&unit);
        recorder.answer(&format!("--user show {unit}"), 0, &format!("LoadState=loaded\nFragmentPath={}\n", path.display()));
    }

    #[test]
    fn the_unit_runs_the_gateway_with_only_the_pinned_environment_and_restarts_it() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        loads_from_home(&recorder, &policy.home, "nova");
        let mut b = backend(&policy.home, &recorder);
        let path = b.install(&def).unwrap();
        b.activate(&def.label).unwrap();
        let unit = std::fs::read_to_string(&path).unwrap();
        assert!(path.ends_with("openclaw-sibling-nova.service"));
        assert!(unit.starts_with("# Written by agent-provisioner for sibling nova."));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let env: String = def.environment.iter().map(|(k, v)| format!(" \"{k}={v}\"")).collect();
        let exec = format!(
            "ExecStart=\"/usr/bin/env\" \"-i\"{env} \"{}\" \"--profile\" \"nova\" \"gateway\" \"run\" \"--port\" \"18930\"\n",
            def.program.display()
        );
        assert!(unit.contains(&exec), "the manager's environment is cleared, the host's set: {unit}");
        assert!(env.contains(&format!("\"OPENCLAW_STATE_DIR={}\"", def.working_directory.display())));
        assert!(!unit.contains("Environment"), "no Environment= or EnvironmentFile= (nothing read from the sibling's home)");
        for line in ["Restart=always", "RestartSec=5", "RestartPreventExitStatus=78", "StartLimitBurst=10", "StartLimitIntervalSec=300"] {
            assert!(unit.contains(&format!("{line}\n")), "{line}: {unit}");
        }
        assert!(unit.contains(&format!("StandardOutput=append:{}\n", def.stdout_log.display())));
        assert_eq!(
            recorder.calls(),
            [
                "--user daemon-reload",
                "--user show openclaw-sibling-nova.service -p LoadState,FragmentPath,DropInPaths",
                "--user enable openclaw-sibling-nova.service"
            ]
        );
        assert_eq!(backend(&policy.home, &recorder).installed_ports(), [18930]);
    }

    #[test]
    fn a_stopping_gateway_is_killed_before_the_systemctl_call_times_out() {
        let (_t, policy) = fixture();
        let unit = render_unit(&policy.check(&spec("nova")).unwrap());
        let secs: u64 = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).unwrap().parse().unwrap();
        assert!(secs + 5 <= exec::TIMEOUT.as_secs(), "TimeoutStopSec={secs} against a {:?} systemctl limit", exec::TIMEOUT);
    }

    #[test]
    fn a_program_path_env_would_misread_is_refused() {
        let (t, mut policy) = fixture();
        let odd = t.path().join("a=b");
        std::fs::create_dir(&odd).unwrap();
        std::fs::copy(&policy.openclaw_bin, odd.join("openclaw")).unwrap();
        policy.openclaw_bin = odd.join("openclaw");
        let recorder = Recorder::new();
        let err = backend(&policy.home, &recorder).install(&policy.check(&spec("nova")).unwrap()).unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("a=b/openclaw") && m.contains("env -i")), "{err:?}");
        assert!(!policy.home.join(".config/systemd/user/openclaw-sibling-nova.service").exists());
    }

    #[test]
    fn arguments_are_quoted_so_systemd_expands_nothing() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("$HOME %h \"x\" \\"), "\"$$HOME %%h \\\"x\\\" \\\\\"");
    }

    #[test]
    fn systemctl_sequences() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        loads_from_home(&recorder, &policy.home, "nova");
        let mut b = backend(&policy.home, &recorder);
        b.install(&def).unwrap();
        recorder.clear();
        b.start("com.openclaw.nova").unwrap();
        b.stop("com.openclaw.nova").unwrap();
        b.uninstall("com.openclaw.nova").unwrap();
        assert_eq!(
            recorder.calls(),
            [
                "--user show openclaw-sibling-nova.service -p LoadState,FragmentPath,DropInPaths",
                "--user show openclaw-sibling-nova.service -p ActiveState",
                "--user start openclaw-sibling-nova.service",
                "--user stop openclaw-sibling-nova.service",
                "--user disable --now openclaw-sibling-nova.service",
                "--user show openclaw-sibling-nova.service -p ActiveState",
                "--user daemon-reload"
            ]
        );
        assert!(!policy.home.join(".config/systemd/user/openclaw-sibling-nova.service").exists());
        assert!(matches!(b.start("com.openclaw.nova"), Err(ServiceError::NotInstalled(_))));
    }

    #[test]
    fn a_failed_unit_is_reset_to_start_again_and_when_removed() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        loads_from_home(&recorder, &policy.home, "nova");
        recorder.answer("--user show openclaw-sibling-nova.service -p ActiveState", 0, "ActiveState=failed\n");
        let mut b = backend(&policy.home, &recorder);
        b.install(&policy.check(&spec("nova")).unwrap()).unwrap();
        recorder.clear();
        b.start("com.openclaw.nova").unwrap();
        b.uninstall("com.openclaw.nova").unwrap();
        let resets: Vec<usize> = recorder.calls().iter().enumerate().filter(|(_, c)| *c == "--user reset-failed openclaw-sibling-nova.service").map(|(i, _)| i).collect();
        assert_eq!(resets, [2, 6], "before the start, and after disable --now: {:?}", recorder.calls());
    }

    #[test]
    fn a_unit_the_manager_loads_from_elsewhere_is_neither_enabled_nor_started() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let mut b = backend(&policy.home, &recorder);
        b.install(&def).unwrap();
        let shadow = "/run/user/1000/systemd/transient/openclaw-sibling-nova.service";
        recorder.answer("--user show", 0, &format!("LoadState=loaded\nFragmentPath={shadow}\n"));
        for result in [b.activate("com.openclaw.nova"), b.start("com.openclaw.nova")] {
            assert!(matches!(&result, Err(ServiceError::Failed(m)) if m.contains(shadow) && m.contains("not from the unit this host wrote")), "{result:?}");
        }
        recorder.answer("--user show", 0, "LoadState=not-found\nFragmentPath=\n");
        let err = b.activate("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("--home must be the home of the user")), "{err:?}");
        assert!(!recorder.calls().iter().any(|c| c.contains("enable") || c.contains(" start ")), "{:?}", recorder.calls());
    }

    #[test]
    fn a_unit_changed_by_a_drop_in_is_neither_started_nor_reported() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let mut b = backend(&policy.home, &recorder);
        let ours = b.install(&policy.check(&spec("nova")).unwrap()).unwrap();
        let evil = policy.home.join(".config/systemd/user/openclaw-sibling-nova.service.d/evil.conf");
        let shown = format!("LoadState=loaded\nFragmentPath={}\nDropInPaths={} /etc/x.conf\nActiveState=active\n", ours.display(), evil.display());
        recorder.answer("--user show", 0, &shown);
        let results = [b.activate("com.openclaw.nova"), b.start("com.openclaw.nova"), b.status("com.openclaw.nova").map(|_| ())];
        for result in results {
            let named = format!("drop-ins the host did not write ({}, /etc/x.conf)", evil.display());
            assert!(matches!(&result, Err(ServiceError::Denied(m)) if m.contains(&named)), "{result:?}");
        }
        assert!(!recorder.calls().iter().any(|c| c.contains("enable") || c.contains(" start ")), "{:?}", recorder.calls());
        recorder.answer("--user show", 0, &format!("LoadState=loaded\nFragmentPath={}\nDropInPaths=\nActiveState=active\n", ours.display()));
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::Running, "without drop-ins it is reported");
    }

    #[test]
    fn a_unit_file_that_is_a_link_is_not_started() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        loads_from_home(&recorder, &policy.home, "nova");
        let mut b = backend(&policy.home, &recorder);
        let ours = b.install(&policy.check(&spec("nova")).unwrap()).unwrap();
        let elsewhere = policy.home.join("elsewhere.service");
        std::fs::rename(&ours, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &ours).unwrap();
        let err = b.start("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Denied(m) if m.contains("is a link, not the unit file this host wrote")), "{err:?}");
        assert!(!recorder.calls().iter().any(|c| c.contains(" start ")), "{:?}", recorder.calls());
    }

    #[test]
    fn systemctl_finds_the_manager_without_xdg_runtime_dir() {
        assert_eq!(runtime_dir_fallback(None, 1000), Some(PathBuf::from("/run/user/1000")));
        assert_eq!(runtime_dir_fallback(Some(OsStr::new("")), 0), Some(PathBuf::from("/run/user/0")));
        assert_eq!(runtime_dir_fallback(Some(OsStr::new("/tmp/run")), 1000), None, "a set one is kept");
    }

    #[test]
    fn status_comes_from_systemctl_show() {
        let s = parse_show(
            "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=4242\nNRestarts=2\nExecMainCode=0\nExecMainStatus=0\nExecMainStartTimestampMonotonic=1000000\n",
            61_000_000,
        );
        assert_eq!((s.state, s.pid, s.restarts, s.uptime_seconds), (RunState::Running, Some(4242), Some(2), Some(60)));
        assert_eq!(s.detail, "systemd active/running");
        let s = parse_show("LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nMainPID=0\nExecMainCode=1\nExecMainStatus=78\nNRestarts=5\n", 0);
        assert_eq!((s.state, s.pid, s.last_exit_code, s.restarts), (RunState::Failed, None, Some(78), Some(5)));
        assert_eq!(s.detail, "systemd failed/failed (exit-code)");
        let s = parse_show("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nExecMainStatus=1\n", 0);
        assert_eq!((s.state, s.last_exit_code), (RunState::Stopped, Some(1)), "waiting to restart is not failed");
        let s = parse_show("LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\n", 0);
        assert_eq!(s.state, RunState::Stopped);
        assert_eq!(parse_show("LoadState=not-found\n", 0).state, RunState::NotInstalled);
    }

    #[test]
    fn a_gateway_killed_by_a_signal_reports_128_plus_the_signal() {
        // What a real manager showed between a SIGKILL and the restart 5 s later.
        let s = parse_show(
            "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=signal\nMainPID=0\nNRestarts=0\nExecMainCode=2\nExecMainStatus=9\n",
            0,
        );
        assert_eq!((s.state, s.pid, s.last_exit_code), (RunState::Stopped, None, Some(137)));
        assert_eq!(s.detail, "systemd activating/auto-restart (signal)");
    }
}
