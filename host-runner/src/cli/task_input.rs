//! Reading the provisioning task the host passes to the component.

use crate::runtime::bindings::commands::{CommandError, FieldError};
use crate::sys::secret::{self, Secret};
use serde_json::{Map, Value};
use std::io::Read as _;

/// The most task text the host accepts.
const MAX_TASK_BYTES: u64 = 1 << 20;

/// Reads the task from a file or stdin (`-`), refusing more than 1 MiB or what is not
/// text, and registers the keys it carries for scrubbing.
pub fn read_task(source: &str) -> Result<String, CommandError> {
    let invalid = |message: String| CommandError::InvalidInput(FieldError { field: "task".into(), message });
    let what = if source == "-" { "stdin".to_string() } else { source.to_string() };
    let reader: Box<dyn std::io::Read> = if source == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(source).map_err(|e| invalid(format!("cannot open {source}: {e}")))?)
    };
    let mut bytes = Vec::new();
    reader.take(MAX_TASK_BYTES + 1).read_to_end(&mut bytes).map_err(|e| invalid(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_TASK_BYTES {
        return Err(invalid(format!("{what} is larger than 1 MiB; that is not a provisioning task")));
    }
    let text = String::from_utf8(bytes).map_err(|_| invalid(format!("{what} is not UTF-8 text")))?;
    Ok(register_task_keys(text))
}

/// Registers every key the task carries (`sesameApiKey`, `llmApiKey`, also inside the
/// `context.notes` string) for scrubbing, before the component sees the task — only a
/// value of the key grammar the component checks ([`naming::check_api_key`]): a value
/// the task is refused for is no key, and scrubbing it would let the task cut any text
/// it names from the output. Returns the task as the component gets it: re-serialised
/// (nested notes too), so a key the task wrote with JSON escapes (`\u0073k-…`, `\/`)
/// reaches the component, and anything it echoes, as the scrubbed form; text that is not
/// JSON is passed on as it is, for the component to refuse.
fn register_task_keys(text: String) -> String {
    fn visit(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => map.iter_mut().for_each(|(key, v)| match (key.as_str(), v) {
                ("sesameApiKey" | "llmApiKey", serde_json::Value::String(s)) => {
                    if naming::check_api_key(s).is_ok() {
                        Secret::new(s.clone()).iter().for_each(secret::register);
                    }
                }
                (_, serde_json::Value::String(s)) if s.trim_start().starts_with('{') => *s = register_task_keys(std::mem::take(s)),
                (_, v) => visit(v),
            }),
            serde_json::Value::Array(items) => items.iter_mut().for_each(visit),
            serde_json::Value::String(s) if s.trim_start().starts_with('{') => *s = register_task_keys(std::mem::take(s)),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut value) => {
            visit(&mut value);
            value.to_string()
        }
        Err(_) => text,
    }
}

/// The ids and port of a task, as the host reads them itself (the component's reading is
/// never trusted): what the run's Sesame calls and port probes may name. A field the
/// guest would refuse is left out, so nothing of it is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskIds {
    pub handle: Option<String>,
    pub principal: Option<String>,
    pub family: Option<String>,
    /// The human who asked for the agent (`provisionedBy`), the vault's admin.
    pub human: Option<String>,
    pub task: Option<String>,
    pub onboarding_channel: Option<String>,
    pub dm_channel: Option<String>,
    pub port: Option<u16>,
}

/// Reads [`TaskIds`] from the task text, in the three shapes the guest accepts (the whole
/// task object with `context.notes` a JSON string or object, the notes object, the notes
/// string); uuids lowercased as the guest does.
pub fn task_ids(text: &str) -> TaskIds {
    let Ok(value) = serde_json::from_str::<Value>(text) else { return TaskIds::default() };
    let (notes, task) = match &value {
        Value::String(inner) => (serde_json::from_str::<Value>(inner).ok(), None),
        Value::Object(map) => match map.get("context") {
            Some(context) => match context.get("notes") {
                Some(Value::String(inner)) => (serde_json::from_str::<Value>(inner).ok(), Some(map)),
                Some(notes @ Value::Object(_)) => (Some(notes.clone()), Some(map)),
                _ => (None, None),
            },
            None => (Some(value.clone()), None),
        },
        _ => (None, None),
    };
    let Some(Value::Object(notes)) = notes else { return TaskIds::default() };
    let field = |name: &str| notes.get(name).and_then(Value::as_str);
    TaskIds {
        handle: field("handle").filter(|h| naming::check_handle(h).is_ok()).map(str::to_string),
        principal: field("principalId").and_then(uuid),
        family: field("familyId").and_then(uuid),
        human: task.and_then(human),
        task: task.and_then(|t| t.get("id")?.as_str()).filter(|id| is_task_id(id)).map(str::to_string),
        onboarding_channel: field("onboardingChannelId").and_then(uuid),
        dm_channel: field("dmChannelId").and_then(uuid),
        port: notes.get("gatewayPort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).filter(|p| *p >= 1024),
    }
}

/// `provisionedBy`: a uuid, or an object with `id` (or `principalId`).
fn human(task: &Map<String, Value>) -> Option<String> {
    match task.get("provisionedBy")? {
        Value::String(id) => uuid(id),
        Value::Object(by) => ["id", "principalId"].iter().find_map(|k| by.get(*k).filter(|v| !v.is_null()))?.as_str().and_then(uuid),
        _ => None,
    }
}

/// A uuid (8-4-4-4-12 hex digits), lowercased; `None` for anything else.
pub fn uuid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    shaped.then(|| text.to_ascii_lowercase())
}

/// A task id as the guest accepts it: 1-64 of `[A-Za-z0-9_-]`.
fn is_task_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_of_the_key_grammar_are_registered_and_escapes_are_undone() {
        let notes = serde_json::json!({"sesameApiKey": "exit_code", "llmApiKey": "sk-ant-valid-task-key-0042"}).to_string();
        let task = serde_json::json!({"context": {"notes": notes.replace("valid", "\\u0076alid")}, "exit_code": 1}).to_string();
        let given = register_task_keys(task);
        assert_eq!(secret::scrub("\"exit_code\": 1"), "\"exit_code\": 1", "a refused key is not a secret");
        assert_eq!(secret::scrub("key sk-ant-valid-task-key-0042."), "key [redacted].");
        assert!(given.contains("sk-ant-valid-task-key-0042") && !given.contains("u0076"), "{given}");
        assert_eq!(secret::scrub(&given).matches("[redacted]").count(), 1, "{given}");
        assert_eq!(register_task_keys("{not json".into()), "{not json");
    }

    #[test]
    fn the_ids_are_read_from_every_shape_of_task() {
        let task = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/task.json")).unwrap();
        let ids = task_ids(&task);
        assert_eq!(ids.handle.as_deref(), Some("nova"));
        assert_eq!(ids.principal.as_deref(), Some("7d3f1c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b"));
        assert_eq!(ids.family.as_deref(), Some("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"));
        assert_eq!(ids.human.as_deref(), Some("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"));
        assert_eq!(ids.task.as_deref(), Some("task-0001"));
        assert_eq!(ids.onboarding_channel.as_deref(), Some("6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0"));
        assert_eq!(ids.dm_channel.as_deref(), Some("5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"));
        assert_eq!(ids.port, Some(18930));
        let value: Value = serde_json::from_str(&task).unwrap();
        let notes = value["context"]["notes"].as_str().unwrap();
        let from_notes = task_ids(notes);
        assert_eq!((from_notes.principal, from_notes.task, from_notes.human), (ids.principal.clone(), None, None), "notes carry no task id or human");
        assert_eq!(task_ids(&serde_json::to_string(notes).unwrap()).family, ids.family, "the notes as a JSON string");
    }

    #[test]
    fn what_the_guest_would_refuse_is_no_id() {
        let ids = task_ids(r#"{"id": "../admin", "context": {"notes": {"principalId": "not-a-uuid", "familyId": "0B1C2D3E-4F50-4A6B-8C7D-9E0F1A2B3C4D", "handle": "../x", "gatewayPort": 22}}}"#);
        assert_eq!(ids.task, None);
        assert_eq!(ids.principal, None);
        assert_eq!(ids.family.as_deref(), Some("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"), "lowercased as the guest does");
        assert_eq!((ids.handle, ids.port), (None, None));
        assert_eq!(task_ids("not json"), TaskIds::default());
        assert_eq!(task_ids(r#"{"context": 1, "principalId": "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"}"#), TaskIds::default());
    }
}
