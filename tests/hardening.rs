//! Hardening: hostile task inputs, inputs that must be taken as plain text, concurrent
//! runs, and a scan of everything the tool printed or wrote for any key it handled.

mod support;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use support::*;

/// A way to spoil the example task.
enum Spoil {
    /// Change the notes.
    Notes(fn(&mut Value)),
    /// Replace the whole task file.
    Raw(Vec<u8>),
}

/// The example task, edited at the task level.
fn example_task_with(edit: fn(&mut Value)) -> Vec<u8> {
    let mut task: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("examples/task.json")).unwrap()).unwrap();
    edit(&mut task);
    task.to_string().into_bytes()
}

#[test]
fn hostile_inputs_are_refused_naming_the_field_with_nothing_written_or_sent() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    std::fs::create_dir(t.sibling("other")).unwrap();
    std::os::unix::fs::symlink(t.temp.path(), t.home.join(".openclaw-linked")).unwrap();
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let huge = format!("\"{}\"", "x".repeat(50 << 20));
    let cases: Vec<(&str, &str, Spoil)> = vec![
        ("handle ../x", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "../x".into())),
        ("handle a/b", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "a/b".into())),
        ("handle .", "context.notes.handle", Spoil::Notes(|n| n["handle"] = ".".into())),
        ("handle ..", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "..".into())),
        ("handle x\\n", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "x\n".into())),
        ("handle x<y>", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "x<y>".into())),
        ("handle too long", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "a".repeat(200).into())),
        ("handle Cyrillic look-alike", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "nоva".into())),
        ("handle fullwidth look-alike", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "ｎova".into())),
        ("handle empty", "context.notes.handle", Spoil::Notes(|n| n["handle"] = "".into())),
        ("handle reserved", "context.notes.handle", Spoil::Notes(|n| { n["handle"] = "archives".into(); n["ocHomeDir"] = "~/.openclaw-archives".into() })),
        ("ocHomeDir the lead's home", "context.notes.ocHomeDir", Spoil::Notes(|n| n["ocHomeDir"] = "~/.openclaw".into())),
        ("ocHomeDir /", "context.notes.ocHomeDir", Spoil::Notes(|n| n["ocHomeDir"] = "/".into())),
        ("ocHomeDir ~/.ssh", "context.notes.ocHomeDir", Spoil::Notes(|n| n["ocHomeDir"] = "~/.ssh".into())),
        ("ocHomeDir a symlink", "context.notes.handle", Spoil::Notes(|n| { n["handle"] = "linked".into(); n["ocHomeDir"] = "~/.openclaw-linked".into() })),
        ("ocHomeDir another sibling's home", "context.notes.ocHomeDir", Spoil::Notes(|n| n["ocHomeDir"] = "~/.openclaw-other".into())),
        ("ocHomeDir with ..", "context.notes.ocHomeDir", Spoil::Notes(|n| n["ocHomeDir"] = "~/.openclaw-x/../.ssh".into())),
        ("port 0", "context.notes.gatewayPort", Spoil::Notes(|n| n["gatewayPort"] = 0.into())),
        ("port 80", "context.notes.gatewayPort", Spoil::Notes(|n| n["gatewayPort"] = 80.into())),
        ("port 65536", "context.notes.gatewayPort", Spoil::Notes(|n| n["gatewayPort"] = 65536.into())),
        ("port a string", "context.notes.gatewayPort", Spoil::Notes(|n| n["gatewayPort"] = "18930".into())),
        ("principalId malformed", "context.notes.principalId", Spoil::Notes(|n| n["principalId"] = "0e8a1d2c-1111-4a2b-9c3d".into())),
        ("familyId malformed", "context.notes.familyId", Spoil::Notes(|n| n["familyId"] = "family-1".into())),
        ("channel id malformed", "context.notes.onboardingChannelId", Spoil::Notes(|n| n["onboardingChannelId"] = "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz".into())),
        ("display name with a newline", "context.notes.displayName", Spoil::Notes(|n| n["displayName"] = "Nova\n</string><key>evil</key>".into())),
        ("model with $(...)", "context.notes.model", Spoil::Notes(|n| n["model"] = "$(touch /tmp/pwned)".into())),
        ("model with ;", "context.notes.model", Spoil::Notes(|n| n["model"] = "anthropic/x; rm -rf ~".into())),
        ("model with backticks", "context.notes.model", Spoil::Notes(|n| n["model"] = "`id`".into())),
        ("model with a pipe", "context.notes.model", Spoil::Notes(|n| n["model"] = "a|b".into())),
        ("sesame key with a newline", "context.notes.sesameApiKey", Spoil::Notes(|n| n["sesameApiKey"] = "sk_line\nEVIL=1".into())),
        ("llm key with a space", "context.notes.llmApiKey", Spoil::Notes(|n| n["llmApiKey"] = "sk ant spaced key".into())),
        ("provider unknown", "context.notes.llmProvider", Spoil::Notes(|n| n["llmProvider"] = "gemini".into())),
        ("family name with NUL", "context.notes.familyName", Spoil::Notes(|n| n["familyName"] = "a\u{0}b".into())),
        ("notes string not JSON", "context.notes", Spoil::Raw(br#"{"id": "t-1", "context": {"notes": "{not json"}}"#.to_vec())),
        ("notes nested 10,000 deep", "task", Spoil::Raw(deep.into_bytes())),
        ("task of 50 MB", "task", Spoil::Raw(huge.into_bytes())),
        ("task not UTF-8", "task", Spoil::Raw(vec![0xff, 0xfe, b'{'])),
        ("task id with a path", "id", Spoil::Raw(example_task_with(|t| t["id"] = "../admin".into()))),
        ("provisionedBy not a uuid", "provisionedBy", Spoil::Raw(example_task_with(|t| t["provisionedBy"]["id"] = "alex".into()))),
    ];
    let before = t.tree();
    let port = gateway_port();
    let mut refused = 0;
    for (i, (name, field, spoil)) in cases.iter().enumerate() {
        let path = match spoil {
            Spoil::Notes(edit) => t.task(&format!("case{i}"), port, edit),
            Spoil::Raw(bytes) => {
                let path = t.temp.path().join(format!("raw{i}.json"));
                std::fs::write(&path, bytes).unwrap();
                path
            }
        };
        let run = t.provision(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(run.code, 2, "{name}: exit code\n{}\n{}", run.stdout, run.stderr);
        let error = run.json()["error"].clone();
        assert_eq!((error["kind"].as_str(), error["field"].as_str()), (Some("invalid-input"), Some(*field)), "{name}: {error}");
        assert!(error["message"].as_str().unwrap().len() > 5, "{name}: a clear message");
        assert_eq!(t.tree(), before, "{name}: something was written");
        refused += 1;
    }
    assert!(sesame.requests().is_empty(), "no request for any hostile input");
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    println!("hostile inputs: {refused}/{} refused with the field named, nothing written, nothing sent", cases.len());
    assert!(refused >= 30);
}

#[test]
fn markup_and_template_syntax_are_plain_text_and_argv_is_exact() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let name = "<b>{{HANDLE}}</b> & {x} </string><key>";
    let task = t.task("quirk", port, |n| {
        n["displayName"] = name.into();
        n["model"] = "openrouter/anthropic/claude-3.5:beta@x+y".into();
    });
    t.provision(&task).expect(0);
    let home = t.sibling("quirk");
    let agents = std::fs::read_to_string(home.join("workspace/AGENTS.md")).unwrap();
    assert!(agents.contains(&format!("You are **{name}** (`@quirk`)")), "{agents}");
    let soul = std::fs::read_to_string(home.join("workspace/SOUL.md")).unwrap();
    assert!(soul.contains(&format!("You are {name}.")));
    let config: Value = serde_json::from_str(&std::fs::read_to_string(home.join("openclaw.json")).unwrap()).unwrap();
    assert_eq!(config["agents"]["defaults"]["model"]["primary"], "openrouter/anthropic/claude-3.5:beta@x+y");
    // The gateway got exactly these arguments: nothing from the task reaches its argv.
    let log = std::fs::read_to_string(t.log("quirk", "stdout.log")).unwrap();
    let argv = log.lines().find_map(|l| l.strip_prefix("[gateway] argv ")).expect("the gateway logs its argv");
    assert_eq!(argv, json!(["--profile", "quirk", "gateway", "run", "--port", port.to_string()]).to_string());
    let welcome = sesame.requests().into_iter().find(|r| r["path"].as_str().unwrap().ends_with("/messages")).unwrap();
    assert!(welcome["body"]["content"].as_str().unwrap().contains(name), "sent as text");
}

#[test]
fn concurrent_provisions_keep_apart_and_corrupt_nothing() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let _room = (gateway_port(), gateway_port()); // the second sibling's claimed ports
    let spawn = |task: &std::path::Path| {
        let range = port.to_string();
        t.command(&["--json", "provision", "--auto-port", "--port-range-start", &range, "--task", task.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Different handles asking for the same port at the same moment: both succeed, on different ports.
    let (a, b) = (t.task("alfa", port, |_| {}), t.task("bravo", port, |_| {}));
    let runs = [spawn(&a), spawn(&b)].map(|c| c.wait_with_output().unwrap());
    let ports: Vec<u64> = runs
        .iter()
        .map(|out| {
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["outcome"]["port"].as_u64().unwrap()
        })
        .collect();
    assert!(!naming::claims_overlap(ports[0] as u16, ports[1] as u16), "claimed ranges apart: {ports:?}");
    assert!(ports.iter().all(|p| get_status(*p as u16, "/healthz") == Some(200)));

    // The same handle twice at the same moment: one wins, the other is refused.
    let c = t.task("charlie", gateway_port(), |_| {});
    let codes: Vec<i32> = [spawn(&c), spawn(&c)].map(|c| c.wait_with_output().unwrap().status.code().unwrap()).to_vec();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 2], "{codes:?}");
    let registry: Value = serde_json::from_str(&std::fs::read_to_string(t.lead().join("agent-provisioner/family.json")).unwrap()).unwrap();
    let handles: Vec<&str> = registry["siblings"].as_array().unwrap().iter().map(|m| m["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["alfa", "bravo", "charlie"]);
    assert!(!t.lead().join("agent-provisioner/journal/charlie.json").exists());
}

/// Every key value used in a run of every kind of command, and everything they printed
/// or wrote where a key must never be: 0 hits allowed.
#[test]
fn no_key_appears_anywhere_it_should_not() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let task_llm_key = "sk-ant-task-own-key-9876";
    // The lead's key as OpenClaw lets one write it, from a .env that holds more secrets.
    let extra_secret = "lead-dotenv-only-secret-5555";
    let config = t.lead().join("openclaw.json");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace(LEAD_KEY, "${SESAME_API_KEY}")).unwrap();
    std::fs::write(t.lead().join(".env"), format!("SESAME_API_KEY={LEAD_KEY}\nANTHROPIC_API_KEY={LEAD_LLM_KEY}\nGITHUB_TOKEN={extra_secret}\n")).unwrap();
    let mut texts: Vec<(String, String)> = Vec::new();
    fn keep(texts: &mut Vec<(String, String)>, what: &str, run: Run) {
        texts.push((format!("{what} stdout"), run.stdout));
        texts.push((format!("{what} stderr"), run.stderr));
    }
    let ok = t.task("hotel", gateway_port(), |_| {});
    let own = t.task("india", gateway_port(), |n| n["llmApiKey"] = task_llm_key.into());
    keep(&mut texts, "plan", t.run(&["provision", "--plan", "--task", ok.to_str().unwrap()]));
    keep(&mut texts, "plan json", t.run(&["--json", "provision", "--plan", "--task", ok.to_str().unwrap()]));
    keep(&mut texts, "provision", t.run(&["provision", "--task", ok.to_str().unwrap()]));
    keep(&mut texts, "provision json", t.provision(&own));
    sesame.set_faults(json!([{ "method": "POST", "path_prefix": "/api/v1/vault/vaults", "responses": [{"status": 500}, {"status": 500}, {"status": 500}] }]));
    keep(&mut texts, "failed provision", t.provision(&t.task("juliet", gateway_port(), |n| n["llmApiKey"] = task_llm_key.into())));
    keep(&mut texts, "invalid provision", t.provision(&t.task("kilo", gateway_port(), |n| n["sesameApiKey"] = "sk bad key with spaces".into())));
    for args in [vec!["stop", "hotel"], vec!["start", "hotel"], vec!["restart", "hotel"], vec!["list"], vec!["ports"], vec!["grants"]] {
        keep(&mut texts, &args.join(" "), t.run(&args));
    }
    keep(&mut texts, "health", t.run(&["--json", "health", "--report", "--channel", "11111111-2222-4333-8444-555555555555"]));
    let mut tokens = Vec::new();
    for handle in ["hotel", "india"] {
        let home = t.sibling(handle);
        assert_eq!(mode(&home), 0o700);
        for (file, m) in [("openclaw.json", 0o600), (".env", 0o600)] {
            assert_eq!(mode(&home.join(file)), m, "{handle}/{file}");
        }
        assert_eq!(mode(&t.log(handle, "stdout.log")), 0o600);
        assert_eq!(mode(&home.join("agents/main/agent")), 0o700);
        let config: Value = serde_json::from_str(&std::fs::read_to_string(home.join("openclaw.json")).unwrap()).unwrap();
        tokens.push(config["gateway"]["auth"]["token"].as_str().unwrap().to_string());
        for log in ["stdout.log", "stderr.log"] {
            texts.push((format!("{handle} {log}"), std::fs::read_to_string(t.log(handle, log)).unwrap()));
        }
        let everything = all_text(&home);
        assert!(!everything.contains(LEAD_KEY) && !everything.contains(extra_secret), "{handle}'s home holds a lead secret");
    }
    for handle in ["hotel", "india"] {
        keep(&mut texts, &format!("deprovision {handle}"), t.run(&["deprovision", handle]));
    }
    for entry in std::fs::read_dir(t.home.join(".openclaw-archives")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".member.json") {
            texts.push(("member record".into(), std::fs::read_to_string(&path).unwrap()));
            continue;
        }
        let listing = Command::new("tar").arg("tzvf").arg(&path).output().unwrap();
        texts.push(("archive listing".into(), String::from_utf8_lossy(&listing.stdout).into_owned()));
    }
    texts.push(("audit log".into(), std::fs::read_to_string(t.audit_log()).unwrap()));
    texts.push(("registry".into(), std::fs::read_to_string(t.lead().join("agent-provisioner/family.json")).unwrap()));
    texts.push(("sesame requests".into(), sesame.requests().iter().map(|r| r.to_string()).collect()));
    // A config slip on the key's own line.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("\"${SESAME_API_KEY}\",", &format!("\"{LEAD_KEY}\" ,,"))).unwrap();
    keep(&mut texts, "broken config", t.run(&["list"]));
    keep(&mut texts, "broken config json", t.run(&["--json", "list"]));

    let keys: Vec<&str> = [LEAD_KEY, TASK_KEY, LEAD_LLM_KEY, task_llm_key, extra_secret].into_iter().chain(tokens.iter().map(String::as_str)).collect();
    let hits: Vec<String> = texts
        .iter()
        .flat_map(|(what, text)| keys.iter().filter(|k| text.contains(**k)).map(move |k| format!("{what} contains {}…", &k[..6])))
        .collect();
    println!("secret scan: {} texts, {} keys, {} hits", texts.len(), keys.len(), hits.len());
    assert!(hits.is_empty(), "{hits:#?}");
    assert!(texts.len() > 30 && keys.len() == 7);
    assert!(texts.iter().any(|(what, text)| what == "broken config stderr" && text.contains("syntax error at line")), "the slip was reported");
}

#[test]
fn a_component_over_its_memory_budget_is_stopped_with_the_budget_named_and_audited() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    // The provisioner's memory starts at 1.125 MiB: a budget of 1 MiB refuses it.
    let run = t.run(&["--memory-limit", "1", "list"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("the component exceeded its memory budget of 1 MiB"), "{said}");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    let line: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["cap"] == "limits")
        .unwrap_or_else(|| panic!("no limits line in the audit log:\n{audit}"));
    assert_eq!(line["decision"], "denied");
    assert_eq!(line["op"], "memory.grow");
    assert_eq!(line["rule"], "memory budget 1 MiB (--memory-limit)");
    // The default budget runs the same command.
    t.run(&["list"]).expect(0);
}

#[test]
fn the_deadline_bounds_the_hosts_own_waits() {
    let t = TestHome::new("http://127.0.0.1:9");
    // A service manager that never answers.
    let systemctl = t.temp.path().join("systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&systemctl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut t = t;
    t.backend = "auto";
    t.extra = vec!["--systemctl".into(), systemctl.display().to_string(), "--deadline".into(), "2".into()];
    let started = std::time::Instant::now();
    let run = t.run(&["--json", "list"]).expect(2);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("no service manager answered") && message.contains("did not finish within"), "{message}");
}

/// Makes `count` empty files under `dir` (created fast: no contents).
fn empty_files(dir: &std::path::Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
    }
}

/// The archives deprovision wrote (none when the directory does not exist).
fn archives(t: &TestHome) -> Vec<String> {
    let dir = t.home.join(".openclaw-archives");
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// The registry entry of `handle`, as `list` shows it.
fn listed(t: &TestHome, handle: &str) -> Option<Value> {
    let list = t.run(&["--json", "list"]).expect(0).json();
    list["members"].as_array().unwrap().iter().find(|m| m["handle"] == handle).cloned()
}

#[test]
fn a_home_that_cannot_be_archived_is_refused_before_anything_stops_and_the_operator_may_remove_it_unarchived() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    t.provision(&t.task("nova", port, |_| {})).expect(0);
    // The sibling fills its own home past what an archive of it can hold.
    empty_files(&t.sibling("nova").join("workspace/junk"), 100_001);
    let supervisor = t.supervisor_pid("nova").unwrap();
    sesame.reset();

    let started = std::time::Instant::now();
    let refused = t.run(&["--json", "deprovision", "nova"]).expect(2);
    report(&format!("deprovision refused a home of 100,010 entries in {:?}", started.elapsed()));
    let error = &refused.json()["error"];
    let message = error["message"].as_str().unwrap();
    assert_eq!(error["kind"], "refused", "{error}");
    assert!(message.contains("cannot be archived") && message.contains("the home holds more than 100000 entries (an archive cap)"), "{message}");
    assert!(message.contains("nothing was changed") && message.contains("agent-provisioner deprovision nova --without-archive"), "{message}");
    // Nothing changed: the gateway still runs under its supervisor, the member is registered.
    assert_eq!(get_status(port, "/healthz"), Some(200));
    assert!(is_alive(supervisor) && t.services_dir().join("com.openclaw.nova.json").is_file());
    assert_eq!(listed(&t, "nova").unwrap()["status"], "online");
    assert!(t.sibling("nova").join("openclaw.json").is_file());
    assert!(archives(&t).iter().all(|a| !a.starts_with("nova-")), "{:?}", archives(&t));
    assert!(sesame.requests().is_empty(), "{:?}", sesame.requests());

    // The operator's way out: the home is removed without an archive, and that is said.
    let done = t.run(&["--json", "deprovision", "nova", "--without-archive"]).expect(0).json();
    let outcome = &done["outcome"];
    assert!(outcome["archive"].is_null(), "{outcome}");
    let warnings = outcome["warnings"].to_string();
    assert!(warnings.contains("was removed without an archive, as the operator asked (--without-archive)"), "{warnings}");
    assert!(!t.sibling("nova").exists());
    assert!(archives(&t).iter().all(|a| !a.starts_with("nova-")), "no archive: {:?}", archives(&t));
    assert!(listed(&t, "nova").is_none());
    assert!(get_status(port, "/healthz").is_none() && !is_alive(supervisor));
    let requests = sesame.requests();
    assert!(requests.iter().any(|r| r["method"] == "PATCH" && r["body"] == json!({"status": "deprovisioned"})), "{requests:?}");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"remove-tree\"") && l.contains("without an archive: the operator's deprovision --without-archive")), "audited");
}

#[test]
fn a_home_that_grows_past_the_cap_after_the_check_is_kept_with_the_service_removed_and_the_member_marked() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let port = gateway_port();
    t.provision(&t.task("nova", port, |_| {})).expect(0);
    // Ready outside the home, moved in (one rename) right after the check passed.
    let junk = t.temp.path().join("junk");
    empty_files(&junk, 100_001);
    let deprovision = t.command(&["--json", "deprovision", "nova"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let audit = t.audit_log();
    eventually("the check", std::time::Duration::from_secs(30), || std::fs::read_to_string(&audit).is_ok_and(|a| a.contains("\"check-archivable\"")));
    std::fs::rename(&junk, t.sibling("nova").join("workspace/junk")).unwrap();
    let run = Run::from_output(deprovision.wait_with_output().unwrap()).expect(1);

    let error = &run.json()["error"];
    let message = error["message"].as_str().unwrap();
    assert_eq!((error["kind"].as_str(), error["step"].as_str()), (Some("failed"), Some("archive")), "{error}");
    assert!(message.contains("more than 100000 entries"), "{message}");
    assert!(message.contains("was stopped and removed, the home was kept and nova stays registered (deprovision-incomplete)"), "{message}");
    assert!(message.contains("`agent-provisioner deprovision nova` once the home can be archived") && message.contains("deprovision nova --without-archive"), "{message}");
    // A clear state: no service, the home whole, the member marked; no archive half-written.
    assert!(!t.services_dir().join("com.openclaw.nova.json").exists() && get_status(port, "/healthz").is_none());
    assert!(t.sibling("nova").join("openclaw.json").is_file() && t.sibling("nova").join("workspace/junk/f100000").is_file());
    assert_eq!(listed(&t, "nova").unwrap()["status"], "deprovision-incomplete");
    assert!(archives(&t).iter().all(|a| !a.starts_with("nova-") && !a.starts_with(".nova-")), "{:?}", archives(&t));

    // Finished as the message says, once the home fits again.
    std::fs::remove_dir_all(t.sibling("nova").join("workspace/junk")).unwrap();
    let done = t.run(&["--json", "deprovision", "nova"]).expect(0).json();
    assert!(done["outcome"]["archive"].as_str().is_some_and(|a| std::path::Path::new(a).is_file()), "{done}");
    assert!(!t.sibling("nova").exists() && listed(&t, "nova").is_none());
}

#[test]
fn a_launchd_job_loaded_under_the_label_from_another_plist_is_not_started() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    t.backend = "launchd";
    let launchctl = t.launchctl_standin();
    t.extra = vec!["--launchctl".into(), launchctl.display().to_string()];
    let port = gateway_port();
    t.provision(&t.task("nova", port, |_| {})).expect(0);
    let target = format!("gui/{}/com.openclaw.nova", unsafe { libc::getuid() });
    assert!(Command::new(&launchctl).args(["bootout", &target]).status().unwrap().success());
    eventually("the gateway to stop", std::time::Duration::from_secs(10), || get_status(port, "/healthz").is_none());
    // A plist anyone can write as the user, loaded under the sibling's label.
    let (evil, ran) = (t.sibling("nova").join("evil.plist"), t.temp.path().join("ran"));
    let mut dict = plist::Dictionary::new();
    dict.insert("Label".into(), "com.openclaw.nova".into());
    let program = ["/bin/sh".to_string(), "-c".into(), format!("echo ran >> '{}'", ran.display())];
    dict.insert("ProgramArguments".into(), plist::Value::Array(program.into_iter().map(plist::Value::from).collect()));
    dict.insert("RunAtLoad".into(), true.into());
    plist::Value::Dictionary(dict).to_file_xml(&evil).unwrap();
    assert!(Command::new(&launchctl).args(["bootstrap", &format!("gui/{}", unsafe { libc::getuid() })]).arg(&evil).status().unwrap().success());
    let runs = || std::fs::read_to_string(&ran).unwrap_or_default().lines().count();
    eventually("the other plist's program to run at load", std::time::Duration::from_secs(10), || runs() == 1);

    let run = t.run(&["--json", "start", "nova"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("was loaded from {}, not from the plist this host wrote", evil.display())), "{message}");
    assert!(!t.launchctl_calls().iter().any(|c| c.starts_with("kickstart")), "{:?}", t.launchctl_calls());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(runs(), 1, "the other plist's program was not started again");
}
