//! What the host reads from the lead's `openclaw.json` itself: the lead's Sesame key
//! (which the guest never sees) and a few non-secret facts passed on in the context.

use crate::secret::Secret;
use anyhow::{Context as _, Result};
use serde_json::Value;
use std::path::Path;

/// The lead's configuration, as far as the host needs it.
#[derive(Debug, Default)]
pub struct LeadConfig {
    /// The lead's Sesame API key: `SESAME_API_KEY` when set, else `channels.sesame.apiKey`.
    pub sesame_key: Option<Secret>,
    /// Where the key came from, for the banner (never the key itself).
    pub key_source: Option<String>,
    /// `channels.sesame.workspaceId`.
    pub workspace_id: Option<String>,
    /// The handle the lead's config names (`channels.sesame.handle`).
    pub handle: Option<String>,
}

/// Reads `<lead_home>/openclaw.json` (JSON5). A missing file is not an error; a file that
/// does not parse is.
pub fn read(lead_home: &Path, env_key: Option<String>) -> Result<LeadConfig> {
    let path = lead_home.join("openclaw.json");
    let config: Value = match std::fs::read_to_string(&path) {
        Ok(text) => json5::from_str(&text).with_context(|| format!("{} does not parse as JSON5", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let sesame = &config["channels"]["sesame"];
    let text = |v: &Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    let (sesame_key, key_source) = match env_key.and_then(Secret::new) {
        Some(key) => (Some(key), Some("SESAME_API_KEY".to_string())),
        None => match text(&sesame["apiKey"]).and_then(Secret::new) {
            Some(key) => (Some(key), Some(format!("{} (channels.sesame.apiKey)", path.display()))),
            None => (None, None),
        },
    };
    Ok(LeadConfig { sesame_key, key_source, workspace_id: text(&sesame["workspaceId"]), handle: text(&sesame["handle"]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(config: &str, dir_name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join(dir_name);
        std::fs::create_dir(&home).unwrap();
        std::fs::write(home.join("openclaw.json"), config).unwrap();
        (temp, home)
    }

    #[test]
    fn reads_key_workspace_and_handle_from_json5() {
        let (_t, home) = lead(
            "{ // comment\n channels: { sesame: { apiKey: 'sk-lead', workspaceId: 'ws-1', handle: '@atlas' } }, }",
            ".openclaw-atlas",
        );
        let config = read(&home, None).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-lead");
        assert_eq!(config.workspace_id.as_deref(), Some("ws-1"));
        assert_eq!(config.handle.as_deref(), Some("@atlas"));
        assert!(!config.key_source.unwrap().contains("sk-lead"));
    }

    #[test]
    fn the_environment_wins_and_a_missing_file_is_fine() {
        let (_t, home) = lead("{\"channels\":{\"sesame\":{\"apiKey\":\"sk-file\",\"handle\":\"lead\"}}}", ".openclaw");
        let config = read(&home, Some("sk-env".into())).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-env");
        assert_eq!(config.key_source.as_deref(), Some("SESAME_API_KEY"));
        assert_eq!(config.handle.as_deref(), Some("lead"));
        let empty = tempfile::tempdir().unwrap();
        assert!(read(empty.path(), None).unwrap().sesame_key.is_none());
    }

    #[test]
    fn a_broken_config_is_an_error_naming_the_file() {
        let (_t, home) = lead("{ not json", ".openclaw");
        let err = format!("{:#}", read(&home, None).unwrap_err());
        assert!(err.contains("openclaw.json"), "{err}");
    }
}
