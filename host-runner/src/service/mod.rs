//! The `service` capability: typed service control for `com.openclaw.<handle>` labels.
//! (Stub: built by the service-backends work.)

use crate::audit::Audit;
use crate::bindings::{Installed, ServiceBackend, ServiceError, ServiceSpec, ServiceStatus};
use std::collections::BTreeSet;
use std::path::PathBuf;
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

/// Service control for the guest, checked against the policy on every call.
pub struct ServiceCap {
    config: ServiceConfig,
    audit: Arc<Audit>,
    /// Gateway ports of services installed or known; shared with the HTTP gate.
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
}

fn todo_err(label: &str) -> ServiceError {
    ServiceError::Denied(format!("{label}: the service capability is not built yet"))
}

/// Where a backend keeps its service definitions.
pub fn definition_dir(backend: ServiceBackend, home: &std::path::Path) -> PathBuf {
    match backend {
        ServiceBackend::Launchd => home.join("Library/LaunchAgents"),
        ServiceBackend::Systemd => home.join(".config/systemd/user"),
        ServiceBackend::Direct => home.join(".local/state/agent-provisioner/services"),
    }
}

/// Picks the backend for this machine (stub until the backends land).
pub fn detect(_systemctl: &std::path::Path) -> anyhow::Result<ServiceBackend> {
    anyhow::bail!("no service manager detected; pass --service-manager direct")
}

impl ServiceCap {
    /// One line for the startup banner.
    pub fn describe(&self) -> Vec<String> {
        vec![format!("service: {:?} backend", self.config.backend)]
    }

    pub fn new(config: ServiceConfig, audit: Arc<Audit>, gateway_ports: Arc<Mutex<BTreeSet<u16>>>) -> anyhow::Result<Self> {
        Ok(Self { config, audit, gateway_ports })
    }
    pub fn backend(&self) -> ServiceBackend {
        let _ = (&self.audit, &self.gateway_ports);
        self.config.backend
    }
    pub fn install(&mut self, spec: ServiceSpec) -> Result<Installed, ServiceError> {
        Err(todo_err(&spec.label))
    }
    pub fn start(&mut self, label: &str) -> Result<(), ServiceError> {
        Err(todo_err(label))
    }
    pub fn stop(&mut self, label: &str) -> Result<(), ServiceError> {
        Err(todo_err(label))
    }
    pub fn restart(&mut self, label: &str) -> Result<(), ServiceError> {
        Err(todo_err(label))
    }
    pub fn uninstall(&mut self, label: &str) -> Result<(), ServiceError> {
        Err(todo_err(label))
    }
    pub fn status(&mut self, label: &str) -> Result<ServiceStatus, ServiceError> {
        Err(todo_err(label))
    }
}
