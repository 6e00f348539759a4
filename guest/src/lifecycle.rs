//! Lifecycle commands for a registered sibling: start, stop, restart, deprovision.
//!
//! Each claims its handle first (refused while another run works on that sibling); the
//! registry is changed under the family lock, re-read first. `start` and `restart` wait
//! for health without the lock, so provisions and other siblings' restarts go on meanwhile.

use crate::archive::{archive_verified, remove_home};
use crate::caps::{Caps, Level, RunState, ServiceError};
use crate::health;
use crate::layout::{LeadLayout, SiblingLayout};
use crate::member_record;
use crate::registry::{self, Member, Registry};
use crate::sesame::{Call, Sesame};
use crate::task;
use crate::wit::{CommandError, Context, Failure, FieldError, LifecycleOutcome, RollbackStep};

/// How long a stopped gateway may take to release its port.
const PORT_CLOSE_TIMEOUT_MS: u64 = 15_000;
const PORT_POLL_MS: u64 = 250;

/// A lifecycle action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Deprovision,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Deprovision => "deprovision",
        }
    }
}

/// Finds `handle` in the registry, refusing the lead, unknown handles, a corrupt registry,
/// and a sibling another run works on (this run claims it).
fn registered(caps: &Caps, ctx: &Context, handle: &str) -> Result<Member, CommandError> {
    task::validate_handle(handle, &[])
        .map_err(|message| CommandError::InvalidInput(FieldError { field: "handle".into(), message }))?;
    if ctx.lead_handles.iter().any(|h| h == handle) {
        return Err(CommandError::Refused(format!("{handle} is the lead itself, not a sibling")));
    }
    let registry = Registry::load(caps.files, &LeadLayout::new(&ctx.lead_home)).map_err(CommandError::Refused)?;
    let member = registry.find(handle).cloned().ok_or_else(|| {
        CommandError::Refused(format!("{handle} is not a registered sibling (see `agent-provisioner list`)"))
    })?;
    caps.family.claim(handle).map_err(|why| CommandError::Refused(format!("{why}; wait for it to end")))?;
    Ok(member)
}

/// Runs `action` on the registered sibling `handle`.
pub fn run(caps: &Caps, ctx: &Context, action: Action, handle: &str) -> Result<LifecycleOutcome, CommandError> {
    let member = registered(caps, ctx, handle)?;
    let label = &member.label();
    let mut outcome = LifecycleOutcome {
        handle: handle.into(),
        label: label.into(),
        action: action.name().into(),
        state: RunState::Stopped,
        pid: None,
        archive: None,
        archived: None,
        unreported: vec![],
        warnings: vec![],
    };
    match action {
        Action::Stop => stop(caps, &member, "stop")?,
        Action::Start => start(caps, ctx, &member, action)?,
        Action::Restart => {
            caps.progress.emit(Level::Step, &format!("stopping {label}"));
            stop(caps, &member, "restart")?;
            start(caps, ctx, &member, action)?;
        }
        Action::Deprovision => return deprovision(caps, ctx, &member, outcome),
    }
    let status = caps.services.status(label).map_err(|e| failed("status", e.message(), vec![]))?;
    outcome.state = status.state;
    outcome.pid = status.pid;
    let word = match status.state {
        RunState::Running => "online",
        RunState::Failed => "error",
        RunState::Stopped | RunState::NotInstalled => "stopped",
    };
    if let Err(e) = set_status(caps, ctx, handle, word) {
        outcome.warnings.push(e);
    }
    Ok(outcome)
}

/// The failure of `step`, with what was undone.
fn failed(step: &str, message: String, rollback: Vec<RollbackStep>) -> CommandError {
    CommandError::Failed(Failure { step: step.into(), message, rollback, archive: None })
}

/// Stops `member`'s service and waits until its port is free (`step` names a failure).
fn stop(caps: &Caps, member: &Member, step: &str) -> Result<(), CommandError> {
    let label = &member.label();
    caps.services.stop(label).map_err(|e| failed(step, format!("{label}: {}", e.message()), vec![]))?;
    wait_port_closed(caps, member.port).map_err(|m| failed(step, m, vec![]))
}

/// Starts `member`'s service and waits until its gateway is healthy; stops it again
/// when it does not come up, so it is never left crash-looping.
fn start(caps: &Caps, ctx: &Context, member: &Member, action: Action) -> Result<(), CommandError> {
    let label = &member.label();
    caps.progress.emit(Level::Step, &format!("starting {label}"));
    caps.services.start(label).map_err(|e| failed(action.name(), format!("{label}: {}", e.message()), vec![]))?;
    let layout = SiblingLayout::new(&ctx.home, &member.handle);
    let Err(why) = health::wait_healthy(caps, label, member.port, &layout, &ctx.timing) else { return Ok(()) };
    let stopped = caps.services.stop(label);
    let step = RollbackStep {
        action: "stop the service".into(),
        ok: stopped.is_ok(),
        detail: stopped.map(|_| format!("{label} stopped")).unwrap_or_else(|e| e.message()),
    };
    Err(failed("health", why, vec![step]))
}

/// Waits until nothing listens on `port` any more.
fn wait_port_closed(caps: &Caps, port: u16) -> Result<(), String> {
    let started = caps.clock.monotonic_ms();
    while caps.ports.in_use(port) {
        if caps.clock.monotonic_ms() - started >= PORT_CLOSE_TIMEOUT_MS {
            return Err(format!("port {port} is still in use {} s after the stop", PORT_CLOSE_TIMEOUT_MS / 1000));
        }
        caps.clock.sleep_ms(PORT_POLL_MS);
    }
    Ok(())
}

/// Records `status` in `handle`'s registry entry, if it still has one.
fn set_status(caps: &Caps, ctx: &Context, handle: &str, status: &str) -> Result<(), String> {
    registry::update(caps, &LeadLayout::new(&ctx.lead_home), |r| {
        if let Some(member) = r.find(handle).cloned() {
            r.upsert(Member { status: status.into(), ..member });
        }
    })
}

/// Stop; remove the service definition; archive the home, verify the archive, keep the
/// member record beside it (what `restore` registers again), remove the home; drop the
/// registry entry; tell Sesame the member is `deprovisioned`.
fn deprovision(caps: &Caps, ctx: &Context, member: &Member, mut outcome: LifecycleOutcome) -> Result<LifecycleOutcome, CommandError> {
    let label = &member.label();
    let home = member.home(&ctx.home);
    let mut done = Vec::new();
    caps.progress.emit(Level::Step, &format!("stopping and removing {label}"));
    match caps.services.stop(label) {
        Ok(()) | Err(ServiceError::NotInstalled(_)) => {}
        Err(e) => return Err(failed("stop", format!("{label}: {}", e.message()), done)),
    }
    match caps.services.uninstall(label) {
        Ok(()) => done.push(RollbackStep { action: "remove the service".into(), ok: true, detail: format!("{label} removed") }),
        Err(ServiceError::NotInstalled(_)) => outcome.warnings.push(format!("{label} was not installed")),
        Err(e) => return Err(failed("service", format!("{label}: {}", e.message()), done)),
    }
    match caps.files.metadata(&home) {
        Ok(Some(_)) => {
            caps.progress.emit(Level::Step, &format!("archiving {home}"));
            let archived = archive_verified(caps, &ctx.home, &member.handle, &home)
                .and_then(|archived| member_record::save(caps.files, &archived.path, member).map(|()| archived))
                .and_then(|archived| remove_home(caps, &home).map(|()| archived))
                .map_err(|e| failed("archive", e, done.clone()))?;
            outcome.archived = Some(archived.stats);
            outcome.archive = Some(archived.path);
        }
        Ok(None) => outcome.warnings.push(format!("the home {home} was already gone")),
        Err(e) => return Err(failed("archive", e.message(), done)),
    }
    registry::update(caps, &LeadLayout::new(&ctx.lead_home), |r| {
        r.remove(&member.handle);
    })
    .map_err(|e| failed("registry", e, done.clone()))?;
    let sesame = Sesame::for_context(caps, ctx);
    let call = Call::SetMemberStatus {
        family_id: member.family_id.clone(),
        principal_id: member.principal_id.clone(),
        status: "deprovisioned",
    };
    if let Err(e) = sesame.send(&call) {
        outcome.unreported.push(e.to_string());
    }
    outcome.state = RunState::NotInstalled;
    Ok(outcome)
}

#[cfg(test)]
mod tests;
