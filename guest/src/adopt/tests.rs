//! Adoption over the fakes: the plan (overlaps, `re-port`, what a scan needs), the order
//! of effects, the config in the provisioner's shape, and the host asked to put
//! everything back on a failure.

use super::{adopt, plans};
use crate::registry::Registry;
use crate::layout::LeadLayout;
use crate::testing::*;
use crate::wit::{AdoptRequest, CommandError, LegacyCredential, LegacyDefinition, LegacySibling};

const ROOT: &str = "/h/.openclaw-nova";

/// A bash-era sibling `handle` on `port`, as the host would report it.
fn found(handle: &str, port: u16) -> LegacySibling {
    LegacySibling {
        handle: handle.into(),
        oc_home: format!("/h/.openclaw-{handle}"),
        port: Some(port),
        model: Some("anthropic/claude-sonnet-4-5".into()),
        foreign_config_keys: vec!["logging".into()],
        legacy_credentials: vec![LegacyCredential { path: "agents/main/agent/auth.json".into(), providers: vec!["anthropic".into()], profiles: 0 }],
        env_providers: vec![],
        code_paths: vec!["extensions/".into()],
        definition: Some(LegacyDefinition {
            path: format!("/h/Library/LaunchAgents/com.openclaw.{handle}.plist"),
            name: format!("com.openclaw.{handle}"),
            loaded: true,
            running: true,
            command: "openclaw gateway run".into(),
        }),
        refusals: vec![],
    }
}

fn request(handle: Option<&str>, candidates: Vec<LegacySibling>, re_port: bool) -> AdoptRequest {
    AdoptRequest {
        handle: handle.map(String::from),
        candidates,
        re_port,
        port_range_start: 19000,
        principal_id: Some(PRINCIPAL.into()),
        family_id: Some(FAMILY.into()),
        display_name: None,
    }
}

/// A lead with the bash-era home of nova on 18930 (the host's `begin` reports it).
fn world() -> World {
    world_with(sesame_and_gateways(&[], &[]))
}

fn world_with(http: FakeHttp) -> World {
    let world = World::lead(http);
    let old = r#"{"gateway": {"mode": "local", "port": 18930, "auth": {"mode": "token", "token": "kept-token"}}, "agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}}, "channels": {"sesame": {"apiKey": "sk_sesame_nova"}}, "logging": {"level": "debug"}}"#;
    world.fs.add_file(&format!("{ROOT}/openclaw.json"), old);
    world.fs.add_file(&format!("{ROOT}/extensions/sesame/dist/index.js"), "// the sibling's copy");
    *world.adoption.found.borrow_mut() = Some(found("nova", 18930));
    world
}

#[test]
fn overlapping_claims_block_without_re_port_and_move_to_a_base_clear_of_every_claim_with_it() {
    let world = world();
    let candidates = vec![found("nova", 18930), found("orion", 18931)];
    let blocked = plans(&world.caps(), &context(), &request(Some("nova"), candidates.clone(), false)).unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].overlaps.len(), 1, "{:?}", blocked[0].overlaps);
    assert!(blocked[0].blockers[0].contains("`adopt nova --re-port` moves it to 19042"), "{:?}", blocked[0].blockers);
    let moved = plans(&world.caps(), &context(), &request(Some("nova"), candidates, true)).unwrap();
    assert!(moved[0].blockers.is_empty(), "{:?}", moved[0].blockers);
    assert_eq!((moved[0].port, moved[0].new_port), (Some(18930), Some(19042)));
    assert!(moved[0].changes.iter().any(|c| c.contains("gateway.port 18930 -> 19042")), "{:?}", moved[0].changes);
}

#[test]
fn a_scan_plans_every_candidate_without_asking_for_ids() {
    let world = world();
    let mut scan = request(None, vec![found("nova", 18930), found("vega", 19500)], false);
    scan.principal_id = None;
    let all = plans(&world.caps(), &context(), &scan).unwrap();
    assert_eq!(all.iter().map(|p| p.handle.as_str()).collect::<Vec<_>>(), ["nova", "vega"]);
    assert!(all.iter().all(|p| p.blockers.is_empty()), "{all:?}");
    let named = plans(&world.caps(), &context(), &AdoptRequest { handle: Some("vega".into()), ..scan }).unwrap();
    assert!(named[0].blockers.iter().any(|b| b.contains("--principal-id is required")), "{:?}", named[0].blockers);
}

#[test]
fn adoption_rewrites_the_config_moves_keys_installs_and_commits_in_order() {
    let world = world();
    let outcome = adopt(&world.caps(), &context(), &request(Some("nova"), vec![found("nova", 18930)], false)).unwrap();
    assert_eq!((outcome.port, outcome.previous_port), (18930, None));
    let config: serde_json::Value = serde_json::from_str(&world.fs.file(&format!("{ROOT}/openclaw.json")).unwrap()).unwrap();
    assert_eq!(config["gateway"]["auth"]["token"], "kept-token");
    assert_eq!((config["gateway"]["bind"].as_str(), config["gateway"]["port"].as_u64()), (Some("loopback"), Some(18930)));
    assert_eq!(config["agents"]["defaults"]["model"]["primary"], "anthropic/claude-sonnet-4-5");
    assert_eq!(config["channels"]["sesame"]["apiKey"], "sk_sesame_nova");
    assert_eq!(config["plugins"]["entries"]["sesame"]["enabled"], true);
    assert!(config.get("logging").is_none());
    let member = Registry::load(&world.fs, &LeadLayout::new(LEAD_HOME)).unwrap().find("nova").unwrap().clone();
    assert_eq!((member.status.as_str(), member.principal_id.as_str(), member.display_name.as_str()), ("online", PRINCIPAL, "nova"));
    let order = [
        "adoption begin nova".to_string(),
        format!("write {ROOT}/openclaw.json"),
        "adoption migrate-credentials nova".into(),
        "install com.openclaw.nova".into(),
        "start com.openclaw.nova".into(),
        "adoption commit nova".into(),
        format!("PATCH {API}/families/"),
    ];
    let positions: Vec<usize> = order.iter().map(|e| world.timeline.position(e)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{:#?}", world.timeline.entries());
}

#[test]
fn a_failure_has_the_host_put_everything_back_and_never_commits() {
    let world = world_with(sesame_and_gateways(&[], &[18930]));
    world.services.exits_at_once.borrow_mut().insert("com.openclaw.nova".into(), 78);
    let err = adopt(&world.caps(), &context(), &request(Some("nova"), vec![found("nova", 18930)], false)).unwrap_err();
    let CommandError::Failed(failure) = err else { panic!("{err:?}") };
    assert_eq!(failure.step, "health");
    assert_eq!(failure.rollback[0].detail, "nova put back");
    assert!(world.timeline.entries().iter().any(|e| e == "adoption abort nova"));
    assert!(!world.timeline.entries().iter().any(|e| e == "adoption commit nova"));
}

#[test]
fn a_refusal_begins_nothing() {
    let world = world();
    let mut refused = found("nova", 18930);
    refused.refusals.push("/h/.openclaw-nova/.env line 1: NODE_OPTIONS is not a provider key variable".into());
    let err = adopt(&world.caps(), &context(), &request(Some("nova"), vec![refused], false)).unwrap_err();
    assert!(matches!(&err, CommandError::Refused(why) if why.contains("NODE_OPTIONS")), "{err:?}");
    let err = adopt(&world.caps(), &context(), &request(Some("nova"), vec![], false)).unwrap_err();
    assert!(matches!(&err, CommandError::Refused(why) if why.contains("found no sibling home")), "{err:?}");
    assert!(!world.timeline.entries().iter().any(|e| e.starts_with("adoption")), "{:?}", world.timeline.entries());
}
