//! Start, stop, restart and deprovision of a registered sibling, over the fakes.

use super::{Action, run};
use crate::caps::Services;
use crate::layout::LeadLayout;
use crate::registry::{Registry, member};
use crate::testing::*;
use crate::wit::{CommandError, RunState, ServiceSpec};

const LABEL: &str = "com.openclaw.nova";
const ROOT: &str = "/h/.openclaw-nova";

/// A lead with `nova` registered, installed and running on 18930.
fn family(http: FakeHttp) -> World {
    let world = World::lead(http);
    let mut registry = Registry { version: 1, siblings: vec![] };
    registry.upsert(member("nova", 18930));
    registry.save(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap();
    world.fs.add_file(&format!("{ROOT}/openclaw.json"), "{}");
    world.services.install(&ServiceSpec { label: LABEL.into(), port: 18930 }).unwrap();
    world.services.start(LABEL).unwrap();
    world.timeline.clear();
    world
}

fn status(world: &World) -> String {
    Registry::load(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap().find("nova").unwrap().status.clone()
}

#[test]
fn stop_waits_for_the_port_and_records_the_state() {
    let world = family(sesame_and_gateways(&[], &[]));
    let outcome = run(&world.caps(), &context(), Action::Stop, "nova").unwrap();
    assert_eq!((outcome.action.as_str(), outcome.state), ("stop", RunState::Stopped));
    assert_eq!(status(&world), "stopped");
    assert!(!world.timeline.has("start"), "{:?}", world.timeline.entries());
}

#[test]
fn start_waits_until_healthy_and_records_online() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.services.stop(LABEL).unwrap();
    world.timeline.clear();
    let outcome = run(&world.caps(), &context(), Action::Start, "nova").unwrap();
    assert_eq!((outcome.state, outcome.pid), (RunState::Running, Some(4242)));
    let effects = world.timeline.entries();
    assert_eq!(effects[..3], ["claim nova".to_string(), format!("start {LABEL}"), "GET http://127.0.0.1:18930/healthz".to_string()]);
    assert_eq!(status(&world), "online");
    // The health wait runs without the family lock; the registry update under it.
    assert_eq!(world.timeline.locked("GET http://127.0.0.1:18930/healthz"), [false]);
    assert_eq!(world.timeline.locked(&format!("write {LEAD_HOME}/agent-provisioner/family.json")), [true]);
}

#[test]
fn restart_stops_before_it_starts() {
    let world = family(sesame_and_gateways(&[], &[]));
    run(&world.caps(), &context(), Action::Restart, "nova").unwrap();
    let services: Vec<String> =
        world.timeline.entries().iter().filter(|e| e.starts_with("stop") || e.starts_with("start")).cloned().collect();
    assert_eq!(services, [format!("stop {LABEL}"), format!("start {LABEL}")]);
}

#[test]
fn a_start_that_never_gets_healthy_stops_the_service_again() {
    let world = family(sesame_and_gateways(&[], &[18930]));
    world.services.stop(LABEL).unwrap();
    world.services.exits_at_once.borrow_mut().insert(LABEL.into(), 1);
    let Err(CommandError::Failed(failure)) = run(&world.caps(), &context(), Action::Start, "nova") else { panic!("fails") };
    assert_eq!((failure.step.as_str(), failure.rollback[0].action.as_str()), ("health", "stop the service"));
    assert!(!world.services.running.borrow().contains(LABEL));
}

#[test]
fn deprovision_removes_the_service_then_archives_the_home_then_tells_sesame() {
    let world = family(sesame_and_gateways(&[], &[]));
    let outcome = run(&world.caps(), &context(), Action::Deprovision { without_archive: false }, "nova").unwrap();
    assert_eq!(outcome.state, RunState::NotInstalled);
    assert!(outcome.archive.as_deref().is_some_and(|a| a.starts_with("/h/.openclaw-archives/nova-")));
    let t = &world.timeline;
    let order = [
        format!("stop {LABEL}"),
        format!("uninstall {LABEL}"),
        format!("archive {ROOT}"),
        format!("remove {ROOT}"),
        format!("write {}", LeadLayout::new(LEAD_HOME).registry),
        format!("PATCH {API}/families/"),
    ];
    let positions: Vec<usize> = order.iter().map(|e| t.position(e)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{:#?}", t.entries());
    assert_eq!(world.sesame_calls()[0].2, serde_json::json!({"status": "deprovisioned"}));
    assert!(Registry::load(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap().siblings.is_empty());
}

#[test]
fn a_sibling_another_run_works_on_is_refused_untouched() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.family.held_elsewhere.borrow_mut().insert("nova".into());
    for action in [Action::Start, Action::Stop, Action::Restart, Action::Deprovision { without_archive: false }] {
        let Err(CommandError::Refused(why)) = run(&world.caps(), &context(), action, "nova") else { panic!("{action:?}") };
        assert!(why.contains("pid 4711") && why.contains("wait for it to end"), "{why}");
    }
    assert!(world.timeline.entries().is_empty(), "{:#?}", world.timeline.entries());
    assert!(world.services.running.borrow().contains(LABEL));
}

#[test]
fn only_registered_siblings_are_touched() {
    let world = family(sesame_and_gateways(&[], &[]));
    for (handle, expected) in [("zed", "is not a registered sibling"), ("atlas", "is the lead itself")] {
        let Err(CommandError::Refused(why)) = run(&world.caps(), &context(), Action::Stop, handle) else { panic!("{handle}") };
        assert!(why.contains(expected), "{why}");
    }
    assert!(matches!(run(&world.caps(), &context(), Action::Stop, "../x"), Err(CommandError::InvalidInput(_))));
}

fn deprovision(world: &World, without_archive: bool) -> Result<crate::wit::LifecycleOutcome, CommandError> {
    run(&world.caps(), &context(), Action::Deprovision { without_archive }, "nova")
}

fn service_calls(world: &World) -> Vec<String> {
    world.timeline.entries().into_iter().filter(|e| e.starts_with("stop") || e.starts_with("uninstall") || e.starts_with("start")).collect()
}

#[test]
fn a_home_that_cannot_be_archived_is_refused_before_any_service_call() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.fs.fail("check-archivable", ROOT);
    let Err(CommandError::Refused(why)) = deprovision(&world, false) else { panic!("refused") };
    assert!(why.starts_with(&format!("{ROOT} cannot be archived: {ROOT}: injected failure; nothing was changed")), "{why}");
    assert!(why.contains("`agent-provisioner deprovision nova --without-archive`"), "{why}");
    assert!(service_calls(&world).is_empty(), "{:#?}", world.timeline.entries());
    assert!(world.services.running.borrow().contains(LABEL));
    assert!(world.fs.exists(&format!("{ROOT}/openclaw.json")));
    assert_eq!(status(&world), "online");
    assert!(world.sesame_calls().is_empty());
}

#[test]
fn an_archives_directory_that_is_not_one_is_refused_before_any_service_call() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.fs.add_file("/h/.openclaw-archives", "not a directory");
    let Err(CommandError::Refused(why)) = deprovision(&world, false) else { panic!("refused") };
    assert!(why.starts_with("/h/.openclaw-archives is not a directory") && why.contains("--without-archive"), "{why}");
    assert!(service_calls(&world).is_empty() && world.services.running.borrow().contains(LABEL));
}

#[test]
fn the_operators_without_archive_removes_the_home_unarchived_and_says_so() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.fs.fail("check-archivable", ROOT);
    let outcome = deprovision(&world, true).unwrap();
    assert_eq!((outcome.archive.as_deref(), outcome.state), (None, RunState::NotInstalled));
    assert!(outcome.warnings.iter().any(|w| w.contains("removed without an archive, as the operator asked (--without-archive)")), "{:?}", outcome.warnings);
    let t = &world.timeline;
    assert!(!t.has("check-archivable") && !t.has("archive "), "{:#?}", t.entries());
    assert!(t.position(&format!("uninstall {LABEL}")) < t.position(&format!("remove {ROOT}")));
    assert!(!world.fs.exists(ROOT));
    assert!(Registry::load(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap().siblings.is_empty());
    assert_eq!(world.sesame_calls()[0].2, serde_json::json!({"status": "deprovisioned"}));
}

#[test]
fn an_archive_that_fails_after_the_check_keeps_the_home_and_marks_the_member_until_a_second_run() {
    let world = family(sesame_and_gateways(&[], &[]));
    world.fs.fail("archive-tree", ROOT);
    let Err(CommandError::Failed(failure)) = deprovision(&world, false) else { panic!("fails") };
    assert_eq!(failure.step, "archive");
    assert!(failure.message.contains("stopped and removed, the home was kept and nova stays registered (deprovision-incomplete)"), "{}", failure.message);
    assert!(failure.message.contains("`agent-provisioner deprovision nova` once the home can be archived") && failure.message.contains("--without-archive"));
    let steps: Vec<(&str, bool)> = failure.rollback.iter().map(|s| (s.action.as_str(), s.ok)).collect();
    assert_eq!(steps, [("remove the service", true), ("keep the home, mark the member", true)]);
    assert!(world.fs.exists(&format!("{ROOT}/openclaw.json")) && !world.services.running.borrow().contains(LABEL));
    assert_eq!(status(&world), super::DEPROVISION_INCOMPLETE);
    assert!(world.sesame_calls().is_empty());

    world.fs.failing.borrow_mut().clear();
    let outcome = deprovision(&world, false).unwrap();
    assert!(outcome.archive.is_some() && outcome.warnings.iter().any(|w| w.contains("was not installed")), "{:?}", outcome.warnings);
    assert!(!world.fs.exists(ROOT));
}
