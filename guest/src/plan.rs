//! The provisioning plan: every file, service action and Sesame call of a provision,
//! decided before anything is touched. `plan` shows it ([`Provisioning::to_record`]);
//! `provision` carries it out, so the plan lists exactly what a real run does.
//!
//! Each job has its module: `admission` (may this provision run, on which port),
//! `config_files`, `workspace_files`, `service`, and `record` (the WIT record).

mod admission;
mod config_files;
mod record;
mod service;
mod workspace_files;

use crate::caps::{Caps, Clock, ServiceSpec};
use crate::file_ops::FileOp;
use crate::journal::{Journal, Step};
use crate::layout::{LeadLayout, SiblingLayout};
use crate::lead;
use crate::secret::Secret;
use crate::task::Task;
use crate::wit::{CommandError, Context, PhaseTime, ProvisionRequest};

/// Everything a provision does, decided up front.
pub struct Provisioning {
    pub task: Task,
    pub layout: SiblingLayout,
    pub port: u16,
    pub label: String,
    /// The file effects of the config and workspace steps, in order.
    pub files: Vec<(Step, FileOp)>,
    pub service: ServiceSpec,
    pub vault_name: String,
    /// Conflicts of the task's own port (with `auto-port`, the port was moved off them).
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
    /// Every secret the provision handles, for scrubbing messages.
    pub secrets: Vec<Secret>,
    /// The journal of the interrupted provision this one resumes.
    pub resume_from: Option<Journal>,
    /// How long each planning phase took.
    pub timings: Vec<PhaseTime>,
}

/// Builds the plan: admits the task, reads the lead's context, and decides the files and
/// the service.
pub fn build(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<Provisioning, CommandError> {
    let mut timer = PhaseTimer::new(caps.clock);
    let admitted = admission::admit(caps, ctx, request)?;
    timer.lap("validate");
    let lead = lead::read(caps.files, &LeadLayout::new(&ctx.lead_home));
    timer.lap("lead context");
    let (task, port) = (admitted.task, admitted.port);
    let layout = SiblingLayout::new(&ctx.home, &task.handle);
    let config = config_files::plan(caps, ctx, &task, &layout, port)?;
    timer.lap("config");
    let vault_name = format!("{}-main", task.handle);
    let facts = workspace_files::Facts { port, vault_name: &vault_name, registry: &admitted.registry };
    let workspace = workspace_files::plan(ctx, &task, &lead, &layout, &facts)?;
    timer.lap("render");
    let tagged = |step: Step, ops: Vec<FileOp>| ops.into_iter().map(move |op| (step, op));
    let mut warnings = admitted.warnings;
    warnings.extend(lead.warnings.iter().cloned());
    warnings.extend(config.warnings);
    Ok(Provisioning {
        files: tagged(Step::Config, config.files).chain(tagged(Step::Workspace, workspace)).collect(),
        service: service::spec(&admitted.label, port),
        timings: timer.finish(),
        conflicts: admitted.conflicts,
        label: admitted.label,
        resume_from: admitted.resume_from,
        secrets: config.secrets,
        task,
        layout,
        port,
        vault_name,
        warnings,
    })
}

/// Measures consecutive phases on the monotonic clock.
struct PhaseTimer<'a> {
    clock: &'a dyn Clock,
    started: u64,
    last: u64,
    phases: Vec<PhaseTime>,
}

impl<'a> PhaseTimer<'a> {
    fn new(clock: &'a dyn Clock) -> Self {
        let now = clock.monotonic_us();
        Self { clock, started: now, last: now, phases: Vec::new() }
    }

    /// Ends the phase `name` now.
    fn lap(&mut self, name: &str) {
        let now = self.clock.monotonic_us();
        self.phases.push(PhaseTime { phase: name.into(), micros: now - self.last });
        self.last = now;
    }

    /// The phases, plus the whole as `plan`.
    fn finish(mut self) -> Vec<PhaseTime> {
        let total = self.clock.monotonic_us() - self.started;
        self.phases.push(PhaseTime { phase: "plan".into(), micros: total });
        self.phases
    }
}

#[cfg(test)]
mod tests;
