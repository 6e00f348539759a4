//! Reading the provisioning task the host passes to the component.

use crate::runtime::bindings::commands::{CommandError, FieldError};
use crate::sys::secret::{self, Secret};
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
    register_task_keys(&text);
    Ok(text)
}

/// Registers every key the task carries (`sesameApiKey`, `llmApiKey`, also inside the
/// `context.notes` string) for scrubbing, before the component sees the task.
fn register_task_keys(text: &str) {
    fn visit(value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(key, v)| match (key.as_str(), v) {
                ("sesameApiKey" | "llmApiKey", serde_json::Value::String(s)) => Secret::new(s.clone()).iter().for_each(secret::register),
                (_, serde_json::Value::String(s)) if s.trim_start().starts_with('{') => register_task_keys(s),
                _ => visit(v),
            }),
            serde_json::Value::Array(items) => items.iter().for_each(visit),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        visit(&value);
    }
}
