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

impl ServiceCap {
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
