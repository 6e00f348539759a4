//! The Sesame API calls of provisioning, with bounded retries.
//!
//! Each call is a [`Call`] value first: plans list them, runs send them, so a plan shows
//! exactly the requests a run makes. The catalogue ([`create_vault`], [`vault_members`],
//! [`report_calls`], [`rollback_calls`]) says which calls each step makes. The host adds
//! the lead's `Authorization` header; nothing here ever sees or sends a key.

use crate::caps::{Caps, Clock, Http, HttpError, HttpRequest, HttpResponse, Level, Method, Progress};
use crate::journal::Journal;
use crate::task::Task;
use crate::wit::Context;
use serde_json::{Value, json};

/// One Sesame request of the provisioning flow.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `POST /vault/vaults`.
    CreateVault { name: String, description: String },
    /// `POST /vault/vaults/<id>/members` (409 "already a member" counts as done).
    AddVaultMember { vault_id: String, principal_id: String, role: &'static str },
    /// `PATCH /families/<family>/members/<principal>`.
    SetMemberStatus { family_id: String, principal_id: String, status: &'static str },
    /// `POST /tasks/<task>/activity`.
    TaskActivity { task_id: String, kind: &'static str, message: String },
    /// `PATCH /tasks/<task>`.
    SetTaskStatus { task_id: String, status: &'static str },
    /// `POST /channels/<channel>/messages`.
    PostMessage { channel_id: String, content: String, intent: &'static str },
}

impl Call {
    /// Method, path under `/api/v1`, and JSON body.
    pub fn request(&self) -> (Method, String, Value) {
        match self {
            Call::CreateVault { name, description } => {
                (Method::Post, "/vault/vaults".into(), json!({ "name": name, "description": description }))
            }
            Call::AddVaultMember { vault_id, principal_id, role } => (
                Method::Post,
                format!("/vault/vaults/{vault_id}/members"),
                json!({ "principalId": principal_id, "role": role }),
            ),
            Call::SetMemberStatus { family_id, principal_id, status } => (
                Method::Patch,
                format!("/families/{family_id}/members/{principal_id}"),
                json!({ "status": status }),
            ),
            Call::TaskActivity { task_id, kind, message } => {
                (Method::Post, format!("/tasks/{task_id}/activity"), json!({ "type": kind, "message": message }))
            }
            Call::SetTaskStatus { task_id, status } => {
                (Method::Patch, format!("/tasks/{task_id}"), json!({ "status": status }))
            }
            Call::PostMessage { channel_id, content, intent } => (
                Method::Post,
                format!("/channels/{channel_id}/messages"),
                json!({ "content": content, "intent": intent }),
            ),
        }
    }

    /// A short description for messages: `PATCH /families/F/members/P`.
    pub fn describe(&self) -> String {
        let (method, path, _) = self.request();
        format!("{} {path}", method.as_str())
    }

    fn conflict_is_success(&self) -> bool {
        matches!(self, Call::AddVaultMember { .. })
    }
}

/// The vault step's first call: `<handle>-main`, described after the sibling.
pub fn create_vault(task: &Task, vault_name: &str) -> Call {
    Call::CreateVault { name: vault_name.into(), description: format!("{} credentials vault", task.display_name) }
}

/// The vault step's member adds, once `vault_id` is known: the sibling as owner, the
/// human (when the task names one) as admin.
pub fn vault_members(task: &Task, vault_id: &str) -> Vec<Call> {
    let mut members = vec![Call::AddVaultMember { vault_id: vault_id.into(), principal_id: task.principal_id.clone(), role: "owner" }];
    if let Some(human) = &task.human {
        members.push(Call::AddVaultMember { vault_id: vault_id.into(), principal_id: human.principal_id.clone(), role: "admin" });
    }
    members
}

/// The success report (spec step 6), skipping what the task has no id for.
pub fn report_calls(t: &Task, port: u16, sesame_connected: bool, host_name: &str) -> Vec<Call> {
    let mut calls = vec![Call::SetMemberStatus { family_id: t.family_id.clone(), principal_id: t.principal_id.clone(), status: "online" }];
    if let Some(task_id) = &t.task_id {
        let sesame = if sesame_connected { "Sesame connected" } else { "Sesame connection not yet confirmed" };
        calls.push(Call::TaskActivity {
            task_id: task_id.clone(),
            kind: "progress",
            message: format!("Agent {} is online on port {port}. {sesame}, vault created.", t.handle),
        });
        calls.push(Call::SetTaskStatus { task_id: task_id.clone(), status: "done" });
    }
    if let Some(channel) = &t.onboarding_channel_id {
        calls.push(Call::PostMessage {
            channel_id: channel.clone(),
            content: format!(
                "Welcome! I've provisioned {} (@{}) on {host_name}. {} is online and will introduce itself here shortly.",
                t.display_name, t.handle, t.display_name
            ),
            intent: "chat",
        });
    }
    calls
}

/// The rollback report (spec rollback steps 3-5) of the provision `journal` records,
/// skipping what it has no id for.
pub fn rollback_calls(journal: &Journal, what: &str) -> Vec<Call> {
    let mut calls =
        vec![Call::SetMemberStatus { family_id: journal.family_id.clone(), principal_id: journal.principal_id.clone(), status: "error" }];
    if let Some(task_id) = &journal.task_id {
        calls.push(Call::TaskActivity {
            task_id: task_id.clone(),
            kind: "blocker",
            message: format!(
                "Provisioning failed: {what}. Workspace archived to ~/.openclaw-archives/. Member status set to error."
            ),
        });
    }
    if let Some(channel) = &journal.onboarding_channel_id {
        calls.push(Call::PostMessage {
            channel_id: channel.clone(),
            content: format!(
                "⚠️ Provisioning of {} failed: {what}. Everything was rolled back; the partial workspace is archived on the host.",
                journal.handle
            ),
            intent: "error",
        });
    }
    calls
}

/// Retry bounds of Sesame requests.
#[derive(Clone, Copy, Debug)]
struct RetryPolicy {
    timeout_ms: u32,
    attempts: u32,
    backoff_ms: u32,
}

/// The longest `Retry-After` we honour; longer answers are capped to it.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

/// A Sesame request that did not succeed, after retries where they apply.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub call: String,
    /// The last HTTP status, when an answer came.
    pub status: Option<u16>,
    pub message: String,
    pub attempts: u32,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tries = if self.attempts > 1 { format!(" (after {} attempts)", self.attempts) } else { String::new() };
        match self.status {
            Some(status) => write!(f, "{}: HTTP {status}: {}{tries}", self.call, self.message),
            None => write!(f, "{}: {}{tries}", self.call, self.message),
        }
    }
}

/// The Sesame API at `base` (an origin such as `https://api.sesame.space`).
pub struct Sesame<'a> {
    http: &'a dyn Http,
    clock: &'a dyn Clock,
    progress: &'a dyn Progress,
    api_root: String,
    policy: RetryPolicy,
}

impl<'a> Sesame<'a> {
    /// The Sesame API of the context (`api-url`), with its retry bounds.
    pub fn for_context(caps: &Caps<'a>, ctx: &Context) -> Self {
        let t = &ctx.timing;
        let policy = RetryPolicy { timeout_ms: t.api_timeout_ms, attempts: t.api_attempts, backoff_ms: t.api_backoff_ms };
        Self::new(caps.http, caps.clock, caps.progress, &ctx.api_url, policy)
    }

    fn new(http: &'a dyn Http, clock: &'a dyn Clock, progress: &'a dyn Progress, base: &str, policy: RetryPolicy) -> Self {
        Self { http, clock, progress, api_root: api_root(base), policy }
    }

    /// Sends `call`, retrying 429, 5xx, timeouts and refused connections with doubling
    /// backoff (a `Retry-After` in seconds wins, capped at 30 s). Returns the answer's
    /// `data` (or `null`).
    pub fn send(&self, call: &Call) -> Result<Value, ApiError> {
        let (method, path, body) = call.request();
        let request = HttpRequest {
            method,
            url: format!("{}{path}", self.api_root),
            json_body: Some(body.to_string().into_bytes()),
            timeout_ms: self.policy.timeout_ms,
        };
        let attempts = self.policy.attempts.max(1);
        let mut delay_ms = u64::from(self.policy.backoff_ms);
        for attempt in 1..=attempts {
            let error = match self.http.send(&request) {
                Ok(response) if (200..300).contains(&response.status) => return Ok(data_of(&response)),
                Ok(response) if response.status == 409 && call.conflict_is_success() => return Ok(Value::Null),
                Ok(response) => {
                    let retryable = response.status == 429 || response.status >= 500;
                    let wait = retry_after_ms(&response).unwrap_or(delay_ms);
                    let e = self.error(call, Some(response.status), error_message(&response), attempt);
                    if !retryable || attempt == attempts {
                        return Err(e);
                    }
                    (e, wait)
                }
                Err(HttpError::Denied) => {
                    return Err(self.error(call, None, HttpError::Denied.to_string(), attempt));
                }
                Err(transport) => {
                    let e = self.error(call, None, transport.to_string(), attempt);
                    if attempt == attempts {
                        return Err(e);
                    }
                    (e, delay_ms)
                }
            };
            let (e, wait) = error;
            self.progress.emit(Level::Info, &format!("{e}; retrying in {} ms", wait));
            self.clock.sleep_ms(wait);
            delay_ms = delay_ms.saturating_mul(2);
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn error(&self, call: &Call, status: Option<u16>, message: String, attempts: u32) -> ApiError {
        ApiError { call: call.describe(), status, message, attempts }
    }
}

/// `<base>/api/v1`, the root every call's path is under.
pub fn api_root(base: &str) -> String {
    format!("{}/api/v1", base.trim_end_matches('/'))
}

/// `data` of a `{"data": ...}` answer, or `null` when the body is empty or not JSON.
fn data_of(response: &HttpResponse) -> Value {
    serde_json::from_slice::<Value>(&response.body)
        .map(|v| v.get("data").cloned().unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

/// The `error` or `message` of an error body, bounded; the status text otherwise.
fn error_message(response: &HttpResponse) -> String {
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let text = text.unwrap_or_else(|| match response.status {
        401 => "unauthorized: the lead's Sesame key was refused".into(),
        429 => "too many requests".into(),
        s if s >= 500 => "server error".into(),
        _ => "request refused".into(),
    });
    text.chars().take(300).collect()
}

fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let seconds: u64 = response.retry_after.as_deref()?.trim().parse().ok()?;
    Some((seconds * 1000).min(MAX_RETRY_AFTER_MS))
}

/// The vault id from a `POST /vault/vaults` answer.
pub fn vault_id(data: &Value) -> Option<String> {
    data.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use std::cell::Cell;

    const POLICY: RetryPolicy = RetryPolicy { timeout_ms: 1000, attempts: 4, backoff_ms: 100 };

    fn run(http: FakeHttp, call: &Call) -> (Result<Value, ApiError>, Vec<String>, u64) {
        let world = World::new(http);
        let start = world.clock.now_ms.get();
        let sesame = Sesame::new(&world.http, &world.clock, &world.progress, "https://api.example/", POLICY);
        let result = sesame.send(call);
        (result, world.http.lines(), world.clock.now_ms.get() - start)
    }

    fn vault() -> Call {
        Call::CreateVault { name: "nova-main".into(), description: "Nova credentials vault".into() }
    }

    #[test]
    fn sends_the_spec_request_and_returns_data() {
        let http = FakeHttp::new(|r| {
            let body: Value = serde_json::from_slice(r.json_body.as_ref().unwrap()).unwrap();
            assert_eq!(body, json!({"name": "nova-main", "description": "Nova credentials vault"}));
            json_response(201, json!({"data": {"id": "v-1"}}))
        });
        let (result, lines, _) = run(http, &vault());
        assert_eq!(vault_id(&result.unwrap()).as_deref(), Some("v-1"));
        assert_eq!(lines, ["POST https://api.example/api/v1/vault/vaults"]);
    }

    #[test]
    fn retries_5xx_then_succeeds_with_doubling_backoff() {
        let n = Cell::new(0);
        let http = FakeHttp::new(move |_| {
            n.set(n.get() + 1);
            if n.get() < 3 { json_response(503, json!({"error": "busy"})) } else { json_response(200, json!({"data": {}})) }
        });
        let (result, lines, slept) = run(http, &vault());
        assert!(result.is_ok());
        assert_eq!(lines.len(), 3);
        assert_eq!(slept, 100 + 200);
    }

    #[test]
    fn honours_retry_after_on_429() {
        let n = Cell::new(0);
        let http = FakeHttp::new(move |_| {
            n.set(n.get() + 1);
            if n.get() == 1 {
                Ok(HttpResponse { status: 429, retry_after: Some("2".into()), body: vec![] })
            } else {
                json_response(200, json!({}))
            }
        });
        let (result, _, slept) = run(http, &vault());
        assert!(result.is_ok());
        assert_eq!(slept, 2000);
    }

    #[test]
    fn gives_up_after_the_attempts_and_says_so() {
        let http = FakeHttp::new(|_| json_response(500, json!({"error": "boom"})));
        let (result, lines, _) = run(http, &vault());
        let e = result.unwrap_err();
        assert_eq!(lines.len(), 4);
        assert_eq!(e.to_string(), "POST /vault/vaults: HTTP 500: boom (after 4 attempts)");
    }

    #[test]
    fn timeouts_and_refused_connections_are_retried() {
        let n = Cell::new(0);
        let http = FakeHttp::new(move |_| {
            n.set(n.get() + 1);
            match n.get() {
                1 => Err(HttpError::Timeout),
                2 => Err(HttpError::ConnectionRefused),
                _ => json_response(200, json!({})),
            }
        });
        assert!(run(http, &vault()).0.is_ok());
    }

    #[test]
    fn client_errors_and_denials_are_not_retried() {
        for (answer, expected) in [
            (json_response(401, json!({})), "HTTP 401: unauthorized: the lead's Sesame key was refused"),
            (json_response(400, json!({"message": "name required"})), "HTTP 400: name required"),
            (Err(HttpError::Denied), "denied by the host's HTTP grants"),
        ] {
            let http = FakeHttp::new(move |_| answer.clone());
            let (result, lines, _) = run(http, &vault());
            assert!(result.unwrap_err().to_string().contains(expected));
            assert_eq!(lines.len(), 1);
        }
    }

    #[test]
    fn already_a_member_is_success() {
        let call = Call::AddVaultMember { vault_id: "v-1".into(), principal_id: "p".into(), role: "admin" };
        let http = FakeHttp::new(|_| json_response(409, json!({"error": "Already a member"})));
        assert!(run(http, &call).0.is_ok());
        let http = FakeHttp::new(|_| json_response(409, json!({"error": "conflict"})));
        assert!(run(http, &vault()).0.is_err(), "409 is success only for member adds");
    }

    #[test]
    fn malformed_success_bodies_give_null_data() {
        let http = FakeHttp::new(|_| Ok(HttpResponse { status: 200, retry_after: None, body: b"<html>".to_vec() }));
        let (result, _, _) = run(http, &vault());
        assert_eq!(vault_id(&result.unwrap()), None);
    }
}
