//! Command-line arguments.

use crate::caps::access::Access;
use crate::caps::family::LockScope;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  done (provisioned, started, healthy, ...)
  1  failed part-way and rolled back (the message says what failed and what was undone)
  2  invalid input or refused; nothing was changed
  3  the agent is running, but reporting to Sesame failed after retries

Every file, service and HTTP decision of the sandbox is appended to the audit log
(--audit, default <lead home>/logs/agent-provisioner-audit.jsonl); denials are also printed.";

/// Provisions and manages sibling OpenClaw agents on this host, from a sandboxed
/// WebAssembly component that can reach only the OpenClaw homes, the sibling services
/// and the Sesame API.
#[derive(Debug, Parser)]
#[command(name = "agent-provisioner", version, after_help = EXIT_CODES, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Provision a sibling from a "Provision agent: ..." task (or show the plan); several
    /// tasks (or a directory of them) are provisioned side by side.
    Provision(ProvisionArgs),
    /// Start a sibling's gateway service.
    Start(HandleArg),
    /// Stop a sibling's gateway service.
    Stop(HandleArg),
    /// Stop, wait for the port to close, start, and wait for health.
    Restart(HandleArg),
    /// Stop and remove a sibling: its service, and its home (archived and verified first;
    /// refused, changing nothing, when the home cannot be archived).
    Deprovision(DeprovisionArgs),
    /// Bring a deprovisioned sibling back from its archive (default: the newest of HANDLE).
    Restore(RestoreArgs),
    /// Bring a sibling the original bash skill made under management: its config,
    /// credentials and service replaced by the host's, registered (`--scan` lists them).
    Adopt(AdoptArgs),
    /// Undo a provision that was interrupted (its process killed), from its journal.
    Rollback(HandleArg),
    /// Check every registered sibling's health, concurrently.
    Health(HealthArgs),
    /// List the registered siblings, checked against the disk.
    List,
    /// Show the ports each sibling's gateway claims and the next free base.
    Ports(PortsArgs),
    /// Print what the sandbox grants on this host, and exit.
    Grants,
    /// Print the JSON Schema every command's `--json` output follows, and exit.
    Schema,
    /// Install this tool as an OpenClaw skill into the lead's home.
    #[command(subcommand)]
    Skill(SkillCommand),
    /// The direct backend's supervisor of one gateway (started by the host itself).
    #[command(name = "__supervise", hide = true)]
    Supervise(SuperviseArgs),
}

impl Command {
    /// The command's name in output (`plan` for `provision --plan`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Provision(p) if p.plan => "plan",
            Command::Provision(_) => "provision",
            Command::Start(_) => "start",
            Command::Stop(_) => "stop",
            Command::Restart(_) => "restart",
            Command::Deprovision(_) => "deprovision",
            Command::Restore(_) => "restore",
            Command::Adopt(a) if a.changes_nothing() => "adopt-plan",
            Command::Adopt(_) => "adopt",
            Command::Rollback(_) => "rollback",
            Command::Health(_) => "health",
            Command::List => "list",
            Command::Ports(_) => "ports",
            Command::Grants => "grants",
            Command::Schema => "schema",
            Command::Skill(_) => "skill",
            Command::Supervise(_) => "__supervise",
        }
    }

    /// What it may change, decided here for every capability: `list`, `ports`, `grants`,
    /// `schema`, `health` without `--report`, `adopt --scan`, `adopt HANDLE --plan` and
    /// `provision --plan` only look ([`Access::ReadOnly`]).
    pub fn access(&self) -> Access {
        let only_looks = match self {
            Command::Provision(p) => p.plan,
            Command::Adopt(a) => a.changes_nothing(),
            Command::Health(h) => !h.report,
            Command::List | Command::Ports(_) | Command::Grants | Command::Schema => true,
            Command::Start(_) | Command::Stop(_) | Command::Restart(_) | Command::Deprovision(_) | Command::Restore(_) | Command::Rollback(_) => false,
            Command::Skill(_) | Command::Supervise(_) => false,
        };
        if only_looks { Access::ReadOnly(self.name()) } else { Access::ReadWrite }
    }

    /// How it holds the lead's family lock: short commands for the whole run; provision,
    /// start and restart (which wait for a gateway) only around what must be serialised;
    /// commands that change nothing (and `health --report`, which changes only Sesame) not
    /// at all.
    pub fn lock_scope(&self) -> LockScope {
        match self {
            _ if self.access().is_read_only() => LockScope::None,
            Command::Provision(_) | Command::Start(_) | Command::Restart(_) => LockScope::OnDemand,
            Command::Stop(_) | Command::Deprovision(_) | Command::Rollback(_) | Command::Restore(_) | Command::Adopt(_) => LockScope::Whole,
            Command::Health(_) | Command::List | Command::Ports(_) | Command::Grants | Command::Schema | Command::Skill(_) => LockScope::None,
            Command::Supervise(_) => LockScope::None,
        }
    }

    /// Whether it installs a gateway service running `openclaw`, which must then exist
    /// (`start` and `restart` run the program recorded when the service was installed).
    pub fn needs_openclaw(&self) -> bool {
        match self {
            Command::Provision(_) | Command::Adopt(_) => !self.access().is_read_only(),
            Command::Restore(_) => true,
            Command::Start(_) | Command::Restart(_) | Command::Stop(_) | Command::Deprovision(_) | Command::Rollback(_) => false,
            Command::Health(_) | Command::List | Command::Ports(_) | Command::Grants | Command::Schema | Command::Skill(_) => false,
            // It runs what the host's record names, never a program of its own choosing.
            Command::Supervise(_) => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The task: a file, or `-` for stdin. The whole task object, its notes object, or
    /// the notes string are all accepted. Repeat it, or name a directory (its `*.json`
    /// files, sorted), to provision several siblings at once, each in its own run: one
    /// report, each sibling's outcome separate, a failure rolls back only its own sibling.
    #[arg(long, value_name = "FILE|DIR|-", required = true)]
    pub task: Vec<String>,
    /// With several tasks: how many run at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Validate and print every file, service action and Sesame call; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// When the task's port is taken, use the next free one instead of failing.
    #[arg(long)]
    pub auto_port: bool,
    /// Finish a provision of this task that was interrupted (see `rollback` to undo it).
    #[arg(long, conflicts_with = "plan")]
    pub resume: bool,
    /// Where --auto-port starts looking for a free base port.
    #[arg(long, default_value_t = 18790, value_name = "PORT")]
    pub port_range_start: u16,
    /// Where provider keys go: `.env` (current OpenClaw) or the legacy auth.json layout.
    #[arg(long, value_enum, default_value_t = Layout::EnvFile)]
    pub credential_layout: Layout,
}

impl ProvisionArgs {
    /// The task of a provision of one (several go through [`crate::cli::batch`]).
    pub fn single_task(&self) -> &str {
        &self.task[0]
    }
}

#[derive(Debug, Subcommand)]
pub enum SkillCommand {
    /// Install or update `<lead home>/skills/agent-provisioner/` (SKILL.md, the component,
    /// the templates, the binary) and link the binary onto PATH. Idempotent.
    Install(SkillInstallArgs),
}

#[derive(Debug, Args)]
pub struct SkillInstallArgs {
    /// Only say whether the install is complete and current (exit 0) or not (exit 1).
    #[arg(long)]
    pub check: bool,
    /// Where to link `agent-provisioner` onto PATH [default: <home>/.local/bin].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Do not link the binary onto PATH.
    #[arg(long, conflicts_with = "bin_dir")]
    pub no_bin_link: bool,
}

/// What a supervisor supervises: the service `label` recorded in `services`.
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The direct backend's record directory (`<home>/.local/state/agent-provisioner/services`).
    #[arg(long, value_name = "DIR")]
    pub services: PathBuf,
    /// The service's label, `com.openclaw.<handle>`.
    #[arg(value_parser = service_label)]
    pub label: String,
}

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Where the search for the next free base starts.
    #[arg(long, default_value_t = 18790, value_name = "PORT")]
    pub range_start: u16,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The sibling's handle (its home is `<home>/.openclaw-<handle>`).
    #[arg(required_unless_present = "scan", conflicts_with = "scan")]
    pub handle: Option<String>,
    /// List every sibling home this host did not make, with what adopting it would change.
    #[arg(long)]
    pub scan: bool,
    /// Show every change adopting HANDLE would make; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// When its claimed ports overlap another sibling's (or its config names no port),
    /// move its gateway to the next clear base.
    #[arg(long)]
    pub re_port: bool,
    /// Where --re-port starts looking for a clear base.
    #[arg(long, default_value_t = 18790, value_name = "PORT")]
    pub port_range_start: u16,
    /// Its Sesame principal id (a uuid), for the family registry.
    #[arg(long, value_name = "UUID")]
    pub principal_id: Option<String>,
    /// Its Sesame family id (a uuid), for the family registry.
    #[arg(long, value_name = "UUID")]
    pub family_id: Option<String>,
    /// Its display name [default: the handle].
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
}

impl AdoptArgs {
    /// `--scan` and `--plan` only look.
    pub fn changes_nothing(&self) -> bool {
        self.scan || self.plan
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The sibling's handle.
    pub handle: String,
    /// The archive to restore, in `<home>/.openclaw-archives` [default: the newest of HANDLE].
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// When the sibling's port is taken, use the next free base port instead of refusing.
    #[arg(long)]
    pub auto_port: bool,
    /// Where --auto-port starts looking for a free base port.
    #[arg(long, default_value_t = 18790, value_name = "PORT")]
    pub port_range_start: u16,
}

#[derive(Debug, Args)]
pub struct HandleArg {
    /// The sibling's handle.
    pub handle: String,
}

#[derive(Debug, Args)]
pub struct DeprovisionArgs {
    /// The sibling's handle.
    pub handle: String,
    /// Remove the home without an archive: for a home deprovision refuses to archive (the
    /// refusal names this option). Its contents are lost; `restore` cannot bring it back.
    #[arg(long)]
    pub without_archive: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Set each member's status on Sesame (`online`/`error`).
    #[arg(long)]
    pub report: bool,
    /// With --report: post one summary message to this Sesame channel.
    #[arg(long, value_name = "CHANNEL_ID", requires = "report")]
    pub channel: Option<String>,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The user's home directory; every grant is derived from it [default: $HOME].
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The lead's OpenClaw home [default: <home>/.openclaw].
    #[arg(long, global = true, value_name = "DIR")]
    pub lead_home: Option<PathBuf>,
    /// The Sesame API origin.
    #[arg(long, global = true, default_value = "https://api.sesame.space", value_name = "URL")]
    pub api_url: String,
    /// The service manager that runs sibling gateways.
    #[arg(long, global = true, value_enum, default_value_t = Manager::Auto)]
    pub service_manager: Manager,
    /// The openclaw executable new services run [default: `openclaw` on PATH]. `start` and
    /// `restart` run the one recorded at provision; naming one there re-points the service.
    #[arg(long, global = true, value_name = "PATH")]
    pub openclaw_bin: Option<PathBuf>,
    /// The launchctl to use (tests use a recording stand-in).
    #[arg(long, global = true, default_value = "launchctl", value_name = "PATH")]
    pub launchctl: PathBuf,
    /// The systemctl to use (tests use a recording stand-in).
    #[arg(long, global = true, default_value = "systemctl", value_name = "PATH")]
    pub systemctl: PathBuf,
    /// The audit log, or `none` [default: <lead home>/logs/agent-provisioner-audit.jsonl].
    #[arg(long, global = true, value_name = "FILE|none")]
    pub audit: Option<String>,
    /// Print one JSON document on stdout (for the calling agent) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only warnings and denials on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Do not print the sandbox grants at the start (`grants` prints them).
    #[arg(long, global = true)]
    pub no_banner: bool,
    /// Print where the time went (engine, component load, instantiation, call) on stderr.
    #[arg(long, global = true)]
    pub timings: bool,
    /// Also print allowed capability decisions on stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Where the compiled component is cached [default: $XDG_CACHE_HOME or <home>/.cache].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run this component instead of the built-in one (same world; for testing).
    #[arg(long, global = true, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Wall-clock limit for the whole command, in seconds.
    #[arg(long, global = true, default_value_t = 600, value_name = "SECS")]
    pub deadline: u64,
    /// A lead plugin (`<lead home>/extensions/NAME`) the host copies into new siblings;
    /// repeat for several. The component cannot copy or write code itself.
    #[arg(long = "copy-plugin", global = true, default_value = "sesame", value_name = "NAME", value_parser = plugin_name)]
    pub copy_plugins: Vec<String>,
    /// A lead skill (`<lead home>/skills/NAME`) the host copies into new siblings.
    #[arg(long = "copy-skill", global = true, default_value = "sesame", value_name = "NAME", value_parser = plugin_name)]
    pub copy_skills: Vec<String>,
    /// How long to wait for another run that is changing the family, in seconds.
    #[arg(long, global = true, default_value_t = 600, value_name = "SECS")]
    pub lock_timeout: u64,
    /// Memory limit of the component, in MiB.
    #[arg(long, global = true, default_value_t = 256, value_name = "MIB")]
    pub memory_limit: usize,
    #[command(flatten)]
    pub timing: Timing,
}

/// Bounds and intervals (defaults follow the spec).
#[derive(Debug, Args)]
pub struct Timing {
    /// How long to wait for a new gateway to answer, in seconds.
    #[arg(long, global = true, default_value_t = 60, value_name = "SECS")]
    pub health_timeout: u32,
    /// Pause between health polls, in milliseconds.
    #[arg(long, global = true, default_value_t = 500, value_name = "MS")]
    pub health_interval_ms: u32,
    /// Timeout of one health probe, in milliseconds.
    #[arg(long, global = true, default_value_t = 2000, value_name = "MS")]
    pub probe_timeout_ms: u32,
    /// Timeout of one Sesame request, in milliseconds.
    #[arg(long, global = true, default_value_t = 15000, value_name = "MS")]
    pub api_timeout_ms: u32,
    /// Attempts per Sesame request (429, 5xx and timeouts are retried).
    #[arg(long, global = true, default_value_t = 4, value_name = "N")]
    pub api_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt (Retry-After wins).
    #[arg(long, global = true, default_value_t = 500, value_name = "MS")]
    pub api_backoff_ms: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Manager {
    Auto,
    Launchd,
    Systemd,
    Direct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    EnvFile,
    Legacy,
}

/// A service label: `com.openclaw.<handle>` with a valid handle (so no `/` or `..`).
fn service_label(text: &str) -> Result<String, String> {
    naming::handle_of_label(text).map(|_| text.to_string()).ok_or_else(|| format!("{text:?} is not com.openclaw.<handle>"))
}

/// A plugin or skill name: the handle grammar (no `/`, no `..`).
fn plugin_name(text: &str) -> Result<String, String> {
    match naming::check_handle(text) {
        Ok(()) | Err(naming::HandleError::Reserved(_)) => Ok(text.to_string()),
        Err(why) => Err(format!("{text:?} {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed_and_documents_exit_codes() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  the agent is running"), "{help}");
        assert!(!help.contains("supervise"), "the supervisor's mode is not offered: {help}");
        assert!(Cli::try_parse_from(["agent-provisioner", "__supervise", "--services", "/s", "com.openclaw.../x"]).is_err());
    }

    #[test]
    fn provision_takes_the_task_from_stdin() {
        let cli = Cli::try_parse_from(["agent-provisioner", "--home", "/h", "provision", "--task", "-", "--plan", "--json"]).unwrap();
        match &cli.command {
            Command::Provision(p) => assert!(p.plan && p.task == ["-"]),
            other => panic!("{other:?}"),
        }
        assert!(cli.global.json);
        assert_eq!(cli.command.name(), "plan");
        assert!(cli.command.lock_scope() == LockScope::None && !cli.command.needs_openclaw(), "a plan changes nothing");
    }

    #[test]
    fn provision_takes_several_tasks() {
        let cli = Cli::try_parse_from(["agent-provisioner", "provision", "--task", "a.json", "--task=b.json", "--jobs", "2"]).unwrap();
        let Command::Provision(p) = &cli.command else { panic!("provision") };
        assert_eq!((p.task.as_slice(), p.jobs), (&["a.json".to_string(), "b.json".to_string()][..], 2));
        assert!(Cli::try_parse_from(["agent-provisioner", "provision"]).is_err(), "a task is required");
        assert!(Cli::try_parse_from(["agent-provisioner", "provision", "--task", "a", "--jobs", "0"]).is_err());
    }

    #[test]
    fn the_commands_that_only_look_are_read_only() {
        for (args, read_only) in [
            (&["list"][..], true),
            (&["health"], true),
            (&["health", "--report"], false),
            (&["ports"], true),
            (&["grants"], true),
            (&["schema"], true),
            (&["adopt", "--scan"], true),
            (&["adopt", "nova", "--plan"], true),
            (&["adopt", "nova"], false),
            (&["provision", "--task", "t", "--plan"], true),
            (&["provision", "--task", "t"], false),
            (&["start", "nova"], false),
            (&["deprovision", "nova"], false),
            (&["restore", "nova"], false),
            (&["skill", "install"], false),
        ] {
            let command = Cli::try_parse_from(["agent-provisioner"].iter().chain(args)).unwrap().command;
            let expected = if read_only { Access::ReadOnly(command.name()) } else { Access::ReadWrite };
            assert_eq!(command.access(), expected, "{args:?}");
            if read_only {
                assert!(command.lock_scope() == LockScope::None && !command.needs_openclaw(), "{args:?}");
            }
        }
    }

    #[test]
    fn each_command_says_how_it_holds_the_family_lock_and_whether_it_runs_openclaw() {
        for (args, name, scope, runs) in [
            (&["provision", "--task", "t"][..], "provision", LockScope::OnDemand, true),
            (&["start", "nova"], "start", LockScope::OnDemand, false),
            (&["restart", "nova"], "restart", LockScope::OnDemand, false),
            (&["stop", "nova"], "stop", LockScope::Whole, false),
            (&["deprovision", "nova"], "deprovision", LockScope::Whole, false),
            (&["rollback", "nova"], "rollback", LockScope::Whole, false),
            (&["restore", "nova", "--auto-port"], "restore", LockScope::Whole, true),
            (&["health"], "health", LockScope::None, false),
            (&["list"], "list", LockScope::None, false),
            (&["ports"], "ports", LockScope::None, false),
            (&["grants"], "grants", LockScope::None, false),
            (&["__supervise", "--services", "/s", "com.openclaw.nova"], "__supervise", LockScope::None, false),
        ] {
            let command = Cli::try_parse_from(["agent-provisioner"].iter().chain(args)).unwrap().command;
            assert_eq!((command.name(), command.lock_scope(), command.needs_openclaw()), (name, scope, runs), "{args:?}");
        }
    }
}
