//! The provisioning task: parsed, and every field validated before anything is touched.
//!
//! Accepts the whole Sesame task object (`context.notes` is a JSON *string*), the notes
//! object alone, or the notes string alone. Errors name exactly one field, in the path
//! of the input's shape (`context.notes.handle` for a whole task, `handle` otherwise),
//! and never quote a key.

use crate::caps::{EntryKind, Files, FsError};
use crate::wit::FieldError;
use crate::secret::Secret;
use naming::describe_char;
use serde_json::{Map, Value};

/// The most task text accepted.
pub const MAX_TASK_BYTES: usize = 1 << 20;

/// An LLM provider the sibling can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    OpenRouter,
    OpenAi,
}

impl Provider {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "anthropic" => Some(Provider::Anthropic),
            "openrouter" => Some(Provider::OpenRouter),
            "openai" => Some(Provider::OpenAi),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenRouter => "openrouter",
            Provider::OpenAi => "openai",
        }
    }

    /// The variable current OpenClaw reads the provider's key from.
    pub fn env_var(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::OpenRouter => "OPENROUTER_API_KEY",
            Provider::OpenAi => "OPENAI_API_KEY",
        }
    }
}

/// The human who asked for the agent (`provisionedBy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Human {
    pub principal_id: String,
    pub handle: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
}

/// A validated provisioning task.
#[derive(Clone, Debug)]
pub struct Task {
    pub task_id: Option<String>,
    pub principal_id: String,
    pub handle: String,
    pub display_name: String,
    pub sesame_api_key: Secret,
    pub provider: Provider,
    pub llm_api_key: Option<Secret>,
    pub inherit_credentials: bool,
    pub model: Option<String>,
    pub gateway_port: u16,
    /// Absolute and normalised: `<home>/.openclaw-<handle>`.
    pub oc_home: String,
    pub family_id: String,
    pub family_name: String,
    pub dm_channel_id: Option<String>,
    pub onboarding_channel_id: Option<String>,
    pub human: Option<Human>,
    pub personality_seed: Option<String>,
}

/// What validation needs to know about this host.
pub struct TaskEnv<'a> {
    pub home: &'a str,
    pub lead_home: &'a str,
    pub lead_handles: &'a [String],
    /// Resuming an interrupted provision: its home may already exist.
    pub resuming: bool,
}

/// Checks a handle against the shared naming rules ([`naming::check_sibling`]): the
/// grammar, the reserved names, and the lead's own handles.
pub fn validate_handle(handle: &str, lead_handles: &[String]) -> Result<(), String> {
    naming::check_sibling(handle, lead_handles).map_err(|e| match e {
        naming::HandleError::Empty | naming::HandleError::TooLong(_) => e.to_string(),
        _ => format!("{} {e}", shown(handle)),
    })
}

/// A value for messages: quoted, escaped, bounded.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}


/// Reads fields of the notes object, naming them with the input's prefix.
struct Fields<'a> {
    notes: &'a Map<String, Value>,
    prefix: &'static str,
}

type Checked<T> = Result<T, FieldError>;

impl<'a> Fields<'a> {
    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn error(&self, field: &str, message: impl Into<String>) -> FieldError {
        FieldError { field: self.name(field), message: message.into() }
    }

    /// A present, non-null value.
    fn value(&self, field: &str) -> Option<&'a Value> {
        self.notes.get(field).filter(|v| !v.is_null())
    }

    fn string(&self, field: &str) -> Checked<Option<&'a str>> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(field, format!("must be a string, not {}", kind(other)))),
        }
    }

    fn required(&self, field: &str) -> Checked<&'a str> {
        self.string(field)?.ok_or_else(|| self.error(field, "is required"))
    }

    fn uuid(&self, field: &str, required: bool) -> Checked<Option<String>> {
        match self.string(field)? {
            None if required => Err(self.error(field, "is required")),
            None => Ok(None),
            Some(text) => uuid(text).map(Some).map_err(|m| self.error(field, m)),
        }
    }

    fn text(&self, field: &str, max: usize) -> Checked<String> {
        let value = self.required(field)?.trim();
        plain_text(value, max).map(|()| value.to_string()).map_err(|m| self.error(field, m))
    }

    fn secret(&self, field: &str) -> Checked<Option<Secret>> {
        match self.string(field)? {
            None => Ok(None),
            Some(key) => api_key(key).map(|()| Some(Secret::new(key))).map_err(|m| self.error(field, m)),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// 8-4-4-4-12 hex digits, lowercased.
pub fn uuid(text: &str) -> Result<String, String> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths_ok = groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n);
    if lengths_ok && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{} is not a uuid (8-4-4-4-12 hex digits)", shown(text)))
    }
}

/// 1..=max characters, no control characters.
pub fn plain_text(text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("is {} characters long; at most {max}", text.chars().count()));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("contains {}; control characters are not allowed", describe_char(c)));
    }
    Ok(())
}

/// An API key: [`naming::check_api_key`]'s grammar, which the host applies too before it
/// scrubs a task's keys from its output. The message never includes the key.
fn api_key(key: &str) -> Result<(), String> {
    naming::check_api_key(key)
}

/// A model name: `provider/model` style, 1-128 of `[A-Za-z0-9._:/@+-]`, no leading `-`.
fn model(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || "._:/@+-".contains(*c))) {
        return Err(format!("{} contains {}; use letters, digits and . _ : / @ + -", shown(text), describe_char(c)));
    }
    if text.starts_with('-') {
        return Err(format!("{} must not start with `-`", shown(text)));
    }
    Ok(())
}

/// Task ids go into URL paths: 1-64 of `[A-Za-z0-9_-]`.
fn task_id(text: &str) -> Result<(), String> {
    let ok = !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(format!("{} must be 1 to 64 letters, digits, `-` or `_`", shown(text))) }
}

/// Where the input came from, and the notes object.
struct Input {
    notes: Map<String, Value>,
    prefix: &'static str,
    task: Option<Map<String, Value>>,
}

fn parse_json(text: &str, field: &str) -> Result<Value, FieldError> {
    serde_json::from_str(text).map_err(|e| {
        let why = if e.to_string().contains("recursion limit") {
            "is nested too deeply to be a task".to_string()
        } else {
            format!("is not valid JSON ({e})")
        };
        FieldError { field: field.into(), message: why }
    })
}

fn notes_object(value: Value, field: &str) -> Result<Map<String, Value>, FieldError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(FieldError { field: field.into(), message: format!("must be a JSON object, not {}", kind(&other)) }),
    }
}

/// Recognises the three input shapes.
fn read_input(text: &str) -> Result<Input, FieldError> {
    if text.len() > MAX_TASK_BYTES {
        return Err(FieldError { field: "task".into(), message: format!("is {} bytes; the limit is 1 MiB", text.len()) });
    }
    match parse_json(text, "task")? {
        Value::String(inner) => {
            let notes = notes_object(parse_json(&inner, "notes")?, "notes")?;
            Ok(Input { notes, prefix: "", task: None })
        }
        Value::Object(mut map) => match map.get_mut("context").map(|c| c.get_mut("notes").map(Value::take)) {
            Some(Some(Value::String(inner))) => {
                let notes = notes_object(parse_json(&inner, "context.notes")?, "context.notes")?;
                Ok(Input { notes, prefix: "context.notes.", task: Some(map) })
            }
            Some(Some(Value::Object(notes))) => Ok(Input { notes, prefix: "context.notes.", task: Some(map) }),
            Some(Some(other)) => Err(FieldError {
                field: "context.notes".into(),
                message: format!("must be a JSON string holding the notes object, not {}", kind(&other)),
            }),
            Some(None) | None if map.contains_key("context") => {
                Err(FieldError { field: "context.notes".into(), message: "is required in a task object".into() })
            }
            _ => Ok(Input { notes: map, prefix: "", task: None }),
        },
        other => Err(FieldError {
            field: "task".into(),
            message: format!("must be a task object, a notes object or a notes string, not {}", kind(&other)),
        }),
    }
}

/// Parses and validates a task; checks (read-only) that no home exists for its handle.
/// Fields are checked in a fixed order; the first bad one is the error.
pub fn parse(text: &str, env: &TaskEnv, files: &dyn Files) -> Result<Task, FieldError> {
    let input = read_input(text)?;
    let f = Fields { notes: &input.notes, prefix: input.prefix };
    let principal_id = f.uuid("principalId", true)?.expect("required");
    let handle = f.required("handle")?.to_string();
    validate_handle(&handle, env.lead_handles).map_err(|m| f.error("handle", m))?;
    let display_name = f.text("displayName", 64)?;
    let family_id = f.uuid("familyId", true)?.expect("required");
    let dm_channel_id = f.uuid("dmChannelId", false)?;
    let onboarding_channel_id = f.uuid("onboardingChannelId", false)?;
    let task_id = input.task_id()?;
    let human = input.task_field("provisionedBy").map(human).transpose()?;
    let sesame_api_key = f.secret("sesameApiKey")?.ok_or_else(|| f.error("sesameApiKey", "is required"))?;
    let (provider, llm_api_key, inherit_credentials) = llm(&f)?;
    let model = f.string("model")?.map(|m| model(m).map(|()| m.to_string()).map_err(|e| f.error("model", e))).transpose()?;
    let gateway_port = gateway_port(&f)?;
    let family_name = f.text("familyName", 128)?;
    let oc_home = oc_home(f.string("ocHomeDir")?, &handle, env).map_err(|m| f.error("ocHomeDir", m))?;
    if !env.resuming {
        check_absent(files, &oc_home).map_err(|m| f.error("handle", m))?;
    }
    let personality_seed = personality_seed(&input, &f)?;
    Ok(Task {
        task_id,
        principal_id,
        handle,
        display_name,
        sesame_api_key,
        provider,
        llm_api_key,
        inherit_credentials,
        model,
        gateway_port,
        oc_home,
        family_id,
        family_name,
        dm_channel_id,
        onboarding_channel_id,
        human,
        personality_seed,
    })
}

impl Input {
    /// A present, non-null field of the whole task object.
    fn task_field(&self, name: &str) -> Option<&Value> {
        self.task.as_ref().and_then(|t| t.get(name)).filter(|v| !v.is_null())
    }

    /// The task object's `id`, which goes into URL paths.
    fn task_id(&self) -> Checked<Option<String>> {
        let error = |message| FieldError { field: "id".into(), message };
        match self.task_field("id") {
            None => Ok(None),
            Some(Value::String(id)) => task_id(id).map(|()| Some(id.clone())).map_err(error),
            Some(other) => Err(error(format!("must be a string, not {}", kind(other)))),
        }
    }
}

/// The provider, the task's key for it, and whether the lead's key may be inherited
/// (the default); one of the two keys must be possible.
fn llm(f: &Fields) -> Checked<(Provider, Option<Secret>, bool)> {
    let provider_text = f.required("llmProvider")?;
    let provider = Provider::parse(provider_text)
        .ok_or_else(|| f.error("llmProvider", format!("{} is not one of anthropic, openrouter, openai", shown(provider_text))))?;
    let llm_api_key = f.secret("llmApiKey")?;
    let inherit_credentials = match f.value("inheritCredentials") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(f.error("inheritCredentials", format!("must be true or false, not {}", kind(other)))),
    };
    if llm_api_key.is_none() && !inherit_credentials {
        return Err(f.error("llmApiKey", "is required when inheritCredentials is false"));
    }
    Ok((provider, llm_api_key, inherit_credentials))
}

/// `gatewayPort`: an integer in 1024..65535.
fn gateway_port(f: &Fields) -> Checked<u16> {
    match f.value("gatewayPort") {
        None => Err(f.error("gatewayPort", "is required")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p @ 1024..=65535) => Ok(p as u16),
            _ => Err(f.error("gatewayPort", format!("{n} is not a port in 1024..65535"))),
        },
        Some(other) => Err(f.error("gatewayPort", format!("must be an integer in 1024..65535, not {}", kind(other)))),
    }
}

/// The personality seed: the task's `metadata.personalitySeed`, else the notes' own;
/// blank counts as none.
fn personality_seed(input: &Input, f: &Fields) -> Checked<Option<String>> {
    let seed_field = |v: Option<&Value>, field: &str| -> Checked<Option<String>> {
        match v {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= 4000 => Ok(Some(s.trim().to_string())),
            Some(Value::String(_)) => Err(FieldError { field: field.into(), message: "is longer than 4000 characters".into() }),
            Some(other) => Err(FieldError { field: field.into(), message: format!("must be a string, not {}", kind(other)) }),
        }
    };
    match seed_field(input.task_field("metadata").and_then(|m| m.get("personalitySeed")), "metadata.personalitySeed")? {
        Some(seed) => Ok(Some(seed)),
        None => seed_field(f.value("personalitySeed"), &f.name("personalitySeed")),
    }
}

/// `provisionedBy`: a uuid, or an object with `id`/`principalId` and optional names.
fn human(value: &Value) -> Result<Human, FieldError> {
    let error = |message: String| FieldError { field: "provisionedBy".into(), message };
    let optional = |map: &Map<String, Value>, keys: &[&str]| -> Result<Option<String>, FieldError> {
        match keys.iter().find_map(|k| map.get(*k).filter(|v| !v.is_null())) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                plain_text(s, 128).map_err(|m| error(format!("{}: {m}", keys[0])))?;
                Ok(Some(s.to_string()))
            }
            Some(other) => Err(error(format!("{} must be a string, not {}", keys[0], kind(other)))),
        }
    };
    match value {
        Value::String(id) => Ok(Human { principal_id: uuid(id).map_err(error)?, handle: None, name: None, role: None }),
        Value::Object(map) => {
            let id = optional(map, &["id", "principalId"])?.ok_or_else(|| error("needs an id (the human's principal id)".into()))?;
            Ok(Human {
                principal_id: uuid(&id).map_err(error)?,
                handle: optional(map, &["handle"])?.map(|h| h.trim_start_matches('@').to_string()),
                name: optional(map, &["displayName", "name"])?,
                role: optional(map, &["role"])?,
            })
        }
        other => Err(error(format!("must be a uuid or an object, not {}", kind(other)))),
    }
}

/// Resolves `ocHomeDir` (default `~/.openclaw-<handle>`); it must be exactly that path.
fn oc_home(given: Option<&str>, handle: &str, env: &TaskEnv) -> Result<String, String> {
    let expected = naming::sibling_home(env.home, handle);
    let Some(given) = given else { return Ok(expected) };
    let expanded = match given.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", env.home.trim_end_matches('/')),
        Some(_) => return Err(format!("{} uses `~user`; write ~/ or an absolute path", shown(given))),
        None => given.to_string(),
    };
    if !expanded.starts_with('/') {
        return Err(format!("{} is not an absolute path", shown(given)));
    }
    if expanded.contains('\0') || expanded.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("{} has `.` or `..` components", shown(given)));
    }
    let normal: String = expanded.split('/').filter(|c| !c.is_empty()).fold(String::new(), |p, c| format!("{p}/{c}"));
    if normal == env.lead_home.trim_end_matches('/') {
        return Err(format!("{} is the lead's own home", shown(given)));
    }
    if normal != expected {
        return Err(format!("{} must be ~/.openclaw-{handle} ({expected})", shown(given)));
    }
    Ok(expected)
}

/// Nothing may exist at the new home yet.
fn check_absent(files: &dyn Files, path: &str) -> Result<(), String> {
    match files.metadata(path) {
        Ok(None) => Ok(()),
        Ok(Some(meta)) if meta.kind == EntryKind::Symlink => {
            Err(format!("{path} already exists as a symlink; remove it or choose another handle"))
        }
        Ok(Some(_)) => Err(format!("{path} already exists (a home for this handle); deprovision it or choose another handle")),
        Err(FsError::Denied(why)) => Err(format!("the host refused to check {path}: {why}")),
        Err(e) => Err(format!("cannot check {path}: {}", e.message())),
    }
}

#[cfg(test)]
mod tests;
