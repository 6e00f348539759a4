//! Lifecycle commands for a registered sibling: start, stop, restart, deprovision.
//!
//! Each claims its handle first (refused while another run works on that sibling); the
//! registry is changed under the family lock, re-read first. `start` and `restart` wait
//! for health without the lock, so provisions and other siblings' restarts go on meanwhile.

use crate::archive::{archive_verified, remove_home};
use crate::caps::{Caps, EntryKind, EntryMeta, Level, RunState, ServiceError};
use crate::health;
use crate::layout::{LeadLayout, SiblingLayout, archives_dir};
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
    /// `without_archive`: the operator's `--without-archive` (the home is removed unarchived).
    Deprovision { without_archive: bool },
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Deprovision { .. } => "deprovision",
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
        Action::Deprovision { without_archive } => return deprovision(caps, ctx, &member, without_archive, outcome),
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

/// The registry status of a sibling whose deprovision stopped and removed its service but
/// could not archive its home (kept): a second `deprovision` finishes it.
pub const DEPROVISION_INCOMPLETE: &str = "deprovision-incomplete";

/// Checks first, changing nothing: the home can be archived (the host walks it as the
/// archive will) and the archives directory is a directory. Then: stop; remove the service
/// definition; archive the home, verify the archive, keep the member record beside it (what
/// `restore` registers again), remove the home — or, with the operator's `without_archive`,
/// remove it unarchived; drop the registry entry; tell Sesame the member is `deprovisioned`.
fn deprovision(caps: &Caps, ctx: &Context, member: &Member, without_archive: bool, mut outcome: LifecycleOutcome) -> Result<LifecycleOutcome, CommandError> {
    let (label, home) = (&member.label(), member.home(&ctx.home));
    let present = caps.files.metadata(&home).map_err(|e| CommandError::Refused(format!("{home}: {}; nothing was changed", e.message())))?.is_some();
    if present && !without_archive {
        archivable(caps, ctx, member, &home)?;
    }
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
    if !present {
        outcome.warnings.push(format!("the home {home} was already gone"));
    } else if without_archive {
        caps.progress.emit(Level::Step, &format!("removing {home} without an archive (--without-archive)"));
        remove_home(caps, &home).map_err(|e| failed("remove", e, done.clone()))?;
        outcome.warnings.push(format!("{home} was removed without an archive, as the operator asked (--without-archive): restore cannot bring it back"));
    } else {
        caps.progress.emit(Level::Step, &format!("archiving {home}"));
        let archived = archive_verified(caps, &ctx.home, &member.handle, &home)
            .and_then(|archived| member_record::save(caps.files, &archived.path, member).map(|()| archived))
            .and_then(|archived| remove_home(caps, &home).map(|()| archived))
            .map_err(|why| incomplete(caps, ctx, member, why, done.clone()))?;
        outcome.archived = Some(archived.stats);
        outcome.archive = Some(archived.path);
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

/// The operator's way out of a home that cannot be archived, for messages.
fn way_out(handle: &str) -> String {
    format!(
        "`agent-provisioner deprovision {handle} --without-archive` removes the home without an archive (the operator's decision: its contents are lost and `restore` cannot bring it back)"
    )
}

/// Refuses, with nothing changed, a deprovision whose archive step could not succeed.
fn archivable(caps: &Caps, ctx: &Context, member: &Member, home: &str) -> Result<(), CommandError> {
    let (handle, label) = (&member.handle, member.label());
    let refuse = |why: String| {
        CommandError::Refused(format!(
            "{why}; nothing was changed ({label} is as it was, {handle} stays registered). Make the home fit and run deprovision again, or: {}",
            way_out(handle)
        ))
    };
    let archives = archives_dir(&ctx.home);
    match caps.files.metadata(&archives) {
        Ok(None) | Ok(Some(EntryMeta { kind: EntryKind::Directory, .. })) => {}
        Ok(Some(_)) => return Err(refuse(format!("{archives} is not a directory, so no archive can be written there"))),
        Err(e) => return Err(refuse(format!("{archives}: {}", e.message()))),
    }
    caps.progress.emit(Level::Step, &format!("checking that {home} can be archived"));
    caps.files.check_archivable(home).map(|_| ()).map_err(|e| refuse(format!("{home} cannot be archived: {}", e.message())))
}

/// The archive step failed after the service was stopped and removed: the home is kept
/// and the member stays registered, marked [`DEPROVISION_INCOMPLETE`]; the message says how
/// to finish.
fn incomplete(caps: &Caps, ctx: &Context, member: &Member, why: String, mut done: Vec<RollbackStep>) -> CommandError {
    let handle = &member.handle;
    let marked = registry::update(caps, &LeadLayout::new(&ctx.lead_home), |r| {
        r.upsert(Member { status: DEPROVISION_INCOMPLETE.into(), ..member.clone() });
    });
    done.push(RollbackStep {
        action: "keep the home, mark the member".into(),
        ok: marked.is_ok(),
        detail: match marked {
            Ok(()) => format!("{} kept; {handle} registered as {DEPROVISION_INCOMPLETE}", member.home(&ctx.home)),
            Err(e) => format!("{} kept; the registry could not be updated: {e}", member.home(&ctx.home)),
        },
    });
    let message = format!(
        "{why}. The service {} was stopped and removed, the home was kept and {handle} stays registered ({DEPROVISION_INCOMPLETE}). To finish: `agent-provisioner deprovision {handle}` once the home can be archived, or {}",
        member.label(),
        way_out(handle)
    );
    failed("archive", message, done)
}

#[cfg(test)]
mod tests;
