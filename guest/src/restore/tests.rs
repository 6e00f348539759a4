//! The orchestration of a restore, over the fakes: provision, deprovision, then restore —
//! the order of effects, the refusals, `auto-port`, the rollback, and an interrupted run.

use super::{RestoreJournal, Step, restore};
use crate::journal;
use crate::layout::LeadLayout;
use crate::lifecycle::{Action, run};
use crate::member_record;
use crate::provision::provision;
use crate::registry::{Member, Registry};
use crate::testing::*;
use crate::caps::{Files, Services};
use crate::wit::{CommandError, RestoreRequest, RunState};

const ROOT: &str = "/h/.openclaw-nova";
const LABEL: &str = "com.openclaw.nova";

fn lead() -> LeadLayout {
    LeadLayout::new(LEAD_HOME)
}

/// A lead whose sibling `nova` (port 18930) was provisioned, noted something in its
/// workspace, planted code in its plugin copy, and was deprovisioned; the archive's path
/// and the registry entry it had.
fn deprovisioned(http: FakeHttp) -> (World, String, Member) {
    let world = World::lead(http);
    provision(&world.caps(), &context(), &request(false)).unwrap();
    world.fs.add_file(&format!("{ROOT}/workspace/memory/today.md"), "remembered");
    world.fs.add_file(&format!("{ROOT}/extensions/sesame/dist/index.js"), "// planted");
    let member = Registry::load(&world.fs, &lead()).unwrap().find("nova").unwrap().clone();
    let outcome = run(&world.caps(), &context(), Action::Deprovision { without_archive: false }, "nova").unwrap();
    world.timeline.clear();
    world.http.requests.borrow_mut().clear();
    (world, outcome.archive.unwrap(), member)
}

fn request_for(archive: &str, auto_port: bool) -> RestoreRequest {
    RestoreRequest { handle: "nova".into(), archive: archive.into(), auto_port, port_range_start: 18790 }
}

fn mutations(world: &World) -> Vec<String> {
    world.fs.log.borrow().clone()
}

#[test]
fn deprovision_then_restore_brings_the_same_member_back_with_the_leads_code() {
    let (world, archive, before) = deprovisioned(sesame_and_gateways(&[], &[]));
    assert!(world.fs.exists(&member_record::path(&archive)), "deprovision keeps the member record beside the archive");
    let outcome = restore(&world.caps(), &context(), &request_for(&archive, false)).unwrap();
    assert_eq!((outcome.port, outcome.label.as_str(), outcome.oc_home.as_str()), (18930, LABEL, ROOT));
    assert!(outcome.unreported.is_empty() && outcome.warnings.is_empty(), "{outcome:?}");
    assert_eq!(outcome.plugins, ["extensions/sesame"]);
    assert_eq!(world.fs.file(&format!("{ROOT}/workspace/memory/today.md")).as_deref(), Some("remembered"));
    assert_eq!(world.fs.file(&format!("{ROOT}/extensions/sesame/dist/index.js")).as_deref(), Some("// plugin"), "the lead's copy, not the planted one");

    let after = Registry::load(&world.fs, &lead()).unwrap().find("nova").unwrap().clone();
    assert_eq!(after, Member { status: "online".into(), ..before }, "same handle, principal, family, name, task");
    assert_eq!(world.services.installed.borrow()[LABEL].port, 18930);
    assert!(world.services.running.borrow().contains(LABEL));
    let calls = world.sesame_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0.as_str(), calls[0].1.as_str()), ("PATCH", format!("/families/{FAMILY}/members/{PRINCIPAL}").as_str()));
    assert_eq!(calls[0].2, serde_json::json!({"status": "online"}));
    assert!(!world.fs.exists(&journal::restore_path(&lead(), "nova")), "the journal is gone");
    assert!(world.fs.exists(&archive), "the archive stays");

    let journal = journal::restore_path(&lead(), "nova");
    let order = [
        format!("write {journal}"),
        format!("restore {archive} {ROOT}"),
        format!("copy {LEAD_HOME}/extensions/sesame {ROOT}/extensions/sesame"),
        format!("write {}", lead().registry),
        format!("install {LABEL}"),
        format!("start {LABEL}"),
        "GET http://127.0.0.1:18930/healthz".to_string(),
        format!("remove {journal}"),
        format!("PATCH {API}/families/"),
    ];
    let positions: Vec<usize> = order.iter().map(|e| world.timeline.position(e)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{:#?}", world.timeline.entries());
    assert!(!world.timeline.has(&format!("write {ROOT}/openclaw.json")), "the port did not change, nor the config");
}

#[test]
fn refusals_change_nothing_and_say_what_to_do() {
    let (world, archive, _) = deprovisioned(sesame_and_gateways(&[], &[]));
    let refused = |request: RestoreRequest, needle: &str| {
        let before = mutations(&world);
        match restore(&world.caps(), &context(), &request) {
            Err(CommandError::Refused(why)) => assert!(why.contains(needle), "{why} should say {needle}"),
            other => panic!("{needle}: {other:?}"),
        }
        assert_eq!(mutations(&world), before, "{needle}: something was written");
    };
    let other = "/h/.openclaw-archives/nova-20200101-000000.tar.gz";
    world.fs.add_file(other, "");
    refused(request_for(other, false), "has no member record");
    world.ports.used.borrow_mut().insert(18950);
    refused(request_for(&archive, false), "port 18950, which a gateway on 18930 also claims, is already in use. Pass --auto-port");
    world.ports.used.borrow_mut().clear();
    world.fs.add_dir(ROOT);
    refused(request_for(&archive, false), "/h/.openclaw-nova exists; a restore never writes over a home");
    world.fs.remove_tree(ROOT).unwrap();
    restore(&world.caps(), &context(), &request_for(&archive, false)).unwrap();
    refused(request_for(&archive, false), "nova is a registered sibling");
    let Err(CommandError::InvalidInput(e)) = restore(&world.caps(), &context(), &RestoreRequest { handle: "atlas".into(), ..request_for(&archive, false) })
    else {
        panic!("the lead's handle")
    };
    assert_eq!(e.field, "handle");
}

#[test]
fn auto_port_moves_the_gateway_and_its_config_to_a_free_base() {
    let (world, archive, _) = deprovisioned(sesame_and_gateways(&[], &[]));
    world.ports.used.borrow_mut().insert(18930);
    let outcome = restore(&world.caps(), &context(), &request_for(&archive, true)).unwrap();
    assert_eq!(outcome.port, 18790);
    assert!(outcome.warnings[0].contains("port 18930 is taken") && outcome.warnings[0].contains("restored on 18790"), "{:?}", outcome.warnings);
    let config: serde_json::Value = serde_json::from_str(&world.fs.file(&format!("{ROOT}/openclaw.json")).unwrap()).unwrap();
    assert_eq!(config["gateway"]["port"], 18790);
    assert_eq!(world.fs.mode(&format!("{ROOT}/openclaw.json")), Some(0o600));
    assert_eq!(world.services.installed.borrow()[LABEL].port, 18790);
    assert_eq!(Registry::load(&world.fs, &lead()).unwrap().find("nova").unwrap().port, 18790);
}

#[test]
fn a_failure_after_the_unpack_is_undone_and_the_archive_kept() {
    // The gateway, moved to 18790 by auto-port, exits at once.
    let (world, archive, _) = deprovisioned(sesame_and_gateways(&[], &[18790]));
    world.ports.used.borrow_mut().insert(18930);
    world.services.exits_at_once.borrow_mut().insert(LABEL.into(), 1);
    let Err(CommandError::Failed(failure)) = restore(&world.caps(), &context(), &request_for(&archive, true)) else { panic!("fails") };
    assert_eq!(failure.step, "health");
    let actions: Vec<&str> = failure.rollback.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(actions, ["remove the service", "remove the home", "remove the registry entry"]);
    assert!(failure.rollback.iter().all(|s| s.ok), "{:?}", failure.rollback);
    assert!(!world.fs.exists(ROOT) && world.services.installed.borrow().is_empty());
    assert!(Registry::load(&world.fs, &lead()).unwrap().find("nova").is_none());
    assert!(world.fs.exists(&archive) && world.fs.exists(&member_record::path(&archive)));
    assert!(!world.fs.exists(&journal::restore_path(&lead(), "nova")));
    assert!(world.sesame_calls().is_empty(), "nothing is reported online");
}

#[test]
fn an_archive_the_host_refuses_is_a_refusal_that_leaves_nothing() {
    let (world, archive, _) = deprovisioned(sesame_and_gateways(&[], &[]));
    world.fs.fail("restore-archive", &archive);
    let Err(CommandError::Refused(why)) = restore(&world.caps(), &context(), &request_for(&archive, false)) else { panic!("refused") };
    assert!(why.starts_with("the host did not restore the archive: ") && why.contains("injected failure"), "{why}");
    assert!(!world.fs.exists(ROOT) && !world.fs.exists(&journal::restore_path(&lead(), "nova")));
    assert!(Registry::load(&world.fs, &lead()).unwrap().find("nova").is_none());
}

#[test]
fn what_a_killed_restore_left_blocks_a_provision_and_is_undone_by_the_next_restore() {
    let (world, archive, _) = deprovisioned(sesame_and_gateways(&[], &[]));
    // Killed while the service was being installed: journal, home, registry entry left.
    let mut journal = RestoreJournal { handle: "nova".into(), archive: archive.clone(), port: 18930, started_at: "t".into(), step: Step::Unpack };
    journal.at(Step::Service, &world.caps(), &lead()).unwrap();
    world.fs.restore_archive(&archive, "nova").unwrap();
    let mut registry = Registry::load(&world.fs, &lead()).unwrap();
    registry.upsert(crate::registry::member("nova", 18930));
    registry.save(&world.fs, &lead()).unwrap();

    let Err(CommandError::Refused(why)) = provision(&world.caps(), &context(), &request(false)) else { panic!("a provision is refused") };
    assert!(why.contains("a restore of nova was interrupted") && why.contains("agent-provisioner restore nova"), "{why}");

    let outcome = restore(&world.caps(), &context(), &request_for(&archive, false)).unwrap();
    let warning = &outcome.warnings[0];
    assert!(warning.contains("interrupted at service and is undone first") && warning.contains("/h/.openclaw-nova archived to /h/.openclaw-archives/nova-"), "{warning}");
    let entry = Registry::load(&world.fs, &lead()).unwrap().find("nova").unwrap().clone();
    assert_eq!((entry.principal_id.as_str(), entry.status.as_str()), (PRINCIPAL, "online"), "the recorded member, not the half-written one");
    assert_eq!(world.services.status(LABEL).unwrap().state, RunState::Running);
}
