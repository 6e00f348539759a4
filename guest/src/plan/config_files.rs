//! The config step's files: the home, `openclaw.json` with a fresh gateway token, the
//! provider credential (written by the host), the lead's plugins, the memory directory.

use crate::caps::{Caps, CredentialLayout};
use crate::config;
use crate::file_ops::FileOp;
use crate::layout::SiblingLayout;
use crate::secret::Secret;
use crate::task::Task;
use crate::wit::{CommandError, Context, FieldError};

/// The config step, decided.
pub struct ConfigFiles {
    pub files: Vec<FileOp>,
    /// The secrets these files hold (the sibling's Sesame key, the token, a task key).
    pub secrets: Vec<Secret>,
    pub warnings: Vec<String>,
}

/// The config files of `task`'s home, its gateway on `port`.
pub fn plan(caps: &Caps, ctx: &Context, task: &Task, layout: &SiblingLayout, port: u16) -> Result<ConfigFiles, CommandError> {
    let token = Secret::new(config::gateway_token(caps.random));
    let mut warnings = Vec::new();
    // OpenClaw refuses a channel no installed plugin provides: configure Sesame only
    // when the host copies its plugin from the lead.
    let plugins: Vec<&str> = ctx.lead_plugins.iter().filter_map(|p| p.strip_prefix("extensions/")).collect();
    let sesame_plugin = plugins.contains(&"sesame");
    if !sesame_plugin {
        warnings.push(format!(
            "the host copies no Sesame plugin from the lead ({}/extensions/sesame); the sibling's gateway will run without the Sesame channel",
            ctx.lead_home
        ));
    }
    let openclaw_json = config::openclaw_json(&config::ConfigParams {
        port,
        gateway_token: token.expose(),
        workspace: &layout.workspace,
        model: task.model.as_deref(),
        plugins: &plugins,
        sesame: sesame_plugin.then_some((&task.sesame_api_key, ctx.api_url.as_str())),
    });
    let key = credentials(ctx, task)?;
    let mut secrets = vec![task.sesame_api_key.clone(), token];
    secrets.extend(key.iter().cloned());
    let mut files = vec![
        FileOp::Dir { path: layout.root.clone(), mode: 0o700 },
        FileOp::Dir { path: layout.agent_dir.clone(), mode: 0o700 },
        FileOp::Write { path: layout.config.clone(), mode: 0o600, contents: pretty(&openclaw_json), secret: true },
        FileOp::Credentials {
            handle: task.handle.clone(),
            provider: task.provider.as_str(),
            layout: ctx.credential_layout,
            key,
            path: credentials_path(layout, ctx.credential_layout),
        },
    ];
    if !ctx.lead_plugins.is_empty() {
        files.push(FileOp::LeadPlugins { handle: task.handle.clone(), relative: ctx.lead_plugins.clone() });
    }
    files.push(FileOp::Dir { path: layout.memory.clone(), mode: 0o700 });
    Ok(ConfigFiles { files, secrets, warnings })
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON serializes");
    text.push('\n');
    text.into_bytes()
}

/// Where the host writes the provider credential in `credential_layout`.
fn credentials_path(layout: &SiblingLayout, credential_layout: CredentialLayout) -> String {
    match credential_layout {
        CredentialLayout::EnvFile => layout.env_file.clone(),
        CredentialLayout::Legacy => layout.auth_json.clone(),
    }
}

/// The sibling's LLM key: the task's own (`Some`), or `None` for the lead's, which the
/// host holds and writes itself — refused here when the host has none for the provider.
fn credentials(ctx: &Context, task: &Task) -> Result<Option<Secret>, CommandError> {
    if let Some(key) = &task.llm_api_key {
        return Ok(Some(key.clone()));
    }
    if ctx.lead_provider_keys.iter().any(|p| p == task.provider.as_str()) {
        return Ok(None);
    }
    Err(CommandError::InvalidInput(FieldError {
        field: "llmApiKey".into(),
        message: format!(
            "is null and the lead has no {} to inherit (not in its environment, {}/.env or its legacy auth.json); give the key in the task",
            task.provider.env_var(),
            ctx.lead_home
        ),
    }))
}
