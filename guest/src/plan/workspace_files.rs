//! The workspace step's files: the templates of `templates/`, filled from the task, the
//! context and the lead's own notes.

use crate::file_ops::FileOp;
use crate::layout::{SiblingLayout, join};
use crate::lead::LeadContext;
use crate::registry::Registry;
use crate::task::Task;
use crate::wit::{CommandError, Context};
use crate::workspace::{self, WorkspaceVars};

/// What the workspace files say about their sibling beyond the task.
pub struct Facts<'a> {
    pub port: u16,
    pub vault_name: &'a str,
    /// The family as registered before this sibling joins.
    pub registry: &'a Registry,
}

/// The rendered workspace files of `task`'s home.
pub fn plan(ctx: &Context, task: &Task, lead: &LeadContext, layout: &SiblingLayout, facts: &Facts) -> Result<Vec<FileOp>, CommandError> {
    let siblings: Vec<String> = facts.registry.siblings.iter().map(|m| format!("{} ({})", m.handle, m.display_name)).collect();
    let vars = WorkspaceVars::new(&params(ctx, task, facts, &siblings), lead, task.personality_seed.as_deref());
    let rendered = workspace::render_all(&vars, lead)
        .map_err(|e| CommandError::Refused(format!("rendering the workspace templates failed: {e}")))?;
    Ok(rendered
        .into_iter()
        .map(|file| FileOp::Write {
            path: join(&layout.workspace, file.name),
            mode: 0o644,
            contents: file.contents.into_bytes(),
            secret: false,
        })
        .collect())
}

fn params<'a>(ctx: &'a Context, task: &'a Task, facts: &Facts<'a>, siblings: &'a [String]) -> workspace::Params<'a> {
    let human = task.human.as_ref();
    workspace::Params {
        handle: &task.handle,
        display_name: &task.display_name,
        principal_id: &task.principal_id,
        workspace_id: ctx.lead_workspace_id.as_deref(),
        family_name: &task.family_name,
        host_name: &ctx.host_name,
        host_os: &ctx.host_os,
        host_arch: &ctx.host_arch,
        api_url: &ctx.api_url,
        dm_channel_id: task.dm_channel_id.as_deref(),
        onboarding_channel_id: task.onboarding_channel_id.as_deref(),
        human_principal_id: human.map(|h| h.principal_id.as_str()),
        human_name: human.and_then(|h| h.name.as_deref()),
        human_handle: human.and_then(|h| h.handle.as_deref()),
        human_role: human.and_then(|h| h.role.as_deref()),
        vault_name: facts.vault_name,
        gateway_port: facts.port,
        siblings,
    }
}
