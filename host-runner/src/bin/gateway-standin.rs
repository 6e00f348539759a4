//! A stand-in for `openclaw ... gateway run`, for the demo and the end-to-end tests.
//!
//! `gateway-standin [--mode MODE] --profile H gateway run [--port N]` reads the config at
//! `$OPENCLAW_CONFIG_PATH` (port from `--port`, else `gateway.port`) and, like OpenClaw,
//! refuses unknown top-level keys (exit 78), reports a taken port on stderr (exit 1),
//! answers `GET /healthz` with 200, and logs `[sesame] Authenticated successfully` when
//! the Sesame channel and its plugin are there. Modes:
//! `serve` (default), `exit-at-once` (invalid config, exit 78), `no-api-key` (exit 1),
//! `hang` (accepts connections, never answers), `slow-start:<ms>`, and
//! `port-taken-late` (something grabs the port just before the gateway binds it).

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;
use tiny_http::{Header, Response, Server};

/// Top-level config keys current OpenClaw accepts (the subset we write and test).
const KNOWN_KEYS: [&str; 8] = ["gateway", "agents", "channels", "plugins", "models", "logging", "tools", "skills"];

fn fail(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.iter().position(|a| a == "--mode").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "serve".into());
    if !args.windows(2).any(|w| w == ["gateway", "run"]) {
        fail(2, &format!("gateway-standin: expected `gateway run` in {args:?}"));
    }
    println!("[gateway] pid {}", std::process::id());
    let own: Vec<&String> = args.iter().enumerate().filter(|(i, a)| *a != "--mode" && (*i == 0 || args[i - 1] != "--mode")).map(|(_, a)| a).collect();
    println!("[gateway] argv {}", serde_json::to_string(&own).expect("strings serialize"));
    let config_path = std::env::var("OPENCLAW_CONFIG_PATH").map(PathBuf::from).unwrap_or_else(|_| fail(2, "OPENCLAW_CONFIG_PATH is not set"));
    let state_dir = std::env::var("OPENCLAW_STATE_DIR").map(PathBuf::from).unwrap_or_else(|_| fail(2, "OPENCLAW_STATE_DIR is not set"));
    match mode.as_str() {
        "exit-at-once" => fail(78, &format!("Invalid config at {}: gateway.mode: required", config_path.display())),
        "no-api-key" => fail(1, "No API key found for provider anthropic"),
        _ => {}
    }
    let config = read_config(&config_path);
    let port: u16 = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .or_else(|| config["gateway"]["port"].as_u64().map(|p| p as u16))
        .unwrap_or_else(|| fail(78, "no gateway port"));
    if let Some(ms) = mode.strip_prefix("slow-start:").and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let _squatter = (mode == "port-taken-late").then(|| TcpListener::bind(("127.0.0.1", port)));
    if mode == "hang" {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|_| fail(1, &format!("Error: Port {port} is already in use")));
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
        return;
    }
    let server = Server::http(("127.0.0.1", port)).unwrap_or_else(|_| fail(1, &format!("Error: Port {port} is already in use")));
    println!("[gateway] listening on 127.0.0.1:{port}");
    let sesame = &config["channels"]["sesame"];
    let plugin = state_dir.join("extensions/sesame/dist/index.js");
    if sesame["apiKey"].as_str().is_some_and(|k| !k.is_empty()) && plugin.is_file() {
        println!("[sesame] Authenticated successfully");
    } else {
        println!("[sesame] channel not configured");
    }
    let _ = std::io::stdout().flush();
    serve(server);
}

/// Reads the config as OpenClaw would refuse it: unparseable, an unknown key, or not a
/// local gateway (exit 78).
fn read_config(config_path: &std::path::Path) -> Value {
    let config: Value = std::fs::read_to_string(config_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| fail(78, &format!("Invalid config at {}: cannot parse", config_path.display())));
    if let Some(key) = config.as_object().into_iter().flatten().map(|(k, _)| k).find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        fail(78, &format!("Invalid config at {}: unknown key {key}", config_path.display()));
    }
    if config["gateway"]["mode"] != "local" {
        fail(78, &format!("Invalid config at {}: gateway.mode must be \"local\"", config_path.display()));
    }
    config
}

/// Answers the unauthenticated probes, as a live gateway does.
fn serve(server: Server) {
    for request in server.incoming_requests() {
        let (status, body, kind) = match request.url() {
            "/healthz" => (200, r#"{"ok":true,"status":"live"}"#, "application/json"),
            "/readyz" => (200, r#"{"ready":true}"#, "application/json"),
            "/" => (200, "<!doctype html><title>OpenClaw (stand-in)</title>", "text/html"),
            _ => (404, "not found", "text/plain"),
        };
        let header = Header::from_bytes("Content-Type", kind).expect("valid header");
        let _ = request.respond(Response::from_string(body).with_status_code(status).with_header(header));
    }
}
