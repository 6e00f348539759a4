//! systemd user units: `~/.config/systemd/user/openclaw-sibling-<handle>.service` (0644,
//! no secrets: the environment is the host's pinned, non-secret variables), driven with
//! `systemctl --user`. The name cannot meet OpenClaw's own `openclaw-gateway*` units
//! ([`naming::unit_name`]); the unit starts with the host's marker ([`super::MARKER`]).

use super::exec;
use super::policy::Definition;
use super::{Backend, not_installed};
use crate::bindings::{RunState, ServiceError, ServiceStatus};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The systemd backend.
pub struct Systemd {
    pub dir: PathBuf,
    pub systemctl: PathBuf,
}

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

/// The unit file for `def`.
pub fn render_unit(def: &Definition) -> String {
    let exec: Vec<String> = std::iter::once(def.program.display().to_string()).chain(def.args.iter().cloned()).map(|a| quote(&a)).collect();
    let mut unit = String::new();
    let _ = writeln!(unit, "# {} for sibling {}. Do not edit.", super::MARKER, def.handle);
    let _ = writeln!(unit, "[Unit]\nDescription=OpenClaw gateway {}\nAfter=network-online.target\n", def.handle);
    let _ = writeln!(unit, "[Service]\nType=simple");
    let _ = writeln!(unit, "WorkingDirectory={}", path_value(&def.working_directory));
    for (name, value) in &def.environment {
        let _ = writeln!(unit, "Environment={}", quote(&format!("{name}={value}")));
    }
    let _ = writeln!(unit, "ExecStart={}", exec.join(" "));
    let _ = writeln!(unit, "Restart={}", if def.keep_alive { "always" } else { "no" });
    let _ = writeln!(unit, "RestartSec=5");
    let _ = writeln!(unit, "StandardOutput=append:{}", path_value(&def.stdout_log));
    let _ = writeln!(unit, "StandardError=append:{}\n", path_value(&def.stderr_log));
    let _ = writeln!(unit, "[Install]\nWantedBy=default.target");
    unit
}


impl Systemd {
    fn unit_path(&self, label: &str) -> PathBuf {
        self.dir.join(unit_name(label))
    }

    fn systemctl(&self, args: &[&str]) -> Result<exec::Output, ServiceError> {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        exec::run(&self.systemctl, &all).map_err(ServiceError::from)
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
}

impl Backend for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn definition_path(&self, label: &str) -> Option<PathBuf> {
        Some(self.unit_path(label))
    }

    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        super::write_definition(&self.dir, &unit_name(&def.label), render_unit(def).as_bytes(), 0o644)?;
        Ok(self.unit_path(&def.label))
    }

    fn activate(&mut self, label: &str) -> Result<(), ServiceError> {
        self.must(&["daemon-reload"])?;
        self.must(&["enable", &unit_name(label)])
    }

    fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        self.must(&["start", &unit])
    }

    fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        self.must(&["stop", &unit])
    }

    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        let unit = self.require_unit(label)?;
        let path = self.unit_path(label);
        self.must(&["disable", "--now", &unit])?;
        std::fs::remove_file(&path).map_err(|e| ServiceError::Failed(format!("removing {}: {e}", path.display())))?;
        self.must(&["daemon-reload"])
    }

    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        if !self.unit_path(label).is_file() {
            return Ok(super::status(RunState::NotInstalled, "no unit file"));
        }
        let props = "LoadState,ActiveState,SubState,MainPID,NRestarts,ExecMainStatus,ExecMainStartTimestampMonotonic";
        let out = self.systemctl(&["show", &unit_name(label), "-p", props])?;
        if !out.success {
            return Err(ServiceError::Failed(format!("systemctl --user show: {}", out.complaint())));
        }
        Ok(parse_show(&out.stdout, monotonic_micros()))
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
pub fn parse_show(text: &str, now_us: u64) -> ServiceStatus {
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or("");
    if value("LoadState") == "not-found" {
        return super::status(RunState::NotInstalled, "unit not found");
    }
    let running = value("ActiveState") == "active";
    let pid = value("MainPID").parse::<u32>().ok().filter(|p| *p != 0);
    let started = value("ExecMainStartTimestampMonotonic").parse::<u64>().ok().filter(|t| *t != 0);
    ServiceStatus {
        state: match value("ActiveState") {
            "active" => RunState::Running,
            // systemd gave up on it (its start limit, or a failure it does not restart).
            "failed" => RunState::Failed,
            _ => RunState::Stopped,
        },
        pid: if running { pid } else { None },
        last_exit_code: if running { None } else { value("ExecMainStatus").parse().ok() },
        uptime_seconds: if running { started.map(|s| now_us.saturating_sub(s) / 1_000_000) } else { None },
        restarts: value("NRestarts").parse().ok(),
        detail: format!("systemd {}/{}", value("ActiveState"), value("SubState")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::exec::tests::Recorder;
    use crate::service::policy::tests::{fixture, spec};
    use std::os::unix::fs::PermissionsExt;

    fn backend(home: &Path, recorder: &Recorder) -> Systemd {
        Systemd { dir: home.join(".config/systemd/user"), systemctl: recorder.tool.clone() }
    }

    #[test]
    fn the_unit_has_exec_start_restart_and_the_pinned_environment() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let mut b = backend(&policy.home, &recorder);
        let path = b.install(&def).unwrap();
        b.activate(&def.label).unwrap();
        let unit = std::fs::read_to_string(&path).unwrap();
        assert!(path.ends_with("openclaw-sibling-nova.service"));
        assert!(unit.starts_with("# Written by agent-provisioner for sibling nova."));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let exec = format!("ExecStart=\"{}\" \"--profile\" \"nova\" \"gateway\" \"run\" \"--port\" \"18930\"", def.program.display());
        assert!(unit.contains(&exec), "{unit}");
        assert!(unit.contains("Restart=always\n"));
        assert!(unit.contains(&format!("Environment=\"OPENCLAW_STATE_DIR={}\"\n", def.working_directory.display())), "{unit}");
        assert!(!unit.contains("EnvironmentFile"), "nothing is read from the sibling's home");
        assert!(unit.contains(&format!("StandardOutput=append:{}\n", def.stdout_log.display())));
        assert_eq!(recorder.calls(), ["--user daemon-reload", "--user enable openclaw-sibling-nova.service"]);
        assert_eq!(backend(&policy.home, &recorder).installed_ports(), [18930]);
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
        let mut b = backend(&policy.home, &recorder);
        b.install(&def).unwrap();
        recorder.clear();
        b.start("com.openclaw.nova").unwrap();
        b.stop("com.openclaw.nova").unwrap();
        b.uninstall("com.openclaw.nova").unwrap();
        assert_eq!(
            recorder.calls(),
            [
                "--user start openclaw-sibling-nova.service",
                "--user stop openclaw-sibling-nova.service",
                "--user disable --now openclaw-sibling-nova.service",
                "--user daemon-reload"
            ]
        );
        assert!(matches!(b.start("com.openclaw.nova"), Err(ServiceError::NotInstalled(_))));
    }

    #[test]
    fn status_comes_from_systemctl_show() {
        let s = parse_show(
            "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nNRestarts=2\nExecMainStatus=0\nExecMainStartTimestampMonotonic=1000000\n",
            61_000_000,
        );
        assert_eq!((s.state, s.pid, s.restarts, s.uptime_seconds), (RunState::Running, Some(4242), Some(2), Some(60)));
        let s = parse_show("LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nExecMainStatus=78\nNRestarts=5\n", 0);
        assert_eq!((s.state, s.pid, s.last_exit_code, s.restarts), (RunState::Failed, None, Some(78), Some(5)));
        assert_eq!(s.detail, "systemd failed/failed");
        let s = parse_show("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nExecMainStatus=1\n", 0);
        assert_eq!((s.state, s.last_exit_code), (RunState::Stopped, Some(1)), "waiting to restart is not failed");
        let s = parse_show("LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\n", 0);
        assert_eq!(s.state, RunState::Stopped);
        assert_eq!(parse_show("LoadState=not-found\n", 0).state, RunState::NotInstalled);
    }
}
