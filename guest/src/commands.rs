//! The exported commands over [`Caps`], one function per export of the `commands`
//! interface: each hands its request to the module that does the work.

use crate::caps::Caps;
use crate::lifecycle::{self, Action};
use crate::wit::{
    AdoptOutcome, AdoptRequest, AdoptionPlan, CommandError, Context, DeprovisionRequest, FamilyMember, HealthReport, HealthRequest, LifecycleOutcome, PortReport, ProvisionOutcome, ProvisionPlan,
    ProvisionRequest, RestoreOutcome, RestoreRequest, RollbackOutcome,
};
use crate::{family, plan};

/// Validates the task and returns the plan; changes nothing.
pub fn plan(caps: Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionPlan, CommandError> {
    Ok(plan::build(&caps, ctx, request)?.to_record(ctx))
}

/// Provisions a sibling, or rolls back completely.
pub fn provision(caps: Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    crate::provision::provision(&caps, ctx, request)
}

/// Undoes an interrupted provision from its journal.
pub fn rollback(caps: Caps, ctx: &Context, handle: &str) -> Result<RollbackOutcome, CommandError> {
    crate::rollback::rollback_interrupted(&caps, ctx, handle)
}

/// Starts a registered sibling and waits until it is healthy.
pub fn start(caps: Caps, ctx: &Context, handle: &str) -> Result<LifecycleOutcome, CommandError> {
    lifecycle::run(&caps, ctx, Action::Start, handle)
}

/// Stops a registered sibling and waits until its port is free.
pub fn stop(caps: Caps, ctx: &Context, handle: &str) -> Result<LifecycleOutcome, CommandError> {
    lifecycle::run(&caps, ctx, Action::Stop, handle)
}

/// Stops and starts a registered sibling.
pub fn restart(caps: Caps, ctx: &Context, handle: &str) -> Result<LifecycleOutcome, CommandError> {
    lifecycle::run(&caps, ctx, Action::Restart, handle)
}

/// Removes a registered sibling: service, home (archived, unless the operator said
/// otherwise), registry entry.
pub fn deprovision(caps: Caps, ctx: &Context, request: &DeprovisionRequest) -> Result<LifecycleOutcome, CommandError> {
    lifecycle::run(&caps, ctx, Action::Deprovision { without_archive: request.without_archive }, &request.handle)
}

/// Brings a deprovisioned sibling back from its archive, or rolls back completely.
pub fn restore(caps: Caps, ctx: &Context, request: &RestoreRequest) -> Result<RestoreOutcome, CommandError> {
    crate::restore::restore(&caps, ctx, request)
}

/// What adopting each candidate (or the one named) would change; changes nothing.
pub fn adopt_plan(caps: Caps, ctx: &Context, request: &AdoptRequest) -> Result<Vec<AdoptionPlan>, CommandError> {
    crate::adopt::plans(&caps, ctx, request)
}

/// Adopts a sibling the original skill made, or has the host put everything back.
pub fn adopt(caps: Caps, ctx: &Context, request: &AdoptRequest) -> Result<AdoptOutcome, CommandError> {
    crate::adopt::adopt(&caps, ctx, request)
}

/// Checks every registered sibling.
pub fn health(caps: Caps, ctx: &Context, request: &HealthRequest) -> Result<HealthReport, CommandError> {
    family::health(&caps, ctx, request)
}

/// The registry, checked against the disk.
pub fn members(caps: Caps, ctx: &Context) -> Result<Vec<FamilyMember>, CommandError> {
    family::members(&caps, ctx)
}

/// The ports the siblings claim.
pub fn ports(caps: Caps, ctx: &Context, range_start: u16) -> Result<PortReport, CommandError> {
    family::ports(&caps, ctx, range_start)
}
