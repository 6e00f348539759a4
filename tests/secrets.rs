//! End to end: the lead's secrets. Its Sesame key resolved the way OpenClaw resolves it
//! (`${VAR}` from the lead's `.env`), its `.env` never passed on beyond the one provider
//! key, nothing secret printed (not even by a config that does not parse), and a sibling
//! that plants FIFOs as its logs cannot make a command hang past its deadline. The
//! scrubber cannot be beaten by a character hidden inside a key, and a task cannot steer
//! what it cuts from the output.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

/// Secrets of the lead's besides its keys, kept in its `.env`.
const GITHUB_TOKEN: &str = "ghp_lead_secret_token_0001";
const DB_PASSWORD: &str = "lead-db-password-0001";

/// Writes the lead's `openclaw.json` with `api_key` as the Sesame key, and a `.env` that
/// holds the Sesame key, the provider key and two unrelated secrets.
fn lead_with_variable_key(t: &TestHome, api_key: &str) {
    let config = t.lead().join("openclaw.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(LEAD_KEY, api_key);
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        t.lead().join(".env"),
        format!("SESAME_API_KEY={LEAD_KEY}\nANTHROPIC_API_KEY={LEAD_LLM_KEY}\nGITHUB_TOKEN={GITHUB_TOKEN}\nexport DATABASE_PASSWORD=\"{DB_PASSWORD}\"\n"),
    )
    .unwrap();
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [LEAD_KEY, LEAD_LLM_KEY, GITHUB_TOKEN, DB_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds a lead secret");
    }
}

#[test]
fn a_lead_key_written_as_a_variable_is_resolved_from_the_leads_env_and_nothing_else_reaches_the_sibling() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    lead_with_variable_key(&t, "${SESAME_API_KEY}");
    let run = t.provision(&t.task("nova", gateway_port(), |_| {})).expect(0);
    assert!(
        run.stderr.contains("channels.sesame.apiKey, ${SESAME_API_KEY} from ") && run.stderr.contains(".openclaw/.env)"),
        "the banner names where the key came from:\n{}",
        run.stderr
    );
    let requests = sesame.requests();
    assert!(!requests.is_empty() && requests.iter().all(|r| r["auth"] == "ok"), "every call carried the resolved key: {requests:?}");

    // The sibling: the one provider variable it inherits, nothing else of the lead's.
    let home = t.sibling("nova");
    let env = std::fs::read_to_string(home.join(".env")).unwrap();
    let set: Vec<&str> = env.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(set, [format!("ANTHROPIC_API_KEY=\"{LEAD_LLM_KEY}\"")]);
    let everything = all_text(&home);
    for secret in [LEAD_KEY, GITHUB_TOKEN, DB_PASSWORD] {
        assert!(!everything.contains(secret), "a lead secret reached the sibling's home");
    }
    assert!(everything.contains(TASK_KEY), "the sibling has its own Sesame key");
    assert_no_secret("stdout", &run.stdout);
    assert_no_secret("stderr", &run.stderr);
    assert_no_secret("the audit log", &std::fs::read_to_string(t.audit_log()).unwrap());
}

#[test]
fn a_key_variable_nothing_defines_is_refused_naming_file_field_and_variable_before_any_request() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    lead_with_variable_key(&t, "${LEAD_SESAME_KEY}");
    for json in [false, true] {
        let task = t.task("nova", gateway_port(), |_| {});
        let mut args = vec!["provision", "--task", task.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let run = t.run(&args).expect(2);
        let message = if json { run.json()["error"]["message"].as_str().unwrap().to_string() } else { run.stderr.clone() };
        for part in ["channels.sesame.apiKey", "openclaw.json", "${LEAD_SESAME_KEY}", ".env"] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
        assert_no_secret("stdout", &run.stdout);
        assert_no_secret("stderr", &run.stderr);
    }
    assert!(sesame.requests().is_empty(), "no request went out");
    assert!(!t.sibling("nova").exists());
}

#[test]
fn a_lead_config_that_does_not_parse_is_reported_by_line_and_column_without_its_text() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let config = t.lead().join("openclaw.json");
    let broken = std::fs::read_to_string(&config).unwrap().replace(&format!("\"{LEAD_KEY}\","), &format!("\"{LEAD_KEY}\" oops,"));
    std::fs::write(&config, broken).unwrap();
    for args in [&["list"][..], &["--json", "list"], &["grants"]] {
        let run = t.run(args).expect(2);
        assert_no_secret("stdout", &run.stdout);
        assert_no_secret("stderr", &run.stderr);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(said.contains("openclaw.json is not valid JSON5: syntax error at line 4, column"), "{said}");
        assert!(!said.contains("oops"), "no source text is quoted: {said}");
    }
}

#[test]
fn fifos_planted_as_gateway_logs_cannot_make_health_hang() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    t.provision(&t.task("fifo", gateway_port(), |_| {})).expect(0);
    assert!(t.gateway_pid("fifo").is_some(), "the gateway runs");
    t.kill_service("fifo");
    for name in ["stdout.log", "stderr.log"] {
        let log = t.log("fifo", name);
        std::fs::remove_file(&log).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &log, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    }
    let started = Instant::now();
    let run = t.run(&["--json", "--deadline", "10", "health"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(11), "health took {took:?}");
    let health: Value = run.json()["health"].clone();
    let sibling = health["siblings"].as_array().unwrap().iter().find(|s| s["handle"] == "fifo").unwrap().clone();
    assert_eq!(sibling["healthy"], false, "{sibling}");
    // Starting it again refuses the FIFO instead of blocking on it.
    let started = Instant::now();
    let run = t.run(&["--json", "--deadline", "10", "start", "fifo"]);
    assert!(started.elapsed() < Duration::from_secs(11), "start took {:?}", started.elapsed());
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("FIFO"), "{}", run.stdout);
}

/// What a terminal shows of `text`, run together: no control characters (newlines
/// included) and no zero-width or bidirectional formatting characters.
fn as_seen(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() && !matches!(*c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF)).collect()
}

#[test]
fn a_key_with_a_hidden_character_inside_reaches_neither_the_terminal_nor_the_json_nor_the_audit() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let llm_key = "sk-ant-task-key-for-the-scrubber-0001";
    let task = t.task("nova", gateway_port(), |n| n["llmApiKey"] = llm_key.into());
    // The fixture's plan prints both keys with a character hidden in each (7 ways), as
    // progress and on stderr, and returns them in every text field of the plan.
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "--json", "provision", "--plan", "--task", task.to_str().unwrap()]).expect(0);
    let doc = run.json();
    let audit = std::fs::read_to_string(t.audit_log()).unwrap_or_default();
    for (what, text) in [("stdout", run.stdout.as_str()), ("stderr", &run.stderr), ("the audit log", &audit)] {
        for key in [TASK_KEY, llm_key] {
            assert!(!as_seen(text).contains(key), "{what} shows a task key:\n{text}");
        }
    }
    assert_eq!(run.stderr.matches("DISGUISED <[redacted]>").count(), 2 * 7 * 2, "every disguise was printed, redacted:\n{}", run.stderr);
    let warnings = doc["plan"]["warnings"].as_array().unwrap();
    assert!(warnings.len() == 14 && warnings.iter().all(|w| w == "[redacted]"), "{doc:#}");
    assert_eq!(doc["plan"]["handle"], vec!["[redacted]"; 14].join(" "));
    assert_eq!(doc["plan"]["calls"][0]["body"], doc["plan"]["handle"]);
}

#[test]
fn a_task_cannot_pass_a_word_or_a_field_name_off_as_its_key() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    for key in ["exit_code", "context.notes.sesameApiKey", "invalid-input"] {
        let task = t.task("nova", gateway_port(), |n| n["sesameApiKey"] = key.into());
        let run = t.provision(&task).expect(2);
        let doc = run.json();
        assert_eq!((doc["command"].as_str(), doc["ok"].as_bool(), doc["exit_code"].as_i64()), (Some("provision"), Some(false), Some(2)), "{key}: {doc:#}");
        assert_eq!(doc["error"]["kind"], "invalid-input", "{key}: {doc:#}");
        assert_eq!(doc["error"]["field"], "context.notes.sesameApiKey", "{key}: the field is named, not cut: {doc:#}");
        assert!(!run.stdout.contains("[redacted]") && !run.stderr.contains("[redacted]"), "{key} was taken for a secret:\n{}{}", run.stdout, run.stderr);
    }
    assert!(sesame.requests().is_empty() && !t.sibling("nova").exists());
}

#[test]
fn a_lead_secret_that_is_a_key_of_the_document_leaves_the_document_whole() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let mut env = std::fs::read_to_string(t.lead().join(".env")).unwrap_or_default();
    env.push_str("\nSTRANGE_SETTING=exit_code\n");
    std::fs::write(t.lead().join(".env"), env).unwrap();
    t.provision(&t.task("nova", gateway_port(), |_| {})).expect(0);
    let run = t.run(&["--json", "list"]).expect(0);
    let doc = run.json();
    assert_eq!((doc["exit_code"].as_i64(), doc["ok"].as_bool()), (Some(0), Some(true)), "{}", run.stdout);
    assert_eq!(doc["members"][0]["handle"], "nova");
    assert!(doc["members"][0]["oc_home"].as_str().unwrap().ends_with(".openclaw-nova"), "{doc:#}");
}

