//! The provisioning plan: every file, service action and Sesame call of a provision,
//! decided before anything is touched. `plan` shows it; `provision` carries it out, so
//! the plan lists exactly what a real run does.

use crate::caps::{Caps, FsError, RunState, ServiceError, ServiceSpec};
use crate::commands::{
    CommandError, Context, FieldError, PhaseTime, PlannedCall, PlannedFile, PlannedService, ProvisionPlan, ProvisionRequest,
};
use crate::layout::{LeadLayout, SiblingLayout, join};
use crate::port_plan::{self, Conflict};
use crate::registry::Registry;
use crate::secret::Secret;
use crate::sesame::Call;
use crate::journal::{self, Journal};
use crate::task::{Task, TaskEnv};
use crate::workspace::{WorkspaceFile, WorkspaceVars};
use crate::{config, lead, task, workspace};
use crate::bindings::openclaw::provisioner::types::CredentialLayout;

/// Which step a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Config,
    Workspace,
}

/// One file-system effect.
#[derive(Clone, Debug, PartialEq)]
pub enum FileOp {
    Dir { path: String, mode: u32 },
    Write { path: String, mode: u32, contents: Vec<u8>, secret: bool },
    /// The host writes the provider credential (`path`, for the plan): the task's `key`,
    /// or the lead's own when `None`, which the component never sees.
    Credentials { handle: String, provider: &'static str, layout: CredentialLayout, key: Option<Secret>, path: String },
    /// The host copies the lead's allowlisted plugins and skills (`relative` paths, the
    /// context's `lead-plugins`) into the sibling's home; the component cannot write code
    /// there itself.
    LeadPlugins { handle: String, relative: Vec<String> },
}

/// Everything a provision does, decided up front.
pub struct Provisioning {
    pub task: Task,
    pub layout: SiblingLayout,
    pub port: u16,
    pub label: String,
    pub files: Vec<(Step, FileOp)>,
    pub service: ServiceSpec,
    pub vault_name: String,
    /// Conflicts of the task's own port (with `auto-port`, the port was moved off them).
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
    /// Every secret the provision handles, for scrubbing messages.
    pub secrets: Vec<Secret>,
    /// The journal of the interrupted provision this one resumes.
    pub resume_from: Option<Journal>,
    /// How long each planning phase took.
    pub timings: Vec<PhaseTime>,
}

/// Measures consecutive phases on the monotonic clock.
struct PhaseTimer<'a> {
    clock: &'a dyn crate::caps::Clock,
    started: u64,
    last: u64,
    phases: Vec<PhaseTime>,
}

impl<'a> PhaseTimer<'a> {
    fn new(clock: &'a dyn crate::caps::Clock) -> Self {
        let now = clock.monotonic_us();
        Self { clock, started: now, last: now, phases: Vec::new() }
    }

    /// Ends the phase `name` now.
    fn lap(&mut self, name: &str) {
        let now = self.clock.monotonic_us();
        self.phases.push(PhaseTime { phase: name.into(), micros: now - self.last });
        self.last = now;
    }

    /// The phases, plus the whole as `plan`.
    fn finish(mut self) -> Vec<PhaseTime> {
        let total = self.clock.monotonic_us() - self.started;
        self.phases.push(PhaseTime { phase: "plan".into(), micros: total });
        self.phases
    }
}

/// Builds the plan: validates the task, reads the lead's context and the registry, and
/// picks the port. Port conflicts without `auto-port` are kept in `conflicts` for the
/// caller to judge (a plan shows them, a provision refuses).
pub fn build(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<Provisioning, CommandError> {
    let mut timer = PhaseTimer::new(caps.clock);
    // Everything but the "no home yet" check first: an interrupted provision's home exists.
    let env = |resuming| TaskEnv { home: &ctx.home, lead_home: &ctx.lead_home, lead_handles: &ctx.lead_handles, resuming };
    let task = task::parse(&request.task_json, &env(true), caps.files).map_err(CommandError::InvalidInput)?;
    let lead_layout = LeadLayout::new(&ctx.lead_home);
    let journal = Journal::load(caps.files, &lead_layout, &task.handle).map_err(CommandError::Refused)?;
    if journal.is_none() && !request.resume {
        task::parse(&request.task_json, &env(false), caps.files).map_err(CommandError::InvalidInput)?;
    }
    let resume_from = match (journal, request.resume) {
        (Some(j), false) => {
            return Err(CommandError::Refused(format!(
                "a provision of {h} was interrupted at {} (journal {}); finish it with \
                 `agent-provisioner provision --resume --task FILE` or undo it with `agent-provisioner rollback {h}`",
                j.position(),
                journal::path(&lead_layout, &task.handle),
                h = task.handle
            )));
        }
        (None, true) => return Err(CommandError::Refused(format!("there is no interrupted provision of {} to resume", task.handle))),
        (Some(j), true) if j.principal_id != task.principal_id => {
            return Err(CommandError::Refused(format!(
                "the interrupted provision of {} was for principal {}, not {}",
                task.handle, j.principal_id, task.principal_id
            )));
        }
        (journal, _) => journal,
    };
    let registry = Registry::load(caps.files, &lead_layout).map_err(CommandError::Refused)?;
    if registry.find(&task.handle).is_some() && resume_from.is_none() {
        return Err(CommandError::Refused(format!(
            "{} is already a registered sibling; deprovision it first (`agent-provisioner deprovision {}`)",
            task.handle, task.handle
        )));
    }
    let label = naming::label(&task.handle);
    match caps.services.status(&label) {
        // The host names a definition it did not write (the user's own, OpenClaw's).
        Err(ServiceError::Denied(why)) => return Err(CommandError::Refused(why)),
        Ok(s) if s.state != RunState::NotInstalled && resume_from.is_none() => {
            return Err(CommandError::Refused(format!("{label} is already installed; deprovision {} first", task.handle)));
        }
        _ => {}
    }
    let mut warnings = Vec::new();
    // A resumed provision keeps the port it was given (its own gateway may hold it).
    let found = match &resume_from {
        Some(_) => Vec::new(),
        None => port_plan::conflicts(task.gateway_port, &task.handle, &registry, caps.ports),
    };
    let conflicts: Vec<String> = found.iter().map(|c: &Conflict| c.describe(task.gateway_port)).collect();
    let port = if let Some(j) = &resume_from {
        j.port
    } else if !found.is_empty() && request.auto_port {
        let start = request.port_range_start;
        let free = port_plan::next_free(start, &task.handle, &registry, caps.ports).ok_or_else(|| {
            CommandError::InvalidInput(FieldError {
                field: "gatewayPort".into(),
                message: format!("no free base port from {start} up ({})", conflicts.join("; ")),
            })
        })?;
        warnings.push(format!("gatewayPort {} is taken ({}); using {free}", task.gateway_port, conflicts.join("; ")));
        free
    } else {
        task.gateway_port
    };

    timer.lap("validate");
    let lead = lead::read(caps.files, &lead_layout);
    timer.lap("lead context");
    warnings.extend(lead.warnings.iter().cloned());
    let layout = SiblingLayout::new(&ctx.home, &task.handle);
    let token = Secret::new(config::gateway_token(caps.random));
    let mut secrets = vec![task.sesame_api_key.clone(), token.clone()];
    let mut files: Vec<(Step, FileOp)> = Vec::new();
    let mut add = |step: Step, op: FileOp| files.push((step, op));

    add(Step::Config, FileOp::Dir { path: layout.root.clone(), mode: 0o700 });
    add(Step::Config, FileOp::Dir { path: layout.agent_dir.clone(), mode: 0o700 });
    // OpenClaw refuses a channel no installed plugin provides: configure Sesame only
    // when the host copies its plugin from the lead.
    let plugins: Vec<&str> = ctx.lead_plugins.iter().filter_map(|p| p.strip_prefix("extensions/")).collect();
    let sesame_plugin = plugins.contains(&"sesame");
    if !sesame_plugin {
        warnings.push(format!(
            "the host copies no Sesame plugin from the lead ({}/extensions/sesame); the sibling's gateway will run without the Sesame channel",
            ctx.lead_home
        ));
    }
    let openclaw_json = config::openclaw_json(&config::ConfigParams {
        port,
        gateway_token: token.expose(),
        workspace: &layout.workspace,
        model: task.model.as_deref(),
        plugins: &plugins,
        sesame: sesame_plugin.then_some((&task.sesame_api_key, ctx.api_url.as_str())),
    });
    add(Step::Config, FileOp::Write {
        path: layout.config.clone(),
        mode: 0o600,
        contents: pretty(&openclaw_json),
        secret: true,
    });
    let key = credentials(ctx, &task)?;
    secrets.extend(key.iter().cloned());
    let path = match ctx.credential_layout {
        CredentialLayout::EnvFile => layout.env_file.clone(),
        CredentialLayout::Legacy => layout.auth_json.clone(),
    };
    add(Step::Config, FileOp::Credentials { handle: task.handle.clone(), provider: task.provider.as_str(), layout: ctx.credential_layout, key, path });
    if !ctx.lead_plugins.is_empty() {
        add(Step::Config, FileOp::LeadPlugins { handle: task.handle.clone(), relative: ctx.lead_plugins.clone() });
    }
    add(Step::Config, FileOp::Dir { path: layout.memory.clone(), mode: 0o700 });

    timer.lap("config");
    let vault_name = format!("{}-main", task.handle);
    let siblings: Vec<String> = registry.siblings.iter().map(|m| format!("{} ({})", m.handle, m.display_name)).collect();
    let vars = WorkspaceVars::new(&workspace_params(ctx, &task, port, &vault_name, &siblings), &lead, task.personality_seed.as_deref());
    let rendered: Vec<WorkspaceFile> = workspace::render_all(&vars, &lead)
        .map_err(|e| CommandError::Refused(format!("rendering the workspace templates failed: {e}")))?;
    for file in rendered {
        add(Step::Workspace, FileOp::Write {
            path: join(&layout.workspace, file.name),
            mode: 0o644,
            contents: file.contents.into_bytes(),
            secret: false,
        });
    }

    timer.lap("render");
    let service = ServiceSpec { label: label.clone(), port };
    let timings = timer.finish();
    Ok(Provisioning {
        timings,
        conflicts: if request.auto_port { Vec::new() } else { conflicts },
        task,
        layout,
        port,
        label,
        files,
        service,
        vault_name,
        warnings,
        secrets,
        resume_from,
    })
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON serializes");
    text.push('\n');
    text.into_bytes()
}

/// The sibling's LLM key: the task's own (`Some`), or `None` for the lead's, which the
/// host holds and writes itself — refused here when the host has none for the provider.
fn credentials(ctx: &Context, task: &Task) -> Result<Option<Secret>, CommandError> {
    if let Some(key) = &task.llm_api_key {
        return Ok(Some(key.clone()));
    }
    if ctx.lead_provider_keys.iter().any(|p| p == task.provider.as_str()) {
        return Ok(None);
    }
    Err(CommandError::InvalidInput(FieldError {
        field: "llmApiKey".into(),
        message: format!(
            "is null and the lead has no {} to inherit (not in its environment, {}/.env or its legacy auth.json); give the key in the task",
            task.provider.env_var(),
            ctx.lead_home
        ),
    }))
}

fn workspace_params<'a>(
    ctx: &'a Context,
    task: &'a Task,
    port: u16,
    vault_name: &'a str,
    siblings: &'a [String],
) -> workspace::Params<'a> {
    workspace::Params {
        handle: &task.handle,
        display_name: &task.display_name,
        principal_id: &task.principal_id,
        workspace_id: ctx.lead_workspace_id.as_deref(),
        family_name: &task.family_name,
        host_name: &ctx.host_name,
        host_os: &ctx.host_os,
        host_arch: &ctx.host_arch,
        api_url: &ctx.api_url,
        dm_channel_id: task.dm_channel_id.as_deref(),
        onboarding_channel_id: task.onboarding_channel_id.as_deref(),
        human_principal_id: task.human.as_ref().map(|h| h.principal_id.as_str()),
        human_name: task.human.as_ref().and_then(|h| h.name.as_deref()),
        human_handle: task.human.as_ref().and_then(|h| h.handle.as_deref()),
        human_role: task.human.as_ref().and_then(|h| h.role.as_deref()),
        vault_name,
        gateway_port: port,
        siblings,
    }
}

/// The Sesame calls of the vault step; member adds use `vault_id` once it is known.
pub fn vault_calls(p: &Provisioning, vault_id: &str) -> (Call, Vec<Call>) {
    let create = Call::CreateVault {
        name: p.vault_name.clone(),
        description: format!("{} credentials vault", p.task.display_name),
    };
    let mut members = vec![Call::AddVaultMember {
        vault_id: vault_id.into(),
        principal_id: p.task.principal_id.clone(),
        role: "owner",
    }];
    if let Some(human) = &p.task.human {
        members.push(Call::AddVaultMember { vault_id: vault_id.into(), principal_id: human.principal_id.clone(), role: "admin" });
    }
    (create, members)
}

/// The success report (spec step 6), skipping what the task has no id for.
pub fn report_calls(p: &Provisioning, sesame_connected: bool, host_name: &str) -> Vec<Call> {
    let t = &p.task;
    let mut calls = vec![Call::SetMemberStatus { family_id: t.family_id.clone(), principal_id: t.principal_id.clone(), status: "online" }];
    if let Some(task_id) = &t.task_id {
        let sesame = if sesame_connected { "Sesame connected" } else { "Sesame connection not yet confirmed" };
        calls.push(Call::TaskActivity {
            task_id: task_id.clone(),
            kind: "progress",
            message: format!("Agent {} is online on port {}. {sesame}, vault created.", t.handle, p.port),
        });
        calls.push(Call::SetTaskStatus { task_id: task_id.clone(), status: "done" });
    }
    if let Some(channel) = &t.onboarding_channel_id {
        calls.push(Call::PostMessage {
            channel_id: channel.clone(),
            content: format!(
                "Welcome! I've provisioned {} (@{}) on {host_name}. {} is online and will introduce itself here shortly.",
                t.display_name, t.handle, t.display_name
            ),
            intent: "chat",
        });
    }
    calls
}

/// The journal a provision starts with.
pub fn journal(p: &Provisioning, started_at: String) -> Journal {
    Journal {
        handle: p.task.handle.clone(),
        principal_id: p.task.principal_id.clone(),
        family_id: p.task.family_id.clone(),
        port: p.port,
        task_id: p.task.task_id.clone(),
        onboarding_channel_id: p.task.onboarding_channel_id.clone(),
        vault_id: None,
        started_at,
        done: Vec::new(),
        current: None,
        reported: Vec::new(),
    }
}

/// The rollback report (spec rollback steps 3-5), skipping what the task has no id for.
pub fn rollback_calls(task: &Journal, what: &str) -> Vec<Call> {
    let mut calls = vec![Call::SetMemberStatus { family_id: task.family_id.clone(), principal_id: task.principal_id.clone(), status: "error" }];
    if let Some(task_id) = &task.task_id {
        calls.push(Call::TaskActivity {
            task_id: task_id.clone(),
            kind: "blocker",
            message: format!(
                "Provisioning failed: {what}. Workspace archived to ~/.openclaw-archives/. Member status set to error."
            ),
        });
    }
    if let Some(channel) = &task.onboarding_channel_id {
        calls.push(Call::PostMessage {
            channel_id: channel.clone(),
            content: format!(
                "⚠️ Provisioning of {} failed: {what}. Everything was rolled back; the partial workspace is archived on the host.",
                task.handle
            ),
            intent: "error",
        });
    }
    calls
}

/// The plan as the WIT record `plan` returns.
pub fn to_record(p: &Provisioning, ctx: &Context) -> ProvisionPlan {
    let copy = |source: String, path: String| PlannedFile { path, action: "copy".into(), mode: 0, size: 0, source: Some(source), secret: false };
    let files = p
        .files
        .iter()
        .flat_map(|(_, op)| match op {
            FileOp::Dir { path, mode } => vec![PlannedFile { path: path.clone(), action: "dir".into(), mode: *mode, size: 0, source: None, secret: false }],
            FileOp::Write { path, mode, contents, secret } => vec![PlannedFile {
                path: path.clone(),
                action: "file".into(),
                mode: *mode,
                size: contents.len() as u64,
                source: None,
                secret: *secret,
            }],
            FileOp::Credentials { key, path, .. } => vec![PlannedFile {
                path: path.clone(),
                action: "file".into(),
                mode: 0o600,
                size: 0,
                source: Some(match key {
                    Some(_) => "the task's llmApiKey, written by the host".into(),
                    None => "the lead's key for this provider only, written by the host".into(),
                }),
                secret: true,
            }],
            FileOp::LeadPlugins { relative, .. } => relative.iter().map(|r| copy(join(&ctx.lead_home, r), join(&p.layout.root, r))).collect(),
        })
        .collect();
    let command = format!("{} --profile {} gateway run --port {}", ctx.openclaw_bin, p.task.handle, p.port);
    let logs = p.layout.stdout_log.rsplit_once('/').map_or("", |(dir, _)| dir);
    let services = vec![
        PlannedService { action: "install".into(), label: p.label.clone(), detail: format!("{command} (logs in {logs})") },
        PlannedService { action: "start".into(), label: p.label.clone(), detail: format!("{} backend", ctx.service_backend.name()) },
        PlannedService {
            action: "wait".into(),
            label: p.label.clone(),
            detail: format!("until http://127.0.0.1:{}/healthz answers 200 (at most {} s)", p.port, ctx.timing.health_timeout_ms / 1000),
        },
    ];
    let url = |call: &Call| format!("{}/api/v1{}", ctx.api_url, call.request().1);
    let planned = |call: &Call, purpose: &str| PlannedCall {
        method: call.request().0.as_str().into(),
        url: url(call),
        body: Some(call.request().2.to_string()),
        purpose: purpose.into(),
    };
    let (create, members) = vault_calls(p, "<vault-id>");
    let mut calls = vec![planned(&create, "vault")];
    calls.extend(members.iter().map(|c| planned(c, "vault")));
    calls.extend(report_calls(p, true, &ctx.host_name).iter().map(|c| planned(c, "report")));
    calls.extend(rollback_calls(&journal(p, String::new()), "<reason>").iter().map(|c| planned(c, "rollback, only on failure")));
    let mut warnings = p.warnings.clone();
    warnings.extend(p.conflicts.iter().map(|c| format!("port conflict: {c}; provision will refuse unless --auto-port is given")));
    ProvisionPlan {
        handle: p.task.handle.clone(),
        oc_home: p.layout.root.clone(),
        port: p.port,
        label: p.label.clone(),
        files,
        services,
        calls,
        warnings,
        timings: p.timings.clone(),
    }
}

/// Applies one file operation.
pub fn apply(caps: &Caps, op: &FileOp) -> Result<(), FsError> {
    match op {
        FileOp::Dir { path, mode } => caps.files.create_dir_all(path, *mode),
        FileOp::Write { path, mode, contents, .. } => caps.files.write_atomic(path, contents, *mode),
        FileOp::Credentials { handle, provider, layout, key, .. } => {
            caps.files.write_credentials(handle, provider, *layout, key.as_ref().map(Secret::expose)).map(|_| ())
        }
        FileOp::LeadPlugins { handle, .. } => caps.files.copy_lead_plugins(handle).map(|_| ()),
    }
}
