//! End to end: `adopt` brings siblings the original bash skill made under management.
//! The homes are built as the original wrote them (legacy `auth.json`, a copy of the
//! lead's `auth-profiles.json`, consecutive ports whose claimed ranges overlap) with a
//! LaunchAgent loaded by `launchctl load -w` through the launchd stand-in, which really
//! runs the gateway (the stand-in). Adoption is listed, planned, refused on an overlap,
//! done with `--re-port`; a failure part-way, and a run killed part-way, put back every
//! byte, the definition and the running service.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use support::*;

const FAMILY: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

/// A home with the launchd stand-in as the service manager.
fn launchd_home(sesame: &SesameStandin) -> TestHome {
    let mut t = TestHome::new(&sesame.url);
    t.backend = "launchd";
    let launchctl = t.launchctl_standin();
    t.extra = vec!["--launchctl".into(), launchctl.display().to_string()];
    t
}

/// Builds `~/.openclaw-<handle>` as the original skill wrote it ([`bash_era_home`]) and
/// loads its LaunchAgent with `launchctl load -w`; returns the plist.
fn bash_era(t: &TestHome, handle: &str, port: u16) -> PathBuf {
    let home = bash_era_home(t, handle, port);
    let plist = t.home.join(format!("Library/LaunchAgents/com.openclaw.{handle}.plist"));
    std::fs::create_dir_all(plist.parent().unwrap()).unwrap();
    let mut dict = plist::Dictionary::new();
    dict.insert("Label".into(), format!("com.openclaw.{handle}").into());
    let args = [t.openclaw.display().to_string(), "--profile".into(), handle.into(), "gateway".into(), "run".into(), "--port".into(), port.to_string()];
    dict.insert("ProgramArguments".into(), plist::Value::Array(args.into_iter().map(plist::Value::from).collect()));
    let env: plist::Dictionary = [
        ("OPENCLAW_STATE_DIR", home.display().to_string()),
        ("OPENCLAW_CONFIG_PATH", home.join("openclaw.json").display().to_string()),
        ("PATH", "/usr/bin:/bin".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), plist::Value::from(v)))
    .collect();
    dict.insert("EnvironmentVariables".into(), plist::Value::Dictionary(env));
    dict.insert("RunAtLoad".into(), true.into());
    dict.insert("KeepAlive".into(), true.into());
    dict.insert("WorkingDirectory".into(), home.display().to_string().into());
    dict.insert("StandardOutPath".into(), home.join("logs/stdout.log").display().to_string().into());
    dict.insert("StandardErrorPath".into(), home.join("logs/stderr.log").display().to_string().into());
    plist::Value::Dictionary(dict).to_file_xml(&plist).unwrap();
    let loaded = std::process::Command::new(t.launchctl_standin()).args(["load", "-w", plist.to_str().unwrap()]).status().unwrap();
    assert!(loaded.success());
    eventually(&format!("the bash-era gateway of {handle} answers"), Duration::from_secs(10), || get_status(port, "/healthz") == Some(200));
    plist
}

/// `adopt` with `args`, as JSON.
fn adopt(t: &TestHome, args: &[&str]) -> Run {
    let mut all = vec!["--json", "adopt"];
    all.extend_from_slice(args);
    t.run(&all)
}

/// The ids `adopt HANDLE` needs.
fn ids(handle: &str) -> Vec<String> {
    vec!["--principal-id".into(), principal(handle), "--family-id".into(), FAMILY.into()]
}

fn adopt_for_real(t: &TestHome, handle: &str, more: &[&str]) -> Run {
    let ids = ids(handle);
    let mut args: Vec<&str> = vec![handle];
    args.extend(ids.iter().map(String::as_str));
    args.extend_from_slice(more);
    adopt(t, &args)
}

/// Everything of a sibling home but its logs (the gateway appends to them), with modes.
fn home_files(t: &TestHome, handle: &str) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    let mut files = files_under(&t.sibling(handle));
    files.retain(|path, _| !path.starts_with("logs/"));
    files
}

/// The launchd stand-in's account of a label: `(loaded, running pid)`.
fn launchd_job(t: &TestHome, label: &str) -> (bool, Option<u32>) {
    let out = std::process::Command::new(t.launchctl_standin()).args(["print", &format!("gui/{}/{label}", unsafe { libc::getuid() })]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let running = text.lines().any(|l| l.trim() == "state = running");
    let pid = text.lines().find_map(|l| l.trim().strip_prefix("pid = ")).and_then(|p| p.parse().ok());
    (out.status.success(), if running { pid } else { None })
}

fn no_key_in(what: &str, text: &str, handle: &str) {
    for key in [legacy_key(handle).as_str(), LEAD_PROFILE_KEY] {
        assert!(!text.contains(key), "{what} shows a provider key: {text}");
    }
}

#[test]
fn bash_era_siblings_are_scanned_planned_and_adopted_with_their_overlaps_resolved() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = launchd_home(&sesame);
    let base = gateway_port();
    let clear = gateway_port();
    for (i, handle) in ["nova", "orion", "vega"].iter().enumerate() {
        bash_era(&t, handle, base + i as u16);
    }

    // The scan lists all three, each with what would change, and the overlaps.
    let scan = adopt(&t, &["--scan"]).expect(0).json();
    assert_eq!(scan["command"], "adopt-plan");
    let plans = scan["adoptions"].as_array().unwrap();
    let handles: Vec<&str> = plans.iter().map(|p| p["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["nova", "orion", "vega"]);
    let nova = &plans[0];
    assert_eq!(nova["overlaps"].as_array().unwrap().len(), 2, "{nova:#}");
    assert!(nova["blockers"].to_string().contains("--re-port"), "{nova:#}");
    let changes = nova["changes"].to_string();
    for expected in ["stop the old service com.openclaw.nova (loaded, running)", "agents/main/agent/auth.json", "auth-profiles.json", "left out: logging", "install com.openclaw.nova"] {
        assert!(changes.contains(expected), "no {expected:?} in {changes}");
    }
    no_key_in("the scan", &scan.to_string(), "nova");

    // The plan changes nothing; without --re-port the overlap is a refusal that changes nothing.
    let before = (home_files(&t, "nova"), std::fs::read(t.home.join("Library/LaunchAgents/com.openclaw.nova.plist")).unwrap());
    let plan = adopt(&t, &["nova", "--plan"]).expect(0).json();
    assert!(plan["adoptions"][0]["blockers"].to_string().contains("--principal-id is required"), "{plan:#}");
    let ids = ids("nova");
    let refused = adopt(&t, &["nova", &ids[0], &ids[1], &ids[2], &ids[3]]).expect(2);
    assert!(refused.stdout.contains("overlap") && refused.stdout.contains("--re-port"), "{}", refused.stdout);
    assert_eq!((home_files(&t, "nova"), std::fs::read(t.home.join("Library/LaunchAgents/com.openclaw.nova.plist")).unwrap()), before);
    assert!(!t.launchctl_calls().iter().any(|c| c.starts_with("bootout")), "{:?}", t.launchctl_calls());

    // Adopted onto a clear base.
    let clear_text = clear.to_string();
    let run = adopt_for_real(&t, "nova", &["--re-port", "--port-range-start", &clear_text]).expect(0);
    no_key_in("the adoption's output", &format!("{}{}", run.stdout, run.stderr), "nova");
    let outcome = &run.json()["outcome"];
    assert_eq!((outcome["port"].as_u64(), outcome["previous_port"].as_u64()), (Some(clear.into()), Some(base.into())));
    let home = t.sibling("nova");
    assert_eq!(std::fs::read_to_string(home.join(".env")).unwrap().lines().last().unwrap(), format!("ANTHROPIC_API_KEY=\"{}\"", legacy_key("nova")));
    assert_eq!(mode(&home.join(".env")), 0o600);
    assert!(!home.join("agents/main/agent/auth.json").exists() && !home.join("agents/main/agent/auth-profiles.json").exists());
    let config: Value = serde_json::from_str(&std::fs::read_to_string(home.join("openclaw.json")).unwrap()).unwrap();
    assert_eq!((config["gateway"]["port"].as_u64(), config["gateway"]["bind"].as_str()), (Some(clear.into()), Some("loopback")));
    assert_eq!(config["channels"]["sesame"]["apiKey"], "sk_sesame_nova_0001");
    assert!(config.get("logging").is_none());
    assert_eq!(mode(&home.join("openclaw.json")), 0o600);
    let archive = PathBuf::from(outcome["archive_dir"].as_str().unwrap());
    let old_plist = std::fs::read(archive.join("com.openclaw.nova.plist")).unwrap();
    assert_eq!(old_plist, before.1, "the old definition is archived as it was");
    assert_eq!(std::fs::read(archive.join("openclaw.json")).unwrap(), before.0["openclaw.json"].1);
    let new_plist = std::fs::read_to_string(t.home.join("Library/LaunchAgents/com.openclaw.nova.plist")).unwrap();
    assert!(new_plist.contains("Written by agent-provisioner") && new_plist.contains(&clear_text), "{new_plist}");
    assert_eq!(get_status(clear, "/healthz"), Some(200));
    assert_eq!(get_status(base, "/healthz"), None, "the old gateway is gone");
    let calls = t.launchctl_calls();
    assert!(calls.iter().any(|c| c.ends_with("/com.openclaw.nova") && c.starts_with("bootout")), "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("bootstrap")), "{calls:?}");
    let online = sesame.requests().into_iter().any(|r| r["method"] == "PATCH" && r["body"] == json!({"status": "online"}) && r.to_string().contains(&principal("nova")));
    assert!(online, "Sesame was told the member is online");
    let audit = std::fs::read_to_string(t.audit_log()).unwrap();
    for op in ["begin", "retire", "migrate-credentials", "commit"] {
        assert!(audit.lines().any(|l| l.contains("\"cap\":\"adoption\"") && l.contains(&format!("\"op\":\"{op}\""))), "no adoption {op} in the audit log");
    }
    no_key_in("the audit log", &audit, "nova");

    // orion still overlaps vega: moved too; vega then overlaps nothing and keeps its port.
    adopt_for_real(&t, "orion", &["--re-port", "--port-range-start", &clear_text]).expect(0);
    let vega = adopt_for_real(&t, "vega", &[]).expect(0).json();
    assert_eq!(vega["outcome"]["port"].as_u64(), Some(u64::from(base + 2)));
    assert!(vega["outcome"]["previous_port"].is_null());
    let list = t.run(&["--json", "list"]).expect(0).json();
    let members: Vec<(String, u64)> = list["members"].as_array().unwrap().iter().map(|m| (m["handle"].as_str().unwrap().into(), m["port"].as_u64().unwrap())).collect();
    assert_eq!(members.len(), 3, "{members:?}");
    let ports: Vec<u16> = members.iter().map(|(_, p)| *p as u16).collect();
    for (i, a) in ports.iter().enumerate() {
        for b in &ports[i + 1..] {
            assert!(!claims_overlap(*a, *b), "{members:?} still overlap");
        }
    }
    assert!(list["members"].as_array().unwrap().iter().all(|m| m["problems"].as_array().unwrap().is_empty()), "{list:#}");
    let health = t.run(&["--json", "health"]).expect(0).json();
    assert!(health["health"]["siblings"].as_array().unwrap().iter().all(|s| s["healthy"] == true), "{health:#}");
    let rescan = adopt(&t, &["--scan"]).expect(0).json();
    assert_eq!(rescan["adoptions"], json!([]), "nothing is left to adopt");
}

/// Whether gateways on `a` and `b` claim a port in common (as OpenClaw claims them).
fn claims_overlap(a: u16, b: u16) -> bool {
    let claimed = |p: u16| (p..=p + 2).chain(p + 11..=p + 110).collect::<std::collections::BTreeSet<u16>>();
    !claimed(a).is_disjoint(&claimed(b))
}

/// What adoption may change, as it is (path -> mode and SHA-256): the home (logs aside),
/// the old definition, whether its job is loaded, the registry and the host's record of
/// the sibling.
fn state(t: &TestHome, handle: &str) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest as _;
    let digest = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out: std::collections::BTreeMap<String, String> =
        home_files(t, handle).into_iter().map(|(path, (mode, bytes))| (path, format!("{mode:o} {}", digest(&bytes)))).collect();
    let plist = t.home.join(format!("Library/LaunchAgents/com.openclaw.{handle}.plist"));
    out.insert("<plist>".into(), format!("{:o} {}", mode(&plist), digest(&std::fs::read(&plist).unwrap())));
    out.insert("<loaded>".into(), launchd_job(t, &format!("com.openclaw.{handle}")).0.to_string());
    let registry = std::fs::read(t.lead().join("agent-provisioner/family.json")).map(|b| digest(&b)).unwrap_or_else(|_| "absent".into());
    out.insert("<registry>".into(), registry);
    let host_state = std::fs::read_to_string(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap_or_default();
    // The host's own state file may appear; what counts is that it records no such sibling.
    let recorded = serde_json::from_str::<Value>(&host_state).map(|s| s["siblings"][handle].to_string()).unwrap_or_else(|_| "null".into());
    out.insert("<host record>".into(), recorded);
    out
}

#[test]
fn a_failure_part_way_puts_back_every_byte_the_definition_and_the_running_service() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = launchd_home(&sesame);
    let port = gateway_port();
    bash_era(&t, "nova", port);
    let before = state(&t, "nova");
    let old_pid = launchd_job(&t, "com.openclaw.nova").1.expect("the old gateway runs");

    // The new service's gateway refuses its config: health fails after the credentials moved.
    t.openclaw = fake_openclaw(t.temp.path(), "exit-at-once");
    let failed = adopt_for_real(&t, "nova", &[]).expect(1);
    no_key_in("the failure", &format!("{}{}", failed.stdout, failed.stderr), "nova");
    let error = &failed.json()["error"];
    assert_eq!(error["step"], "health", "{error:#}");
    let rollback = error["rollback"].to_string();
    for expected in ["openclaw.json put back", "auth.json put back", ".env removed", "com.openclaw.nova.plist put back", "loaded again"] {
        assert!(rollback.contains(expected), "no {expected:?} in {rollback}");
    }

    assert_eq!(state(&t, "nova"), before, "every byte, the definition, its state, the registry and the host's record are as they were");
    let (_, pid) = launchd_job(&t, "com.openclaw.nova");
    assert!(pid.is_some_and(|p| p != old_pid && is_alive(p)), "the old service runs again");
    eventually("the old gateway answers again", Duration::from_secs(10), || get_status(port, "/healthz") == Some(200));
    assert!(std::fs::read_dir(t.home.join(".openclaw-archives")).map(|d| d.count()).unwrap_or(0) == 0, "nothing archived");
    assert!(!t.home.join(".local/state/agent-provisioner/adopting/nova").exists(), "the snapshot is gone");
}

#[test]
fn an_adoption_killed_part_way_is_put_back_by_the_next_run() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = launchd_home(&sesame);
    let port = gateway_port();
    bash_era(&t, "nova", port);
    let before = state(&t, "nova");

    // Killed while it waits for a gateway that takes long to come up.
    t.openclaw = fake_openclaw(t.temp.path(), "slow-start:60000");
    let ids = ids("nova");
    let mut child = t.command(&["adopt", "nova", &ids[0], &ids[1], &ids[2], &ids[3]]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let env = t.sibling("nova").join(".env");
    eventually("the adoption moves the credentials", Duration::from_secs(20), || env.exists());
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(t.home.join(".local/state/agent-provisioner/adopting/nova/record.json").exists(), "the snapshot stays");
    let scan = adopt(&t, &["--scan"]).expect(0).json();
    assert!(scan["adoptions"][0]["blockers"].to_string().contains("killed part-way"), "{scan:#}");

    // The next adoption puts it all back first (shown by one that then fails, and puts
    // back its own changes: what is left is the state before the killed run), then adopts.
    t.openclaw = fake_openclaw(t.temp.path(), "exit-at-once");
    let run = adopt_for_real(&t, "nova", &[]);
    assert!(run.stderr.contains("was killed part-way; put back first"), "{}", run.stderr);
    run.expect(1);
    assert_eq!(state(&t, "nova"), before);
    t.openclaw = fake_openclaw(t.temp.path(), "serve");
    adopt_for_real(&t, "nova", &[]).expect(0);
    assert_eq!(get_status(port, "/healthz"), Some(200));
}

#[test]
fn what_is_not_adoptable_is_refused_naming_why_and_nothing_changes() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let t = launchd_home(&sesame);
    let port = gateway_port();
    bash_era(&t, "nova", port);
    let home = t.sibling("nova");
    let ids = ids("nova");
    let attempt = |what: &str, expected: &str| {
        let before = home_files(&t, "nova");
        let run = adopt(&t, &["nova", &ids[0], &ids[1], &ids[2], &ids[3]]).expect(2);
        assert!(run.stdout.contains(expected), "{what}: no {expected:?} in {}", run.stdout);
        assert_eq!(home_files(&t, "nova"), before, "{what}: nothing changed");
        assert!(launchd_job(&t, "com.openclaw.nova").0, "{what}: the old service is still loaded");
    };

    // A .env that would inject code into the gateway.
    std::fs::write(home.join(".env"), "NODE_OPTIONS=--require=/tmp/evil.js\n").unwrap();
    attempt("a hostile .env", "NODE_OPTIONS is not a provider key variable");
    std::fs::remove_file(home.join(".env")).unwrap();

    // The legacy auth.json swapped for a link to the lead's secrets.
    let auth = home.join("agents/main/agent/auth.json");
    let saved = std::fs::read(&auth).unwrap();
    std::fs::remove_file(&auth).unwrap();
    std::os::unix::fs::symlink(t.lead().join(".env"), &auth).unwrap();
    attempt("a linked auth.json", "cannot be read safely");
    std::fs::remove_file(&auth).unwrap();
    std::fs::write(&auth, saved).unwrap();

    // A FIFO where the config should be.
    let config = home.join("openclaw.json");
    let saved = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&config).status().unwrap().success());
    attempt("a FIFO config", "openclaw.json");
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, saved).unwrap();

    // OpenClaw's own service for the same profile.
    let own = t.home.join("Library/LaunchAgents/ai.openclaw.nova.plist");
    std::fs::write(&own, "<plist/>").unwrap();
    attempt("OpenClaw's own service", "OpenClaw's own service");
    std::fs::remove_file(&own).unwrap();

    // The lead itself, another OpenClaw profile without a sign of the skill, a bad id.
    let lead = adopt(&t, &["dev", &ids[0], &ids[1], &ids[2], &ids[3]]).expect(2);
    assert!(lead.stdout.contains("handle"), "{}", lead.stdout);
    std::fs::create_dir_all(t.home.join(".openclaw-work")).unwrap();
    std::fs::write(t.home.join(".openclaw-work/openclaw.json"), "{\"gateway\": {\"port\": 19999}}").unwrap();
    let work = adopt(&t, &["work", &ids[0], &ids[1], &ids[2], &ids[3]]).expect(2);
    assert!(work.stdout.contains("no sign of the original skill"), "{}", work.stdout);
    let bad = adopt(&t, &["nova", "--principal-id", "not-a-uuid", "--family-id", FAMILY]).expect(2);
    assert!(bad.stdout.contains("--principal-id") && bad.stdout.contains("not a uuid"), "{}", bad.stdout);
    let recorded = std::fs::read_to_string(t.home.join(".local/state/agent-provisioner/siblings.json")).unwrap_or_default();
    assert!(!recorded.contains("nova"), "{recorded}");
}

#[test]
fn without_a_service_manager_a_failure_leaves_no_process_and_no_record() {
    let sesame = SesameStandin::start(Some(LEAD_KEY));
    let mut t = TestHome::new(&sesame.url);
    let port = gateway_port();
    let home = t.sibling("nova");
    std::fs::create_dir_all(home.join("agents/main/agent")).unwrap();
    std::fs::write(home.join("openclaw.json"), json!({"gateway": {"mode": "local", "port": port}}).to_string()).unwrap();
    std::fs::write(home.join("agents/main/agent/auth.json"), json!({"anthropic": {"type": "api_key", "key": legacy_key("nova")}}).to_string()).unwrap();
    let before = files_under(&home);

    let plan = adopt(&t, &["nova", "--plan"]).expect(0).json();
    assert!(plan["adoptions"][0]["changes"].to_string().contains("no old service definition was found"), "{plan:#}");
    t.openclaw = fake_openclaw(t.temp.path(), "exit-at-once");
    adopt_for_real(&t, "nova", &[]).expect(1);
    assert_eq!(files_under(&home), before, "every byte is back");
    assert!(t.gateway_pid("nova").is_none() && t.supervisor_pid("nova").is_none(), "no gateway or supervisor is left");
    let records: Vec<_> = std::fs::read_dir(t.services_dir()).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(records.is_empty(), "no service record is left: {records:?}");

    t.openclaw = fake_openclaw(t.temp.path(), "serve");
    let adopted = adopt_for_real(&t, "nova", &[]).expect(0).json();
    assert!(adopted["outcome"]["warnings"].to_string().contains("no old service definition"), "{adopted:#}");
    assert_eq!(get_status(port, "/healthz"), Some(200));
    t.run(&["--json", "deprovision", "nova"]).expect(0);
}
