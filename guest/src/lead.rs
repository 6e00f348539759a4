//! What the lead knows: read (never written) from the lead's workspace notes — the only
//! files of the lead's home the host grants — to fill the new sibling's workspace.
//! Missing files are normal and give "unknown"; unreadable ones give a warning that
//! quotes the host.

use crate::caps::{Files, FsError};
use crate::layout::LeadLayout;

/// The longest section of the lead's notes carried over.
const MAX_SECTION: usize = 2000;

/// The human, as the lead's `USER.md` describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HumanInfo {
    pub name: Option<String>,
    pub handle: Option<String>,
    pub principal_id: Option<String>,
    pub role: Option<String>,
    /// The rest of the file: what the lead has learned about them.
    pub notes: Option<String>,
}

/// The lead's context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadContext {
    pub lead_name: Option<String>,
    pub human: HumanInfo,
    pub people: Option<String>,
    pub projects: Option<String>,
    pub conventions: Option<String>,
    pub shared_resources: Option<String>,
    pub siblings: Option<String>,
    pub heartbeat: Option<String>,
    pub workspace_id: Option<String>,
    /// Files that exist but could not be read, in words.
    pub warnings: Vec<String>,
}

/// Reads the lead's workspace notes.
pub fn read(files: &dyn Files, lead: &LeadLayout) -> LeadContext {
    let mut warnings = Vec::new();
    let mut text = |path: &str| -> Option<String> {
        match files.read(path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(FsError::NotFound(_)) => None,
            Err(e) => {
                warnings.push(format!("cannot read the lead's {path}: {}", e.message()));
                None
            }
        }
    };
    let identity = text(&lead.identity_md);
    let user = text(&lead.user_md);
    let memory = text(&lead.memory_md).unwrap_or_default();
    let heartbeat = text(&lead.heartbeat_md).filter(|h| !h.trim().is_empty());
    let tools = text(&lead.tools_md).unwrap_or_default();
    let section = |names: &[&str]| markdown_section(&memory, names);
    LeadContext {
        lead_name: identity.as_deref().and_then(identity_name),
        human: user.as_deref().map(human_info).unwrap_or_default(),
        people: section(&["people"]),
        projects: section(&["active projects", "projects"]),
        conventions: section(&["conventions"]),
        shared_resources: section(&["shared resources", "resources"]),
        siblings: section(&["family", "siblings"]),
        heartbeat,
        workspace_id: field(&tools, &["workspace id", "workspace"]).filter(|v| !v.contains(' ')),
        warnings,
    }
}

/// The lead's name in IDENTITY.md: a `Name:` line, else the first heading.
fn identity_name(text: &str) -> Option<String> {
    field(text, &["name"]).or_else(|| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("# "))
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && !h.eq_ignore_ascii_case("identity") && !h.to_lowercase().starts_with("identity"))
    })
}

/// The value of a `Name: value`, `- **Name:** value` or `**Name**: value` line.
fn field(text: &str, names: &[&str]) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim().trim_start_matches(['-', '*', ' ']);
        let (label, value) = line.split_once(':')?;
        let label = label.trim().trim_matches('*').trim().to_lowercase();
        let value = value.trim().trim_start_matches('*').trim();
        (names.contains(&label.as_str()) && !value.is_empty()).then(|| bounded(value, 200))
    })
}

/// What USER.md says about the human.
fn human_info(text: &str) -> HumanInfo {
    let handle = field(text, &["handle", "sesame handle", "username"])
        .or_else(|| text.split_whitespace().find(|w| w.starts_with('@') && w.len() > 1).map(str::to_string))
        .map(|h| h.trim_start_matches('@').trim_end_matches(['.', ',', ')']).to_string());
    let principal_id = field(text, &["principal id", "principal", "sesame id", "principalid"])
        .and_then(|v| v.split_whitespace().find(|w| looks_like_uuid(w.trim_matches('`'))).map(|w| w.trim_matches('`').to_lowercase()));
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim().trim_start_matches(['-', '*', ' ']);
            !t.starts_with('#') && !t.split_once(':').is_some_and(|(label, _)| is_known_label(label))
        })
        .collect();
    let notes = notes.join("\n").trim().to_string();
    HumanInfo {
        name: field(text, &["name", "preferred name", "what to call them"]),
        handle,
        principal_id,
        role: field(text, &["role", "title"]),
        notes: (!notes.is_empty()).then(|| bounded(&notes, MAX_SECTION)),
    }
}

fn is_known_label(label: &str) -> bool {
    let label = label.trim().trim_matches('*').trim().to_lowercase();
    ["name", "preferred name", "what to call them", "handle", "sesame handle", "principal id", "sesame id", "role", "title", "timezone", "pronouns"]
        .contains(&label.as_str())
}

fn looks_like_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The body of the first `##` section whose heading matches one of `names`.
fn markdown_section(text: &str, names: &[&str]) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| {
        l.trim().strip_prefix("## ").is_some_and(|h| names.contains(&h.trim().trim_end_matches(':').to_lowercase().as_str()))
    })?;
    let body: Vec<&str> = lines.take_while(|l| !l.trim_start().starts_with("## ") && !l.trim_start().starts_with("# ")).collect();
    let body = body.join("\n").trim().to_string();
    (!body.is_empty()).then(|| bounded(&body, MAX_SECTION))
}

fn bounded(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemFs;

    fn lead() -> LeadLayout {
        LeadLayout::new("/h/.openclaw")
    }

    const USER_MD: &str = "# USER.md - About Your Human\n\n- **Name:** Alex Rivera\n- **What to call them:** Alex\n- **Handle:** @alex\n- **Principal ID:** `55555555-6666-7777-8888-999999999999`\n- **Role:** Founder\n- **Timezone:** Europe/Berlin\n\n## Context\n\nAlex runs the family of agents and prefers short answers.\nLikes decisions backed by numbers.\n";

    const MEMORY_MD: &str = "# MEMORY.md\n\n## People\n- Alex: founder\n- Sam: designer\n\n## Active Projects\n- Launch the Nova agent\n\n## Conventions\n- Commit small.\n\n## Shared Resources\n- Vault `family-shared`\n\n## Family\n- atlas (lead)\n";

    #[test]
    fn reads_the_lead_workspace() {
        let fs = MemFs::new();
        let l = lead();
        fs.add_file(&l.identity_md, "# IDENTITY.md\n\n- **Name:** Atlas\n- **Creature:** owl\n");
        fs.add_file(&l.user_md, USER_MD);
        fs.add_file(&l.memory_md, MEMORY_MD);
        fs.add_file(&l.heartbeat_md, "# Heartbeat\n- check the family\n");
        fs.add_file(&l.tools_md, "## Sesame\n- Workspace ID: ws-123\n");
        let ctx = read(&fs, &l);
        assert_eq!(ctx.lead_name.as_deref(), Some("Atlas"));
        assert_eq!(ctx.human.name.as_deref(), Some("Alex Rivera"));
        assert_eq!(ctx.human.handle.as_deref(), Some("alex"));
        assert_eq!(ctx.human.principal_id.as_deref(), Some("55555555-6666-7777-8888-999999999999"));
        assert_eq!(ctx.human.role.as_deref(), Some("Founder"));
        let notes = ctx.human.notes.unwrap();
        assert!(notes.contains("prefers short answers") && !notes.contains("Founder"), "{notes}");
        assert_eq!(ctx.people.as_deref(), Some("- Alex: founder\n- Sam: designer"));
        assert_eq!(ctx.projects.as_deref(), Some("- Launch the Nova agent"));
        assert_eq!(ctx.conventions.as_deref(), Some("- Commit small."));
        assert_eq!(ctx.shared_resources.as_deref(), Some("- Vault `family-shared`"));
        assert_eq!(ctx.siblings.as_deref(), Some("- atlas (lead)"));
        assert!(ctx.heartbeat.unwrap().contains("check the family"));
        assert_eq!(ctx.workspace_id.as_deref(), Some("ws-123"));
        assert!(ctx.warnings.is_empty());
    }

    #[test]
    fn an_empty_lead_gives_unknowns_and_no_warnings() {
        let ctx = read(&MemFs::new(), &lead());
        assert_eq!(ctx, LeadContext::default());
    }

    #[test]
    fn unreadable_files_are_warnings_quoting_the_host() {
        let fs = MemFs::new();
        fs.add_file(&lead().user_md, USER_MD);
        fs.denied.borrow_mut().push(lead().user_md);
        let ctx = read(&fs, &lead());
        assert_eq!(ctx.human, HumanInfo::default());
        assert!(ctx.warnings[0].contains("USER.md") && ctx.warnings[0].contains("denied"), "{:?}", ctx.warnings);
    }

    #[test]
    fn identity_falls_back_to_the_heading() {
        assert_eq!(identity_name("# Atlas\n\nI help."), Some("Atlas".into()));
        assert_eq!(identity_name("# IDENTITY.md - Who Am I?\n\n_fill me_"), None);
    }
}
