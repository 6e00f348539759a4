//! End to end: `agent-provisioner provision` with the real binary and component, the
//! Sesame stand-in and stand-in gateways.

mod support;

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::*;

fn secrets_absent(texts: &[&str]) {
    for text in texts {
        for key in [LEAD_KEY, TASK_KEY, LEAD_LLM_KEY] {
            assert!(!text.contains(key), "a key leaked:\n{text}");
        }
    }
}

/// `{` + an uppercase name + `}`, or `{{`: a template placeholder left behind.
fn has_placeholder(text: &str) -> bool {
    text.contains("{{")
        || text.match_indices('{').any(|(i, _)| {
            let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            !name.is_empty() && text[i + 1 + name.len()..].starts_with('}')
        })
}

#[test]
fn a_full_provision_builds_the_home_reports_to_sesame_and_runs_the_gateway() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let run = t.provision(&t.task("nova", port, |_| {})).expect(0);
    let out = run.json();
    assert_eq!(out["outcome"]["handle"], "nova");
    assert_eq!(out["outcome"]["port"], port);
    assert_eq!(out["outcome"]["label"], "com.openclaw.nova");
    assert_eq!(out["outcome"]["vault_id"], "vault-0001");
    assert_eq!(out["outcome"]["sesame_authenticated"], true);
    assert_eq!(out["outcome"]["unreported"], json!([]));

    // The tree, with modes.
    let home = t.sibling("nova");
    for (path, expected) in [
        ("", 0o700),
        ("openclaw.json", 0o600),
        (".env", 0o600),
        ("agents/main/agent", 0o700),
        ("workspace/memory", 0o700),
        ("workspace/AGENTS.md", 0o644),
    ] {
        assert_eq!(mode(&home.join(path)), expected, "{path}");
    }
    assert!(home.join("extensions/sesame/dist/index.js").is_file());
    assert!(home.join("skills/sesame/SKILL.md").is_file());
    assert_eq!(mode(&t.log("nova", "")), 0o700, "the host's log directory, outside the home");
    assert!(!home.join("logs").exists(), "no log directory a sibling could re-point"); 
    assert!(!home.join("agents/main/agent/auth-profiles.json").exists(), "current OpenClaw reads .env; no legacy files");

    // openclaw.json, field by field.
    let config: Value = serde_json::from_str(&std::fs::read_to_string(home.join("openclaw.json")).unwrap()).unwrap();
    let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["agents", "channels", "gateway", "plugins"]);
    assert_eq!(config["gateway"]["mode"], "local");
    assert_eq!(config["gateway"]["port"], port);
    assert_eq!(config["gateway"]["bind"], "loopback");
    assert_eq!(config["gateway"]["auth"]["mode"], "token");
    let token = config["gateway"]["auth"]["token"].as_str().unwrap();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(config["agents"]["defaults"]["workspace"], home.join("workspace").display().to_string());
    assert_eq!(config["agents"]["defaults"]["model"]["primary"], "anthropic/claude-opus-4-6");
    assert_eq!(config["channels"]["sesame"], json!({"enabled": true, "apiKey": TASK_KEY, "apiUrl": sesame.url}));
    assert_eq!(config["plugins"], json!({"entries": {"sesame": {"enabled": true}}}));
    let env = std::fs::read_to_string(home.join(".env")).unwrap();
    assert!(env.contains(&format!("ANTHROPIC_API_KEY=\"{LEAD_LLM_KEY}\"")), "the lead's key is inherited");

    // Workspace files: all there, no placeholder left, the lead's context carried over.
    for name in ["AGENTS.md", "TOOLS.md", "MEMORY.md", "BOOTSTRAP.md", "SOUL.md", "USER.md", "IDENTITY.md", "HEARTBEAT.md"] {
        let text = std::fs::read_to_string(home.join("workspace").join(name)).unwrap();
        assert!(!has_placeholder(&text), "{name} keeps a placeholder:\n{text}");
    }
    let bootstrap = std::fs::read_to_string(home.join("workspace/BOOTSTRAP.md")).unwrap();
    assert!(bootstrap.contains("by Atlas for\nAlex (`@alex`, Founder)"), "{bootstrap}");
    assert!(std::fs::read_to_string(home.join("workspace/TOOLS.md")).unwrap().contains("`nova-main`"));
    assert!(std::fs::read_to_string(home.join("workspace/SOUL.md")).unwrap().contains("fond of short answers"));

    // Sesame saw the spec's sequence, every request with the lead's key.
    let requests = sesame.requests();
    let p = principal("nova");
    let expected = [
        ("POST", "/api/v1/vault/vaults".to_string(), json!({"name": "nova-main", "description": "NOVA credentials vault"})),
        ("POST", "/api/v1/vault/vaults/vault-0001/members".into(), json!({"principalId": p, "role": "owner"})),
        ("POST", "/api/v1/vault/vaults/vault-0001/members".into(), json!({"principalId": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "role": "admin"})),
        ("PATCH", format!("/api/v1/families/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/members/{p}"), json!({"status": "online"})),
        ("POST", "/api/v1/tasks/task-0001/activity".into(), json!({"type": "progress", "message": format!("Agent nova is online on port {port}. Sesame connected, vault created.")})),
        ("PATCH", "/api/v1/tasks/task-0001".into(), json!({"status": "done"})),
    ];
    assert_eq!(requests.len(), expected.len() + 1, "{requests:#?}");
    for (request, (method, path, body)) in requests.iter().zip(&expected) {
        assert_eq!((request["method"].as_str().unwrap(), request["path"].as_str().unwrap()), (*method, path.as_str()));
        assert_eq!(&request["body"], body);
        assert_eq!(request["auth"], "ok");
    }
    let welcome = &requests[6];
    assert_eq!(welcome["path"], "/api/v1/channels/6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0/messages");
    assert_eq!(welcome["body"]["intent"], "chat");
    assert!(welcome["body"]["content"].as_str().unwrap().starts_with("Welcome! I've provisioned NOVA (@nova)"));

    // The service runs and answers.
    let pid = t.gateway_pid("nova").expect("a recorded gateway");
    assert!(is_alive(pid));
    assert_eq!(get_status(port, "/healthz"), Some(200));
    let registry: Value = serde_json::from_str(&std::fs::read_to_string(t.lead().join("agent-provisioner/family.json")).unwrap()).unwrap();
    assert_eq!(registry["siblings"][0]["handle"], "nova");
    assert_eq!(registry["siblings"][0]["port"], port);

    // No key anywhere it should not be.
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    secrets_absent(&[&run.stdout, &run.stderr, &audit, &std::fs::read_to_string(t.log("nova", "stdout.log")).unwrap()]);
}

#[test]
fn plan_changes_nothing_and_lists_exactly_what_the_run_does() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let task = t.task("vega", gateway_port(), |_| {});
    let before = t.tree();
    let run = t.run(&["--json", "--timings", "provision", "--plan", "--task", task.to_str().unwrap()]).expect(0);
    assert_eq!(t.tree(), before, "the plan wrote nothing");
    assert!(sesame.requests().is_empty(), "the plan sent nothing");
    let plan = run.json()["plan"].clone();
    secrets_absent(&[&run.stdout, &run.stderr]);
    // --timings: where the time went, on stderr; the plan's own phases in the JSON.
    let line = run.stderr.lines().find_map(|l| l.strip_prefix("timings: ")).expect("a timings line");
    let timings: Value = serde_json::from_str(line).unwrap();
    assert!(["cached", "compiled"].contains(&timings["component"].as_str().unwrap()), "{timings}");
    assert!(timings["first_guest_instruction_us"].as_u64().unwrap() <= timings["process_us"].as_u64().unwrap(), "{timings}");
    let phases: Vec<&str> = plan["timings"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["validate", "lead context", "config", "render", "plan"]);

    t.provision(&task).expect(0);
    let home = t.sibling("vega");
    let planned: Vec<String> = plan["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    for path in &planned {
        assert!(Path::new(path).exists(), "planned {path} was not created");
    }
    // Everything the run created is in the plan (inside copied trees: their roots; logs: the service's own).
    let home_prefix = format!("{}/", home.display());
    for created in t.tree().iter().map(|p| t.home.join(p).display().to_string()).filter(|p| p.starts_with(&home_prefix)) {
        let covered = planned.iter().any(|p| created == *p || created.starts_with(&format!("{p}/")));
        assert!(covered, "{created} was created but not planned");
    }
    for file in plan["files"].as_array().unwrap().iter().filter(|f| f["action"] == "file") {
        let path = file["path"].as_str().unwrap();
        // The host renders the credential file; the component never knows its size.
        let by_host = file["source"].as_str().is_some_and(|s| s.ends_with("written by the host"));
        if !by_host {
            assert_eq!(std::fs::metadata(path).unwrap().len(), file["size"].as_u64().unwrap(), "{path}");
        }
        assert_eq!(mode(Path::new(path)), file["mode"].as_u64().unwrap() as u32, "{path}");
    }
    let planned_calls: Vec<String> = plan["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["purpose"].as_str().unwrap().starts_with("rollback"))
        .map(|c| format!("{} {}", c["method"].as_str().unwrap(), c["url"].as_str().unwrap().replace("<vault-id>", "vault-0001")))
        .collect();
    let made: Vec<String> = sesame.lines().iter().map(|l| l.replacen(' ', &format!(" {}", sesame.url), 1)).collect();
    assert_eq!(planned_calls, made);
}

/// A recording `systemctl` that fails `--user start`.
fn failing_systemctl(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("systemctl");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}/systemctl.log'\ncase \"$2\" in\n  start) echo 'Job for openclaw-x.service failed' >&2; exit 1;;\n  show) printf 'LoadState=loaded\\nFragmentPath=%s\\n' \"$HOME/.config/systemd/user/$3\";;\nesac\nexit 0\n",
        dir.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Provisions `handle` with a failure set up by `arrange`, and checks the complete rollback.
fn fails_and_rolls_back(handle: &str, step: &str, needle: &str, arrange: impl FnOnce(&mut TestHome, &SesameStandin)) {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    arrange(&mut t, &sesame);
    let port = gateway_port();
    let run = t.provision(&t.task(handle, port, |_| {})).expect(1);
    let error = &run.json()["error"];
    assert_eq!(error["kind"], "failed");
    assert_eq!(error["step"], step, "{error:#}");
    assert!(error["message"].as_str().unwrap().contains(needle), "{error:#}");

    assert!(!t.sibling(handle).exists(), "the home is removed");
    assert!(t.gateway_pid(handle).is_none(), "no service left");
    assert!(!t.home.join(format!(".config/systemd/user/openclaw-sibling-{handle}.service")).exists());
    assert_eq!(get_status(port, "/healthz"), None, "nothing listens on the port");
    let archive = error["archive"].as_str().expect("the partial home is archived");
    assert!(archive.contains(&format!(".openclaw-archives/{handle}-")) && archive.ends_with(".tar.gz"));
    let listing = std::process::Command::new("tar").args(["tzf", archive]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(&format!(".openclaw-{handle}/openclaw.json")), "{listing}");
    assert!(listing.contains(&format!(".openclaw-{handle}/workspace/AGENTS.md")), "{listing}");
    let rollback: Vec<&str> = error["rollback"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert!(rollback.contains(&"archive and remove the home"), "{rollback:?}");
    let calls = sesame.requests();
    let tail: Vec<(String, Value)> = calls.iter().rev().take(3).rev().map(|r| (format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()), r["body"].clone())).collect();
    assert_eq!(tail[0].0, format!("PATCH /api/v1/families/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/members/{}", principal(handle)));
    assert_eq!(tail[0].1, json!({"status": "error"}));
    assert_eq!(tail[1].0, "POST /api/v1/tasks/task-0001/activity");
    assert_eq!(tail[1].1["type"], "blocker");
    assert!(tail[1].1["message"].as_str().unwrap().starts_with("Provisioning failed: "));
    assert_eq!(tail[2].0, "POST /api/v1/channels/6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0/messages");
    assert_eq!(tail[2].1["intent"], "error");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    secrets_absent(&[&run.stdout, &run.stderr, &audit, &calls.iter().map(|c| c.to_string()).collect::<String>()]);
}

#[test]
fn a_vault_failure_rolls_back() {
    fails_and_rolls_back("vaultfail", "vault", "HTTP 500", |_, sesame| {
        sesame.set_faults(json!([{ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "responses": [{"status": 500}, {"status": 500}, {"status": 500}] }]));
    });
}

#[test]
fn a_service_start_failure_rolls_back_and_removes_the_unit() {
    fails_and_rolls_back("startfail", "service", "Job for openclaw-x.service failed", |t, _| {
        let systemctl = failing_systemctl(t.temp.path());
        t.backend = "systemd";
        t.extra = vec!["--systemctl".into(), systemctl.display().to_string()];
    });
}

#[test]
fn a_gateway_that_exits_at_once_rolls_back() {
    fails_and_rolls_back("exits", "health", "invalid openclaw.json: the gateway exited with code 78", |t, _| {
        t.openclaw = fake_openclaw(t.temp.path(), "exit-at-once");
    });
}

#[test]
fn a_port_taken_while_starting_rolls_back() {
    fails_and_rolls_back("taken", "health", "port conflict", |t, _| {
        t.openclaw = fake_openclaw(t.temp.path(), "port-taken-late");
    });
}

#[test]
fn a_port_already_in_use_is_refused_before_anything_is_written() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let _held = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let before = t.tree();
    let run = t.provision(&t.task("busy", port, |_| {})).expect(2);
    assert_eq!(run.json()["error"]["field"], "gatewayPort");
    assert!(run.json()["error"]["message"].as_str().unwrap().contains(&format!("port {port} is already in use")));
    assert_eq!(t.tree(), before);
    assert!(sesame.requests().is_empty());
}

#[test]
fn invalid_tasks_are_refused_naming_the_field_with_nothing_written() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    std::fs::create_dir(t.sibling("taken")).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("context.notes.handle", Box::new(|n| n["handle"] = "../x".into())),
        ("context.notes.handle", Box::new(|n| n["handle"] = "a/b".into())),
        ("context.notes.handle", Box::new(|n| n["handle"] = "Nova".into())),
        ("context.notes.handle", Box::new(|n| n["handle"] = "".into())),
        ("context.notes.handle", Box::new(|n| n["handle"] = "nоva".into())),
        ("context.notes.handle", Box::new(|n| {
            n["handle"] = "taken".into();
            n["ocHomeDir"] = "~/.openclaw-taken".into();
        })),
        ("context.notes.principalId", Box::new(|n| n["principalId"] = "not-a-uuid".into())),
        ("context.notes.familyId", Box::new(|n| n["familyId"] = 7.into())),
        ("context.notes.llmProvider", Box::new(|n| n["llmProvider"] = "gemini".into())),
        ("context.notes.gatewayPort", Box::new(|n| n["gatewayPort"] = 80.into())),
        ("context.notes.gatewayPort", Box::new(|n| n["gatewayPort"] = 65536.into())),
        ("context.notes.gatewayPort", Box::new(|n| n["gatewayPort"] = "18930".into())),
        ("context.notes.ocHomeDir", Box::new(|n| n["ocHomeDir"] = "~/.openclaw".into())),
        ("context.notes.ocHomeDir", Box::new(|n| n["ocHomeDir"] = "~/.ssh".into())),
        ("context.notes.ocHomeDir", Box::new(|n| n["ocHomeDir"] = "/".into())),
        ("context.notes.sesameApiKey", Box::new(|n| n["sesameApiKey"] = "has a space".into())),
        ("context.notes.displayName", Box::new(|n| n["displayName"] = "Line\nBreak".into())),
        ("context.notes.model", Box::new(|n| n["model"] = "$(reboot)".into())),
        ("context.notes.llmApiKey", Box::new(|n| {
            n["llmApiKey"] = Value::Null;
            n["inheritCredentials"] = false.into();
        })),
    ];
    let before = t.tree();
    let port = gateway_port();
    for (i, (field, edit)) in cases.iter().enumerate() {
        let task = t.task(&format!("case{i}"), port, |n| edit(n));
        let run = t.provision(&task).expect(2);
        let error = run.json()["error"].clone();
        assert_eq!(error["kind"], "invalid-input", "case {i}: {error}");
        assert_eq!(error["field"], *field, "case {i}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        std::fs::remove_file(task).unwrap();
        assert_eq!(t.tree(), before, "case {i} wrote something");
        secrets_absent(&[&run.stdout, &run.stderr]);
    }
    for (text, field) in [("not json", "task"), ("[1,2]", "task"), ("\"{broken\"", "notes")] {
        let path = t.temp.path().join("raw.json");
        std::fs::write(&path, text).unwrap();
        let run = t.provision(&path).expect(2);
        assert_eq!(run.json()["error"]["field"], field, "{text}");
    }
    assert!(sesame.requests().is_empty(), "no request for invalid input");
}

#[test]
fn the_human_text_shows_progress_and_the_outcome() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let task = t.task("lyra", gateway_port(), |_| {});
    let run = t.run(&["provision", "--task", task.to_str().unwrap()]).expect(0);
    assert!(run.stdout.starts_with("Provisioned lyra: running as com.openclaw.lyra"), "{}", run.stdout);
    for step in ["==> config:", "==> workspace:", "==> vault:", "==> service:", "==> health:", "==> report:"] {
        assert!(run.stderr.contains(step), "{step} missing from:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("sandbox grants:"), "the grants are shown");
}

#[test]
fn a_slow_gateway_is_waited_for_with_a_line_every_few_seconds_and_json_stays_one_document() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    t.openclaw = fake_openclaw(t.temp.path(), "slow-start:6500");
    let port = gateway_port();
    let task = t.task("tarn", port, |_| {});
    let run = t.run(&["--json", "provision", "--task", task.to_str().unwrap()]).expect(0);
    assert_eq!(run.json()["outcome"]["handle"], "tarn", "stdout is the one document");
    let note = format!("still waiting for com.openclaw.tarn to answer on http://127.0.0.1:{port}/healthz: 5 s of 10 s so far (last probe: ");
    assert!(run.stderr.lines().any(|l| l.trim_start().starts_with(&note)), "{note}… missing from:\n{}", run.stderr);
    assert!(!run.stdout.contains("still waiting"));
}

#[test]
fn a_report_that_keeps_failing_leaves_the_agent_running_with_exit_3() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    sesame.set_faults(json!([{ "method": "PATCH", "path_prefix": "/api/v1/families/", "responses": [{"status": 503}, {"status": 503}, {"status": 503}] }]));
    let port = gateway_port();
    let run = t.provision(&t.task("sol", port, |_| {})).expect(3);
    let outcome = run.json()["outcome"].clone();
    let unreported = outcome["unreported"].as_array().unwrap();
    assert_eq!(unreported.len(), 1, "{unreported:?}");
    let what = unreported[0].as_str().unwrap();
    assert!(what.contains("PATCH /families/") && what.contains("HTTP 503: scripted 503 (after 3 attempts)"), "{what}");
    assert_eq!(get_status(port, "/healthz"), Some(200), "the healthy agent keeps running");
    assert!(t.sibling("sol").join("openclaw.json").is_file());
    let lines = sesame.lines();
    assert!(lines.contains(&"PATCH /api/v1/tasks/task-0001".to_string()), "the other reports are still sent: {lines:?}");
    sesame.set_faults(json!([{ "method": "PATCH", "path_prefix": "/api/v1/families/", "responses": [{"status": 500}, {"status": 500}, {"status": 500}] }]));
    let human = t.run(&["provision", "--task", t.task("sol2", gateway_port(), |_| {}).to_str().unwrap()]).expect(3);
    assert!(human.stdout.contains("Not reported to Sesame (after retries):"), "{}", human.stdout);
}

#[test]
fn the_legacy_credential_layout_writes_auth_json_and_never_copies_the_leads_auth_profiles() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let profiles = t.lead().join("agents/main/agent");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join("auth-profiles.json"), r#"{"profiles": {"anthropic:default": {"provider": "anthropic"}}}"#).unwrap();
    let task = t.task("tau", gateway_port(), |n| n["llmApiKey"] = "sk-ant-task-key-0001".into());
    t.run(&["--json", "provision", "--credential-layout", "legacy", "--task", task.to_str().unwrap()]).expect(0);
    let agent = t.sibling("tau").join("agents/main/agent");
    let auth: Value = serde_json::from_str(&std::fs::read_to_string(agent.join("auth.json")).unwrap()).unwrap();
    assert_eq!(auth, json!({"anthropic": {"type": "api_key", "key": "sk-ant-task-key-0001"}}));
    assert_eq!(mode(&agent.join("auth.json")), 0o600);
    assert_eq!(mode(&agent), 0o700);
    assert!(!agent.join("auth-profiles.json").exists(), "the lead's profiles stay the lead's");
    assert!(!t.sibling("tau").join(".env").exists());
}

#[test]
fn a_strict_standin_gets_every_body_with_its_content_length_and_provision_passes() {
    let sesame = SesameStandin::start_with(Some(LEAD_KEY), true);
    // The stand-in's strict mode is real: a chunked body is answered 411 and recorded.
    let mut raw = std::net::TcpStream::connect(sesame.url.trim_start_matches("http://")).unwrap();
    use std::io::{Read, Write};
    raw.write_all(b"POST /api/v1/vault/vaults HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    let rejected = sesame.requests();
    assert_eq!((rejected[0]["status"].as_u64(), rejected[0]["chunked"].as_bool()), (Some(411), Some(true)), "{rejected:?}");
    sesame.reset();

    let t = TestHome::new(&sesame.url);
    t.provision(&t.task("kilo", gateway_port(), |_| {})).expect(0);
    let requests = sesame.requests();
    assert_eq!(requests.len(), 7, "{requests:#?}");
    for request in &requests {
        let body = request["body"].to_string();
        assert_eq!(request["chunked"], false, "{request}");
        assert_eq!(request["content_length"].as_u64(), Some(body.len() as u64), "{request}");
        assert_ne!(request["status"], 411, "{request}");
    }
}

#[test]
fn a_component_cannot_get_a_port_nobody_started() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    t.provision(&t.task("lima", port, |_| {})).expect(0);
    // The registry is the component's to write: point the sibling at a local service the
    // host never started (here a listener of the test's own).
    let service = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    service.set_nonblocking(true).unwrap();
    let other = service.local_addr().unwrap().port();
    let registry = t.lead().join("agent-provisioner/family.json");
    let mut family: Value = serde_json::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    family["siblings"][0]["port"] = other.into();
    std::fs::write(&registry, family.to_string()).unwrap();

    let run = t.run(&["--json", "health"]).expect(0);
    let lima = &run.json()["health"]["siblings"][0];
    assert_eq!((lima["handle"].as_str(), lima["healthy"].as_bool()), (Some("lima"), Some(false)), "{lima}");
    assert!(lima["probe"].as_str().unwrap().contains("denied by the host's HTTP grants"), "{lima}");
    assert!(matches!(service.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the other service was never reached");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    let denial = audit
        .lines()
        .filter(|l| l.contains("\"denied\"") && l.contains(&format!("http://127.0.0.1:{other}/healthz")))
        .collect::<Vec<_>>();
    assert!(
        denial.iter().any(|l| l.contains(&format!("port {other} is not a sibling gateway port: no definition the host wrote"))),
        "{audit}"
    );
    assert!(run.stderr.contains(&format!("on sibling gateway ports {port} (definitions this host wrote)")), "the banner names the proven port:\n{}", run.stderr);
}

#[test]
fn a_resumed_provision_cannot_install_on_a_port_someone_else_took_meanwhile() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let task = t.task("mike", port, |_| {});
    // Interrupt the provision in its vault step, before any service exists.
    sesame.set_faults(json!([{ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "responses": [{"hang": true}] }]));
    let mut child = t.command(&["--json", "provision", "--task", task.to_str().unwrap()]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    eventually("the vault request", std::time::Duration::from_secs(30), || sesame.lines().iter().any(|l| l == "POST /api/v1/vault/vaults"));
    child.kill().unwrap();
    child.wait().unwrap();
    sesame.set_faults(json!([]));

    // Meanwhile another program listens on the port; a resume keeps its port unchecked.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    squatter.set_nonblocking(true).unwrap();
    let run = t.run(&["--json", "provision", "--resume", "--task", task.to_str().unwrap()]).expect(1);
    let error = &run.json()["error"];
    assert_eq!(error["step"], "service", "{error:#}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&format!("port {port} is already listening on 127.0.0.1 and no definition of com.openclaw.mike")), "{message}");
    assert!(matches!(squatter.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the squatter was never probed");
    assert!(t.gateway_pid("mike").is_none(), "no service was installed");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"denied\"") && l.contains("com.openclaw.mike") && l.contains("already listening")), "{audit}");
    assert!(!audit.lines().any(|l| l.contains(&format!("http://127.0.0.1:{port}")) && l.contains("\"allowed\"")), "no HTTP grant on the port: {audit}");
}
