//! The `service` capability: typed service control for `com.openclaw.<handle>` labels.
//!
//! The guest passes a label and a port; [`policy`] derives the definition, and the
//! backend (launchd, systemd, or direct processes) renders and writes it. The host acts
//! only on definitions it wrote and can prove it wrote: the file carries [`MARKER`] and
//! its SHA-256 matches the one kept in the host's own state ([`HostState`]); anything
//! else with the same name is foreign, named in a denial, and never touched (not even
//! queried). Every call is checked and audited.
//!
//! The gateway ports the HTTP gate may reach come from here, by proof: the port of each
//! definition the host wrote (kept in its record with the definition's hash, or in the
//! direct backend's own record) and still can prove, and the port of each service
//! installed in this run. An install on a port that is already listening is refused
//! unless that listener is this label's own definition on the same port (a resume), so a
//! component cannot turn a port some other program serves into a "gateway" port.

mod direct;
pub(crate) mod exec;
mod launchd;
#[cfg(test)]
mod openclaw_launchagent;
mod policy;
pub(crate) mod systemd;

pub use direct::process;
pub use direct::supervisor::{close_inherited_descriptors, main as supervise};
pub use policy::{Definition, Policy};

use crate::caps::access::Access;
use crate::caps::family::Claimed;
use crate::record::audit::{Audit, Decision};
use crate::runtime::bindings::openclaw::provisioner::service;
use crate::runtime::bindings::{Installed, RunState, ServiceBackend, ServiceError, ServiceSpec, ServiceStatus};
use crate::record::state::{HostState, WrittenDefinition, sha256};
use crate::record::program::{ProgramError, RecordedProgram};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The largest service definition (or direct-backend record) the host reads; what it
/// writes is a few KiB.
const MAX_DEFINITION: u64 = 1 << 20;

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
    /// The sibling whose service may be re-pointed to `openclaw_bin`: the one a `start` or
    /// `restart` names when the operator also named a program (`--openclaw-bin`). Every
    /// other start uses the program recorded with the definition.
    pub repoint: Option<String>,
    pub launchctl: PathBuf,
    pub systemctl: PathBuf,
}

/// One service manager.
trait Backend: Send {
    /// `launchd`, `systemd` or `direct`, for the banner and the audit log.
    fn name(&self) -> &'static str;
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
    /// Gateway ports of the definitions in the backend's directory (used for the direct
    /// backend, whose directory is the host's own record).
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
    match systemd::systemctl_user(systemctl, &["show-environment"]) {
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
    repoint: Option<String>,
    /// Gateway ports proven the host's (see the module doc); shared with the HTTP gate.
    gateway_ports: Arc<Mutex<BTreeSet<u16>>>,
    /// What the command may change: a read-only one may only query `status`.
    access: Access,
    /// The sibling the run claimed (`family.claim`), once bound with [`ServiceCap::for_claim`]:
    /// then only its service may be changed.
    claimed: Option<Claimed>,
}

impl ServiceCap {
    pub fn new(config: ServiceConfig, audit: Arc<Audit>, state: Arc<HostState>, gateway_ports: Arc<Mutex<BTreeSet<u16>>>) -> anyhow::Result<Self> {
        let dir = definition_dir(config.backend, &config.home);
        let backend: Box<dyn Backend> = match config.backend {
            ServiceBackend::Launchd => Box::new(launchd::Launchd::new(dir.clone(), config.launchctl.clone(), rustix::process::getuid().as_raw())),
            ServiceBackend::Systemd => Box::new(systemd::Systemd { dir: dir.clone(), systemctl: config.systemctl.clone() }),
            ServiceBackend::Direct => Box::new(direct::Direct::new(dir.clone())),
        };
        let policy = Policy {
            home: config.home.clone(),
            lead_handles: config.lead_handles.clone(),
            openclaw_bin: config.openclaw_bin.clone(),
            path: std::env::var_os("PATH").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let cap = Self {
            kind: config.backend,
            dir,
            policy,
            backend,
            audit,
            state,
            lead_home: config.lead_home,
            repoint: config.repoint,
            gateway_ports,
            access: Access::ReadWrite,
            claimed: None,
        };
        let proven = cap.proven_ports();
        cap.gateway_ports.lock().expect("ports lock").extend(proven);
        Ok(cap)
    }

    /// The capability of a command with `access`: a read-only one may only query `status`.
    pub fn with_access(self, access: Access) -> Self {
        Self { access, ..self }
    }

    /// The capability of a run that changes only the service of the sibling it claimed
    /// (setup always binds it; unit tests of the other rules run without).
    pub fn for_claim(self, claimed: Claimed) -> Self {
        Self { claimed: Some(claimed), ..self }
    }

    /// Refuses a change of another sibling's service than the one the run claimed; checked
    /// last, after the rules of the call itself.
    fn for_claimed(&self, op: &str, label: &str, handle: &str) -> Result<(), ServiceError> {
        let Some(claimed) = &self.claimed else { return Ok(()) };
        match claimed.get() {
            Some(ours) if ours == handle => Ok(()),
            Some(ours) => Err(self.deny(op, label, format!("this run works on {ours}; it changes only that sibling's service"))),
            None => Err(self.deny(op, label, "this run has claimed no sibling (family.claim); it changes only the service of the sibling it works on")),
        }
    }

    /// Refuses a change of the service manager (`op` on `label`) in a read-only command.
    fn may_change(&self, op: &str, label: &str) -> Result<(), ServiceError> {
        self.access.allows(&format!("service {op}")).map_err(|why| self.deny(op, label, why))
    }

    /// The gateway ports of every definition the host wrote and can still prove.
    fn proven_ports(&self) -> Vec<u16> {
        if matches!(self.kind, ServiceBackend::Direct) {
            // The direct backend's records live in the host's own state directory.
            return self.backend.installed_ports();
        }
        self.state.definitions().into_iter().filter_map(|(handle, _)| self.proven_port(&handle)).collect()
    }

    /// The gateway port of the definition of `handle`, when the host wrote it and can
    /// prove it: for a definition file, the host's record of it (path, SHA-256, marker)
    /// must match the file; for the direct backend, its record in the host's state.
    fn proven_port(&self, handle: &str) -> Option<u16> {
        let label = naming::label(handle);
        let Some(path) = self.backend.definition_path(&label) else {
            return direct::read_record(&self.dir.join(format!("{label}.json"))).map(|r| r.definition.port);
        };
        let (recorded, bytes) = self.proven(handle, &path).ok()??;
        recorded.port.or_else(|| rendered_port(&bytes))
    }

    /// Refuses an install on a port that is already listening, unless the listener may be
    /// this label's own gateway: a definition the host wrote for it on the same port (a
    /// provision resumed after its service started).
    fn check_port_free(&self, def: &Definition) -> Result<(), String> {
        if !crate::caps::ports::in_use(def.port) || self.proven_port(&def.handle) == Some(def.port) {
            return Ok(());
        }
        Err(format!(
            "port {} is already listening on 127.0.0.1 and no definition of {} for that port was written by this host; refusing to install a gateway there (its HTTP grant would reach whatever listens)",
            def.port, def.label
        ))
    }

    /// One line for the startup banner.
    pub fn describe(&self) -> Vec<String> {
        vec![format!(
            "service: {} backend, definitions in {}; labels com.openclaw.<handle> (not reserved, not the lead's), only definitions this host wrote; new services run {} --profile <handle> gateway run --port N, started ones the program recorded with them; environment {} pinned by the host",
            self.backend.name(),
            self.dir.display(),
            self.policy.openclaw_bin.display(),
            policy::ENVIRONMENT.join(", ")
        )]
    }

    /// Checks a label and that whatever definition it has is the host's; audits the decision.
    fn label(&self, op: &str, label: &str) -> Result<String, ServiceError> {
        let handle = self.policy.handle_of(label).map_err(|why| self.deny(op, label, why))?;
        self.ours(&handle, label).map_err(|why| self.deny(op, label, why))?;
        self.audit.record("service", op, label, Decision::Allowed, &format!("{} backend", self.backend.name()));
        Ok(handle)
    }

    /// Whether the definition file of `label` (if any) is one the host wrote.
    fn ours(&self, handle: &str, label: &str) -> Result<(), String> {
        match self.backend.definition_path(label) {
            Some(path) => self.proven(handle, &path).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The host's record of the definition file `path` of `handle` and the file's bytes,
    /// when the host can prove it wrote that file: a regular file (read without following
    /// a link or blocking on a FIFO) with the marker, whose hash matches the record.
    /// `Ok(None)` when there is no file; why it is foreign otherwise.
    fn proven(&self, handle: &str, path: &Path) -> Result<Option<(WrittenDefinition, Vec<u8>)>, String> {
        let foreign = |why: &str| format!("{} {why}; it is not agent-provisioner's and is left alone", path.display());
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) if !m.is_file() => return Err(foreign("is not a regular file")),
            Ok(m) if m.len() > MAX_DEFINITION => return Err(foreign("is larger than any definition the host writes")),
            Ok(_) => {}
        }
        let bytes = match crate::sys::safe_open::read_path(path, MAX_DEFINITION) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(foreign(&format!("cannot be read as the host's ({e:#})"))),
        };
        match self.state.definition(handle).filter(|d| d.path == path) {
            Some(d) if d.sha256 == sha256(&bytes) && crate::caps::fs::contains(&bytes, MARKER.as_bytes()) => Ok(Some((d, bytes))),
            Some(_) => Err(foreign("was changed since agent-provisioner wrote it")),
            None => Err(foreign("was not written by agent-provisioner")),
        }
    }

    fn deny(&self, op: &str, label: &str, why: impl ToString) -> ServiceError {
        let why = why.to_string();
        self.audit.record("service", op, label, Decision::Denied, &why);
        ServiceError::Denied(why)
    }

    /// A service runs only in a sibling home the host's record says it made for this lead:
    /// never another OpenClaw profile's home, nor one made by hand.
    fn home_is_ours(&self, def: &Definition) -> Result<(), String> {
        match self.state.sibling(&def.handle, &self.lead_home) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{} is not a sibling home this host created for the lead {} (another OpenClaw profile, or made by hand); no service runs there",
                def.working_directory.display(),
                self.lead_home.display()
            )),
        }
    }

    /// Writes the definition of a checked spec and records it (its hash when it is a file
    /// the service manager reads, and the program it runs) in the host's state.
    fn write(&mut self, def: &Definition) -> Result<PathBuf, ServiceError> {
        let program = RecordedProgram::of(&def.program).map_err(|e| ServiceError::Failed(format!("the program of {}: {e}", def.label)))?;
        create_log_dir(def).map_err(|e| ServiceError::Failed(format!("creating {}: {e}", def.log_dir.display())))?;
        let path = self.backend.install(def)?;
        let recording = |e: anyhow::Error| ServiceError::Failed(format!("recording {} in the host's state: {e:#}", path.display()));
        if self.backend.definition_path(&def.label).is_some() {
            let bytes = crate::sys::safe_open::read_path(&path, MAX_DEFINITION)
                .and_then(|bytes| bytes.ok_or_else(|| anyhow::anyhow!("it is gone")))
                .map_err(|e| ServiceError::Failed(format!("reading back {}: {e:#}", path.display())))?;
            let written = WrittenDefinition { path: path.clone(), sha256: sha256(&bytes), port: Some(def.port) };
            self.state.record_definition(&def.handle, &self.lead_home, written).map_err(recording)?;
        }
        self.state.record_program(&def.handle, &self.lead_home, program).map_err(recording)?;
        Ok(path)
    }

    /// Before a start: the program recorded with the definition must still be the one
    /// recorded. When the operator named a program for this sibling (`repoint`) that
    /// differs, the service is stopped and its definition re-written for it instead.
    pub fn program_ready(&mut self, handle: &str, label: &str) -> Result<(), ServiceError> {
        let recorded = self.state.sibling(handle, &self.lead_home).and_then(|s| s.program);
        if self.repoint.as_deref() == Some(handle) {
            let named = RecordedProgram::of(&self.policy.openclaw_bin).map_err(|e| self.deny("start", label, format!("--openclaw-bin {e}")))?;
            return match recorded == Some(named) {
                true => Ok(()),
                false => self.repoint(handle, label),
            };
        }
        let Some(recorded) = recorded else { return Ok(()) };
        recorded.check().map_err(|e| {
            let fix = match e {
                ProgramError::Changed { .. } => format!("if that is the OpenClaw you want now, accept it with `agent-provisioner start {handle} --openclaw-bin {}`", recorded.path.display()),
                _ => format!("reinstall OpenClaw there, or re-point the service with `agent-provisioner start {handle} --openclaw-bin PATH`"),
            };
            self.deny("start", label, format!("{label} runs the program recorded when it was provisioned, and {e}; {fix}"))
        })
    }

    /// Re-writes the definition of `handle` for the operator's `--openclaw-bin`, on the port
    /// of the definition the host can prove, after stopping the service.
    fn repoint(&mut self, handle: &str, label: &str) -> Result<(), ServiceError> {
        let port = self.proven_port(handle).ok_or_else(|| self.deny("start", label, "no definition this host wrote to re-point"))?;
        let def = self.policy.check(&ServiceSpec { label: label.to_string(), port }).map_err(|why| self.deny("start", label, why))?;
        self.home_is_ours(&def).map_err(|why| self.deny("start", label, why))?;
        self.audit.record("service", "re-point", label, Decision::Allowed, &format!("program {}", def.program.display()));
        self.backend.stop(label)?;
        self.write(&def)?;
        self.backend.activate(label)
    }

    /// Lets the HTTP gate reach the gateway port of a service installed in this run.
    fn grant_port(&self, def: &Definition) {
        if self.gateway_ports.lock().expect("ports lock").insert(def.port) {
            let target = format!("http://127.0.0.1:{}", def.port);
            let rule = format!("GET /healthz on the gateway port of {}, installed in this run", def.label);
            self.audit.record("http", "grant", &target, Decision::Allowed, &rule);
        }
    }
}

/// The WIT `service` interface: every call checked against the policy and audited.
impl service::Host for ServiceCap {
    fn install(&mut self, spec: ServiceSpec) -> Result<Installed, ServiceError> {
        self.may_change("install", &spec.label)?;
        let def = self.policy.check(&spec).map_err(|why| self.deny("install", &spec.label, why))?;
        self.ours(&def.handle, &def.label).map_err(|why| self.deny("install", &spec.label, why))?;
        self.home_is_ours(&def).map_err(|why| self.deny("install", &spec.label, why))?;
        self.check_port_free(&def).map_err(|why| self.deny("install", &spec.label, why))?;
        self.for_claimed("install", &spec.label, &def.handle)?;
        self.audit.record("service", "install", &spec.label, Decision::Allowed, &format!("port {}", def.port));
        let path = self.write(&def)?;
        self.backend.activate(&def.label)?;
        self.grant_port(&def);
        Ok(Installed { backend: self.kind, label: def.label, definition_path: path.display().to_string() })
    }

    fn start(&mut self, label: String) -> Result<(), ServiceError> {
        self.may_change("start", &label)?;
        let handle = self.label("start", &label)?;
        self.program_ready(&handle, &label)?;
        self.for_claimed("start", &label, &handle)?;
        self.backend.start(&label)
    }

    fn stop(&mut self, label: String) -> Result<(), ServiceError> {
        self.may_change("stop", &label)?;
        let handle = self.label("stop", &label)?;
        self.for_claimed("stop", &label, &handle)?;
        self.backend.stop(&label)
    }

    fn uninstall(&mut self, label: String) -> Result<(), ServiceError> {
        self.may_change("uninstall", &label)?;
        let handle = self.label("uninstall", &label)?;
        self.for_claimed("uninstall", &label, &handle)?;
        self.backend.uninstall(&label)?;
        self.state
            .forget_definition(&handle)
            .map_err(|e| ServiceError::Failed(format!("{label} was removed, but the host's state was not updated: {e:#}")))?;
        remove_log_dir(&self.policy.log_dir(&handle)).map_err(|e| ServiceError::Failed(format!("removing the logs of {label}: {e}")))
    }

    fn status(&mut self, label: String) -> Result<ServiceStatus, ServiceError> {
        self.label("status", &label)?;
        self.backend.status(&label)
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
pub(crate) fn write_definition(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), ServiceError> {
    let fail = |e: std::io::Error| ServiceError::Failed(format!("writing {}: {e}", dir.join(name).display()));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    }
    let handle = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(fail)?;
    crate::sys::atomic::write(&handle, Path::new(name), bytes, mode).map_err(fail)
}

/// Creates the gateway's log directory (0700) in the host's state, never through a
/// symlink: a log path that is a link (planted by anyone) is refused, not followed.
pub fn create_log_dir(def: &Definition) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let parent = def.log_dir.parent().expect("log dirs have parents");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let dir = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
    let name = Path::new(def.log_dir.file_name().expect("log dirs have names"));
    match crate::caps::fs::grants::create_dir_exact(&dir, name, 0o700) {
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

/// The port of a definition the host rendered (`... gateway run --port N` in a unit's
/// `ExecStart=` or a plist's `ProgramArguments`), for records written before they kept
/// the port. Only ever applied to bytes proven the host's.
fn rendered_port(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes).ok()?;
    let tokens: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
        .filter(|t| !t.is_empty() && *t != "string" && *t != "/string")
        .collect();
    tokens.windows(4).find(|w| w[..3] == ["gateway", "run", "--port"]).and_then(|w| w[3].parse().ok())
}

/// The value after `--port` in an argument list.
fn port_arg(args: &[&str]) -> Option<u16> {
    args.iter().position(|a| *a == "--port").and_then(|i| args.get(i + 1)).and_then(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exec::tests::Recorder;
    use service::Host as _;
    use policy::tests::{fixture, spec};

    /// A service cap whose host state records the fixture's home `nova` as made for the lead
    /// (and whose recording systemctl loads nova's unit from that home).
    fn cap(policy: &Policy, backend: ServiceBackend, state: Arc<HostState>, recorder: &Recorder, ports: Arc<Mutex<BTreeSet<u16>>>) -> ServiceCap {
        state.claim_home("nova", &policy.home.join(".openclaw-atlas")).unwrap();
        systemd::tests::loads_from_home(recorder, &policy.home, "nova");
        ServiceCap::new(
            ServiceConfig {
                backend,
                home: policy.home.clone(),
                lead_home: policy.home.join(".openclaw-atlas"),
                lead_handles: policy.lead_handles.clone(),
                openclaw_bin: policy.openclaw_bin.clone(),
                repoint: None,
                launchctl: recorder.tool.clone(),
                systemctl: recorder.tool.clone(),
            },
            Arc::new(Audit::stderr_only()),
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
            assert!(matches!(services.start(label.to_string()), Err(ServiceError::Denied(_))), "{label}");
            assert!(matches!(services.status(label.to_string()), Err(ServiceError::Denied(_))), "{label}");
        }
        assert!(!definition_dir(ServiceBackend::Direct, &policy.home).exists());
    }

    #[test]
    fn a_read_only_command_may_only_query_status() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default()).install(spec("nova")).unwrap();
        let unit = definition_dir(ServiceBackend::Systemd, &policy.home).join("openclaw-sibling-nova.service");
        let (written, calls) = (std::fs::read(&unit).unwrap(), recorder.calls().len());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default()).with_access(Access::ReadOnly("list"));
        let label = || "com.openclaw.nova".to_string();
        let denials = [services.install(spec("nova")).err(), services.start(label()).err(), services.stop(label()).err(), services.uninstall(label()).err()];
        for (op, denial) in ["install", "start", "stop", "uninstall"].into_iter().zip(denials) {
            let expected = format!("`list` changes nothing: service {op} is not granted to it");
            assert!(matches!(&denial, Some(ServiceError::Denied(why)) if *why == expected), "{op}: {denial:?}");
        }
        assert_eq!(recorder.calls().len(), calls, "no service manager call: {:?}", &recorder.calls()[calls..]);
        assert_eq!(std::fs::read(&unit).unwrap(), written);
        assert!(state.definition("nova").is_some());
        services.status(label()).unwrap();
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

    /// A spec for `handle` on `port`.
    fn spec_on(handle: &str, port: u16) -> ServiceSpec {
        ServiceSpec { label: format!("com.openclaw.{handle}"), port }
    }

    /// A loopback listener on a free port, held while it lives.
    fn listener() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[test]
    fn an_install_on_a_port_already_listening_is_refused_naming_it() {
        for backend in [ServiceBackend::Direct, ServiceBackend::Systemd, ServiceBackend::Launchd] {
            let (_t, policy) = fixture();
            let recorder = Recorder::new();
            let ports = Arc::new(Mutex::new(BTreeSet::new()));
            let (_held, port) = listener();
            let mut services = cap(&policy, backend, Arc::new(HostState::in_memory()), &recorder, ports.clone());
            let err = services.install(spec_on("nova", port)).unwrap_err();
            assert!(
                matches!(&err, ServiceError::Denied(m) if m.starts_with(&format!("port {port} is already listening on 127.0.0.1")) && m.contains("com.openclaw.nova")),
                "{err:?}"
            );
            assert!(ports.lock().unwrap().is_empty(), "no HTTP grant for it");
            assert!(!definition_dir(backend, &policy.home).exists(), "nothing written");
            assert!(recorder.calls().is_empty());
        }
    }

    #[test]
    fn a_resumed_install_may_find_its_own_gateway_on_the_port() {
        for backend in [ServiceBackend::Direct, ServiceBackend::Systemd, ServiceBackend::Launchd] {
            let (_t, policy) = fixture();
            let recorder = Recorder::new();
            let state = Arc::new(HostState::in_memory());
            let (held, port) = listener();
            drop(held);
            let mut services = cap(&policy, backend, state.clone(), &recorder, Default::default());
            services.install(spec_on("nova", port)).unwrap();
            // Its gateway runs now; the interrupted provision is resumed by a new process.
            let _gateway = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let mut resumed = cap(&policy, backend, state.clone(), &recorder, Default::default());
            resumed.install(spec_on("nova", port)).unwrap();
            std::fs::create_dir_all(policy.home_of("vega")).unwrap();
            state.claim_home("vega", &policy.home.join(".openclaw-atlas")).unwrap();
            let err = resumed.install(spec_on("vega", port)).unwrap_err();
            assert!(matches!(&err, ServiceError::Denied(m) if m.contains("already listening")), "another label may not claim it: {err:?}");
        }
    }

    #[test]
    fn only_definitions_the_host_wrote_and_can_prove_grant_their_port() {
        for backend in [ServiceBackend::Systemd, ServiceBackend::Launchd] {
            let (_t, policy) = fixture();
            let recorder = Recorder::new();
            let state = Arc::new(HostState::in_memory());
            let ports = Arc::new(Mutex::new(BTreeSet::new()));
            let mut services = cap(&policy, backend, state.clone(), &recorder, ports.clone());
            let installed = services.install(spec_on("nova", 18931)).unwrap();
            assert_eq!(state.definition("nova").unwrap().port, Some(18931), "the record keeps the port");
            assert_eq!(*ports.lock().unwrap(), BTreeSet::from([18931]), "installed in this run");

            // A definition in the directory the host did not write grants nothing.
            let dir = definition_dir(backend, &policy.home);
            let foreign = match backend {
                ServiceBackend::Systemd => ("openclaw-sibling-atlas2.service", "ExecStart=\"/x/openclaw\" \"gateway\" \"run\" \"--port\" \"22\"\n"),
                _ => ("com.openclaw.atlas2.plist", "<string>gateway</string><string>run</string><string>--port</string><string>22</string>"),
            };
            std::fs::write(dir.join(foreign.0), foreign.1).unwrap();
            let later = Arc::new(Mutex::new(BTreeSet::new()));
            cap(&policy, backend, state.clone(), &recorder, later.clone());
            assert_eq!(*later.lock().unwrap(), BTreeSet::from([18931]), "a later run: the recorded definition only");

            // Once changed, the host's own definition is no proof either.
            let mut text = std::fs::read_to_string(&installed.definition_path).unwrap();
            text.push('\n');
            std::fs::write(&installed.definition_path, text).unwrap();
            let changed = Arc::new(Mutex::new(BTreeSet::new()));
            cap(&policy, backend, state.clone(), &recorder, changed.clone());
            assert!(changed.lock().unwrap().is_empty(), "{backend:?}: {:?}", changed.lock().unwrap());
        }
    }

    #[test]
    fn records_without_a_port_take_it_from_the_proven_definition() {
        for backend in [ServiceBackend::Systemd, ServiceBackend::Launchd] {
            let (_t, policy) = fixture();
            let recorder = Recorder::new();
            let state = Arc::new(HostState::in_memory());
            cap(&policy, backend, state.clone(), &recorder, Default::default()).install(spec_on("nova", 18932)).unwrap();
            let old = WrittenDefinition { port: None, ..state.definition("nova").unwrap() };
            state.record_definition("nova", &policy.home.join(".openclaw-atlas"), old).unwrap();
            let ports = Arc::new(Mutex::new(BTreeSet::new()));
            cap(&policy, backend, state, &recorder, ports.clone());
            assert_eq!(*ports.lock().unwrap(), BTreeSet::from([18932]), "{backend:?}");
        }
    }

    #[test]
    fn the_rendered_port_is_read_from_units_and_plists() {
        let (_t, policy) = fixture();
        let def = policy.check(&spec_on("nova", 18933)).unwrap();
        assert_eq!(rendered_port(systemd::render_unit(&def).as_bytes()), Some(18933));
        let mut plist = Vec::new();
        launchd::render(&def).to_writer_xml(&mut plist).unwrap();
        assert_eq!(rendered_port(&plist), Some(18933));
        assert_eq!(rendered_port(b"# nothing here"), None);
    }

    #[test]
    fn an_install_grants_its_port_in_the_audit() {
        let (t, policy) = fixture();
        let recorder = Recorder::new();
        let log = t.path().join("audit.jsonl");
        let state = Arc::new(HostState::in_memory());
        state.claim_home("nova", &policy.home.join(".openclaw-atlas")).unwrap();
        let mut services = ServiceCap::new(
            ServiceConfig {
                backend: ServiceBackend::Direct,
                home: policy.home.clone(),
                lead_home: policy.home.join(".openclaw-atlas"),
                lead_handles: policy.lead_handles.clone(),
                openclaw_bin: policy.openclaw_bin.clone(),
                repoint: None,
                launchctl: recorder.tool.clone(),
                systemctl: recorder.tool.clone(),
            },
            Arc::new(Audit::open(&log, false).unwrap()),
            state,
            Default::default(),
        )
        .unwrap();
        services.install(spec_on("nova", 18934)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.lines().any(|l| l.contains("\"http\"") && l.contains("http://127.0.0.1:18934") && l.contains("com.openclaw.nova, installed in this run")),
            "{text}"
        );
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
                services.start("com.openclaw.nova".into()),
                services.stop("com.openclaw.nova".into()),
                services.uninstall("com.openclaw.nova".into()),
                services.status("com.openclaw.nova".into()).map(|_| ()),
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
        services.start("com.openclaw.nova".into()).unwrap();
        let mut unit = std::fs::read_to_string(&installed.definition_path).unwrap();
        unit.push_str("ExecStartPre=/bin/sh -c evil\n");
        std::fs::write(&installed.definition_path, unit).unwrap();
        recorder.clear();
        let err = services.start("com.openclaw.nova".into()).unwrap_err();
        assert!(matches!(&err, ServiceError::Denied(m) if m.contains("was changed since")), "{err:?}");
        assert!(recorder.calls().is_empty());
    }

    #[test]
    fn a_start_runs_the_recorded_program_and_refuses_one_that_vanished_or_changed() {
        let (t, policy) = fixture();
        let recorder = Recorder::new();
        let mut services = cap(&policy, ServiceBackend::Systemd, Arc::new(HostState::in_memory()), &recorder, Default::default());
        services.install(spec("nova")).unwrap();
        services.policy.openclaw_bin = t.path().join("not-there");
        services.start("com.openclaw.nova".into()).expect("the recorded program is used, whatever openclaw resolves to now");

        std::fs::write(&policy.openclaw_bin, "#!/bin/sh\nexec sleep 31\n").unwrap();
        recorder.clear();
        let err = services.start("com.openclaw.nova".into()).unwrap_err();
        let fix = format!("agent-provisioner start nova --openclaw-bin {}", policy.openclaw_bin.display());
        assert!(matches!(&err, ServiceError::Denied(m) if m.contains("changed since it was recorded") && m.contains(&fix)), "{err:?}");
        std::fs::remove_file(&policy.openclaw_bin).unwrap();
        let err = services.start("com.openclaw.nova".into()).unwrap_err();
        assert!(matches!(&err, ServiceError::Denied(m) if m.contains("is gone") && m.contains("--openclaw-bin PATH")), "{err:?}");
        assert!(recorder.calls().is_empty(), "nothing started: {:?}", recorder.calls());
    }

    #[test]
    fn a_named_program_re_points_only_the_sibling_the_command_names() {
        let (t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default());
        let installed = services.install(spec("nova")).unwrap();
        let new_bin = t.path().join("openclaw-2026.10");
        std::fs::write(&new_bin, "#!/bin/sh\nexec sleep 32\n").unwrap();
        std::fs::set_permissions(&new_bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        services.policy.openclaw_bin = new_bin.clone();
        services.start("com.openclaw.nova".into()).unwrap();
        let unit = std::fs::read_to_string(&installed.definition_path).unwrap();
        assert!(unit.contains(&format!("\"{}\" \"--profile\"", policy.openclaw_bin.display())), "not re-pointed unless named: {unit}");

        recorder.clear();
        services.repoint = Some("nova".into());
        std::fs::remove_file(&policy.openclaw_bin).unwrap();
        services.start("com.openclaw.nova".into()).unwrap();
        let unit = std::fs::read_to_string(&installed.definition_path).unwrap();
        assert!(unit.contains(&format!("\"{}\" \"--profile\"", new_bin.display())), "{unit}");
        assert_eq!(state.sibling("nova", &policy.home.join(".openclaw-atlas")).unwrap().program.unwrap().path, new_bin);
        let calls = recorder.calls().join("\n");
        assert!(calls.contains("stop openclaw-sibling-nova.service") && calls.contains("daemon-reload") && calls.ends_with("start openclaw-sibling-nova.service"), "{calls}");
        services.repoint = None;
        services.start("com.openclaw.nova".into()).expect("the re-pointed program is the recorded one now");
    }

    #[test]
    fn uninstall_forgets_the_definition_and_the_logs() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default());
        services.install(spec("nova")).unwrap();
        assert!(state.definition("nova").is_some());
        services.uninstall("com.openclaw.nova".into()).unwrap();
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

    #[test]
    fn a_fifo_planted_as_a_direct_record_is_refused_without_blocking() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let mut services = cap(&policy, ServiceBackend::Direct, Arc::new(HostState::in_memory()), &recorder, Default::default());
        services.install(spec("nova")).unwrap();
        let record = definition_dir(ServiceBackend::Direct, &policy.home).join("com.openclaw.nova.json");
        std::fs::remove_file(&record).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &record, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let started = std::time::Instant::now();
        match services.status("com.openclaw.nova".into()) {
            Err(ServiceError::Failed(why)) => assert!(why.contains("FIFO"), "{why}"),
            other => panic!("expected a failure naming the FIFO, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn no_service_is_installed_in_a_home_the_host_did_not_make_for_this_lead() {
        let (_t, policy) = fixture();
        let recorder = Recorder::new();
        let state = Arc::new(HostState::in_memory());
        let mut services = cap(&policy, ServiceBackend::Systemd, state.clone(), &recorder, Default::default());
        state.release_home("nova").unwrap();
        match services.install(spec("nova")) {
            Err(ServiceError::Denied(why)) => assert!(why.contains("not a sibling home this host created"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert!(recorder.calls().is_empty(), "no systemctl call");
        assert!(!definition_dir(ServiceBackend::Systemd, &policy.home).join("openclaw-sibling-nova.service").exists());
    }
}
