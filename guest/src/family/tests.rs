//! The family commands over the fakes: members, ports, health.

use super::{health, members, ports};
use crate::caps::Services;
use crate::layout::LeadLayout;
use crate::registry::{Registry, member};
use crate::testing::*;
use crate::wit::{HealthRequest, ServiceSpec};

/// A lead with `amy` (18790, running) and `bob` (18901, its home gone, not installed).
fn family(down: &[u16]) -> World {
    let world = World::lead(sesame_and_gateways(&[], down));
    let mut registry = Registry { version: 1, siblings: vec![] };
    registry.upsert(member("amy", 18790));
    registry.upsert(member("bob", 18901));
    registry.save(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap();
    world.fs.add_dir("/h/.openclaw-amy");
    world.services.install(&ServiceSpec { label: "com.openclaw.amy".into(), port: 18790 }).unwrap();
    world.services.start("com.openclaw.amy").unwrap();
    world
}

#[test]
fn members_are_checked_against_the_disk_and_the_service_manager() {
    let world = family(&[]);
    let found = members(&world.caps(), &context()).unwrap();
    let summary: Vec<(&str, usize)> = found.iter().map(|m| (m.handle.as_str(), m.problems.len())).collect();
    assert_eq!(summary, [("amy", 0), ("bob", 2)]);
    assert!(found[1].problems[0].contains("/h/.openclaw-bob is gone"), "{:?}", found[1].problems);
    assert_eq!(found[0].label, "com.openclaw.amy");
}

#[test]
fn ports_show_each_claim_what_listens_and_the_next_free_base() {
    let world = family(&[]);
    world.ports.used.borrow_mut().extend([18790, 18850]);
    // A provision of cid under way (or interrupted): its journal holds its claim.
    let journal = format!("{LEAD_HOME}/agent-provisioner/journal/cid.json");
    world.fs.add_file(&journal, &serde_json::json!({
        "handle": "cid", "principalId": "p", "familyId": "f", "port": 19012, "taskId": null,
        "onboardingChannelId": null, "vaultId": null, "startedAt": "", "done": [], "current": "health"
    }).to_string());
    let report = ports(&world.caps(), &context(), 18790).unwrap();
    let claims: Vec<(&str, &str, Vec<u16>, bool)> =
        report.claims.iter().map(|c| (c.handle.as_str(), c.ranges.as_str(), c.listening.clone(), c.pending)).collect();
    assert_eq!(claims, [
        ("amy", "18790-18792, 18801-18900", vec![18790, 18850], false),
        ("bob", "18901-18903, 18912-19011", vec![], false),
        ("cid", "19012-19014, 19023-19122", vec![], true),
    ]);
    assert_eq!(report.next_free, Some(19123));
}

#[test]
fn health_probes_every_sibling_and_reports_to_sesame_once_each() {
    let world = family(&[18901]);
    let request = HealthRequest { report: true, channel: Some(CHANNEL.into()) };
    let report = health(&world.caps(), &context(), &request).unwrap();
    let healthy: Vec<(&str, bool)> = report.siblings.iter().map(|s| (s.handle.as_str(), s.healthy)).collect();
    assert_eq!(healthy, [("amy", true), ("bob", false)]);
    let statuses: Vec<serde_json::Value> = world.sesame_calls().iter().take(2).map(|(_, _, body)| body["status"].clone()).collect();
    assert_eq!(statuses, ["online", "error"]);
    let (_, path, body) = world.sesame_calls()[2].clone();
    assert_eq!(path, format!("/channels/{CHANNEL}/messages"));
    assert_eq!(body["content"], "Family health on testhost: 1/2 healthy. Down: bob (connection refused).");
    assert!(report.unreported.is_empty());
}

#[test]
fn health_without_report_sends_nothing_to_sesame() {
    let world = family(&[]);
    health(&world.caps(), &context(), &HealthRequest { report: false, channel: None }).unwrap();
    assert!(world.sesame_calls().is_empty());
}

#[test]
fn a_service_the_manager_gave_up_on_is_failed_and_named_as_a_problem() {
    let world = family(&[18790]);
    world.services.stop("com.openclaw.amy").unwrap();
    let why = "the supervisor gave up after 5 failures within 120 s (last exit code 78)";
    world.services.gave_up.borrow_mut().insert("com.openclaw.amy".into(), why.into());
    let report = health(&world.caps(), &context(), &HealthRequest { report: false, channel: None }).unwrap();
    let amy = &report.siblings[0];
    assert_eq!((amy.state, amy.healthy, amy.restarts), (crate::wit::RunState::Failed, false, Some(4)));
    assert_eq!(amy.problems, [format!("its service com.openclaw.amy failed: {why}")]);
}
