//! A loopback stand-in for the Sesame API, for the demo and the end-to-end tests.
//!
//! `sesame-standin [--port N] [--record FILE] [--expect-key-env VAR] [--faults FILE] [--reject-chunked]`
//! prints `listening on http://127.0.0.1:PORT` first, then serves the endpoints the
//! provisioner uses (answers wrapped as `{"data": ...}`, errors as `{"error": ...}`).
//! Every request is recorded (method, path, body, its framing — `content_length` and
//! `chunked` —, whether the bearer key matched — never the key itself) to `--record` and
//! to `GET /_standin/requests`. With `--reject-chunked` (or `SESAME_STANDIN_REJECT_CHUNKED=1`)
//! an API request whose body is not declared by `Content-Length` (a chunked one) is
//! answered `411 Length Required`, as servers that need the length do. Scripted faults come
//! from `--faults` or `POST /_standin/faults` (rules matching method, path prefix and
//! body text); `POST /_standin/reset` clears everything.

use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiny_http::{Header, Request, Response, Server};

#[derive(Parser)]
#[command(about = "A loopback stand-in for the Sesame API (tests and demo)")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Append every request as a JSON line to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Require `Authorization: Bearer <value of this variable>` on /api/v1.
    #[arg(long)]
    expect_key_env: Option<String>,
    /// Scripted faults (JSON list of rules) to start with.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Answer 411 Length Required to an API request with a body but no Content-Length.
    #[arg(long, env = "SESAME_STANDIN_REJECT_CHUNKED")]
    reject_chunked: bool,
}

/// A scripted answer for matching requests.
#[derive(Clone, Debug, Deserialize)]
struct Rule {
    method: Option<String>,
    path_prefix: String,
    /// Only requests whose body contains this text.
    body_contains: Option<String>,
    responses: Vec<Fault>,
}

/// One scripted answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Fault {
    status: Option<u16>,
    retry_after: Option<String>,
    delay_ms: Option<u64>,
    hang: bool,
    close: bool,
    malformed: bool,
}

impl Fault {
    /// What was scripted, for the record (empty: answered normally).
    fn label(&self) -> &'static str {
        match self {
            Fault { hang: true, .. } => "hang",
            Fault { close: true, .. } => "close",
            Fault { status: Some(_), .. } => "status",
            Fault { malformed: true, .. } => "malformed",
            Fault { delay_ms: Some(_), .. } => "delay",
            _ => "",
        }
    }
}

#[derive(Default)]
struct State {
    seq: u64,
    vaults: HashMap<String, HashSet<String>>,
    records: Vec<Value>,
    rules: Vec<Rule>,
    record_file: Option<PathBuf>,
    expected_key: Option<String>,
    reject_chunked: bool,
}

/// How a request's body was framed.
#[derive(Clone, Copy, Debug)]
struct Framing {
    content_length: Option<u64>,
    chunked: bool,
}

impl Framing {
    fn of(request: &Request) -> Self {
        let header = |name: &'static str| request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
        Self {
            content_length: header("Content-Length").and_then(|v| v.trim().parse().ok()),
            chunked: header("Transfer-Encoding").is_some(),
        }
    }

    /// A body is there that no `Content-Length` declares: a request without either header
    /// has no body (HTTP/1.1), and `Transfer-Encoding` overrides any `Content-Length`.
    fn undeclared_body(&self) -> bool {
        self.chunked
    }
}

fn json_response(status: u16, body: Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").expect("valid header"))
}

fn main() {
    let args = Args::parse();
    let mut state = State { record_file: args.record.clone(), reject_chunked: args.reject_chunked, ..Default::default() };
    if let Some(var) = &args.expect_key_env {
        state.expected_key = Some(std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set")));
    }
    if let Some(path) = &args.faults {
        let text = std::fs::read_to_string(path).expect("read --faults");
        state.rules = serde_json::from_str(&text).expect("--faults holds a JSON list of rules");
    }
    let server = Server::http(("127.0.0.1", args.port)).expect("bind 127.0.0.1");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    println!("listening on http://127.0.0.1:{port}");
    std::io::stdout().flush().expect("stdout");
    let state = Arc::new(Mutex::new(state));
    for request in server.incoming_requests() {
        let state = state.clone();
        std::thread::spawn(move || handle(request, &state));
    }
}

fn handle(mut request: Request, state: &Mutex<State>) {
    let method = request.method().to_string();
    let url = request.url().to_string();
    let framing = Framing::of(&request);
    let (path, query) = url.split_once('?').map(|(p, q)| (p.to_string(), q.to_string())).unwrap_or((url.clone(), String::new()));
    let mut raw = String::new();
    let _ = request.as_reader().read_to_string(&mut raw);
    if let Some(admin) = path.strip_prefix("/_standin/") {
        let answer = admin_request(state, &method, admin, &raw);
        let _ = request.respond(answer);
        return;
    }
    let auth = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let (fault, verdict, length_required) = {
        let mut s = state.lock().expect("state lock");
        let length_required = s.reject_chunked && framing.undeclared_body();
        let verdict = match (&s.expected_key, auth) {
            (None, _) => "unchecked",
            (Some(_), None) => "missing",
            (Some(key), Some(value)) if value == format!("Bearer {key}") => "ok",
            (Some(_), Some(_)) => "wrong",
        };
        let fault = if length_required { None } else { next_fault(&mut s.rules, &method, &path, &raw) };
        (fault, verdict, length_required)
    };
    let body: Value = serde_json::from_str(&raw).unwrap_or(if raw.is_empty() { Value::Null } else { Value::String(raw.clone()) });
    let fault = fault.unwrap_or_default();
    if let Some(ms) = fault.delay_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let (status, answer) = answer(state, &fault, length_required, verdict, (&method, &path, &raw));
    record(state, json!({
        "method": method, "path": path, "query": query, "body": body, "auth": verdict,
        "status": status, "fault": fault.label(),
        "content_length": framing.content_length, "chunked": framing.chunked,
    }));
    match answer {
        Some(response) => {
            let _ = request.respond(response);
        }
        None if fault.hang => std::thread::sleep(Duration::from_secs(600)),
        None => {
            // Start an answer and break it off: the client sees a truncated response.
            let mut writer = request.into_writer();
            let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"da");
            let _ = writer.flush();
        }
    }
}

/// The status and response for a request (`None`: hang or break the answer off): a
/// missing length, a scripted fault, a failed key check, or the API's own answer.
fn answer(
    state: &Mutex<State>,
    fault: &Fault,
    length_required: bool,
    verdict: &str,
    (method, path, raw): (&str, &str, &str),
) -> (u16, Option<Response<std::io::Cursor<Vec<u8>>>>) {
    if length_required {
        (411, Some(json_response(411, json!({ "error": "Length Required: send the body with Content-Length" }))))
    } else if fault.hang || fault.close {
        (0, None)
    } else if let Some(status) = fault.status {
        let mut r = json_response(status, json!({ "error": format!("scripted {status}") }));
        if let Some(after) = &fault.retry_after {
            r = r.with_header(Header::from_bytes("Retry-After", after.as_bytes()).expect("valid header"));
        }
        (status, Some(r))
    } else if fault.malformed {
        (200, Some(Response::from_string("<html>not json").with_status_code(200)))
    } else if verdict == "missing" || verdict == "wrong" {
        (401, Some(json_response(401, json!({ "error": "Unauthorized" }))))
    } else {
        let (status, value) = api(state, method, path, raw);
        (status, Some(json_response(status, value)))
    }
}

/// Takes the next scripted answer of the first rule matching the request.
fn next_fault(rules: &mut [Rule], method: &str, path: &str, body: &str) -> Option<Fault> {
    let rule = rules.iter_mut().find(|r| {
        r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.starts_with(&r.path_prefix)
            && r.body_contains.as_deref().is_none_or(|needle| body.contains(needle))
            && !r.responses.is_empty()
    })?;
    Some(rule.responses.remove(0))
}

fn record(state: &Mutex<State>, mut entry: Value) {
    let mut s = state.lock().expect("state lock");
    s.seq += 1;
    entry["seq"] = json!(s.seq);
    if let Some(path) = &s.record_file {
        let mut file = OpenOptions::new().create(true).append(true).open(path).expect("open --record");
        let _ = writeln!(file, "{entry}");
    }
    s.records.push(entry);
}

fn admin_request(state: &Mutex<State>, method: &str, what: &str, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut s = state.lock().expect("state lock");
    match (method, what) {
        ("GET", "requests") => json_response(200, Value::Array(s.records.clone())),
        ("POST", "faults") => match serde_json::from_str::<Vec<Rule>>(body) {
            Ok(rules) => {
                s.rules = rules;
                json_response(200, json!({ "ok": true }))
            }
            Err(e) => json_response(400, json!({ "error": e.to_string() })),
        },
        ("POST", "reset") => {
            s.records.clear();
            s.rules.clear();
            s.vaults.clear();
            json_response(200, json!({ "ok": true }))
        }
        _ => json_response(404, json!({ "error": "unknown admin request" })),
    }
}

/// The Sesame endpoints of the provisioning flow.
fn api(state: &Mutex<State>, method: &str, path: &str, raw: &str) -> (u16, Value) {
    let Some(rest) = path.strip_prefix("/api/v1/") else { return (404, json!({ "error": "not found" })) };
    let body: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(_) => return (400, json!({ "error": "body is not JSON" })),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut s = state.lock().expect("state lock");
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match (method, segments.as_slice()) {
        ("POST", ["vault", "vaults"]) => match text("name") {
            None => (400, json!({ "error": "name is required" })),
            Some(name) => {
                let id = format!("vault-{:04}", s.vaults.len() + 1);
                s.vaults.insert(id.clone(), HashSet::new());
                (201, json!({ "data": { "id": id, "name": name } }))
            }
        },
        ("POST", ["vault", "vaults", id, "members"]) => {
            let principal = text("principalId").unwrap_or_default();
            match s.vaults.get_mut(*id).map(|members| members.insert(principal)) {
                None => (404, json!({ "error": "vault not found" })),
                Some(false) => (409, json!({ "error": "Already a member" })),
                Some(true) => (201, json!({ "data": { "vaultId": id, "role": text("role") } })),
            }
        }
        ("PATCH", ["families", _, "members", _]) => (200, json!({ "data": { "status": text("status") } })),
        ("POST", ["tasks", _, "activity"]) => (201, json!({ "data": { "type": text("type") } })),
        ("PATCH", ["tasks", _]) => (200, json!({ "data": { "status": text("status") } })),
        ("POST", ["channels", _, "messages"]) => (201, json!({ "data": { "intent": text("intent") } })),
        _ => (404, json!({ "error": "not found" })),
    }
}
