//! Sandbox setup: from the command line to what one command runs with — the lead's
//! family lock (for the short commands that hold it throughout), the grants and capabilities, the banner that shows them, the component's
//! command and its context. Every grant derives from `--home` and `--lead-home`.

use crate::caps::access::Access;
use crate::record::audit::{Audit, Decision};
use crate::caps::adoption::{Adoption, LegacyServices};
use crate::runtime::bindings::commands::{self, AdoptRequest, Context, DeprovisionRequest, HealthRequest, ProvisionRequest, RestoreRequest, Timing};
use crate::runtime::bindings::{CredentialLayout, ServiceBackend, ServiceError};
use crate::cli::args::{Cli, Command, Global, Layout, Manager};
use crate::output::contract::Output;
use crate::lead::credentials::LeadKeys;
use crate::caps::family::{FamilyCap, LockScope};
use crate::caps::fs::{FsCap, LeadPlugins};
use crate::caps::fs::grants::{GrantConfig, Grants};
use crate::record::state::HostState;
use crate::caps::http::{HttpGate, Origin};
use crate::lead::lead_config::{self, LeadConfig};
use crate::lead::lead_env::LeadEnv;
use crate::output::{self, EXIT_FAILED};
use crate::cli::paths::{self, text};
use crate::caps::ports::PortsCap;
use crate::caps::progress::ProgressSink;
use crate::runtime::{self, Capabilities};
use crate::sys::secret;
use crate::caps::service::{self, ServiceCap, ServiceConfig};
use crate::cli::task_input::read_task;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// An error before the component ran (exit 2): bad options or environment, or a task
/// the host refuses to pass on.
pub enum SetupError {
    Environment(anyhow::Error),
    Task(commands::CommandError),
}

impl From<anyhow::Error> for SetupError {
    fn from(e: anyhow::Error) -> Self {
        SetupError::Environment(e)
    }
}

/// Everything needed to run the component.
pub struct Prepared {
    pub caps: Capabilities,
    pub ctx: Context,
    pub command: runtime::Command,
}

/// Where every grant derives from.
struct Homes {
    home: PathBuf,
    lead_home: PathBuf,
}

/// What the host reads from the lead's home itself; the component never sees the keys.
struct Lead {
    config: LeadConfig,
    keys: LeadKeys,
}

/// What this run derives from the options and the lead, for both the capabilities and
/// the component's context.
struct Run {
    backend: ServiceBackend,
    openclaw_bin: PathBuf,
    /// The sibling a `start` or `restart` may re-point to the operator's `--openclaw-bin`.
    repoint: Option<String>,
    lead_handles: Vec<String>,
    api_url: String,
    plugins: LeadPlugins,
}

/// The checks the capabilities are built on.
struct Guards {
    grants: Grants,
    services: ServiceCap,
    gate: HttpGate,
    adoption: Adoption,
}

/// Derives grants and capabilities; `None` when the command is done (`grants`).
pub fn prepare(cli: &Cli) -> Result<Option<Prepared>, SetupError> {
    let g = &cli.global;
    let home = paths::home_dir(g)?;
    let homes = Homes { lead_home: paths::lead_home(g, &home)?, home };
    // Short commands that change the family hold its lock throughout; the others take it
    // through the `family` capability, only around what must be serialised.
    let scope = cli.command.lock_scope();
    let lock = match scope {
        LockScope::Whole => Some(crate::caps::family::lock::acquire(&homes.lead_home, Duration::from_secs(g.lock_timeout))?),
        LockScope::OnDemand | LockScope::None => None,
    };
    start_deadline(cli);
    let lead = read_lead(&homes.lead_home)?;
    sesame_reachable(cli)?;
    let audit = open_audit(g, &homes.lead_home)?;
    let run = derive_run(cli, &homes, &lead.config)?;
    let guards = guards(cli, &homes, &run, &lead.config, &audit)?;
    let banner = banner(g, &homes.lead_home, &run, &lead, &guards, &audit);
    if matches!(cli.command, Command::Grants) {
        print_grants(banner, g.json);
        return Ok(None);
    }
    if !g.quiet && !g.no_banner {
        secret::eprint_line("agent-provisioner: sandbox grants:");
        banner.iter().for_each(|line| secret::eprint_line(&format!("  {line}")));
    }
    let Guards { grants, mut services, gate, mut adoption } = guards;
    adoption.recover(&mut services).map_err(|why| SetupError::Task(commands::CommandError::Refused(why)))?;
    let command = component_command(&cli.command, &homes, &audit, &adoption)?;
    let run_scope = crate::cli::run_scope::read(&command, &homes.lead_home);
    gate.bind_run(run_scope.ids);
    let ctx = context(cli, &homes, &run, &lead);
    let timeout = Duration::from_secs(g.lock_timeout);
    let mut family = FamilyCap::new(&homes.lead_home, scope, cli.command.name(), timeout, lock, run.lead_handles.clone(), audit.clone())
        .claiming(run_scope.claimable);
    claim_handle(&cli.command, &run.lead_handles, &mut family)?;
    let mut services = services.for_claim(family.claimed());
    program_ready(&cli.command, &mut services)?;
    let fs = FsCap::new(grants, audit.clone(), lead.config.sesame_key, run.plugins, lead.keys).adopting(adopting(&cli.command));
    let caps = Capabilities {
        fs: fs.without_archive(without_archive(&cli.command)).writing_credentials(cli.command.name(), family.claimed()),
        services,
        ports: PortsCap { audit: audit.clone(), scope: run_scope.ports },
        gate,
        progress: ProgressSink { quiet: g.quiet },
        family,
        adoption,
        audit,
    };
    Ok(Some(Prepared { caps, ctx, command }))
}

/// Before anything is written: a command that needs Sesame first (a provision) is refused
/// when its API origin cannot be reached ([`crate::caps::http::sesame_reach`]).
fn sesame_reachable(cli: &Cli) -> Result<(), SetupError> {
    if !crate::caps::http::sesame_reach::needed(&cli.command) {
        return Ok(());
    }
    let api_url = &cli.global.api_url;
    crate::caps::http::sesame_reach::check(&Origin::parse(api_url)?, api_url).map_err(|why| SetupError::Task(commands::CommandError::Refused(why)))
}

/// Starts the command's deadline (`--deadline`; for a command that holds the family lock
/// throughout, from once it is held): it
/// bounds the host's own waits and the component, and the watchdog ends the process with
/// the command's error output should a host call outlive it.
fn start_deadline(cli: &Cli) {
    let (name, as_json) = (cli.command.name(), cli.global.json);
    crate::runtime::deadline::start(Duration::from_secs(cli.global.deadline), move |limit| {
        let message = format!(
            "ran past its deadline of {} s inside a host call and was stopped; an interrupted provision can be finished with --resume or undone with `agent-provisioner rollback HANDLE`",
            limit.as_secs()
        );
        let rendered = output::host_error(name, EXIT_FAILED, &message, as_json);
        output::write_stdout(&rendered);
        std::process::exit(rendered.exit_code);
    });
}

/// Reads the lead's environment, config and provider keys, registering every secret
/// among them for scrubbing.
fn read_lead(lead_home: &Path) -> Result<Lead> {
    let lead_env = LeadEnv::read(lead_home, std::env::vars())?;
    lead_env.dotenv_values().for_each(|s| secret::register(&s));
    let config = lead_config::read(lead_home, &lead_env)?;
    let keys = LeadKeys::find(lead_home, &lead_env)?;
    config.sesame_key.iter().chain(keys.secrets()).for_each(secret::register);
    Ok(Lead { config, keys })
}

/// The audit log (`--audit`); it is scrubbed of every secret registered by then.
fn open_audit(g: &Global, lead_home: &Path) -> Result<Arc<Audit>> {
    Ok(Arc::new(match g.audit.as_deref() {
        Some("none") => Audit::stderr_only(),
        Some(path) => Audit::open(Path::new(path), g.verbose)?,
        None => Audit::open(&lead_home.join("logs/agent-provisioner-audit.jsonl"), g.verbose)?,
    }))
}

/// The service backend, the openclaw binary, the lead's handles, the API URL and the
/// lead plugins to copy.
fn derive_run(cli: &Cli, homes: &Homes, lead: &LeadConfig) -> Result<Run> {
    let g = &cli.global;
    let backend = match g.service_manager {
        Manager::Auto => service::detect(&g.systemctl)?,
        Manager::Launchd => ServiceBackend::Launchd,
        Manager::Systemd => ServiceBackend::Systemd,
        Manager::Direct => ServiceBackend::Direct,
    };
    let openclaw_bin = resolve_openclaw(g.openclaw_bin.as_deref(), cli.command.needs_openclaw())?;
    let lead_handles = naming::lead_handles(&text(&homes.lead_home), lead.handle.as_deref());
    let api_url = g.api_url.trim_end_matches('/').to_string();
    let plugins = LeadPlugins::found(&homes.lead_home, &g.copy_plugins, &g.copy_skills, &api_url);
    let repoint = match &cli.command {
        Command::Start(h) | Command::Restart(h) if g.openclaw_bin.is_some() => Some(h.handle.clone()),
        _ => None,
    };
    Ok(Run { backend, openclaw_bin, repoint, lead_handles, api_url, plugins })
}

/// The file grants, the service policy and the HTTP gate; the gate reaches the gateway
/// ports the service capability proves or grants.
fn guards(cli: &Cli, homes: &Homes, run: &Run, lead: &LeadConfig, audit: &Arc<Audit>) -> Result<Guards> {
    let g = &cli.global;
    let state = Arc::new(HostState::open(&homes.home)?);
    let gateway_ports = Arc::default();
    let config = ServiceConfig {
        backend: run.backend,
        home: homes.home.clone(),
        lead_home: homes.lead_home.clone(),
        lead_handles: run.lead_handles.clone(),
        openclaw_bin: run.openclaw_bin.clone(),
        repoint: run.repoint.clone(),
        launchctl: g.launchctl.clone(),
        systemctl: g.systemctl.clone(),
    };
    let legacy = LegacyServices {
        backend: run.backend,
        home: homes.home.clone(),
        launchctl: g.launchctl.clone(),
        systemctl: g.systemctl.clone(),
        uid: rustix::process::getuid().as_raw(),
    };
    let adoption = Adoption::new(adopting(&cli.command), &homes.lead_home, run.lead_handles.clone(), state.clone(), legacy, audit.clone());
    let access = shown_access(&cli.command);
    let services = ServiceCap::new(config, audit.clone(), state.clone(), Arc::clone(&gateway_ports))?.with_access(access);
    let grants = Grants::new(GrantConfig {
        home: homes.home.clone(),
        lead_home: homes.lead_home.clone(),
        lead_handles: run.lead_handles.clone(),
        state,
    })?
    .with_access(access);
    let origin = Origin::parse(&g.api_url)?;
    let gate = HttpGate::new(origin, lead.sesame_key.clone(), gateway_ports, audit.clone()).with_access(access);
    Ok(Guards { grants, services, gate, adoption })
}

/// What the capabilities of `command` may change: its own [`Command::access`]; `grants`,
/// which runs no component, shows what a command that changes the family gets (and the
/// banner's access line names the commands that get read-only grants instead).
fn shown_access(command: &Command) -> Access {
    match command {
        Command::Grants => Access::ReadWrite,
        _ => command.access(),
    }
}

/// One line per grant and per key the host holds, for the operator.
fn banner(g: &Global, lead_home: &Path, run: &Run, lead: &Lead, guards: &Guards, audit: &Audit) -> Vec<String> {
    let mut banner = vec![guards.grants.access().describe()];
    banner.extend(guards.grants.describe());
    banner.push(format!(
        "code: the host copies {} from {} into new siblings (allowlist: --copy-plugin {}, --copy-skill {})",
        if run.plugins.paths.is_empty() { "nothing".to_string() } else { run.plugins.paths.join(", ") },
        lead_home.display(),
        g.copy_plugins.join(","),
        g.copy_skills.join(",")
    ));
    banner.extend(guards.services.describe());
    banner.extend(guards.adoption.describe());
    banner.extend(guards.gate.describe());
    banner.push(format!(
        "limits: the component writes at most {} MiB and {} new entries per run; walk-tree lists at most {} entries, {} levels, {} MiB of names",
        crate::runtime::limits::WRITE_BUDGET.bytes >> 20,
        crate::runtime::limits::WRITE_BUDGET.entries,
        crate::caps::fs::MAX_WALK_ENTRIES,
        crate::caps::fs::MAX_WALK_DEPTH,
        crate::caps::fs::MAX_WALK_BYTES >> 20
    ));
    banner.push(match &lead.config.key_source {
        Some(source) => format!("lead Sesame key: held by the host, from {source}"),
        None => "lead Sesame key: none (set channels.sesame.apiKey or SESAME_API_KEY)".into(),
    });
    banner.push(match lead.keys.providers() {
        providers if providers.is_empty() => "lead provider keys: none to pass on (a task must give llmApiKey)".into(),
        providers => format!(
            "lead provider keys: held by the host, passed on only to a sibling that inherits one ({})",
            providers.iter().map(|p| format!("{p} from {}", lead.keys.get(p).expect("listed").1)).collect::<Vec<_>>().join("; ")
        ),
    });
    if let Some(path) = audit.path() {
        banner.push(format!("audit log: {}", path.display()));
    }
    banner
}

/// `grants`: the banner, as text or as the `grants` field of a `--json` document.
fn print_grants(banner: Vec<String>, as_json: bool) {
    let rendered = match as_json {
        true => output::document("grants", output::EXIT_OK, Output { grants: Some(banner), ..Output::default() }),
        false => output::Rendered::text(banner.iter().map(|line| format!("{line}\n")).collect(), output::EXIT_OK),
    };
    output::write_stdout(&rendered);
}

/// A command on one sibling (and `restore`) claims it before anything (the host may re-point its service
/// before the component runs): refused while another run works on it. An invalid handle
/// (or the lead's) is left to the component, which names it.
fn claim_handle(command: &Command, lead_handles: &[String], family: &mut FamilyCap) -> Result<(), SetupError> {
    use crate::runtime::bindings::openclaw::provisioner::family::Host as _;
    let handle = match command {
        Command::Start(h) | Command::Stop(h) | Command::Restart(h) | Command::Rollback(h) => &h.handle,
        Command::Deprovision(d) => &d.handle,
        Command::Restore(r) => &r.handle,
        Command::Adopt(a) if !command.access().is_read_only() => a.handle.as_ref().expect("clap requires it without --scan"),
        _ => return Ok(()),
    };
    if naming::check_sibling(handle, lead_handles).is_err() {
        return Ok(());
    }
    family.claim(handle.clone()).map_err(|why| SetupError::Task(commands::CommandError::Refused(format!("{why}; wait for it to end"))))
}

/// Before `start` or `restart` runs the component (which stops before it starts): the
/// program recorded with the sibling's service is still there and unchanged, or the
/// operator's `--openclaw-bin` replaces it. Refused with nothing changed otherwise.
fn program_ready(command: &Command, services: &mut ServiceCap) -> Result<(), SetupError> {
    let (Command::Start(h) | Command::Restart(h)) = command else { return Ok(()) };
    let Ok(handle) = naming::check_sibling(&h.handle, &[]).map(|()| h.handle.as_str()) else { return Ok(()) };
    services.program_ready(handle, &naming::label(handle)).map_err(|e| {
        let (ServiceError::Denied(why) | ServiceError::NotInstalled(why) | ServiceError::Failed(why)) = e;
        SetupError::Task(commands::CommandError::Refused(why))
    })
}

/// The component's command for a command that runs it.
fn component_command(command: &Command, homes: &Homes, audit: &Audit, adoption: &Adoption) -> Result<runtime::Command, SetupError> {
    Ok(match command {
        Command::Provision(p) => {
            let request = ProvisionRequest {
                task_json: read_task(p.single_task()).map_err(SetupError::Task)?,
                auto_port: p.auto_port,
                port_range_start: p.port_range_start,
                resume: p.resume,
            };
            if p.plan { runtime::Command::Plan(request) } else { runtime::Command::Provision(request) }
        }
        Command::Start(h) => runtime::Command::Start(h.handle.clone()),
        Command::Stop(h) => runtime::Command::Stop(h.handle.clone()),
        Command::Restart(h) => runtime::Command::Restart(h.handle.clone()),
        Command::Deprovision(d) => runtime::Command::Deprovision(DeprovisionRequest { handle: d.handle.clone(), without_archive: d.without_archive }),
        Command::Restore(r) => runtime::Command::Restore(restore_request(r, homes, audit)?),
        Command::Adopt(a) if command.access().is_read_only() => runtime::Command::AdoptPlan(adopt_request(a, adoption)),
        Command::Adopt(a) => runtime::Command::Adopt(adopt_request(a, adoption)),
        Command::Rollback(h) => runtime::Command::Rollback(h.handle.clone()),
        Command::Health(h) => runtime::Command::Health(HealthRequest { report: h.report, channel: h.channel.clone() }),
        Command::List => runtime::Command::Members,
        Command::Ports(p) => runtime::Command::Ports(p.range_start),
        Command::Grants | Command::Schema | Command::Skill(_) | Command::Supervise(_) => unreachable!("commands that do not run the component are handled before"),
    })
}

/// `restore`: the archive the operator named, or the newest of the handle; the choice is
/// audited.
fn restore_request(args: &crate::cli::args::RestoreArgs, homes: &Homes, audit: &Audit) -> Result<RestoreRequest, SetupError> {
    let handle = &args.handle;
    let archive = crate::caps::fs::restore::choice::choose(&homes.home, handle, args.archive.as_deref())
        .map_err(|why| SetupError::Task(commands::CommandError::Refused(why)))?;
    let archive = text(&archive);
    let why = if args.archive.is_some() { "the archive the operator named" } else { "the newest archive of the handle" };
    audit.record("restore", "choose-archive", &format!("{handle}: {archive}"), Decision::Allowed, why);
    Ok(RestoreRequest { handle: handle.clone(), archive, auto_port: args.auto_port, port_range_start: args.port_range_start })
}

/// The sibling an `adopt` run takes over (none for `--scan`, `--plan` and other commands).
fn adopting(command: &Command) -> Option<String> {
    match command {
        Command::Adopt(a) if !command.access().is_read_only() => a.handle.clone(),
        _ => None,
    }
}

/// The sibling whose home the operator has deprovision remove without an archive.
fn without_archive(command: &Command) -> Option<String> {
    match command {
        Command::Deprovision(d) if d.without_archive => Some(d.handle.clone()),
        _ => None,
    }
}

/// `adopt`: what the host found of every sibling home it did not make (and of the one
/// named, when that is none of them: its refusals say why).
fn adopt_request(args: &crate::cli::args::AdoptArgs, adoption: &Adoption) -> AdoptRequest {
    let mut candidates = adoption.candidates();
    if let Some(handle) = args.handle.as_ref().filter(|h| !candidates.iter().any(|c| &&c.handle == h)) {
        candidates.push(adoption.inspect(handle));
    }
    AdoptRequest {
        handle: args.handle.clone(),
        candidates,
        re_port: args.re_port,
        port_range_start: args.port_range_start,
        principal_id: args.principal_id.clone(),
        family_id: args.family_id.clone(),
        display_name: args.display_name.clone(),
    }
}

/// What the component is told about this host and run (no secret).
fn context(cli: &Cli, homes: &Homes, run: &Run, lead: &Lead) -> Context {
    let t = &cli.global.timing;
    Context {
        home: text(&homes.home),
        lead_home: text(&homes.lead_home),
        lead_handles: run.lead_handles.clone(),
        lead_plugins: run.plugins.paths.clone(),
        lead_provider_keys: lead.keys.providers(),
        lead_workspace_id: lead.config.workspace_id.clone(),
        api_url: run.api_url.clone(),
        host_name: rustix::system::uname().nodename().to_string_lossy().into_owned(),
        host_os: if cfg!(target_os = "macos") { "darwin" } else { std::env::consts::OS }.to_string(),
        host_arch: if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }.to_string(),
        openclaw_bin: text(&run.openclaw_bin),
        service_backend: run.backend,
        credential_layout: match &cli.command {
            Command::Provision(p) if p.credential_layout == Layout::Legacy => CredentialLayout::Legacy,
            _ => CredentialLayout::EnvFile,
        },
        timing: Timing {
            health_timeout_ms: t.health_timeout.saturating_mul(1000),
            health_interval_ms: t.health_interval_ms,
            probe_timeout_ms: t.probe_timeout_ms,
            api_timeout_ms: t.api_timeout_ms,
            api_attempts: t.api_attempts.max(1),
            api_backoff_ms: t.api_backoff_ms,
        },
    }
}

/// `--openclaw-bin` (which must exist), or `openclaw` found on PATH, required only by
/// commands that install a service.
fn resolve_openclaw(given: Option<&Path>, required: bool) -> Result<PathBuf> {
    let found = match given {
        Some(path) => Some(paths::absolute(path, "--openclaw-bin")?).filter(|p| p.is_file()),
        None => std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("openclaw")).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|candidate| candidate.is_file()),
    };
    match (found, given) {
        (Some(path), _) => Ok(path),
        (None, Some(path)) => bail!("--openclaw-bin {}: no such file", path.display()),
        (None, None) if required => bail!("`openclaw` is not on PATH; install OpenClaw or pass --openclaw-bin"),
        (None, None) => Ok(PathBuf::from("openclaw")),
    }
}
