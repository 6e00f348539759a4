//! What the host reads from the lead's `openclaw.json` itself, resolved the way OpenClaw
//! 2026.9 resolves it: `$include` files (inside the config's directory, at most 10 deep,
//! sibling keys override), then `${VAR}` from the lead's environment ([`LeadEnv`]: the
//! process, then `<lead home>/.env`), then the config's own `env.vars`. It yields the
//! lead's Sesame key (which the guest never sees) and a few non-secret facts passed on in
//! the context. Errors name the file, field and variable, never a value or a source line.

use crate::lead::lead_env::LeadEnv;
use crate::sys::safe_open;
use crate::sys::secret::Secret;
use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// OpenClaw's cap on one config or include file.
const MAX_CONFIG: u64 = 2 << 20;
/// OpenClaw's limit on nested `$include`s.
const MAX_INCLUDE_DEPTH: usize = 10;

/// The lead's configuration, as far as the host needs it.
#[derive(Debug, Default)]
pub struct LeadConfig {
    /// The lead's Sesame API key: `SESAME_API_KEY` in the process environment when set,
    /// else `channels.sesame.apiKey` with its `${VAR}`s resolved.
    pub sesame_key: Option<Secret>,
    /// Where the key came from, for the banner (never the key itself).
    pub key_source: Option<String>,
    /// `channels.sesame.workspaceId`.
    pub workspace_id: Option<String>,
    /// The handle the lead's config names (`channels.sesame.handle`).
    pub handle: Option<String>,
}

/// Reads `<lead_home>/openclaw.json` (JSON5). A missing file is not an error; a file that
/// does not parse, an include that escapes, or a key whose `${VAR}` cannot be resolved is.
pub fn read(lead_home: &Path, env: &LeadEnv) -> Result<LeadConfig> {
    let path = lead_home.join("openclaw.json");
    let root = lead_home.canonicalize().with_context(|| format!("resolving {}", lead_home.display()))?;
    let config = match safe_open::read_path(&path, MAX_CONFIG)? {
        Some(bytes) => resolve_includes(parse(&path, &bytes)?, lead_home, &root, 0)?,
        None => Value::Null,
    };
    let lookup = Lookup { env, config: &config["env"] };
    let sesame = &config["channels"]["sesame"];
    let field = |name: &str| -> Result<Option<(String, Vec<String>)>> {
        let at = format!("channels.sesame.{name}");
        match &sesame[name] {
            Value::Null => Ok(None),
            Value::String(text) => {
                let (value, used) = substitute(text, &lookup).map_err(|why| anyhow!("{at} in {}: {why}", path.display()))?;
                Ok(Some((value.trim().to_string(), used)).filter(|(v, _)| !v.is_empty()))
            }
            _ => bail!("{at} in {} is not a string", path.display()),
        }
    };
    let (sesame_key, key_source) = match env.get("SESAME_API_KEY").filter(|(_, s)| *s == crate::lead::lead_env::Source::Process) {
        Some((key, _)) => (Secret::new(key), Some("SESAME_API_KEY".to_string())),
        None => match field("apiKey")? {
            Some((key, used)) => {
                let from = used.iter().map(|u| format!(", {u}")).collect::<String>();
                (Secret::new(key), Some(format!("{} (channels.sesame.apiKey{from})", path.display())))
            }
            None => (None, None),
        },
    };
    Ok(LeadConfig {
        sesame_key,
        key_source,
        workspace_id: field("workspaceId")?.map(|(v, _)| v),
        handle: field("handle")?.map(|(v, _)| v),
    })
}

/// Parses JSON5; an error gives the file, line and column, never the text around it.
fn parse(path: &Path, bytes: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow!("{} is not UTF-8 (at byte {})", path.display(), e.valid_up_to()))?;
    json5::from_str(text).map_err(|e| match e {
        json5::Error::Message { location: Some(at), .. } => {
            anyhow!("{} is not valid JSON5: syntax error at line {}, column {}", path.display(), at.line, at.column)
        }
        json5::Error::Message { location: None, .. } => anyhow!("{} is not valid JSON5", path.display()),
    })
}

/// Replaces every `$include` in `value` (found in a file in `dir`) by the merged
/// contents of the files it names; the object's own keys override what they bring.
fn resolve_includes(value: Value, dir: &Path, root: &Path, depth: usize) -> Result<Value> {
    match value {
        Value::Object(mut map) => {
            let included = match map.remove("$include") {
                None => Value::Object(Default::default()),
                Some(spec) => load_includes(&spec, dir, root, depth)?,
            };
            let mut own = serde_json::Map::new();
            for (key, child) in map {
                own.insert(key, resolve_includes(child, dir, root, depth)?);
            }
            Ok(merge(included, Value::Object(own)))
        }
        Value::Array(items) => items.into_iter().map(|v| resolve_includes(v, dir, root, depth)).collect::<Result<_>>().map(Value::Array),
        other => Ok(other),
    }
}

/// Loads the file or files an `$include` names, merged in order.
fn load_includes(spec: &Value, dir: &Path, root: &Path, depth: usize) -> Result<Value> {
    let names: Vec<&str> = match spec {
        Value::String(name) => vec![name],
        Value::Array(items) => items.iter().map(|v| v.as_str().ok_or_else(|| anyhow!("$include lists a value that is not a path"))).collect::<Result<_>>()?,
        _ => bail!("$include must be a path or a list of paths"),
    };
    if depth >= MAX_INCLUDE_DEPTH {
        bail!("$include nests more than {MAX_INCLUDE_DEPTH} levels deep");
    }
    let mut merged = Value::Object(Default::default());
    for name in names {
        let path = include_path(dir, root, name)?;
        let bytes = safe_open::read_path(&path, MAX_CONFIG)?.ok_or_else(|| anyhow!("$include {}: no such file", path.display()))?;
        let parent = path.parent().unwrap_or(root).to_path_buf();
        merged = merge(merged, resolve_includes(parse(&path, &bytes)?, &parent, root, depth + 1)?);
    }
    Ok(merged)
}

/// The file `name` in `dir`, which must lie inside `root` (the lead config's directory)
/// lexically and once links are resolved, as OpenClaw requires.
fn include_path(dir: &Path, root: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let resolved = path.canonicalize().with_context(|| format!("$include {}", path.display()))?;
    if !resolved.starts_with(root) {
        bail!("$include {} leads outside {}", path.display(), root.display());
    }
    Ok(resolved)
}

/// `over` merged onto `base`: objects key by key, anything else replaced.
fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Object(mut base), Value::Object(over)) => {
            for (key, value) in over {
                let merged = match base.remove(&key) {
                    Some(old) => merge(old, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (_, over) => over,
    }
}

/// Where `${VAR}` values come from: the lead's environment, then the config's `env`
/// (`env.vars.NAME`, or a top-level string `env.NAME`).
struct Lookup<'a> {
    env: &'a LeadEnv,
    config: &'a Value,
}

impl Lookup<'_> {
    /// The value and, in words, where it came from.
    fn get(&self, name: &str) -> Option<(String, String)> {
        if let Some((value, source)) = self.env.get(name) {
            return Some((value.to_string(), format!("${{{name}}} from {source}")));
        }
        [&self.config["vars"][name], &self.config[name]]
            .into_iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty() && !s.contains("${")))
            .map(|v| (v.to_string(), format!("${{{name}}} from the config's env")))
    }
}

/// `text` with each `${NAME}` (`[A-Z_][A-Z0-9_]*`) replaced and `$${` kept as a literal
/// `${`; the sources used, in words. A reference nothing defines is an error naming it,
/// and so is any `${` left over: no value that still holds one is used.
fn substitute(text: &str, lookup: &Lookup) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let name = after.split('}').next().filter(|_| after.contains('}')).unwrap_or("");
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err("holds a `${` that is not a `${NAME}` reference (NAME: A-Z, 0-9, _)".into());
        }
        let (value, source) = lookup.get(name).ok_or_else(|| {
            format!("refers to ${{{name}}}, which is set neither in the environment, nor in {}, nor in the config's env.vars", lookup.env.dotenv_path().display())
        })?;
        out.push_str(&value);
        used.push(source);
        rest = &after[name.len() + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
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

    fn env(home: &Path, process: &[(&str, &str)]) -> LeadEnv {
        LeadEnv::read(home, process.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn read_with(home: &Path, process: &[(&str, &str)]) -> Result<LeadConfig> {
        read(home, &env(home, process))
    }

    #[test]
    fn reads_key_workspace_and_handle_from_json5() {
        let (_t, home) = lead(
            "{ // comment\n channels: { sesame: { apiKey: 'sk-lead', workspaceId: 'ws-1', handle: '@atlas' } }, }",
            ".openclaw-atlas",
        );
        let config = read_with(&home, &[]).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-lead");
        assert_eq!(config.workspace_id.as_deref(), Some("ws-1"));
        assert_eq!(config.handle.as_deref(), Some("@atlas"));
        assert!(!config.key_source.unwrap().contains("sk-lead"));
    }

    #[test]
    fn the_environment_wins_and_a_missing_file_is_fine() {
        let (_t, home) = lead("{\"channels\":{\"sesame\":{\"apiKey\":\"sk-file\",\"handle\":\"lead\"}}}", ".openclaw");
        let config = read_with(&home, &[("SESAME_API_KEY", "sk-env")]).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-env");
        assert_eq!(config.key_source.as_deref(), Some("SESAME_API_KEY"));
        assert_eq!(config.handle.as_deref(), Some("lead"));
        let empty = tempfile::tempdir().unwrap();
        assert!(read_with(empty.path(), &[]).unwrap().sesame_key.is_none());
    }

    #[test]
    fn a_broken_config_names_file_line_and_column_but_no_text() {
        let (_t, home) = lead("{\n  channels: { sesame: { apiKey: 'sk-secret-123' } } oops\n}", ".openclaw");
        let err = format!("{:#}", read_with(&home, &[]).unwrap_err());
        assert!(err.contains("openclaw.json") && err.contains("line 2"), "{err}");
        assert!(!err.contains("sk-secret-123") && !err.contains("oops"), "{err}");
    }

    #[test]
    fn variables_resolve_from_process_then_dotenv_then_config_env() {
        let (_t, home) = lead(
            "{ env: { vars: { WS: 'ws-cfg' } }, channels: { sesame: { apiKey: '${LEAD_KEY}', workspaceId: '${WS}', handle: 'a$${LIT}' } } }",
            ".openclaw",
        );
        std::fs::write(home.join(".env"), "LEAD_KEY=sk-from-dotenv\nWS=ws-dotenv\n").unwrap();
        let config = read_with(&home, &[]).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-from-dotenv");
        assert!(config.key_source.unwrap().contains("${LEAD_KEY} from ") , "names the variable and the file");
        assert_eq!(config.workspace_id.as_deref(), Some("ws-dotenv"));
        assert_eq!(config.handle.as_deref(), Some("a${LIT}"));
        let config = read_with(&home, &[("LEAD_KEY", "sk-from-process")]).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-from-process");
        std::fs::write(home.join(".env"), "LEAD_KEY=sk-from-dotenv\n").unwrap();
        assert_eq!(read_with(&home, &[]).unwrap().workspace_id.as_deref(), Some("ws-cfg"));
    }

    #[test]
    fn an_unresolvable_key_is_refused_naming_file_field_and_variable() {
        let (_t, home) = lead("{ channels: { sesame: { apiKey: '${SESAME_API_KEY}' } } }", ".openclaw");
        let err = format!("{:#}", read_with(&home, &[]).unwrap_err());
        assert!(err.contains("channels.sesame.apiKey") && err.contains("openclaw.json") && err.contains("${SESAME_API_KEY}"), "{err}");
        let (_t, home) = lead("{ channels: { sesame: { apiKey: 'sk-${lower}' } } }", ".openclaw");
        let err = format!("{:#}", read_with(&home, &[]).unwrap_err());
        assert!(err.contains("channels.sesame.apiKey") && err.contains("not a `${NAME}`"), "{err}");
    }

    #[test]
    fn includes_merge_inside_the_config_directory_only() {
        let (temp, home) = lead("{ $include: ['./sesame.json5'], channels: { sesame: { handle: 'own' } } }", ".openclaw");
        std::fs::write(home.join("sesame.json5"), "{ channels: { sesame: { apiKey: 'sk-included', handle: 'inc' } } }").unwrap();
        let config = read_with(&home, &[]).unwrap();
        assert_eq!(config.sesame_key.unwrap().expose(), "sk-included");
        assert_eq!(config.handle.as_deref(), Some("own"), "the including file's own keys win");
        std::fs::write(temp.path().join("outside.json5"), "{}").unwrap();
        std::fs::write(home.join("openclaw.json"), "{ $include: '../outside.json5' }").unwrap();
        assert!(format!("{:#}", read_with(&home, &[]).unwrap_err()).contains("leads outside"));
        std::os::unix::fs::symlink(temp.path().join("outside.json5"), home.join("link.json5")).unwrap();
        std::fs::write(home.join("openclaw.json"), "{ $include: 'link.json5' }").unwrap();
        assert!(format!("{:#}", read_with(&home, &[]).unwrap_err()).contains("leads outside"));
        std::fs::write(home.join("loop.json5"), "{ $include: 'loop.json5' }").unwrap();
        std::fs::write(home.join("openclaw.json"), "{ $include: 'loop.json5' }").unwrap();
        assert!(format!("{:#}", read_with(&home, &[]).unwrap_err()).contains("more than 10 levels"));
    }
}
