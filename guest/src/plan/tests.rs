//! The plan lists exactly what a provision does, and changes nothing.

use super::build;
use crate::provision::provision;
use crate::testing::*;
use crate::wit::{CommandError, ProvisionPlan};

fn plan(world: &World) -> Result<ProvisionPlan, CommandError> {
    build(&world.caps(), &context(), &request(false)).map(|p| p.to_record(&context()))
}

#[test]
fn a_plan_changes_nothing() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    let planned = plan(&world).unwrap();
    assert_eq!((planned.handle.as_str(), planned.port), ("nova", 18930));
    // It only checks that no other run works on the handle: no lock, no write.
    assert_eq!(world.timeline.entries(), ["claim nova"]);
    let phases: Vec<&str> = planned.timings.iter().map(|t| t.phase.as_str()).collect();
    assert_eq!(phases, ["validate", "lead context", "config", "render", "plan"]);
}

#[test]
fn the_plan_lists_exactly_the_files_services_and_calls_of_a_provision() {
    let planned = plan(&World::lead(sesame_and_gateways(&[], &[]))).unwrap();
    let world = World::lead(sesame_and_gateways(&[], &[]));
    provision(&world.caps(), &context(), &request(false)).unwrap();

    let home = "/h/.openclaw-nova";
    let written: Vec<String> = world
        .fs
        .log
        .borrow()
        .iter()
        .filter_map(|l| {
            let mut words = l.split(' ');
            match (words.next(), words.next()) {
                (Some("write"), Some(path)) if path.starts_with(home) => Some(format!("file {path}")),
                (Some("copy"), Some(_)) => words.next().map(|to| format!("copy {to}")),
                _ => None,
            }
        })
        .collect();
    let files: Vec<String> = planned.files.iter().filter(|f| f.action != "dir").map(|f| format!("{} {}", f.action, f.path)).collect();
    assert_eq!(files, written);
    for dir in planned.files.iter().filter(|f| f.action == "dir") {
        assert!(world.fs.log.borrow().contains(&format!("mkdir {} {:o}", dir.path, dir.mode)), "{}", dir.path);
    }
    let secret: Vec<&str> = planned.files.iter().filter(|f| f.secret).map(|f| f.path.as_str()).collect();
    assert_eq!(secret, ["/h/.openclaw-nova/openclaw.json", "/h/.openclaw-nova/.env"]);

    let services: Vec<String> = planned.services.iter().map(|s| format!("{} {}", s.action, s.label)).collect();
    assert_eq!(services, ["install com.openclaw.nova", "start com.openclaw.nova", "wait com.openclaw.nova"]);
    assert!(world.timeline.has("install com.openclaw.nova") && world.timeline.has("start com.openclaw.nova"));

    let calls: Vec<(String, String, serde_json::Value)> = planned
        .calls
        .iter()
        .filter(|c| !c.purpose.starts_with("rollback"))
        .map(|c| {
            let body = serde_json::from_str(c.body.as_deref().unwrap()).unwrap();
            (c.method.clone(), c.url.replace("<vault-id>", "vault-1").strip_prefix(API).unwrap().to_string(), body)
        })
        .collect();
    assert_eq!(calls, world.sesame_calls());
    let rollback = planned.calls.iter().filter(|c| c.purpose == "rollback, only on failure").count();
    assert_eq!(rollback, 3, "member status, blocker activity, error message");
}

#[test]
fn a_taken_port_is_a_warning_in_the_plan_and_a_refusal_of_the_provision() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    world.ports.used.borrow_mut().insert(18930);
    let planned = plan(&world).unwrap();
    assert!(planned.warnings.iter().any(|w| w.starts_with("port conflict: port 18930 is already in use")), "{:?}", planned.warnings);
    let Err(CommandError::InvalidInput(e)) = provision(&world.caps(), &context(), &request(false)) else { panic!("refused") };
    assert_eq!(e.field, "gatewayPort");
    let auto = crate::wit::ProvisionRequest { auto_port: true, ..request(false) };
    let moved = build(&world.caps(), &context(), &auto).unwrap();
    assert!(moved.port != 18930 && moved.conflicts.is_empty());
    assert!(moved.warnings[0].starts_with("gatewayPort 18930 is taken"), "{:?}", moved.warnings);
}

#[test]
fn an_inherited_key_needs_the_lead_to_have_one() {
    let world = World::lead(sesame_and_gateways(&[], &[]));
    let ctx = crate::wit::Context { lead_provider_keys: vec![], ..context() };
    let Err(CommandError::InvalidInput(e)) = build(&world.caps(), &ctx, &request(false)) else { panic!("invalid") };
    assert_eq!(e.field, "llmApiKey");
    assert!(e.message.contains("ANTHROPIC_API_KEY"), "{}", e.message);
}
