//! What a component may create in a sibling home: a short positive list ([`LIST`]), not
//! a list of the places OpenClaw loads code from (OpenClaw's next code root then needs no
//! change here). A restore writes back the same list ([`crate::caps::fs::restore`]).
//! - names are plain ASCII (`[A-Za-z0-9._-]`) and must match a listed name exactly: one
//!   that differs only in case (`.ENV`, `Workspace`, `OPENCLAW.JSON`) is refused, since a
//!   case-insensitive file system (macOS's default) takes it for the listed file, and a
//!   non-ASCII name may be folded or normalised onto any name;
//! - `openclaw.json` must have exactly the shape the provisioner writes ([`check_write`]):
//!   no key that loads code or runs a command, plugin entries only for the plugins the
//!   host copied, the API URL and workspace pinned, no `${…}` substitution, no `$include`;
//! - credential files (`.env`, `agents/*/agent/auth*.json`) are written by the host only
//!   (`fs.write-credentials`, a restore), never by the component;
//! - modes: no group/other write, no setuid/setgid/sticky ([`check_mode`]).

use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// What a listed place is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A directory: the workspace and the agent directories OpenClaw needs.
    Dir,
    /// A workspace note: the provisioner renders them from its templates, the agent
    /// keeps its own beside them.
    Note,
    /// Anything below the workspace's memory directory, file or directory.
    Memory,
    /// `openclaw.json`, written whole by `write-atomic` and checked.
    Config,
    /// A credential file, which only the host writes.
    Credential,
}

impl Place {
    /// Whether the place is a directory (`true`) or a file of this kind.
    pub fn holds(self, directory: bool) -> bool {
        match self {
            Place::Dir => directory,
            Place::Memory => true,
            Place::Note | Place::Config | Place::Credential => !directory,
        }
    }
}

/// Everything that may be created in a sibling home (relative paths; `*` is any one plain
/// name, `*.md` any one ending so, `**` anything below; names starting with a dot never
/// match these): the config, the workspace's notes (the guest renders them from
/// `templates/`; OpenClaw loads no code from a Markdown file there) and its memory, the
/// agent directories, and the credential files the host writes.
pub const LIST: &[(&str, Place)] = &[
    ("openclaw.json", Place::Config),
    ("workspace", Place::Dir),
    ("workspace/*.md", Place::Note),
    ("workspace/memory", Place::Dir),
    ("workspace/memory/**", Place::Memory),
    ("agents", Place::Dir),
    ("agents/*", Place::Dir),
    ("agents/*/agent", Place::Dir),
    ("agents/*/sessions", Place::Dir),
    (".env", Place::Credential),
    ("agents/*/agent/auth.json", Place::Credential),
    ("agents/*/agent/auth-profiles.json", Place::Credential),
    ("agents/*/agent/auth-state.json", Place::Credential),
];

/// The credential files of [`LIST`], which only the host writes.
pub fn credential_files() -> impl Iterator<Item = &'static str> {
    LIST.iter().filter(|(_, place)| *place == Place::Credential).map(|(pattern, _)| *pattern)
}

/// The listed places in words, for messages and the banner.
pub fn described() -> String {
    LIST.iter().filter(|(_, place)| *place != Place::Credential).map(|(pattern, place)| match place {
        Place::Dir => format!("{pattern}/"),
        _ => pattern.to_string(),
    }).collect::<Vec<_>>().join(", ")
}

/// The mode bits the component may give what it creates.
pub const ALLOWED_MODE: u32 = 0o755;

/// Why a component may not write something into a sibling home.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("mode {mode:04o} has bits {extra:04o} (group/other write, setuid, setgid or sticky); at most {ALLOWED_MODE:04o} is allowed")]
    Mode { mode: u32, extra: u32 },
    #[error("{}: {name:?} is not a plain ASCII name ([A-Za-z0-9._-]); a file system may fold or normalise it onto another name", path.display())]
    NotPlain { path: PathBuf, name: String },
    #[error("{}: differs from {listed} only in case, and a case-insensitive file system (macOS's default) takes it for that; names must match exactly", path.display())]
    Case { path: PathBuf, listed: &'static str },
    #[error("{}: not on the list of what a component may create in a sibling home ({})", path.display(), described())]
    NotListed { path: PathBuf },
    #[error("{}: {listed} is listed as a {}", path.display(), if *directory { "file, not a directory" } else { "directory, not a file" })]
    Kind { path: PathBuf, listed: &'static str, directory: bool },
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

/// A name of `[A-Za-z0-9._-]`, 1 to 255 bytes.
pub fn is_plain(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `parts` is `pattern`, fixed names compared with `same`.
fn matches(pattern: &str, parts: &[&str], same: impl Fn(&str, &str) -> bool) -> bool {
    let wanted: Vec<&str> = pattern.split('/').collect();
    let wild = |name: &&str| !name.starts_with('.');
    for (i, want) in wanted.iter().enumerate() {
        match (*want, parts.get(i)) {
            ("**", Some(_)) => return parts[i..].iter().all(wild),
            (pattern, Some(name)) if pattern.starts_with('*') && pattern != "**" => {
                let suffix = &pattern[1..];
                let ends = name.len() > suffix.len() && same(&name[name.len() - suffix.len()..], suffix);
                if !(wild(name) && ends) {
                    return false;
                }
            }
            (fixed, Some(name)) if !fixed.starts_with('*') && same(name, fixed) => {}
            _ => return false,
        }
    }
    parts.len() == wanted.len()
}

/// Where `relative` is on [`LIST`] (the home itself is a directory), or why it is not.
pub fn place(relative: &Path) -> Result<(&'static str, Place), Refused> {
    let mut parts = Vec::new();
    for component in relative.components().filter(|c| matches!(c, Component::Normal(_))) {
        let name = component.as_os_str().to_str().filter(|n| is_plain(n));
        let refused = || Refused::NotPlain { path: relative.to_path_buf(), name: component.as_os_str().to_string_lossy().into_owned() };
        parts.push(name.ok_or_else(refused)?);
    }
    if parts.is_empty() {
        return Ok(("", Place::Dir));
    }
    let find = |same: fn(&str, &str) -> bool| LIST.iter().copied().find(|(pattern, _)| matches(pattern, &parts, same));
    if let Some(found) = find(|a, b| a == b) {
        return Ok(found);
    }
    match find(|a, b| a.eq_ignore_ascii_case(b)) {
        Some((listed, _)) => Err(Refused::Case { path: relative.to_path_buf(), listed }),
        None => Err(Refused::NotListed { path: relative.to_path_buf() }),
    }
}

/// Refuses a mode with bits outside [`ALLOWED_MODE`].
pub fn check_mode(mode: u32) -> Result<(), Refused> {
    match mode & !ALLOWED_MODE {
        0 => Ok(()),
        extra => Err(Refused::Mode { mode, extra }),
    }
}

/// Where `relative` is on [`LIST`] as what the component creates (a directory or a file):
/// never a credential file, and the config only through `write-atomic`.
fn component_place(relative: &Path, directory: bool) -> Result<Place, Refused> {
    let (listed, place) = place(relative)?;
    let path = relative.to_path_buf();
    match place {
        Place::Credential => Err(Refused::Credential { path, file: listed }),
        Place::Config if directory => Err(Refused::ConfigNotByWrite(path)),
        place if place.holds(directory) => Ok(place),
        _ => Err(Refused::Kind { path, listed, directory }),
    }
}

/// Refuses creating the directory `relative` unless it is a listed directory.
pub fn check_dir(relative: &Path) -> Result<(), Refused> {
    component_place(relative, true).map(drop)
}

/// Checks a whole-file write of `contents` to `relative` in a sibling home.
pub fn check_write(relative: &Path, contents: &[u8], rules: &SiblingRules) -> Result<(), Refused> {
    if component_place(relative, false)? == Place::Config {
        let config: Value = serde_json::from_slice(contents).map_err(Refused::ConfigNotJson)?;
        return check_config(&config, rules).map_err(Refused::Config);
    }
    Ok(())
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
    fn only_listed_places_can_be_created() {
        for path in ["workspace", "workspace/memory", "workspace/memory/2026", "agents", "agents/main", "agents/main/agent", "agents/ops/sessions"] {
            assert!(check_dir(Path::new(path)).is_ok(), "{path}");
        }
        for path in ["workspace/AGENTS.md", "workspace/USER.md", "workspace/memory/2026-01-05.md", "workspace/memory/2026/notes.md"] {
            assert!(check_write(Path::new(path), b"notes", &rules()).is_ok(), "{path}");
        }
        // Code roots OpenClaw has, whether an earlier list named them or not.
        for path in [
            "extensions/evil/index.js",
            "skills/x/SKILL.md",
            "node-host/x.js",
            "skill-library/x/revisions/1",
            "worktree-sources/x",
            "projects/p/.openclaw/worktree-setup.sh",
            "workspace/skills/a",
            "workspace/.openclaw/extensions/x",
            "agents/main/workshop-skills/x",
            "agents/main/agent/models.json",
            "state/openclaw.sqlite",
            "notes.txt",
            "workspace/run.sh",
            "workspace/.md",
            "workspace/sub/NOTE.md",
            "workspace/memory/.openclaw/x",
        ] {
            let err = check_write(Path::new(path), b"", &rules()).unwrap_err().to_string();
            assert!(err.contains("not on the list"), "{path}: {err}");
            assert!(check_dir(Path::new(path)).is_err(), "{path}");
        }
        assert!(check_dir(Path::new("openclaw.json")).unwrap_err().to_string().contains("only by write-atomic"));
        assert!(check_dir(Path::new("workspace/USER.md")).unwrap_err().to_string().contains("listed as a file, not a directory"));
        assert!(check_write(Path::new("workspace/memory"), b"", &rules()).unwrap_err().to_string().contains("listed as a directory"));
    }

    #[test]
    fn names_are_plain_ascii_and_exact() {
        for (path, listed) in [(".ENV", ".env"), ("OPENCLAW.JSON", "openclaw.json"), ("Workspace/USER.md", "workspace/*.md"), ("workspace/USER.MD", "workspace/*.md")] {
            let err = check_write(Path::new(path), b"{}", &rules()).unwrap_err().to_string();
            assert!(err.contains("only in case") && err.contains(listed), "{path}: {err}");
        }
        assert!(check_dir(Path::new("Agents/main")).unwrap_err().to_string().contains("only in case"));
        assert!(check_dir(Path::new("Extensions/x")).unwrap_err().to_string().contains("not on the list"));
        // The Kelvin sign folds onto `K`; a fullwidth E, a combining accent: not ASCII.
        for path in ["wor\u{212a}space/skills", "workspace/memory/\u{ff25}.md", "workspace/memory/e\u{301}.md", "workspace/memory/a b.md"] {
            let err = check_write(Path::new(path), b"", &rules()).unwrap_err().to_string();
            assert!(err.contains("not a plain ASCII name"), "{path}: {err}");
        }
    }

    #[test]
    fn every_template_the_guest_renders_is_a_listed_note() {
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        for entry in std::fs::read_dir(templates).unwrap() {
            let rendered = Path::new("workspace").join(entry.unwrap().file_name());
            assert_eq!(place(&rendered).unwrap().1, Place::Note, "{}", rendered.display());
        }
    }

    #[test]
    fn modes() {
        assert!(check_mode(0o700).is_ok());
        assert!(check_mode(0o644).is_ok());
        for bad in [0o4777, 0o2755, 0o1755, 0o775, 0o646] {
            assert!(check_mode(bad).is_err(), "{bad:o}");
        }
    }

    #[test]
    fn credential_files_are_the_hosts() {
        for path in [".env", "agents/main/agent/auth.json", "agents/other/agent/auth-profiles.json", "agents/main/agent/auth-state.json"] {
            let err = check_write(Path::new(path), b"NODE_OPTIONS=x", &rules()).unwrap_err().to_string();
            assert!(err.contains("written by the host"), "{path}: {err}");
            assert!(check_dir(Path::new(path)).is_err(), "{path}");
        }
        assert_eq!(credential_files().count(), 4);
    }
}
