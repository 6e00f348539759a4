//! What adopting a sibling the original skill made would change, from what the host found
//! of it: the port it runs on (its own, or a clear base with `re-port` when its claimed
//! ports overlap another sibling's), every change in order, and what blocks it.

use crate::layout::archives_dir;
use crate::port_plan::{self, Claim, Conflict};
use crate::task;
use crate::wit::{AdoptRequest, AdoptionPlan, Context, LegacySibling};

/// The registry fields an adoption needs from the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub principal_id: String,
    pub family_id: String,
    pub display_name: String,
}

/// The ids of `request`, checked; for a scan (no handle) they are not needed.
pub fn ids(request: &AdoptRequest, handle: &str) -> Result<Ids, Vec<String>> {
    let mut blockers = Vec::new();
    let mut uuid = |value: &Option<String>, flag: &str, what: &str| match value {
        None => {
            blockers.push(format!("{flag} is required: {what}"));
            String::new()
        }
        Some(v) => task::uuid(v).unwrap_or_else(|why| {
            blockers.push(format!("{flag}: {why}"));
            String::new()
        }),
    };
    let principal_id = uuid(&request.principal_id, "--principal-id", "the sibling's Sesame principal id, for the family registry");
    let family_id = uuid(&request.family_id, "--family-id", "the Sesame family id, for the family registry");
    let display_name = request.display_name.clone().unwrap_or_else(|| handle.to_string());
    if let Err(why) = task::plain_text(&display_name, 64) {
        blockers.push(format!("--display-name {why}"));
    }
    if blockers.is_empty() { Ok(Ids { principal_id, family_id, display_name }) } else { Err(blockers) }
}

/// The claims adoption must keep clear of: the registry's, the journals', and every other
/// candidate's own port (its gateway runs there today).
pub fn with_candidates(mut claims: Vec<Claim>, candidates: &[LegacySibling]) -> Vec<Claim> {
    let theirs = candidates.iter().filter_map(|c| Some(Claim { handle: c.handle.clone(), base: c.port?, pending: false }));
    claims.extend(theirs);
    claims
}

/// The plan for adopting `c`. `ids` is `None` for a scan; `next_free` finds a clear base.
pub fn plan(ctx: &Context, request: &AdoptRequest, c: &LegacySibling, claims: &[Claim], ids: Option<&Result<Ids, Vec<String>>>, next_free: &dyn Fn() -> Option<u16>) -> AdoptionPlan {
    let mut blockers = c.refusals.clone();
    let overlaps: Vec<String> = c
        .port
        .map(|port| {
            claims
                .iter()
                .filter(|o| o.handle != c.handle && naming::claims_overlap(o.base, port))
                .map(|o| Conflict::Sibling { handle: o.handle.clone(), base: o.base, pending: o.pending }.describe(port))
                .collect()
        })
        .unwrap_or_default();
    let new_port = match c.port {
        Some(port) if overlaps.is_empty() => Some(port),
        found => {
            let clear = next_free();
            if !request.re_port {
                let suggestion = clear.map(|b| format!("; `adopt {} --re-port` moves it to {b}", c.handle)).unwrap_or_default();
                blockers.push(match found {
                    Some(port) => format!("its claimed ports ({}) overlap another sibling's{suggestion}", port_plan::describe_claim(port)),
                    None => format!("its openclaw.json names no gateway port{suggestion}"),
                });
            } else if clear.is_none() {
                blockers.push(format!("no clear base from {} up for --re-port", request.port_range_start));
            }
            clear
        }
    };
    match ids {
        Some(Err(missing)) => blockers.extend(missing.iter().cloned()),
        None => {}
        Some(Ok(_)) => {}
    }
    let changes = changes(ctx, c, new_port, ids.and_then(|r| r.as_ref().ok()));
    AdoptionPlan { handle: c.handle.clone(), oc_home: c.oc_home.clone(), port: c.port, new_port, changes, overlaps, blockers }
}

/// Every change adopting `c` on `port` makes, in order.
fn changes(ctx: &Context, c: &LegacySibling, port: Option<u16>, ids: Option<&Ids>) -> Vec<String> {
    let home = &c.oc_home;
    let port_text = port.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
    let mut out = vec![format!(
        "the host records {home} as a sibling home of this lead and saves what adoption changes (openclaw.json, .env, the legacy credential files, the family registry, the old service definition and its state); on any failure it puts all of it back byte for byte"
    )];
    out.push(match &c.definition {
        Some(d) => format!(
            "stop the old service {} ({}, {}) and remove {}; it is archived when adoption finishes",
            d.name,
            if d.loaded { "loaded" } else { "not loaded" },
            if d.running { "running" } else { "not running" },
            d.path
        ),
        None => "no old service definition was found: a gateway started by hand keeps running and holds its port".into(),
    });
    let moved = match (c.port, port) {
        (Some(old), Some(new)) if old != new => format!("gateway.port {old} -> {new} (--re-port)"),
        _ => format!("gateway.port {port_text}"),
    };
    let left_out = if c.foreign_config_keys.is_empty() { "nothing left out".into() } else { format!("left out: {}", c.foreign_config_keys.join(", ")) };
    out.push(format!(
        "rewrite {home}/openclaw.json (0600) in the provisioner's shape: {moved}, gateway.mode local, bind loopback, token auth (its token kept, or a new one), workspace {home}/workspace, model {}, its Sesame channel kept; {left_out}",
        c.model.as_deref().unwrap_or("unset")
    ));
    for cred in &c.legacy_credentials {
        out.push(match cred.profiles {
            0 => format!("move the {} key(s) of {} into {home}/.env (0600) and remove {}", listed(&cred.providers), cred.path, cred.path),
            n => format!("remove {} (the lead's auth profiles the original skill copied: {n}, for {}); the sibling keeps its own keys in .env", cred.path, listed(&cred.providers)),
        });
    }
    if c.legacy_credentials.is_empty() {
        out.push(format!("no legacy credential file; {home}/.env stays as it is (keys for {})", listed(&c.env_providers)));
    }
    if !c.code_paths.is_empty() {
        out.push(format!("keep the code the home holds as it is ({}): adoption copies no plugin", c.code_paths.join(", ")));
    }
    out.push(match ids {
        Some(ids) => format!(
            "register {} in the family registry (principal {}, family {}, display name {:?})",
            c.handle, ids.principal_id, ids.family_id, ids.display_name
        ),
        None => format!("register {} in the family registry (with --principal-id and --family-id)", c.handle),
    });
    out.push(format!(
        "install {} ({} backend, written by the host) running {} --profile {} gateway run --port {port_text}, start it and wait for its health check",
        naming::label(&c.handle),
        ctx.service_backend.name(),
        ctx.openclaw_bin,
        c.handle
    ));
    out.push(format!("archive the old definition and openclaw.json in {}/{}-adopted-<time>/ (0600)", archives_dir(&ctx.home), c.handle));
    out.push(match ids {
        Some(ids) => format!("tell Sesame the member is online: PATCH /families/{}/members/{}", ids.family_id, ids.principal_id),
        None => "tell Sesame the member is online".into(),
    });
    out
}

/// `a`, `a, b`; `none`.
fn listed(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}
