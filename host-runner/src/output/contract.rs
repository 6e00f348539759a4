//! The agent-facing contract: what `--json` prints, as types of its own.
//!
//! Every command prints one [`Output`] document. Keys are `snake_case`; enumerated values
//! are lowercase `kebab-case` (`running`, `not-installed`, `invalid-input`). The types are
//! converted from the component's WIT records here, so renaming a WIT field cannot silently
//! change what agents read; `agent-provisioner schema` prints the JSON Schema derived from
//! them, which is kept in the repository as `schema/output.schema.json`. The types also
//! read documents back: a `provision` of several tasks collects its runs' documents.

use crate::runtime::bindings::commands as wit;
use crate::runtime::bindings::{RunState as WitRunState, TreeStats};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One command's result: `ok` with the command's own field, or `error`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The command: `plan`, `provision`, `start`, `stop`, `restart`, `deprovision`,
    /// `restore`, `adopt`, `adopt-plan`, `rollback`, `health`, `list`, `ports`, `grants`,
    /// `skill`.
    pub command: String,
    /// The command did what was asked; for several tasks, every task's run did.
    pub ok: bool,
    /// The process's exit code: 0 done, 1 failed and rolled back, 2 invalid or refused,
    /// 3 running but not reported to Sesame. For several tasks, the worst of theirs: 1
    /// over 2 over 3 over 0.
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortReport>,
    /// `adopt --scan` / `adopt HANDLE --plan`: what adopting each sibling would change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adoptions: Option<Vec<AdoptionPlan>>,
    /// `grants`: one line per grant, as the banner shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<SkillReport>,
    /// `provision` (or `plan`) of several tasks: each task's own document, in the order
    /// the tasks were given. Each sibling's outcome or error is there, not at the top.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskOutput>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// One task of a `provision` of several: the task file and the document its run printed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOutput {
    /// The task file, as given (or found in a directory given).
    pub task: String,
    pub output: Output,
}

/// Why a command did not succeed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Error {
    /// A task field is not acceptable; nothing was changed (exit 2).
    InvalidInput { field: String, message: String },
    /// Refused (unknown handle, the lead itself, a foreign service...); nothing was changed (exit 2).
    Refused { message: String },
    /// Failed part-way and rolled back (exit 1).
    Failed { step: String, message: String, rollback: Vec<RollbackStep>, archive: Option<String> },
    /// The host could not run the command (bad option, environment, deadline...).
    Host { message: String },
}

/// Whether a service runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Stopped,
    NotInstalled,
    /// Nothing restarts it any more: the service manager gave up, or (direct backend) its
    /// supervisor is gone; the sibling's `problems` say why.
    Failed,
}

/// Everything a provision would do, in order.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub handle: String,
    pub oc_home: String,
    pub port: u16,
    pub label: String,
    pub files: Vec<PlannedFile>,
    pub services: Vec<PlannedService>,
    pub calls: Vec<PlannedCall>,
    pub warnings: Vec<String>,
    pub timings: Vec<PhaseTime>,
}

/// One file-system effect of a plan.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedFile {
    pub path: String,
    /// `dir`, `file` or `copy`.
    pub action: String,
    pub mode: u32,
    /// Bytes written (0 for directories, copies and files the host renders).
    pub size: u64,
    pub source: Option<String>,
    /// The contents hold a secret (never shown).
    pub secret: bool,
}

/// One service action of a plan.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedService {
    pub action: String,
    pub label: String,
    pub detail: String,
}

/// One Sesame request of a plan (secrets masked).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedCall {
    pub method: String,
    pub url: String,
    pub body: Option<String>,
    pub purpose: String,
}

/// How long a planning phase took.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseTime {
    pub phase: String,
    pub micros: u64,
}

/// What a provision, lifecycle command, restore or rollback did.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Outcome {
    Provision(ProvisionOutcome),
    Lifecycle(LifecycleOutcome),
    Restore(RestoreOutcome),
    Adopt(AdoptOutcome),
    Rollback(RollbackOutcome),
}

/// A provisioned sibling.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionOutcome {
    pub handle: String,
    pub oc_home: String,
    pub port: u16,
    pub label: String,
    pub vault_id: String,
    pub sesame_authenticated: bool,
    /// Reports to Sesame that failed after retries (non-empty: exit 3).
    pub unreported: Vec<String>,
    pub warnings: Vec<String>,
    pub steps: Vec<StepTime>,
}

/// How long a provision step took.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepTime {
    pub step: String,
    pub millis: u64,
}

/// A lifecycle command's result.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleOutcome {
    pub handle: String,
    pub label: String,
    /// `start`, `stop`, `restart` or `deprovision`.
    pub action: String,
    pub state: RunState,
    pub pid: Option<u32>,
    /// Deprovision: the verified archive and what it holds.
    pub archive: Option<String>,
    pub archived: Option<Archived>,
    pub unreported: Vec<String>,
    pub warnings: Vec<String>,
}

/// What an archive holds.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Archived {
    pub files: u32,
    pub directories: u32,
    pub bytes: u64,
}

/// A sibling restored from its archive.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreOutcome {
    pub handle: String,
    pub oc_home: String,
    pub port: u16,
    pub label: String,
    /// The archive it came from, left as it was.
    pub archive: String,
    /// What the host put back from the archive.
    pub restored: Archived,
    /// What of the archive the host left out (where OpenClaw loads code from, and its
    /// scratch directory `tmp/`), with entry counts: `extensions/ (12 entries)`.
    pub left_out: Vec<String>,
    /// The lead's plugins and skills the host copied in again.
    pub plugins: Vec<String>,
    pub sesame_authenticated: bool,
    /// Reports to Sesame that failed after retries (non-empty: exit 3).
    pub unreported: Vec<String>,
    pub warnings: Vec<String>,
}

/// What adopting one sibling the original skill made would change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptionPlan {
    pub handle: String,
    pub oc_home: String,
    /// The port its config names now.
    pub port: Option<u16>,
    /// The port it would run on (a new base with `--re-port`).
    pub new_port: Option<u16>,
    /// Every change, in order.
    pub changes: Vec<String>,
    /// Other siblings whose claimed ports overlap its own.
    pub overlaps: Vec<String>,
    /// Why `adopt HANDLE` would not go ahead as asked; empty when it would.
    pub blockers: Vec<String>,
}

/// A sibling adopted.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptOutcome {
    pub handle: String,
    pub oc_home: String,
    pub port: u16,
    /// The port it had, when `--re-port` moved it.
    pub previous_port: Option<u16>,
    pub label: String,
    /// Where its old service definition and config were archived.
    pub archive_dir: String,
    /// What the host moved of its legacy credentials.
    pub credentials: Vec<String>,
    pub changes: Vec<String>,
    pub sesame_authenticated: bool,
    /// Reports to Sesame that failed after retries (non-empty: exit 3).
    pub unreported: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `rollback` undid of an interrupted provision.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackOutcome {
    pub handle: String,
    pub interrupted_at: String,
    pub steps: Vec<RollbackStep>,
    pub archive: Option<String>,
}

/// One rollback action.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackStep {
    pub action: String,
    pub ok: bool,
    pub detail: String,
}

/// A family health check.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    pub siblings: Vec<SiblingHealth>,
    pub unreported: Vec<String>,
}

/// Health of one sibling.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiblingHealth {
    pub handle: String,
    pub port: u16,
    pub state: RunState,
    pub pid: Option<u32>,
    pub uptime_seconds: Option<u64>,
    pub restarts: Option<u32>,
    /// `/healthz` answered 200 within the probe timeout.
    pub healthy: bool,
    /// The probe's result in words (`200 OK`, `timed out`...).
    pub probe: String,
    pub probe_millis: u64,
    pub sesame_authenticated: bool,
    /// Where the registry disagrees with the disk.
    pub problems: Vec<String>,
}

/// A registered sibling.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub handle: String,
    pub display_name: String,
    pub principal_id: String,
    pub family_id: String,
    pub port: u16,
    pub oc_home: String,
    /// `launchd`, `systemd` or `direct`.
    pub backend: String,
    pub label: String,
    pub created_at: String,
    pub status: String,
    pub problems: Vec<String>,
}

/// What is taken, and the next base `--auto-port` would pick.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortReport {
    pub claims: Vec<PortClaim>,
    pub next_free: Option<u16>,
}

/// The ports one sibling's gateway claims.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortClaim {
    pub handle: String,
    pub base: u16,
    /// e.g. `18790-18792, 18801-18900`.
    pub ranges: String,
    /// Which of them something listens on now.
    pub listening: Vec<u16>,
    /// Held by the journal of a provision under way or interrupted, not by a registered
    /// sibling.
    pub pending: bool,
}

/// `skill install [--check]`: the skill directory and each file's state.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillReport {
    pub dir: String,
    pub files: Vec<SkillFile>,
}

/// One installed file of the skill.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillFile {
    pub path: String,
    /// `install`: `installed`, `updated`, `unchanged` or `removed` (an earlier version's
    /// file); `--check`: `current`, `missing`, `outdated` or `leftover`.
    pub state: String,
}

/// The JSON Schema of [`Output`], pretty-printed.
pub fn schema() -> String {
    let mut text = serde_json::to_string_pretty(&schemars::schema_for!(Output)).expect("schemas serialize");
    text.push('\n');
    text
}

impl From<WitRunState> for RunState {
    fn from(state: WitRunState) -> Self {
        match state {
            WitRunState::Running => RunState::Running,
            WitRunState::Stopped => RunState::Stopped,
            WitRunState::NotInstalled => RunState::NotInstalled,
            WitRunState::Failed => RunState::Failed,
        }
    }
}

impl From<&wit::CommandError> for Error {
    fn from(error: &wit::CommandError) -> Self {
        match error {
            wit::CommandError::InvalidInput(f) => Error::InvalidInput { field: f.field.clone(), message: f.message.clone() },
            wit::CommandError::Refused(message) => Error::Refused { message: message.clone() },
            wit::CommandError::Failed(f) => Error::Failed {
                step: f.step.clone(),
                message: f.message.clone(),
                rollback: f.rollback.iter().map(RollbackStep::from).collect(),
                archive: f.archive.clone(),
            },
        }
    }
}

impl From<&wit::RollbackStep> for RollbackStep {
    fn from(s: &wit::RollbackStep) -> Self {
        RollbackStep { action: s.action.clone(), ok: s.ok, detail: s.detail.clone() }
    }
}

impl From<&wit::ProvisionPlan> for Plan {
    fn from(p: &wit::ProvisionPlan) -> Self {
        Plan {
            handle: p.handle.clone(),
            oc_home: p.oc_home.clone(),
            port: p.port,
            label: p.label.clone(),
            files: p
                .files
                .iter()
                .map(|f| PlannedFile { path: f.path.clone(), action: f.action.clone(), mode: f.mode, size: f.size, source: f.source.clone(), secret: f.secret })
                .collect(),
            services: p.services.iter().map(|s| PlannedService { action: s.action.clone(), label: s.label.clone(), detail: s.detail.clone() }).collect(),
            calls: p
                .calls
                .iter()
                .map(|c| PlannedCall { method: c.method.clone(), url: c.url.clone(), body: c.body.clone(), purpose: c.purpose.clone() })
                .collect(),
            warnings: p.warnings.clone(),
            timings: p.timings.iter().map(|t| PhaseTime { phase: t.phase.clone(), micros: t.micros }).collect(),
        }
    }
}

impl From<&wit::ProvisionOutcome> for ProvisionOutcome {
    fn from(o: &wit::ProvisionOutcome) -> Self {
        ProvisionOutcome {
            handle: o.handle.clone(),
            oc_home: o.oc_home.clone(),
            port: o.port,
            label: o.label.clone(),
            vault_id: o.vault_id.clone(),
            sesame_authenticated: o.sesame_authenticated,
            unreported: o.unreported.clone(),
            warnings: o.warnings.clone(),
            steps: o.steps.iter().map(|s| StepTime { step: s.step.clone(), millis: s.millis }).collect(),
        }
    }
}

impl From<&TreeStats> for Archived {
    fn from(t: &TreeStats) -> Self {
        Archived { files: t.files, directories: t.directories, bytes: t.bytes }
    }
}

impl From<&wit::LifecycleOutcome> for LifecycleOutcome {
    fn from(o: &wit::LifecycleOutcome) -> Self {
        LifecycleOutcome {
            handle: o.handle.clone(),
            label: o.label.clone(),
            action: o.action.clone(),
            state: o.state.into(),
            pid: o.pid,
            archive: o.archive.clone(),
            archived: o.archived.as_ref().map(Archived::from),
            unreported: o.unreported.clone(),
            warnings: o.warnings.clone(),
        }
    }
}

impl From<&wit::RestoreOutcome> for RestoreOutcome {
    fn from(o: &wit::RestoreOutcome) -> Self {
        RestoreOutcome {
            handle: o.handle.clone(),
            oc_home: o.oc_home.clone(),
            port: o.port,
            label: o.label.clone(),
            archive: o.archive.clone(),
            restored: Archived::from(&o.restored),
            left_out: o.left_out.clone(),
            plugins: o.plugins.clone(),
            sesame_authenticated: o.sesame_authenticated,
            unreported: o.unreported.clone(),
            warnings: o.warnings.clone(),
        }
    }
}

impl From<&wit::AdoptionPlan> for AdoptionPlan {
    fn from(p: &wit::AdoptionPlan) -> Self {
        AdoptionPlan {
            handle: p.handle.clone(),
            oc_home: p.oc_home.clone(),
            port: p.port,
            new_port: p.new_port,
            changes: p.changes.clone(),
            overlaps: p.overlaps.clone(),
            blockers: p.blockers.clone(),
        }
    }
}

impl From<&wit::AdoptOutcome> for AdoptOutcome {
    fn from(o: &wit::AdoptOutcome) -> Self {
        AdoptOutcome {
            handle: o.handle.clone(),
            oc_home: o.oc_home.clone(),
            port: o.port,
            previous_port: o.previous_port,
            label: o.label.clone(),
            archive_dir: o.archive_dir.clone(),
            credentials: o.credentials.clone(),
            changes: o.changes.clone(),
            sesame_authenticated: o.sesame_authenticated,
            unreported: o.unreported.clone(),
            warnings: o.warnings.clone(),
        }
    }
}

impl From<&wit::RollbackOutcome> for RollbackOutcome {
    fn from(o: &wit::RollbackOutcome) -> Self {
        RollbackOutcome {
            handle: o.handle.clone(),
            interrupted_at: o.interrupted_at.clone(),
            steps: o.steps.iter().map(RollbackStep::from).collect(),
            archive: o.archive.clone(),
        }
    }
}

impl From<&wit::HealthReport> for HealthReport {
    fn from(r: &wit::HealthReport) -> Self {
        let sibling = |s: &wit::SiblingHealth| SiblingHealth {
            handle: s.handle.clone(),
            port: s.port,
            state: s.state.into(),
            pid: s.pid,
            uptime_seconds: s.uptime_seconds,
            restarts: s.restarts,
            healthy: s.healthy,
            probe: s.probe.clone(),
            probe_millis: s.probe_millis,
            sesame_authenticated: s.sesame_authenticated,
            problems: s.problems.clone(),
        };
        HealthReport { siblings: r.siblings.iter().map(sibling).collect(), unreported: r.unreported.clone() }
    }
}

impl From<&wit::FamilyMember> for Member {
    fn from(m: &wit::FamilyMember) -> Self {
        Member {
            handle: m.handle.clone(),
            display_name: m.display_name.clone(),
            principal_id: m.principal_id.clone(),
            family_id: m.family_id.clone(),
            port: m.port,
            oc_home: m.oc_home.clone(),
            backend: m.backend.clone(),
            label: m.label.clone(),
            created_at: m.created_at.clone(),
            status: m.status.clone(),
            problems: m.problems.clone(),
        }
    }
}

impl From<&wit::PortReport> for PortReport {
    fn from(r: &wit::PortReport) -> Self {
        PortReport {
            claims: r
                .claims
                .iter()
                .map(|c| PortClaim {
                    handle: c.handle.clone(),
                    base: c.base,
                    ranges: c.ranges.clone(),
                    listening: c.listening.clone(),
                    pending: c.pending,
                })
                .collect(),
            next_free: r.next_free,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_in_the_repository_is_the_one_the_types_give() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/output.schema.json");
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(kept == schema(), "{} is out of date: run `agent-provisioner schema > schema/output.schema.json`", path.display());
    }

    #[test]
    fn one_casing_for_keys_and_values() {
        let output = Output {
            command: "stop".into(),
            ok: false,
            exit_code: 2,
            error: Some(Error::InvalidInput { field: "handle".into(), message: "m".into() }),
            ..Output::default()
        };
        let json = serde_json::to_value(&output).unwrap();
        assert_eq!(json["error"]["kind"], "invalid-input");
        assert_eq!(json["exit_code"], 2);
        assert!(json.get("plan").is_none(), "absent results are left out");
        assert_eq!(serde_json::to_value(RunState::NotInstalled).unwrap(), "not-installed");
    }
}
