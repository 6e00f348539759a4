//! macOS LaunchAgents: `~/Library/LaunchAgents/<label>.plist` (0644, no secrets), driven
//! with `launchctl bootstrap|bootout|enable|kickstart|print gui/<uid>`. Each plist carries
//! the host's marker comment ([`super::MARKER`]).

use super::exec;
use super::policy::Definition;
use super::{Backend, not_installed};
use crate::bindings::{RunState, ServiceError, ServiceStatus};
use plist::{Dictionary, Value};
use std::path::PathBuf;

/// The launchd backend.
pub struct Launchd {
    pub dir: PathBuf,
    pub launchctl: PathBuf,
    pub uid: u32,
}

/// The plist for `def`.
pub fn render(def: &Definition) -> Value {
    let mut dict = Dictionary::new();
    dict.insert("Label".into(), def.label.clone().into());
    let argv: Vec<Value> = std::iter::once(def.program.display().to_string())
        .chain(def.args.iter().cloned())
        .map(Value::from)
        .collect();
    dict.insert("ProgramArguments".into(), Value::Array(argv));
    let env: Dictionary = def.environment.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
    dict.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    dict.insert("WorkingDirectory".into(), def.working_directory.display().to_string().into());
    dict.insert("RunAtLoad".into(), true.into());
    dict.insert("KeepAlive".into(), def.keep_alive.into());
    dict.insert("StandardOutPath".into(), def.stdout_log.display().to_string().into());
    dict.insert("StandardErrorPath".into(), def.stderr_log.display().to_string().into());
    Value::Dictionary(dict)
}

impl Launchd {
    fn plist(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.plist"))
    }


    fn target(&self, label: &str) -> String {
        format!("gui/{}/{label}", self.uid)
    }

    fn launchctl(&self, args: &[&str]) -> Result<exec::Output, ServiceError> {
        exec::run(&self.launchctl, args).map_err(ServiceError::from)
    }

    /// `launchctl` that must succeed.
    fn must(&self, args: &[&str]) -> Result<(), ServiceError> {
        let out = self.launchctl(args)?;
        if out.success {
            Ok(())
        } else {
            Err(ServiceError::Failed(format!("launchctl {}: {}", args.join(" "), out.complaint())))
        }
    }

    fn loaded(&self, label: &str) -> Result<Option<String>, ServiceError> {
        let out = self.launchctl(&["print", &self.target(label)])?;
        Ok(out.success.then_some(out.stdout))
    }

    fn require_plist(&self, label: &str) -> Result<PathBuf, ServiceError> {
        let plist = self.plist(label);
        if plist.is_file() { Ok(plist) } else { Err(not_installed(label)) }
    }
}

impl Backend for Launchd {
    fn name(&self) -> &'static str {
        "launchd"
    }

    fn definition_path(&self, label: &str) -> Option<PathBuf> {
        Some(self.plist(label))
    }

    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        let mut bytes = Vec::new();
        render(def).to_writer_xml(&mut bytes).map_err(|e| ServiceError::Failed(format!("rendering the plist: {e}")))?;
        let text = String::from_utf8(bytes).expect("plist XML is UTF-8");
        let marked = match text.split_once('\n') {
            Some((declaration, rest)) => format!("{declaration}\n<!-- {} for sibling {}. Do not edit. -->\n{rest}", super::MARKER, def.handle),
            None => text,
        };
        super::write_definition(&self.dir, &naming::plist_name(&def.handle), marked.as_bytes(), 0o644)?;
        Ok(self.plist(&def.label))
    }

    fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        let plist = self.require_plist(label)?;
        self.must(&["enable", &self.target(label)])?;
        if self.loaded(label)?.is_some() {
            self.must(&["kickstart", &self.target(label)])
        } else {
            self.must(&["bootstrap", &format!("gui/{}", self.uid), &plist.display().to_string()])
        }
    }

    fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        self.require_plist(label)?;
        if self.loaded(label)?.is_some() {
            self.must(&["bootout", &self.target(label)])?;
        }
        Ok(())
    }

    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        self.stop(label)?;
        std::fs::remove_file(self.plist(label))
            .map_err(|e| ServiceError::Failed(format!("removing {}: {e}", self.plist(label).display())))
    }

    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        if !self.plist(label).is_file() {
            return Ok(super::status(RunState::NotInstalled, "no plist"));
        }
        match self.loaded(label)? {
            None => Ok(super::status(RunState::Stopped, "not loaded")),
            Some(text) => Ok(parse_print(&text)),
        }
    }

    fn installed_ports(&self) -> Vec<u16> {
        super::definitions(&self.dir, naming::handle_of_definition)
            .filter_map(|path| plist::Value::from_file(path).ok())
            .filter_map(|v| {
                let args = v.as_dictionary()?.get("ProgramArguments")?.as_array()?.iter().filter_map(|a| a.as_string()).collect::<Vec<_>>();
                super::port_arg(&args)
            })
            .collect()
    }
}

/// The state of a loaded job from `launchctl print`.
pub fn parse_print(text: &str) -> ServiceStatus {
    let value = |key: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')).map(|v| v.trim().to_string()))
    };
    let running = value("state").as_deref() == Some("running");
    let pid = value("pid").and_then(|p| p.parse().ok());
    ServiceStatus {
        state: if running { RunState::Running } else { RunState::Stopped },
        pid: if running { pid } else { None },
        last_exit_code: value("last exit code").and_then(|c| c.parse().ok()),
        uptime_seconds: None,
        restarts: value("runs").and_then(|r| r.parse::<u32>().ok()).map(|r| r.saturating_sub(1)),
        detail: format!("launchd state {}", value("state").unwrap_or_else(|| "unknown".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::exec::tests::Recorder;
    use crate::service::policy::tests::{fixture, spec};
    use std::path::Path;

    fn backend(home: &Path, recorder: &Recorder) -> Launchd {
        Launchd { dir: home.join("Library/LaunchAgents"), launchctl: recorder.tool.clone(), uid: 501 }
    }

    #[test]
    fn the_plist_has_every_key_and_no_secret() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let path = backend(&policy.home, &recorder).install(&def).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let value = plist::Value::from_file(&path).unwrap();
        let d = value.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some("com.openclaw.nova"));
        let argv: Vec<&str> = d["ProgramArguments"].as_array().unwrap().iter().map(|v| v.as_string().unwrap()).collect();
        assert_eq!(argv[1..], ["--profile", "nova", "gateway", "run", "--port", "18930"]);
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        assert_eq!(d["KeepAlive"].as_boolean(), Some(true));
        assert!(d["StandardOutPath"].as_string().unwrap().ends_with("agent-provisioner/logs/nova/stdout.log"));
        assert!(d["StandardErrorPath"].as_string().unwrap().ends_with("agent-provisioner/logs/nova/stderr.log"));
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(env.keys().map(String::as_str).collect::<Vec<_>>(), crate::service::policy::ENVIRONMENT);
        assert!(std::fs::read_to_string(&path).unwrap().contains("<!-- Written by agent-provisioner for sibling nova."));
        assert!(recorder.calls().is_empty(), "install only writes the plist");
        assert_eq!(backend(&policy.home, &recorder).installed_ports(), [18930]);
    }

    #[test]
    fn launchctl_sequences() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let mut b = backend(&policy.home, &recorder);
        let plist = b.install(&def).unwrap().display().to_string();
        recorder.answer("print", 113, "Could not find service \"com.openclaw.nova\" in domain for uid: 501");
        b.start("com.openclaw.nova").unwrap();
        assert_eq!(recorder.calls(), ["enable gui/501/com.openclaw.nova", "print gui/501/com.openclaw.nova", &format!("bootstrap gui/501 {plist}")]);
        recorder.clear();
        b.stop("com.openclaw.nova").unwrap();
        assert_eq!(recorder.calls(), ["print gui/501/com.openclaw.nova"], "not loaded: nothing to boot out");
        recorder.answer("print", 0, "gui/501/com.openclaw.nova = {\n\tstate = running\n\tpid = 4242\n\truns = 3\n\tlast exit code = 0\n}\n");
        recorder.clear();
        b.uninstall("com.openclaw.nova").unwrap();
        assert_eq!(recorder.calls(), ["print gui/501/com.openclaw.nova", "bootout gui/501/com.openclaw.nova"]);
        assert!(!Path::new(&plist).exists());
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::NotInstalled);
    }

    #[test]
    fn status_comes_from_launchctl_print() {
        let s = parse_print("gui/501/com.openclaw.nova = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n\truns = 3\n\tlast exit code = 1\n}");
        assert_eq!((s.state, s.pid, s.restarts, s.last_exit_code), (RunState::Running, Some(4242), Some(2), Some(1)));
        let s = parse_print("gui/501/x = {\n\tstate = not running\n\tlast exit code = (never exited)\n}");
        assert_eq!((s.state, s.pid, s.last_exit_code), (RunState::Stopped, None, None));
    }

    #[test]
    fn a_failing_launchctl_is_reported_with_its_words() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let mut b = backend(&policy.home, &recorder);
        b.install(&def).unwrap();
        recorder.answer("print", 113, "");
        recorder.answer("bootstrap", 5, "Bootstrap failed: 5: Input/output error");
        let err = b.start("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("exit 5: Bootstrap failed")), "{err:?}");
    }
}
