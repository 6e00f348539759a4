//! macOS LaunchAgents: `~/Library/LaunchAgents/<label>.plist` (0644, no secrets), driven
//! with `launchctl bootstrap|bootout|enable|kickstart|print gui/<uid>`. Each plist carries
//! the host's marker comment ([`super::MARKER`]).
//!
//! How launchd runs the gateway follows OpenClaw 2026.9.6's own LaunchAgent
//! ([`LAUNCHD_POLICY`]); where the environment comes from and where the logs go do not
//! (docs/launchagent.md): the environment is pinned in the plist,
//! which lives outside every sibling home, never in a file a sibling could rewrite.

use super::exec;
use super::policy::Definition;
use super::{Backend, not_installed};
use crate::runtime::bindings::{RunState, ServiceError, ServiceStatus};
use plist::{Dictionary, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How launchd runs the gateway, beside `KeepAlive` (from the definition): the values of
/// OpenClaw 2026.9.6's own `LAUNCH_AGENT_POLICY` — started at load, respawned at most every
/// 10 s, 20 s from SIGTERM to SIGKILL, scheduled as an interactive job (not throttled like
/// background work), files it creates private to the user (umask 077), no stdin.
pub const LAUNCHD_POLICY: [(&str, Setting); 6] = [
    ("RunAtLoad", Setting::Bool(true)),
    ("ExitTimeOut", Setting::Integer(20)),
    ("ProcessType", Setting::Text("Interactive")),
    ("ThrottleInterval", Setting::Integer(10)),
    ("Umask", Setting::Integer(0o077)),
    ("StandardInPath", Setting::Text("/dev/null")),
];

/// One value of [`LAUNCHD_POLICY`].
#[derive(Clone, Copy, Debug)]
pub enum Setting {
    Bool(bool),
    Integer(u64),
    Text(&'static str),
}

impl From<Setting> for Value {
    fn from(setting: Setting) -> Value {
        match setting {
            Setting::Bool(b) => b.into(),
            Setting::Integer(i) => i.into(),
            Setting::Text(t) => t.into(),
        }
    }
}

/// How long `start` keeps retrying a bootstrap that launchd refuses while the job's last
/// instance is still being torn down (as OpenClaw does, 30 s, within the deadline).
const TEARDOWN_WAIT: Duration = Duration::from_secs(30);
const TEARDOWN_POLL: Duration = Duration::from_millis(500);

/// The launchd backend.
pub struct Launchd {
    pub dir: PathBuf,
    pub launchctl: PathBuf,
    pub uid: u32,
    /// How long to retry a bootstrap refused during a teardown ([`TEARDOWN_WAIT`]).
    pub teardown_wait: Duration,
}

impl Launchd {
    pub fn new(dir: PathBuf, launchctl: PathBuf, uid: u32) -> Self {
        Self { dir, launchctl, uid, teardown_wait: TEARDOWN_WAIT }
    }
}

/// The plist for `def`.
pub fn render(def: &Definition) -> Value {
    let mut dict = Dictionary::new();
    dict.insert("Label".into(), def.label.clone().into());
    dict.insert("Comment".into(), format!("OpenClaw gateway of the sibling {} (agent-provisioner)", def.handle).into());
    dict.insert("KeepAlive".into(), def.keep_alive.into());
    for (key, setting) in LAUNCHD_POLICY {
        dict.insert(key.into(), setting.into());
    }
    let argv: Vec<Value> = std::iter::once(def.program.display().to_string())
        .chain(def.args.iter().cloned())
        .map(Value::from)
        .collect();
    dict.insert("ProgramArguments".into(), Value::Array(argv));
    let env: Dictionary = def.environment.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
    dict.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    dict.insert("WorkingDirectory".into(), def.working_directory.display().to_string().into());
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

    /// `launchctl bootstrap`; while launchd refuses it because the job's last instance is
    /// still being torn down (EIO, right after a bootout, as in a restart), it is retried
    /// for at most `teardown_wait` (within the deadline). Any other refusal is final.
    fn bootstrap(&self, plist: &Path) -> Result<(), ServiceError> {
        let (domain, path) = (format!("gui/{}", self.uid), plist.display().to_string());
        let args = ["bootstrap", domain.as_str(), path.as_str()];
        let until = Instant::now() + crate::runtime::deadline::bound(self.teardown_wait);
        loop {
            let out = self.launchctl(&args)?;
            if out.success {
                return Ok(());
            }
            if !tearing_down(&out) || Instant::now() + TEARDOWN_POLL > until {
                return Err(ServiceError::Failed(format!("launchctl {}: {}", args.join(" "), out.complaint())));
            }
            std::thread::sleep(TEARDOWN_POLL);
        }
    }

    fn require_plist(&self, label: &str) -> Result<PathBuf, ServiceError> {
        let plist = self.plist(label);
        if plist.is_file() { Ok(plist) } else { Err(not_installed(label)) }
    }

    /// Refuses a job loaded under `label` from anything but the host's `plist` (a link to
    /// it included): `launchctl print`'s `path`, as `printed`. Another plist loaded under
    /// the label (`launchctl bootstrap` of a file anyone can write as the user) runs
    /// whatever it names.
    fn loaded_from_ours(&self, label: &str, plist: &Path, printed: &str) -> Result<(), ServiceError> {
        let is_link = std::fs::symlink_metadata(plist).is_ok_and(|m| m.file_type().is_symlink());
        let path = loaded_path(printed);
        match path {
            Some(path) if !is_link && Path::new(path) == plist => Ok(()),
            _ => Err(ServiceError::Denied(format!(
                "launchd's job {} was loaded from {}, not from the plist this host wrote ({}{}); not acting on it",
                self.target(label),
                path.unwrap_or("no plist"),
                plist.display(),
                if is_link { ", which is a link" } else { "" }
            ))),
        }
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
        match self.loaded(label)? {
            Some(printed) => {
                self.loaded_from_ours(label, &plist, &printed)?;
                self.must(&["kickstart", &self.target(label)])
            }
            None => self.bootstrap(&plist),
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
            Some(text) => {
                // A job from another plist is not reported on: its state is not the host's gateway's.
                self.loaded_from_ours(label, &self.plist(label), &text)?;
                Ok(parse_print(&text))
            }
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

/// Whether a refused bootstrap is launchd still tearing down the job's last instance:
/// "Bootstrap failed: 5: Input/output error" (what OpenClaw retries on too).
fn tearing_down(out: &exec::Output) -> bool {
    let text = format!("{}{}", out.stderr, out.stdout).to_lowercase();
    out.code == Some(5) || text.contains("bootstrap failed: 5:") || text.contains("input/output error")
}

/// The plist a loaded job came from: the job's own `path = …` line of `launchctl print`
/// (one tab in; nested blocks are indented further).
fn loaded_path(printed: &str) -> Option<&str> {
    printed.lines().find_map(|l| l.strip_prefix("\tpath = ")).map(str::trim_end)
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
pub(crate) mod tests {
    use super::*;
    use crate::caps::service::exec::tests::Recorder;
    use crate::caps::service::policy::tests::{fixture, spec};
    use std::path::Path;

    fn backend(home: &Path, launchctl: &Path) -> Launchd {
        Launchd { teardown_wait: Duration::from_millis(1200), ..Launchd::new(home.join("Library/LaunchAgents"), launchctl.into(), 501) }
    }

    /// A launchctl stand-in that keeps launchd's state of each job: `bootstrap` loads it,
    /// `bootout` unloads it; `print`, `kickstart` and `bootout` of a job that is not loaded
    /// fail as launchd does (113, "Could not find service"; 3, "No such process"), and so
    /// does a `bootstrap` of a loaded one. Records every call in `calls.log`.
    pub(crate) struct LaunchdStandin {
        pub dir: tempfile::TempDir,
        /// The stand-in, named `launchctl` (so its directory can go on a `PATH`).
        pub tool: PathBuf,
    }

    impl LaunchdStandin {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tool = dir.path().join("launchctl");
            let script = r#"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls.log"
verb=$1
for last in "$@"; do :; done
case "$last" in *.plist) label=$(basename "$last" .plist) ;; *) label=${last##*/} ;; esac
loaded="$here/loaded.$label"
missing() { echo "Could not find service \"$label\" in domain for uid: 501" >&2; exit 113; }
case "$verb" in
print)
  [ -f "$loaded" ] || missing
  printf '%s = {\n\tpath = %s\n\tstate = running\n\tpid = 2147483646\n\truns = 1\n}\n' "$last" "$(cat "$loaded")" ;;
kickstart) [ -f "$loaded" ] || missing ;;
bootout)
  [ -f "$loaded" ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }
  rm "$loaded" ;;
bootstrap)
  if [ -f "$here/tearing-down" ]; then
    rm "$here/tearing-down"; echo "Bootstrap failed: 5: Input/output error" >&2; exit 5
  fi
  [ -f "$loaded" ] && { echo "Bootstrap failed: 37: Operation already in progress" >&2; exit 37; }
  printf '%s' "$last" > "$loaded" ;;
esac
exit 0
"#;
            std::fs::write(&tool, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
            Self { dir, tool }
        }

        /// Makes the next `bootstrap` fail as launchd does while the job's last instance is
        /// still being torn down.
        pub fn tear_down_slowly(&self) {
            std::fs::write(self.dir.path().join("tearing-down"), "").unwrap();
        }

        pub fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default().lines().map(String::from).collect()
        }

        pub fn clear(&self) {
            let _ = std::fs::remove_file(self.dir.path().join("calls.log"));
        }
    }

    #[test]
    fn the_plist_has_every_key_and_no_secret() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let recorder = Recorder::new();
        let path = backend(&policy.home, &recorder.tool).install(&def).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let value = plist::Value::from_file(&path).unwrap();
        let d = value.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some("com.openclaw.nova"));
        assert_eq!(d["Comment"].as_string(), Some("OpenClaw gateway of the sibling nova (agent-provisioner)"));
        let argv: Vec<&str> = d["ProgramArguments"].as_array().unwrap().iter().map(|v| v.as_string().unwrap()).collect();
        assert_eq!(argv[1..], ["--profile", "nova", "gateway", "run", "--port", "18930"]);
        assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
        assert_eq!(d["KeepAlive"].as_boolean(), Some(true));
        assert_eq!(d["WorkingDirectory"].as_string(), Some(policy.home.join(".openclaw-nova").to_str().unwrap()));
        assert!(d["StandardOutPath"].as_string().unwrap().ends_with("agent-provisioner/logs/nova/stdout.log"));
        assert!(d["StandardErrorPath"].as_string().unwrap().ends_with("agent-provisioner/logs/nova/stderr.log"));
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(env.keys().map(String::as_str).collect::<Vec<_>>(), crate::caps::service::policy::ENVIRONMENT);
        assert!(std::fs::read_to_string(&path).unwrap().contains("<!-- Written by agent-provisioner for sibling nova."));
        assert!(recorder.calls().is_empty(), "install only writes the plist");
        assert_eq!(backend(&policy.home, &recorder.tool).installed_ports(), [18930]);
    }

    #[test]
    fn launchd_runs_the_gateway_as_openclaws_own_agent_does() {
        let (_t, policy) = fixture();
        let path = backend(&policy.home, Path::new("launchctl")).install(&policy.check(&spec("nova")).unwrap()).unwrap();
        let value = plist::Value::from_file(&path).unwrap();
        let d = value.as_dictionary().unwrap();
        assert_eq!(d["ExitTimeOut"].as_unsigned_integer(), Some(20));
        assert_eq!(d["ThrottleInterval"].as_unsigned_integer(), Some(10));
        assert_eq!(d["ProcessType"].as_string(), Some("Interactive"));
        assert_eq!(d["Umask"].as_unsigned_integer(), Some(0o077), "what the gateway writes is private to the user");
        assert_eq!(d["StandardInPath"].as_string(), Some("/dev/null"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("<key>Umask</key>\n\t<integer>63</integer>"), "launchd reads the umask as a decimal integer:\n{text}");
    }

    #[test]
    fn launchctl_sequences() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec("nova")).unwrap();
        let launchd = LaunchdStandin::new();
        let mut b = backend(&policy.home, &launchd.tool);
        let plist = b.install(&def).unwrap().display().to_string();
        b.start("com.openclaw.nova").unwrap();
        assert_eq!(launchd.calls(), ["enable gui/501/com.openclaw.nova", "print gui/501/com.openclaw.nova", &format!("bootstrap gui/501 {plist}")]);
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::Running);
        launchd.clear();
        b.start("com.openclaw.nova").unwrap();
        assert_eq!(launchd.calls(), ["enable gui/501/com.openclaw.nova", "print gui/501/com.openclaw.nova", "kickstart gui/501/com.openclaw.nova"], "loaded: kicked");
        launchd.clear();
        b.stop("com.openclaw.nova").unwrap();
        assert_eq!(launchd.calls(), ["print gui/501/com.openclaw.nova", "bootout gui/501/com.openclaw.nova"]);
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::Stopped);
        launchd.clear();
        b.uninstall("com.openclaw.nova").unwrap();
        assert_eq!(launchd.calls(), ["print gui/501/com.openclaw.nova"], "not loaded: nothing to boot out");
        assert!(!Path::new(&plist).exists());
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::NotInstalled);
        b.install(&def).unwrap();
        b.start("com.openclaw.nova").unwrap();
        launchd.clear();
        b.uninstall("com.openclaw.nova").unwrap();
        assert_eq!(launchd.calls(), ["print gui/501/com.openclaw.nova", "bootout gui/501/com.openclaw.nova"], "loaded: booted out, then removed");
    }

    #[test]
    fn a_bootstrap_racing_the_last_bootout_is_retried() {
        let (_t, policy) = fixture();
        let launchd = LaunchdStandin::new();
        let mut b = backend(&policy.home, &launchd.tool);
        let plist = b.install(&policy.check(&spec("nova")).unwrap()).unwrap().display().to_string();
        b.start("com.openclaw.nova").unwrap();
        b.stop("com.openclaw.nova").unwrap();
        launchd.tear_down_slowly();
        launchd.clear();
        b.start("com.openclaw.nova").unwrap();
        let bootstrap = format!("bootstrap gui/501 {plist}");
        assert_eq!(launchd.calls(), ["enable gui/501/com.openclaw.nova", "print gui/501/com.openclaw.nova", &bootstrap, &bootstrap]);
        assert_eq!(b.status("com.openclaw.nova").unwrap().state, RunState::Running);
    }

    #[test]
    fn a_job_loaded_from_another_plist_is_not_kickstarted_nor_reported() {
        let (_t, policy) = fixture();
        let launchd = LaunchdStandin::new();
        let mut b = backend(&policy.home, &launchd.tool);
        b.install(&policy.check(&spec("nova")).unwrap()).unwrap();
        // Loaded under the label from a plist anyone could write as the user.
        let other = policy.home.join(".openclaw-nova/evil.plist");
        let out = std::process::Command::new(&launchd.tool).args(["bootstrap", "gui/501"]).arg(&other).output().unwrap();
        assert!(out.status.success());
        std::fs::rename(launchd.dir.path().join("loaded.evil"), launchd.dir.path().join("loaded.com.openclaw.nova")).unwrap();
        launchd.clear();
        for result in [b.start("com.openclaw.nova"), b.status("com.openclaw.nova").map(|_| ())] {
            let named = format!("was loaded from {}, not from the plist this host wrote", other.display());
            assert!(matches!(&result, Err(ServiceError::Denied(m)) if m.contains(&named)), "{result:?}");
        }
        assert!(!launchd.calls().iter().any(|c| c.starts_with("kickstart")), "{:?}", launchd.calls());
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
        let mut b = backend(&policy.home, &recorder.tool);
        b.install(&def).unwrap();
        recorder.answer("print", 113, "");
        recorder.answer("bootstrap", 119, "Bootstrap failed: 119: Service is disabled");
        let err = b.start("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("exit 119: Bootstrap failed")), "{err:?}");
        assert_eq!(recorder.calls().iter().filter(|c| c.starts_with("bootstrap")).count(), 1, "only a teardown is waited out");
        recorder.clear();
        recorder.answer("bootstrap", 5, "Bootstrap failed: 5: Input/output error");
        let err = b.start("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("exit 5: Bootstrap failed")), "{err:?}");
        assert!(recorder.calls().iter().filter(|c| c.starts_with("bootstrap")).count() >= 2, "retried: {:?}", recorder.calls());
    }
}
