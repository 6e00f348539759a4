//! The orchestration of a provision, over the fakes: the order of effects, resuming,
//! report de-duplication, and the rollback order.

use super::provision;
use crate::journal::{self, Journal, Step};
use crate::layout::LeadLayout;
use crate::registry::Registry;
use crate::rollback::rollback_interrupted;
use crate::testing::*;
use crate::wit::{CommandError, ProvisionOutcome, ServiceSpec};
use serde_json::json;

const ROOT: &str = "/h/.openclaw-nova";
const LABEL: &str = "com.openclaw.nova";
const JOURNAL: &str = "/h/.openclaw/agent-provisioner/journal/nova.json";

fn lead() -> LeadLayout {
    LeadLayout::new(LEAD_HOME)
}

fn run(world: &World, resume: bool) -> Result<ProvisionOutcome, CommandError> {
    provision(&world.caps(), &context(), &request(resume))
}

/// `METHOD /path` of every Sesame call so far.
fn sesame_lines(world: &World) -> Vec<String> {
    world.sesame_calls().into_iter().map(|(method, path, _)| format!("{method} {path}")).collect()
}

/// The report calls of the fixture task, in the order they are sent.
fn report_lines() -> Vec<String> {
    vec![
        format!("PATCH /families/{FAMILY}/members/{PRINCIPAL}"),
        "POST /tasks/task-42/activity".into(),
        "PATCH /tasks/task-42".into(),
        format!("POST /channels/{CHANNEL}/messages"),
    ]
}

#[test]
fn a_provision_runs_its_steps_in_order_each_journalled_first() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    let outcome = run(&world, false).unwrap();
    assert_eq!((outcome.vault_id.as_str(), outcome.port, outcome.label.as_str()), ("vault-1", 18930, LABEL));
    assert!(outcome.unreported.is_empty() && outcome.sesame_authenticated, "{:?}", outcome.unreported);
    let steps: Vec<&str> = outcome.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["config", "workspace", "vault", "service", "health"]);

    let t = &world.timeline;
    let order = [
        format!("write {JOURNAL}"),
        format!("mkdir {ROOT} 700"),
        format!("write {ROOT}/openclaw.json 600"),
        format!("write {ROOT}/.env 600"),
        format!("copy {LEAD_HOME}/extensions/sesame {ROOT}/extensions/sesame"),
        format!("write {ROOT}/workspace/AGENTS.md 644"),
        format!("POST {API}/vault/vaults"),
        format!("POST {API}/vault/vaults/vault-1/members"),
        format!("install {LABEL}"),
        format!("start {LABEL}"),
        "GET http://127.0.0.1:18930/healthz".into(),
        format!("write {}", lead().registry),
        format!("PATCH {API}/families/{FAMILY}/members/{PRINCIPAL}"),
        format!("POST {API}/channels/{CHANNEL}/messages"),
        format!("remove {JOURNAL}"),
    ];
    let positions: Vec<usize> = order.iter().map(|e| t.position(e)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "effects out of order: {:#?}", t.entries());
    assert_eq!(sesame_lines(&world)[3..], report_lines()[..]);
    let owner_and_admin: Vec<_> = world.sesame_calls()[1..3].iter().map(|(_, _, body)| body["role"].clone()).collect();
    assert_eq!(owner_and_admin, [json!("owner"), json!("admin")]);
    assert_eq!(world.fs.file(&format!("{ROOT}/.env")).as_deref(), Some("anthropic=sk-ant-lead\n"), "the lead's key, by the host");
    assert!(!world.fs.exists(JOURNAL));
    let registry = Registry::load(&world.fs, &lead()).unwrap();
    assert_eq!(registry.find("nova").map(|m| (m.port, m.status.as_str())), Some((18930, "online")));
}

/// The journal of a provision of the fixture task interrupted at `current`, after `done`.
fn interrupted(world: &World, done: &[Step], current: Option<Step>, reported: &[String]) {
    let task = crate::task::parse(&task_json(), &crate::task::TaskEnv { home: HOME, lead_home: LEAD_HOME, lead_handles: &[], resuming: true }, &world.fs).unwrap();
    let mut journal = Journal::start(&task, 18930, "2026-11-25T10:20:30Z".into());
    journal.done = done.to_vec();
    journal.current = current;
    journal.vault_id = done.contains(&Step::Vault).then(|| "vault-1".into());
    journal.reported = reported.to_vec();
    journal.save(&world.fs, &lead()).unwrap();
    world.fs.add_file(&format!("{ROOT}/openclaw.json"), "{}");
    if done.contains(&Step::Service) {
        crate::caps::Services::install(&world.services, &ServiceSpec { label: LABEL.into(), port: 18930 }).unwrap();
        crate::caps::Services::start(&world.services, LABEL).unwrap();
    }
}

#[test]
fn resuming_skips_the_completed_steps_and_checks_health_again() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    let done = [Step::Config, Step::Workspace, Step::Vault, Step::Service];
    interrupted(&world, &done, Some(Step::Health), &[]);
    world.timeline.clear();
    let outcome = run(&world, true).unwrap();
    let steps: Vec<&str> = outcome.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!((steps, outcome.vault_id.as_str()), (vec!["health"], "vault-1"));
    let effects = &world.timeline.entries();
    assert!(!effects.iter().any(|e| e.starts_with(&format!("write {ROOT}")) || e.starts_with(&format!("mkdir {ROOT}"))), "{effects:#?}");
    assert!(!effects.iter().any(|e| e.contains("/vault/vaults") || e.starts_with("install") || e.starts_with("start")), "{effects:#?}");
    assert_eq!(sesame_lines(&world), report_lines());
    assert!(world.progress.lines.borrow().iter().any(|l| l.contains("resuming the provision of nova from health (under way)")));
    assert!(!world.fs.exists(JOURNAL));
}

#[test]
fn resuming_does_not_send_report_calls_sesame_already_accepted() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    let accepted = report_lines()[..2].to_vec();
    interrupted(&world, &Step::UNDONE_ON_FAILURE, Some(Step::Report), &accepted);
    let outcome = run(&world, true).unwrap();
    assert!(outcome.unreported.is_empty());
    assert_eq!(sesame_lines(&world), report_lines()[2..]);
}

#[test]
fn report_calls_that_fail_are_listed_and_the_sibling_keeps_running() {
    let world = World::lead(sesame_and_gateways(&[&format!("POST /channels/{CHANNEL}/messages")], &[]));
    let outcome = run(&world, false).unwrap();
    assert_eq!(outcome.unreported.len(), 1, "{:?}", outcome.unreported);
    assert!(outcome.unreported[0].starts_with(&format!("POST /channels/{CHANNEL}/messages: HTTP 400")));
    assert!(world.services.running.borrow().contains(LABEL));
}

#[test]
fn a_failure_rolls_back_in_reverse_order_and_tells_sesame() {
    let world = World::lead(sesame_and_gateways(&[], &[18930]));
    world.services.exits_at_once.borrow_mut().insert(LABEL.into(), 1);
    let Err(CommandError::Failed(failure)) = run(&world, false) else { panic!("the provision should fail") };
    assert_eq!(failure.step, "health");
    let actions: Vec<&str> = failure.rollback.iter().map(|s| s.action.as_str()).collect();
    let calls: Vec<String> = [format!("PATCH /families/{FAMILY}/members/{PRINCIPAL}"), "POST /tasks/task-42/activity".into(), format!("POST /channels/{CHANNEL}/messages")].to_vec();
    assert_eq!(actions[..2], ["remove the service", "archive and remove the home"]);
    assert_eq!(actions[2..], calls.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    assert!(failure.rollback.iter().all(|s| s.ok), "{:?}", failure.rollback);

    let t = &world.timeline;
    let order = [
        format!("stop {LABEL}"),
        format!("uninstall {LABEL}"),
        format!("archive {ROOT} /h/.openclaw-archives/nova-"),
        format!("remove {ROOT}"),
        format!("PATCH {API}/families/{FAMILY}/members/{PRINCIPAL}"),
        format!("POST {API}/tasks/task-42/activity"),
        format!("POST {API}/channels/{CHANNEL}/messages"),
        format!("remove {JOURNAL}"),
    ];
    let positions: Vec<usize> = order.iter().map(|e| t.position(e)).collect();
    assert!(t.position(&format!("start {LABEL}")) < positions[0]);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "rollback out of order: {:#?}", t.entries());
    let error_status = &world.sesame_calls()[world.sesame_calls().len() - 3];
    assert_eq!(error_status.2, json!({"status": "error"}));
    assert!(failure.archive.as_deref().is_some_and(|a| world.fs.exists(a)) && !world.fs.exists(ROOT));
    assert!(Registry::load(&world.fs, &lead()).unwrap().find("nova").is_none());
}

#[test]
fn a_vault_failure_archives_the_home_and_never_installs_a_service() {
    let world = World::lead(sesame_and_gateways(&["POST /vault/vaults"], &[]));
    let Err(CommandError::Failed(failure)) = run(&world, false) else { panic!("the provision should fail") };
    assert_eq!(failure.step, "vault");
    assert!(failure.message.contains("POST /vault/vaults: HTTP 400"), "{}", failure.message);
    assert_eq!(failure.rollback[0].action, "archive and remove the home");
    assert!(!world.timeline.has("install") && !world.timeline.has("stop"));
}

#[test]
fn secrets_are_scrubbed_from_failure_messages() {
    let world = World::lead(FakeHttp::new(|_| json_response(400, json!({"error": "bad key sk_sesame_nova_0001"}))));
    let Err(CommandError::Failed(failure)) = run(&world, false) else { panic!("the provision should fail") };
    assert_eq!(failure.step, "vault");
    assert!(failure.message.ends_with("bad key [secret]"), "{}", failure.message);
    assert!(!format!("{failure:?}").contains("sk_sesame_nova_0001"));
}

#[test]
fn a_new_provision_is_refused_while_a_journal_exists_and_rollback_undoes_it() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    interrupted(&world, &[Step::Config, Step::Workspace, Step::Vault, Step::Service], Some(Step::Health), &[]);
    let Err(CommandError::Refused(why)) = run(&world, false) else { panic!("refused") };
    assert!(why.contains("interrupted at health (under way)") && why.contains("agent-provisioner rollback nova"), "{why}");
    let outcome = rollback_interrupted(&world.caps(), &context(), "nova").unwrap();
    assert_eq!(outcome.interrupted_at, "health (under way)");
    let t = &world.timeline;
    assert!(t.position(&format!("uninstall {LABEL}")) < t.position(&format!("archive {ROOT}")));
    assert!(!world.fs.exists(ROOT) && !world.fs.exists(&journal::path(&lead(), "nova")));
    let blocker = world.sesame_calls().into_iter().find(|(_, path, _)| path.ends_with("/activity")).unwrap();
    assert!(blocker.2["message"].as_str().unwrap().starts_with("Provisioning failed: interrupted at health (under way)."));
}

#[test]
fn only_admission_with_the_journal_the_service_and_the_registry_run_under_the_family_lock() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    run(&world, false).unwrap();
    let t = &world.timeline;
    assert_eq!(t.entries()[..2], ["lock", "claim nova"], "{:#?}", t.entries());
    assert!(t.locked(&format!("write {JOURNAL}"))[0], "the journal that claims the port is written under the lock");
    assert!(t.locked(&format!("write {JOURNAL}"))[1..].iter().all(|held| !held), "its later updates are not");
    assert_eq!(t.locked("install"), [true]);
    assert_eq!(t.locked("start"), [true]);
    assert_eq!(t.locked(&format!("write {}", lead().registry)), [true]);
    for unlocked in [format!("write {ROOT}"), format!("mkdir {ROOT}"), format!("POST {API}"), format!("PATCH {API}"), "GET http://127.0.0.1".into()] {
        let held = t.locked(&unlocked);
        assert!(!held.is_empty() && held.iter().all(|h| !h), "{unlocked} ran under the lock: {:#?}", t.entries());
    }
    assert_eq!(world.family.depth.get(), 0, "released on the way out");
}

#[test]
fn a_rollback_removes_the_service_under_the_family_lock_and_tells_sesame_without_it() {
    let world = World::lead(sesame_and_gateways(&[], &[18930]));
    world.services.exits_at_once.borrow_mut().insert(LABEL.into(), 1);
    run(&world, false).unwrap_err();
    let t = &world.timeline;
    assert_eq!(t.locked("uninstall"), [true]);
    assert!(t.locked(&format!("POST {API}/tasks/task-42/activity")).iter().all(|h| !h));
    assert_eq!(world.family.depth.get(), 0);
}

#[test]
fn a_handle_another_run_works_on_is_refused_and_nothing_is_written() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    world.family.held_elsewhere.borrow_mut().insert("nova".into());
    let Err(CommandError::Refused(why)) = run(&world, false) else { panic!("refused") };
    assert!(why.contains("pid 4711") && why.contains("is working on nova") && why.contains("wait for it to end"), "{why}");
    assert_eq!(world.timeline.entries(), ["lock", "unlock"]);
    let Err(CommandError::Refused(why)) = rollback_interrupted(&world.caps(), &context(), "nova") else { panic!("refused") };
    assert!(why.contains("is working on nova") && why.contains("not interrupted"), "{why}");
}

#[test]
fn a_lock_the_host_refuses_changes_nothing() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    *world.family.refuse.borrow_mut() = Some("another agent-provisioner run (pid 7) still holds it after 600 s".into());
    let Err(CommandError::Refused(why)) = run(&world, false) else { panic!("refused") };
    assert!(why.contains("cannot take the family lock") && why.contains("pid 7"), "{why}");
    assert!(world.timeline.entries().is_empty(), "{:#?}", world.timeline.entries());
}

/// The journal of a provision of `handle` on `port` by another run (under way or interrupted).
fn journal_of(world: &World, handle: &str, port: u16) {
    let task = crate::task::parse(&task_json(), &crate::task::TaskEnv { home: HOME, lead_home: LEAD_HOME, lead_handles: &[], resuming: true }, &world.fs).unwrap();
    Journal { handle: handle.into(), ..Journal::start(&task, port, "2026-11-25T10:20:30Z".into()) }.save(&world.fs, &lead()).unwrap();
}

#[test]
fn another_provisions_journal_keeps_its_ports_as_a_registered_sibling_does() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    journal_of(&world, "bob", 18925);
    let Err(CommandError::InvalidInput(e)) = run(&world, false) else { panic!("the port is claimed") };
    assert_eq!(e.field, "gatewayPort");
    assert!(e.message.contains("the provision of bob (under way or interrupted") && e.message.contains("--auto-port"), "{}", e.message);

    let request = crate::wit::ProvisionRequest { auto_port: true, port_range_start: 18925, ..request(false) };
    let outcome = provision(&world.caps(), &context(), &request).unwrap();
    assert_eq!(outcome.port, 19036, "the first base clear of bob's 18925-18927, 18936-19035");
    assert!(world.fs.exists(&journal::path(&lead(), "bob")), "bob's journal is left alone");
}
