//! Carrying out a provisioning plan: config, workspace, vault, service, health, report —
//! with a journal written around every step, and on any failure in the first five the
//! spec's complete rollback. An interrupted provision (its process killed) is finished by
//! `provision --resume` or undone by [`rollback_interrupted`].

use crate::caps::{Caps, Level, RunState, TreeStats};
use crate::commands::{
    CommandError, Context, Failure, FieldError, ProvisionOutcome, ProvisionRequest, RollbackOutcome, RollbackStep, StepTime,
};
use crate::health;
use crate::journal::{Journal, STEPS};
use crate::layout::{LeadLayout, archives_dir, join};
use crate::plan::{self, FileOp, Provisioning, Step};
use crate::registry::{Member, Registry};
use crate::secret::Secret;
use crate::sesame::{RetryPolicy, Sesame, vault_id};
use crate::timestamp;

/// Sesame retry bounds from the context.
pub fn retry_policy(ctx: &Context) -> RetryPolicy {
    RetryPolicy {
        timeout_ms: ctx.timing.api_timeout_ms,
        attempts: ctx.timing.api_attempts,
        backoff_ms: ctx.timing.api_backoff_ms,
    }
}

/// What exists of a provision, so a rollback undoes exactly that.
#[derive(Default)]
struct Done {
    home_created: bool,
    service_installed: bool,
}

impl Done {
    /// What is actually there for `journal` (a resumed or interrupted provision).
    fn observe(caps: &Caps, home: &str, journal: &Journal) -> Self {
        Done {
            home_created: matches!(caps.files.metadata(&naming::sibling_home(home, &journal.handle)), Ok(Some(_))),
            service_installed: caps.services.status(&naming::label(&journal.handle)).is_ok_and(|s| s.state != RunState::NotInstalled),
        }
    }
}

/// A step that failed: which, and why.
struct StepError {
    step: &'static str,
    message: String,
}

fn fail(step: &'static str, message: String) -> StepError {
    StepError { step, message }
}

/// Provisions a sibling (or resumes an interrupted provision). Invalid input and
/// refusals change nothing; a failure in steps 1-5 is rolled back completely; a failure
/// to report leaves the healthy sibling running and lists what was not reported.
pub fn provision(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    let p = plan::build(caps, ctx, request)?;
    if !p.conflicts.is_empty() {
        return Err(CommandError::InvalidInput(FieldError {
            field: "gatewayPort".into(),
            message: format!("{}; pass --auto-port to use the next free port", p.conflicts.join("; ")),
        }));
    }
    let lead = LeadLayout::new(&ctx.lead_home);
    let scrub = |text: &str| scrub(text, &p.secrets);
    let sesame = Sesame::new(caps.http, caps.clock, caps.progress, &ctx.api_url, retry_policy(ctx));
    let (mut journal, mut done) = match &p.resume_from {
        Some(j) => {
            caps.progress.emit(Level::Step, &format!("resuming the provision of {} from {}", j.handle, j.position()));
            (j.clone(), Done::observe(caps, &ctx.home, j))
        }
        None => (plan::journal(&p, timestamp::rfc3339(caps.clock.now_unix_ms())), Done::default()),
    };
    journal.save(caps.files, &lead).map_err(|message| {
        CommandError::Failed(Failure { step: "journal".into(), message, rollback: vec![], archive: None })
    })?;

    let mut steps = Vec::new();
    let mut vault = journal.vault_id.clone().unwrap_or_default();
    let mut healthy = None;
    let result: Result<(), StepError> = (|| {
        for step in &STEPS[..5] {
            let step = *step;
            if journal.is_done(step) && step != "health" {
                continue;
            }
            caps.progress.emit(Level::Step, &format!("{step}: {}", step_words(step, &p)));
            let started = caps.clock.monotonic_ms();
            journal.begin(step, caps.files, &lead).map_err(|e| fail(step, e))?;
            match step {
                "config" => write_files(caps, &p, Step::Config, &mut done)?,
                "workspace" => write_files(caps, &p, Step::Workspace, &mut done)?,
                "vault" => {
                    vault = create_vault(&sesame, &p)?;
                    journal.vault_id = Some(vault.clone());
                }
                "service" => {
                    caps.services.install(&p.service).map_err(|e| fail("service", format!("installing {}: {}", p.label, e.message())))?;
                    done.service_installed = true;
                    caps.services.start(&p.label).map_err(|e| fail("service", format!("starting {}: {}", p.label, e.message())))?;
                }
                _ => healthy = Some(health::wait_healthy(caps, &p.label, p.port, &p.layout, &ctx.timing).map_err(|e| fail("health", e))?),
            }
            journal.finish(step, caps.files, &lead).map_err(|e| fail(step, e))?;
            steps.push(StepTime { step: step.into(), millis: caps.clock.monotonic_ms() - started });
        }
        Ok(())
    })();

    if let Err(e) = result {
        let message = scrub(&e.message);
        caps.progress.emit(Level::Warning, &format!("{} failed: {message}; rolling back", e.step));
        let (rollback, archive) = roll_back(caps, ctx, &journal, &done, &message, &sesame, &p.secrets);
        return Err(CommandError::Failed(Failure { step: e.step.into(), message, rollback, archive }));
    }
    let healthy = healthy.expect("the health step ran");
    let mut warnings = p.warnings.clone();
    if !healthy.sesame_authenticated {
        warnings.push(format!("the gateway is up, but {} does not show `{}` yet", p.layout.stdout_log, health::SESAME_AUTHENTICATED));
    }
    if let Err(e) = register(caps, ctx, &p) {
        warnings.push(format!("the sibling runs, but the family registry was not updated: {e}"));
    }
    caps.progress.emit(Level::Step, "report: telling Sesame the agent is online");
    if let Err(e) = journal.begin("report", caps.files, &lead) {
        warnings.push(e);
    }
    let mut unreported = Vec::new();
    for call in plan::report_calls(&p, healthy.sesame_authenticated, &ctx.host_name) {
        let (method, path, _) = call.request();
        let key = format!("{} {path}", method.as_str());
        if journal.reported.contains(&key) {
            continue; // sent before this provision was interrupted
        }
        match sesame.send(&call) {
            Ok(_) => {
                if let Err(e) = journal.reported(key, caps.files, &lead) {
                    warnings.push(e);
                }
            }
            Err(e) => unreported.push(scrub(&e.to_string())),
        }
    }
    if let Err(e) = journal.remove(caps.files, &lead) {
        warnings.push(e);
    }
    Ok(ProvisionOutcome {
        handle: p.task.handle.clone(),
        oc_home: p.layout.root.clone(),
        port: p.port,
        label: p.label.clone(),
        vault_id: vault,
        sesame_authenticated: healthy.sesame_authenticated,
        unreported,
        warnings,
        steps,
    })
}

fn step_words(step: &str, p: &Provisioning) -> String {
    match step {
        "config" => format!("creating {}", p.layout.root),
        "workspace" => format!("writing {}", p.layout.workspace),
        "vault" => format!("creating vault {}", p.vault_name),
        "service" => format!("installing and starting {}", p.label),
        _ => format!("waiting for the gateway on port {}", p.port),
    }
}

/// Writes the files of one step. A new provision creates the home (it must not appear
/// meanwhile); a resumed one rewrites what may be partial (every write is atomic, and the
/// host's plugin copy replaces an earlier one).
fn write_files(caps: &Caps, p: &Provisioning, step: Step, done: &mut Done) -> Result<(), StepError> {
    let name = if step == Step::Config { "config" } else { "workspace" };
    let resuming = p.resume_from.is_some();
    let failed = |target: &str, e: crate::caps::FsError| fail(name, format!("{target}: {}", e.message()));
    for op in p.files.iter().filter(|(s, _)| *s == step).map(|(_, op)| op) {
        match op {
            FileOp::Dir { path, .. } if *path == p.layout.root && !resuming => {
                if let Ok(Some(_)) = caps.files.metadata(path) {
                    return Err(fail(name, format!("{path} appeared while provisioning; not touching it")));
                }
                done.home_created = true;
            }
            _ => {}
        }
        plan::apply(caps, op).map_err(|e| match op {
            FileOp::Dir { path, .. } | FileOp::Write { path, .. } | FileOp::Credentials { path, .. } => failed(path, e),
            FileOp::LeadPlugins { relative, .. } => failed(&format!("copying the lead's {} into {}", relative.join(", "), p.layout.root), e),
        })?;
    }
    Ok(())
}

fn create_vault(sesame: &Sesame, p: &Provisioning) -> Result<String, StepError> {
    let (create, _) = plan::vault_calls(p, "");
    let data = sesame.send(&create).map_err(|e| fail("vault", e.to_string()))?;
    let id = vault_id(&data).ok_or_else(|| fail("vault", format!("{}: the answer has no vault id", create.describe())))?;
    let (_, members) = plan::vault_calls(p, &id);
    for call in members {
        sesame.send(&call).map_err(|e| fail("vault", e.to_string()))?;
    }
    Ok(id)
}

fn register(caps: &Caps, ctx: &Context, p: &Provisioning) -> Result<(), String> {
    let lead = LeadLayout::new(&ctx.lead_home);
    let mut registry = Registry::load(caps.files, &lead)?;
    registry.upsert(Member {
        handle: p.task.handle.clone(),
        principal_id: p.task.principal_id.clone(),
        family_id: p.task.family_id.clone(),
        display_name: p.task.display_name.clone(),
        port: p.port,
        backend: ctx.service_backend.name().into(),
        created_at: timestamp::rfc3339(caps.clock.now_unix_ms()),
        status: "online".into(),
        task_id: p.task.task_id.clone(),
        onboarding_channel_id: p.task.onboarding_channel_id.clone(),
    });
    registry.save(caps.files, &lead)
}

/// The spec's rollback, in order: stop and remove the service; archive the partial home,
/// then remove it; member status `error`; activity `blocker`; an `error` message. Every
/// action runs even when an earlier one failed, and each is reported. The journal goes
/// last, once nothing is left to undo.
fn roll_back(
    caps: &Caps,
    ctx: &Context,
    journal: &Journal,
    done: &Done,
    what: &str,
    sesame: &Sesame,
    secrets: &[Secret],
) -> (Vec<RollbackStep>, Option<String>) {
    let mut steps = Vec::new();
    let mut record = |action: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, scrub(&detail, secrets)),
        };
        steps.push(RollbackStep { action: action.into(), ok, detail });
    };
    let label = &naming::label(&journal.handle);
    if done.service_installed {
        let _ = caps.services.stop(label);
        record("remove the service", match caps.services.uninstall(label) {
            Ok(()) => Ok(format!("{label} stopped and removed")),
            Err(e) => Err(format!("{label}: {}", e.message())),
        });
    }
    let mut archive = None;
    if done.home_created {
        let result = archive_and_remove(caps, ctx, &journal.handle, &naming::sibling_home(&ctx.home, &journal.handle));
        if let Ok(archived) = &result {
            archive = Some(archived.path.clone());
        }
        record("archive and remove the home", result.map(|a| {
            format!(
                "{} files, {} directories, {} bytes archived to {} ({} entries verified); home removed",
                a.stats.files, a.stats.directories, a.stats.bytes, a.path, a.entries
            )
        }));
    }
    for call in plan::rollback_calls(journal, what) {
        record(&call.describe(), sesame.send(&call).map(|_| "sent".into()).map_err(|e| e.to_string()));
    }
    let lead = LeadLayout::new(&ctx.lead_home);
    if let Err(e) = journal.remove(caps.files, &lead) {
        record("remove the journal", Err(e));
    }
    (steps, archive)
}

/// Undoes the interrupted provision of `handle` from its journal: whatever of its
/// service and home exists is removed (the home archived first), Sesame is told, and the
/// journal (and a registry entry, if it got that far) is removed.
pub fn rollback_interrupted(caps: &Caps, ctx: &Context, handle: &str) -> Result<RollbackOutcome, CommandError> {
    crate::task::validate_handle(handle, &ctx.lead_handles)
        .map_err(|message| CommandError::InvalidInput(FieldError { field: "handle".into(), message }))?;
    let lead = LeadLayout::new(&ctx.lead_home);
    let journal = Journal::load(caps.files, &lead, handle)
        .map_err(CommandError::Refused)?
        .ok_or_else(|| CommandError::Refused(format!("there is no interrupted provision of {handle} (no journal)")))?;
    let done = Done::observe(caps, &ctx.home, &journal);
    let sesame = Sesame::new(caps.http, caps.clock, caps.progress, &ctx.api_url, retry_policy(ctx));
    let position = journal.position();
    caps.progress.emit(Level::Step, &format!("rolling back the provision of {handle}, interrupted at {position}"));
    let (mut steps, archive) = roll_back(caps, ctx, &journal, &done, &format!("interrupted at {position}"), &sesame, &[]);
    let mut registry = Registry::load(caps.files, &lead).map_err(CommandError::Refused)?;
    if registry.remove(handle) {
        let result = registry.save(caps.files, &lead).map(|()| format!("{handle} removed"));
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        steps.push(RollbackStep { action: "remove the registry entry".into(), ok, detail });
    }
    Ok(RollbackOutcome { handle: handle.into(), interrupted_at: position, steps, archive })
}

/// A home archived and removed.
pub struct Archived {
    pub path: String,
    pub stats: TreeStats,
    /// Entries the re-read archive lists (files, directories and links).
    pub entries: usize,
}

/// Archives `root` to `~/.openclaw-archives/<handle>-YYYYmmdd-HHMMSS.tar.gz`, re-reads the
/// archive and checks it lists exactly what the tree holds, and only then removes `root`.
pub fn archive_and_remove(caps: &Caps, ctx: &Context, handle: &str, root: &str) -> Result<Archived, String> {
    let dir = archives_dir(&ctx.home);
    caps.files.create_dir_all(&dir, 0o700).map_err(|e| format!("creating {dir}: {}", e.message()))?;
    let stamp = timestamp::compact(caps.clock.now_unix_ms());
    let mut path = join(&dir, &format!("{handle}-{stamp}.tar.gz"));
    let mut n = 1;
    while let Ok(Some(_)) = caps.files.metadata(&path) {
        n += 1;
        path = join(&dir, &format!("{handle}-{stamp}-{n}.tar.gz"));
    }
    let tree = caps.files.walk_tree(root).map_err(|e| format!("listing {root}: {}", e.message()))?;
    let stats = caps.files.archive_tree(root, &path).map_err(|e| format!("archiving {root}: {}", e.message()))?;
    let listed = caps.files.list_archive(&path).map_err(|e| format!("re-reading {path}: {}", e.message()))?;
    let name = root.rsplit('/').next().unwrap_or(root);
    let mut expected: Vec<String> = std::iter::once(format!("{name}/")).chain(tree.iter().map(|e| format!("{name}/{e}"))).collect();
    let mut got = listed.clone();
    expected.sort();
    got.sort();
    if expected != got {
        return Err(format!(
            "the archive {path} does not match {root} ({} entries vs {}); the home was kept",
            got.len(),
            expected.len()
        ));
    }
    caps.files.remove_tree(root).map_err(|e| format!("removing {root}: {}", e.message()))?;
    Ok(Archived { path, stats, entries: listed.len() })
}

/// `text` with every secret replaced by `[secret]`.
pub fn scrub(text: &str, secrets: &[Secret]) -> String {
    secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.expose(), "[secret]"))
}
