//! What one run may name outside its files: the Sesame ids of its calls ([`RunIds`]) and
//! the local ports it may ask about ([`PortScope`]). The host reads them before the
//! component runs, from what it reads itself — the task text it passes on, the family
//! registry, a journal, the chosen archive's member record, the operator's flags — never
//! from anything the component says.
//!
//! The registry and journals are files the component may write (`<lead home>/agent-provisioner/`):
//! what they say binds a later run only to the siblings a provision of this lead recorded.

use crate::runtime::bindings::commands::{AdoptRequest, HealthRequest, ProvisionRequest, RestoreRequest};
use crate::caps::family::Claimable;
use crate::caps::ports::PortScope;
use crate::runtime::Command;
use crate::sys::safe_open::read_path;
use crate::caps::http::sesame_ids::RunIds;
use crate::cli::task_input::{TaskIds, task_ids, uuid};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The largest registry, journal or member record the host reads for the scope.
const MAX_RECORD: u64 = 16 << 20;
/// The most journals read for their port claims.
const MAX_JOURNALS: usize = 1000;

/// What a run may name outside its files.
pub struct RunScope {
    pub ids: RunIds,
    pub ports: PortScope,
    /// The sibling handle the component may claim.
    pub claimable: Claimable,
}

/// The scope of `command`, for a lead whose home is `lead_home`.
pub fn read(command: &Command, lead_home: &Path) -> RunScope {
    let family = Family::read(lead_home);
    let (ids, bases, window) = for_command(command, &family, lead_home);
    let known = family.members.iter().chain(&family.journals).filter_map(|r| r.port);
    RunScope { ids, ports: PortScope::new(known.chain(bases), window), claimable: claimable(command) }
}

/// A provision may claim only its task's handle; the other commands' host claims first.
fn claimable(command: &Command) -> Claimable {
    match command {
        Command::Provision(r) => task_ids(&r.task_json).handle.map_or(Claimable::Nothing, Claimable::Only),
        _ => Claimable::Any,
    }
}

/// The ids, the bases of its own sibling and the search window of `command`.
fn for_command(command: &Command, family: &Family, lead_home: &Path) -> (RunIds, Vec<u16>, Option<u16>) {
    let nothing = |why: &str| RunIds { source: why.into(), ..RunIds::default() };
    match command {
        Command::Plan(r) => (nothing("a plan, which sends nothing"), task_ids(&r.task_json).port.into_iter().collect(), window(r)),
        Command::Provision(r) => provision(r),
        Command::Deprovision(d) => (family.reports_on(&d.handle), vec![], None),
        Command::Rollback(h) => (journal(lead_home, h).map(|j| j.ids(&format!("the journal of {h}"))).unwrap_or_else(|| nothing("no journal")), vec![], None),
        Command::Restore(r) => restore(r),
        Command::AdoptPlan(r) => (nothing("an adoption plan, which sends nothing"), candidate_ports(r), Some(r.port_range_start)),
        Command::Adopt(r) => (adopt(r), candidate_ports(r), Some(r.port_range_start)),
        Command::Health(r) => (health(r, family), vec![], None),
        Command::Ports(start) => (nothing("`ports`, which sends nothing"), vec![], Some(*start)),
        Command::Start(_) | Command::Stop(_) | Command::Restart(_) | Command::Members => (nothing("a command that sends nothing"), vec![], None),
    }
}

/// `provision`: the task's ids. The vault is only ever one this run created: a resumed
/// provision whose vault step was done adds no member any more (the step creates the vault
/// and adds its members at once), so the vault id its journal — a file the component may
/// write — names is never trusted.
fn provision(request: &ProvisionRequest) -> (RunIds, Vec<u16>, Option<u16>) {
    let task = task_ids(&request.task_json);
    (from_task(&task), task.port.into_iter().collect(), window(request))
}

/// The ids a provision of `task` may name.
fn from_task(task: &TaskIds) -> RunIds {
    let mut ids = RunIds { creates_vault: true, source: "the task".into(), ..RunIds::default() };
    if let (Some(family), Some(principal)) = (&task.family, &task.principal) {
        ids.members.insert((family.clone(), principal.clone()));
    }
    ids.vault_principals.extend(task.principal.iter().chain(&task.human).cloned());
    ids.tasks.extend(task.task.clone());
    ids.channels.extend(task.onboarding_channel.iter().chain(&task.dm_channel).cloned());
    ids
}

fn window(request: &ProvisionRequest) -> Option<u16> {
    request.auto_port.then_some(request.port_range_start)
}

/// `restore`: the member in the chosen archive's record, and its port.
fn restore(request: &RestoreRequest) -> (RunIds, Vec<u16>, Option<u16>) {
    let path = PathBuf::from(format!("{}.member.json", request.archive.strip_suffix(".tar.gz").unwrap_or(&request.archive)));
    let record = read_json(&path).map(|v| Record::parse(&v));
    let source = format!("the member record {}", path.display());
    let ids = record.as_ref().map(|r| r.ids(&source)).unwrap_or_else(|| RunIds { source, ..RunIds::default() });
    let window = request.auto_port.then_some(request.port_range_start);
    (ids, record.and_then(|r| r.port).into_iter().collect(), window)
}

/// `adopt HANDLE`: the member the operator named with `--principal-id` and `--family-id`.
fn adopt(request: &AdoptRequest) -> RunIds {
    let mut ids = RunIds { source: "--principal-id and --family-id".into(), ..RunIds::default() };
    let named = |flag: &Option<String>| flag.as_deref().and_then(uuid);
    if let (Some(family), Some(principal)) = (named(&request.family_id), named(&request.principal_id)) {
        ids.members.insert((family, principal));
    }
    ids
}

fn candidate_ports(request: &AdoptRequest) -> Vec<u16> {
    request.candidates.iter().filter_map(|c| c.port).collect()
}

/// `health --report [--channel C]`: every registered member, and the operator's channel.
fn health(request: &HealthRequest, family: &Family) -> RunIds {
    if !request.report {
        return RunIds { source: "a health check without --report, which sends nothing".into(), ..RunIds::default() };
    }
    let mut ids = RunIds { source: "the family registry and --channel".into(), ..RunIds::default() };
    ids.members.extend(family.members.iter().map(Record::member));
    ids.channels.extend(request.channel.clone());
    ids
}

/// What the host reads of the family: its registered members and the journals of
/// provisions under way or interrupted.
struct Family {
    members: Vec<Record>,
    journals: Vec<Record>,
}

impl Family {
    fn read(lead_home: &Path) -> Self {
        let registry = read_json(&lead_home.join("agent-provisioner/family.json"));
        let siblings = registry.as_ref().and_then(|r| r.get("siblings")).and_then(Value::as_array);
        let members = siblings.into_iter().flatten().map(Record::parse).collect();
        let dir = lead_home.join("agent-provisioner/journal");
        let names = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned());
        let handles: Vec<String> = names.filter_map(|n| n.strip_suffix(".json").map(str::to_string)).filter(|h| naming::check_handle(h).is_ok()).take(MAX_JOURNALS).collect();
        let journals = handles.iter().filter_map(|h| journal(lead_home, h)).collect();
        Family { members, journals }
    }

    /// `deprovision HANDLE`: the registered member of that handle.
    fn reports_on(&self, handle: &str) -> RunIds {
        let source = format!("the registry entry of {handle}");
        match self.members.iter().find(|m| m.handle == handle) {
            Some(member) => member.ids(&source),
            None => RunIds { source, ..RunIds::default() },
        }
    }
}

/// The fields of a registry entry, journal or member record the scope needs.
#[derive(Debug, Default)]
struct Record {
    handle: String,
    family_id: String,
    principal_id: String,
    port: Option<u16>,
    task_id: Option<String>,
    onboarding_channel_id: Option<String>,
}

impl Record {
    fn parse(value: &Value) -> Self {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        Record {
            handle: text("handle").unwrap_or_default(),
            family_id: text("familyId").unwrap_or_default(),
            principal_id: text("principalId").unwrap_or_default(),
            port: value.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()),
            task_id: text("taskId"),
            onboarding_channel_id: text("onboardingChannelId"),
        }
    }

    fn member(&self) -> (String, String) {
        (self.family_id.clone(), self.principal_id.clone())
    }

    /// The ids a report on this member may name: its status, its task and its channel.
    fn ids(&self, source: &str) -> RunIds {
        let mut ids = RunIds { source: source.into(), ..RunIds::default() };
        ids.members.insert(self.member());
        ids.tasks.extend(self.task_id.clone());
        ids.channels.extend(self.onboarding_channel_id.clone());
        ids
    }
}

/// The journal of the provision of `handle`, if it has one (and the handle is valid).
fn journal(lead_home: &Path, handle: &str) -> Option<Record> {
    naming::check_handle(handle).ok()?;
    read_json(&lead_home.join(format!("agent-provisioner/journal/{handle}.json"))).map(|v| Record::parse(&v))
}

/// A JSON file the component may have written, read without following a link or waiting
/// on a FIFO, at most [`MAX_RECORD`] bytes; `None` when it is missing or unreadable.
fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&read_path(path, MAX_RECORD).ok()??).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead_with(registry: Value, journals: &[(&str, Value)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("agent-provisioner/journal")).unwrap();
        std::fs::write(dir.path().join("agent-provisioner/family.json"), registry.to_string()).unwrap();
        for (handle, journal) in journals {
            std::fs::write(dir.path().join(format!("agent-provisioner/journal/{handle}.json")), journal.to_string()).unwrap();
        }
        dir
    }

    fn deprovision(handle: &str) -> crate::runtime::bindings::commands::DeprovisionRequest {
        crate::runtime::bindings::commands::DeprovisionRequest { handle: handle.into(), without_archive: false }
    }

    fn member(handle: &str, family: &str, principal: &str, port: u16) -> Value {
        serde_json::json!({"handle": handle, "familyId": family, "principalId": principal, "port": port, "taskId": "task-7", "onboardingChannelId": "c-7"})
    }

    #[test]
    fn each_command_names_the_ids_the_host_read_for_it() {
        let lead = lead_with(
            serde_json::json!({"version": 1, "siblings": [member("nova", "f-1", "p-1", 20000), member("vega", "f-1", "p-2", 20200)]}),
            &[("luna", serde_json::json!({"handle": "luna", "familyId": "f-1", "principalId": "p-3", "port": 20400, "taskId": "task-3", "vaultId": "v-3"}))],
        );
        let scope = read(&Command::Deprovision(deprovision("vega")), lead.path());
        assert_eq!(scope.ids.members, [("f-1".into(), "p-2".into())].into());
        assert!(scope.ids.source.contains("registry entry of vega") && !scope.ids.creates_vault);
        assert!(read(&Command::Deprovision(deprovision("../nova")), lead.path()).ids.members.is_empty());
        let rollback = read(&Command::Rollback("luna".into()), lead.path()).ids;
        assert_eq!((rollback.tasks, rollback.members), (["task-3".into()].into(), [("f-1".into(), "p-3".into())].into()));
        let report = read(&Command::Health(HealthRequest { report: true, channel: Some("c-9".into()) }), lead.path()).ids;
        assert_eq!((report.members.len(), report.channels), (2, ["c-9".into()].into()));
        assert!(read(&Command::Health(HealthRequest { report: false, channel: None }), lead.path()).ids.members.is_empty());
        assert_eq!(read(&Command::Stop("nova".into()), lead.path()).ids.members.len(), 0);
    }

    #[test]
    fn a_provision_names_its_tasks_ids_and_never_its_journals_vault() {
        let lead = lead_with(serde_json::json!({"version": 1, "siblings": []}), &[("nova", serde_json::json!({"handle": "nova", "port": 18930, "vaultId": "v-9"}))]);
        let task = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/task.json")).unwrap();
        let request = |resume| ProvisionRequest { task_json: task.clone(), auto_port: false, port_range_start: 18790, resume };
        let ids = read(&Command::Provision(request(false)), lead.path()).ids;
        assert!(ids.creates_vault && ids.vaults.is_empty());
        assert_eq!(ids.vault_principals.len(), 2, "the sibling and the human");
        assert_eq!(ids.channels.len(), 2, "onboarding and dm");
        assert_eq!(ids.tasks, ["task-0001".into()].into());
        let resumed = read(&Command::Provision(request(true)), lead.path()).ids;
        assert!(resumed.creates_vault && resumed.vaults.is_empty(), "a journal the component may write names no vault of the run's");
        assert!(read(&Command::Plan(request(false)), lead.path()).ids.members.is_empty(), "a plan sends nothing");
    }
}
