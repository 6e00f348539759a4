//! Whether a restore may run, before anything of it is done: the handle, an interrupted
//! restore (undone first), the registry, the home, the service, the member record and the
//! port (clear of every registered sibling and of the provisions under way or interrupted:
//! their journals).

use super::{RestoreJournal, undo};
use crate::caps::{Caps, Level, RunState, ServiceError};
use crate::journal::Journal;
use crate::layout::LeadLayout;
use crate::member_record;
use crate::port_plan::{self, Claim};
use crate::registry::{Member, Registry};
use crate::task;
use crate::wit::{CommandError, Context, Failure, FieldError, RestoreRequest};

/// A restore that may run.
pub struct Admitted {
    /// The member recorded at deprovision.
    pub member: Member,
    /// The gateway's port: the member's own, or the next free base with `auto-port`.
    pub port: u16,
    pub archive: String,
    pub warnings: Vec<String>,
}

/// Checks everything a restore needs; refusals change nothing, except that what an
/// interrupted restore of the handle left is undone first (and said so).
pub fn admit(caps: &Caps, ctx: &Context, request: &RestoreRequest) -> Result<Admitted, CommandError> {
    let handle = &request.handle;
    task::validate_handle(handle, &ctx.lead_handles)
        .map_err(|message| CommandError::InvalidInput(FieldError { field: "handle".into(), message }))?;
    let mut warnings = undo_interrupted(caps, ctx, handle)?;
    let lead = LeadLayout::new(&ctx.lead_home);
    let registry = Registry::load(caps.files, &lead).map_err(CommandError::Refused)?;
    refuse_existing(caps, ctx, handle, &registry)?;
    let member = member_record::load(caps.files, &request.archive, handle).map_err(CommandError::Refused)?;
    let journals = Journal::others(caps.files, &lead, handle).map_err(CommandError::Refused)?;
    let port = choose_port(caps, request, &port_plan::claims(&registry, &journals), member.port, &mut warnings)?;
    Ok(Admitted { member, port, archive: request.archive.clone(), warnings })
}

/// Undoes what a restore of `handle` that was killed part-way left (its journal says
/// so); returns the warning that tells.
fn undo_interrupted(caps: &Caps, ctx: &Context, handle: &str) -> Result<Vec<String>, CommandError> {
    let lead = LeadLayout::new(&ctx.lead_home);
    let Some(journal) = RestoreJournal::load(caps, &lead, handle).map_err(CommandError::Refused)? else { return Ok(Vec::new()) };
    let at = journal.step.name();
    caps.progress.emit(Level::Warning, &format!("a restore of {handle} was interrupted at {at}; undoing what it did first"));
    let steps = undo(caps, ctx, handle, false);
    if steps.iter().any(|s| !s.ok) {
        let message = format!("a restore of {handle} was interrupted at {at}, and undoing what it did failed");
        return Err(CommandError::Failed(Failure { step: "undo".into(), message, rollback: steps, archive: None }));
    }
    let done: Vec<String> = steps.iter().map(|s| s.detail.clone()).collect();
    let done = if done.is_empty() { "it had changed nothing".to_string() } else { done.join("; ") };
    Ok(vec![format!("a restore of {handle} from {} was interrupted at {at} and is undone first: {done}", journal.archive)])
}

/// Refuses a handle that is registered, whose home exists, or whose service is installed.
fn refuse_existing(caps: &Caps, ctx: &Context, handle: &str, registry: &Registry) -> Result<(), CommandError> {
    if registry.find(handle).is_some() {
        return Err(CommandError::Refused(format!(
            "{handle} is a registered sibling; restore brings back a deprovisioned one (deprovision {handle} first if the archive should replace it)"
        )));
    }
    let home = naming::sibling_home(&ctx.home, handle);
    match caps.files.metadata(&home) {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(CommandError::Refused(format!("{home} exists; a restore never writes over a home (move it aside first)")));
        }
        Err(e) => return Err(CommandError::Refused(e.message())),
    }
    let label = naming::label(handle);
    match caps.services.status(&label) {
        Ok(s) if s.state == RunState::NotInstalled => Ok(()),
        Err(ServiceError::NotInstalled(_)) => Ok(()),
        Ok(_) => Err(CommandError::Refused(format!("{label} is installed; deprovision {handle} first"))),
        Err(e) => Err(CommandError::Refused(e.message())),
    }
}

/// The member's own port when nothing claims it; else, with `auto-port`, the next free
/// base (said in a warning); else a refusal that names the conflicts and `--auto-port`.
fn choose_port(caps: &Caps, request: &RestoreRequest, claims: &[Claim], wanted: u16, warnings: &mut Vec<String>) -> Result<u16, CommandError> {
    let handle = &request.handle;
    let conflicts: Vec<String> = port_plan::conflicts(wanted, handle, claims, caps.ports).iter().map(|c| c.describe(wanted)).collect();
    if conflicts.is_empty() {
        return Ok(wanted);
    }
    let conflicts = conflicts.join("; ");
    if !request.auto_port {
        return Err(CommandError::Refused(format!(
            "{handle}'s gateway port {wanted} cannot be used: {conflicts}. Pass --auto-port to restore {handle} on the next free base port"
        )));
    }
    let start = request.port_range_start;
    let port = port_plan::next_free(start, handle, claims, caps.ports)
        .ok_or_else(|| CommandError::Refused(format!("no free base port from {start} up for {handle} ({conflicts})")))?;
    warnings.push(format!("{handle}'s port {wanted} is taken ({conflicts}); it was restored on {port}, which its openclaw.json now names"));
    Ok(port)
}
