//! A sibling's provider credential, which only the host writes: the task's key as the
//! component passes it, or the lead's own key for that one provider, which the component
//! never sees. Nothing else of the lead's (`.env` entries, auth profiles) is passed on.

use crate::runtime::bindings::CredentialLayout;
use crate::lead::lead_env::LeadEnv;
use crate::sys::safe_open;
use crate::sys::secret::Secret;
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::path::Path;

/// The providers and the variable current OpenClaw reads each one's key from.
pub const PROVIDERS: [(&str, &str); 3] =
    [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY"), ("openrouter", "OPENROUTER_API_KEY")];

/// The original skill's credential file, relative to the agent's home.
pub const LEGACY_AUTH: &str = "agents/main/agent/auth.json";

/// The largest legacy `auth.json` the host reads.
const MAX_AUTH_JSON: u64 = 1 << 20;

/// Why the host writes no credential file for a provider's key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0:?} is not a provider (one of {providers})", providers = PROVIDERS.map(|(p, _)| p).join(", "))]
    UnknownProvider(String),
    #[error("the {0} key is not a plain key (letters, digits and -_.:+/= only)")]
    NotPlain(String),
}

/// The key variable of `provider`, or why there is none.
pub fn env_var(provider: &str) -> Result<&'static str, CredentialError> {
    PROVIDERS.iter().find(|(p, _)| *p == provider).map(|(_, var)| *var).ok_or_else(|| CredentialError::UnknownProvider(provider.to_string()))
}

/// The lead's keys the host can pass on, by provider, with where each came from.
#[derive(Debug, Default)]
pub struct LeadKeys {
    keys: BTreeMap<&'static str, (Secret, String)>,
}

impl LeadKeys {
    /// Each provider's key: its variable in the lead's environment (process, then
    /// `.env`), else the lead's legacy `agents/main/agent/auth.json`.
    pub fn find(lead_home: &Path, env: &LeadEnv) -> Result<Self> {
        let auth_path = lead_home.join(LEGACY_AUTH);
        let legacy: serde_json::Value = match safe_open::read_path(&auth_path, MAX_AUTH_JSON)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow!("{} is not valid JSON (line {}, column {})", auth_path.display(), e.line(), e.column()))?,
            None => serde_json::Value::Null,
        };
        let mut keys = BTreeMap::new();
        for (provider, var) in PROVIDERS {
            let from_env = env.get(var).and_then(|(key, source)| Some((Secret::new(key)?, format!("{var} from {source}"))));
            let from_legacy = || {
                let key = legacy[provider]["key"].as_str().and_then(Secret::new)?;
                Some((key, format!("{} ({provider}.key)", auth_path.display())))
            };
            if let Some(found) = from_env.or_else(from_legacy) {
                keys.insert(provider, found);
            }
        }
        Ok(Self { keys })
    }

    /// The providers the lead has a key for.
    pub fn providers(&self) -> Vec<String> {
        self.keys.keys().map(|p| p.to_string()).collect()
    }

    /// The lead's key for `provider` and where it came from.
    pub fn get(&self, provider: &str) -> Option<&(Secret, String)> {
        self.keys.get(provider)
    }

    /// Every key, for scrubbing.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.keys.values().map(|(key, _)| key)
    }
}

/// The credential file for `key` of `provider` in `layout`: its path relative to the
/// sibling's home, and its contents. Keys must be plain (letters, digits, `-_.:+/=`), so
/// that nothing can be injected into the file.
pub fn render(provider: &str, key: &Secret, layout: CredentialLayout) -> Result<(&'static str, Vec<u8>), CredentialError> {
    let line = env_line(provider, key)?;
    Ok(match layout {
        CredentialLayout::EnvFile => (".env", format!("# Written by agent-provisioner. Provider key for this agent.\n{line}").into_bytes()),
        CredentialLayout::Legacy => {
            let json = serde_json::json!({ provider: { "type": "api_key", "key": key.expose() } });
            (LEGACY_AUTH, format!("{json:#}\n").into_bytes())
        }
    })
}

/// The `.env` line `VAR="key"` of `provider`'s key; refused unless the key is plain
/// (letters, digits and `-_.:+/=`), so nothing can be injected into the file.
pub fn env_line(provider: &str, key: &Secret) -> Result<String, CredentialError> {
    let var = env_var(provider)?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:+/=".contains(c);
    if !key.expose().chars().all(plain) {
        return Err(CredentialError::NotPlain(provider.to_string()));
    }
    Ok(format!("{var}=\"{}\"\n", key.expose()))
}

/// Checks a sibling's `.env` (restored from an archive): OpenClaw loads it into the
/// gateway's environment unfiltered (`NODE_OPTIONS` there runs code), so it may hold only
/// comments, blank lines and the provider key variables with plain values. The error
/// names the line and the variable, never a value.
pub fn check_env(contents: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(contents).map_err(|_| "is not UTF-8".to_string())?;
    let allowed = PROVIDERS.map(|(_, var)| var);
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {number} is not VARIABLE=value"));
        };
        let name = name.trim();
        let named = name.len() <= 64 && !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !named {
            return Err(format!("line {number} does not start with a variable name"));
        }
        if !allowed.contains(&name) {
            return Err(format!("line {number}: {name} is not a provider key variable (only {} are restored)", allowed.join(", ")));
        }
        let value = value.trim();
        let unquoted = ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        if unquoted.is_empty() || !unquoted.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:+/=".contains(c)) {
            return Err(format!("line {number}: the value of {name} is not a plain key"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_keys_come_from_the_environment_then_the_legacy_auth_json() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(".env"), "ANTHROPIC_API_KEY=sk-ant-dotenv\nDATABASE_PASSWORD=hunter2hunter2\n").unwrap();
        std::fs::create_dir_all(temp.path().join("agents/main/agent")).unwrap();
        std::fs::write(temp.path().join(LEGACY_AUTH), r#"{"openrouter": {"type": "api_key", "key": "sk-or-legacy"}, "anthropic": {"key": "sk-ant-old"}}"#).unwrap();
        let env = LeadEnv::read(temp.path(), [("OPENAI_API_KEY".to_string(), "sk-openai-process".to_string())]).unwrap();
        let keys = LeadKeys::find(temp.path(), &env).unwrap();
        assert_eq!(keys.providers(), ["anthropic", "openai", "openrouter"]);
        assert_eq!(keys.get("anthropic").unwrap().0.expose(), "sk-ant-dotenv");
        assert!(keys.get("anthropic").unwrap().1.starts_with("ANTHROPIC_API_KEY from "));
        assert_eq!(keys.get("openai").unwrap().0.expose(), "sk-openai-process");
        assert_eq!(keys.get("openrouter").unwrap().0.expose(), "sk-or-legacy");
        assert!(!format!("{keys:?}").contains("sk-"), "keys never show");
    }

    #[test]
    fn renders_one_variable_or_the_legacy_file() {
        let key = Secret::new("sk-ant-1234").unwrap();
        let (path, text) = render("anthropic", &key, CredentialLayout::EnvFile).unwrap();
        assert_eq!(path, ".env");
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(), ["ANTHROPIC_API_KEY=\"sk-ant-1234\""]);
        let (path, json) = render("openrouter", &key, CredentialLayout::Legacy).unwrap();
        assert_eq!(path, LEGACY_AUTH);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json, serde_json::json!({"openrouter": {"type": "api_key", "key": "sk-ant-1234"}}));
        let injected = Secret::new("sk\"\nNODE_OPTIONS=--require=/x").unwrap();
        assert!(render("anthropic", &injected, CredentialLayout::EnvFile).unwrap_err().to_string().contains("not a plain key"));
        assert!(render("cohere", &key, CredentialLayout::EnvFile).unwrap_err().to_string().contains("not a provider"));
    }

    #[test]
    fn a_restored_env_holds_provider_keys_only_and_errors_never_show_a_value() {
        let key = Secret::new("sk-ant-1234").unwrap();
        let (_, written) = render("anthropic", &key, CredentialLayout::EnvFile).unwrap();
        assert_eq!(check_env(&written), Ok(()));
        assert_eq!(check_env(b"\n# note\nOPENAI_API_KEY=sk-1\nOPENROUTER_API_KEY='sk-or-2'\n"), Ok(()));
        for (text, why) in [
            (&b"NODE_OPTIONS=--require /tmp/evil.js\n"[..], "line 1: NODE_OPTIONS is not a provider key variable"),
            (b"ANTHROPIC_API_KEY=sk\nPATH=/tmp/evil\n", "line 2: PATH is not"),
            (b"ANTHROPIC_API_KEY=\"$(touch /tmp/x)\"\n", "the value of ANTHROPIC_API_KEY is not a plain key"),
            (b"ANTHROPIC_API_KEY=${OTHER}\n", "not a plain key"),
            (b"sk-ant-secret-value\n", "line 1 is not VARIABLE=value"),
            (b"export ANTHROPIC_API_KEY=sk\n", "does not start with a variable name"),
            (b"\xff", "not UTF-8"),
        ] {
            let err = check_env(text).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("evil") && !err.contains("secret") && !err.contains("touch"), "{err}");
        }
    }
}
