//! What goes into a sibling's home for OpenClaw itself: `openclaw.json` (the host writes
//! the credentials).
//!
//! Current OpenClaw (2026.9.x) validates `openclaw.json` strictly — an unknown key, or a
//! channel no installed plugin provides, stops the gateway with exit 78 — so exactly the
//! keys below are written, and `channels.sesame` only when the Sesame plugin is copied
//! (with `plugins.entries.sesame.enabled`, without which OpenClaw does not load a plugin
//! installed by copying).

use crate::caps::Random;
use crate::secret::Secret;
use serde_json::{Value, json};

/// What `openclaw.json` is made from.
pub struct ConfigParams<'a> {
    pub port: u16,
    pub gateway_token: &'a str,
    /// `$OC_HOME/workspace`.
    pub workspace: &'a str,
    pub model: Option<&'a str>,
    /// The plugins the host copies into `extensions/` (each enabled).
    pub plugins: &'a [&'a str],
    /// The sibling's own Sesame key and the API URL, when the Sesame plugin is installed.
    pub sesame: Option<(&'a Secret, &'a str)>,
}

/// The gateway config: local mode on loopback with token auth, the workspace, the model
/// when given, and the Sesame channel when its plugin is there.
pub fn openclaw_json(p: &ConfigParams) -> Value {
    let mut defaults = json!({ "workspace": p.workspace });
    if let Some(model) = p.model {
        defaults["model"] = json!({ "primary": model });
    }
    let mut config = json!({
        "gateway": {
            "mode": "local",
            "port": p.port,
            "bind": "loopback",
            "auth": { "mode": "token", "token": p.gateway_token },
        },
        "agents": { "defaults": defaults },
    });
    if let Some((key, api_url)) = p.sesame {
        config["channels"] = json!({ "sesame": { "enabled": true, "apiKey": key.expose(), "apiUrl": api_url } });
    }
    if !p.plugins.is_empty() {
        let entries: serde_json::Map<String, Value> = p.plugins.iter().map(|name| (name.to_string(), json!({ "enabled": true }))).collect();
        config["plugins"] = json!({ "entries": entries });
    }
    config
}

/// A fresh gateway token: 32 random bytes, hex.
pub fn gateway_token(random: &dyn Random) -> String {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::CountingRandom;

    fn keys(value: &Value) -> Vec<&str> {
        value.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn writes_exactly_the_keys_openclaw_accepts() {
        let key = Secret::new("sk_sesame_1234");
        let config = openclaw_json(&ConfigParams {
            port: 18930,
            gateway_token: "tok",
            workspace: "/h/.openclaw-nova/workspace",
            model: Some("anthropic/claude-opus-4-6"),
            plugins: &["sesame"],
            sesame: Some((&key, "https://api.sesame.space")),
        });
        assert_eq!(keys(&config), ["agents", "channels", "gateway", "plugins"]);
        assert_eq!(config["plugins"], json!({"entries": {"sesame": {"enabled": true}}}));
        assert_eq!(
            config["gateway"],
            json!({"mode": "local", "port": 18930, "bind": "loopback", "auth": {"mode": "token", "token": "tok"}})
        );
        assert_eq!(
            config["agents"],
            json!({"defaults": {"workspace": "/h/.openclaw-nova/workspace", "model": {"primary": "anthropic/claude-opus-4-6"}}})
        );
        assert_eq!(
            config["channels"],
            json!({"sesame": {"enabled": true, "apiKey": "sk_sesame_1234", "apiUrl": "https://api.sesame.space"}})
        );
    }

    #[test]
    fn leaves_out_what_is_not_given() {
        let config = openclaw_json(&ConfigParams { port: 19000, gateway_token: "t", workspace: "/w", model: None, plugins: &[], sesame: None });
        assert_eq!(keys(&config), ["agents", "gateway"]);
        assert_eq!(keys(&config["agents"]["defaults"]), ["workspace"]);
    }

    #[test]
    fn tokens_are_64_hex_digits_from_the_random_source() {
        let token = gateway_token(&CountingRandom::default());
        assert_eq!(token.len(), 64);
        assert!(token.starts_with("000102030405"));
    }
}
