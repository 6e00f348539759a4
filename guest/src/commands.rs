//! The exported commands, over [`Caps`].

pub use crate::bindings::exports::openclaw::provisioner::commands::*;
use crate::caps::Caps;

fn not_yet(what: &str) -> CommandError {
    CommandError::Refused(format!("{what} is not built yet"))
}

pub fn plan(_caps: Caps, _ctx: &Context, _request: &ProvisionRequest) -> Result<ProvisionPlan, CommandError> {
    Err(not_yet("plan"))
}
pub fn provision(_caps: Caps, _ctx: &Context, _request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    Err(not_yet("provision"))
}
pub fn lifecycle(_caps: Caps, _ctx: &Context, action: &str, _handle: &str) -> Result<LifecycleOutcome, CommandError> {
    Err(not_yet(action))
}
pub fn health(_caps: Caps, _ctx: &Context, _request: &HealthRequest) -> Result<HealthReport, CommandError> {
    Err(not_yet("health"))
}
pub fn members(_caps: Caps, _ctx: &Context) -> Result<Vec<FamilyMember>, CommandError> {
    Err(not_yet("list"))
}
pub fn ports(_caps: Caps, _ctx: &Context, _range_start: u16) -> Result<PortReport, CommandError> {
    Err(not_yet("ports"))
}
