//! Restoring a deprovisioned sibling from its archive: the host checks and unpacks the
//! archive (leaving out code paths, which it copies from the lead again), the gateway
//! port is made free or moved (`auto-port`), the member recorded at deprovision is
//! registered again, the service is installed and started, and once the gateway is
//! healthy Sesame is told the member is online. Any failure after the unpack undoes it all
//! (service, home, registry entry); the archive is never changed. A journal written
//! before each step lets a second `restore` undo what a killed one left.

mod admission;

use crate::archive::archive_and_remove;
use crate::caps::{Caps, Level, RestoredTree, ServiceSpec, TreeStats};
use crate::health::{self, Healthy};
use crate::journal;
use crate::layout::{LeadLayout, SiblingLayout};
use crate::registry::{Member, Registry};
use crate::sesame::{Call, Sesame};
use crate::timestamp;
use crate::wit::{CommandError, Context, Failure, RestoreOutcome, RestoreRequest, RollbackStep};
use admission::Admitted;
use serde::{Deserialize, Serialize};

/// A step of a restore, as its journal names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Unpack,
    Plugins,
    Config,
    Register,
    Service,
    Health,
}

impl Step {
    /// Every step, in order.
    const ALL: [Step; 6] = [Step::Unpack, Step::Plugins, Step::Config, Step::Register, Step::Service, Step::Health];

    fn name(self) -> &'static str {
        match self {
            Step::Unpack => "unpack",
            Step::Plugins => "plugins",
            Step::Config => "config",
            Step::Register => "register",
            Step::Service => "service",
            Step::Health => "health",
        }
    }
}

/// What a restore under way records before each step
/// (`<lead home>/agent-provisioner/journal/<handle>.restore.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreJournal {
    pub handle: String,
    pub archive: String,
    pub port: u16,
    pub started_at: String,
    /// The step under way.
    pub step: Step,
}

impl RestoreJournal {
    /// The journal of an interrupted restore of `handle`, if there is one.
    pub fn load(caps: &Caps, lead: &LeadLayout, handle: &str) -> Result<Option<RestoreJournal>, String> {
        journal::read_json(caps.files, &journal::restore_path(lead, handle))
    }

    /// Records that `step` starts.
    fn at(&mut self, step: Step, caps: &Caps, lead: &LeadLayout) -> Result<(), String> {
        self.step = step;
        let what = format!("the restore journal of {}", self.handle);
        journal::write_json(caps.files, lead, &journal::restore_path(lead, &self.handle), self, &what)
    }
}

/// Restores the sibling `request.handle` from `request.archive`. Refusals change nothing
/// (an archive the host refuses included); a failure after the unpack is undone; a failed
/// report leaves the healthy sibling running and lists what was not reported.
pub fn restore(caps: &Caps, ctx: &Context, request: &RestoreRequest) -> Result<RestoreOutcome, CommandError> {
    let admitted = admission::admit(caps, ctx, request)?;
    let mut run = Run::start(caps, ctx, admitted);
    match run.steps() {
        Ok(healthy) => Ok(run.finish(healthy)),
        Err((step, message)) => Err(run.roll_back(step, message)),
    }
}

/// A restore under way.
struct Run<'a> {
    caps: &'a Caps<'a>,
    ctx: &'a Context,
    a: Admitted,
    lead: LeadLayout,
    layout: SiblingLayout,
    label: String,
    journal: RestoreJournal,
    restored: Option<RestoredTree>,
    plugins: Vec<String>,
}

impl<'a> Run<'a> {
    fn start(caps: &'a Caps<'a>, ctx: &'a Context, a: Admitted) -> Self {
        let handle = a.member.handle.clone();
        let started_at = timestamp::rfc3339(caps.clock.now_unix_ms());
        let journal = RestoreJournal { handle: handle.clone(), archive: a.archive.clone(), port: a.port, started_at, step: Step::Unpack };
        Run {
            caps,
            ctx,
            lead: LeadLayout::new(&ctx.lead_home),
            layout: SiblingLayout::new(&ctx.home, &handle),
            label: naming::label(&handle),
            journal,
            restored: None,
            plugins: Vec::new(),
            a,
        }
    }

    /// Runs every step, journalled first; returns how the gateway came up, or the step
    /// that failed and why.
    fn steps(&mut self) -> Result<Healthy, (Step, String)> {
        let mut healthy = None;
        for step in Step::ALL {
            self.caps.progress.emit(Level::Step, &format!("{}: {}", step.name(), self.words(step)));
            self.journal.at(step, self.caps, &self.lead).map_err(|e| (step, e))?;
            healthy = self.step(step).map_err(|e| (step, e))?.or(healthy);
        }
        Ok(healthy.expect("the health step ran"))
    }

    /// Carries out one step; the health step says how the gateway came up.
    fn step(&mut self, step: Step) -> Result<Option<Healthy>, String> {
        let (caps, handle) = (self.caps, &self.a.member.handle);
        match step {
            Step::Unpack => self.restored = Some(caps.files.restore_archive(&self.a.archive, handle).map_err(|e| e.message())?),
            Step::Plugins => self.plugins = caps.files.copy_lead_plugins(handle).map_err(|e| e.message())?,
            Step::Config => self.gateway_port()?,
            Step::Register => self.register("stopped")?,
            Step::Service => {
                let spec = ServiceSpec { label: self.label.clone(), port: self.a.port };
                caps.services.install(&spec).map_err(|e| format!("installing {}: {}", self.label, e.message()))?;
                caps.services.start(&self.label).map_err(|e| format!("starting {}: {}", self.label, e.message()))?;
            }
            Step::Health => return health::wait_healthy(caps, &self.label, self.a.port, &self.layout, &self.ctx.timing).map(Some),
        }
        Ok(None)
    }

    /// What `step` does, for the progress line.
    fn words(&self, step: Step) -> String {
        let (root, handle) = (&self.layout.root, &self.a.member.handle);
        match step {
            Step::Unpack => format!("the host checks {} and unpacks it into {root}", self.a.archive),
            Step::Plugins => format!("the host copies the lead's plugins and skills into {root}"),
            Step::Config => format!("the gateway port in {} is {}", self.layout.config, self.a.port),
            Step::Register => format!("registering {handle} in the family registry again"),
            Step::Service => format!("installing and starting {}", self.label),
            Step::Health => format!("waiting for the gateway on port {}", self.a.port),
        }
    }

    /// Makes the restored `openclaw.json` name the port the service gets (it differs
    /// with `auto-port`), written through the host's config check.
    fn gateway_port(&self) -> Result<(), String> {
        let path = &self.layout.config;
        let bytes = self.caps.files.read(path).map_err(|e| format!("reading {path}: {}", e.message()))?;
        let mut config: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{path} is not JSON ({e})"))?;
        let gateway = config.get_mut("gateway").and_then(serde_json::Value::as_object_mut).ok_or_else(|| format!("{path} has no gateway"))?;
        if gateway.get("port") == Some(&self.a.port.into()) {
            return Ok(());
        }
        gateway.insert("port".into(), self.a.port.into());
        let mut text = serde_json::to_string_pretty(&config).expect("JSON serializes");
        text.push('\n');
        self.caps.files.write_atomic(path, text.as_bytes(), 0o600).map_err(|e| format!("writing {path}: {}", e.message()))
    }

    /// Registers the recorded member again, on its port and this host's backend.
    fn register(&self, status: &str) -> Result<(), String> {
        let mut registry = Registry::load(self.caps.files, &self.lead)?;
        let backend = self.ctx.service_backend.name().into();
        registry.upsert(Member { port: self.a.port, backend, status: status.into(), ..self.a.member.clone() });
        registry.save(self.caps.files, &self.lead)
    }

    /// Undoes what exists of the restore after `step` failed. An unpack the host refused
    /// wrote nothing: that is a refusal.
    fn roll_back(self, step: Step, message: String) -> CommandError {
        let caps = self.caps;
        if step == Step::Unpack {
            let _ = caps.files.remove_tree(&journal::restore_path(&self.lead, &self.journal.handle));
            return CommandError::Refused(format!("the host did not restore the archive: {message}"));
        }
        caps.progress.emit(Level::Warning, &format!("{} failed: {message}; rolling back", step.name()));
        let rollback = undo(caps, self.ctx, &self.journal.handle, true);
        CommandError::Failed(Failure { step: step.name().into(), message, rollback, archive: None })
    }

    /// Records the member online, removes the journal, and tells Sesame.
    fn finish(self, healthy: Healthy) -> RestoreOutcome {
        let (caps, member) = (self.caps, &self.a.member);
        let mut warnings = self.a.warnings.clone();
        if !healthy.sesame_authenticated {
            warnings.push(format!("the gateway is up, but {} does not show `{}` yet", self.layout.stdout_log, health::SESAME_AUTHENTICATED));
        }
        warnings.extend(self.register("online").err().map(|e| format!("the family registry still says {} is stopped: {e}", member.handle)));
        warnings.extend(caps.files.remove_tree(&journal::restore_path(&self.lead, &member.handle)).err().map(|e| e.message()));
        caps.progress.emit(Level::Step, "report: telling Sesame the member is online");
        let call = Call::SetMemberStatus { family_id: member.family_id.clone(), principal_id: member.principal_id.clone(), status: "online" };
        let unreported = Sesame::for_context(caps, self.ctx).send(&call).err().map(|e| e.to_string()).into_iter().collect();
        let restored = self.restored.expect("the unpack step ran");
        RestoreOutcome {
            handle: member.handle.clone(),
            oc_home: self.layout.root.clone(),
            port: self.a.port,
            label: self.label.clone(),
            archive: self.a.archive.clone(),
            restored: TreeStats { files: restored.files, directories: restored.directories, bytes: restored.bytes },
            left_out: restored.left_out,
            plugins: self.plugins,
            sesame_authenticated: healthy.sesame_authenticated,
            unreported,
            warnings,
        }
    }
}

/// Removes whatever a restore of `handle` made — its service (stopped first), its home,
/// its registry entry — and then its journal; each action is reported. The archive is
/// never touched. While a restore journal exists nothing else makes that handle (a
/// provision of it is refused), so what is found is the restore's. A home an earlier
/// (killed) run restored is archived before it is removed (`made_here` false): the host
/// removes a home only after this run archived or made it.
fn undo(caps: &Caps, ctx: &Context, handle: &str, made_here: bool) -> Vec<RollbackStep> {
    let step = |action: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        RollbackStep { action: action.into(), ok, detail }
    };
    let mut steps = Vec::new();
    let label = naming::label(handle);
    if caps.services.status(&label).is_ok_and(|s| s.state != crate::caps::RunState::NotInstalled) {
        let _ = caps.services.stop(&label);
        let removed = caps.services.uninstall(&label).map(|()| format!("{label} stopped and removed"));
        steps.push(step("remove the service", removed.map_err(|e| format!("{label}: {}", e.message()))));
    }
    let home = naming::sibling_home(&ctx.home, handle);
    if matches!(caps.files.metadata(&home), Ok(Some(_))) {
        let removed = match made_here {
            true => caps.files.remove_tree(&home).map_err(|e| e.message()).map(|()| format!("{home} removed; the archive is as it was")),
            false => archive_and_remove(caps, &ctx.home, handle, &home).map(|a| format!("{home} archived to {} and removed; the archive is as it was", a.path)),
        };
        steps.push(step("remove the home", removed));
    }
    let lead = LeadLayout::new(&ctx.lead_home);
    match Registry::load(caps.files, &lead) {
        Ok(mut registry) => {
            if registry.remove(handle) {
                let saved = registry.save(caps.files, &lead).map(|()| format!("{handle} removed"));
                steps.push(step("remove the registry entry", saved));
            }
        }
        Err(e) => steps.push(step("remove the registry entry", Err(e))),
    }
    if let Err(e) = caps.files.remove_tree(&journal::restore_path(&lead, handle)) {
        steps.push(step("remove the journal", Err(e.message())));
    }
    steps
}

#[cfg(test)]
mod tests;
