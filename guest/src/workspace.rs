//! The new agent's workspace files, rendered from `templates/` with tinytemplate.
//!
//! Every variable has a value: what is not known renders as a visible "unknown" note,
//! never as a leftover placeholder. Values are inserted as text (Markdown, unescaped) and
//! never re-interpreted as template syntax.

use crate::lead::LeadContext;
use serde::Serialize;
use tinytemplate::TinyTemplate;

/// What an unknown value renders as.
pub const UNKNOWN: &str = "_(unknown — ask the lead)_";

/// The personality when the task gives no seed.
const DEFAULT_PERSONALITY: &str = "You are competent, helpful, and you have opinions. You get to the point, \
you say when something looks wrong, and you would rather ask one good question than guess.";

/// The templates, embedded at build time: (file name, template text).
const TEMPLATES: [(&str, &str); 8] = [
    ("AGENTS.md", include_str!("../../templates/AGENTS.md")),
    ("TOOLS.md", include_str!("../../templates/TOOLS.md")),
    ("MEMORY.md", include_str!("../../templates/MEMORY.md")),
    ("BOOTSTRAP.md", include_str!("../../templates/BOOTSTRAP.md")),
    ("SOUL.md", include_str!("../../templates/SOUL.md")),
    ("USER.md", include_str!("../../templates/USER.md")),
    ("IDENTITY.md", include_str!("../../templates/IDENTITY.md")),
    ("HEARTBEAT.md", include_str!("../../templates/HEARTBEAT.md")),
];

/// The facts about the new agent the templates need (besides the lead's context).
pub struct Params<'a> {
    pub handle: &'a str,
    pub display_name: &'a str,
    pub principal_id: &'a str,
    pub workspace_id: Option<&'a str>,
    pub family_name: &'a str,
    pub host_name: &'a str,
    pub host_os: &'a str,
    pub host_arch: &'a str,
    pub api_url: &'a str,
    pub dm_channel_id: Option<&'a str>,
    pub onboarding_channel_id: Option<&'a str>,
    pub human_principal_id: Option<&'a str>,
    pub human_name: Option<&'a str>,
    pub human_handle: Option<&'a str>,
    pub human_role: Option<&'a str>,
    pub vault_name: &'a str,
    pub gateway_port: u16,
    /// Registered siblings as `handle (Display Name)`.
    pub siblings: &'a [String],
}

/// Every template variable (the spec's names), as text.
#[derive(Clone, Debug, Serialize)]
#[allow(non_snake_case)]
pub struct WorkspaceVars {
    pub HANDLE: String,
    pub DISPLAY_NAME: String,
    pub PRINCIPAL_ID: String,
    pub WORKSPACE_ID: String,
    pub LEAD_NAME: String,
    pub FAMILY_NAME: String,
    pub HOST_NAME: String,
    pub HOST_OS: String,
    pub HOST_ARCH: String,
    pub HUMAN_NAME: String,
    pub HUMAN_HANDLE: String,
    pub HUMAN_PRINCIPAL_ID: String,
    pub HUMAN_ROLE: String,
    pub HUMAN_NOTES: String,
    pub API_URL: String,
    pub DM_CHANNEL_ID: String,
    pub ONBOARDING_CHANNEL_ID: String,
    pub SHARED_RESOURCES: String,
    pub PEOPLE_CONTEXT: String,
    pub ACTIVE_PROJECTS: String,
    pub SIBLING_LIST: String,
    pub CONVENTIONS: String,
    pub SHARED_RESOURCES_DOCS: String,
    pub VAULT_NAME: String,
    pub GATEWAY_PORT: String,
    pub PERSONALITY: String,
}

fn or_unknown(value: Option<&str>) -> String {
    value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).unwrap_or_else(|| UNKNOWN.to_string())
}

impl WorkspaceVars {
    /// The task's facts win over what the lead's notes say; gaps become [`UNKNOWN`].
    pub fn new(p: &Params, lead: &LeadContext, personality_seed: Option<&str>) -> Self {
        let human = &lead.human;
        let lead_name = or_unknown(lead.lead_name.as_deref());
        let mut siblings: Vec<String> = Vec::new();
        if let Some(name) = &lead.lead_name {
            siblings.push(format!("- {name} (lead)"));
        }
        siblings.extend(p.siblings.iter().map(|s| format!("- {s}")));
        if let Some(notes) = &lead.siblings {
            siblings.push(notes.clone());
        }
        let siblings = if siblings.is_empty() { "- none yet: you are the first sibling".into() } else { siblings.join("\n") };
        let shared_docs = format!(
            "Shared credentials live in Sesame vaults; ask {lead_name} for access to a shared vault \
             instead of copying secrets. Your own secrets go in `{}`.",
            p.vault_name
        );
        Self {
            HANDLE: p.handle.into(),
            DISPLAY_NAME: p.display_name.into(),
            PRINCIPAL_ID: p.principal_id.into(),
            WORKSPACE_ID: or_unknown(p.workspace_id.or(lead.workspace_id.as_deref())),
            LEAD_NAME: lead_name,
            FAMILY_NAME: p.family_name.into(),
            HOST_NAME: or_unknown(Some(p.host_name)),
            HOST_OS: or_unknown(Some(p.host_os)),
            HOST_ARCH: or_unknown(Some(p.host_arch)),
            HUMAN_NAME: or_unknown(p.human_name.or(human.name.as_deref())),
            HUMAN_HANDLE: or_unknown(p.human_handle.or(human.handle.as_deref())),
            HUMAN_PRINCIPAL_ID: or_unknown(p.human_principal_id.or(human.principal_id.as_deref())),
            HUMAN_ROLE: or_unknown(p.human_role.or(human.role.as_deref())),
            HUMAN_NOTES: or_unknown(human.notes.as_deref()),
            API_URL: p.api_url.into(),
            DM_CHANNEL_ID: or_unknown(p.dm_channel_id),
            ONBOARDING_CHANNEL_ID: or_unknown(p.onboarding_channel_id),
            SHARED_RESOURCES: or_unknown(lead.shared_resources.as_deref()),
            PEOPLE_CONTEXT: or_unknown(lead.people.as_deref()),
            ACTIVE_PROJECTS: or_unknown(lead.projects.as_deref()),
            SIBLING_LIST: siblings,
            CONVENTIONS: or_unknown(lead.conventions.as_deref()),
            SHARED_RESOURCES_DOCS: shared_docs,
            VAULT_NAME: p.vault_name.into(),
            GATEWAY_PORT: p.gateway_port.to_string(),
            PERSONALITY: personality_seed.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_PERSONALITY).into(),
        }
    }
}

/// One rendered workspace file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceFile {
    pub name: &'static str,
    pub contents: String,
}

/// Renders every workspace file. `HEARTBEAT.md` is the lead's own when it has one.
pub fn render_all(vars: &WorkspaceVars, lead: &LeadContext) -> Result<Vec<WorkspaceFile>, String> {
    let mut engine = TinyTemplate::new();
    engine.set_default_formatter(&tinytemplate::format_unescaped);
    for (name, text) in TEMPLATES {
        engine.add_template(name, text).map_err(|e| format!("template {name}: {e}"))?;
    }
    TEMPLATES
        .iter()
        .map(|(name, _)| {
            let contents = match (*name, &lead.heartbeat) {
                ("HEARTBEAT.md", Some(heartbeat)) => heartbeat.clone(),
                _ => engine.render(name, vars).map_err(|e| format!("template {name}: {e}"))?,
            };
            Ok(WorkspaceFile { name, contents })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::HumanInfo;

    fn params<'a>(display_name: &'a str, siblings: &'a [String]) -> Params<'a> {
        Params {
            handle: "nova",
            display_name,
            principal_id: "0e8a1d2c-1111-4a2b-9c3d-123456789abc",
            workspace_id: Some("ws-1"),
            family_name: "Example Family",
            host_name: "mini",
            host_os: "linux",
            host_arch: "x86_64",
            api_url: "https://api.sesame.space",
            dm_channel_id: Some("33333333-4444-5555-6666-777777777777"),
            onboarding_channel_id: Some("44444444-5555-6666-7777-888888888888"),
            human_principal_id: Some("55555555-6666-7777-8888-999999999999"),
            human_name: Some("Alex"),
            human_handle: Some("alex"),
            human_role: None,
            vault_name: "nova-main",
            gateway_port: 18930,
            siblings,
        }
    }

    fn full_lead() -> LeadContext {
        LeadContext {
            lead_name: Some("Atlas".into()),
            human: HumanInfo { role: Some("Founder".into()), notes: Some("Prefers short answers.".into()), ..Default::default() },
            people: Some("- Sam: designer".into()),
            projects: Some("- Launch Nova".into()),
            conventions: Some("- Commit small.".into()),
            shared_resources: Some("- Vault family-shared".into()),
            ..Default::default()
        }
    }

    fn file<'a>(files: &'a [WorkspaceFile], name: &str) -> &'a str {
        &files.iter().find(|f| f.name == name).unwrap().contents
    }

    /// `{` followed by an uppercase name and `}`: a placeholder left behind.
    fn has_placeholder(text: &str) -> bool {
        text.contains("{{")
            || text.match_indices('{').any(|(i, _)| {
                let rest = &text[i + 1..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                !name.is_empty() && rest[name.len()..].starts_with('}')
            })
    }

    #[test]
    fn every_file_renders_with_full_context() {
        let siblings = vec!["amy (Amy)".to_string()];
        let lead = full_lead();
        let files = render_all(&WorkspaceVars::new(&params("Nova", &siblings), &lead, Some("Dry humour.")), &lead).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name).collect();
        assert_eq!(names, ["AGENTS.md", "TOOLS.md", "MEMORY.md", "BOOTSTRAP.md", "SOUL.md", "USER.md", "IDENTITY.md", "HEARTBEAT.md"]);
        for f in &files {
            assert!(!has_placeholder(&f.contents), "{} keeps a placeholder:\n{}", f.name, f.contents);
        }
        assert!(file(&files, "AGENTS.md").contains("Atlas provisioned you and is your lead"));
        assert!(file(&files, "TOOLS.md").contains("- Vault: `nova-main` — you own it; Alex is an admin."));
        assert!(file(&files, "TOOLS.md").contains("- Atlas (lead)\n- amy (Amy)"));
        assert!(file(&files, "MEMORY.md").contains("## People\n- Sam: designer"));
        assert!(file(&files, "BOOTSTRAP.md").contains("for\nAlex (`@alex`, Founder)"));
        assert!(file(&files, "SOUL.md").contains("Dry humour."));
        assert!(file(&files, "USER.md").contains("Prefers short answers."));
        assert!(file(&files, "HEARTBEAT.md").starts_with("# HEARTBEAT.md"));
    }

    #[test]
    fn unknowns_render_as_a_visible_note() {
        let lead = LeadContext::default();
        let mut p = params("Nova", &[]);
        (p.workspace_id, p.dm_channel_id, p.onboarding_channel_id, p.human_principal_id, p.human_name, p.human_handle) =
            (None, None, None, None, None, None);
        let files = render_all(&WorkspaceVars::new(&p, &lead, None), &lead).unwrap();
        for f in &files {
            assert!(!has_placeholder(&f.contents), "{}:\n{}", f.name, f.contents);
        }
        assert!(file(&files, "USER.md").contains(&format!("- **Name:** {UNKNOWN}")));
        assert!(file(&files, "SOUL.md").contains("you have opinions"));
        assert!(file(&files, "TOOLS.md").contains("none yet: you are the first sibling"));
    }

    #[test]
    fn values_are_text_never_template_syntax() {
        let lead = full_lead();
        let name = "{{HANDLE}} {HANDLE} <b>&amp;</b> \\{ }";
        let files = render_all(&WorkspaceVars::new(&params(name, &[]), &lead, Some("{PERSONALITY}")), &lead).unwrap();
        assert!(file(&files, "AGENTS.md").contains(&format!("You are **{name}** (`@nova`)")));
        assert!(file(&files, "SOUL.md").contains("{PERSONALITY}"), "the seed is inserted verbatim");
    }

    #[test]
    fn the_leads_heartbeat_is_copied() {
        let lead = LeadContext { heartbeat: Some("- check the family\n".into()), ..full_lead() };
        let files = render_all(&WorkspaceVars::new(&params("Nova", &[]), &lead, None), &lead).unwrap();
        assert_eq!(file(&files, "HEARTBEAT.md"), "- check the family\n");
    }
}
