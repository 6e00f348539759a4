//! The family as a whole: the registry checked against the disk, the ports it claims,
//! and the health check every sibling gets on the lead's heartbeat.

use crate::caps::{Caps, RunState, ServiceStatus};
use crate::health;
use crate::journal::Journal;
use crate::layout::{LeadLayout, SiblingLayout};
use crate::port_plan;
use crate::registry::{Member, Registry};
use crate::sesame::{Call, Sesame};
use crate::wit::{CommandError, Context, FamilyMember, HealthReport, HealthRequest, PortClaim, PortReport, SiblingHealth};
use std::collections::BTreeSet;

fn load(caps: &Caps, ctx: &Context) -> Result<Registry, CommandError> {
    Registry::load(caps.files, &LeadLayout::new(&ctx.lead_home)).map_err(CommandError::Refused)
}

/// Where `member`'s registry entry disagrees with the disk or its service manager.
fn problems(caps: &Caps, ctx: &Context, member: &Member, status: &Result<ServiceStatus, String>) -> Vec<String> {
    let mut found = Vec::new();
    let home = member.home(&ctx.home);
    match caps.files.metadata(&home) {
        Ok(Some(_)) => {}
        Ok(None) => found.push(format!("its home {home} is gone")),
        Err(e) => found.push(format!("its home {home} cannot be checked: {}", e.message())),
    }
    match status {
        Ok(s) if s.state == RunState::NotInstalled => found.push(format!("its service {} is not installed", member.label())),
        Ok(s) if s.state == RunState::Failed => found.push(format!("its service {} failed: {}", member.label(), s.detail)),
        Ok(_) => {}
        Err(e) => found.push(format!("its service {} cannot be queried: {e}", member.label())),
    }
    found
}

/// The registry, each entry checked against the disk (reported, never rewritten).
pub fn members(caps: &Caps, ctx: &Context) -> Result<Vec<FamilyMember>, CommandError> {
    Ok(load(caps, ctx)?
        .siblings
        .into_iter()
        .map(|m| {
            let status = caps.services.status(&m.label()).map_err(|e| e.message());
            FamilyMember {
                problems: problems(caps, ctx, &m, &status),
                oc_home: m.home(&ctx.home),
                label: m.label(),
                handle: m.handle,
                display_name: m.display_name,
                principal_id: m.principal_id,
                family_id: m.family_id,
                port: m.port,
                backend: m.backend,
                created_at: m.created_at,
                status: m.status,
            }
        })
        .collect())
}

/// The ports each sibling claims (registered, or provisioned right now or interrupted:
/// its journal), which of them are listening, and the next free base.
pub fn ports(caps: &Caps, ctx: &Context, range_start: u16) -> Result<PortReport, CommandError> {
    let registry = load(caps, ctx)?;
    let journals = Journal::others(caps.files, &LeadLayout::new(&ctx.lead_home), "").map_err(CommandError::Refused)?;
    let claims = port_plan::claims(&registry, &journals);
    let claimed = |base: u16| port_plan::claimed(base).into_iter().flatten().filter_map(|p| u16::try_from(p).ok());
    // One probe of every claimed port at once.
    let all: Vec<u16> = claims.iter().flat_map(|c| claimed(c.base)).collect::<BTreeSet<_>>().into_iter().collect();
    let taken: BTreeSet<u16> = caps.ports.taken(&all).into_iter().collect();
    let report = claims
        .iter()
        .map(|c| PortClaim {
            handle: c.handle.clone(),
            base: c.base,
            ranges: port_plan::describe_claim(c.base),
            listening: claimed(c.base).filter(|p| taken.contains(p)).collect(),
            pending: c.pending,
        })
        .collect();
    Ok(PortReport { claims: report, next_free: port_plan::next_free(range_start, "", &claims, caps.ports) })
}

/// Checks every registered sibling: service state, one concurrent round of `/healthz`
/// probes (so the whole check takes about one probe timeout), and the Sesame line in its
/// log. With `report`, sets each member `online`/`error` on Sesame and, with a channel,
/// posts one summary.
pub fn health(caps: &Caps, ctx: &Context, request: &HealthRequest) -> Result<HealthReport, CommandError> {
    let registry = load(caps, ctx)?;
    let statuses: Vec<Result<ServiceStatus, String>> =
        registry.siblings.iter().map(|m| caps.services.status(&m.label()).map_err(|e| e.message())).collect();
    let ports: Vec<u16> = registry.siblings.iter().map(|m| m.port).collect();
    let probes = health::probe_all(caps.http, caps.clock, &ports, ctx.timing.probe_timeout_ms);
    let siblings: Vec<SiblingHealth> = registry
        .siblings
        .iter()
        .zip(statuses)
        .zip(probes)
        .map(|((m, status), probe)| {
            let s = status.as_ref().ok();
            SiblingHealth {
                handle: m.handle.clone(),
                port: m.port,
                state: s.map(|s| s.state).unwrap_or(RunState::NotInstalled),
                pid: s.and_then(|s| s.pid),
                uptime_seconds: s.and_then(|s| s.uptime_seconds),
                restarts: s.and_then(|s| s.restarts),
                // An old log line says nothing about a gateway that is down now.
                sesame_authenticated: probe.healthy && health::sesame_authenticated(caps.files, &SiblingLayout::new(&ctx.home, &m.handle)),
                healthy: probe.healthy,
                probe: probe.words,
                probe_millis: probe.millis,
                problems: problems(caps, ctx, m, &status),
            }
        })
        .collect();
    let mut unreported = Vec::new();
    if request.report {
        let sesame = Sesame::for_context(caps, ctx);
        for (m, h) in registry.siblings.iter().zip(&siblings) {
            let status = if h.healthy { "online" } else { "error" };
            let call = Call::SetMemberStatus { family_id: m.family_id.clone(), principal_id: m.principal_id.clone(), status };
            if let Err(e) = sesame.send(&call) {
                unreported.push(e.to_string());
            }
        }
        if let Some(channel) = &request.channel {
            let call = Call::PostMessage { channel_id: channel.clone(), content: summary(&siblings, &ctx.host_name), intent: "chat" };
            if let Err(e) = sesame.send(&call) {
                unreported.push(e.to_string());
            }
        }
    }
    Ok(HealthReport { siblings, unreported })
}

/// One message for the family channel: `Family health on HOST: 2/3 healthy. Down: bob (timed out).`
fn summary(siblings: &[SiblingHealth], host: &str) -> String {
    let healthy = siblings.iter().filter(|s| s.healthy).count();
    let down: Vec<String> = siblings.iter().filter(|s| !s.healthy).map(|s| format!("{} ({})", s.handle, s.probe)).collect();
    let mut text = format!("Family health on {host}: {healthy}/{} healthy.", siblings.len());
    if !down.is_empty() {
        text.push_str(&format!(" Down: {}.", down.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests;
