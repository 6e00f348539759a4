//! Carrying out a provisioning plan: config, workspace, vault, service, health, report —
//! with a journal written around every step, and on any failure in the first five the
//! spec's complete rollback (`crate::rollback`). An interrupted provision (its process
//! killed) is finished by `provision --resume` or undone by `rollback`.
//!
//! Provisions for one lead run side by side: the family lock is held only for admission
//! with the journal that claims the port, the service install and start, and the registry
//! update — never for the home's files, the vault, the health wait or the reports.

use crate::caps::{Caps, Level};
use crate::family_lock::FamilyLock;
use crate::file_ops::FileOp;
use crate::health::{self, Healthy};
use crate::journal::{Journal, Step};
use crate::layout::LeadLayout;
use crate::plan::{self, Provisioning};
use crate::registry::{self, Member};
use crate::rollback::{self, Done};
use crate::secret::scrub;
use crate::sesame::{self, Sesame, vault_id};
use crate::timestamp;
use crate::wit::{CommandError, Context, Failure, FieldError, ProvisionOutcome, ProvisionRequest, StepTime};

/// Provisions a sibling (or resumes an interrupted provision). Invalid input and
/// refusals change nothing; a failure in steps 1-5 is rolled back completely; a failure
/// to report leaves the healthy sibling running and lists what was not reported.
pub fn provision(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    // Admission and the journal that claims the port, as one step for concurrent runs.
    let family = FamilyLock::take(caps).map_err(CommandError::Refused)?;
    let p = plan::build(caps, ctx, request)?;
    if !p.conflicts.is_empty() {
        return Err(CommandError::InvalidInput(FieldError {
            field: "gatewayPort".into(),
            message: format!("{}; pass --auto-port to use the next free port", p.conflicts.join("; ")),
        }));
    }
    let mut run = Run::start(caps, ctx, &p)?;
    drop(family);
    match run.steps() {
        Ok((steps, healthy)) => Ok(run.finish(steps, healthy)),
        Err(e) => Err(run.roll_back(e)),
    }
}

/// A step that failed: which, and why.
struct StepError {
    step: Step,
    message: String,
}

fn fail(step: Step, message: String) -> StepError {
    StepError { step, message }
}

/// A provision under way.
struct Run<'a> {
    caps: &'a Caps<'a>,
    ctx: &'a Context,
    p: &'a Provisioning,
    lead: LeadLayout,
    sesame: Sesame<'a>,
    journal: Journal,
    done: Done,
}

impl<'a> Run<'a> {
    /// Writes the journal first: a new one, or the resumed provision's.
    fn start(caps: &'a Caps<'a>, ctx: &'a Context, p: &'a Provisioning) -> Result<Self, CommandError> {
        let (journal, done) = match &p.resume_from {
            Some(j) => {
                caps.progress.emit(Level::Step, &format!("resuming the provision of {} from {}", j.handle, j.position()));
                (j.clone(), Done::observe(caps, &ctx.home, &j.handle))
            }
            None => (Journal::start(&p.task, p.port, timestamp::rfc3339(caps.clock.now_unix_ms())), Done::default()),
        };
        let lead = LeadLayout::new(&ctx.lead_home);
        journal.save(caps.files, &lead).map_err(|message| {
            CommandError::Failed(Failure { step: "journal".into(), message, rollback: vec![], archive: None })
        })?;
        Ok(Run { caps, ctx, p, lead, sesame: Sesame::for_context(caps, ctx), journal, done })
    }

    /// Runs every step not done yet (health always: the gateway may have died since).
    fn steps(&mut self) -> Result<(Vec<StepTime>, Healthy), StepError> {
        let mut times = Vec::new();
        let mut healthy = None;
        for step in Step::UNDONE_ON_FAILURE {
            if self.journal.is_done(step) && step != Step::Health {
                continue;
            }
            self.caps.progress.emit(Level::Step, &format!("{step}: {}", self.words(step)));
            let started = self.caps.clock.monotonic_ms();
            self.journal.begin(step, self.caps.files, &self.lead).map_err(|e| fail(step, e))?;
            healthy = self.step(step)?.or(healthy);
            self.journal.finish(step, self.caps.files, &self.lead).map_err(|e| fail(step, e))?;
            times.push(StepTime { step: step.name().into(), millis: self.caps.clock.monotonic_ms() - started });
        }
        Ok((times, healthy.expect("the health step ran")))
    }

    /// Carries out one step; the health step says how the gateway came up.
    fn step(&mut self, step: Step) -> Result<Option<Healthy>, StepError> {
        let (caps, p) = (self.caps, self.p);
        match step {
            Step::Config | Step::Workspace => self.write_files(step)?,
            Step::Vault => self.journal.vault_id = Some(self.create_vault()?),
            Step::Service => {
                let _family = FamilyLock::take(caps).map_err(|e| fail(step, e))?;
                caps.services.install(&p.service).map_err(|e| fail(step, format!("installing {}: {}", p.label, e.message())))?;
                self.done.service_installed = true;
                caps.services.start(&p.label).map_err(|e| fail(step, format!("starting {}: {}", p.label, e.message())))?;
            }
            Step::Health => {
                let healthy = health::wait_healthy(caps, &p.label, p.port, &p.layout, &self.ctx.timing).map_err(|e| fail(step, e))?;
                return Ok(Some(healthy));
            }
            Step::Report => unreachable!("the report follows the steps a failure undoes"),
        }
        Ok(None)
    }

    /// What `step` does, for the progress line.
    fn words(&self, step: Step) -> String {
        let p = self.p;
        match step {
            Step::Config => format!("creating {}", p.layout.root),
            Step::Workspace => format!("writing {}", p.layout.workspace),
            Step::Vault => format!("creating vault {}", p.vault_name),
            Step::Service => format!("installing and starting {}", p.label),
            Step::Health => format!("waiting for the gateway on port {}", p.port),
            Step::Report => "telling Sesame the agent is online".into(),
        }
    }

    /// Writes the files of one step. A new provision creates the home (it must not
    /// appear meanwhile); a resumed one rewrites what may be partial (every write is
    /// atomic, and the host's plugin copy replaces an earlier one).
    fn write_files(&mut self, step: Step) -> Result<(), StepError> {
        let (caps, p) = (self.caps, self.p);
        for op in p.files.iter().filter(|(s, _)| *s == step).map(|(_, op)| op) {
            if matches!(op, FileOp::Dir { path, .. } if *path == p.layout.root) && p.resume_from.is_none() {
                if let Ok(Some(_)) = caps.files.metadata(&p.layout.root) {
                    return Err(fail(step, format!("{} appeared while provisioning; not touching it", p.layout.root)));
                }
                self.done.home_created = true;
            }
            op.apply(caps).map_err(|e| fail(step, format!("{}: {}", op.target(&p.layout.root), e.message())))?;
        }
        Ok(())
    }

    /// Creates the vault and adds its members; returns its id.
    fn create_vault(&self) -> Result<String, StepError> {
        let create = sesame::create_vault(&self.p.task, &self.p.vault_name);
        let data = self.sesame.send(&create).map_err(|e| fail(Step::Vault, e.to_string()))?;
        let id = vault_id(&data).ok_or_else(|| fail(Step::Vault, format!("{}: the answer has no vault id", create.describe())))?;
        for call in sesame::vault_members(&self.p.task, &id) {
            self.sesame.send(&call).map_err(|e| fail(Step::Vault, e.to_string()))?;
        }
        Ok(id)
    }

    /// Undoes what exists of the provision after `e`.
    fn roll_back(self, e: StepError) -> CommandError {
        let message = scrub(&e.message, &self.p.secrets);
        self.caps.progress.emit(Level::Warning, &format!("{} failed: {message}; rolling back", e.step));
        let undo = rollback::Undo { caps: self.caps, ctx: self.ctx, sesame: &self.sesame, secrets: &self.p.secrets };
        let (rollback, archive) = undo.run(&self.journal, &self.done, &message);
        CommandError::Failed(Failure { step: e.step.name().into(), message, rollback, archive })
    }

    /// Registers the healthy sibling, reports it to Sesame and removes the journal.
    fn finish(mut self, steps: Vec<StepTime>, healthy: Healthy) -> ProvisionOutcome {
        let p = self.p;
        let mut warnings = p.warnings.clone();
        if !healthy.sesame_authenticated {
            warnings.push(format!("the gateway is up, but {} does not show `{}` yet", p.layout.stdout_log, health::SESAME_AUTHENTICATED));
        }
        if let Err(e) = self.register() {
            warnings.push(format!("the sibling runs, but the family registry was not updated: {e}"));
        }
        let unreported = self.report(healthy.sesame_authenticated, &mut warnings);
        if let Err(e) = self.journal.remove(self.caps.files, &self.lead) {
            warnings.push(e);
        }
        ProvisionOutcome {
            handle: p.task.handle.clone(),
            oc_home: p.layout.root.clone(),
            port: p.port,
            label: p.label.clone(),
            vault_id: self.journal.vault_id.clone().unwrap_or_default(),
            sesame_authenticated: healthy.sesame_authenticated,
            unreported,
            warnings,
            steps,
        }
    }

    /// Adds the sibling to the registry (under the family lock, re-read first).
    fn register(&self) -> Result<(), String> {
        let (p, t) = (self.p, &self.p.task);
        let member = Member {
            handle: t.handle.clone(),
            principal_id: t.principal_id.clone(),
            family_id: t.family_id.clone(),
            display_name: t.display_name.clone(),
            port: p.port,
            backend: self.ctx.service_backend.name().into(),
            created_at: timestamp::rfc3339(self.caps.clock.now_unix_ms()),
            status: "online".into(),
            task_id: t.task_id.clone(),
            onboarding_channel_id: t.onboarding_channel_id.clone(),
        };
        registry::update(self.caps, &self.lead, |r| r.upsert(member))
    }

    /// Sends the report calls Sesame has not accepted yet (a resumed provision may have
    /// sent some); returns the ones that failed.
    fn report(&mut self, sesame_connected: bool, warnings: &mut Vec<String>) -> Vec<String> {
        let (caps, p) = (self.caps, self.p);
        caps.progress.emit(Level::Step, &format!("{}: {}", Step::Report, self.words(Step::Report)));
        if let Err(e) = self.journal.begin(Step::Report, caps.files, &self.lead) {
            warnings.push(e);
        }
        let mut unreported = Vec::new();
        for call in sesame::report_calls(&p.task, p.port, sesame_connected, &self.ctx.host_name) {
            let key = call.describe();
            if self.journal.reported.contains(&key) {
                continue; // sent before this provision was interrupted
            }
            match self.sesame.send(&call) {
                Ok(_) => {
                    if let Err(e) = self.journal.reported(key, caps.files, &self.lead) {
                        warnings.push(e);
                    }
                }
                Err(e) => unreported.push(scrub(&e.to_string(), &p.secrets)),
            }
        }
        unreported
    }
}

#[cfg(test)]
mod tests;
