//! The exported commands, over [`Caps`].

pub use crate::bindings::exports::openclaw::provisioner::commands::*;
use crate::caps::Caps;
use crate::lifecycle::{self, Action};
use crate::{family, plan, provision as provisioning};

/// Validates the task and returns the plan; changes nothing.
pub fn plan(caps: Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionPlan, CommandError> {
    Ok(plan::to_record(&plan::build(&caps, ctx, request)?, ctx))
}

/// Provisions a sibling, or rolls back completely.
pub fn provision(caps: Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    provisioning::provision(&caps, ctx, request)
}

/// Undoes an interrupted provision from its journal.
pub fn rollback(caps: Caps, ctx: &Context, handle: &str) -> Result<RollbackOutcome, CommandError> {
    provisioning::rollback_interrupted(&caps, ctx, handle)
}

/// Starts, stops, restarts or deprovisions a registered sibling.
pub fn lifecycle(caps: Caps, ctx: &Context, action: Action, handle: &str) -> Result<LifecycleOutcome, CommandError> {
    lifecycle::run(&caps, ctx, action, handle)
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
