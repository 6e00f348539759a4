//! Rendering the workspace never fails and never re-reads a value as template syntax:
//! whatever the task and the lead's notes hold appears verbatim.
#![no_main]

use guest::lead::LeadContext;
use guest::workspace::{Params, WorkspaceVars, render_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let mut next = || parts.next().unwrap_or("").to_string();
    let (display_name, family, people, seed, notes) = (next(), next(), next(), next(), next());
    let lead = LeadContext { people: Some(people.clone()), heartbeat: None, ..Default::default() };
    let mut lead = lead;
    lead.human.notes = Some(notes.clone());
    let params = Params {
        handle: "nova",
        display_name: &display_name,
        principal_id: "0e8a1d2c-1111-4a2b-9c3d-123456789abc",
        workspace_id: None,
        family_name: &family,
        host_name: "host",
        host_os: "linux",
        host_arch: "x86_64",
        api_url: "https://api.sesame.space",
        dm_channel_id: None,
        onboarding_channel_id: None,
        human_principal_id: None,
        human_name: None,
        human_handle: None,
        human_role: None,
        vault_name: "nova-main",
        gateway_port: 18930,
        siblings: &[],
    };
    let vars = WorkspaceVars::new(&params, &lead, Some(&seed));
    let files = render_all(&vars, &lead).expect("rendering never fails");
    let agents = &files.iter().find(|f| f.name == "AGENTS.md").unwrap().contents;
    assert!(agents.contains(&format!("You are **{display_name}** (`@nova`)")));
    if !seed.trim().is_empty() {
        let soul = &files.iter().find(|f| f.name == "SOUL.md").unwrap().contents;
        assert!(soul.contains(seed.trim()));
    }
});
