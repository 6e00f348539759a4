//! Reading the provisioning task the host passes to the component.

use crate::bindings::commands::{CommandError, FieldError};
use crate::secret::{self, Secret};
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
}
