//! The sandbox holds: a hostile component of the same world, run by the real host, is
//! denied every escape (and each denial is audited and changes nothing on disk), while
//! the same component's allowed operations succeed.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use support::*;

/// What the hostile component reported: attempt name -> (allowed?, detail).
fn results(stderr: &str) -> BTreeMap<String, (bool, String)> {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RESULT "))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next().unwrap().to_string();
            let allowed = parts.next().unwrap() == "allowed";
            (name, (allowed, parts.next().unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn a_hostile_component_is_denied_every_escape() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let outside = t.temp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside secret\n").unwrap();
    std::fs::create_dir_all(t.sibling("victim").join("logs")).unwrap();
    std::os::unix::fs::symlink(&outside, t.sibling("victim").join("escape")).unwrap();
    t.register_sibling("victim");
    t.register_sibling("squat");
    std::fs::create_dir_all(t.sibling("squat")).unwrap();
    // The home of the task's handle, which the fixture writes into (made by an earlier run).
    t.register_sibling("any");
    std::fs::create_dir_all(t.sibling("any")).unwrap();
    std::fs::create_dir_all(t.sibling("work")).unwrap();
    std::fs::write(t.sibling("work").join("openclaw.json"), "{}\n").unwrap();
    // What the lead holds besides its notes, a bomb among the archives, a tree deeper than
    // a walk goes, and a FIFO where the victim's gateway log should be.
    std::fs::write(t.lead().join(".env"), format!("ANTHROPIC_API_KEY={LEAD_LLM_KEY}\nDATABASE_URL={DB_SECRET}\n")).unwrap();
    std::fs::create_dir_all(t.lead().join("agents/main/agent")).unwrap();
    std::fs::write(t.lead().join("agents/main/agent/auth-profiles.json"), format!("{{\"token\": \"{DB_SECRET}\"}}")).unwrap();
    std::fs::create_dir_all(t.lead().join("agents/main/sessions")).unwrap();
    std::fs::write(t.lead().join("agents/main/sessions/sessions.json"), "{}").unwrap();
    std::fs::create_dir_all(t.lead().join("credentials")).unwrap();
    std::fs::create_dir_all(t.home.join(".openclaw-archives")).unwrap();
    std::fs::write(t.home.join(".openclaw-archives/bomb.tar.gz"), long_name_bomb()).unwrap();
    std::fs::create_dir_all(t.sibling("victim").join("deep").join(["d"; 300].join("/"))).unwrap();
    let log = t.log("victim", "stdout.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, &log, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    std::fs::create_dir_all(t.home.join(".ssh")).unwrap();
    std::fs::write(t.home.join(".ssh/authorized_keys"), "ssh-ed25519 AAAA good\n").unwrap();
    let units = t.home.join(".config/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("openclaw-sibling-victim.service"), "[Service]\nExecStart=/usr/bin/the-users-own\n").unwrap();
    std::fs::write(units.join("openclaw-gateway.service"), "[Service]\nExecStart=/usr/bin/openclaw gateway\n").unwrap();
    let mut t = t;
    t.backend = "systemd";
    let systemctl = t.recording_tool("systemctl");
    t.extra = vec!["--systemctl".into(), systemctl.display().to_string()];
    let watched = [
        t.home.join(".ssh/authorized_keys"),
        t.lead().join("workspace/USER.md"),
        t.lead().join("workspace/MEMORY.md"),
        t.lead().join("openclaw.json"),
        t.sibling("work").join("openclaw.json"),
        t.home.join(".local/state/agent-provisioner/siblings.json"),
        units.join("openclaw-sibling-victim.service"),
        units.join("openclaw-gateway.service"),
        outside.join("secret.txt"),
    ];
    let before: Vec<Vec<u8>> = watched.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let _ = std::fs::remove_file("/tmp/hostile-was-here");

    // The fixture prints the task (with its keys) and terminal escapes.
    let task = t.task("any", gateway_port(), |n| n["llmApiKey"] = TASK_LLM_KEY.into());
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "provision", "--task", task.to_str().unwrap()]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    let results = results(&run.stderr);

    let hostile = [
        "ssh-authorized-keys",
        "lead-home-write",
        "lead-home-mkdir",
        "lead-config-read",
        "dotdot-escape",
        "symlink-read",
        "symlink-write",
        "credentials-other-profile",
        "credentials-injection",
        "lead-env-read",
        "lead-auth-profiles-read",
        "lead-session-read",
        "lead-metadata",
        "lead-list-archive",
        "archive-bomb",
        "walk-too-deep",
        "log-fifo-read",
        "http-read-every-vault",
        "http-delete-vault",
        "http-encoded-segment",
        "http-query",
        "http-chunked-body",
        "service-on-listening-port",
        "service-other-profile",
        "http-loopback-unstarted",
        "http-health-of-the-api-port",
        "read-only-truncate",
        "wasi-preopen-write",
        "http-other-host",
        "http-other-port",
        "http-outside-api",
        "http-loopback-ssh",
        "http-own-authorization",
        "plugin-dir",
        "plugin-file",
        "workspace-skill",
        "plugin-enable",
        "env-node-options",
        "mode-setuid",
        "mode-world-writable-dir",
        "other-profile-write",
        "other-profile-read",
        "dev-profile",
        "lead-archive",
        "lead-walk",
        "host-state-write",
        "restore-from-lead-home",
        "restore-over-a-home",
        "restore-other-profile",
        "restore-path-handle",
        "restore-bomb",
        "service-foreign-label",
        "service-dotted-label",
        "service-newline-label",
        "service-lead-gateway",
        "service-over-foreign-unit",
        "service-stop-foreign",
        "service-stop-foreign-unit",
        "service-uninstall-foreign-unit",
        "service-status-foreign-unit",
        "service-stop-lead-gateway",
        "family-claim-other-handle",
        "family-claim-traversal",
        "adoption-begin-profile",
        "adoption-migrate-victim",
        "adoption-commit-victim",
        "adoption-abort-victim",
        "home-remove-unarchived",
        "home-check-lead",
        "sibling-write-other",
        "service-stop-other-sibling",
    ];
    for name in hostile {
        let (allowed, detail) = results.get(name).unwrap_or_else(|| panic!("{name} did not run:\n{}", run.stderr));
        assert!(!allowed, "{name} was allowed: {detail}");
    }
    let granted = ["sibling-write", "sibling-mkdir", "lead-read", "sesame-call", "family-lock-flood", "family-claim-task-handle"];
    for name in granted {
        let (allowed, detail) = &results[name];
        assert!(allowed, "{name} should be allowed: {detail}");
    }
    assert_eq!(results.len(), hostile.len() + granted.len());

    // The disk: nothing outside the grants changed; what was allowed happened.
    let after: Vec<Vec<u8>> = watched.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert!(!std::path::Path::new("/tmp/hostile-was-here").exists());
    assert!(!t.lead().join("evil").exists());
    assert!(!t.sibling("victim").join("stolen").exists());
    assert!(!outside.join("pwned").exists());
    assert!(t.tool_calls("systemctl").is_empty(), "no systemctl call at all: {:?}", t.tool_calls("systemctl"));
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 2, "no unit was written");
    for gone in ["extensions", "workspace/skills", ".env", "suid", "shared", "openclaw.json"] {
        assert!(!t.sibling("victim").join(gone).exists(), "{gone} was written");
    }
    assert!(!t.sibling("dev").exists() && !t.home.join(".openclaw-archives/lead.tar.gz").exists());
    assert_eq!(std::fs::read_to_string(t.sibling("any").join("workspace/memory/notes.md")).unwrap(), "hello");
    // A run changes the home and the service of the sibling it claimed, and no other's.
    assert!(!t.sibling("victim").join("workspace/AGENTS.md").exists());
    for name in ["sibling-write-other", "service-stop-other-sibling"] {
        assert!(results[name].1.contains("this run works on any"), "{name}: {}", results[name].1);
    }

    // Every denial is audited and shown, naming a grant or rule.
    let audit: Vec<Value> = std::fs::read_to_string(t.audit_log()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let denied = |cap: &str, target: &str| {
        audit.iter().any(|e| e["decision"] == "denied" && e["cap"] == cap && e["target"].as_str().unwrap().contains(target))
    };
    for (cap, target) in [
        ("fs", ".ssh/authorized_keys"),
        ("fs", "workspace/USER.md"),
        ("fs", "/evil"),
        ("fs", "openclaw.json"),
        ("fs", "victim/../.ssh"),
        ("fs", "escape/secret.txt"),
        ("fs", "escape/pwned"),
        ("fs", "workspace/MEMORY.md"),
        ("http", "http://example.com:80/"),
        ("http", "/admin"),
        ("http", "127.0.0.1:22/"),
        ("http", "authorization"),
        ("service", "com.apple.evil"),
        ("service", "com.openclaw.../evil"),
        ("service", "com.openclaw.victim"),
        ("service", "com.apple.Finder"),
        ("fs", "victim/extensions"),
        ("fs", "victim/openclaw.json"),
        ("fs", "victim/.env"),
        ("fs", "victim/suid"),
        ("fs", ".openclaw-work/openclaw.json"),
        ("fs", ".openclaw-dev"),
        ("fs", "lead.tar.gz"),
        ("service", "com.openclaw.gateway"),
    ] {
        assert!(denied(cap, target), "no audited denial of {cap} {target}");
    }
    assert!(audit.iter().filter(|e| e["decision"] == "denied").all(|e| !e["rule"].as_str().unwrap().is_empty()));
    assert!(run.stderr.contains("agent-provisioner: denied: fs write-atomic"), "denials are printed:\n{}", run.stderr);

    // The allowed Sesame request arrived with the lead's key, which appears nowhere else.
    let requests = sesame.requests();
    assert_eq!(requests.len(), 1, "only the allowed request reached Sesame: {requests:?}");
    assert_eq!(requests[0]["path"], "/api/v1/tasks/task-0001/activity");
    assert_eq!(requests[0]["auth"], "ok");
    let audit_text = std::fs::read_to_string(t.audit_log()).unwrap();
    for text in [&run.stdout, &run.stderr, &audit_text] {
        for secret in [LEAD_KEY, LEAD_LLM_KEY, DB_SECRET] {
            assert!(!text.contains(secret), "a lead secret leaked");
        }
    }
    assert!(!t.sibling("victim").join(".env").exists() && !t.sibling("work").join(".env").exists());
    let detail = |name: &str| results[name].1.clone();
    assert!(detail("lead-env-read").contains("only its workspace notes"), "{}", detail("lead-env-read"));
    assert!(detail("archive-bomb").contains("a listing cap"), "{}", detail("archive-bomb"));
    assert!(detail("restore-from-lead-home").contains("only archives in the archives grant can be restored"), "{}", detail("restore-from-lead-home"));
    assert!(detail("restore-over-a-home").contains("AlreadyExists") && detail("restore-over-a-home").contains("never writes over a home"), "{}", detail("restore-over-a-home"));
    assert!(detail("restore-other-profile").contains("not a sibling home this host created"), "{}", detail("restore-other-profile"));
    assert!(detail("restore-path-handle").contains("Denied"), "{}", detail("restore-path-handle"));
    assert!(detail("restore-bomb").contains("an entry name is longer than 4096 bytes (a restore cap)"), "{}", detail("restore-bomb"));
    assert!(!t.sibling("fresh").exists(), "no home was restored");
    let strays: Vec<_> = std::fs::read_dir(&t.home).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".restoring-")).collect();
    assert!(strays.is_empty(), "no temporary directory is left: {strays:?}");
    assert!(detail("walk-too-deep").contains("deep"), "{}", detail("walk-too-deep"));
    assert!(detail("log-fifo-read").contains("FIFO"), "{}", detail("log-fifo-read"));
    assert!(detail("credentials-injection").contains("not a plain key"), "{}", detail("credentials-injection"));
    let api_port: u16 = sesame.url.rsplit_once(':').unwrap().1.parse().unwrap();
    let unstarted = format!("127.0.0.1:{}/healthz", api_port + 1);
    for (target, rule) in [
        ("/api/v1/vault/vaults", "takes POST only"),
        ("/api/v1/vault/vaults/v-1", "is not one of the spec's Sesame endpoints"),
        ("..%2F..%2Fadmin", "is not an id"),
        ("/api/v1/tasks/task-0001/activity", "no Sesame endpoint of the spec takes a query string"),
        ("/api/v1/tasks/task-0001/activity", "a body but no Content-Length"),
        ("com.openclaw.squat", "is already listening on 127.0.0.1"),
        ("com.openclaw.work", "not a sibling home this host created"),
        (unstarted.as_str(), "is not a sibling gateway port"),
        ("/healthz", "is not one of the spec's Sesame endpoints"),
    ] {
        let found = audit.iter().any(|e| {
            e["decision"] == "denied" && e["target"].as_str().unwrap().contains(target) && e["rule"].as_str().unwrap().contains(rule)
        });
        assert!(found, "no audited denial of {target} for {rule:?}: {:?}", results.iter().filter(|(n, _)| n.contains("listening")).collect::<Vec<_>>());
    }

    // The family lock taken a million times and never released: one audit line for taking
    // it, one for the host releasing it when the run ended; the next run gets it at once.
    let family = |op: &str| audit.iter().filter(|e| e["cap"] == "family" && e["op"] == op).cloned().collect::<Vec<Value>>();
    assert_eq!(family("lock").len(), 1, "{:#?}", family("lock"));
    let released = family("unlock");
    assert!(released.len() == 1 && released[0]["rule"].as_str().unwrap().contains("1000000 lock(s) not undone; released by the host"), "{released:#?}");
    // Bound to the task's handle as the host read it (before that, a run may claim one handle).
    assert!(detail("family-claim-other-handle").contains("this run provisions any (its task's handle"), "{}", detail("family-claim-other-handle"));
    assert!(detail("family-claim-traversal").contains("contains `.`"), "{}", detail("family-claim-traversal"));
    let next = t.run(&["--lock-timeout", "0", "stop", "victim"]);
    assert!(next.stdout.contains("victim is not a registered sibling") && !next.stderr.contains("still holds"), "{}{}", next.stdout, next.stderr);

    // What the component printed reached the terminal scrubbed and without escapes.
    assert!(run.stderr.contains("LEAK"), "the fixture printed:\n{}", run.stderr);
    for secret in [TASK_KEY, TASK_LLM_KEY] {
        assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret), "a task key was printed");
    }
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'), "terminal escapes were printed");
}

#[test]
fn a_command_that_changes_nothing_is_refused_the_family_lock() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "ports"]).expect(2);
    let (allowed, detail) = results(&run.stderr)["family-lock-read-only"].clone();
    assert!(!allowed && detail.contains("`ports` changes nothing and is not granted the family lock"), "{detail}");
    assert!(!t.lead().join("logs/agent-provisioner.lock").exists(), "the lock file was never even opened");
}

#[test]
fn a_hostile_adoption_is_confined_to_the_named_sibling_and_its_config_and_put_back() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let home = t.sibling("nova");
    std::fs::create_dir_all(home.join("agents/main/agent")).unwrap();
    std::fs::create_dir_all(home.join("workspace")).unwrap();
    std::fs::write(home.join("openclaw.json"), "{\"gateway\": {\"mode\": \"local\", \"port\": 18790}}\n").unwrap();
    std::fs::write(home.join("agents/main/agent/auth.json"), format!("{{\"anthropic\": {{\"type\": \"api_key\", \"key\": \"{TASK_LLM_KEY}\"}}}}")).unwrap();
    std::fs::write(home.join("workspace/AGENTS.md"), "the sibling's own\n").unwrap();
    std::fs::create_dir_all(t.sibling("work")).unwrap();
    std::fs::write(t.sibling("work").join("openclaw.json"), "{}").unwrap();
    let before = (files_under(&home), files_under(&t.sibling("work")));

    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "adopt", "nova", "--principal-id", &principal("nova"), "--family-id", &principal("family")]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    let results = results(&run.stderr);
    let verdict = |name: &str| results.get(name).cloned().unwrap_or_else(|| panic!("no result {name}: {}", run.stderr));
    for (name, allowed, says) in [
        ("adoption-begin-other", false, "this run adopts nova only"),
        ("adoption-begin-named", true, ".openclaw-nova"),
        ("adoption-begin-twice", false, "has begun already"),
        ("adoption-migrate-named", true, "moved from agents/main/agent/auth.json to .env"),
        ("adoption-write-config", false, "openclaw.json: "),
        ("adoption-write-workspace", false, "may change only its openclaw.json"),
    ] {
        let (was_allowed, detail) = verdict(name);
        assert_eq!(was_allowed, allowed, "{name}: {detail}");
        assert!(detail.contains(says), "{name}: no {says:?} in {detail}");
    }
    assert!(run.stderr.contains("the adoption of nova did not finish and was put back"), "{}", run.stderr);
    assert_eq!((files_under(&home), files_under(&t.sibling("work"))), before, "every byte is back; the other profile was never touched");
    let recorded = std::fs::read_to_string(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap_or_default();
    assert!(!recorded.contains("nova"), "{recorded}");
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(TASK_LLM_KEY), "the migrated key was never shown");
}

/// The fixture task's own provider key.
const TASK_LLM_KEY: &str = "sk-ant-task-key-for-the-fixture-0001";

/// Another secret of the lead's (in its `.env` and auth profiles), which nothing may show.
const DB_SECRET: &str = "postgres-secret-password-0001";

/// A `.tar.gz` whose first header is a GNU long name declaring a 4 GiB name: a reader that
/// trusts it allocates 4 GiB.
fn long_name_bomb() -> Vec<u8> {
    use std::io::Write as _;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(4 << 30);
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_cksum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(header.as_bytes()).unwrap();
    gz.write_all(&[b'a'; 8192]).unwrap();
    gz.finish().unwrap()
}

#[test]
fn the_grants_command_shows_every_grant() {
    let t = TestHome::new("https://api.sesame.space");
    let run = t.run(&["grants"]).expect(0);
    let home = t.home.display().to_string();
    for line in [
        format!("files: {home}/.openclaw/{{workspace/IDENTITY.md,workspace/USER.md,workspace/MEMORY.md,workspace/HEARTBEAT.md,workspace/TOOLS.md}} (the lead's workspace notes, read-only)"),
        format!("files: {home}/.openclaw/agent-provisioner (provisioner state, read-write)"),
        format!("files: {home}/.openclaw-<handle> (sibling homes this host created for this lead, or new ones; read-write; the component creates only: openclaw.json, workspace/, workspace/*.md, workspace/memory/"),
        "code: the host copies extensions/sesame".to_string(),
        format!("files: {home}/.openclaw-archives (archives, create-only: new archives and member records, never replaced or removed; of them only member records are read back)"),
        "access: read-write within the grants below; read-only for list, health (without --report), ports, grants, adopt --scan, adopt HANDLE --plan, provision --plan".to_string(),
        "limits: the component writes at most 64 MiB and 10000 new entries per run; walk-tree lists at most 100000 entries, 256 levels, 16 MiB of names".to_string(),
        "http: https://api.sesame.space:443/api/v1/*".to_string(),
        "lead Sesame key: held by the host".to_string(),
        "lead provider keys: held by the host, passed on only to a sibling that inherits one (anthropic from ANTHROPIC_API_KEY from".to_string(),
    ] {
        assert!(run.stdout.contains(&line), "{line} missing from:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains(LEAD_KEY) && !run.stdout.contains(LEAD_LLM_KEY));
}

#[test]
fn without_a_lead_key_sesame_requests_are_refused_with_the_way_out() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let config = t.lead().join("openclaw.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(LEAD_KEY, "");
    std::fs::write(&config, text).unwrap();
    let run = t.provision(&t.task("nokey", gateway_port(), |_| {})).expect(1);
    let error = run.json()["error"].clone();
    assert_eq!(error["step"], "vault");
    assert!(sesame.requests().is_empty(), "nothing reached Sesame without the key");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    assert!(audit.contains("SESAME_API_KEY"), "the denial names the way out");
}

#[test]
fn hostile_handles_are_refused_naming_the_field_and_nothing_is_touched() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let config = t.lead().join("openclaw.json");
    let mut lead: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    lead["channels"]["sesame"]["handle"] = "@Atlas".into();
    std::fs::write(&config, lead.to_string()).unwrap();
    let units = t.home.join(".config/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("openclaw-gateway.service"), "[Service]\nExecStart=/usr/bin/openclaw gateway\n").unwrap();
    t.backend = "systemd";
    let systemctl = t.recording_tool("systemctl");
    t.extra = vec!["--systemctl".into(), systemctl.display().to_string()];
    let before = t.tree();
    for (handle, why) in [("gateway", "reserved"), ("gateway-work", "reserved"), ("default", "reserved"), ("dev", "reserved"), ("atlas", "lead's own handle")] {
        let run = t.provision(&t.task(handle, gateway_port(), |_| {})).expect(2);
        let error = run.json()["error"].clone();
        assert_eq!(error["kind"], "invalid-input", "{handle}: {error}");
        assert!(error["field"].as_str().unwrap().ends_with("handle"), "{handle}: {error}");
        assert!(error["message"].as_str().unwrap().contains(why), "{handle}: {error}");
    }
    assert_eq!(t.tree().iter().filter(|p| !p.starts_with(".cache")).collect::<Vec<_>>(), before.iter().filter(|p| !p.starts_with(".cache")).collect::<Vec<_>>());
    assert!(sesame.requests().is_empty(), "nothing was sent");
    assert!(t.tool_calls("systemctl").is_empty(), "no systemctl call: {:?}", t.tool_calls("systemctl"));
}

#[test]
fn a_foreign_unit_or_launch_agent_for_a_valid_handle_is_named_and_never_touched() {
    for (backend, dir, file, tool) in [
        ("systemd", ".config/systemd/user", "openclaw-sibling-nova.service", "systemctl"),
        ("launchd", "Library/LaunchAgents", "com.openclaw.nova.plist", "launchctl"),
    ] {
        let sesame = SesameStandin::start(Some(LEAD_KEY));
        let mut t = TestHome::new(&sesame.url);
        let foreign = t.home.join(dir).join(file);
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        std::fs::write(&foreign, "the user's own definition\n").unwrap();
        t.backend = backend;
        let recorder = t.recording_tool(tool);
        t.extra = vec![format!("--{tool}"), recorder.display().to_string()];
        let task = t.task("nova", gateway_port(), |_| {});
        for args in [vec!["--json", "provision", "--task", task.to_str().unwrap()], vec!["--json", "provision", "--plan", "--task", task.to_str().unwrap()]] {
            let run = t.run(&args).expect(2);
            let error = run.json()["error"].clone();
            assert_eq!(error["kind"], "refused", "{backend}: {error}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains(&foreign.display().to_string()) && message.contains("not written by agent-provisioner"), "{message}");
        }
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "the user's own definition\n");
        assert!(!t.sibling("nova").exists(), "{backend}: nothing was written");
        assert!(t.tool_calls(tool).is_empty(), "{backend}: {:?}", t.tool_calls(tool));
        assert!(sesame.requests().is_empty());
    }
}

#[test]
fn a_poisoned_registry_cannot_point_lifecycle_commands_elsewhere() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    t.provision(&t.task("nova", gateway_port(), |_| {})).expect(0);
    let registry = t.lead().join("agent-provisioner/family.json");
    let mut family: Value = serde_json::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    family["siblings"][0]["ocHome"] = t.lead().display().to_string().into();
    family["siblings"][0]["label"] = "com.openclaw.gateway".into();
    std::fs::write(&registry, family.to_string()).unwrap();
    let run = t.run(&["--json", "deprovision", "nova"]).expect(0);
    let outcome = run.json()["outcome"].clone();
    assert_eq!(outcome["label"], "com.openclaw.nova", "the label comes from the handle");
    assert!(outcome["archive"].as_str().unwrap().contains("/.openclaw-archives/nova-"));
    assert!(t.lead().join("openclaw.json").exists() && t.lead().join("workspace").exists(), "the lead's home is untouched");
    assert!(!t.sibling("nova").exists());

    // A registry entry whose handle breaks the rules makes the registry corrupt.
    t.provision(&t.task("vega", gateway_port(), |_| {})).expect(0);
    let mut family: Value = serde_json::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    family["siblings"][0]["handle"] = "../.openclaw".into();
    std::fs::write(&registry, family.to_string()).unwrap();
    let run = t.run(&["--json", "stop", "vega"]).expect(2);
    assert!(run.json()["error"]["message"].as_str().unwrap().contains("corrupt"), "{}", run.stdout);
}

/// The one compiled artifact in `dir`.
fn artifact_in(dir: &std::path::Path) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn a_component_planted_in_the_cache_is_compiled_over_never_run() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let cache = t.temp.path().join("cache");
    let hostile_cache = t.temp.path().join("hostile-cache");
    // The hostile fixture, compiled by the host into a cache of its own: a valid artifact.
    t.extra = vec!["--cache-dir".into(), hostile_cache.display().to_string()];
    t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "ports"]).expect(2);
    let planted = std::fs::read(artifact_in(&hostile_cache)).unwrap();
    t.extra = vec!["--cache-dir".into(), cache.display().to_string()];
    t.run(&["ports"]).expect(0);
    let entry = artifact_in(&cache);
    let genuine = std::fs::read(&entry).unwrap();
    assert_eq!(mode(&cache), 0o700);

    // What a sibling that writes ~/.cache could do: put the fixture under the embedded
    // component's name, or bytes that are no artifact at all.
    for bytes in [planted.clone(), b"not an artifact".to_vec()] {
        std::fs::write(&entry, &bytes).unwrap();
        let run = t.run(&["ports"]);
        assert!(!run.stderr.contains("RESULT family-lock-read-only"), "the planted component ran:\n{}", run.stderr);
        let run = run.expect(0);
        assert!(run.stdout.contains("next free base"), "{}", run.stdout);
        assert!(run.stderr.contains("compiling again instead of loading the cache entry"), "{}", run.stderr);
        assert_eq!(std::fs::read(&entry).unwrap(), genuine, "the entry was replaced by the host's own");
    }
    // A cache directory that others may enter is made private first.
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    t.run(&["ports"]).expect(0);
    assert_eq!(mode(&cache), 0o700);
}

/// The results of a hostile run named `keys-*`, each checked: denied (with `rule` in its
/// detail) or allowed.
fn check_keys_results(run: &Run, expected: &[(&str, bool, &str)]) {
    let results = results(&run.stderr);
    for (name, allowed, says) in expected {
        let (was_allowed, detail) = results.get(*name).unwrap_or_else(|| panic!("{name} did not run:\n{}", run.stderr));
        assert_eq!(was_allowed, allowed, "{name}: {detail}");
        assert!(detail.contains(says), "{name}: no {says:?} in {detail}");
    }
}

/// No secret of `secrets` in the run's output or the audit log.
fn assert_nowhere(t: &TestHome, run: &Run, secrets: &[&str]) {
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    for text in [&run.stdout, &run.stderr, &audit] {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
}

/// A token of the lead's that the host never registers (it reads no `credentials/`).
const OAUTH_TOKEN: &str = "lead-oauth-refresh-token-0001";

/// A `.tar.gz` of `home` as `.openclaw-<handle>/` (as deprovision writes it).
fn archive_of(home: &std::path::Path, handle: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    tar.append_dir_all(format!(".openclaw-{handle}"), home).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// `~/.openclaw-inherit`: a sibling the host made that inherited the lead's provider key,
/// holds it again under an innocent name, and has the lead's `.env` hard-linked as a
/// workspace note; its archive (with its `.env`) among the archives.
fn inherited_sibling(t: &TestHome) -> std::path::PathBuf {
    let home = t.sibling("inherit");
    std::fs::create_dir_all(home.join("workspace/memory")).unwrap();
    std::fs::write(home.join(".env"), format!("ANTHROPIC_API_KEY=\"{LEAD_LLM_KEY}\"\n")).unwrap();
    std::fs::write(home.join("workspace/memory/innocent.md"), format!("a note\n{LEAD_LLM_KEY}\n")).unwrap();
    // A secret of the lead's `.env` that is no provider key: registered all the same.
    let mut env = std::fs::read_to_string(t.lead().join(".env")).unwrap();
    env.push_str(&format!("DATABASE_URL={DB_SECRET}\n"));
    std::fs::write(t.lead().join(".env"), env).unwrap();
    std::fs::write(home.join("workspace/memory/db.md"), format!("postgres: {DB_SECRET}\n")).unwrap();
    std::fs::create_dir_all(t.home.join(".openclaw-archives")).unwrap();
    std::fs::write(t.home.join(".openclaw-archives/inherit-1.tar.gz"), archive_of(&home, "inherit")).unwrap();
    std::fs::hard_link(t.lead().join(".env"), home.join("workspace/USER.md")).unwrap();
    // A lead file holding no registered key: only its link count gives it away.
    std::fs::create_dir_all(t.lead().join("credentials")).unwrap();
    std::fs::write(t.lead().join("credentials/oauth.json"), format!("{{\"refresh\": \"{OAUTH_TOKEN}\"}}")).unwrap();
    std::fs::hard_link(t.lead().join("credentials/oauth.json"), home.join("workspace/memory/linked.md")).unwrap();
    t.register_sibling("inherit");
    home
}

#[test]
fn no_key_the_host_put_anywhere_is_read_and_writes_follow_the_list() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let inherit = inherited_sibling(&t);
    let before = (files_under(&inherit), files_under(&t.home.join(".openclaw-archives")), files_under(&t.lead().join("workspace")));

    let task = t.task("keys", gateway_port(), |_| {});
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "provision", "--task", task.to_str().unwrap()]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    let listed = "not on the list of what a component may create";
    check_keys_results(&run, &[
        ("keys-read-inherited-env", false, "a .env file holds keys"),
        ("keys-read-inherited-env-case", false, "a .env file holds keys"),
        ("keys-read-archive", false, "reads only member records"),
        ("keys-read-hard-link", false, "workspace/USER.md has 2 hard links"),
        ("keys-read-hard-link-unregistered", false, "workspace/memory/linked.md has 2 hard links"),
        ("keys-read-innocent-name", false, "holds a key the host registered"),
        ("keys-read-registered-secret", false, "holds a key the host registered"),
        ("keys-archive-hard-link", false, ".openclaw-inherit/workspace/USER.md has 2 hard links"),
        ("keys-archive-readable", false, "only as *.tar.gz in the archives grant"),
        ("keys-credentials-unclaimed", false, "this run has claimed no sibling"),
        ("keys-claim", true, "claimed"),
        ("keys-credentials-archives", false, "is not a sibling handle: it is reserved"),
        ("keys-credentials-other-handle", false, "this run works on keys"),
        ("keys-own-home", true, "ok"),
        ("keys-credentials-own", true, "ok"),
        ("keys-read-back-own", false, "a .env file holds keys"),
        ("keys-write-env-case", false, "differs from .env only in case"),
        ("keys-write-extensions-case", false, listed),
        ("keys-write-config-case", false, "differs from openclaw.json only in case"),
        ("keys-write-node-host", false, listed),
        ("keys-write-skill-library", false, listed),
        ("keys-write-worktree-setup", false, listed),
        ("keys-write-worktree-sources", false, listed),
        ("keys-mkdir-extensions-case", false, listed),
        ("keys-write-memory", true, "ok"),
    ]);

    // The disk: nothing of the inherited sibling, the archives or the lead changed; of
    // the run's own home only what the list allows was written.
    let after = (files_under(&inherit), files_under(&t.home.join(".openclaw-archives")), files_under(&t.lead().join("workspace")));
    assert_eq!(before, after);
    let own = t.sibling("keys");
    let mut written: Vec<String> = files_under(&own).into_keys().collect();
    written.sort();
    assert_eq!(written, [".env", "workspace/", "workspace/memory/", "workspace/memory/notes.md"]);
    assert!(std::fs::read_to_string(own.join(".env")).unwrap().contains(LEAD_LLM_KEY), "the run's own sibling inherits the key");
    assert_nowhere(&t, &run, &[LEAD_LLM_KEY, LEAD_KEY, DB_SECRET, OAUTH_TOKEN]);

    // Every refusal is audited, naming its rule.
    let audit: Vec<Value> = std::fs::read_to_string(t.audit_log()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (op, target, rule) in [
        ("read", ".openclaw-inherit/.env", "credential files are read only by the host"),
        ("read", "inherit-1.tar.gz", "reads only member records"),
        ("read", ".openclaw-inherit/workspace/USER.md", "hard links"),
        ("read", "innocent.md", "holds a key the host registered"),
        ("archive-tree", "inherit-2.tar.gz", "hard links"),
        ("write-credentials", ".openclaw-archives", "not a sibling handle"),
        ("write-credentials", ".openclaw-inherit", "this run works on keys"),
        ("write-atomic", ".openclaw-keys/node-host/x.js", "not on the list"),
    ] {
        let found = audit.iter().any(|e| {
            e["decision"] == "denied" && e["op"] == op && e["target"].as_str().unwrap().contains(target) && e["rule"].as_str().unwrap().contains(rule)
        });
        assert!(found, "no audited denial of {op} {target} for {rule:?}");
    }
}

#[test]
fn a_command_other_than_provision_or_restore_writes_no_credentials() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let inherit = inherited_sibling(&t);
    let before = files_under(&inherit);
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "list"]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    check_keys_results(&run, &[
        ("keys-list-credentials", false, "`list` changes nothing"),
        ("keys-list-read-env", false, "a .env file holds keys"),
    ]);
    assert_eq!(files_under(&inherit), before);
    assert_nowhere(&t, &run, &[LEAD_LLM_KEY, LEAD_KEY]);
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"denied\"") && l.contains("write-credentials") && l.contains("`list` changes nothing")), "audited");
}

#[test]
fn an_adopted_homes_copied_credentials_are_never_read() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    let home = bash_era_home(&t, "nova", gateway_port());
    std::fs::write(home.join(".env"), format!("OPENAI_API_KEY=\"{}\"\n", legacy_key("openai"))).unwrap();
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "adopt", "nova", "--principal-id", &principal("nova"), "--family-id", &principal("family")]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    check_keys_results(&run, &[
        ("adoption-begin-named", true, ".openclaw-nova"),
        ("keys-adopt-auth-profiles-before", false, "auth*.json holds keys"),
        ("keys-adopt-auth-before", false, "auth*.json holds keys"),
        ("keys-adopt-env-before", false, "a .env file holds keys"),
        ("adoption-migrate-named", true, "moved from agents/main/agent/auth.json to .env"),
        ("keys-adopt-auth-profiles-after", false, "auth*.json holds keys"),
        ("keys-adopt-env-after", false, "a .env file holds keys"),
    ]);
    assert_nowhere(&t, &run, &[LEAD_PROFILE_KEY, &legacy_key("nova"), &legacy_key("openai")]);
}

/// Someone else's vault on the stand-in (`vault-0001`), made with the lead's key before the run.
fn foreign_vault(sesame: &SesameStandin) {
    ureq::post(&format!("{}/api/v1/vault/vaults", sesame.url))
        .header("Authorization", &format!("Bearer {LEAD_KEY}"))
        .header("Content-Type", "application/json")
        .send(r#"{"name": "someone-elses", "description": "not the run's"}"#)
        .unwrap();
}

#[test]
fn a_hostile_component_reaches_sesame_only_with_its_runs_ids_and_probes_only_its_ports() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    foreign_vault(&sesame);
    let port = gateway_port();
    let task = t.task("gatecheck", port, |_| {});
    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "provision", "--task", task.to_str().unwrap()]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    let results = results(&run.stderr);
    let allowed = ["gate-create-vault", "gate-member-own", "gate-task-own", "gate-channel-own", "gate-ports-own"];
    let denied = [
        "gate-member-before-vault",
        "gate-create-second-vault",
        "gate-member-foreign-vault",
        "gate-member-foreign-principal",
        "gate-member-duplicate-key",
        "gate-task-foreign",
        "gate-family-foreign-member",
        "gate-channel-foreign",
        "gate-method-override",
        "gate-method-header",
        "gate-forwarded-for",
        "gate-body-stolen-key-0",
        "gate-body-stolen-key-1",
        "gate-body-escaped-key",
        "gate-loopback-localhost",
        "gate-loopback-ipv6",
        "gate-loopback-ipv4",
        "gate-ports-scan",
    ];
    for (names, expected) in [(&allowed[..], true), (&denied[..], false)] {
        for name in names {
            let (was, detail) = results.get(*name).unwrap_or_else(|| panic!("{name} did not run:\n{}", run.stderr));
            assert_eq!(*was, expected, "{name}: {detail}");
        }
    }
    assert_eq!(results.len(), allowed.len() + denied.len());

    // Each denial is audited, naming the id (or header, host, port) that is not the run's.
    let audit: Vec<Value> = std::fs::read_to_string(t.audit_log()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let stranger = "99999999-aaaa-4bbb-8ccc-000000000001";
    for (cap, target, rule) in [
        ("http", "/vault/vaults/vault-0001/members", "the vault id \"vault-0001\" is not this run's"),
        ("http", "/api/v1/vault/vaults", "this run has its vault already (vault-0002)"),
        ("http", "/vault/vaults/vault-0002/members", &format!("the principalId \"{stranger}\" of the vault member is not this run's")),
        ("http", "/tasks/task-9999", "the task id \"task-9999\" is not this run's (it has task-0001; from the task)"),
        ("http", &format!("/members/{stranger}"), "the principal id"),
        ("http", &format!("/channels/{stranger}/messages"), "the channel id"),
        ("http", "/messages", "may not set the x-http-method-override header"),
        ("http", "/messages", "may not set the x-http-method header"),
        ("http", "/messages", "may not set the x-forwarded-for header"),
        ("http", "/messages", "the body holds a key the host holds"),
        ("http", &format!("localhost:{port}/healthz"), "sibling gateways are asked on http://127.0.0.1 only"),
        ("http", &format!("[::1]:{port}/healthz"), "sibling gateways are asked on http://127.0.0.1 only"),
        ("http", &format!("127.0.0.1:{port}/healthz"), "is not a sibling gateway port"),
        ("ports", "5432,6379,27017", "not in the claimed ranges of this run's plan"),
        ("ports", "22", "only ports 1024..65535"),
    ] {
        let found = audit.iter().any(|e| {
            e["decision"] == "denied" && e["cap"] == cap && e["target"].as_str().unwrap().contains(target) && e["rule"].as_str().unwrap().contains(rule)
        });
        assert!(found, "no audited denial of {cap} {target} for {rule:?}");
    }
    let body_denials = audit.iter().filter(|e| e["decision"] == "denied" && e["rule"].as_str().unwrap().contains("holds a key the host holds")).count();
    assert_eq!(body_denials, 3, "the two stolen keys and the escaped one");

    // The stand-in saw the test's own vault, then exactly the run's own calls.
    let requests = sesame.requests();
    let channel = "6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0";
    assert_eq!(
        sesame.lines(),
        [
            "POST /api/v1/vault/vaults".to_string(),
            "POST /api/v1/vault/vaults".to_string(),
            "POST /api/v1/vault/vaults/vault-0002/members".to_string(),
            "PATCH /api/v1/tasks/task-0001".to_string(),
            format!("POST /api/v1/channels/{channel}/messages"),
        ]
    );
    let recorded = serde_json::to_string(&requests).unwrap();
    for absent in [stranger, LEAD_LLM_KEY, LEAD_KEY, "exfiltrated", "DELETE"] {
        assert!(!recorded.contains(absent), "{absent} reached Sesame: {recorded}");
    }
    assert_eq!(requests[2]["body"]["principalId"], principal("gatecheck"));
}

#[test]
fn a_provision_against_an_unreachable_sesame_ends_at_once_with_one_sentence_and_nothing_written() {
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
    let api = format!("http://127.0.0.1:{closed}");
    let t = TestHome::new(&api);
    let task = t.task("nova", gateway_port(), |_| {});
    let before = files_under(&t.home);
    let sentence = format!(
        "cannot reach the Sesame API at {api} (--api-url {api}): connection refused — check --api-url and the network, then run the provision again"
    );
    let started = std::time::Instant::now();
    let run = t.run(&["provision", "--task", task.to_str().unwrap()]).expect(2);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "it took {:?}", started.elapsed());
    assert!(run.stdout.contains(&sentence), "{}", run.stdout);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("StreamError"), "{}{}", run.stdout, run.stderr);
    let json = t.provision(&task).expect(2).json();
    assert_eq!((json["error"]["kind"].as_str(), json["error"]["message"].as_str()), (Some("refused"), Some(sentence.as_str())));
    assert_eq!(files_under(&t.home), before, "no home, archive, journal, claim or log was written");
    // The check is the host's, before the component: a plan needs no Sesame.
    t.run(&["provision", "--plan", "--task", task.to_str().unwrap()]).expect(0);
}

/// A home for the read-only and archive attacks (see `read_only.rs` of the fixture): the
/// sibling `victim` the host made, with a workspace; a deprovisioned sibling's archive and
/// member record; a systemd stand-in that records every call.
fn read_only_home(sesame: &SesameStandin) -> TestHome {
    let mut t = TestHome::new(&sesame.url);
    std::fs::create_dir_all(t.sibling("victim").join("workspace")).unwrap();
    std::fs::write(t.sibling("victim").join("workspace/NOTES.md"), "the victim's own\n").unwrap();
    t.register_sibling("victim");
    let archives = t.home.join(".openclaw-archives");
    std::fs::create_dir_all(&archives).unwrap();
    std::fs::write(archives.join("nova-20260101-000000.tar.gz"), b"the only copy of nova").unwrap();
    std::fs::write(archives.join("nova-20260101-000000.member.json"), b"{\"handle\": \"nova\"}\n").unwrap();
    std::fs::create_dir_all(t.lead().join("logs")).unwrap();
    t.backend = "systemd";
    let systemctl = t.recording_tool("systemctl");
    t.extra = vec!["--systemctl".into(), systemctl.display().to_string()];
    t
}

/// Every entry under the home (modes, contents), but the audit log the host appends to.
fn home_state(t: &TestHome) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut state = files_under(&t.home);
    state.remove(".openclaw/logs/agent-provisioner-audit.jsonl");
    state
}

#[test]
fn a_command_that_changes_nothing_is_denied_every_change_and_leaves_the_disk_as_it_was() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = read_only_home(&sesame);
    let task = t.task("fresh", gateway_port(), |_| {});
    // The host compiles the fixture once and records its artifact's hash (its own state,
    // not the component's doing): done before the disk is compared.
    t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "ports"]);
    for (command, args) in [("list", vec!["list"]), ("plan", vec!["provision", "--plan", "--task", task.to_str().unwrap()])] {
        let before = home_state(&t);
        let audit_lines = std::fs::read_to_string(t.audit_log()).unwrap_or_default().lines().count();
        let run = t.run(&[&["--component", env!("HOSTILE_GUEST_WASM")][..], &args].concat());
        assert_eq!(run.code, 2, "{command}: the fixture ends with a refusal\n{}", run.stderr);
        let results = results(&run.stderr);
        let verdict = |name: &str| results.get(name).cloned().unwrap_or_else(|| panic!("{command}: no result {name}:\n{}{}", run.stdout, run.stderr));
        for name in [
            "ro-write-atomic", "ro-write-registry", "ro-create-dir-all", "ro-remove-tree", "ro-archive-tree", "ro-restore-archive",
            "ro-write-credentials", "ro-copy-lead-plugins", "ro-service-install", "ro-service-start", "ro-service-stop",
            "ro-service-uninstall", "ro-sesame-call", "ro-family-lock",
        ] {
            let (allowed, detail) = verdict(name);
            // The gate tells the component only `HttpRequestDenied`; the audit names why (below).
            let named = name == "ro-sesame-call" || detail.contains(&format!("`{command}` changes nothing"));
            assert!(!allowed && named, "{command}: {name} was not refused as a change: {detail}");
        }
        for name in ["ro-service-status", "ro-family-claim-check"] {
            assert!(verdict(name).0, "{command}: {name} is a look, not a change: {}", verdict(name).1);
        }
        assert_eq!(home_state(&t), before, "{command}: every file, directory and mode under $HOME is as it was");
        assert!(!t.lead().join("logs/agent-provisioner-claims").exists(), "{command}: no claim file");
        assert!(sesame.requests().is_empty(), "{command}: nothing reached Sesame: {:?}", sesame.lines());
        let changes: Vec<String> = t.tool_calls("systemctl").into_iter().filter(|c| !c.contains("show")).collect();
        assert!(changes.is_empty(), "{command}: only queries reach the service manager: {changes:?}");

        let audit: Vec<Value> = std::fs::read_to_string(t.audit_log()).unwrap().lines().skip(audit_lines).map(|l| serde_json::from_str(l).unwrap()).collect();
        let denied = |cap: &str, op: &str| audit.iter().any(|e| e["decision"] == "denied" && e["cap"] == cap && e["op"] == op && e["rule"].as_str().unwrap().contains(&format!("`{command}` changes nothing")));
        for op in ["write-atomic", "create-dir-all", "remove-tree", "archive-tree", "restore-archive", "write-credentials", "copy-lead-plugins"] {
            assert!(denied("fs", op), "{command}: no audited denial of fs {op} naming the command");
        }
        for op in ["install", "start", "stop", "uninstall"] {
            assert!(denied("service", op), "{command}: no audited denial of service {op}");
        }
        assert!(denied("http", "POST"), "{command}: no audited denial of the Sesame call");
    }
}

#[test]
fn the_archives_are_create_only_and_one_run_writes_within_its_budgets() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = read_only_home(&sesame);
    // 15 levels of 250-byte names, then 4,400 files of 200-byte names: 17.4 MB of paths
    // in 4,415 entries, far below the entry cap.
    let mut long = t.sibling("victim").join("long");
    for level in 0..15 {
        long.push(format!("{level:02}{}", "d".repeat(248)));
    }
    std::fs::create_dir_all(&long).unwrap();
    for i in 0..4400 {
        std::fs::write(long.join(format!("{i:05}{}", "f".repeat(195))), b"").unwrap();
    }
    let archives = t.home.join(".openclaw-archives");
    let kept = [archives.join("nova-20260101-000000.tar.gz"), archives.join("nova-20260101-000000.member.json")];
    let before: Vec<Vec<u8>> = kept.iter().map(|p| std::fs::read(p).unwrap()).collect();

    let run = t.run(&["--component", env!("HOSTILE_GUEST_WASM"), "rollback", "victim"]);
    assert_eq!(run.code, 2, "the fixture ends with a refusal\n{}", run.stderr);
    let results = results(&run.stderr);
    let verdict = |name: &str| results.get(name).cloned().unwrap_or_else(|| panic!("no result {name}:\n{}{}", run.stdout, run.stderr));
    for (name, says) in [
        ("archive-remove", "create-only for the component"),
        ("archive-overwrite", "only member records"),
        ("archive-replace", "AlreadyExists"),
        ("member-record-remove", "create-only for the component"),
        ("member-record-overwrite", "exists: archives and member records are create-only"),
        ("archive-forge", "archives are made by archive-tree"),
        ("plugins-into-archives", "archives\\\" is not a sibling handle: it is reserved"),
        ("walk-long-names", "more than 16777216 bytes of names"),
        ("budget-bytes", "after 64 MiB: FsError::Denied("),
        ("budget-entries", "budget of 10000 new entries per run is spent"),
    ] {
        let (allowed, detail) = verdict(name);
        assert!(!allowed && detail.contains(says), "{name}: {}: no {says:?} in {detail}", if allowed { "allowed" } else { "denied" });
    }
    assert!(verdict("budget-bytes").1.contains("write budget of 64 MiB per run is spent"), "{}", verdict("budget-bytes").1);
    for name in ["archive-new", "member-record-new"] {
        assert!(verdict(name).0, "{name}: a new archive or record is the component's to make: {}", verdict(name).1);
    }
    assert_eq!(kept.iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>(), before, "the deprovisioned sibling's archive and record are as they were");
    assert!(!archives.join("nova-29991231-000000.tar.gz").exists() && !archives.join("extensions").exists());
    let memory = t.sibling("victim").join("workspace/memory");
    let written: u64 = std::fs::read_dir(&memory).unwrap().flatten().filter(|e| e.file_type().unwrap().is_file()).map(|e| e.metadata().unwrap().len()).sum();
    assert_eq!(written, 64 << 20, "64 MiB and not a byte more reached the disk");

    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    for rule in ["write budget of 64 MiB per run is spent", "budget of 10000 new entries per run is spent", "create-only for the component", "bytes of names"] {
        assert!(audit.lines().any(|l| l.contains("\"denied\"") && l.contains(rule)), "no audited denial for {rule:?}");
    }
}

#[test]
fn honest_read_only_commands_leave_the_disk_as_it_was() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = TestHome::new(&sesame.url);
    t.provision(&t.task("nova", gateway_port(), |_| {})).expect(0);
    std::fs::create_dir_all(t.lead().join("logs")).unwrap();
    // What the running gateway and its supervisor write meanwhile is theirs, not the run's.
    let state = || {
        let mut state = home_state(&t);
        state.retain(|path, _| !path.starts_with(".local/state/agent-provisioner/logs/") && !path.ends_with(".supervisor.json"));
        state
    };
    let before = state();
    let requests = sesame.requests().len();
    let task = t.task("vega", gateway_port(), |_| {});
    for args in [vec!["list"], vec!["health"], vec!["ports"], vec!["adopt", "--scan"], vec!["provision", "--plan", "--task", task.to_str().unwrap()]] {
        let run = t.run(&[&["--json"][..], &args].concat()).expect(0);
        assert!(!run.stderr.contains("denied"), "{args:?}: the honest component asks for no change:\n{}", run.stderr);
        assert_eq!(state(), before, "{args:?} left something on disk");
    }
    assert!(!t.lead().join("logs/agent-provisioner-claims/vega.lock").exists(), "the plan claimed nothing");
    assert_eq!(sesame.requests().len(), requests, "no Sesame call");
}
