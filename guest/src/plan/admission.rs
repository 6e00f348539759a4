//! Admission: whether a provision of this task may run at all, before anything is
//! touched — the task's fields, another run working on the handle, an interrupted
//! provision's (or restore's) journal, the registry, an existing service, and the port
//! (clear of every registered sibling and every other provision's journal). A provision
//! runs it under the family lock and writes its own journal before releasing it: the
//! journal is its claim.

use crate::caps::{Caps, RunState, ServiceError};
use crate::journal::{self, Journal};
use crate::layout::LeadLayout;
use crate::port_plan::{self, Claim};
use crate::registry::Registry;
use crate::task::{self, Task, TaskEnv};
use crate::wit::{CommandError, Context, FieldError, ProvisionRequest};

/// A task admitted for provisioning.
pub struct Admitted {
    pub task: Task,
    /// The journal of the interrupted provision this one resumes.
    pub resume_from: Option<Journal>,
    pub registry: Registry,
    /// The ports claimed by the registered siblings and by other provisions' journals.
    pub claims: Vec<Claim>,
    pub label: String,
    /// The port the gateway gets: the task's, the journal's, or the next free one.
    pub port: u16,
    /// Conflicts of the task's port that a provision refuses (none with `auto-port`).
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
}

/// Validates the task and checks the journal, the registry, the service and the port.
/// Port conflicts without `auto-port` are kept in `conflicts` for the caller to judge
/// (a plan shows them, a provision refuses).
pub fn admit(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<Admitted, CommandError> {
    let lead = LeadLayout::new(&ctx.lead_home);
    let (task, resume_from) = task_and_journal(caps, ctx, request, &lead)?;
    let registry = Registry::load(caps.files, &lead).map_err(CommandError::Refused)?;
    let resuming = resume_from.is_some();
    if registry.find(&task.handle).is_some() && !resuming {
        return Err(CommandError::Refused(format!(
            "{} is already a registered sibling; deprovision it first (`agent-provisioner deprovision {}`)",
            task.handle, task.handle
        )));
    }
    let label = naming::label(&task.handle);
    match caps.services.status(&label) {
        // The host names a definition it did not write (the user's own, OpenClaw's).
        Err(ServiceError::Denied(why)) => return Err(CommandError::Refused(why)),
        Ok(s) if s.state != RunState::NotInstalled && !resuming => {
            return Err(CommandError::Refused(format!("{label} is already installed; deprovision {} first", task.handle)));
        }
        _ => {}
    }
    let journals = Journal::others(caps.files, &lead, &task.handle).map_err(CommandError::Refused)?;
    let claims = port_plan::claims(&registry, &journals);
    let mut admitted = Admitted { task, resume_from, registry, claims, label, port: 0, conflicts: Vec::new(), warnings: Vec::new() };
    choose_port(caps, request, &mut admitted)?;
    Ok(admitted)
}

/// Parses the task, claims its handle (refused while another run works on it) and loads
/// the handle's journal, which then belongs to an interrupted provision: it refuses a new
/// provision; `resume` needs one, for the same principal. Everything but the "no home
/// yet" check comes first: an interrupted provision's home exists.
fn task_and_journal(
    caps: &Caps,
    ctx: &Context,
    request: &ProvisionRequest,
    lead: &LeadLayout,
) -> Result<(Task, Option<Journal>), CommandError> {
    let env = |resuming| TaskEnv { home: &ctx.home, lead_home: &ctx.lead_home, lead_handles: &ctx.lead_handles, resuming };
    let task = task::parse(&request.task_json, &env(true), caps.files).map_err(CommandError::InvalidInput)?;
    caps.family.claim(&task.handle).map_err(|why| CommandError::Refused(format!("{why}; wait for it to end")))?;
    let restore_journal = journal::restore_path(lead, &task.handle);
    if let Ok(Some(_)) = caps.files.metadata(&restore_journal) {
        return Err(CommandError::Refused(format!(
            "a restore of {h} was interrupted (journal {restore_journal}); run `agent-provisioner restore {h}` again, which undoes it first",
            h = task.handle
        )));
    }
    let journal = Journal::load(caps.files, lead, &task.handle).map_err(CommandError::Refused)?;
    if journal.is_none() && !request.resume {
        task::parse(&request.task_json, &env(false), caps.files).map_err(CommandError::InvalidInput)?;
    }
    let h = &task.handle;
    match (journal, request.resume) {
        (Some(j), false) => Err(CommandError::Refused(format!(
            "a provision of {h} was interrupted at {} (journal {}); finish it with \
             `agent-provisioner provision --resume --task FILE` or undo it with `agent-provisioner rollback {h}`",
            j.position(),
            journal::path(lead, h),
        ))),
        (None, true) => Err(CommandError::Refused(format!("there is no interrupted provision of {h} to resume"))),
        (Some(j), true) if j.principal_id != task.principal_id => Err(CommandError::Refused(format!(
            "the interrupted provision of {h} was for principal {}, not {}",
            j.principal_id, task.principal_id
        ))),
        (journal, _) => Ok((task, journal)),
    }
}

/// The gateway's port. A resumed provision keeps the port it was given (its own gateway
/// may hold it); with `auto-port`, a taken port moves to the next free base.
fn choose_port(caps: &Caps, request: &ProvisionRequest, a: &mut Admitted) -> Result<(), CommandError> {
    let wanted = a.task.gateway_port;
    if let Some(j) = &a.resume_from {
        a.port = j.port;
        return Ok(());
    }
    let conflicts: Vec<String> =
        port_plan::conflicts(wanted, &a.task.handle, &a.claims, caps.ports).iter().map(|c| c.describe(wanted)).collect();
    a.port = wanted;
    if conflicts.is_empty() {
        return Ok(());
    }
    if !request.auto_port {
        a.conflicts = conflicts;
        return Ok(());
    }
    let start = request.port_range_start;
    a.port = port_plan::next_free(start, &a.task.handle, &a.claims, caps.ports).ok_or_else(|| {
        CommandError::InvalidInput(FieldError {
            field: "gatewayPort".into(),
            message: format!("no free base port from {start} up ({})", conflicts.join("; ")),
        })
    })?;
    a.warnings.push(format!("gatewayPort {wanted} is taken ({}); using {}", conflicts.join("; "), a.port));
    Ok(())
}
