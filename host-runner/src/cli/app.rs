//! From command-line arguments to a finished command: set the sandbox up
//! ([`crate::cli::setup`]), load the component, run it, render the answer.

use crate::runtime::bindings::commands::{CommandError, FieldError};
use crate::cli::args::{Cli, Command, SkillCommand, SkillInstallArgs};
use crate::output::{self, EXIT_FAILED, EXIT_INVALID, Rendered};
use crate::output::contract::{Error, Output, SkillFile, SkillReport};
use crate::runtime::{self, Limits, Sandbox};
use crate::sys::secret;
use crate::cli::setup::{Prepared, SetupError, prepare};
use crate::cli::skill::Skill;
use crate::{cli::paths, runtime::engine};
use anyhow::{Context as _, Result};

/// Runs the command and returns what to print and the exit code.
pub fn run(cli: Cli) -> Rendered {
    let name = cli.command.name();
    let as_json = cli.global.json;
    if let Command::Schema = &cli.command {
        return Rendered::text(crate::output::contract::schema(), output::EXIT_OK);
    }
    if let Command::Supervise(args) = &cli.command {
        let exit_code = crate::caps::service::supervise(&args.services, &args.label);
        return Rendered::text(String::new(), exit_code);
    }
    if let Command::Skill(SkillCommand::Install(args)) = &cli.command {
        return match skill(&cli.global, args) {
            Ok(rendered) => rendered,
            Err(e) => output::host_error(name, EXIT_FAILED, &format!("{e:#}"), as_json),
        };
    }
    if let Command::Provision(p) = &cli.command {
        match crate::cli::batch::tasks(p) {
            Err(message) => return output::command_error(name, &CommandError::InvalidInput(FieldError { field: "task".into(), message }), as_json),
            Ok(Some(tasks)) => return crate::cli::batch::run(name, p, tasks, cli.global.deadline, as_json),
            Ok(None) => {}
        }
    }
    match prepare(&cli) {
        Err(SetupError::Environment(e)) => output::host_error(name, EXIT_INVALID, &format!("{e:#}"), as_json),
        Err(SetupError::Task(e)) => output::command_error(name, &e, as_json),
        Ok(None) => Rendered::text(String::new(), output::EXIT_OK),
        Ok(Some(prepared)) => match execute(&cli, prepared) {
            Ok(answer) => output::render(name, &answer, as_json),
            Err(e) => output::host_error(name, EXIT_FAILED, &format!("{e:#}"), as_json),
        },
    }
}

/// `skill install [--check]`.
fn skill(g: &crate::cli::args::Global, args: &SkillInstallArgs) -> Result<Rendered> {
    let home = paths::home_dir(g)?;
    let lead_home = paths::lead_home(g, &home)?;
    let bin_dir = if args.no_bin_link { None } else { Some(args.bin_dir.clone().unwrap_or_else(|| home.join(".local/bin"))) };
    let skill = Skill::new(&lead_home, bin_dir, cache(g, &home));
    let items = if args.check { skill.check()? } else { skill.install()? };
    let current = items.iter().all(|i| matches!(i.state, "current" | "installed" | "updated" | "unchanged" | "removed"));
    let exit_code = if current { output::EXIT_OK } else { EXIT_FAILED };
    if g.json {
        let files = items.iter().map(|i| SkillFile { path: i.path.clone(), state: i.state.to_string() }).collect();
        let report = SkillReport { dir: skill.dir.display().to_string(), files };
        let error = (!current).then(|| Error::Host { message: format!("the skill in {} is not complete and current", report.dir) });
        return Ok(output::document("skill", exit_code, Output { skill: Some(report), error, ..Output::default() }));
    }
    let stdout = {
        let mut text = format!("skill {}: {}\n", skill.dir.display(), if current { "complete and current" } else { "not current" });
        items.iter().for_each(|i| text.push_str(&format!("  {:<10} {}\n", i.state, i.path)));
        text
    };
    Ok(Rendered::text(stdout, exit_code))
}

/// Where compiled components are cached (`--cache-dir`, or the default under `home`),
/// recorded in the host state of `home`.
fn cache(g: &crate::cli::args::Global, home: &std::path::Path) -> crate::runtime::component_cache::Cache {
    let dir = g.cache_dir.clone().unwrap_or_else(|| engine::default_cache_dir(home));
    crate::runtime::component_cache::Cache::new(dir, home.to_path_buf())
}

/// Loads the component (through the cache) and runs the command.
fn execute(cli: &Cli, prepared: Prepared) -> Result<runtime::Answer> {
    let g = &cli.global;
    let started = std::time::Instant::now();
    let engine = engine::engine()?;
    let custom;
    let wasm: &[u8] = match &g.component {
        Some(path) => {
            custom = std::fs::read(path).with_context(|| format!("reading --component {}", path.display()))?;
            &custom
        }
        None => engine::EMBEDDED_COMPONENT,
    };
    let cache = cache(g, &paths::home_dir(g)?);
    let engine_us = started.elapsed().as_micros();
    let (component, loaded) = engine::load(&engine, wasm, Some(&cache))?;
    let load_us = started.elapsed().as_micros() - engine_us;
    let sandbox = Sandbox::new(engine, component)?;
    let link_us = started.elapsed().as_micros() - engine_us - load_us;
    // The component gets what is left of the command's deadline.
    let limits = Limits { deadline: crate::runtime::deadline::remaining(), memory_bytes: g.memory_limit << 20 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ready_us = crate::PROCESS_START.get().map(|t| t.elapsed().as_micros()).unwrap_or_default();
    let (answer, call) = runtime.block_on(sandbox.run(prepared.caps, prepared.ctx, prepared.command, limits))?;
    if g.timings {
        let timings = serde_json::json!({
            "engine_us": engine_us,
            "component_load_us": load_us,
            "component": if loaded == engine::Loaded::Cached { "cached" } else { "compiled" },
            "link_us": link_us,
            "instantiate_us": call.instantiate_us,
            "first_guest_instruction_us": ready_us + call.instantiate_us,
            "call_us": call.call_us,
            "process_us": crate::PROCESS_START.get().map(|t| t.elapsed().as_micros()).unwrap_or_default(),
        });
        secret::eprint_line(&format!("timings: {timings}"));
    }
    Ok(answer)
}
