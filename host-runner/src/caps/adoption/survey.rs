//! Finding the sibling homes the host did not make, and what adopting each would meet:
//! its config's port and the keys outside the provisioner's shape, legacy credential
//! files (providers and profile counts only, never a key), its `.env`, the code paths it
//! holds, its old service definition, and every reason to refuse it.
//!
//! Everything is read from the sibling's home, which the sibling may rewrite at any
//! moment: the home must be a real directory, and each file is opened without following
//! a link or blocking on a FIFO, within a size cap.

use super::legacy_service::{Found, LegacyServices};
use crate::runtime::bindings::openclaw::provisioner::adoption::{LegacyCredential, LegacySibling};
use crate::lead::credentials::{LEGACY_AUTH, PROVIDERS};
use crate::record::state::HostState;
use crate::sys::safe_open;
use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The copied auth-profiles file of the original skill.
pub const LEGACY_PROFILES: &str = "agents/main/agent/auth-profiles.json";

/// OpenClaw's legacy OAuth store: only `openclaw doctor --fix` migrates it.
const LEGACY_OAUTH: &str = "credentials/oauth.json";

/// The top-level places of a home from which OpenClaw 2026.9 loads code or commands
/// (`docs/openclaw-2026.9.6.md`), for the plan to say what an adoption keeps as it is.
/// What a component may write is a positive list ([`crate::caps::fs::sibling_files::LIST`]); this
/// one only reports.
const CODE_ROOTS: &[&str] = &[
    "extensions",
    "npm",
    "git",
    "plugins",
    "mpm",
    "node_modules",
    "skills",
    "plugin-skills",
    "skill-library",
    "hooks",
    "cache",
    "service-env",
    "gateway.systemd.env",
    "tools",
    "node-runtime",
    "node-host",
    "projects",
    "worktree-sources",
    "state",
    "cron",
    "exec-approvals.json",
    "workspace/.openclaw",
    "workspace/.agents",
    "workspace/skills",
    "workspace/hooks",
];

/// The largest config or credential file read.
const MAX_FILE: u64 = 1 << 20;

/// The keys of `openclaw.json` the provisioner writes (dotted; a prefix covers what is
/// under it); anything else is left out on adoption.
const CONFIG_SHAPE: &[&str] = &[
    "gateway.mode",
    "gateway.port",
    "gateway.bind",
    "gateway.auth.mode",
    "gateway.auth.token",
    "agents.defaults.workspace",
    "agents.defaults.model.primary",
    "channels.sesame.enabled",
    "channels.sesame.apiKey",
    "channels.sesame.apiUrl",
    "plugins.entries.sesame.enabled",
];

/// What the survey looks at.
pub struct Survey<'a> {
    pub home: &'a Path,
    pub lead_home: &'a Path,
    pub lead_handles: &'a [String],
    pub state: &'a HostState,
    pub services: &'a LegacyServices,
}

/// A candidate and its old definition's bytes (for the snapshot).
pub struct Surveyed {
    pub sibling: LegacySibling,
    pub definition: Option<Found>,
}

impl Survey<'_> {
    /// Every `~/.openclaw-<handle>` the host did not make (valid handles, not the lead's),
    /// sorted by handle.
    pub fn candidates(&self) -> Vec<LegacySibling> {
        let Ok(entries) = std::fs::read_dir(self.home) else { return Vec::new() };
        let mut handles: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("openclaw.json").symlink_metadata().is_ok())
            .filter_map(|e| naming::handle_of_home_name(&e.file_name().to_string_lossy()).map(String::from))
            .filter(|h| naming::check_sibling(h, self.lead_handles).is_ok() && (!self.is_recorded(h) || self.interrupted(h)))
            .collect();
        handles.sort();
        handles.into_iter().map(|h| self.one(&h).sibling).filter(|s| Path::new(&s.oc_home) != self.lead_home).collect()
    }

    /// Whether the host's record has `handle` as a sibling home (of any lead).
    fn is_recorded(&self, handle: &str) -> bool {
        self.state.sibling(handle, self.lead_home).is_some() || self.state.definition(handle).is_some()
    }

    /// Whether an adoption of `handle` was killed part-way (its snapshot is on disk).
    fn interrupted(&self, handle: &str) -> bool {
        super::snapshot::Snapshot::dir_of(Path::new(&naming::host_state_dir(&self.home.display().to_string())), handle).exists()
    }

    /// The sibling `handle` as found, with every reason it cannot be adopted.
    pub fn one(&self, handle: &str) -> Surveyed {
        let root = PathBuf::from(naming::sibling_home(&self.home.display().to_string(), handle));
        let mut s = LegacySibling {
            handle: handle.into(),
            oc_home: root.display().to_string(),
            port: None,
            model: None,
            foreign_config_keys: Vec::new(),
            legacy_credentials: Vec::new(),
            env_providers: Vec::new(),
            code_paths: Vec::new(),
            definition: None,
            refusals: Vec::new(),
        };
        if let Err(why) = naming::check_sibling(handle, self.lead_handles) {
            s.refusals.push(format!("{handle:?} is not a sibling handle: it {why}"));
            return Surveyed { sibling: s, definition: None };
        }
        if self.interrupted(handle) {
            s.refusals.push(format!("an adoption of {handle} was killed part-way; `adopt {handle}` puts back what it left first"));
        } else if self.is_recorded(handle) {
            s.refusals.push(format!("{handle} is managed by this host already (it made or adopted it); nothing to adopt"));
        }
        match self.open_home(&root) {
            Ok(dir) => self.read_home(&dir, &mut s),
            Err(why) => s.refusals.push(why),
        }
        let definition = match self.services.find(handle) {
            Ok(found) => found,
            Err(why) => {
                s.refusals.push(why);
                None
            }
        };
        s.definition = definition.as_ref().map(|f| f.definition.clone());
        if let Some(own) = self.services.openclaw_own(handle) {
            s.refusals.push(format!(
                "OpenClaw's own service {} runs the profile {handle} too; adoption leaves OpenClaw's services alone: remove it (`openclaw --profile {handle} gateway uninstall`) first",
                own.display()
            ));
        }
        let bash_era = !s.legacy_credentials.is_empty() || s.definition.is_some();
        if s.refusals.is_empty() && !bash_era {
            s.refusals.push(format!(
                "{} has no sign of the original skill (no {LEGACY_AUTH}, no service definition of it); another OpenClaw profile is not adopted",
                s.oc_home
            ));
        }
        Surveyed { sibling: s, definition }
    }

    /// The home as a directory, never through a link, and never the lead's own.
    fn open_home(&self, root: &Path) -> Result<Dir, String> {
        let parent = Dir::open_ambient_dir(self.home, cap_std::ambient_authority()).map_err(|e| format!("opening {}: {e}", self.home.display()))?;
        let name = root.file_name().expect("a home has a name");
        let dir = parent.open_dir_nofollow(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} does not exist", root.display()),
            _ => format!("{} is not a directory the host opens without following a link ({e})", root.display()),
        })?;
        let same = |a: &Path| std::fs::metadata(a).ok().map(|m| (std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m)));
        if same(root).is_some() && same(root) == same(self.lead_home) {
            return Err(format!("{} is the lead's own home", root.display()));
        }
        Ok(dir)
    }

    /// Reads the config, the credential files, `.env` and the code paths.
    fn read_home(&self, dir: &Dir, s: &mut LegacySibling) {
        match read(dir, "openclaw.json") {
            Ok(Some(bytes)) => match parse_config(&bytes) {
                Ok(config) => describe_config(&config, s),
                Err(why) => s.refusals.push(format!("{}/openclaw.json {why}", s.oc_home)),
            },
            Ok(None) => s.refusals.push(format!("{} has no openclaw.json: not an OpenClaw home", s.oc_home)),
            Err(why) => s.refusals.push(why),
        }
        for path in [LEGACY_AUTH, LEGACY_PROFILES] {
            match read(dir, path) {
                Ok(Some(bytes)) => match credential(path, &bytes) {
                    Ok(found) => s.legacy_credentials.push(found),
                    Err(why) => s.refusals.push(format!("{}/{path} {why}", s.oc_home)),
                },
                Ok(None) => {}
                Err(why) => s.refusals.push(why),
            }
        }
        if dir.symlink_metadata(LEGACY_OAUTH).is_ok() {
            s.refusals.push(format!(
                "{}/{LEGACY_OAUTH} holds OAuth logins, which only OpenClaw migrates: run `openclaw --profile {} doctor --fix` with its gateway stopped, then adopt",
                s.oc_home, s.handle
            ));
        }
        match read(dir, ".env") {
            Ok(Some(bytes)) => match crate::lead::credentials::check_env(&bytes) {
                Ok(()) => s.env_providers = env_providers(&bytes),
                Err(why) => s.refusals.push(format!(
                    "{}/.env {why}; the gateway loads it into its environment unfiltered, so the host adopts only a .env of provider keys",
                    s.oc_home
                )),
            },
            Ok(None) => {}
            Err(why) => s.refusals.push(why),
        }
        s.code_paths = CODE_ROOTS
            .iter()
            .filter(|p| dir.symlink_metadata(p).is_ok())
            .map(|p| format!("{p}/"))
            .collect();
    }
}

/// A file of the home, or `None` when it does not exist; the error names it.
fn read(dir: &Dir, relative: &str) -> Result<Option<Vec<u8>>, String> {
    match safe_open::read_regular(dir, Path::new(relative), MAX_FILE) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{relative} in the sibling home cannot be read safely: {e}")),
    }
}

/// `openclaw.json` as OpenClaw reads it: JSON5, tried as plain JSON first (what the
/// original skill wrote), since the JSON5 parser recurses deeply and the host may run
/// this on a worker thread with a small stack.
pub fn parse_config(bytes: &[u8]) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
    json5::from_str(text).map_err(|e| format!("does not parse as JSON5 ({e})"))
}

/// Port, model and the keys outside the provisioner's shape; a `${…}` where a value is
/// kept is a refusal (the provisioner writes plain values only).
fn describe_config(config: &Value, s: &mut LegacySibling) {
    s.port = config["gateway"]["port"].as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p >= 1024);
    s.model = config["agents"]["defaults"]["model"]["primary"].as_str().or_else(|| config["agents"]["defaults"]["model"].as_str()).map(String::from);
    let mut foreign = Vec::new();
    foreign_keys(config, "", &mut foreign);
    if config["agents"]["defaults"]["model"].is_string() {
        // A bare model string is kept, as `model.primary`.
        foreign.retain(|k| k != "agents.defaults.model");
    }
    s.foreign_config_keys = foreign;
    for (at, value) in [("channels.sesame.apiKey", &config["channels"]["sesame"]["apiKey"]), ("gateway.auth.token", &config["gateway"]["auth"]["token"])] {
        if value.as_str().is_some_and(|v| v.contains("${")) {
            s.refusals.push(format!("{}/openclaw.json: {at} is a ${{…}} substitution; the host adopts plain values only", s.oc_home));
        }
    }
}

/// Dotted paths of the leaves (or whole objects) of `value` outside [`CONFIG_SHAPE`].
fn foreign_keys(value: &Value, at: &str, out: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        if !at.is_empty() && !CONFIG_SHAPE.contains(&at) {
            out.push(at.to_string());
        }
        return;
    };
    for (key, child) in map {
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        let inside = CONFIG_SHAPE.iter().any(|k| k == &path || k.starts_with(&format!("{path}.")));
        if inside {
            foreign_keys(child, &path, out);
        } else {
            out.push(path);
        }
    }
}

/// A legacy credential file's providers (and profile count), never a key.
fn credential(path: &str, bytes: &[u8]) -> Result<LegacyCredential, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("is not JSON (line {}, column {})", e.line(), e.column()))?;
    let known = |p: &str| PROVIDERS.iter().any(|(name, _)| *name == p);
    if path == LEGACY_AUTH {
        let map = value.as_object().ok_or("is not a JSON object")?;
        let providers: Vec<String> = map.iter().filter(|(p, v)| known(p) && v["key"].is_string()).map(|(p, _)| p.clone()).collect();
        return Ok(LegacyCredential { path: path.into(), providers, profiles: 0 });
    }
    let profiles = value["profiles"].as_object().map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default();
    let mut providers: Vec<String> = profiles.iter().filter_map(|p| p["provider"].as_str().map(String::from)).collect();
    providers.sort();
    providers.dedup();
    Ok(LegacyCredential { path: path.into(), providers, profiles: profiles.len() as u32 })
}

/// The providers whose key variable a checked `.env` sets.
fn env_providers(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    PROVIDERS
        .iter()
        .filter(|(_, var)| text.lines().any(|l| l.trim().split_once('=').is_some_and(|(n, _)| n.trim() == *var)))
        .map(|(p, _)| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_the_provisioners_shape_are_named() {
        let config = serde_json::json!({
            "gateway": {"port": 18791, "mode": "local", "controlUi": {"enabled": true}},
            "agents": {"defaults": {"model": {"primary": "anthropic/x", "fallbacks": []}}},
            "channels": {"sesame": {"apiKey": "k"}, "telegram": {"token": "t"}},
            "hooks": {"onStart": "curl evil"}
        });
        let mut out = Vec::new();
        foreign_keys(&config, "", &mut out);
        assert_eq!(out, ["agents.defaults.model.fallbacks", "channels.telegram", "gateway.controlUi", "hooks"]);
    }

    #[test]
    fn credential_files_yield_providers_and_counts_never_keys() {
        let auth = br#"{"anthropic": {"type": "api_key", "key": "sk-ant-1"}, "bogus": {"key": "x"}}"#;
        let found = credential(LEGACY_AUTH, auth).unwrap();
        assert_eq!((found.providers, found.profiles), (vec!["anthropic".to_string()], 0));
        let profiles = br#"{"version": 1, "profiles": {"anthropic:default": {"provider": "anthropic", "key": "k"}, "openai:x": {"provider": "openai"}}}"#;
        let found = credential(LEGACY_PROFILES, profiles).unwrap();
        assert_eq!((found.providers, found.profiles), (vec!["anthropic".to_string(), "openai".to_string()], 2));
        assert!(credential(LEGACY_AUTH, b"[1]").unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn a_substituted_key_is_a_refusal() {
        let mut s = LegacySibling {
            handle: "nova".into(),
            oc_home: "/h/.openclaw-nova".into(),
            port: None,
            model: None,
            foreign_config_keys: vec![],
            legacy_credentials: vec![],
            env_providers: vec![],
            code_paths: vec![],
            definition: None,
            refusals: vec![],
        };
        describe_config(&serde_json::json!({"gateway": {"port": 18792}, "agents": {"defaults": {"model": "m"}}, "channels": {"sesame": {"apiKey": "${KEY}"}}}), &mut s);
        assert_eq!((s.port, s.model.as_deref()), (Some(18792), Some("m")));
        assert!(s.foreign_config_keys.is_empty(), "{:?}", s.foreign_config_keys);
        assert!(s.refusals[0].contains("channels.sesame.apiKey is a ${…} substitution"), "{:?}", s.refusals);
    }
}
