//! The `service` capability: typed service control for `com.openclaw.<handle>` labels.
//!
//! The guest passes a label and a port; [`policy`] derives the definition, and the
//! backend (launchd, systemd, or direct processes) renders and writes it. The host acts
//! only on definitions it wrote and can prove it wrote: the file carries [`MARKER`] and
//! its SHA-256 matches the one kept in the host's own state ([`HostState`]); anything
//! else with the same name is foreign, named in a denial, and never touched (not even
//! queried). Every call is checked and audited; installed gateway ports are shared with
//! the HTTP gate.

mod direct;
mod exec;
mod launchd;
mod policy;
mod systemd;

pub use policy::{Definition, Policy};

use crate::audit::{Audit, Decision};
use crate::bindings::{Installed, RunState, ServiceBackend, ServiceError, ServiceSpec, ServiceStatus};
use crate::host_state::{HostState, WrittenDefinition, sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The comment every definition the host writes carries.
pub const MARKER: &str = "Written by agent-provisioner";

/// What the service capability is built from.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub backend: ServiceBackend,
    pub home: PathBuf,
    pub lead_home: PathBuf,
    /// Every handle the lead goes by.
    pub lead_handles: Vec<String>,
    /// The only program services may run.
    pub openclaw_bin: PathBuf,
    pub launchctl: PathBuf,
    pub systemctl: PathBuf,
}

/// One service manager.
trait Backend: Send {
    /// Where the definition of `label` lives, when it is a file the service manager reads
    /// (and so must be proven the host's); `None` when it is the host's own record.
    fn definition_path(&self, label: &str) -> Option<PathBuf>;
    /// Writes the definition; returns where.
    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError>;
    /// Tells the service manager about a definition just written and recorded.
    fn activate(&mut self, _label: &str) -> Result<(), ServiceError> {
        Ok(())
    }
    fn start(&mut self, label: &str) -> Result<(), ServiceError>;
    fn stop(&mut self, label: &str) -> Result<(), ServiceError>;
    fn uninstall(&mut self, label: &str) -> Result<(), ServiceError>;
    fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError>;
    /// Gateway ports of the definitions this host wrote.
    fn installed_ports(&self) -> Vec<u16>;
}

/// Where a backend keeps its service definitions.
pub fn definition_dir(backend: ServiceBackend, home: &Path) -> PathBuf {
    match backend {
        ServiceBackend::Launchd => home.join("Library/LaunchAgents"),
        ServiceBackend::Systemd => home.join(".config/systemd/user"),
        ServiceBackend::Direct => home.join(".local/state/agent-provisioner/services"),
    }
}

/// The backend for this machine: launchd on macOS; systemd when a user bus answers.
pub fn detect(systemctl: &Path) -> anyhow::Result<ServiceBackend> {
    if cfg!(target_os = "macos") {
        return Ok(ServiceBackend::Launchd);
    }
    match exec::run(systemctl, &["--user", "show-environment"]) {
        Ok(out) if out.success => Ok(ServiceBackend::Systemd),
        Ok(out) => anyhow::bail!(
            "no service manager answered (systemctl --user: {}); on a machine without one (a container) pass --service-manager direct",
            out.complaint()
        ),
        Err(e) => anyhow::bail!("no service manager answered ({e}); on a machine without one (a container) pass --service-manager direct"),
    }
}

/// Service control for the guest, checked against the policy on every call.
pub struct ServiceCap {
    kind: ServiceBackend,
    dir: PathBuf,
    policy: Policy,
    backend: Box<dyn Backend>,
    audit: Arc<Audit>,
    state: Arc<HostState>,
    lead_home: PathBuf,
    /// Gateway ports of installed services; shared with the HTTP gate.
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
}

impl ServiceCap {
    pub fn new(config: ServiceConfig, audit: Arc<Audit>, state: Arc<HostState>, gateway_ports: Arc<Mutex<BTreeSet<u16>>>) -> anyhow::Result<Self> {
        let dir = definition_dir(config.backend, &config.home);
        let backend: Box<dyn Backend> = match config.backend {
            ServiceBackend::Launchd => Box::new(launchd::Launchd {
                dir: dir.clone(),
                launchctl: config.launchctl.clone(),
                uid: rustix::process::getuid().as_raw(),
            }),
            ServiceBackend::Systemd => Box::new(systemd::Systemd { dir: dir.clone(), systemctl: config.systemctl.clone() }),
            ServiceBackend::Direct => Box::new(direct::Direct::new(dir.clone())),
        };
        let policy = Policy {
            home: config.home.clone(),
            lead_handles: config.lead_handles.clone(),
            openclaw_bin: config.openclaw_bin.clone(),
            path: std::env::var_os("PATH").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        gateway_ports.lock().expect("ports lock").extend(backend.installed_ports());
        Ok(Self { kind: config.backend, dir, policy, backend, audit, state, lead_home: config.lead_home, gateway_ports })
    }

    /// One line for the startup banner.
    pub fn describe(&self) -> Vec<String> {
        vec![format!(
            "service: {} backend, definitions in {}; labels com.openclaw.<handle> (not reserved, not the lead's), only definitions this host wrote; program {} --profile <handle> gateway run --port N, environment {} pinned by the host",
            self.kind.name(),
            self.dir.display(),
            self.policy.openclaw_bin.display(),
            policy::ENVIRONMENT.join(", ")
        )]
    }

    /// Checks a label and that whatever definition it has is the host's; audits the decision.
    fn label(&self, op: &str, label: &str) -> Result<String, ServiceError> {
        let handle = self.policy.handle_of(label).map_err(|why| self.deny(op, label, why))?;
        self.ours(&handle, label).map_err(|why| self.deny(op, label, why))?;
        self.audit.record("service", op, label, Decision::Allowed, &format!("{} backend", self.kind.name()));
        Ok(handle)
    }

    /// Whether the definition file of `label` (if any) is one the host wrote: a regular
    /// file with the marker whose hash matches the host's record.
    fn ours(&self, handle: &str, label: &str) -> Result<(), String> {
        let Some(path) = self.backend.definition_path(label) else { return Ok(()) };
        let foreign = |why: &str| format!("{} {why}; it is not agent-provisioner's and is left alone", path.display());
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) if !m.is_file() => return Err(foreign("is not a regular file")),
            Ok(m) if m.len() > 1 << 20 => return Err(foreign("is larger than any definition the host writes")),
            Ok(_) => {}
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let recorded = self.state.definition(handle).filter(|d| d.path == path);
        match recorded {
            Some(d) if d.sha256 == sha256(&bytes) && crate::fs_cap::contains(&bytes, MARKER.as_bytes()) => Ok(()),
            Some(_) => Err(foreign("was changed since agent-provisioner wrote it")),
            None => Err(foreign("was not written by agent-provisioner")),
        }
    }

    fn deny(&self, op: &str, label: &str, why: String) -> ServiceError {
        self.audit.record("service", op, label, Decision::Denied, &why);
        ServiceError::Denied(why)
    }

    pub fn install(&mut self, spec: ServiceSpec) -> Result<Installed, ServiceError> {
        let def = self.policy.check(&spec).map_err(|why| self.deny("install", &spec.label, why))?;
        self.ours(&def.handle, &def.label).map_err(|why| self.deny("install", &spec.label, why))?;
        self.audit.record("service", "install", &spec.label, Decision::Allowed, &format!("port {}", def.port));
        create_log_dir(&def).map_err(|e| ServiceError::Failed(format!("creating {}: {e}", def.log_dir.display())))?;
        let path = self.backend.install(&def)?;
        if self.backend.definition_path(&def.label).is_some() {
            let bytes = std::fs::read(&path).map_err(|e| ServiceError::Failed(format!("reading back {}: {e}", path.display())))?;
            let written = WrittenDefinition { path: path.clone(), sha256: sha256(&bytes) };
            self.state
                .record_definition(&def.handle, &self.lead_home, written)
                .map_err(|e| ServiceError::Failed(format!("recording {} in the host's state: {e:#}", path.display())))?;
        }
        self.backend.activate(&def.label)?;
        self.gateway_ports.lock().expect("ports lock").insert(def.port);
        Ok(Installed { backend: self.kind, label: def.label, definition_path: path.display().to_string() })
    }

    pub fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        self.label("start", label)?;
        self.backend.start(label)
    }

    pub fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        self.label("stop", label)?;
        self.backend.stop(label)
    }

    pub fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        let handle = self.label("uninstall", label)?;
        self.backend.uninstall(label)?;
        self.state
            .forget_definition(&handle)
            .map_err(|e| ServiceError::Failed(format!("{label} was removed, but the host's state was not updated: {e:#}")))?;
        remove_log_dir(&self.policy.log_dir(&handle)).map_err(|e| ServiceError::Failed(format!("removing the logs of {label}: {e}")))
    }

    pub fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        self.label("status", label)?;
        self.backend.status(label)
    }
}

fn not_installed(label: &str) -> ServiceError {
    ServiceError::NotInstalled(format!("{label} has no installed definition"))
}

/// A status with nothing but a state and a word.
fn status(state: RunState, detail: &str) -> ServiceStatus {
    ServiceStatus { state, pid: None, last_exit_code: None, uptime_seconds: None, restarts: None, detail: detail.into() }
}

/// Writes a definition file atomically into `dir` (created 0700 if missing).
fn write_definition(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), ServiceError> {
    let fail = |e: std::io::Error| ServiceError::Failed(format!("writing {}: {e}", dir.join(name).display()));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    }
    let handle = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(fail)?;
    crate::atomic::write(&handle, Path::new(name), bytes, mode).map_err(fail)
}

/// Creates the gateway's log directory (0700) in the host's state, never through a
/// symlink: a log path that is a link (planted by anyone) is refused, not followed.
pub fn create_log_dir(def: &Definition) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let parent = def.log_dir.parent().expect("log dirs have parents");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let dir = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
    let name = Path::new(def.log_dir.file_name().expect("log dirs have names"));
    match crate::grants::create_dir_exact(&dir, name, 0o700) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    use cap_fs_ext::DirExt as _;
    let logs = dir.open_dir_nofollow(name)?;
    for file in naming::LOG_FILES {
        if logs.symlink_metadata(file).is_ok_and(|m| !m.is_file()) {
            return Err(std::io::Error::other(format!("{} is not a regular file; not logging into it", def.log_dir.join(file).display())));
        }
    }
    Ok(())
}

/// Removes a gateway's log directory `logs`, never through a symlink.
fn remove_log_dir(logs: &Path) -> std::io::Result<()> {
    let parent = match cap_std::fs::Dir::open_ambient_dir(logs.parent().expect("log dirs have parents"), cap_std::ambient_authority()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let name = logs.file_name().expect("log dirs have names");
    match parent.symlink_metadata(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(m) if m.is_dir() => parent.remove_dir_all(name),
        _ => parent.remove_file(name),
    }
}

/// The files in `dir` whose name `handle_of` maps to a sibling handle: the backend's own.
fn definitions(dir: &Path, handle_of: fn(&str) -> Option<&str>) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(move |p| p.file_name().and_then(|n| n.to_str()).and_then(handle_of).is_some())
}

/// The value after `--port` in an argument list.
fn port_arg(args: &[&str]) -> Option<u16> {
    args.iter().position(|a| *a == "--port").and_then(|i| args.get(i + 1)).and_then(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exec::tests::Recorder;
    use policy::tests::{fixture, spec};

    fn cap(policy: &Policy, backend: ServiceBackend, state: Arc<HostState>, recorder: &Recorder, ports: Arc<Mutex<BTreeSet<u16>>>) -> ServiceCap {
        ServiceCap::new(
            ServiceConfig {
                backend,
                home: policy.home.clone(),
                lead_home: policy.home.join(".openclaw-atlas"),
                lead_handles: policy.lead_handles.clone(),
                openclaw_bin: policy.openclaw_bin.clone(),
                launchctl: recorder.tool.clone(),
                systemctl: recorder.tool.clone(),
            },
            Arc::new(Audit::stderr_only(vec![])),
            state,
            ports,
        )
        .unwrap()
    }

    #[test]
    fn denied_calls_touch_nothing() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let mut services = cap(&policy, ServiceBackend::Direct, Arc::new(HostState::in_memory()), &recorder, Default::default());
        for label in ["com.apple.Finder", "com.openclaw.atlas", "com.openclaw.../x", "com.openclaw.gateway"] {
            assert!(matches!(services.start(label), Err(ServiceError::Denied(_))), "{label}");
            assert!(matches!(services.status(label), Err(ServiceError::Denied(_))), "{label}");
        }
        assert!(!definition_dir(ServiceBackend::Direct, &policy.home).exists());
    }

    #[test]
    fn installs_share_their_port_and_later_runs_see_it() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let ports = Arc::new(Mutex::new(BTreeSet::new()));
        let mut services = cap(&policy, ServiceBackend::Direct, Arc::new(HostState::in_memory()), &recorder, ports.clone());
        let installed = services.install(spec("nova")).unwrap();
        assert!(installed.definition_path.ends_with("com.openclaw.nova.json"));
        assert!(ports.lock().unwrap().contains(&18930));
        assert!(policy.home.join(".local/state/agent-provisioner/logs/nova").is_dir(), "the host made the log directory");
        let fresh = Arc::new(Mutex::new(BTreeSet::new()));
        cap(&policy, ServiceBackend::Direct, Arc::new(HostState::in_memory()), &recorder, fresh.clone());
        assert!(fresh.lock().unwrap().contains(&18930), "a new process learns the port from the record");
    }

    #[test]
    fn foreign_definitions_are_named_and_never_touched() {
        for (backend, file) in [(ServiceBackend::Systemd, "openclaw-sibling-nova.service"), (ServiceBackend::Launchd, "com.openclaw.nova.plist")] {
            let (_t, policy) = fixture();
            let recorder = Recorder::new();
            let dir = definition_dir(backend, &policy.home);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), "# the user's own\n").unwrap();
            let mut services = cap(&policy, backend, Arc::new(HostState::in_memory()), &recorder, Default::default());
            for result in [
                services.install(spec("nova")).map(|_| ()),
                services.start("com.openclaw.nova"),
                services.stop("com.openclaw.nova"),
                services.uninstall("com.openclaw.nova"),
                services.status("com.openclaw.nova").map(|_| ()),
            ] {
                assert!(matches!(&result, Err(ServiceError::Denied(m)) if m.contains(file) && m.contains("not written by agent-provisioner")), "{result:?}");
            }
            assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), "# the user's own\n");
            assert!(recorder.calls().is_empty(), "no service manager call: {:?}", recorder.calls());
        }
    }

    #[test]
    fn a_definition_changed_after_install_is_no_longer_the_hosts() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default());
        let installed = services.install(spec("nova")).unwrap();
        services.start("com.openclaw.nova").unwrap();
        let mut unit = std::fs::read_to_string(&installed.definition_path).unwrap();
        unit.push_str("ExecStartPre=/bin/sh -c evil\n");
        std::fs::write(&installed.definition_path, unit).unwrap();
        recorder.clear();
        let err = services.start("com.openclaw.nova").unwrap_err();
        assert!(matches!(&err, ServiceError::Denied(m) if m.contains("was changed since")), "{err:?}");
        assert!(recorder.calls().is_empty());
    }

    #[test]
    fn uninstall_forgets_the_definition_and_the_logs() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default());
        services.install(spec("nova")).unwrap();
        assert!(state.definition("nova").is_some());
        services.uninstall("com.openclaw.nova").unwrap();
        assert!(state.definition("nova").is_none());
        assert!(!policy.home.join(".local/state/agent-provisioner/logs/nova").exists());
    }

    #[test]
    fn a_planted_log_link_is_refused() {
        let (t, policy) = fixture();
        let recorder = Recorder::new();
        let logs = policy.home.join(".local/state/agent-provisioner/logs/nova");
        std::fs::create_dir_all(&logs).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), logs.join("stdout.log")).unwrap();
        let mut services = cap(&policy, ServiceBackend::Systemd, Arc::new(HostState::in_memory()), &recorder, Default::default());
        let err = services.install(spec("nova")).unwrap_err();
        assert!(matches!(&err, ServiceError::Failed(m) if m.contains("not a regular file")), "{err:?}");
    }

    #[test]
    fn detection_names_the_way_out() {
        let err = detect(Path::new("/nonexistent/systemctl")).unwrap_err().to_string();
        assert!(err.contains("--service-manager direct"), "{err}");
    }
}
