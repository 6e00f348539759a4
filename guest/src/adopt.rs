//! Adopting a sibling the original bash skill made: the host found it (the request's
//! candidates) and takes it over (`adoption.begin`: snapshot, old service stopped and its
//! definition removed); the component rewrites its `openclaw.json` in the provisioner's
//! shape (on a clear base with `re-port`), has the host move its legacy keys into `.env`,
//! registers it, installs and starts the host's service, waits for health, and commits.
//! On any failure it asks the host to put everything back (`adoption.abort`); the host
//! does so anyway when the run ends uncommitted.

mod plan;

use crate::caps::{Caps, Level, ServiceSpec};
use crate::config::{self, ConfigParams};
use crate::family_lock::FamilyLock;
use crate::health::{self, Healthy};
use crate::journal::Journal;
use crate::layout::{LeadLayout, SiblingLayout};
use crate::port_plan::{self, Claim};
use crate::registry::{Member, Registry};
use crate::secret::Secret;
use crate::sesame::{Call, Sesame};
use crate::timestamp;
use crate::wit::{AdoptOutcome, AdoptRequest, AdoptionPlan, CommandError, Context, Failure, FieldError, LegacySibling, RollbackStep};
use plan::Ids;

/// What adopting each candidate would change (the one named, or all of them); changes
/// nothing.
pub fn plans(caps: &Caps, ctx: &Context, request: &AdoptRequest) -> Result<Vec<AdoptionPlan>, CommandError> {
    let claims = claims(caps, ctx, request)?;
    let named = request.handle.as_deref();
    let ids = named.map(|h| plan::ids(request, h));
    let chosen = request.candidates.iter().filter(|c| named.is_none_or(|h| h == c.handle));
    Ok(chosen.map(|c| plan::plan(ctx, request, c, &claims, ids.as_ref(), &|| next_free(caps, request, c, &claims))).collect())
}

/// The next clear base for `c`, from where `re-port` starts.
fn next_free(caps: &Caps, request: &AdoptRequest, c: &LegacySibling, claims: &[Claim]) -> Option<u16> {
    port_plan::next_free(request.port_range_start, &c.handle, claims, caps.ports)
}

/// Every claim adoption keeps clear of (registry, journals, other candidates).
fn claims(caps: &Caps, ctx: &Context, request: &AdoptRequest) -> Result<Vec<Claim>, CommandError> {
    let lead = LeadLayout::new(&ctx.lead_home);
    let registry = Registry::load(caps.files, &lead).map_err(CommandError::Refused)?;
    let journals = Journal::others(caps.files, &lead, "").map_err(CommandError::Refused)?;
    Ok(plan::with_candidates(port_plan::claims(&registry, &journals), &request.candidates))
}

/// Adopts `request.handle`; refusals change nothing, a failure is put back.
pub fn adopt(caps: &Caps, ctx: &Context, request: &AdoptRequest) -> Result<AdoptOutcome, CommandError> {
    let handle = request.handle.clone().ok_or_else(|| invalid("handle", "name the sibling to adopt".into()))?;
    crate::task::validate_handle(&handle, &ctx.lead_handles).map_err(|m| invalid("handle", m))?;
    let ids = plan::ids(request, &handle).map_err(|missing| CommandError::Refused(missing.join("; ")))?;
    let candidate = request
        .candidates
        .iter()
        .find(|c| c.handle == handle)
        .ok_or_else(|| CommandError::Refused(format!("the host found no sibling home {} to adopt", naming::sibling_home(&ctx.home, &handle))))?;
    let _lock = FamilyLock::take(caps).map_err(CommandError::Refused)?;
    caps.family.claim(&handle).map_err(CommandError::Refused)?;
    let claims = claims(caps, ctx, request)?;
    let plan = plan::plan(ctx, request, candidate, &claims, Some(&Ok(ids.clone())), &|| next_free(caps, request, candidate, &claims));
    if !plan.blockers.is_empty() {
        return Err(CommandError::Refused(plan.blockers.join("; ")));
    }
    let port = plan.new_port.expect("a plan without blockers has a port");
    let run = Run { caps, ctx, handle: handle.clone(), ids, port, layout: SiblingLayout::new(&ctx.home, &handle) };
    match run.steps(candidate) {
        Ok((healthy, credentials, archive_dir)) => Ok(run.finish(candidate, plan, healthy, credentials, archive_dir)),
        Err((step, message)) => Err(run.put_back(step, message)),
    }
}

fn invalid(field: &str, message: String) -> CommandError {
    CommandError::InvalidInput(FieldError { field: field.into(), message })
}

/// An adoption under way.
struct Run<'a> {
    caps: &'a Caps<'a>,
    ctx: &'a Context,
    handle: String,
    ids: Ids,
    port: u16,
    layout: SiblingLayout,
}

type StepError = (&'static str, String);

impl Run<'_> {
    /// Every step; returns how the gateway came up, what moved of the credentials and
    /// where the old definition was archived.
    fn steps(&self, candidate: &LegacySibling) -> Result<(Healthy, Vec<String>, String), StepError> {
        let (caps, handle) = (self.caps, self.handle.clone());
        let label = naming::label(&handle);
        self.step("begin", "the host snapshots the sibling and stops its old service");
        let found = caps.adoption.begin(&handle).map_err(|e| ("begin", e))?;
        if found.port != candidate.port {
            return Err(("begin", format!("its openclaw.json changed while adoption began (port {:?}, was {:?})", found.port, candidate.port)));
        }
        self.step("config", &format!("rewriting {} for port {}", self.layout.config, self.port));
        self.rewrite_config(&found).map_err(|e| ("config", e))?;
        self.step("credentials", "the host moves legacy provider keys into .env");
        let credentials = caps.adoption.migrate_credentials(&handle).map_err(|e| ("credentials", e))?;
        let busy = caps.ports.taken(&[self.port]);
        if !busy.is_empty() {
            return Err(("service", format!("port {} is still in use after the old service stopped (something else listens there)", self.port)));
        }
        self.step("register", &format!("registering {handle} in the family registry"));
        self.register("stopped").map_err(|e| ("register", e))?;
        self.step("service", &format!("installing and starting {label}"));
        let spec = ServiceSpec { label: label.clone(), port: self.port };
        caps.services.install(&spec).map_err(|e| ("service", format!("installing {label}: {}", e.message())))?;
        caps.services.start(&label).map_err(|e| ("service", format!("starting {label}: {}", e.message())))?;
        self.step("health", &format!("waiting for the gateway on port {}", self.port));
        let healthy = health::wait_healthy(caps, &label, self.port, &self.layout, &self.ctx.timing).map_err(|e| ("health", e))?;
        self.register("online").map_err(|e| ("register", e))?;
        self.step("commit", "the host archives the old definition and config");
        let archive_dir = caps.adoption.commit(&handle).map_err(|e| ("commit", e))?;
        Ok((healthy, credentials, archive_dir))
    }

    fn step(&self, name: &str, words: &str) {
        self.caps.progress.emit(Level::Step, &format!("{name}: {words}"));
    }

    /// Writes `openclaw.json` in the provisioner's shape, keeping the port (or the new
    /// one), the gateway token, the model and the Sesame key of the old config.
    fn rewrite_config(&self, found: &LegacySibling) -> Result<(), String> {
        let path = &self.layout.config;
        let bytes = self.caps.files.read(path).map_err(|e| format!("reading {path}: {}", e.message()))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8"))?;
        let old: serde_json::Value = serde_json::from_str(&text).or_else(|_| json5::from_str(&text)).map_err(|e| format!("{path} does not parse ({e})"))?;
        let token = match old["gateway"]["auth"]["token"].as_str().filter(|t| !t.is_empty()) {
            Some(token) => token.to_string(),
            None => config::gateway_token(self.caps.random),
        };
        let sesame_key = old["channels"]["sesame"]["apiKey"].as_str().filter(|k| !k.is_empty()).map(Secret::new);
        let plugins = self.plugins();
        if sesame_key.is_some() && !plugins.contains(&"sesame") {
            return Err(format!(
                "{path} configures the Sesame channel, but the host copies no Sesame plugin from the lead (or the home has no extensions/sesame)"
            ));
        }
        let config = config::openclaw_json(&ConfigParams {
            port: self.port,
            gateway_token: &token,
            workspace: &self.layout.workspace,
            model: found.model.as_deref(),
            plugins: &plugins,
            sesame: sesame_key.as_ref().map(|k| (k, self.ctx.api_url.as_str())),
        });
        let mut text = serde_json::to_string_pretty(&config).expect("JSON serializes");
        text.push('\n');
        self.caps.files.write_atomic(path, text.as_bytes(), 0o600).map_err(|e| format!("writing {path}: {}", e.message()))
    }

    /// The lead plugins the host copies that the home holds too (`extensions/<name>`).
    fn plugins(&self) -> Vec<&'static str> {
        let held = |rel: &str| matches!(self.caps.files.metadata(&crate::layout::join(&self.layout.root, rel)), Ok(Some(_)));
        self.ctx.lead_plugins.iter().filter(|p| p.as_str() == "extensions/sesame" && held(p)).map(|_| "sesame").collect()
    }

    /// Registers the sibling with `status`.
    fn register(&self, status: &str) -> Result<(), String> {
        let lead = LeadLayout::new(&self.ctx.lead_home);
        let mut registry = Registry::load(self.caps.files, &lead)?;
        let created_at = registry.find(&self.handle).map(|m| m.created_at.clone()).unwrap_or_else(|| timestamp::rfc3339(self.caps.clock.now_unix_ms()));
        registry.upsert(Member {
            handle: self.handle.clone(),
            principal_id: self.ids.principal_id.clone(),
            family_id: self.ids.family_id.clone(),
            display_name: self.ids.display_name.clone(),
            port: self.port,
            backend: self.ctx.service_backend.name().into(),
            created_at,
            status: status.into(),
            task_id: None,
            onboarding_channel_id: None,
        });
        registry.save(self.caps.files, &lead)
    }

    /// Has the host put everything back after `step` failed.
    fn put_back(self, step: &str, message: String) -> CommandError {
        self.caps.progress.emit(Level::Warning, &format!("{step} failed: {message}; the host puts everything back"));
        let (lines, ok) = match self.caps.adoption.abort(&self.handle) {
            Ok(lines) => (lines, true),
            Err(lines) => (lines, false),
        };
        let rollback = lines
            .into_iter()
            .map(|detail| RollbackStep { action: "put back".into(), ok: ok || !detail.starts_with("FAILED"), detail })
            .collect();
        CommandError::Failed(Failure { step: step.into(), message, rollback, archive: None })
    }

    /// Tells Sesame the member is online.
    fn finish(self, candidate: &LegacySibling, plan: AdoptionPlan, healthy: Healthy, credentials: Vec<String>, archive_dir: String) -> AdoptOutcome {
        let mut warnings = Vec::new();
        if !healthy.sesame_authenticated {
            warnings.push(format!("the gateway is up, but {} does not show `{}` yet", self.layout.stdout_log, health::SESAME_AUTHENTICATED));
        }
        if candidate.definition.is_none() {
            warnings.push("no old service definition was found: if a gateway of it was started by hand, stop it".into());
        }
        self.caps.progress.emit(Level::Step, "report: telling Sesame the member is online");
        let call = Call::SetMemberStatus { family_id: self.ids.family_id.clone(), principal_id: self.ids.principal_id.clone(), status: "online" };
        let unreported = Sesame::for_context(self.caps, self.ctx).send(&call).err().map(|e| e.to_string()).into_iter().collect();
        AdoptOutcome {
            handle: self.handle.clone(),
            oc_home: self.layout.root.clone(),
            port: self.port,
            previous_port: candidate.port.filter(|p| *p != self.port),
            label: naming::label(&self.handle),
            archive_dir,
            credentials,
            changes: plan.changes,
            sesame_authenticated: healthy.sesame_authenticated,
            unreported,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests;
