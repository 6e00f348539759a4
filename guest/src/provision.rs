//! Carrying out a provisioning plan: config, workspace, vault, service, health, report —
//! and on any failure in the first five, the spec's complete rollback.

use crate::caps::{Caps, Level, TreeStats};
use crate::commands::{CommandError, Context, Failure, FieldError, ProvisionOutcome, ProvisionRequest, RollbackStep, StepTime};
use crate::health;
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

/// What has been done so far, so a rollback undoes exactly that.
#[derive(Default)]
struct Done {
    home_created: bool,
    service_installed: bool,
}

/// A step that failed: which, and why.
struct StepError {
    step: &'static str,
    message: String,
}

/// Provisions a sibling. Invalid input and refusals change nothing; a failure in steps
/// 1-5 is rolled back completely; a failure to report leaves the healthy sibling running
/// and lists what was not reported.
pub fn provision(caps: &Caps, ctx: &Context, request: &ProvisionRequest) -> Result<ProvisionOutcome, CommandError> {
    let p = plan::build(caps, ctx, request)?;
    if !p.conflicts.is_empty() {
        return Err(CommandError::InvalidInput(FieldError {
            field: "gatewayPort".into(),
            message: format!("{}; pass --auto-port to use the next free port", p.conflicts.join("; ")),
        }));
    }
    let scrub = |text: &str| scrub(text, &p.secrets);
    let sesame = Sesame::new(caps.http, caps.clock, caps.progress, &ctx.api_url, retry_policy(ctx));
    let mut done = Done::default();
    let mut steps = Vec::new();
    let mut timed = |name: &'static str, caps: &Caps, f: &mut dyn FnMut() -> Result<(), StepError>| {
        caps.progress.emit(Level::Step, &format!("{name}: {}", step_words(name, &p)));
        let started = caps.clock.monotonic_ms();
        let result = f();
        steps.push(StepTime { step: name.into(), millis: caps.clock.monotonic_ms() - started });
        result
    };

    let mut vault = String::new();
    let mut healthy = None;
    let result: Result<(), StepError> = (|| {
        for step in [Step::Config, Step::Workspace] {
            let name = if step == Step::Config { "config" } else { "workspace" };
            timed(name, caps, &mut || write_files(caps, &p, step, &mut done))?;
        }
        timed("vault", caps, &mut || {
            vault = create_vault(&sesame, &p)?;
            Ok(())
        })?;
        timed("service", caps, &mut || {
            caps.services.install(&p.service).map_err(|e| fail("service", format!("installing {}: {}", p.label, e.message())))?;
            done.service_installed = true;
            caps.services.start(&p.label).map_err(|e| fail("service", format!("starting {}: {}", p.label, e.message())))
        })?;
        timed("health", caps, &mut || {
            let h = health::wait_healthy(caps, &p.label, p.port, &p.layout, &ctx.timing).map_err(|e| fail("health", e))?;
            healthy = Some(h);
            Ok(())
        })
    })();

    if let Err(e) = result {
        let message = scrub(&e.message);
        caps.progress.emit(Level::Warning, &format!("{} failed: {message}; rolling back", e.step));
        let (rollback, archive) = roll_back(caps, ctx, &p, &done, &message, &sesame);
        return Err(CommandError::Failed(Failure { step: e.step.into(), message, rollback, archive }));
    }
    let healthy = healthy.expect("the health step succeeded");
    let mut warnings = p.warnings.clone();
    if !healthy.sesame_authenticated {
        warnings.push(format!(
            "the gateway is up, but {} does not show `{}` yet",
            p.layout.stdout_log,
            health::SESAME_AUTHENTICATED
        ));
    }
    if let Err(e) = register(caps, ctx, &p) {
        warnings.push(format!("the sibling runs, but the family registry was not updated: {e}"));
    }
    caps.progress.emit(Level::Step, "report: telling Sesame the agent is online");
    let unreported: Vec<String> = plan::report_calls(&p, healthy.sesame_authenticated, &ctx.host_name)
        .iter()
        .filter_map(|call| sesame.send(call).err().map(|e| scrub(&e.to_string())))
        .collect();
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

fn fail(step: &'static str, message: String) -> StepError {
    StepError { step, message }
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

/// Writes the files of one step. The home must not exist yet: it is created here.
fn write_files(caps: &Caps, p: &Provisioning, step: Step, done: &mut Done) -> Result<(), StepError> {
    let name = if step == Step::Config { "config" } else { "workspace" };
    for op in p.files.iter().filter(|(s, _)| *s == step).map(|(_, op)| op) {
        if let FileOp::Dir { path, .. } = op {
            if *path == p.layout.root {
                if let Ok(Some(_)) = caps.files.metadata(path) {
                    return Err(fail(name, format!("{path} appeared while provisioning; not touching it")));
                }
                done.home_created = true;
            }
        }
        plan::apply(caps, op).map_err(|e| {
            let target = match op {
                FileOp::Dir { path, .. } | FileOp::Write { path, .. } => path.clone(),
                FileOp::Copy { source, destination } => format!("{source} -> {destination}"),
            };
            fail(name, format!("{target}: {}", e.message()))
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
        oc_home: p.layout.root.clone(),
        backend: ctx.service_backend.name().into(),
        label: p.label.clone(),
        created_at: timestamp::rfc3339(caps.clock.now_unix_ms()),
        status: "online".into(),
        task_id: p.task.task_id.clone(),
        onboarding_channel_id: p.task.onboarding_channel_id.clone(),
    });
    registry.save(caps.files, &lead)
}

/// The spec's rollback, in order: stop and remove the service; archive the partial home,
/// then remove it; member status `error`; activity `blocker`; an `error` message. Every
/// action runs even when an earlier one failed, and each is reported.
fn roll_back(
    caps: &Caps,
    ctx: &Context,
    p: &Provisioning,
    done: &Done,
    what: &str,
    sesame: &Sesame,
) -> (Vec<RollbackStep>, Option<String>) {
    let mut steps = Vec::new();
    let mut record = |action: &str, result: Result<String, String>| {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, scrub(&detail, &p.secrets)),
        };
        steps.push(RollbackStep { action: action.into(), ok, detail });
    };
    if done.service_installed {
        let stopped = caps.services.stop(&p.label).map_err(|e| e.message());
        let removed = caps.services.uninstall(&p.label).map_err(|e| e.message());
        record("remove the service", match (stopped, removed) {
            (_, Ok(())) => Ok(format!("{} stopped and removed", p.label)),
            (_, Err(e)) => Err(format!("{}: {e}", p.label)),
        });
    }
    let mut archive = None;
    if done.home_created {
        let result = archive_and_remove(caps, ctx, &p.task.handle, &p.layout.root);
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
    for call in plan::rollback_calls(&p.task, what) {
        let action = call.describe();
        record(&action, sesame.send(&call).map(|_| "sent".into()).map_err(|e| e.to_string()));
    }
    (steps, archive)
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
