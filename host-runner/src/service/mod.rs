//! The `service` capability: typed service control for `com.openclaw.<handle>` labels.
//!
//! The guest passes a typed spec; [`policy`] checks it, and the backend (launchd,
//! systemd, or direct processes) renders and writes its own definition. Every call is
//! checked and audited; installed gateway ports are shared with the HTTP gate.

mod direct;
mod exec;
mod launchd;
mod policy;
mod systemd;

pub use policy::{Definition, Policy};

use crate::audit::{Audit, Decision};
use crate::bindings::{Installed, RunState, ServiceBackend, ServiceError, ServiceSpec, ServiceStatus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the service capability is built from.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub backend: ServiceBackend,
    pub home: PathBuf,
    pub lead_home: PathBuf,
    /// The only program services may run.
    pub openclaw_bin: PathBuf,
    pub launchctl: PathBuf,
    pub systemctl: PathBuf,
}

/// One service manager.
trait Backend: Send {
    /// Writes the definition; returns where.
    fn install(&mut self, def: &Definition) -> Result<PathBuf, ServiceError>;
    fn start(&mut self, label: &str) -> Result<(), ServiceError>;
    fn stop(&mut self, label: &str) -> Result<(), ServiceError>;
    fn restart(&mut self, label: &str) -> Result<(), ServiceError>;
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
    /// Gateway ports of installed services; shared with the HTTP gate.
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
}

impl ServiceCap {
    pub fn new(config: ServiceConfig, audit: Arc<Audit>, gateway_ports: Arc<Mutex<BTreeSet<u16>>>) -> anyhow::Result<Self> {
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
        let lead_handle = config
            .lead_home
            .strip_prefix(&config.home)
            .ok()
            .and_then(|rel| rel.to_str())
            .and_then(|rel| rel.strip_prefix(".openclaw-"))
            .map(String::from);
        let mut host_env = vec![("HOME".to_string(), config.home.display().to_string())];
        if let Some(path) = std::env::var_os("PATH") {
            host_env.push(("PATH".into(), path.to_string_lossy().into_owned()));
        }
        let policy = Policy { home: config.home.clone(), lead_handle, openclaw_bin: config.openclaw_bin.clone(), host_env };
        gateway_ports.lock().expect("ports lock").extend(backend.installed_ports());
        Ok(Self { kind: config.backend, dir, policy, backend, audit, gateway_ports })
    }

    /// One line for the startup banner.
    pub fn describe(&self) -> Vec<String> {
        vec![format!(
            "service: {} backend, definitions in {}; labels com.openclaw.<handle> (not the lead's); program {} only",
            self.kind.name(),
            self.dir.display(),
            self.policy.openclaw_bin.display()
        )]
    }

    pub fn backend(&self) -> ServiceBackend {
        self.kind
    }

    /// Checks a label and audits the decision.
    fn label(&self, op: &str, label: &str) -> Result<(), ServiceError> {
        match self.policy.handle_of(label) {
            Ok(_) => {
                self.audit.record("service", op, label, Decision::Allowed, &format!("{} backend", self.kind.name()));
                Ok(())
            }
            Err(why) => Err(self.deny(op, label, why)),
        }
    }

    fn deny(&self, op: &str, label: &str, why: String) -> ServiceError {
        self.audit.record("service", op, label, Decision::Denied, &why);
        ServiceError::Denied(why)
    }

    pub fn install(&mut self, spec: ServiceSpec) -> Result<Installed, ServiceError> {
        let def = self.policy.check(&spec).map_err(|why| self.deny("install", &spec.label, why))?;
        self.audit.record("service", "install", &spec.label, Decision::Allowed, &format!("port {}", def.port));
        let path = self.backend.install(&def)?;
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

    pub fn restart(&mut self, label: &str) -> Result<(), ServiceError> {
        self.label("restart", label)?;
        self.backend.restart(label)
    }

    pub fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        self.label("uninstall", label)?;
        self.backend.uninstall(label)
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

/// Writes a file into the service's sibling home, never through a symlink.
fn write_into_home(def: &Definition, name: &str, bytes: &[u8], mode: u32) -> Result<(), ServiceError> {
    use cap_fs_ext::DirExt as _;
    let path = def.working_directory.join(name);
    let fail = |e: std::io::Error| ServiceError::Failed(format!("writing {}: {e}", path.display()));
    let parent = def.working_directory.parent().expect("homes have parents");
    let home = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())
        .and_then(|p| p.open_dir_nofollow(def.working_directory.file_name().expect("homes have names")))
        .map_err(fail)?;
    crate::atomic::write(&home, Path::new(name), bytes, mode).map_err(fail)
}

/// `com.openclaw.*` / `openclaw-*` files in `dir` ending in `suffix`.
fn definitions(dir: &Path, suffix: &str) -> impl Iterator<Item = PathBuf> {
    let suffix = suffix.to_string();
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(move |p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::grants::is_service_name(n) && n.ends_with(&suffix))
    })
}

/// The value after `--port` in an argument list.
fn port_arg(args: &[&str]) -> Option<u16> {
    args.iter().position(|a| *a == "--port").and_then(|i| args.get(i + 1)).and_then(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::tests::{fixture, spec};

    fn cap(policy: &Policy, backend: ServiceBackend, ports: Arc<Mutex<BTreeSet<u16>>>) -> ServiceCap {
        ServiceCap::new(
            ServiceConfig {
                backend,
                home: policy.home.clone(),
                lead_home: policy.home.join(".openclaw-atlas"),
                openclaw_bin: policy.openclaw_bin.clone(),
                launchctl: "/nonexistent/launchctl".into(),
                systemctl: "/nonexistent/systemctl".into(),
            },
            Arc::new(Audit::stderr_only(vec![])),
            ports,
        )
        .unwrap()
    }

    #[test]
    fn denied_calls_touch_nothing() {
        let (_t, policy) = fixture();
        let mut services = cap(&policy, ServiceBackend::Direct, Default::default());
        for label in ["com.apple.Finder", "com.openclaw.atlas", "com.openclaw.../x"] {
            assert!(matches!(services.start(label), Err(ServiceError::Denied(_))), "{label}");
            assert!(matches!(services.status(label), Err(ServiceError::Denied(_))), "{label}");
        }
        let mut evil = spec(&policy, "nova");
        evil.program = "/bin/sh".into();
        assert!(matches!(services.install(evil), Err(ServiceError::Denied(m)) if m.contains("not the configured openclaw")));
        assert!(!definition_dir(ServiceBackend::Direct, &policy.home).exists());
    }

    #[test]
    fn installs_share_their_port_and_later_runs_see_it() {
        let (_t, policy) = fixture();
        let ports = Arc::new(Mutex::new(BTreeSet::new()));
        let mut services = cap(&policy, ServiceBackend::Direct, ports.clone());
        let installed = services.install(spec(&policy, "nova")).unwrap();
        assert!(installed.definition_path.ends_with("com.openclaw.nova.json"));
        assert!(ports.lock().unwrap().contains(&18930));
        let fresh = Arc::new(Mutex::new(BTreeSet::new()));
        cap(&policy, ServiceBackend::Direct, fresh.clone());
        assert!(fresh.lock().unwrap().contains(&18930), "a new process learns the port from the record");
    }

    #[test]
    fn detection_names_the_way_out() {
        let err = detect(Path::new("/nonexistent/systemctl")).unwrap_err().to_string();
        assert!(err.contains("--service-manager direct"), "{err}");
    }
}
